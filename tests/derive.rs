//! Derivatives as transformations of the IR: the op tables' derivative
//! expressions against the f64 reference, the JVP, VJP and gradient
//! programs against the independent forward-mode oracle, their
//! composition (a JVP of a gradient: Hessian-vector products) against
//! central differences of the gradient, and derived programs run on every
//! backend.

mod common;

use chainrule::ops::{BinaryOp, UnaryOp};
use chainrule::program::{Kind, Program};
use common::programs::{assert_close, backends, bind, parse, random_values};
use common::{rng, uniform};
use rand::rngs::StdRng;

/// The output of `program` at `values` (one slice per variable), in f64.
fn run(program: &Program, values: &[Vec<f64>]) -> Vec<f64> {
    let refs: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
    let all = program
        .forward(&refs)
        .unwrap_or_else(|e| panic!("forward: {e}"));
    all[program.output].clone()
}

/// Whether a derivative from an expression agrees with the reference
/// (within 1e-7 absolute where it is near zero: the expressions' constants
/// are rounded to f32, as every constant of a program is).
fn agrees(got: f64, want: f64) -> bool {
    got == want
        || (got.is_nan() && want.is_nan())
        || (got - want).abs() <= 1e-6 * want.abs()
        || (got - want).abs() <= 1e-7
}

/// The points every table expression is checked at: the edges and a
/// sweep (NaN aside: there the reference's derivative is NaN, and a
/// derived program's value is NaN while its derivative may not be).
fn points(rng: &mut StdRng) -> Vec<f64> {
    let mut xs = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        -3.0,
        12.5,
        -12.5,
        40.0,
        -40.0,
        1e-30,
        -1e-30,
        1e30,
        -1e30,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    xs.extend(uniform(rng, 200, -20.0, 20.0).into_iter().map(f64::from));
    xs.extend(uniform(rng, 50, -1.0, 1.0).into_iter().map(f64::from));
    xs
}

#[test]
fn every_unary_derivative_expression_matches_the_reference() {
    let mut rng = rng("unary derivative expressions");
    let xs = points(&mut rng);
    let ops = UnaryOp::catalogue().into_iter().chain([
        UnaryOp::LeakyRelu { alpha: 0.2 },
        UnaryOp::LeakyRelu { alpha: 0.0 },
        UnaryOp::Elu { alpha: 0.5 },
        UnaryOp::Pow { exponent: 3.0 },
        UnaryOp::Pow { exponent: 2.5 },
        UnaryOp::Pow { exponent: -1.0 },
        UnaryOp::Pow { exponent: 0.0 },
    ]);
    for op in ops {
        let text = match op {
            UnaryOp::Pow { exponent } => format!("x^{exponent}"),
            _ => match op.parameter() {
                Some(p) => format!("{}(x, {p})", op.name()),
                None => format!("{}(x)", op.name()),
            },
        };
        let program = Program::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let gradient = program
            .gradient_program("x")
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        for &x in &xs {
            let want = op.value_and_derivative(x).1;
            let got = run(&gradient, &[vec![x]])[0];
            assert!(
                agrees(got, want),
                "{op}: the derivative expression `{}` gives {got} at x = {x}, the reference {want}",
                op.derivative_expression()
            );
        }
    }
}

