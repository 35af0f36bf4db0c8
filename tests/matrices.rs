//! Per-sample matrices and the functions built on selections: `A @ x` with
//! a per-sample `A`, `x @ A`, `A @ B`, `W @ A` with a param `W`,
//! `transpose`, `outer`, rows and elements `A[i]`, `A[i, j]`, `A[a:b]`,
//! element-wise operations on matrices, `cross`, `norm`, `prod`, and `max`
//! and `min` of one vector. Each is checked on the GPU and the CPU path
//! against the f64 oracle, the oracle against central differences, and
//! the edges (ties, zeros, infinities) against their stated values.

mod common;

use chainrule::program::{Program, Shape};
use chainrule::{Backend, CpuBackend};
use common::programs::{assert_close, backends, check, parse};
use common::rng;

#[test]
fn a_per_sample_matrix_times_a_vector() {
    let mut rng = rng("a_per_sample_matrix_times_a_vector");
    check(
        "A @ x",
        "input A[3,4]\ninput x[4]\ny = A @ x\noutput y",
        &["A", "x"],
        &mut rng,
    );
    check(
        "x @ A",
        "input A[3,4]\ninput x[3]\ny = tanh(x @ A)\noutput y",
        &["A", "x"],
        &mut rng,
    );
    check(
        "two vectors",
        "input a[4]\ninput b[4]\ny = a @ b\noutput y",
        &["a", "b"],
        &mut rng,
    );
}

#[test]
fn matrix_products_of_every_kind() {
    let mut rng = rng("matrix_products_of_every_kind");
    check(
        "A @ B",
        "input A[2,3]\ninput B[3,4]\nC = A @ B\noutput C",
        &["A", "B"],
        &mut rng,
    );
    check(
        "W @ A with a param W",
        "input A[3,2]\nparam W[4,3]\nC = sin(W @ A)\noutput C",
        &["A"],
        &mut rng,
    );
    check(
        "scaled param times a matrix",
        "input A[3,2]\nparam W[2,3]\ny = sum(-2 * W @ A)\noutput y",
        &["A"],
        &mut rng,
    );
    check(
        "a quadratic form",
        "input A[3,3]\ninput x[3]\ny = x @ (A @ transpose(A)) @ x\noutput y",
        &["A", "x"],
        &mut rng,
    );
}

#[test]
fn param_matrices_on_either_side() {
    let mut rng = rng("param_matrices_on_either_side");
    check(
        "x @ W",
        "input x[3]\nparam W[3,4] b[4]\ny = tanh(x @ W + b)\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "transpose(W) @ x and x @ transpose(W)",
        "input x[3]\nparam W[3,2] V[4,3]\ny = [transpose(W) @ x, x @ transpose(V) * 0.5]\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "A @ W and transpose(W) @ A",
        "input A[2,3]\nparam W[3,2]\nC = sin(A @ W) + transpose(W) @ transpose(A)\noutput C",
        &["A"],
        &mut rng,
    );
    check(
        "scaled x @ W",
        "input x[3]\nparam W[3,2]\ny = x @ (-2 * W)\noutput y",
        &["x"],
        &mut rng,
    );
}

/// The gradient with respect to a param used on either side of `@` (and
/// transposed), on every backend, against the f64 oracle.
#[test]
fn param_gradients_through_vector_matrix_products() {
    use chainrule::Reduction;
    let mut rng = rng("param_gradients_through_vector_matrix_products");
    let text = "input x[3]\nparam W[3,2] V[3,2]\nh = tanh(x @ W)\ny = sum(sin(V @ h) * x) + dot(h, transpose(V) @ x)\noutput y";
    let program = parse(text);
    let batch = 5;
    let x = common::uniform(&mut rng, batch * 3, -1.5, 1.5);
    let w = common::uniform(&mut rng, 6, -1.0, 1.0);
    let v = common::uniform(&mut rng, 6, -1.0, 1.0);
    let f64s = |d: &[f32]| d.iter().map(|&e| f64::from(e)).collect::<Vec<f64>>();
    for (name, index) in [("W", 1), ("V", 2)] {
        let mut expected = vec![0.0; 6];
        for b in 0..batch {
            let values = [f64s(&x[b * 3..b * 3 + 3]), f64s(&w), f64s(&v)];
            let refs: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
            let g = program.jacobian_dense(&refs, index).expect("the oracle");
            for (e, g) in expected.iter_mut().zip(g) {
                *e += g / batch as f64;
            }
        }
        for (backend, path) in backends() {
            let out = backend
                .gradient(
                    &program,
                    &[name],
                    &[("x", &x[..]), ("W", &w[..]), ("V", &v[..])],
                    Reduction::Mean,
                )
                .unwrap_or_else(|e| panic!("d/d{name} on the {path}: {e}"));
            let got = f64s(&out.gradients[0].values);
            assert_close(&format!("d/d{name} on the {path}"), &got, &expected, 1e-5);
        }
    }
}

