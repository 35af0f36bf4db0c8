//! Reductions along vectors longer than one loop of a software driver runs
//! (lavapipe stops a loop after 65,535 iterations without an error): sum,
//! mean, dot, prod, logsumexp, softmax, log_softmax and cross_entropy of one
//! sample of 70,000 and of 1,280,000 elements, and of a batch of three of
//! 100,003, with their Jacobians, VJPs and gradients, on the GPU against the
//! CPU path (f64); NaN and infinite logits kept in their own sample; and a
//! context with tiny limits, so that the batch is cut into many segments
//! and every row into many blocks.

mod common;

use std::sync::Arc;

use chainrule::{Backend, ContextOptions, CpuBackend, GpuContext, LimitsOverride, Reduction};
use common::programs::parse;
use common::{gpu, meets_contract, rng, uniform};
use rand::rngs::StdRng;

/// (batch, elements per sample) of every test below.
const SHAPES: [(usize, usize); 3] = [(1, 70_000), (1, 1_280_000), (3, 100_003)];

/// Every element of the GPU's `actual` meets the contract for the CPU's
/// `expected`: NaN for NaN, the same infinity, else within 1e-6 + 1e-5 |e|.
fn assert_close(label: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{label}: length");
    let failures: Vec<String> = actual
        .iter()
        .zip(expected)
        .enumerate()
        .filter(|&(_, (&a, &e))| !meets_contract(a, f64::from(e)))
        .take(10)
        .map(|(i, (a, e))| format!("  [{i}] gpu {a:e}, cpu {e:e}"))
        .collect();
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
}

/// Runs `text` (inputs `x`, and `w` where named) on the GPU `context` and
/// on the CPU: for a scalar output its values, its Jacobian w.r.t. x (for
/// sum, mean, dot and logsumexp; the plan of the softmax family's Jacobian
/// forms the n x n Jacobian of the shift's fan-in) and the per-sample and
/// batch-mean gradients; for a vector output the VJP with a random cotangent.
fn compare(context: &Arc<GpuContext>, label: &str, text: &str, vars: &[(&str, Vec<f32>)]) {
    let program = parse(text);
    let refs: Vec<(&str, &[f32])> = vars.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let n = program.variables[program.variable("x").expect("x")]
        .shape
        .size();
    let batch = vars
        .iter()
        .find(|(name, _)| *name == "x")
        .map_or(0, |(_, v)| v.len() / n);
    let m = program.shapes[program.output].size();
    let gpu = Backend::Gpu(Arc::clone(context));
    let cpu = Backend::Cpu(CpuBackend);
    let label = format!("{label}, {batch} x {n}");
    if m == 1 && !text.contains("softmax") && !text.contains("cross_entropy") {
        let (g, c) = (
            gpu.jacobian(&program, "x", &refs)
                .unwrap_or_else(|e| panic!("{label}: gpu: {e}")),
            cpu.jacobian(&program, "x", &refs)
                .unwrap_or_else(|e| panic!("{label}: cpu: {e}")),
        );
        assert_close(&format!("{label}: values"), &g.values, &c.values);
        let dense = |j: &chainrule::JacobianOutput| -> Vec<f32> {
            let d = j.jacobian.try_to_dense(batch).expect("dense");
            d.into_iter().map(|v| v as f32).collect()
        };
        assert_close(&format!("{label}: Jacobian"), &dense(&g), &dense(&c));
    }
    if m == 1 {
        for reduction in [Reduction::PerSample, Reduction::Mean] {
            let (g, c) = (
                gpu.gradient(&program, &["x"], &refs, reduction)
                    .unwrap_or_else(|e| panic!("{label}: gpu: {e}")),
                cpu.gradient(&program, &["x"], &refs, reduction)
                    .unwrap_or_else(|e| panic!("{label}: cpu: {e}")),
            );
            assert_close(&format!("{label}: loss"), &g.values, &c.values);
            assert_close(
                &format!("{label}: gradient {reduction:?}"),
                &g.gradients[0].values,
                &c.gradients[0].values,
            );
        }
    } else {
        // The Jacobian of the softmax family is n x n; the planner forms it
        // whole at the fan-in of the shift, so only reverse mode is asked for.
        let mut rng = rng(&format!("{label}: cotangent"));
        let u = uniform(&mut rng, batch * m, -1.0, 1.0);
        let (g, c) = (
            gpu.vjp(&program, "x", &refs, &u)
                .unwrap_or_else(|e| panic!("{label}: gpu: {e}")),
            cpu.vjp(&program, "x", &refs, &u)
                .unwrap_or_else(|e| panic!("{label}: cpu: {e}")),
        );
        assert_close(&format!("{label}: VJP"), &g, &c);
    }
}