#[test]
fn every_binary_partial_expression_matches_the_reference() {
    let mut rng = rng("binary partial expressions");
    let mut xs = points(&mut rng);
    xs.truncate(40);
    let cases = [
        (BinaryOp::Add, "x + y"),
        (BinaryOp::Sub, "x - y"),
        (BinaryOp::Mul, "x * y"),
        (BinaryOp::Div, "x / y"),
        (BinaryOp::Pow, "x ^ y"),
        (BinaryOp::Min, "min(x, y)"),
        (BinaryOp::Max, "max(x, y)"),
        (BinaryOp::Atan2, "atan2(x, y)"),
        (BinaryOp::Xlogy, "xlogy(x, y)"),
        (BinaryOp::Lt, "x < y"),
        (BinaryOp::Ge, "x >= y"),
    ];
    for (op, text) in cases {
        let program = Program::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let dx = program.gradient_program("x").expect("d/dx");
        let dy = program.gradient_program("y").expect("d/dy");
        for &x in &xs {
            for &y in &xs {
                let (value, want_x, want_y) = op.value_and_partials(x, y);
                if value.is_nan() {
                    // The reference's partials are NaN; a derived
                    // program's value is NaN there too.
                    continue;
                }
                let got_x = run(&dx, &[vec![x], vec![y]])[0];
                let got_y = run(&dy, &[vec![x], vec![y]])[0];
                let [ex, ey] = op.partial_expressions();
                assert!(
                    agrees(got_x, want_x),
                    "{text}: d/dx = `{ex}` gives {got_x} at ({x}, {y}), the reference {want_x}"
                );
                assert!(
                    agrees(got_y, want_y),
                    "{text}: d/dy = `{ey}` gives {got_y} at ({x}, {y}), the reference {want_y}"
                );
            }
        }
    }
    // where(c, a, b): 1 towards the selected branch, 0 towards the other
    // and the condition.
    let program = parse("where(c, a, b)");
    for (wrt, c, want) in [
        ("a", 1.0, 1.0),
        ("a", 0.0, 0.0),
        ("b", 0.0, 1.0),
        ("c", 1.0, 0.0),
    ] {
        let derived = program.gradient_program(wrt).expect("a gradient");
        let got = run(&derived, &[vec![c], vec![2.0], vec![3.0]])[0];
        assert_eq!(got, want, "d where / d {wrt} at c = {c}");
    }
}

/// Programs that use every operation of the IR.
const PROGRAMS: [(&str, &str); 8] = [
    (
        "mlp",
        "input x[4]
         param W1[5,4]  b1[5]  W2[3,5]
         h = tanh(W1 @ x + b1)
         output sigmoid(W2 @ h) * 2 - x[0:3]",
    ),
    (
        "softmax and its loss",
        "input z[5]  t[5]
         output [cross_entropy(z, t), logsumexp(z * z), sum(softmax(z) * t), mean(log_softmax(z))]",
    ),
    (
        "selections",
        "input x[6]
         a = x[1:4] * x[0]
         output [a, x[5], dot(a, x[2:5]), sum(x) / 6, prod(x[0:4])]",
    ),
    (
        "matrices",
        "input A[3,3]  v[3]
         param V[3,2]
         output [A @ v, v @ A @ V, norm(A), max(v)]",
    ),
    (
        "element-wise edges",
        "input x[4]  y[4]
         output where(x > 0, sqrt(abs(x) + 1), x^3) + atan2(y, x) + min(x, y) * relu(y) + x @ y",
    ),
    (
        "scalar inputs",
        "input s  r
         output [s * r, sin(s) / (1 + r^2), exp(-s * r), softplus(s - r)]",
    ),
    (
        "a scalar spread over a vector",
        "input x[3]  s
         output (x + s) * s + s",
    ),
    (
        "gelu and friends",
        "input x[4]
         output gelu(x) + gelu_exact(x) * silu(x) + elu(x, 0.5) + leaky_relu(x, 0.1) + log1p(x^2)",
    ),
];

/// Random values for every variable of `program` (one sample).
fn values(program: &Program, rng: &mut StdRng) -> Vec<Vec<f64>> {
    program
        .variables
        .iter()
        .map(|v| {
            uniform(rng, v.shape.size(), -1.5, 1.5)
                .into_iter()
                .map(f64::from)
                .collect()
        })
        .collect()
}

