//! Batched Jacobians of vector programs on the GPU against the CPU plan (f64)
//! and against an independent oracle (forward-mode duals per sample), for
//! Parr and Howard's vector results and for networks with fan-out; random
//! structured chains against the dense f64 product; JVP and VJP; chunked
//! batches; and every kind of bad input.

mod common;

use std::sync::Arc;

use chainrule::jacobian::{JacShape, Jacobian, Structure};
use chainrule::program::{Kind, Program};
use chainrule::schedule::chain::chain_order;
use chainrule::{
    Backend, ContextOptions, CpuBackend, Error, GpuContext, LimitsOverride, Reduction,
};
use common::{gpu, rng, uniform};
use rand::Rng;
use rand::rngs::StdRng;

/// Random values for every variable: inputs B x size in [-2, 2] (positive
/// where `positive`), parameters scaled by 1/sqrt(fan-in).
fn bindings(
    program: &Program,
    batch: usize,
    rng: &mut StdRng,
    positive: bool,
) -> Vec<(String, Vec<f32>)> {
    program
        .variables
        .iter()
        .map(|v| {
            let size = v.shape.size();
            let values = match v.kind {
                Kind::Input if positive => uniform(rng, batch * size, 0.5, 2.0),
                Kind::Input => uniform(rng, batch * size, -2.0, 2.0),
                Kind::Param => {
                    let scale = 1.0 / (size as f32).sqrt().max(1.0);
                    uniform(rng, size, -scale, scale)
                }
            };
            (v.name.clone(), values)
        })
        .collect()
}

fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(1e-300)).sqrt()
}

/// The error of a chain's product, relative to the product of the factors'
/// magnitudes |J_L| ... |J_1|: the scale of f32's rounding. A product that
/// nearly cancels (a row of one element and a column of one, summed over a
/// long inner dimension) would otherwise turn rounding into a large
/// relative error.
fn chain_error(result: &Jacobian, expected: &Jacobian, factors: &[Jacobian], batch: usize) -> f64 {
    let abs = |j: &Jacobian| {
        let mut j = j.clone();
        match &mut j {
            Jacobian::Identity { .. } => {}
            Jacobian::Diagonal { data, .. }
            | Jacobian::Shared { data, .. }
            | Jacobian::Dense { data, .. } => data.iter_mut().for_each(|x| *x = x.abs()),
        }
        j
    };
    let mut scale = abs(&factors[0]);
    for f in &factors[1..] {
        scale = scale.product(&abs(f), batch).expect("magnitudes");
    }
    let (result, expected, scale) = (
        result.to_dense(batch),
        expected.to_dense(batch),
        scale.to_dense(batch),
    );
    let diff: f64 = result
        .iter()
        .zip(&expected)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let norm: f64 = scale.iter().map(|y| y * y).sum();
    (diff / norm.max(1e-300)).sqrt()
}

/// The oracle: each sample's dense Jacobian by forward-mode duals, B x m x n.
fn oracle(program: &Program, vars: &[(String, Vec<f32>)], wrt: &str, batch: usize) -> Vec<f64> {
    let wrt_index = program.variable(wrt).expect("wrt exists");
    let mut out = Vec::new();
    for b in 0..batch {
        let per_sample: Vec<Vec<f64>> = program
            .variables
            .iter()
            .map(|v| {
                let data = &vars.iter().find(|(n, _)| *n == v.name).expect("bound").1;
                let size = v.shape.size();
                let start = if v.kind == Kind::Input { b * size } else { 0 };
                data[start..start + size]
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect()
            })
            .collect();
        let refs: Vec<&[f64]> = per_sample.iter().map(Vec::as_slice).collect();
        out.extend(program.jacobian_dense(&refs, wrt_index).expect("oracle"));
    }
    out
}