#[test]
fn transpose_outer_and_indexing() {
    let mut rng = rng("transpose_outer_and_indexing");
    check(
        "transpose",
        "input A[2,3]\ny = transpose(A) * 2 + 1\noutput y",
        &["A"],
        &mut rng,
    );
    check(
        "outer",
        "input a[3]\ninput b[2]\nM = outer(a, b)\ny = M[2] + M[0, 1]\noutput y",
        &["a", "b"],
        &mut rng,
    );
    check(
        "rows and elements",
        "input A[4,3]\ny = [A[1, 2], A[3, 0:2], sum(A[1:3])]\noutput y",
        &["A"],
        &mut rng,
    );
    check(
        "element-wise on matrices",
        "input A[2,2]\ninput B[2,2]\ny = exp(A) * B - A / 2 + where(A > B, A, B) + max(A, 0.1)\noutput y",
        &["A", "B"],
        &mut rng,
    );
}

#[test]
fn cross_norm_prod_max_min() {
    let mut rng = rng("cross_norm_prod_max_min");
    check(
        "cross",
        "input a[3]\ninput b[3]\ny = cross(a, b)\noutput y",
        &["a", "b"],
        &mut rng,
    );
    check(
        "norm",
        "input x[5]\ny = norm(x) + norm(x[2])\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "norm of a matrix (Frobenius)",
        "input A[2,3]\ny = norm(A)\noutput y",
        &["A"],
        &mut rng,
    );
    // Every shape of the product's tree: one element, even, odd, and a
    // power of two.
    for n in [1, 2, 3, 7, 8] {
        check(
            &format!("prod of {n}"),
            &format!("input x[{n}]\ny = prod(x)\noutput y"),
            &["x"],
            &mut rng,
        );
    }
    check(
        "max and min",
        "input x[6]\ny = max(x) * 2 - min(x) + max(x[0], x[1])\noutput y",
        &["x"],
        &mut rng,
    );
}

/// The gradient of `text`'s scalar output with respect to `x` at one sample,
/// on each backend, beside the f64 oracle's.
fn gradients_at(text: &str, x: &[f32]) -> Vec<(String, Vec<f64>, Vec<f64>)> {
    let program = parse(text);
    let v = program.variable("x").expect("x");
    let at: Vec<f64> = x.iter().map(|&e| f64::from(e)).collect();
    let oracle = program.jacobian_dense(&[&at], v).expect("the oracle");
    let mut all = Vec::new();
    for (backend, path) in backends() {
        let out = backend
            .jacobian(&program, "x", &[("x", x)])
            .unwrap_or_else(|e| panic!("{text} on the {path}: {e}"));
        let jacobian = out.jacobian.try_to_dense(1).expect("dense");
        let value: Vec<f64> = out.values.iter().map(|&e| f64::from(e)).collect();
        all.push((path.to_string(), value, jacobian));
    }
    all.push(("oracle".to_string(), Vec::new(), oracle));
    all
}

