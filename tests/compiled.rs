//! The program compiler's fused kernels: gradients (batch mean and per
//! sample), JVPs and VJPs of programs that fit registers, against the CPU
//! path's f64 reference and central differences of the f64 oracle, on sizes
//! that are not multiples of the workgroup, across chunks, with NaN in one
//! sample, and with the dispatch count that shows the fused path ran.

mod common;

use std::sync::Arc;

use chainrule::program::Program;
use chainrule::{
    Backend, ContextOptions, CpuBackend, GpuContext, GradientOutput, LimitsOverride, Reduction,
};

/// Programs that together use every operation of the IR.
const PROGRAMS: [&str; 4] = [
    "input x[16]\ninput t\nparam w[16] b\na = relu(dot(w, x) + b)\nloss = mse(a, t)\noutput loss",
    "input x[5]\ninput t[3]\nparam W[3,5] b[3] c\n\
     h = softplus(W @ x + b) * c - max(W @ x, 0.25)\n\
     loss = cross_entropy(h, t) + mean(h) + sum(exp(-h)) / c + logsumexp(h) + dot(h, t)^2\n\
     output loss",
    "input x[4]\nparam W1[6,4] b1[6] W2[2,6]\nh = tanh(W1 @ x + b1)\nz = sigmoid(W2 @ h)\n\
     loss = sum(z * z) + min(sum(h), 1.5) + gelu(mean(x)) / (2 + sum(x^2))\noutput loss",
    "input x\ninput y\nparam p\nf = ln(sin(x^3)^2) + x * (1 + y^2)^p - silu(y) + elu(x - y) + leaky_relu(x * y)\noutput f",
];

fn variables(
    program: &Program,
    batch: usize,
    rng: &mut rand::rngs::StdRng,
) -> Vec<(String, Vec<f32>)> {
    program
        .variables
        .iter()
        .map(|v| {
            let size = v.shape.size();
            let values = match v.kind {
                chainrule::program::Kind::Input if v.name == "t" => {
                    // Probabilities for cross-entropy, targets for mse.
                    let raw = common::uniform(rng, batch * size, 0.05, 1.0);
                    raw.chunks(size)
                        .flat_map(|row| {
                            let total: f32 = row.iter().sum();
                            row.iter()
                                .map(move |r| if size > 1 { r / total } else { *r })
                                .collect::<Vec<_>>()
                        })
                        .collect()
                }
                // x^3 stays below pi, where sin(x^3) has a zero and the
                // f32 rounding of x^3 alone would move ln(sin(x^3)^2) far.
                chainrule::program::Kind::Input => common::uniform(rng, batch * size, 0.1, 1.4),
                chainrule::program::Kind::Param => common::uniform(rng, size, 0.5, 1.2),
            };
            (v.name.clone(), values)
        })
        .collect()
}

/// The variables as the library takes them, by name.
fn bind(vars: &[(String, Vec<f32>)]) -> Vec<(&str, &[f32])> {
    vars.iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect()
}

/// Both outputs' values and every gradient, shapes and values, agree.
fn close_gradients(label: &str, gpu: &GradientOutput, cpu: &GradientOutput) {
    common::close_to_cpu(&format!("{label} values"), &gpu.values, &cpu.values);
    for (a, b) in gpu.gradients.iter().zip(&cpu.gradients) {
        assert_eq!(a.shape, b.shape, "{label} d/d{}", a.name);
        // A param's gradient adds terms of order one (the inputs and params
        // are), which can cancel: d/dc of the second program came to -0.0504
        // from such terms, 2.2e-6 off in f32, in one seed's draw.
        let what = format!("{label} d/d{}", a.name);
        common::close_to_cpu_above(&what, &a.values, &b.values, 1.0);
    }
}

/// A context of the test's own, so that no other test's dispatches are
/// counted in its traffic.
fn own_context() -> Option<Arc<GpuContext>> {
    common::gpu()?;
    Some(Arc::new(
        GpuContext::new(&ContextOptions::default()).expect("a second context"),
    ))
}

fn all_names(program: &Program) -> Vec<&str> {
    program
        .variables
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| *n != "t")
        .collect()
}