fn inputs(rng: &mut StdRng, len: usize, low: f32, high: f32) -> Vec<f32> {
    uniform(rng, len, low, high)
}

/// Sum, mean and dot: the elements are positive, so that the sums are well
/// conditioned and any difference is the GPU's, not cancellation's.
#[test]
fn sum_mean_and_dot_of_long_vectors() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("sum, mean, dot");
    for (batch, n) in SHAPES {
        let x = inputs(&mut rng, batch * n, 0.5, 1.5);
        let w = inputs(&mut rng, batch * n, 0.5, 1.5);
        for (name, body) in [
            ("sum", "sum(x)"),
            ("mean", "mean(x)"),
            ("dot", "dot(x, w)"),
            // A diagonal factor in the plan: n floats a sample, not n^2.
            ("sum of sines", "sum(sin(x)) + sum(w)"),
        ] {
            let text = format!("input x[{n}]\ninput w[{n}]\ny = {body}\noutput y\n");
            compare(&context, name, &text, &[("x", x.clone()), ("w", w.clone())]);
        }
        // prod, of factors so near 1 that the product stays in range.
        let near_one = inputs(&mut rng, batch * n, 0.9999, 1.0001);
        let text = format!("input x[{n}]\ny = prod(x)\noutput y\n");
        compare(&context, "prod", &text, &[("x", near_one)]);
    }
}

/// logsumexp and cross_entropy (values, Jacobians and gradients), softmax
/// and log_softmax through a dot product with positive weights t (values,
/// and gradients: the VJPs of softmax and log_softmax with cotangent t).
#[test]
fn the_softmax_family_of_long_vectors() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("softmax family");
    for (batch, n) in SHAPES {
        let x = inputs(&mut rng, batch * n, -30.0, 30.0);
        let t = inputs(&mut rng, batch * n, 0.0, 2.0 / n as f32);
        for (name, body) in [
            ("logsumexp", "logsumexp(x)"),
            ("cross_entropy", "cross_entropy(x, t)"),
            ("softmax", "dot(softmax(x), t)"),
            ("log_softmax", "dot(log_softmax(x), t)"),
        ] {
            let text = format!("input x[{n}]\ninput t[{n}]\ny = {body}\noutput y\n");
            compare(&context, name, &text, &[("x", x.clone()), ("t", t.clone())]);
        }
    }
}

/// NaN and infinite logits in one sample stay in that sample, with the
/// limits of the one-loop kernels: a NaN logit, one +Inf (one-hot), two
/// +Inf (no limit), all -Inf (no limit), one -Inf among finite logits (a
/// masked logit), beside a finite sample, each 70,000 long.
#[test]
fn nan_and_infinite_logits_stay_in_their_sample() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("non-finite logits");
    let n = 70_000;
    let mut x = Vec::new();
    for sample in 0..6 {
        let mut row = uniform(&mut rng, n, -5.0, 5.0);
        match sample {
            1 => row[12_345] = f32::NAN,
            2 => row[69_999] = f32::INFINITY,
            3 => {
                row[3] = f32::INFINITY;
                row[66_000] = f32::INFINITY;
            }
            4 => row.fill(f32::NEG_INFINITY),
            5 => row[0] = f32::NEG_INFINITY,
            _ => {}
        }
        x.extend(row);
    }
    let t = uniform(&mut rng, 6 * n, 0.0, 2.0 / n as f32);
    for (name, body) in [
        ("logsumexp", "logsumexp(x)"),
        ("cross_entropy", "cross_entropy(x, t)"),
        ("log_softmax", "dot(log_softmax(x), t)"),
        ("softmax", "dot(softmax(x), t)"),
    ] {
        let text = format!("input x[{n}]\ninput t[{n}]\ny = {body}\noutput y\n");
        compare(&context, name, &text, &[("x", x.clone()), ("t", t.clone())]);
    }
    // The finite samples' values are finite: nothing leaked into them.
    let program = parse(&format!("input x[{n}]\ny = logsumexp(x)\noutput y\n"));
    let out = Backend::Gpu(Arc::clone(&context))
        .gradient(&program, &["x"], &[("x", &x)], Reduction::PerSample)
        .expect("gradient");
    for sample in [0, 5] {
        assert!(out.values[sample].is_finite(), "sample {sample}");
        let row = &out.gradients[0].values[sample * n..(sample + 1) * n];
        assert!(row.iter().all(|g| g.is_finite()), "sample {sample}");
    }
    assert!(out.values[1].is_nan() && out.values[3] == f32::INFINITY);
    assert!(out.values[2] == f32::INFINITY && out.values[4] == f32::NEG_INFINITY);
}