#[test]
fn max_splits_ties_evenly_and_takes_the_limits() {
    let inf = f32::INFINITY;
    for (x, value, gradient) in [
        (vec![1.0, 3.0, 3.0, -2.0], 3.0, vec![0.0, 0.5, 0.5, 0.0]),
        (vec![0.1, 0.1, 0.1], 0.1, vec![1.0 / 3.0; 3]),
        (vec![-inf, 2.0], 2.0, vec![0.0, 1.0]),
        (vec![inf, 1.0, inf], f64::INFINITY, vec![0.5, 0.0, 0.5]),
        (vec![-inf, -inf], f64::NEG_INFINITY, vec![0.5, 0.5]),
        (vec![1e30, -1e30, 1e30], 1e30, vec![0.5, 0.0, 0.5]),
    ] {
        let text = format!("input x[{}]\ny = max(x)\noutput y", x.len());
        for (path, got, jacobian) in gradients_at(&text, &x) {
            if path != "oracle" {
                // Exact for one tie or a power of two of them; within an ulp
                // of the element for other counts (three here).
                let (got, want) = (got[0], value as f32 as f64);
                let ulp = f64::from(f32::EPSILON) * want.abs();
                assert!(
                    got == want || (got - want).abs() <= ulp,
                    "max({x:?}) on the {path}: {got}, expected {value}"
                );
            }
            assert_close(
                &format!("d max({x:?}) on the {path}"),
                &jacobian,
                &gradient,
                1e-6,
            );
        }
    }
    // A NaN element: NaN for the value and for every partial, on every path.
    for text in [
        "input x[3]\ny = max(x)\noutput y",
        "input x[3]\ny = min(x)\noutput y",
    ] {
        for x in [[1.0, f32::NAN, 2.0], [f32::NAN; 3]] {
            for (path, got, jacobian) in gradients_at(text, &x) {
                assert!(
                    got.iter().all(|v| v.is_nan()),
                    "{text} {x:?} on the {path}: {got:?}"
                );
                assert!(
                    jacobian.iter().all(|v| v.is_nan()),
                    "{text} {x:?}: gradient on the {path}: {jacobian:?}"
                );
            }
        }
    }
    let text = "input x[3]\ny = min(x)\noutput y";
    for (path, got, jacobian) in gradients_at(text, &[2.0, -1.0, -1.0]) {
        if path != "oracle" {
            assert_eq!(got, vec![-1.0], "min on the {path}");
        }
        assert_close(
            &format!("d min on the {path}"),
            &jacobian,
            &[0.0, 0.5, 0.5],
            1e-6,
        );
    }
}

/// Tied extremes near f32's largest: the value is the element itself, not
/// an overflowed sum of the ties.
#[test]
fn max_of_tied_huge_values_does_not_overflow() {
    for (text, x, value) in [
        (
            "input x[2]\ny = max(x)\noutput y",
            [f32::MAX, f32::MAX],
            f32::MAX,
        ),
        ("input x[2]\ny = max(x)\noutput y", [2e38, 2e38], 2e38),
        ("input x[2]\ny = min(x)\noutput y", [-2e38, -2e38], -2e38),
    ] {
        for (path, got, jacobian) in gradients_at(text, &x) {
            if path != "oracle" {
                assert_eq!(got, vec![f64::from(value)], "{text} {x:?} on the {path}");
            }
            assert_close(
                &format!("d {text} on the {path}"),
                &jacobian,
                &[0.5, 0.5],
                1e-6,
            );
        }
    }
}