fn random(rng: &mut StdRng, n: usize) -> Vec<f64> {
    uniform(rng, n, -1.0, 1.0)
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Within 1e-7: a partial folded from constants (1 / 6 for `x / 6`) is a
/// constant, rounded to f32 as every constant of a program is.
#[test]
fn jvp_and_vjp_programs_match_the_oracle() {
    let mut rng = rng("jvp and vjp programs");
    for (label, text) in PROGRAMS {
        let program = parse(text);
        let m = program.shapes[program.output].size();
        for (v, variable) in program.variables.iter().enumerate() {
            let name = &variable.name;
            let n = variable.shape.size();
            for _ in 0..3 {
                let at = values(&program, &mut rng);
                let refs: Vec<&[f64]> = at.iter().map(Vec::as_slice).collect();
                let jacobian = program.jacobian_dense(&refs, v).expect("the oracle");

                let tangent = random(&mut rng, n);
                let jvp = program
                    .jvp_program(name)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                let mut with_tangent = at.clone();
                with_tangent.push(tangent.clone());
                let want: Vec<f64> = (0..m)
                    .map(|i| (0..n).map(|j| jacobian[i * n + j] * tangent[j]).sum())
                    .collect();
                assert_close(
                    &format!("{label}: JVP program in {name}"),
                    &run(&jvp, &with_tangent),
                    &want,
                    1e-7,
                );

                let matrix_param = variable.kind == Kind::Param
                    && matches!(variable.shape, chainrule::program::Shape::Matrix(..));
                if matrix_param {
                    assert!(program.vjp_program(name).is_err(), "{label}: VJP in {name}");
                    continue;
                }
                let cotangent = random(&mut rng, m);
                let vjp = program
                    .vjp_program(name)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                let mut with_cotangent = at.clone();
                with_cotangent.push(cotangent.clone());
                let want: Vec<f64> = (0..n)
                    .map(|j| (0..m).map(|i| cotangent[i] * jacobian[i * n + j]).sum())
                    .collect();
                assert_close(
                    &format!("{label}: VJP program in {name}"),
                    &run(&vjp, &with_cotangent),
                    &want,
                    1e-7,
                );
            }
        }
    }
}

/// Scalar losses whose Hessians are not trivial.
const LOSSES: [(&str, &str); 5] = [
    (
        "neuron",
        "input x[4]  t
         param w[4]  b
         output mse(sigmoid(dot(w, x) + b), t)",
    ),
    (
        "network",
        "input x[3]  t[2]
         param W1[4,3]  W2[2,4]
         output cross_entropy(W2 @ tanh(W1 @ x), t)",
    ),
    (
        "rosenbrock",
        "input x[5]
         output sum(100 * (x[1:5] - x[0:4]^2)^2 + (1 - x[0:4])^2)",
    ),
    (
        "scalar",
        "input s  r
         output exp(s * r) / (1 + s^2) + atan2(s, r) + logsumexp([s, r, s * r])",
    ),
    (
        "product",
        "input x[5]
         output prod(x) + prod(x[1:3] * x[0])",
    ),
];

#[test]
fn hessian_vector_products_compose_from_the_transformations() {
    let mut rng = rng("hessian-vector products");
    for (label, text) in LOSSES {
        let program = parse(text);
        for v in program.inputs() {
            let name = program.variables[v].name.clone();
            let n = program.variables[v].shape.size();
            let gradient = program.gradient_program(&name).expect("a gradient program");
            let hvp = gradient.jvp_program(&name).expect("its JVP");
            for _ in 0..3 {
                let at = values(&program, &mut rng);
                let direction = random(&mut rng, n);
                let mut with_direction = at.clone();
                with_direction.push(direction.clone());
                let got = run(&hvp, &with_direction);
                // Central differences of the oracle's gradient along the
                // direction: independent of every transformation.
                let h = 1e-5;
                let gradient_at = |sign: f64| {
                    let mut moved = at.clone();
                    for (x, d) in moved[v].iter_mut().zip(&direction) {
                        *x += sign * h * d;
                    }
                    let refs: Vec<&[f64]> = moved.iter().map(Vec::as_slice).collect();
                    program.jacobian_dense(&refs, v).expect("the oracle")
                };
                let (plus, minus) = (gradient_at(1.0), gradient_at(-1.0));
                let want: Vec<f64> = plus
                    .iter()
                    .zip(&minus)
                    .map(|(p, m)| (p - m) / (2.0 * h))
                    .collect();
                assert_close(&format!("{label}: H v in {name}"), &got, &want, 1e-6);
            }
        }
    }
}

#[test]
fn derived_programs_run_on_every_backend() {
    let mut rng = rng("derived programs on the backends");
    let program = parse(LOSSES[1].1);
    let hvp = program
        .gradient_program("x")
        .and_then(|g| g.jvp_program("x"))
        .expect("an HVP program");
    let batch = 9;
    let data = random_values(&hvp, batch, (-1.0, 1.0), &mut rng);
    let bound = bind(&hvp, &data);
    let mut want = Vec::new();
    for b in 0..batch {
        let at = common::programs::sample(&hvp, &data, b);
        want.extend(run(&hvp, &at));
    }
    for (backend, label) in backends() {
        let got = backend
            .values(&hvp, &bound)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let got: Vec<f64> = got.iter().map(|&x| f64::from(x)).collect();
        assert_close(&format!("{label}: H v of the network"), &got, &want, 1e-4);
        // The Hessian itself: the Jacobian of the gradient program.
        let gradient = program.gradient_program("x").expect("a gradient program");
        let bound: Vec<(&str, &[f32])> = bound
            .iter()
            .copied()
            .filter(|(n, _)| gradient.variable(n).is_some())
            .collect();
        let hessian = backend
            .jacobian(&gradient, "x", &bound)
            .unwrap_or_else(|e| panic!("{label}: the Hessian: {e}"));
        let x = gradient.variable("x").expect("x");
        let mut want = Vec::new();
        for b in 0..batch {
            let at = common::programs::sample(&gradient, &data, b);
            let refs: Vec<&[f64]> = at.iter().map(Vec::as_slice).collect();
            want.extend(gradient.jacobian_dense(&refs, x).expect("the oracle"));
        }
        let got: Vec<f64> = hessian.jacobian.to_dense(hessian.batch);
        assert_close(
            &format!("{label}: the Hessian of the network"),
            &got,
            &want,
            1e-4,
        );
    }
}

#[test]
fn transformations_refuse_what_they_cannot_do() {
    let program = parse(LOSSES[1].1);
    let e = program.vjp_program("W1").expect_err("a matrix param");
    assert!(e.to_string().contains("matrix param"), "{e}");
    let e = program.jvp_program("nope").expect_err("no such variable");
    assert!(e.to_string().contains("not a variable"), "{e}");
    let e = parse("input x[2]\noutput x * 2")
        .gradient_program("x")
        .expect_err("a vector output");
    assert!(e.to_string().contains("scalar output"), "{e}");
    // An unused variable's derivative is zero, and the names stay distinct.
    let program = parse("input x[2]  dx[2]  u\noutput sum(x * dx)");
    let jvp = program.jvp_program("x").expect("a JVP");
    assert_eq!(jvp.variables.last().map(|v| v.name.as_str()), Some("dx_"));
    let vjp = program.vjp_program("u").expect("a VJP");
    assert_eq!(vjp.variables.last().map(|v| v.name.as_str()), Some("u_"));
    let got = run(
        &vjp,
        &[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0], vec![1.0]],
    );
    assert_eq!(got, vec![0.0]);
}