#[test]
fn fused_gradients_match_the_cpu_path_in_two_dispatches() {
    let Some(context) = own_context() else {
        return;
    };
    let gpu = Backend::Gpu(Arc::clone(&context));
    let mut rng = common::rng("fused gradients");
    for text in PROGRAMS {
        let program = Program::parse(text).expect("parses");
        let names = all_names(&program);
        for batch in [1usize, 255, 257, 20_001] {
            let vars = variables(&program, batch, &mut rng);
            let bound = bind(&vars);
            for reduction in [Reduction::Mean, Reduction::PerSample] {
                let before = context.traffic();
                let g = gpu
                    .gradient(&program, &names, &bound, reduction)
                    .expect("gpu");
                let traffic = context.traffic() - before;
                // One fused kernel, plus the reduction when a param's
                // gradient is summed over the batch.
                let summed = reduction == Reduction::Mean
                    && program
                        .variables
                        .iter()
                        .any(|v| v.kind == chainrule::program::Kind::Param);
                assert_eq!(
                    traffic.dispatches,
                    1 + u64::from(summed),
                    "{text} {reduction:?}: dispatches"
                );
                let c = Backend::Cpu(CpuBackend)
                    .gradient(&program, &names, &bound, reduction)
                    .expect("cpu");
                close_gradients(&format!("{text} B={batch} {reduction:?}"), &g, &c);
            }
        }
    }
}

#[test]
fn fused_gradients_match_central_differences_of_the_oracle() {
    let Some(context) = common::gpu() else {
        return;
    };
    let gpu = Backend::Gpu(context);
    let mut rng = common::rng("fused gradients vs differences");
    for text in PROGRAMS {
        let program = Program::parse(text).expect("parses");
        let vars = variables(&program, 1, &mut rng);
        let bound = bind(&vars);
        let names = all_names(&program);
        let g = gpu
            .gradient(&program, &names, &bound, Reduction::PerSample)
            .expect("gpu");
        let point: Vec<Vec<f64>> = vars
            .iter()
            .map(|(_, v)| v.iter().map(|&x| f64::from(x)).collect())
            .collect();
        let value = |p: &[Vec<f64>]| -> f64 {
            let refs: Vec<&[f64]> = p.iter().map(Vec::as_slice).collect();
            let values = program.forward(&refs).expect("forward");
            values[program.output][0]
        };
        for gradient in &g.gradients {
            let v = program.variable(&gradient.name).expect("declared");
            for (e, &got) in gradient.values.iter().enumerate() {
                let h = 1e-5 * point[v][e].abs().max(1.0);
                let mut up = point.clone();
                up[v][e] += h;
                let mut down = point.clone();
                down[v][e] -= h;
                let expected = (value(&up) - value(&down)) / (2.0 * h);
                assert!(
                    (f64::from(got) - expected).abs() <= 1e-3 * expected.abs().max(1.0),
                    "{text}: d/d{}[{e}] gpu {got} vs central difference {expected}",
                    gradient.name
                );
            }
        }
    }
}

#[test]
fn fused_jvp_and_vjp_match_the_cpu_path() {
    let Some(context) = own_context() else {
        return;
    };
    let gpu = Backend::Gpu(Arc::clone(&context));
    let cpu = Backend::Cpu(CpuBackend);
    let mut rng = common::rng("fused jvp and vjp");
    let text = "input x[6]\ninput u[3]\nparam W[3,6] b[3]\nh = tanh(W @ x + b) * u\ny = [0] + h / (1 + logsumexp(h)) - max(h, 0)\noutput y";
    let text = text.replace("[0] + ", "");
    let program = Program::parse(&text).expect("parses");
    for batch in [1usize, 300, 5_000] {
        let vars = variables(&program, batch, &mut rng);
        let bound = bind(&vars);
        for wrt in ["x", "u"] {
            let n = program.variables[program.variable(wrt).expect("declared")]
                .shape
                .size();
            let tangents = common::uniform(&mut rng, batch * n, -1.0, 1.0);
            let cotangents = common::uniform(&mut rng, batch * 3, -1.0, 1.0);
            let before = context.traffic();
            let a = gpu.jvp(&program, wrt, &bound, &tangents).expect("gpu jvp");
            assert_eq!(
                (context.traffic() - before).dispatches,
                1,
                "one fused JVP kernel"
            );
            let b = cpu.jvp(&program, wrt, &bound, &tangents).expect("cpu jvp");
            common::close_to_cpu(&format!("jvp wrt {wrt} B={batch}"), &a, &b);
            let before = context.traffic();
            let a = gpu
                .vjp(&program, wrt, &bound, &cotangents)
                .expect("gpu vjp");
            assert_eq!(
                (context.traffic() - before).dispatches,
                1,
                "one fused VJP kernel"
            );
            let b = cpu
                .vjp(&program, wrt, &bound, &cotangents)
                .expect("cpu vjp");
            common::close_to_cpu(&format!("vjp wrt {wrt} B={batch}"), &a, &b);
        }
        let wrong = vec![0.0f32; batch * 6 + 1];
        assert!(
            gpu.jvp(&program, "x", &bound, &wrong).is_err(),
            "a seed of the wrong length is an error"
        );
    }
}