#[test]
fn prod_and_norm_at_zero() {
    // prod: the gradient is the product of the others, exact at zeros.
    let text = "input x[4]\ny = prod(x)\noutput y";
    for (path, got, jacobian) in gradients_at(text, &[2.0, 0.0, 3.0, -1.0]) {
        if path != "oracle" {
            assert_eq!(got, vec![0.0], "prod on the {path}");
        }
        assert_close(
            &format!("d prod on the {path}"),
            &jacobian,
            &[0.0, -6.0, 0.0, 0.0],
            1e-6,
        );
    }
    // Zeros, infinities and NaN: the products of the others, as IEEE
    // arithmetic gives them (0 * Inf is NaN), on every path.
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    for (x, value, gradient) in [
        ([0.0, 0.0, 3.0, 1.0], 0.0, [0.0; 4]),
        ([inf, 2.0, 0.5, 1.0], inf, [1.0, inf, inf, inf]),
        ([0.0, inf, 1.0, 1.0], nan, [inf, 0.0, nan, nan]),
        ([-2.0, nan, 1.0, 1.0], nan, [nan, -2.0, nan, nan]),
    ] {
        let same = |a: f64, b: f32| (a.is_nan() && b.is_nan()) || a == f64::from(b);
        for (path, got, jacobian) in gradients_at(text, &x) {
            if path != "oracle" {
                assert!(same(got[0], value), "prod{x:?} on the {path}: {got:?}");
            }
            assert!(
                jacobian.iter().zip(&gradient).all(|(&a, &b)| same(a, b)),
                "d prod{x:?} on the {path}: {jacobian:?}, not {gradient:?}"
            );
        }
    }
    // norm of tiny and huge vectors: the sum of squares would underflow or
    // overflow f32, the norm does not.
    let text = "input x[3]\ny = norm(x)\noutput y";
    for (x, value, gradient) in [
        ([1e-23f32, 0.0, 0.0], 1e-23f64, [1.0, 0.0, 0.0]),
        ([3e-30, -4e-30, 0.0], 5e-30, [0.6, -0.8, 0.0]),
        ([3e25, 4e25, 0.0], 5e25, [0.6, 0.8, 0.0]),
        ([3.0, 4.0, 0.0], 5.0, [0.6, 0.8, 0.0]),
        // Where the chain rule's cotangent of the squares would overflow
        // or underflow f32 with a factor of 2^-100 or 2^100.
        ([3e19, -4e19, 0.0], 5e19, [0.6, -0.8, 0.0]),
        ([3e17, 4e17, 0.0], 5e17, [0.6, 0.8, 0.0]),
        ([3e-17, 4e-17, 0.0], 5e-17, [0.6, 0.8, 0.0]),
        ([3e-16, -4e-16, 0.0], 5e-16, [0.6, -0.8, 0.0]),
        (
            [3e38, 4e37, 0.0],
            3.026_549_2e38,
            [0.991_227_9, 0.132_163_7, 0.0],
        ),
        ([3e-38, 4e-38, 0.0], 5e-38, [0.6, 0.8, 0.0]),
    ] {
        for (path, got, jacobian) in gradients_at(text, &x) {
            if path != "oracle" {
                assert_close(&format!("norm({x:?}) on the {path}"), &got, &[value], 1e-6);
            }
            assert_close(
                &format!("d norm({x:?}) on the {path}"),
                &jacobian,
                &gradient,
                1e-6,
            );
        }
    }
    // norm: 0 at the origin, with gradient 0 there (the least-norm
    // subgradient, as abs'(0) = 0).
    let text = "input x[3]\ny = norm(x)\noutput y";
    for (path, got, jacobian) in gradients_at(text, &[0.0, 0.0, 0.0]) {
        if path != "oracle" {
            assert_eq!(got, vec![0.0], "norm on the {path}");
        }
        assert_eq!(jacobian, vec![0.0; 3], "d norm at 0 on the {path}");
    }
}

#[test]
fn matrix_inputs_keep_their_shape() {
    let program = parse("input A[2,3]\ninput x[3]\ny = A @ x\noutput y");
    let a = program.variable("A").expect("A");
    assert_eq!(program.variables[a].shape, Shape::Matrix(2, 3));
    assert_eq!(program.shapes[program.output], Shape::Vector(2));
    // A matrix output is its elements, row-major.
    let program = parse("input a[2]\ninput b[3]\nM = outer(a, b)\noutput M");
    assert_eq!(program.shapes[program.output], Shape::Vector(6));
    let backend = Backend::Cpu(CpuBackend);
    let out = backend
        .jacobian(
            &program,
            "a",
            &[("a", &[1.0, 2.0][..]), ("b", &[3.0, 4.0, 5.0][..])],
        )
        .expect("a Jacobian");
    assert_eq!(out.values, vec![3.0, 4.0, 5.0, 6.0, 8.0, 10.0]);
}