/// The zero-factor rule holds in derived programs as in the compiled
/// kernels: a path through a zero partial (a branch not taken, an element
/// not selected, a variable not read) adds nothing, even where the other
/// factor is NaN or infinite.
#[test]
fn derived_programs_keep_the_zero_factor_rule() {
    let nan = f64::NAN;
    type Case = (&'static str, &'static str, Vec<Vec<f64>>, Vec<f64>);
    let cases: [Case; 5] = [
        (
            "input x[3]\noutput max(relu(x))",
            "x",
            vec![vec![3.0, -1.0, 2.0]],
            vec![1.0, 0.0, 0.0],
        ),
        (
            "input x[3]\noutput min(x)",
            "x",
            vec![vec![1.0, 0.0, 2.0]],
            vec![0.0, 1.0, 0.0],
        ),
        (
            "input x\noutput where(x > 0, sqrt(x), 0)",
            "x",
            vec![vec![-1.0]],
            vec![0.0],
        ),
        (
            "input x[3]\noutput x[0] * 2",
            "x",
            vec![vec![1.0, nan, 2.0]],
            vec![2.0, 0.0, 0.0],
        ),
        (
            "input x  y\noutput y^2",
            "x",
            vec![vec![nan], vec![3.0]],
            vec![0.0],
        ),
    ];
    for (text, wrt, at, want) in cases {
        let program = parse(text);
        let gradient = program.gradient_program(wrt).expect("a gradient program");
        assert_eq!(run(&gradient, &at), want, "the gradient program of {text}");
        for (backend, label) in backends() {
            let bound: Vec<(String, Vec<f32>)> = gradient
                .variables
                .iter()
                .zip(&at)
                .map(|(v, x)| (v.name.clone(), x.iter().map(|&x| x as f32).collect()))
                .collect();
            let bound: Vec<(&str, &[f32])> = bound
                .iter()
                .map(|(n, x)| (n.as_str(), x.as_slice()))
                .collect();
            let got = backend
                .values(&gradient, &bound)
                .unwrap_or_else(|e| panic!("{label}: {text}: {e}"));
            let got: Vec<f64> = got.iter().map(|&g| f64::from(g)).collect();
            assert_eq!(got, want, "{label}: the gradient program of {text}");
        }
    }
    // A JVP through a concatenation with a NaN element that is not moved.
    let program = parse("input x  y\noutput [x, y]");
    let jvp = program.jvp_program("x").expect("a JVP");
    assert_eq!(
        run(&jvp, &[vec![1.0], vec![nan], vec![1.0]]),
        vec![1.0, 0.0]
    );
    // norm's rescaled branches overflow where they are not taken.
    let program = parse("input x[2]\noutput norm(x)");
    let jvp = program.jvp_program("x").expect("a JVP");
    let vars = [("x", &[1.0f32, 1.0][..]), ("dx", &[1.0f32, -1.0][..])];
    for (backend, label) in backends() {
        let got = backend.values(&jvp, &vars).expect("values");
        assert!(
            got[0].abs() < 1e-6,
            "{label}: d norm along [1, -1] at [1, 1]: {got:?}"
        );
    }
}