#[test]
fn fused_gradients_across_many_chunks_and_grids_match_one_chunk() {
    let Some(context) = common::gpu() else {
        return;
    };
    // 4 KiB bindings and 3 workgroups a dimension force many chunks,
    // several samples per invocation and 2-D grids.
    let small = GpuContext::new(&ContextOptions {
        limits: LimitsOverride {
            max_binding_bytes: Some(4096),
            max_buffer_bytes: Some(4096),
            max_workgroups_per_dimension: Some(3),
        },
        ..ContextOptions::default()
    })
    .expect("small context");
    let small = Backend::Gpu(Arc::new(small));
    let large = Backend::Gpu(context);
    let mut rng = common::rng("fused chunks");
    let program = Program::parse(PROGRAMS[0]).expect("parses");
    let batch = 9_001;
    let vars = variables(&program, batch, &mut rng);
    let bound = bind(&vars);
    for reduction in [Reduction::Mean, Reduction::PerSample] {
        let a = small
            .gradient(&program, &["w", "b", "x"], &bound, reduction)
            .expect("small");
        let b = large
            .gradient(&program, &["w", "b", "x"], &bound, reduction)
            .expect("large");
        close_gradients(&format!("{reduction:?}"), &a, &b);
    }
}

#[test]
fn nan_in_one_sample_stays_in_that_sample() {
    let Some(context) = common::gpu() else {
        return;
    };
    let gpu = Backend::Gpu(context);
    let program = Program::parse(PROGRAMS[0]).expect("parses");
    let batch = 600;
    let mut x = vec![0.25f32; batch * 16];
    x[17 * 16 + 3] = f32::NAN;
    let t = vec![0.5f32; batch];
    let w = vec![0.5f32; 16];
    let b = [0.1f32];
    let bound: [(&str, &[f32]); 4] = [("x", &x), ("t", &t), ("w", &w), ("b", &b)];
    let g = gpu
        .gradient(&program, &["w", "x"], &bound, Reduction::PerSample)
        .expect("gpu");
    for sample in 0..batch {
        let row = &g.gradients[0].values[sample * 16..(sample + 1) * 16];
        let nan = row.iter().any(|v| v.is_nan());
        assert_eq!(nan, sample == 17, "sample {sample}: {row:?}");
        assert_eq!(
            g.values[sample].is_nan(),
            sample == 17,
            "value of sample {sample}"
        );
    }
}

#[test]
fn a_losing_branch_with_an_infinite_derivative_passes_nothing_back() {
    let Some(context) = common::gpu() else {
        return;
    };
    let gpu = Backend::Gpu(context);
    // At x = 100, exp(x) overflows f32 and loses to exp(10): the derivative is 0.
    let program = Program::parse("input x\ny = min(exp(x), exp(10)) + relu(-exp(x))\noutput y")
        .expect("parses");
    let x = [100.0f32, 1.0];
    let g = gpu
        .gradient(&program, &["x"], &[("x", &x)], Reduction::PerSample)
        .expect("gpu");
    assert_eq!(g.gradients[0].values[0], 0.0, "{:?}", g.gradients[0].values);
    assert!((g.gradients[0].values[1] - std::f32::consts::E).abs() < 1e-5);
}

