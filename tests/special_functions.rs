//! The special functions (log1p, expm1, atan, asinh, acosh, atanh, erf,
//! gelu_exact, xlogx, atan2, xlogy) everywhere they can be used: the bulk
//! kernel over a large sample with each one's worst error printed, the edges
//! and the conventions of atan2 and xlogy, central differences, expressions
//! (fused, unfused, CPU) and programs (the compiled gradient and the
//! structured Jacobian) on the GPU and the CPU path.

mod common;

use chainrule::graph::{Graph, InputOrder};
use chainrule::ops::BinaryOp;
use chainrule::program::Program;
use chainrule::schedule::Fusion;
use chainrule::{Backend, CpuBackend, Reduction, UnaryOp};
use common::{ATOL, RTOL, check, gpu, meets_contract, rng, uniform};
use rand::Rng;
use rand::rngs::StdRng;

const UNARY: [UnaryOp; 9] = [
    UnaryOp::Log1p,
    UnaryOp::Expm1,
    UnaryOp::Atan,
    UnaryOp::Asinh,
    UnaryOp::Acosh,
    UnaryOp::Atanh,
    UnaryOp::Erf,
    UnaryOp::GeluExact,
    UnaryOp::Xlogx,
];

/// Magnitudes 10^u for u uniform in [low, high), each with a random sign
/// when `signed`.
fn log_uniform(rng: &mut StdRng, n: usize, (low, high): (f64, f64), signed: bool) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let m = 10f64.powf(rng.random_range(low..high)) as f32;
            if signed && rng.random_bool(0.5) {
                -m
            } else {
                m
            }
        })
        .collect()
}

/// A large sample for `op`: uniform over [-20, 20], magnitudes from 1e-30
/// to 1e30 of both signs, and the region near each domain's edge.
fn sample(op: UnaryOp, rng: &mut StdRng) -> Vec<f32> {
    let mut xs = uniform(rng, 1_000_000, -20.0, 20.0);
    xs.extend(log_uniform(rng, 500_000, (-30.0, 30.0), true));
    let near = log_uniform(rng, 300_000, (-7.0, 0.0), false);
    match op {
        UnaryOp::Log1p => xs.extend(near.iter().map(|d| -1.0 + d)),
        UnaryOp::Acosh => xs.extend(near.iter().map(|d| 1.0 + 10.0 * d)),
        UnaryOp::Atanh => xs.extend(near.iter().enumerate().map(|(i, d)| {
            let x = 1.0 - d;
            if i % 2 == 0 { x } else { -x }
        })),
        UnaryOp::Xlogx => xs.extend(uniform(rng, 300_000, 0.0, 2.0)),
        _ => xs.extend(uniform(rng, 300_000, -4.0, 4.0)),
    }
    xs
}

/// The worst error of `actual` against `expected` as a fraction of the
/// contract's tolerance, and the worst relative error where |expected| >=
/// 1e-4 (away from a zero of the function, where only atol is meaningful).
fn worst(actual: &[f32], expected: &[f64]) -> (f64, f64) {
    let mut fraction = 0f64;
    let mut relative = 0f64;
    for (&a, &e) in actual.iter().zip(expected) {
        if !(a.is_finite() && e.is_finite()) {
            continue;
        }
        let error = (f64::from(a) - e).abs();
        fraction = fraction.max(error / (ATOL + RTOL * e.abs()));
        if e.abs() >= 1e-4 {
            relative = relative.max(error / e.abs());
        }
    }
    (fraction, relative)
}

/// Every new unary function over 1.8 million inputs on the GPU: within the
/// contract everywhere; the worst errors are printed.
#[test]
fn worst_errors_of_the_unary_functions_over_a_large_sample() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("special functions, large sample");
    println!(
        "{:<11} {:>9} {:>14} {:>14} {:>14} {:>14}",
        "function", "samples", "value tol", "value rel", "deriv tol", "deriv rel"
    );
    for op in UNARY {
        let xs = sample(op, &mut rng);
        let out = context.unary(op, &xs).expect("unary runs");
        let (values, derivatives) = common::reference(op, &xs);
        check(&format!("{op} value"), &xs, &out.values, &values);
        check(
            &format!("{op} derivative"),
            &xs,
            &out.derivatives,
            &derivatives,
        );
        let (vf, vr) = worst(&out.values, &values);
        let (df, dr) = worst(&out.derivatives, &derivatives);
        println!(
            "{:<11} {:>9} {vf:>14.3e} {vr:>14.3e} {df:>14.3e} {dr:>14.3e}",
            op.name(),
            xs.len()
        );
    }
}