fn check_program(
    context: &Arc<GpuContext>,
    text: &str,
    wrt: &str,
    batch: usize,
    positive: bool,
    rng: &mut StdRng,
) {
    let program = Program::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let vars = bindings(&program, batch, rng, positive);
    let refs: Vec<(&str, &[f32])> = vars
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let gpu = Backend::Gpu(Arc::clone(context))
        .jacobian(&program, wrt, &refs)
        .expect("gpu jacobian");
    let cpu = Backend::Cpu(CpuBackend)
        .jacobian(&program, wrt, &refs)
        .expect("cpu jacobian");
    assert_eq!(
        gpu.jacobian.shape().structure,
        cpu.jacobian.shape().structure,
        "{text}: same structure"
    );
    let expected = oracle(&program, &vars, wrt, batch);
    let on_cpu = cpu.jacobian.to_dense(batch);
    let on_gpu = gpu.jacobian.to_dense(batch);
    let cpu_error = relative_error(&on_cpu, &expected);
    let gpu_error = relative_error(&on_gpu, &expected);
    assert!(
        cpu_error < 1e-12,
        "{text} d/d{wrt}: cpu plan vs oracle {cpu_error:e}"
    );
    assert!(
        gpu_error < 1e-5,
        "{text} d/d{wrt}: gpu vs oracle {gpu_error:e}"
    );
    for (g, c) in gpu.values.iter().zip(&cpu.values) {
        assert!(
            (g - c).abs() <= 1e-5 * (1.0 + c.abs()),
            "{text}: values {g} vs {c}"
        );
    }
}

#[test]
fn parr_and_howard_vector_results() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("vector results");
    let two = "input w[6]\ninput x[6]\n";
    for (body, wrts, positive) in [
        ("y = w + x", ["w", "x"], false),
        ("y = w - x", ["w", "x"], false),
        ("y = w * x", ["w", "x"], false),
        ("y = w / x", ["w", "x"], true),
        ("y = dot(w, x)", ["w", "x"], false),
        ("y = sum(w * x)", ["w", "x"], false),
    ] {
        for wrt in wrts {
            check_program(
                &context,
                &format!("{two}{body}\noutput y\n"),
                wrt,
                37,
                positive,
                &mut rng,
            );
        }
    }
    let scalar = "input x[6]\ninput z\n";
    for body in ["y = x + z", "y = x * z", "y = sum(x * z)"] {
        for wrt in ["x", "z"] {
            check_program(
                &context,
                &format!("{scalar}{body}\noutput y\n"),
                wrt,
                37,
                false,
                &mut rng,
            );
        }
    }
    check_program(
        &context,
        "input x[9]\ny = sum(x)\noutput y\n",
        "x",
        5,
        false,
        &mut rng,
    );
    check_program(
        &context,
        "input x[9]\ny = mean(x)\noutput y\n",
        "x",
        5,
        false,
        &mut rng,
    );
    // The vector chain rule example: [ln(x^2), sin(3x)] over a scalar x.
    check_program(&context, "ln(x^2)", "x", 300, true, &mut rng);
    check_program(&context, "sin(3*x)", "x", 300, false, &mut rng);
}

#[test]
fn networks_with_fan_out_match_the_oracle() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("networks");
    let mlp = "input x[13]\nparam W1[17,13] b1[17] W2[5,17] b2[5]\nh = sigmoid(W1 @ x + b1)\ny = tanh(W2 @ h + b2)\noutput y\n";
    check_program(&context, mlp, "x", 300, false, &mut rng);
    let residual = "input x[11]\nparam W[11,11]\ny = W @ x + x\noutput y\n";
    check_program(&context, residual, "x", 70, false, &mut rng);
    let branches = "input x[8]\nparam A[8,8] B[8,8]\nh = tanh(A @ x)\ny = softplus(B @ h) * h + exp(-h) * sum(h)\noutput y\n";
    check_program(&context, branches, "x", 70, false, &mut rng);
    let scalar_out =
        "input x[16]\nparam W[4,16] v[4]\ny = dot(v, relu(W @ x)) + mean(x * x)\noutput y\n";
    check_program(&context, scalar_out, "x", 257, false, &mut rng);
}