#[test]
fn shape_errors_name_both_sides() {
    for (text, needle) in [
        (
            "input A[2,3]\ninput x[2]\ny = A @ x\noutput y",
            "is [2,3] but x is [2]",
        ),
        (
            "input A[2,3]\ninput B[2,3]\ny = A @ B\noutput y",
            "columns to match",
        ),
        (
            "input A[2,3]\ninput x[6]\ny = A + x\noutput y",
            "where a matrix [2,3] or a scalar",
        ),
        (
            "input A[3,2]\nparam W[3,2]\ny = sum(A * W)\noutput y",
            "`W` is a param matrix [3,2]; a param matrix may only be multiplied with `@`",
        ),
        ("input A[2,3]\ny = A[2]\noutput y", "row 2 is out of range"),
        (
            "input A[3,3]\ny = A[1:1]\noutput y",
            "the rows `[1:1]` are empty",
        ),
        (
            "input x[2]\nparam W[3,2]\ny = x @ W\noutput y",
            "x is [2] but W is [3,2]",
        ),
        (
            "param A[2,3] B[3,2]\ninput x[2]\ny = A @ B @ x\noutput y",
            "products of two param matrices",
        ),
        (
            "input x[4]\ny = cross(x, x)\noutput y",
            "`cross` needs two vectors [3]",
        ),
        (
            "input x[4]\ny = transpose(x)\noutput y",
            "`transpose` needs a matrix",
        ),
        ("input A[2,2]\ny = dot(A, A)\noutput y", "is a matrix [2,2]"),
        (
            "input x[3]\ny = max(x, x, x)\noutput y",
            "one or two arguments",
        ),
    ] {
        let error = Program::parse(text).expect_err(text).to_string();
        assert!(error.contains(needle), "{text}:\n{error}\nlacks {needle:?}");
    }
    let big = "input A[300,300]\ninput B[300,300]\nC = A @ B\noutput C";
    let error = Program::parse(big).expect_err("too big").to_string();
    assert!(error.contains("at most 65536"), "{error}");
}

#[test]
fn the_builder_makes_the_same_matrix_program() {
    use chainrule::program::{Handle, ProgramBuilder};
    let mut b = ProgramBuilder::new();
    let r = b.input("R", &[3, 3]).expect("R");
    let x = b.input("X", &[3]).expect("X");
    let c = b.input("c", &[3]).expect("c");
    let p = b.name("p", &r.matmul(&(&x - &c))).expect("p");
    let q = b
        .name("q", &p.matmul(&r.transpose()).matmul(&p))
        .expect("q");
    let m = b.name("M", &(p.outer(&p) * q.sigmoid())).expect("M");
    let y = Handle::concat(&[
        &m.at(0, 1),
        &m.index(2),
        &r.slice(1, 3).reduce_max(),
        &p.cross(&x).norm(),
        &x.prod().reduce_min(),
    ]);
    let built = b.build("y", &y).expect("builds");
    // Non-finite constants keep their IEEE values.
    let mut nb = ProgramBuilder::new();
    let v = nb.input("v", &[2]).expect("v");
    let edges = nb
        .build(
            "e",
            &Handle::concat(&[&(&v * f64::INFINITY), &(&v * f64::NAN)]),
        )
        .expect("non-finite constants build");
    let out = Backend::Cpu(CpuBackend)
        .values(&edges, &[("v", &[1.0, -2.0][..])])
        .expect("values");
    assert_eq!(out[..2], [f32::INFINITY, f32::NEG_INFINITY]);
    assert!(out[2..].iter().all(|e| e.is_nan()), "{out:?}");
    let text = parse(
        "input R[3,3]\ninput X[3]\ninput c[3]
         p = R @ (X - c)
         q = p @ transpose(R) @ p
         M = outer(p, p) * sigmoid(q)
         y = [M[0, 1], M[2], max(R[1:3]), norm(cross(p, X)), min(prod(X))]
         output y",
    );
    assert_eq!(built.nodes, text.nodes);
    assert_eq!(built.shapes, text.shapes);
    let mut rng = rng("the_builder_makes_the_same_matrix_program");
    check(
        "built matrix program",
        &b.text("y", &y),
        &["R", "X", "c"],
        &mut rng,
    );
}