/// Points for atan2 and xlogy: both operands uniform over [-20, 20], both
/// log-uniform over 1e-30..1e30 with random signs, and mixed.
fn binary_sample(rng: &mut StdRng, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut a = uniform(rng, n, -20.0, 20.0);
    let mut b = uniform(rng, n, -20.0, 20.0);
    a.extend(log_uniform(rng, n, (-30.0, 30.0), true));
    b.extend(log_uniform(rng, n, (-30.0, 30.0), true));
    a.extend(log_uniform(rng, n, (-3.0, 3.0), true));
    b.extend(uniform(rng, n, 0.0, 3.0));
    (a, b)
}

/// The f64 reference of `op` at every pair: values, d/da, d/db.
fn binary_reference(op: BinaryOp, a: &[f32], b: &[f32]) -> [Vec<f64>; 3] {
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    for (&x, &y) in a.iter().zip(b) {
        let (v, da, db) = op.value_and_partials(f64::from(x), f64::from(y));
        out[0].push(v);
        out[1].push(da);
        out[2].push(db);
    }
    out
}

/// Checks a graph of two inputs `a`, `b` (in that order) against the
/// reference of `op` on every backend and plan; returns the worst
/// fractions of the tolerance for value, d/da and d/db on the GPU.
fn check_binary(op: BinaryOp, text: &str, a: &[f32], b: &[f32]) -> [f64; 3] {
    let graph = Graph::parse(text, InputOrder::Given(vec!["a".into(), "b".into()]))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let expected = binary_reference(op, a, b);
    let mut backends = vec![(Backend::Cpu(CpuBackend), Fusion::Fused, "cpu")];
    if let Some(context) = gpu() {
        backends.push((Backend::Gpu(context.clone()), Fusion::Fused, "gpu fused"));
        backends.push((Backend::Gpu(context), Fusion::Unfused, "gpu unfused"));
    }
    let mut fractions = [0f64; 3];
    for (backend, fusion, label) in backends {
        let out = backend
            .evaluate(&graph, &[a, b], fusion)
            .expect("evaluates");
        let da: Vec<f32> = out.derivatives.iter().step_by(2).copied().collect();
        let db: Vec<f32> = out.derivatives.iter().skip(1).step_by(2).copied().collect();
        for (k, (actual, what)) in [(&out.values, "value"), (&da, "d/da"), (&db, "d/db")]
            .into_iter()
            .enumerate()
        {
            check(&format!("{text} {what} ({label})"), a, actual, &expected[k]);
            if label == "gpu fused" {
                fractions[k] = worst(actual, &expected[k]).0;
            }
        }
    }
    fractions
}

#[test]
fn atan2_and_xlogy_match_the_reference_on_random_inputs() {
    let mut rng = rng("atan2 and xlogy");
    let (a, b) = binary_sample(&mut rng, 400_000);
    for (op, text) in [
        (BinaryOp::Atan2, "atan2(a, b)"),
        (BinaryOp::Xlogy, "xlogy(a, b)"),
    ] {
        let [v, da, db] = check_binary(op, text, &a, &b);
        println!(
            "{text:<12} {} samples; worst fraction of the tolerance: value {v:.3e}, d/da {da:.3e}, d/db {db:.3e}",
            a.len()
        );
    }
}