/// Many slices of one vector are placed once: prod's gradient program
/// holds the products of the others as 3n products of its n elements
/// (slices), and the JVP of that (a Hessian-vector product) places their
/// cotangents once, so both grow with the vector's length, not its square.
#[test]
fn slices_of_one_vector_are_placed_once() {
    let n = 2000;
    let program = parse(&format!("input x[{n}]\noutput prod(x)"));
    let gradient = program.gradient_program("x").expect("a gradient program");
    let hvp = gradient.jvp_program("x").expect("its JVP");
    for (what, derived) in [("gradient", &gradient), ("Hessian-vector", &hvp)] {
        let elements: usize = derived.shapes.iter().map(|s| s.size()).sum();
        assert!(
            elements < 200 * n,
            "the {what} program of prod(x[{n}]) holds {elements} elements in {} nodes",
            derived.nodes.len()
        );
    }
    let x: Vec<f64> = (0..n).map(|i| 1.0 + 1e-4 * (i % 7) as f64).collect();
    let got = run(&gradient, std::slice::from_ref(&x));
    let refs: Vec<&[f64]> = vec![&x];
    let want = program.jacobian_dense(&refs, 0).expect("the oracle");
    assert_close("d prod / dx", &got, &want, 1e-12);
    // H v with v = e_0: row 0 of the Hessian, prod(x) / (x_0 x_j) off the
    // diagonal and 0 on it.
    let mut direction = vec![0.0; n];
    direction[0] = 1.0;
    let got = run(&hvp, &[x.clone(), direction]);
    let total: f64 = x.iter().product();
    for (j, &h) in got.iter().enumerate() {
        let want = if j == 0 { 0.0 } else { total / (x[0] * x[j]) };
        assert!(
            (h - want).abs() <= 1e-12 * want.abs().max(1.0),
            "H[0, {j}] of prod: {h}, not {want}"
        );
    }
}

#[test]
fn atan2_partials_are_scaled() {
    let program = parse("input x[2]\noutput atan2(x[0], x[1])");
    let gradient = program.gradient_program("x").expect("a gradient program");
    for (scale, label) in [(1e-30f32, "tiny"), (1e30, "huge")] {
        for (backend, name) in backends() {
            let x = [scale, scale];
            let got = backend.values(&gradient, &[("x", &x[..])]).expect("values");
            let want = 0.5 / f64::from(scale);
            for (g, sign) in got.iter().zip([1.0, -1.0]) {
                let rel = (f64::from(*g) - sign * want).abs() / want;
                assert!(rel < 1e-5, "{name}, {label}: {got:?}, want ±{want:e}");
            }
        }
    }
}

#[test]
fn names_are_checked() {
    use chainrule::program::InputOrder;
    let given = |names: &[&str]| {
        Program::parse_expression(
            "x + 1",
            &InputOrder::Given(names.iter().map(|n| n.to_string()).collect()),
        )
    };
    for names in [&["x", "x"][..], &["x", ""], &["x", "1a"], &["x", "sin"]] {
        let e = given(names).expect_err("a bad input order");
        assert!(
            e.to_string().contains("twice") || e.to_string().contains("cannot name"),
            "{e}"
        );
    }
    let mut program = parse("input x  y\noutput x * y");
    program.variables[1].name = "x".into();
    assert!(program.check().is_err());
    assert!(program.jvp_program("x").is_err());
    let mut program = parse("input x[3]\noutput sum(x)");
    program.output = 99;
    assert!(program.jvp_program("x").is_err());
    assert!(program.gradient_program("x").is_err());
}