/// A batch larger than one segment: the tiny-limits context splits every
/// per-sample Jacobian across many buffers and dispatches.
#[test]
fn batches_split_into_segments_give_the_same_jacobian() {
    let Some(context) = gpu() else { return };
    let small = GpuContext::new(&ContextOptions {
        limits: LimitsOverride {
            max_binding_bytes: Some(4096),
            max_buffer_bytes: Some(4096),
            max_workgroups_per_dimension: Some(7),
        },
        ..ContextOptions::default()
    })
    .expect("small context");
    let mut rng = rng("segments");
    let text = "input x[10]\nparam W1[12,10] W2[6,12]\ny = tanh(W2 @ sigmoid(W1 @ x))\noutput y\n";
    let program = Program::parse(text).expect("parses");
    let vars = bindings(&program, 203, &mut rng, false);
    let refs: Vec<(&str, &[f32])> = vars
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let whole = Backend::Gpu(context)
        .jacobian(&program, "x", &refs)
        .expect("whole");
    let split = Backend::Gpu(Arc::new(small))
        .jacobian(&program, "x", &refs)
        .expect("split");
    let a = whole.jacobian.to_dense(203);
    let b = split.jacobian.to_dense(203);
    assert!(
        relative_error(&b, &a) < 1e-6,
        "segmented differs: {:e}",
        relative_error(&b, &a)
    );
}

#[test]
fn jvp_and_vjp_equal_products_with_the_jacobian() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("jvp vjp");
    let text = "input x[9]\nparam W[4,9]\ny = sigmoid(W @ x) * 2\noutput y\n";
    let program = Program::parse(text).expect("parses");
    let batch = 33;
    let vars = bindings(&program, batch, &mut rng, false);
    let refs: Vec<(&str, &[f32])> = vars
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let tangents = uniform(&mut rng, batch * 9, -1.0, 1.0);
    let cotangents = uniform(&mut rng, batch * 4, -1.0, 1.0);
    let dense = oracle(&program, &vars, "x", batch);
    for backend in [Backend::Gpu(Arc::clone(&context)), Backend::Cpu(CpuBackend)] {
        let jvp = backend.jvp(&program, "x", &refs, &tangents).expect("jvp");
        let vjp = backend.vjp(&program, "x", &refs, &cotangents).expect("vjp");
        for b in 0..batch {
            for i in 0..4 {
                let e: f64 = (0..9)
                    .map(|j| dense[b * 36 + i * 9 + j] * f64::from(tangents[b * 9 + j]))
                    .sum();
                assert!((f64::from(jvp[b * 4 + i]) - e).abs() < 1e-5, "jvp {b},{i}");
            }
            for j in 0..9 {
                let e: f64 = (0..4)
                    .map(|i| f64::from(cotangents[b * 4 + i]) * dense[b * 36 + i * 9 + j])
                    .sum();
                assert!((f64::from(vjp[b * 9 + j]) - e).abs() < 1e-5, "vjp {b},{j}");
            }
        }
    }
}

fn random_jacobian(
    rng: &mut StdRng,
    structure: Structure,
    rows: usize,
    cols: usize,
    batch: usize,
) -> Jacobian {
    let mut values = |n: usize| {
        (0..n)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect::<Vec<f64>>()
    };
    match structure {
        Structure::Identity => Jacobian::Identity { n: rows },
        Structure::Diagonal => Jacobian::Diagonal {
            batch,
            n: rows,
            data: values(batch * rows),
        },
        Structure::Shared => Jacobian::Shared {
            rows,
            cols,
            data: values(rows * cols),
        },
        Structure::Dense => Jacobian::Dense {
            batch,
            rows,
            cols,
            data: values(batch * rows * cols),
        },
        // Stored as the matrix of zeros and ones it stands for.
        Structure::Selection => Jacobian::Shared {
            rows,
            cols,
            data: (0..rows * cols)
                .map(|e| f64::from(u8::from(e % cols == (e / cols) % cols)))
                .collect(),
        },
    }
}

/// The chain multiplied on the GPU in the order the dynamic programme
/// chose (diagonals folded), and left to right in f64 on the CPU.
fn gpu_and_reference_product(
    context: &GpuContext,
    factors: &[Jacobian],
    batch: usize,
) -> (chainrule::schedule::chain::ChainOrder, Jacobian, Jacobian) {
    let shapes: Vec<JacShape> = factors.iter().map(Jacobian::shape).collect();
    let order = chain_order(&shapes, batch).expect("order");
    let largest = shapes.iter().map(|s| s.rows * s.cols).max().unwrap_or(1) * 4 + 1024;
    let layout = context.batch_layout(batch, largest).expect("layout");
    let on_device: Vec<_> = factors
        .iter()
        .map(|f| context.upload_jacobian(f, layout).expect("upload"))
        .collect();
    let product = context
        .chain_product(&on_device, &order.bracketing, layout)
        .expect("product");
    let result = context
        .download_jacobian(&product, layout)
        .expect("download");
    let mut expected = factors[0].clone();
    for f in &factors[1..] {
        expected = expected.product(f, batch).expect("reference product");
    }
    (order, result, expected)
}