/// Every pair of edge values (+-0, tiny, 1, huge, the largest float, +-Inf,
/// NaN), on every backend and plan.
#[test]
fn atan2_and_xlogy_at_every_pair_of_edges() {
    let magnitudes = [0.0, 1e-30, 0.5, 1.0, 2.0, 1e30, f32::MAX, f32::INFINITY];
    let mut edges: Vec<f32> = magnitudes.iter().flat_map(|&m| [m, -m]).collect();
    edges.push(f32::NAN);
    let a: Vec<f32> = edges
        .iter()
        .flat_map(|&x| edges.iter().map(move |_| x))
        .collect();
    let b: Vec<f32> = edges.iter().flat_map(|_| edges.iter().copied()).collect();
    check_binary(BinaryOp::Atan2, "atan2(a, b)", &a, &b);
    check_binary(BinaryOp::Xlogy, "xlogy(a, b)", &a, &b);
}

/// The conventions the README documents, exactly.
#[test]
fn atan2_and_xlogy_conventions() {
    use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};
    let inf = f64::INFINITY;
    let atan2 = |y: f64, x: f64| BinaryOp::Atan2.value_and_partials(y, x);
    let xlogy = |x: f64, y: f64| BinaryOp::Xlogy.value_and_partials(x, y);
    // Quadrants, axes and signed zeros as in C's atan2.
    assert_eq!(atan2(1.0, -1.0).0, 3.0 * FRAC_PI_4);
    assert_eq!(atan2(-1.0, -1.0).0, -3.0 * FRAC_PI_4);
    assert_eq!(atan2(0.0, -0.0).0, PI);
    assert_eq!(atan2(-0.0, -0.0).0, -PI);
    assert_eq!(atan2(-0.0, 0.0).0.to_bits(), (-0.0f64).to_bits());
    assert_eq!(atan2(inf, inf).0, FRAC_PI_4);
    assert_eq!(atan2(-inf, -inf).0, -3.0 * FRAC_PI_4);
    assert_eq!(atan2(1.0, 0.0).0, FRAC_PI_2);
    // d/dy = x / r^2, d/dx = -y / r^2; 0 at the origin and at infinity.
    assert_eq!(atan2(3.0, 4.0), (3f64.atan2(4.0), 4.0 / 25.0, -3.0 / 25.0));
    assert_eq!(atan2(0.0, 0.0), (0.0, 0.0, 0.0));
    let (_, dy, dx) = atan2(inf, 2.0);
    assert!(dy == 0.0 && dx == 0.0);
    // No overflow for huge operands, no underflow for tiny ones.
    let (_, dy, dx) = atan2(3e30, 4e30);
    assert!((dy - 4e30 / 25e60).abs() <= 1e-15 * dy && (dx + 3e30 / 25e60).abs() <= 1e-15 * -dx);
    let (_, dy, _) = atan2(3e-30, 4e-30);
    assert!((dy - 4e-30 / 25e-60).abs() <= 1e-15 * dy);
    // xlogy: 0 wherever x = 0, the partial in x is ln y, in y 0 at x = 0.
    assert_eq!(xlogy(0.0, 0.0), (0.0, -inf, 0.0));
    assert_eq!(xlogy(0.0, 2.0), (0.0, 2f64.ln(), 0.0));
    assert_eq!(xlogy(0.0, inf), (0.0, inf, 0.0));
    let (v, dx, dy) = xlogy(0.0, -1.0);
    assert!(v == 0.0 && dx.is_nan() && dy == 0.0);
    assert_eq!(xlogy(inf, 1.0), (0.0, 0.0, inf));
    assert_eq!(xlogy(2.0, 0.0), (-inf, -inf, inf));
    let (v, dx, dy) = xlogy(2.0, -1.0);
    assert!(v.is_nan() && dx.is_nan() && dy.is_nan());
    let (v, dx, dy) = xlogy(0.0, f64::NAN);
    assert!(v.is_nan() && dx.is_nan() && dy.is_nan());
}

/// atan2 on points around the circle gives their angle, in every quadrant.
#[test]
fn atan2_is_quadrant_correct_around_the_circle() {
    let n = 10_000;
    let angles: Vec<f64> = (0..n)
        .map(|i| -std::f64::consts::PI + 2.0 * std::f64::consts::PI * (i as f64 + 0.5) / n as f64)
        .collect();
    let y: Vec<f32> = angles.iter().map(|t| (3.0 * t.sin()) as f32).collect();
    let x: Vec<f32> = angles.iter().map(|t| (3.0 * t.cos()) as f32).collect();
    let [values, _, _] = binary_reference(BinaryOp::Atan2, &y, &x);
    for (t, v) in angles.iter().zip(&values) {
        assert!((t - v).abs() < 1e-6, "angle {t}: reference {v}");
    }
    check_binary(BinaryOp::Atan2, "atan2(a, b)", &y, &x);
}