#[test]
fn the_structured_plan_takes_one_fused_forward_kernel_or_a_kernel_per_node() {
    let Some(context) = own_context() else {
        return;
    };
    let gpu = Backend::Gpu(Arc::clone(&context));
    let cpu = Backend::Cpu(CpuBackend);
    let mut rng = common::rng("fused forward");
    // Small enough for registers (one forward kernel), and too large (a
    // kernel per node): both must give the CPU path's Jacobian.
    let mut dispatches = Vec::new();
    for n in [7usize, 5_000] {
        let text = format!(
            "input x[{n}]\nparam W[3,{n}] b[3]\nh = sigmoid(W @ x + b)\ny = tanh(h * h - log_softmax(h))\noutput y"
        );
        let program = Program::parse(&text).expect("parses");
        let batch = 37;
        let x = common::uniform(&mut rng, batch * n, -1.0, 1.0);
        let w = common::uniform(&mut rng, 3 * n, -0.5, 0.5);
        let b = common::uniform(&mut rng, 3, -0.5, 0.5);
        let vars: [(&str, &[f32]); 3] = [("x", &x), ("W", &w), ("b", &b)];
        let before = context.traffic();
        let g = gpu.jacobian(&program, "x", &vars).expect("gpu");
        dispatches.push((context.traffic() - before).dispatches);
        let c = cpu.jacobian(&program, "x", &vars).expect("cpu");
        let dense = |j: &chainrule::JacobianOutput| -> Vec<f32> {
            j.jacobian
                .to_dense(j.batch)
                .into_iter()
                .map(|v| v as f32)
                .collect()
        };
        common::close_to_cpu(&format!("jacobian n={n}"), &dense(&g), &dense(&c));
        common::close_to_cpu(&format!("values n={n}"), &g.values, &c.values);
    }
    // The same plan's products either way; the forward pass is one kernel
    // instead of one for each of the program's computed nodes.
    assert!(
        dispatches[0] + 6 <= dispatches[1],
        "fused {} vs per node {} dispatches",
        dispatches[0],
        dispatches[1]
    );
}

#[test]
fn small_dense_jacobians_are_one_fused_kernel_by_columns_or_rows() {
    let Some(context) = own_context() else {
        return;
    };
    let gpu = Backend::Gpu(Arc::clone(&context));
    let cpu = Backend::Cpu(CpuBackend);
    let mut rng = common::rng("fused jacobians");
    // 2 x 6 (rows: reverse passes) and 5 x 3 (columns: tangent passes).
    let programs = [
        "input p[6]\nparam W[2,6]\ny = tanh(W @ p) * sum(p * p) + max(W @ p, 0.1)\noutput y",
        "input p[3]\nparam W[5,3] b[5]\ny = softplus(W @ p + b) / (1 + dot(p, p)) - log_softmax(W @ p)\noutput y",
    ];
    for text in programs {
        let program = Program::parse(text).expect("parses");
        for batch in [1usize, 300] {
            let vars = variables(&program, batch, &mut rng);
            let bound = bind(&vars);
            let before = context.traffic();
            let g = gpu.jacobian(&program, "p", &bound).expect("gpu");
            assert_eq!(
                (context.traffic() - before).dispatches,
                1,
                "{text}: one kernel"
            );
            let c = cpu.jacobian(&program, "p", &bound).expect("cpu");
            let dense = |j: &chainrule::JacobianOutput| -> Vec<f32> {
                j.jacobian
                    .to_dense(j.batch)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect()
            };
            common::close_to_cpu(&format!("{text} B={batch}"), &dense(&g), &dense(&c));
            common::close_to_cpu(&format!("{text} values"), &g.values, &c.values);
        }
    }
}

/// Software drivers stop an invocation's loops once their iterations add up
/// past 65,535, silently. llsq's 256 x 128 product (its forward and reverse
/// loops alone past the line) must leave the fused path: with the
/// compiler's budget lifted this case fails on lavapipe. The first case
/// puts several samples of thousands of loop iterations on each invocation
/// (four workgroups for 12,001 samples); it checks the executor's split
/// stays right, though lavapipe, which unrolls these short inner loops,
/// gives the right answer even without it.
#[test]
fn loops_stay_within_what_software_drivers_run() {
    if common::gpu().is_none() {
        return;
    }
    // Four workgroups at most: a few thousand samples already put several
    // on each invocation.
    let small = GpuContext::new(&ContextOptions {
        limits: LimitsOverride {
            max_workgroups_per_dimension: Some(2),
            ..LimitsOverride::default()
        },
        ..ContextOptions::default()
    })
    .expect("small context");
    let small = Backend::Gpu(Arc::new(small));
    let full = Backend::Gpu(common::gpu().expect("checked above"));
    let cpu = Backend::Cpu(CpuBackend);
    let mut rng = common::rng("loop budget");
    let cases = [
        (
            "input x[100]\nparam W[60,100]\ny = sum(tanh(W @ x))\noutput y",
            12_001usize,
            &small,
        ),
        (
            "input x[128]\nparam T[256,128] s[256]\nr = s - T @ x\nloss = 0.5 * dot(r, r)\noutput loss",
            3,
            &full,
        ),
    ];
    for (text, batch, gpu) in cases {
        let program = Program::parse(text).expect("parses");
        let vars = variables(&program, batch, &mut rng);
        let bound = bind(&vars);
        for reduction in [Reduction::Mean, Reduction::PerSample] {
            let names = ["x"];
            let g = gpu
                .gradient(&program, &names, &bound, reduction)
                .expect("gpu");
            let c = cpu
                .gradient(&program, &names, &bound, reduction)
                .expect("cpu");
            close_gradients(&format!("{text} {reduction:?}"), &g, &c);
        }
    }
}