/// `x @ W` with a layer-sized param, too large for the fused kernels: the
/// structured plan's gradients and Jacobian (W^T as a Shared factor, the
/// weight's gradient as summed outer products) on the GPU match the CPU
/// path, per sample and as the batch mean.
#[test]
fn a_layer_written_x_at_w() {
    use chainrule::Reduction;
    let mut rng = rng("a_layer_written_x_at_w");
    let text = "input x[64]\nparam W[64,40]\ny = sum(tanh(x @ W))\noutput y";
    let program = parse(text);
    let x = common::uniform(&mut rng, 6 * 64, -1.0, 1.0);
    let w = common::uniform(&mut rng, 64 * 40, -0.2, 0.2);
    let variables = [("x", &x[..]), ("W", &w[..])];
    for reduction in [Reduction::Mean, Reduction::PerSample] {
        let cpu = Backend::Cpu(CpuBackend)
            .gradient(&program, &["W", "x"], &variables, reduction)
            .expect("the CPU path");
        for (backend, path) in backends() {
            let out = backend
                .gradient(&program, &["W", "x"], &variables, reduction)
                .unwrap_or_else(|e| panic!("on the {path}: {e}"));
            for (got, want) in out.gradients.iter().zip(&cpu.gradients) {
                let f64s = |v: &[f32]| v.iter().map(|&e| f64::from(e)).collect::<Vec<f64>>();
                assert_close(
                    &format!("d/d{} ({reduction:?}) on the {path}", got.name),
                    &f64s(&got.values),
                    &f64s(&want.values),
                    1e-5,
                );
            }
        }
    }
    let wide = parse("input x[64]\nparam W[64,40]\ny = tanh(x @ W)\noutput y");
    assert!(
        Backend::Cpu(CpuBackend)
            .jacobian(&wide, "x", &variables)
            .is_ok()
    );
    if let Some(context) = common::gpu() {
        let out = Backend::Gpu(context)
            .jacobian(&wide, "x", &variables)
            .expect("the GPU");
        let cpu = Backend::Cpu(CpuBackend)
            .jacobian(&wide, "x", &variables)
            .expect("the CPU path");
        assert_close(
            "a wide Jacobian on the GPU",
            &out.jacobian.try_to_dense(6).expect("dense"),
            &cpu.jacobian.try_to_dense(6).expect("dense"),
            1e-5,
        );
    }
}

/// Per-sample matrix programs on the GPU run in the fused kernels at any
/// Jacobian size their budgets allow (a 5 x 5 product's 25 x 25 Jacobian,
/// past the 16 passes other programs get before the structured plan takes
/// over); past the budgets (8 x 8) they run op by op, the products with
/// selections as gathers. Both against the CPU path.
#[test]
fn matrix_jacobians_on_the_gpu_within_and_past_the_fused_budget() {
    for k in [5usize, 8] {
        let program = parse(&format!("input A[{k},{k}] B[{k},{k}]\nC = A @ B\noutput C"));
        let a: Vec<f32> = (0..2 * k * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..2 * k * k).map(|i| (i as f32 * 0.71).cos()).collect();
        let bound = [("A", &a[..]), ("B", &b[..])];
        let cpu = Backend::Cpu(CpuBackend)
            .jacobian(&program, "A", &bound)
            .expect("the CPU path");
        let cpu = cpu.jacobian.try_to_dense(2).expect("dense");
        assert_eq!(cpu.len(), 2 * k.pow(4));
        let Some(context) = common::gpu() else {
            continue;
        };
        let out = Backend::Gpu(context)
            .jacobian(&program, "A", &bound)
            .unwrap_or_else(|e| panic!("{k} x {k} on the GPU: {e}"));
        assert_close(
            &format!("{k} x {k} A @ B on the GPU"),
            &out.jacobian.try_to_dense(2).expect("dense"),
            &cpu,
            1e-5,
        );
    }
}