/// The GPU's partials against central differences of the f64 value.
#[test]
fn binary_partials_match_central_differences() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("atan2 and xlogy differences");
    let a = uniform(&mut rng, 4099, -5.0, 5.0);
    let b = uniform(&mut rng, 4099, 0.05, 5.0);
    for (op, text) in [
        (BinaryOp::Atan2, "atan2(a, b)"),
        (BinaryOp::Xlogy, "xlogy(a, b)"),
    ] {
        let graph =
            Graph::parse(text, InputOrder::Given(vec!["a".into(), "b".into()])).expect("parses");
        let out = context
            .evaluate(&graph, &[&a, &b], Fusion::Fused)
            .expect("gpu");
        let f = |x: f64, y: f64| op.value_and_partials(x, y).0;
        for i in 0..a.len() {
            let (x, y) = (f64::from(a[i]), f64::from(b[i]));
            let (hx, hy) = (1e-5 * x.abs().max(1.0), 1e-5 * y.abs().max(0.1));
            let dx = (f(x + hx, y) - f(x - hx, y)) / (2.0 * hx);
            let dy = (f(x, y + hy) - f(x, y - hy)) / (2.0 * hy);
            for (got, want, what) in [
                (out.derivatives[2 * i], dx, "a"),
                (out.derivatives[2 * i + 1], dy, "b"),
            ] {
                assert!(
                    meets_contract(got, want),
                    "{text} d/d{what} at ({x:e}, {y:e}): gpu {got:e}, central difference {want:e}"
                );
            }
        }
    }
}

/// One expression that uses every new function, fused, unfused and on the
/// CPU, against the graph's f64 reference and central differences of it.
/// acosh's argument stays away from 1, where its derivative 1/sqrt(u^2 - 1)
/// turns the f32 rounding of u = 1 + x^2 + y^2 into relative errors past
/// 1e-4 (a seed near the origin found it): that is the conditioning of the
/// expression, not an error of the kernels.
#[test]
fn every_new_function_in_one_expression() {
    let text = "log1p(x^2) + expm1(y / 4) + atan(3x) - asinh(x * y) + acosh(1.5 + x^2 + y^2) \
                + atanh(tanh(y) / 2) + erf(x - y) + gelu_exact(2y) + xlogx(sigmoid(x)) \
                + atan2(y, x) + xlogy(x, 1 + y^2)";
    let graph = Graph::parse(text, InputOrder::FirstAppearance).expect("parses");
    let mut rng = rng("one expression");
    let x = uniform(&mut rng, 30_001, -3.0, 3.0);
    let y = uniform(&mut rng, 30_001, -3.0, 3.0);
    let (values, derivatives) = graph.evaluate_columns(&[&x, &y]).expect("reference");
    let mut backends = vec![(Backend::Cpu(CpuBackend), Fusion::Fused)];
    if let Some(context) = gpu() {
        backends.push((Backend::Gpu(context.clone()), Fusion::Fused));
        backends.push((Backend::Gpu(context), Fusion::Unfused));
    }
    for (backend, fusion) in backends {
        let out = backend
            .evaluate(&graph, &[&x, &y], fusion)
            .expect("evaluates");
        // Eleven terms, each within the contract of its own (inner errors
        // carried through tanh and sigmoid included). Terms reach about 10,
        // and derivatives more near the origin (atan2's 1/r): the relative
        // part scales with the larger of the two.
        let tolerance = |e: f64| 11.0 * ATOL + 4.0 * RTOL * e.abs().max(10.0);
        let mut worst_error = 0f64;
        for (what, actual, expected) in [
            ("value", &out.values, &values),
            ("derivative", &out.derivatives, &derivatives),
        ] {
            for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
                let error = (f64::from(a) - f64::from(e)).abs();
                worst_error = worst_error.max(error);
                assert!(
                    error <= tolerance(f64::from(e)),
                    "{fusion:?} {what} [{i}]: {a} vs {e}"
                );
            }
        }
        println!(
            "{fusion:?} on {}: worst error {worst_error:.3e}",
            backend.describe()
        );
    }
    // The reference's derivatives against central differences of its value.
    for i in 0..200 {
        let point = [f64::from(x[i]), f64::from(y[i])];
        let (_, gradient) = graph.evaluate(&point);
        for j in 0..2 {
            let h = 1e-6;
            let (mut up, mut down) = (point, point);
            up[j] += h;
            down[j] -= h;
            let fd = (graph.evaluate(&up).0 - graph.evaluate(&down).0) / (2.0 * h);
            assert!(
                (gradient[j] - fd).abs() <= 1e-6 * fd.abs().max(1.0),
                "d/d{} at {point:?}: {} vs {fd}",
                graph.inputs()[j],
                gradient[j]
            );
        }
    }
}