#[test]
fn a_resident_gradient_refuses_arrays_of_the_wrong_size() {
    let Some(context) = common::gpu() else {
        return;
    };
    let program = Program::parse(PROGRAMS[0]).expect("parses");
    let (w, b) = (
        program.variable("w").expect("w"),
        program.variable("b").expect("b"),
    );
    let plan = chainrule::compile::gradient(
        &program,
        &[
            (w, chainrule::compile::Destination::Summed),
            (b, chainrule::compile::Destination::Summed),
        ],
        false,
    )
    .expect("compiles");
    let batch = 10;
    let x = context.upload(&vec![0.5; batch * 16]).expect("x");
    let short_x = context.upload(&vec![0.5; batch * 16 - 1]).expect("x");
    let t = context.upload(&vec![0.1; batch]).expect("t");
    let params = context.upload(&[0.1; 17]).expect("params");
    let short_params = context.upload(&[0.1; 16]).expect("params");
    assert!(
        context
            .fused_gradient_resident(&plan, &[&x, &t], Some(&params), batch, 1.0)
            .is_ok()
    );
    for (inputs, params) in [([&short_x, &t], &params), ([&x, &t], &short_params)] {
        assert!(matches!(
            context.fused_gradient_resident(&plan, &inputs, Some(params), batch, 1.0),
            Err(chainrule::Error::Shape(_))
        ));
    }
}

/// A NaN or infinite weight that the output never reads (a row of W for
/// `W @ x`, a column for `x @ W`) passes nothing on: the chain rule's
/// products with a zero cotangent or tangent are zero, in gradients, JVPs,
/// VJPs and Jacobians, on the GPU and the CPU path alike.
#[test]
fn a_weight_the_output_never_reads_passes_nothing_on() {
    let mut backends = vec![Backend::Cpu(CpuBackend)];
    if let Some(context) = common::gpu() {
        backends.push(Backend::Gpu(context));
    }
    for bad in [f32::NAN, f32::INFINITY] {
        let cases = [
            // z = W[1] . x: W's row 0 is never read.
            (
                "input x[3]\nparam W[2,3]\ny = W @ x\nz = y[1] * 2\noutput z",
                vec![1.0, bad, 0.0, 0.0, 1.0, 2.0],
                vec![0.0, 2.0, 4.0],
            ),
            // z = (x @ V)[0] + (x @ V)[2]: V's column 1 is never read.
            (
                "input x[2]\nparam V[2,3]\ny = x @ V\nz = y[0] + y[2]\noutput z",
                vec![1.0, bad, 0.0, 0.0, 0.0, 2.0],
                vec![1.0, 2.0],
            ),
        ];
        for (text, weights, gradient) in cases {
            let program = Program::parse(text).expect("parses");
            let matrix = &program.variables[1].name;
            let n = gradient.len();
            let x: Vec<f32> = (1..=n).map(|i| i as f32).collect();
            let vars: Vec<(&str, &[f32])> = vec![("x", &x), (matrix.as_str(), &weights)];
            let ones = vec![1.0f32; n];
            let expected_jvp: f32 = gradient.iter().sum();
            for backend in &backends {
                let label = format!("{text} with {bad} ({})", backend.describe());
                let g = backend
                    .gradient(&program, &["x"], &vars, Reduction::PerSample)
                    .expect("gradient");
                assert_eq!(g.gradients[0].values, gradient, "{label}: gradient");
                let vjp = backend.vjp(&program, "x", &vars, &[1.0]).expect("vjp");
                assert_eq!(vjp, gradient, "{label}: VJP");
                let jvp = backend.jvp(&program, "x", &vars, &ones).expect("jvp");
                assert_eq!(jvp, vec![expected_jvp], "{label}: JVP");
                let j = backend.jacobian(&program, "x", &vars).expect("jacobian");
                let dense: Vec<f32> = j.jacobian.to_dense(1).iter().map(|&v| v as f32).collect();
                assert_eq!(dense, gradient, "{label}: Jacobian");
            }
        }
    }
}