/// prod of vectors longer than the fused kernels hold (256 elements) and
/// than one dispatch of the device's product takes (16,384): each sample's
/// value and gradient, the products of the others, on every backend beside
/// the f64 oracle, with one zero in one sample and two in another (exact
/// zeros and exact products of the others there), and of a param shared
/// by the batch. Each costs O(n) a sample.
#[test]
fn prod_of_long_vectors() {
    // The products of the others by another route than the library's
    // (which multiplies those before and after each element): the product
    // over the element where no element is zero; with one zero, the
    // product of the rest at the zero and 0 elsewhere; with two, zeros.
    fn others(x: &[f64]) -> Vec<f64> {
        let zeros: Vec<usize> = (0..x.len()).filter(|&i| x[i] == 0.0).collect();
        let rest: f64 = x.iter().filter(|&&e| e != 0.0).product();
        (0..x.len())
            .map(|i| match zeros[..] {
                [] => rest / x[i],
                [z] if z == i => rest,
                _ => 0.0,
            })
            .collect()
    }
    use chainrule::Reduction;
    let mut rng = rng("prod_of_long_vectors");
    for n in [300, 20_000] {
        let program = parse(&format!("input x[{n}]\ny = prod(x)\noutput y"));
        let batch = 3;
        // Factors near 1, so that the product stays well inside f32.
        let mut x: Vec<f32> = common::uniform(&mut rng, batch * n, 0.99, 1.01);
        x[n + n / 2 + 1] = 0.0;
        x[2 * n + 3] = 0.0;
        x[2 * n + n - 2] = 0.0;
        let mut oracle = Vec::new();
        let mut values = Vec::new();
        for b in 0..batch {
            let at: Vec<f64> = x[b * n..(b + 1) * n]
                .iter()
                .map(|&e| f64::from(e))
                .collect();
            oracle.extend(others(&at));
            values.push(at.iter().product::<f64>());
        }
        // The sample with one zero: the others' product at the zero only.
        assert!(oracle[n..2 * n].iter().filter(|&&g| g != 0.0).count() == 1);
        assert!(oracle[2 * n..].iter().all(|&g| g == 0.0));
        for (backend, path) in backends() {
            let out = backend
                .jacobian(&program, "x", &[("x", &x)])
                .unwrap_or_else(|e| panic!("prod of {n} on the {path}: {e}"));
            let got: Vec<f64> = out.values.iter().map(|&v| f64::from(v)).collect();
            assert_close(&format!("prod of {n} on the {path}"), &got, &values, 1e-6);
            let jacobian = out.jacobian.try_to_dense(batch).expect("dense");
            assert_close(
                &format!("d prod of {n} on the {path}"),
                &jacobian,
                &oracle,
                1e-6,
            );
            for b in 1..batch {
                let zeros = jacobian[b * n..(b + 1) * n]
                    .iter()
                    .zip(&oracle[b * n..(b + 1) * n])
                    .filter(|&(&g, &o)| o == 0.0 && g != 0.0)
                    .count();
                assert_eq!(zeros, 0, "d prod of {n} on the {path}, sample {b}");
            }
        }
        // A param's product, shared by the batch, times each sample's s.
        let program = parse(&format!("input s\nparam w[{n}]\ny = prod(w) * s\noutput y"));
        let w: Vec<f32> = common::uniform(&mut rng, n, 0.99, 1.01);
        let s = [0.5f32, -1.0, 2.0];
        let at: Vec<f64> = w.iter().map(|&e| f64::from(e)).collect();
        let mean_s = s.iter().map(|&v| f64::from(v)).sum::<f64>() / 3.0;
        let want: Vec<f64> = others(&at).iter().map(|g| g * mean_s).collect();
        for (backend, path) in backends() {
            let out = backend
                .gradient(&program, &["w"], &[("s", &s), ("w", &w)], Reduction::Mean)
                .unwrap_or_else(|e| panic!("d prod(w) of {n} on the {path}: {e}"));
            let got: Vec<f64> = out.gradients[0]
                .values
                .iter()
                .map(|&g| f64::from(g))
                .collect();
            assert_close(
                &format!("d mean(prod(w) s) of {n} on the {path}"),
                &got,
                &want,
                1e-6,
            );
        }
    }
}