/// Random chains of random structure, multiplied on the GPU in the order the
/// dynamic programme chose (diagonals folded), against the dense f64 product.
#[test]
fn random_structured_chains_match_the_dense_product() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("random chains");
    let structures = [
        Structure::Identity,
        Structure::Diagonal,
        Structure::Shared,
        Structure::Dense,
    ];
    for _ in 0..40 {
        let batch = rng.random_range(1..20);
        let length = rng.random_range(1..=7);
        let mut dims = vec![rng.random_range(1..24)];
        let mut factors = Vec::new();
        for _ in 0..length {
            let structure = structures[rng.random_range(0..4)];
            let cols = *dims.last().expect("nonempty");
            let rows = match structure {
                Structure::Identity | Structure::Diagonal => cols,
                _ => rng.random_range(1..24),
            };
            dims.push(rows);
            factors.push(random_jacobian(&mut rng, structure, rows, cols, batch));
        }
        factors.reverse();
        let shapes: Vec<JacShape> = factors.iter().map(Jacobian::shape).collect();
        let (order, result, expected) = gpu_and_reference_product(&context, &factors, batch);
        assert_eq!(
            result.shape().structure,
            order.result.structure,
            "structure as planned"
        );
        let error = chain_error(&result, &expected, &factors, batch);
        assert!(error < 1e-5, "chain {shapes:?}: {error:e}");
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let text = "input x[3]\nparam W[2,3]\ny = W @ x\noutput y\n";
    let program = Program::parse(text).expect("parses");
    let x = [1.0f32; 6];
    let w = [0.5f32; 6];
    let backends: Vec<Backend> = gpu()
        .map(Backend::Gpu)
        .into_iter()
        .chain([Backend::Cpu(CpuBackend)])
        .collect();
    for backend in &backends {
        type Case<'a> = (Vec<(&'a str, &'a [f32])>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                vec![("x", &x[..5]), ("W", &w[..])],
                "x",
                "whole number of samples",
            ),
            (vec![("x", &x[..]), ("W", &w[..5])], "x", "parameter `W`"),
            (vec![("x", &x[..])], "x", "no values given for `W`"),
            (
                vec![("x", &x[..]), ("W", &w[..]), ("V", &w[..])],
                "x",
                "`V` is not a variable",
            ),
            (vec![("x", &x[..0]), ("W", &w[..])], "x", "empty"),
            (vec![("x", &x[..]), ("W", &w[..])], "W", "is a parameter"),
            (
                vec![("x", &x[..]), ("W", &w[..])],
                "q",
                "`q` is not a variable",
            ),
        ];
        for (vars, wrt, expected) in cases {
            match backend.jacobian(&program, wrt, &vars) {
                Err(error) => assert!(
                    error.to_string().contains(expected),
                    "{error} lacks `{expected}`"
                ),
                Ok(_) => panic!("{vars:?} d/d{wrt} should fail"),
            }
        }
        let bad_seed = backend.jvp(&program, "x", &[("x", &x[..]), ("W", &w[..])], &[1.0]);
        assert!(matches!(bad_seed, Err(Error::Shape(_))));
    }
}