const PROGRAM: &str = "input x[4]\ninput t[4]\nparam w[4] c\n\
    a = atan2(x, w + c) + xlogy(softplus(x), sigmoid(w * x) + 0.5)\n\
    h = log1p(exp(-x^2)) + expm1(x / 4) + atan(x) + asinh(3 * x) + acosh(2 + x^2)\n\
    g = atanh(tanh(x) / 2) + erf(x) + gelu_exact(x) + xlogx(sigmoid(x))\n\
    y = a + h * g\n\
    loss = sum(y * t)\n\
    output loss";

fn bind<'a>(vars: &'a [(&'a str, Vec<f32>)]) -> Vec<(&'a str, &'a [f32])> {
    vars.iter().map(|(n, v)| (*n, v.as_slice())).collect()
}

/// A program using every new function: the gradient (the compiled kernel
/// on the GPU) against the CPU path and central differences of the f64
/// oracle, and the Jacobian of the vector `y` (the structured plan) against
/// the oracle's dense Jacobian.
#[test]
fn every_new_function_in_a_program() {
    let mut rng = rng("program");
    let batch = 257;
    let vars = vec![
        ("x", uniform(&mut rng, batch * 4, -2.0, 2.0)),
        ("t", uniform(&mut rng, batch * 4, -1.0, 1.0)),
        ("w", uniform(&mut rng, 4, 0.5, 1.5)),
        ("c", uniform(&mut rng, 1, -0.5, 0.5)),
    ];
    let bound = bind(&vars);
    let program = Program::parse(PROGRAM).expect("parses");
    let names = ["x", "w", "c"];
    let cpu = Backend::Cpu(CpuBackend)
        .gradient(&program, &names, &bound, Reduction::PerSample)
        .expect("cpu");
    // The CPU path against central differences of the oracle, sample 0.
    let point: Vec<Vec<f64>> = program
        .variables
        .iter()
        .map(|v| {
            let (_, data) = vars.iter().find(|(n, _)| *n == v.name).expect("bound");
            let size = v.shape.size();
            let row = if v.kind == chainrule::program::Kind::Input {
                &data[..size]
            } else {
                &data[..]
            };
            row.iter().map(|&x| f64::from(x)).collect()
        })
        .collect();
    let value = |p: &[Vec<f64>]| -> f64 {
        let refs: Vec<&[f64]> = p.iter().map(Vec::as_slice).collect();
        program.forward(&refs).expect("forward")[program.output][0]
    };
    for gradient in &cpu.gradients {
        let v = program.variable(&gradient.name).expect("declared");
        let size = program.variables[v].shape.size();
        for e in 0..size {
            let h = 1e-6;
            let (mut up, mut down) = (point.clone(), point.clone());
            up[v][e] += h;
            down[v][e] -= h;
            let fd = (value(&up) - value(&down)) / (2.0 * h);
            let got = f64::from(gradient.values[e]);
            assert!(
                (got - fd).abs() <= 1e-4 * fd.abs().max(1.0),
                "d/d{}[{e}]: cpu {got} vs central difference {fd}",
                gradient.name
            );
        }
    }
    let Some(context) = gpu() else { return };
    let gpu_backend = Backend::Gpu(context);
    for reduction in [Reduction::PerSample, Reduction::Mean] {
        let g = gpu_backend
            .gradient(&program, &names, &bound, reduction)
            .expect("gpu");
        let c = Backend::Cpu(CpuBackend)
            .gradient(&program, &names, &bound, reduction)
            .expect("cpu");
        for (a, b) in g.gradients.iter().zip(&c.gradients) {
            for (i, (x, y)) in a.values.iter().zip(&b.values).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                    "{reduction:?} d/d{}[{i}]: gpu {x} vs cpu {y}",
                    a.name
                );
            }
        }
    }
    // The Jacobian of y with respect to x.
    let text = PROGRAM.replace("output loss", "output y");
    let program = Program::parse(&text).expect("parses");
    let out = gpu_backend
        .jacobian(&program, "x", &bound)
        .expect("gpu jacobian");
    let dense = out.jacobian.to_dense(out.batch);
    let x_index = program.variable("x").expect("x");
    for s in [0, 100, batch - 1] {
        let point: Vec<Vec<f64>> = program
            .variables
            .iter()
            .map(|v| {
                let (_, data) = vars.iter().find(|(n, _)| *n == v.name).expect("bound");
                let size = v.shape.size();
                let row = if v.kind == chainrule::program::Kind::Input {
                    &data[s * size..(s + 1) * size]
                } else {
                    &data[..]
                };
                row.iter().map(|&x| f64::from(x)).collect()
            })
            .collect();
        let refs: Vec<&[f64]> = point.iter().map(Vec::as_slice).collect();
        let want = program.jacobian_dense(&refs, x_index).expect("oracle");
        let got = &dense[s * 16..(s + 1) * 16];
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "sample {s} J[{k}]: gpu {g} vs oracle {w}"
            );
        }
    }
}