/// Second derivatives at a pole and at NaN, as JAX gives them (jax.grad
/// twice): a derivative expression's own derivative must not lose the
/// pole's infinity to the zero-factor rule or turn NaN into 0; and two
/// spellings of one function agree, at -0 too. Outside the domain
/// chainrule's first derivative is NaN (ln'(-1); JAX gives -1), and so is
/// its second. f64 oracle and both backends.
#[test]
fn second_derivatives_keep_poles_and_nan() {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    let at = [0.0, f64::NAN, -1.0, -2.0, 4.0, -0.0];
    for (text, want) in [
        ("ln(x)", [-inf, nan, nan, nan, -1.0 / 16.0, -inf]),
        ("sqrt(x)", [-inf, nan, nan, nan, -1.0 / 32.0, inf]),
        ("x^0.5", [-inf, nan, nan, nan, -1.0 / 32.0, -inf]),
        ("reciprocal(x)", [inf, nan, -2.0, -0.25, 2.0 / 64.0, -inf]),
        ("1 / x", [inf, nan, -2.0, -0.25, 2.0 / 64.0, -inf]),
        ("log1p(x)", [-1.0, nan, -inf, nan, -1.0 / 25.0, -1.0]),
    ] {
        let program = parse(&format!("input x\noutput {text}"));
        // The first derivative at -0: IEEE's 1/x there (-Inf for ln and
        // sqrt, as JAX), from the gradient program as from the op table.
        let gradient = program.gradient_program("x").expect("a gradient program");
        let first = run(&gradient, &[vec![-0.0]])[0];
        let table = program.jacobian_dense(&[&[-0.0]], 0).expect("the oracle")[0];
        assert!(
            first == table || (first.is_nan() && table.is_nan()),
            "{text}' at -0: {first} from the gradient program, {table} from the table"
        );
        let hvp = program
            .gradient_program("x")
            .and_then(|g| g.jvp_program("x"))
            .expect("an HVP program");
        let same = |a: f64, b: f64| {
            a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * b.abs()
        };
        for (&x, &w) in at.iter().zip(&want) {
            let got = run(&hvp, &[vec![x], vec![1.0]])[0];
            assert!(same(got, w), "{text}'' at {x}: {got}, JAX {w}");
        }
        let xs: Vec<f32> = at.iter().map(|&x| x as f32).collect();
        let ones = vec![1.0f32; xs.len()];
        let tangent = &hvp.variables[1].name;
        for (backend, label) in backends() {
            let got = backend
                .values(&hvp, &[("x", &xs), (tangent.as_str(), &ones)])
                .unwrap_or_else(|e| panic!("{text} on the {label}: {e}"));
            for ((&x, &w), &g) in at.iter().zip(&want).zip(&got) {
                let g = f64::from(g);
                assert!(
                    same(g, w) || (w.is_finite() && (g - w).abs() <= 1e-5 * w.abs()),
                    "{text}'' at {x} on the {label}: {g}, JAX {w}"
                );
            }
        }
    }
}

/// ln and sqrt at -0 on every backend: IEEE's values and 1/x-style
/// derivatives, -Inf (as JAX's), from the op table's kernels.
#[test]
fn ln_and_sqrt_at_negative_zero() {
    for (op, value, derivative) in [
        (UnaryOp::Ln, f32::NEG_INFINITY, f32::NEG_INFINITY),
        (UnaryOp::Sqrt, -0.0, f32::NEG_INFINITY),
    ] {
        for (backend, label) in backends() {
            let out = backend
                .unary(op, &[-0.0, 0.0])
                .unwrap_or_else(|e| panic!("{op:?} on the {label}: {e}"));
            assert_eq!(
                (out.values[0].to_bits(), out.derivatives[0]),
                (value.to_bits(), derivative),
                "{op:?} at -0 on the {label}"
            );
            assert_eq!(
                out.derivatives[1],
                f32::INFINITY,
                "{op:?} at +0 on the {label}"
            );
        }
    }
}