/// Chains whose sizes cross the product kernel's 64 x 64 blocks and 16-wide
/// inner slices (interior blocks take the unchecked path, edges the checked
/// one), with diagonals folded in, against the dense f64 product.
#[test]
fn chains_across_tile_boundaries_match_the_dense_product() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("tile boundaries");
    let sizes = [1, 15, 16, 17, 63, 64, 65, 100, 130];
    for round in 0..12 {
        let batch = rng.random_range(1..5);
        let dims: Vec<usize> = (0..4)
            .map(|_| sizes[rng.random_range(0..sizes.len())])
            .collect();
        // J3 (dense) D (diagonal) J2 (shared) J1 (dense or shared)
        let mut factors = vec![
            random_jacobian(&mut rng, Structure::Dense, dims[3], dims[2], batch),
            random_jacobian(&mut rng, Structure::Diagonal, dims[2], dims[2], batch),
            random_jacobian(&mut rng, Structure::Shared, dims[2], dims[1], batch),
        ];
        let last = if round % 2 == 0 {
            Structure::Dense
        } else {
            Structure::Shared
        };
        factors.push(random_jacobian(&mut rng, last, dims[1], dims[0], batch));
        let (_, result, expected) = gpu_and_reference_product(&context, &factors, batch);
        let error = chain_error(&result, &expected, &factors, batch);
        assert!(error < 1e-5, "dims {dims:?}: {error:e}");
    }
}

/// diag(r) A diag(s) B diag(c) with A and B shared and the diagonals per
/// sample (W2's Jacobian): shapes on both sides of the product kernel's
/// 64 x 64 tiles, including those it runs as one face-split product over
/// the batch, against the dense f64 product, with zeros meeting infinite and
/// NaN factors (the chain rule's products give zero there).
#[test]
fn diagonally_scaled_shared_products_match_the_dense_product() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("scaled shared products");
    let cases = [
        (32, 128, 64, 70),
        (5, 16, 300, 3),
        (65, 33, 17, 130),
        (100, 1, 40, 64),
        (64, 64, 64, 9),
        (17, 200, 63, 1),
    ];
    for (m, k, n, batch) in cases {
        let mut factors = vec![
            random_jacobian(&mut rng, Structure::Diagonal, m, m, batch),
            random_jacobian(&mut rng, Structure::Shared, m, k, batch),
            random_jacobian(&mut rng, Structure::Diagonal, k, k, batch),
            random_jacobian(&mut rng, Structure::Shared, k, n, batch),
            random_jacobian(&mut rng, Structure::Diagonal, n, n, batch),
        ];
        // Column 0 of A is infinite; every sample but the last scales it by
        // zero. B[k - 1, n - 1] is NaN against a zero in every sample's s.
        // Sample 0's first row scaling is zero.
        if let Jacobian::Shared { data, .. } = &mut factors[1] {
            for i in 0..m {
                data[i * k] = if i % 2 == 0 {
                    f64::INFINITY
                } else {
                    -f64::INFINITY
                };
            }
        }
        if let Jacobian::Diagonal { data, .. } = &mut factors[2] {
            for b in 0..batch {
                if b + 1 < batch {
                    data[b * k] = 0.0;
                }
                data[b * k + k - 1] = 0.0;
            }
        }
        if let Jacobian::Shared { data, .. } = &mut factors[3] {
            data[k * n - 1] = f64::NAN;
        }
        if let Jacobian::Diagonal { data, .. } = &mut factors[0] {
            data[0] = 0.0;
        }
        let (_, result, expected) = gpu_and_reference_product(&context, &factors, batch);
        let (got, want) = (result.to_dense(batch), expected.to_dense(batch));
        assert_eq!(got.len(), want.len());
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            let ok = if w.is_nan() {
                g.is_nan()
            } else if w.is_infinite() {
                g == w
            } else {
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()) * (k as f64).sqrt()
            };
            assert!(
                ok,
                "{m}x{k}x{n}, batch {batch}, element {e}: {g} against {w}"
            );
        }
    }
}

/// A network wide enough that the forward pass (samples as rows times W^T)
/// fills whole blocks of the transposed-operand path.
#[test]
fn a_wide_network_matches_the_oracle() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("wide network");
    let text =
        "input x[130]\nparam W1[70,130] W2[65,70]\ny = sigmoid(W2 @ tanh(W1 @ x))\noutput y\n";
    check_program(&context, text, "x", 67, false, &mut rng);
}