/// prod where a running product would leave f32's range but no result
/// does: [1e30, 1e30, 1e-30, 1e-30] (and reversed), alone (the fused
/// kernels) and among ones up to 300 and 20,000 elements (the structured
/// plan), its value 1 and its partials 1e-30, 1e30 and 1; with a param in
/// the same fused kernel; and the sign of a zero product.
#[test]
fn prod_keeps_intermediate_products_in_range() {
    use chainrule::Reduction;
    let big: f32 = 1e30;
    let small: f32 = 1e-30;
    for n in [4, 300, 20_000] {
        for head in [[big, big, small, small], [small, small, big, big]] {
            let mut x = vec![1.0f32; n];
            x[..4].copy_from_slice(&head);
            let at: Vec<f64> = x.iter().map(|&e| f64::from(e)).collect();
            let value: f64 = at.iter().product();
            let gradient: Vec<f64> = at.iter().map(|&e| value / e).collect();
            let program = parse(&format!("input x[{n}]\ny = prod(x)\noutput y"));
            for (backend, path) in backends() {
                let out = backend
                    .jacobian(&program, "x", &[("x", &x)])
                    .unwrap_or_else(|e| panic!("prod of {n} on the {path}: {e}"));
                let label = format!("prod of {n} starting {head:?} on the {path}");
                let got = f64::from(out.values[0]);
                assert!((got - value).abs() <= 1e-6 * value, "{label}: {got}");
                let jacobian = out.jacobian.try_to_dense(1).expect("dense");
                for (i, (&g, &w)) in jacobian.iter().zip(&gradient).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 * w,
                        "{label}: partial {i} is {g}, not {w}"
                    );
                }
            }
        }
    }
    // A param's product beside an input in one fused kernel, and the
    // product read before the param: the kernel's names must not collide.
    let mut rng = rng("prod_keeps_intermediate_products_in_range");
    let x = common::uniform(&mut rng, 3 * 5, 0.5, 1.5);
    let w = common::uniform(&mut rng, 5, 0.5, 1.5);
    let f = |v: &[f32]| -> Vec<f64> { v.iter().map(|&e| f64::from(e)).collect() };
    let samples: Vec<Vec<f64>> = x.chunks(5).map(f).collect();
    let wf = f(&w);
    let product = |v: &[f64]| v.iter().product::<f64>();
    // The batch means of the two gradients in w, written out: prod(w)'s
    // partials times mean(sum(x)), and mean(prod(x) x).
    let mean_sum = samples.iter().map(|s| s.iter().sum::<f64>()).sum::<f64>() / 3.0;
    let first: Vec<f64> = (0..5).map(|j| product(&wf) / wf[j] * mean_sum).collect();
    let second: Vec<f64> = (0..5)
        .map(|j| samples.iter().map(|s| product(s) * s[j]).sum::<f64>() / 3.0)
        .collect();
    for (text, want) in [
        ("input x[5]\nparam w[5]\noutput prod(w) * sum(x)", first),
        ("input x[5]\nparam w[5]\noutput prod(x) * dot(w, x)", second),
    ] {
        let program = parse(text);
        for (backend, path) in backends() {
            let out = backend
                .gradient(&program, &["w"], &[("x", &x), ("w", &w)], Reduction::Mean)
                .unwrap_or_else(|e| panic!("{text} on the {path}: {e}"));
            let got = f(&out.gradients[0].values);
            assert_close(&format!("{text} on the {path}"), &got, &want, 1e-6);
        }
    }
    // -0, as IEEE's product: 2 * 0 * 3 * -1.5.
    let program = parse("input x[4]\ny = prod(x)\noutput y");
    for (backend, path) in backends() {
        let out = backend
            .values(&program, &[("x", &[2.0, 0.0, 3.0, -1.5])])
            .unwrap_or_else(|e| panic!("prod on the {path}: {e}"));
        assert!(
            out[0] == 0.0 && out[0].is_sign_negative(),
            "prod [2, 0, 3, -1.5] on the {path}: {}",
            out[0]
        );
    }
}