/// Limits small enough that a batch of three 9,001-element samples takes
/// one segment each, every dispatch at most 8 x 8 workgroups, a row two
/// blocks of the tree, and the reverse pass's products over 9,001 split
/// along their inner dimension.
#[test]
fn tiny_limits_cut_rows_into_blocks_and_batches_into_segments() {
    let (n, batch) = (9_001usize, 3usize);
    let options = ContextOptions {
        limits: LimitsOverride {
            max_binding_bytes: Some(n as u64 * 4 + 1024),
            max_buffer_bytes: None,
            max_workgroups_per_dimension: Some(8),
        },
        ..ContextOptions::default()
    };
    let context = match GpuContext::new(&options) {
        Ok(context) => Arc::new(context),
        Err(error) if common::require_gpu() => panic!("no GPU context: {error}"),
        Err(error) => {
            println!("skipped: {error}");
            return;
        }
    };
    let mut rng = rng("tiny limits");
    let x = uniform(&mut rng, batch * n, -10.0, 10.0);
    let w = uniform(&mut rng, batch * n, 0.5, 1.5);
    let t = uniform(&mut rng, batch * n, 0.0, 2.0 / n as f32);
    for (name, body) in [
        ("mean", "mean(x)"),
        ("dot", "dot(x, w)"),
        ("logsumexp", "logsumexp(x)"),
        ("cross_entropy", "cross_entropy(x, t)"),
        ("log_softmax", "dot(log_softmax(x), t)"),
    ] {
        let text = format!("input x[{n}]\ninput w[{n}]\ninput t[{n}]\ny = {body}\noutput y\n");
        // Positive elements for the sums, so that they are well conditioned.
        let x = if name == "mean" || name == "dot" {
            &w
        } else {
            &x
        };
        let vars = [("x", x.clone()), ("w", w.clone()), ("t", t.clone())];
        compare(&context, name, &text, &vars);
    }
}

/// The reverse pass of the softmax family at GradBench's size: the
/// gradient of logsumexp over one sample of 1,280,000 logits, timed.
#[test]
fn logsumexp_gradient_of_a_million_logits() {
    let Some(context) = gpu() else { return };
    let n = 1_280_000;
    let mut rng = rng("lse 1.28M");
    let x = uniform(&mut rng, n, -10.0, 10.0);
    let program = parse(&format!("input x[{n}]\ny = logsumexp(x)\noutput y\n"));
    let gpu = Backend::Gpu(Arc::clone(&context));
    let run = || {
        gpu.gradient(&program, &["x"], &[("x", &x)], Reduction::Mean)
            .expect("gradient")
    };
    let warm = run();
    let start = std::time::Instant::now();
    let out = run();
    println!("logsumexp gradient, 1 x {n}: {:?}", start.elapsed());
    assert_eq!(
        warm.gradients[0].values, out.gradients[0].values,
        "deterministic"
    );
    let total: f64 = out.gradients[0].values.iter().map(|&g| f64::from(g)).sum();
    assert!((total - 1.0).abs() < 1e-4, "softmax sums to {total}");
}