/// softmax's Jacobian diag(s) - s s^T reaches its neighbours as a diagonal
/// and a rank-one product, never as an n x n matrix: the plan forms no
/// shared step, and its cost stays far below one n x n product per sample.
#[test]
fn softmax_is_never_formed_as_a_dense_matrix() {
    let text = "input z[64]\nparam W[3,64]\ny = W @ softmax(z)\noutput y\n";
    let program = Program::parse(text).expect("parses");
    let batch = 128;
    let plan = chainrule::schedule::vector::plan(
        &program,
        0,
        chainrule::schedule::vector::Request::Jacobian,
        batch,
    )
    .expect("plan");
    assert!(
        plan.shared.is_empty(),
        "no shared (materialised) step: {plan:?}"
    );
    let dense_floor = (batch * 64 * 64) as f64;
    assert!(
        plan.cost.flops < dense_floor,
        "{} flops; a dense softmax Jacobian alone would be {dense_floor}",
        plan.cost.flops
    );
    let Some(context) = gpu() else { return };
    let mut rng = rng("softmax");
    check_program(&context, text, "z", batch, false, &mut rng);
}

/// An output that ignores the input has a zero Jacobian, not an error.
#[test]
fn an_ignored_input_has_a_zero_jacobian() {
    let program = Program::parse("input x[3]\nparam p[2]\ny = p * 2\noutput y\n").expect("parses");
    let (x, p) = ([1.0f32; 12], [0.5f32, -0.5]);
    let backends: Vec<Backend> = gpu()
        .map(Backend::Gpu)
        .into_iter()
        .chain([Backend::Cpu(CpuBackend)])
        .collect();
    for backend in backends {
        let out = backend
            .jacobian(&program, "x", &[("x", &x[..]), ("p", &p[..])])
            .expect("jacobian");
        assert_eq!(out.batch, 4);
        let dense = out.jacobian.try_to_dense(4).expect("dense");
        assert_eq!(dense.len(), 4 * 2 * 3);
        assert!(dense.iter().all(|&v| v == 0.0));
    }
}

/// Software drivers cut a loop short after 65,535 iterations without an
/// error. A reduction along a vector of 65,535 elements and beyond must
/// still add every element: one loop per sample up to a bound, a tree of
/// bounded loops beyond (all ones, so every partial sum is exact).
#[test]
fn loop_trip_counts_stay_within_what_drivers_execute() {
    let Some(context) = gpu() else { return };
    let backend = Backend::Gpu(Arc::clone(&context));
    for n in [65_535usize, 70_000, 65_536 * 16 + 1] {
        let program =
            Program::parse(&format!("input x[{n}]\ny = sum(x)\noutput y\n")).expect("parses");
        let x = vec![1.0f32; 2 * n];
        let out = backend
            .jacobian(&program, "x", &[("x", &x[..])])
            .expect("a long sum");
        assert_eq!(out.values, vec![n as f32; 2], "every element summed");
        // logsumexp of n equal logits is ln(n); its gradient 1/n each, and
        // the reverse pass's product over n (the shift's fan-in) is split.
        let program = Program::parse(&format!(
            "input x[{n}]\ny = cross_entropy(x, x)\noutput y\n"
        ))
        .expect("parses");
        let out = backend
            .gradient(&program, &["x"], &[("x", &x[..])], Reduction::PerSample)
            .expect("a long cross entropy");
        let expected = n as f64 * (n as f64).ln();
        for &v in &out.values {
            assert!(
                (f64::from(v) - expected).abs() <= 1e-5 * expected,
                "{n}: {v} for {expected}"
            );
        }
    }
}

/// The device-resident Jacobian, read back, is the one the host call returns.
#[test]
fn the_resident_jacobian_equals_the_host_one() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("resident jacobian");
    let text = "input x[9]\nparam W[5,9] b[5]\ny = tanh(W @ x + b)\noutput y\n";
    let program = Program::parse(text).expect("parses");
    let vars = bindings(&program, 40, &mut rng, false);
    let refs: Vec<(&str, &[f32])> = vars
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let host = Backend::Gpu(Arc::clone(&context))
        .jacobian(&program, "x", &refs)
        .expect("host");
    let (device, layout) = context
        .jacobian_on_device(&program, "x", &refs)
        .expect("device");
    let read = context
        .download_jacobian(&device, layout)
        .expect("download");
    assert_eq!(read, host.jacobian);
}