/// `a ^ b` at an infinite exponent: IEEE's limits for the value and the
/// formulas b a^(b-1) and a^b ln a at them, NaN for Inf times 0, which is
/// what JAX gives (jax.grad of `a ** b` in float64, recorded here), on
/// every backend and plan.
#[test]
fn pow_at_an_infinite_exponent_takes_the_limits_as_jax() {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    let jax = [
        ((0.5, inf), (0.0, nan, 0.0)),
        ((2.0, inf), (inf, inf, inf)),
        ((1.0, inf), (1.0, inf, 0.0)),
        ((0.0, inf), (0.0, nan, 0.0)),
        ((-0.5, inf), (0.0, nan, nan)),
        ((-2.0, inf), (inf, inf, nan)),
        ((-1.0, inf), (1.0, inf, nan)),
        ((0.5, -inf), (inf, -inf, -inf)),
        ((2.0, -inf), (0.0, nan, 0.0)),
        ((0.0, -inf), (inf, -inf, nan)),
        ((1.0, -inf), (1.0, -inf, 0.0)),
        ((inf, inf), (inf, inf, inf)),
        ((inf, -inf), (0.0, nan, nan)),
    ];
    let same = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    for ((a, b), (v, da, db)) in jax {
        let (gv, gda, gdb) = BinaryOp::Pow.value_and_partials(a, b);
        assert!(
            same(gv, v) && same(gda, da) && same(gdb, db),
            "{a}^{b}: ({gv}, {gda}, {gdb}), JAX ({v}, {da}, {db})"
        );
    }
    let magnitudes = [0.0, 1e-30, 0.5, 1.0, 2.0, 1e30, f32::MAX, f32::INFINITY];
    let bases: Vec<f32> = magnitudes.iter().flat_map(|&m| [m, -m]).collect();
    let a: Vec<f32> = bases.iter().flat_map(|&x| [x, x]).collect();
    let b: Vec<f32> = bases
        .iter()
        .flat_map(|_| [f32::INFINITY, f32::NEG_INFINITY])
        .collect();
    check_binary(BinaryOp::Pow, "a ^ b", &a, &b);
}
