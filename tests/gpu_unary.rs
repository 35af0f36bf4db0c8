//! The bulk unary call on the GPU against the f64 reference: random inputs,
//! the edges, sizes around the workgroup and dispatch limits, chunking, the
//! device-resident form, threads, and a lost device.

mod common;

use std::sync::Arc;

use chainrule::{ContextOptions, Error, GpuContext, LimitsOverride, UnaryOp};
use common::{check, edge_inputs, gpu, reference, rng, uniform};
use rand::Rng;

/// Random inputs over [-20, 20], an odd length so the last workgroup is partial.
#[test]
fn every_operation_matches_the_reference_on_random_inputs() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("random inputs");
    let xs = uniform(&mut rng, 100_003, -20.0, 20.0);
    println!(
        "{:<18} {:>12} {:>12} {:>12} {:>12}",
        "operation", "value abs", "value rel", "deriv abs", "deriv rel"
    );
    for op in UnaryOp::catalogue() {
        let out = context.unary(op, &xs).expect("unary runs");
        let (values, derivatives) = reference(op, &xs);
        let v = check(&format!("{op} value"), &xs, &out.values, &values);
        let d = check(
            &format!("{op} derivative"),
            &xs,
            &out.derivatives,
            &derivatives,
        );
        println!(
            "{:<18} {:>12.3e} {:>12.3e} {:>12.3e} {:>12.3e}",
            op.to_string(),
            v.max_abs,
            v.max_rel,
            d.max_abs,
            d.max_rel
        );
    }
}

/// sin and cos of large arguments, where the kernel reduces by the bits of
/// 2/pi (Payne-Hanek): random arguments at every binary exponent from the
/// end of the Cody-Waite range (4096) to f32::MAX, so that every window of
/// the table is read, against f64's own reduction of the same f32 value.
#[test]
fn sin_and_cos_of_large_arguments_match_f64() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("large trig arguments");
    let mut xs = Vec::new();
    for exponent in 139u32..=254 {
        for _ in 0..64 {
            let mantissa = rng.random_range(0..1u32 << 23);
            let sign = if rng.random_bool(0.5) { 1u32 << 31 } else { 0 };
            xs.push(f32::from_bits(sign | exponent << 23 | mantissa));
        }
    }
    let sin = context.unary(UnaryOp::Sin, &xs).expect("sin runs");
    let expected: Vec<f64> = xs.iter().map(|&x| f64::from(x).sin()).collect();
    check("sin of large arguments", &xs, &sin.values, &expected);
    let expected: Vec<f64> = xs.iter().map(|&x| f64::from(x).cos()).collect();
    check("cos of large arguments", &xs, &sin.derivatives, &expected);
}

/// Each operation near its own interesting region: the kinks, the saturation
/// of the S-shaped ones, the domain of ln and sqrt, and moderate powers.
#[test]
fn every_operation_matches_the_reference_near_zero_and_in_its_domain() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("near zero");
    let mut xs = uniform(&mut rng, 20_000, -1.0, 1.0);
    xs.extend(uniform(&mut rng, 20_000, 0.0, 1e-3));
    xs.extend(uniform(&mut rng, 20_000, -100.0, 100.0));
    for op in UnaryOp::catalogue() {
        let out = context.unary(op, &xs).expect("unary runs");
        let (values, derivatives) = reference(op, &xs);
        check(&format!("{op} value"), &xs, &out.values, &values);
        check(
            &format!("{op} derivative"),
            &xs,
            &out.derivatives,
            &derivatives,
        );
    }
}

#[test]
fn every_operation_follows_the_edge_policy() {
    let Some(context) = gpu() else { return };
    let xs = edge_inputs();
    let ops = UnaryOp::catalogue().into_iter().chain([
        UnaryOp::LeakyRelu { alpha: 0.0 },
        UnaryOp::Elu { alpha: 0.5 },
        UnaryOp::Pow { exponent: 2.0 },
        UnaryOp::Pow { exponent: -1.0 },
        UnaryOp::Pow { exponent: -2.0 },
        UnaryOp::Pow { exponent: 0.5 },
        UnaryOp::Pow { exponent: 1.5 },
        UnaryOp::Pow { exponent: 0.0 },
        UnaryOp::Pow { exponent: 1.0 },
    ]);
    for op in ops {
        let out = context.unary(op, &xs).expect("unary runs");
        let (values, derivatives) = reference(op, &xs);
        check(
            &format!("{op} value at the edges"),
            &xs,
            &out.values,
            &values,
        );
        check(
            &format!("{op} derivative at the edges"),
            &xs,
            &out.derivatives,
            &derivatives,
        );
    }
}

/// NaN in one sample stays in that sample.
#[test]
fn nan_and_inf_stay_in_their_own_sample() {
    let Some(context) = gpu() else { return };
    let mut xs = vec![0.5f32; 1000];
    xs[10] = f32::NAN;
    xs[11] = f32::INFINITY;
    xs[12] = f32::NEG_INFINITY;
    for op in UnaryOp::catalogue() {
        let out = context.unary(op, &xs).expect("unary runs");
        let (expected, _) = op.value_and_derivative(0.5);
        assert!(out.values[10].is_nan(), "{op}: NaN in gives NaN");
        assert!(
            out.derivatives[10].is_nan(),
            "{op}: NaN in gives NaN derivative"
        );
        for (i, &v) in out.values.iter().enumerate() {
            if !(10..=12).contains(&i) {
                assert!(
                    common::meets_contract(v, expected),
                    "{op}: sample {i} disturbed: {v}"
                );
            }
        }
    }
}

#[test]
fn sizes_around_the_workgroup() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("sizes");
    for n in [0usize, 1, 255, 256, 257, 1023, 65_537] {
        let xs = uniform(&mut rng, n, -5.0, 5.0);
        let out = context.unary(UnaryOp::Tanh, &xs).expect("unary runs");
        assert_eq!(out.values.len(), n);
        assert_eq!(out.derivatives.len(), n);
        let (values, derivatives) = reference(UnaryOp::Tanh, &xs);
        check(&format!("tanh n={n}"), &xs, &out.values, &values);
        check(&format!("tanh' n={n}"), &xs, &out.derivatives, &derivatives);
    }
}

/// One dispatch of more than 65,535 workgroups of 256 needs the 2-D grid;
/// checking the last elements catches a grid that stops short.
#[test]
fn more_than_65535_workgroups_in_one_dispatch() {
    let Some(context) = gpu() else { return };
    let n = 65_536 * 256 + 1;
    if context.limits().max_binding_bytes < (n as u64) * 4 {
        println!("binding limit below {n} floats; the chunked tests cover this device");
        return;
    }
    let mut rng = rng("big dispatch");
    let xs = uniform(&mut rng, n, -20.0, 20.0);
    let device_xs = context.upload(&xs).expect("upload");
    let (values, derivatives) = context
        .unary_resident(UnaryOp::Sigmoid, &device_xs)
        .expect("resident unary");
    let values = context.download(&values).expect("download");
    let derivatives = context.download(&derivatives).expect("download");
    let (expected_v, expected_d) = reference(UnaryOp::Sigmoid, &xs);
    check("sigmoid, 65,537 workgroups", &xs, &values, &expected_v);
    check(
        "sigmoid', 65,537 workgroups",
        &xs,
        &derivatives,
        &expected_d,
    );
}

fn small_limits_context() -> Option<GpuContext> {
    gpu()?;
    let options = ContextOptions {
        limits: LimitsOverride {
            max_binding_bytes: Some(4096),
            max_buffer_bytes: Some(4096),
            max_workgroups_per_dimension: Some(3),
        },
        ..ContextOptions::default()
    };
    Some(GpuContext::new(&options).expect("a context with smaller limits"))
}

/// Under tiny limits (1024 floats a binding, 3 workgroups a dimension) the
/// host path streams many chunks and uses the 2-D grid; the answer must be
/// bit for bit the one of the unchunked path.
#[test]
fn chunked_equals_unchunked() {
    let Some(small) = small_limits_context() else {
        return;
    };
    let context = gpu().expect("checked above");
    let mut rng = rng("chunked");
    let xs = uniform(&mut rng, 10_007, -20.0, 20.0);
    for op in [UnaryOp::Gelu, UnaryOp::Sin, UnaryOp::Pow { exponent: 3.0 }] {
        let whole = context.unary(op, &xs).expect("unchunked");
        let chunked = small.unary(op, &xs).expect("chunked");
        assert_eq!(
            bytemuck::cast_slice::<f32, u32>(&whole.values),
            bytemuck::cast_slice::<f32, u32>(&chunked.values),
            "{op}: chunked values differ"
        );
        assert_eq!(
            bytemuck::cast_slice::<f32, u32>(&whole.derivatives),
            bytemuck::cast_slice::<f32, u32>(&chunked.derivatives),
            "{op}: chunked derivatives differ"
        );
        // The resident form splits the array into segments of one binding.
        let device_xs = small.upload(&xs).expect("upload");
        let (v, d) = small.unary_resident(op, &device_xs).expect("resident");
        assert_eq!(small.download(&v).expect("download"), whole.values);
        assert_eq!(small.download(&d).expect("download"), whole.derivatives);
    }
}

#[test]
fn resident_equals_host_path_and_empty_arrays_work() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("resident");
    let xs = uniform(&mut rng, 3001, -20.0, 20.0);
    let host = context.unary(UnaryOp::Softplus, &xs).expect("host path");
    let device_xs = context.upload(&xs).expect("upload");
    assert_eq!(device_xs.len(), xs.len());
    let (v, d) = context
        .unary_resident(UnaryOp::Softplus, &device_xs)
        .expect("resident");
    assert_eq!(context.download(&v).expect("download"), host.values);
    assert_eq!(context.download(&d).expect("download"), host.derivatives);

    let empty = context.upload(&[]).expect("empty upload");
    let (v, d) = context
        .unary_resident(UnaryOp::Relu, &empty)
        .expect("empty");
    assert!(v.is_empty() && d.is_empty());
    assert!(context.download(&v).expect("download").is_empty());
}

#[test]
fn an_array_from_another_context_is_refused() {
    let Some(small) = small_limits_context() else {
        return;
    };
    let context = gpu().expect("checked above");
    let foreign = small.upload(&[1.0, 2.0]).expect("upload");
    match context.unary_resident(UnaryOp::Exp, &foreign) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("another")),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn eight_threads_share_one_context() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("threads");
    let inputs: Vec<Vec<f32>> = (0..8)
        .map(|_| uniform(&mut rng, 20_001, -20.0, 20.0))
        .collect();
    let ops = UnaryOp::catalogue();
    let handles: Vec<_> = inputs
        .into_iter()
        .enumerate()
        .map(|(t, xs)| {
            let context = Arc::clone(&context);
            let op = ops[(t * 5) % ops.len()];
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let out = context.unary(op, &xs).expect("unary from a thread");
                    let (values, derivatives) = reference(op, &xs);
                    check(&format!("{op} in thread {t}"), &xs, &out.values, &values);
                    check(
                        &format!("{op}' in thread {t}"),
                        &xs,
                        &out.derivatives,
                        &derivatives,
                    );
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread finished without panicking");
    }
}

#[test]
fn a_destroyed_device_gives_device_lost_not_a_panic() {
    if gpu().is_none() {
        return;
    }
    let context = GpuContext::new(&ContextOptions::default()).expect("a second context");
    let xs = context.upload(&[1.0, 2.0, 3.0]).expect("upload");
    context.destroy();
    assert!(matches!(
        context.unary(UnaryOp::Exp, &[1.0]),
        Err(Error::DeviceLost(_))
    ));
    assert!(matches!(context.download(&xs), Err(Error::DeviceLost(_))));
    assert!(matches!(context.upload(&[1.0]), Err(Error::DeviceLost(_))));
}

#[test]
fn an_adapter_name_that_matches_nothing_is_an_error() {
    let options = ContextOptions {
        adapter_name: Some("no adapter is called this".into()),
        ..ContextOptions::default()
    };
    match GpuContext::new(&options) {
        Err(Error::NoAdapter { detail }) => assert!(detail.contains("no adapter is called this")),
        other => panic!("expected NoAdapter, got {other:?}"),
    }
    let options = ContextOptions {
        backend: Some("vulkna".into()),
        ..ContextOptions::default()
    };
    assert!(matches!(
        GpuContext::new(&options),
        Err(Error::BadEnvironment { .. })
    ));
}

/// lavapipe (Vulkan) and llvmpipe (GL) disagree on NaN comparisons; the edge
/// policy must hold on both.
#[test]
fn the_edge_policy_holds_on_the_gl_backend_too() {
    let options = ContextOptions {
        backend: Some("gl".into()),
        ..ContextOptions::default()
    };
    let context = match GpuContext::new(&options) {
        Ok(context) => context,
        Err(error) => {
            println!("SKIPPED: no GL adapter here ({error})");
            return;
        }
    };
    let mut xs = edge_inputs();
    let mut rng = rng("gl");
    xs.extend(uniform(&mut rng, 5000, -20.0, 20.0));
    for op in UnaryOp::catalogue() {
        let out = context.unary(op, &xs).expect("unary on GL");
        let (values, derivatives) = reference(op, &xs);
        check(&format!("{op} value on GL"), &xs, &out.values, &values);
        check(
            &format!("{op} derivative on GL"),
            &xs,
            &out.derivatives,
            &derivatives,
        );
    }
}

/// The GPU derivative against central differences of the f64 value, so the
/// derivative is checked against the function itself, not only the formula.
#[test]
fn gpu_derivatives_match_central_differences() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("gpu finite differences");
    let xs = uniform(&mut rng, 4099, 0.01, 20.0);
    let xs: Vec<f32> = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 0 { x } else { -x })
        .collect();
    for op in UnaryOp::catalogue() {
        let out = context.unary(op, &xs).expect("unary runs");
        for (i, &x) in xs.iter().enumerate() {
            let x = f64::from(x);
            let smooth = match op {
                UnaryOp::Ln | UnaryOp::Sqrt | UnaryOp::Xlogx => x > 1e-3,
                // Near its poles tan's third derivative swamps a central difference.
                UnaryOp::Tan => x.cos().abs() > 0.1,
                // Inside the domain, away from the edge where f' is infinite.
                UnaryOp::Log1p => x > -0.99,
                UnaryOp::Acosh => x > 1.01,
                UnaryOp::Atanh => x.abs() < 0.99,
                _ => x.abs() > 1e-3,
            };
            if !smooth {
                continue;
            }
            let h = 1e-5 * x.abs().max(1.0);
            let f = |x: f64| op.value_and_derivative(x).0;
            let fd = (f(x + h) - f(x - h)) / (2.0 * h);
            // Central differences carry about 1e-9 relative error here, far
            // inside the contract's own tolerance.
            assert!(
                common::meets_contract(out.derivatives[i], fd),
                "{op}' at x = {x:e}: gpu {:e}, central difference {fd:e}",
                out.derivatives[i]
            );
        }
    }
}

/// Where no adapter exists the CPU backend runs instead; it must give the
/// same answers within the contract.
#[test]
fn the_cpu_fallback_gives_the_same_answers() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("fallback");
    let mut xs = uniform(&mut rng, 10_000, -20.0, 20.0);
    xs.extend(edge_inputs());
    let gpu_backend = chainrule::Backend::Gpu(context);
    let cpu_backend = chainrule::Backend::Cpu(chainrule::CpuBackend);
    for op in UnaryOp::catalogue() {
        let on_gpu = gpu_backend.unary(op, &xs).expect("gpu");
        let on_cpu = cpu_backend.unary(op, &xs).expect("cpu");
        let as_f64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
        check(
            &format!("{op} gpu vs cpu"),
            &xs,
            &on_gpu.values,
            &as_f64(&on_cpu.values),
        );
        check(
            &format!("{op}' gpu vs cpu"),
            &xs,
            &on_gpu.derivatives,
            &as_f64(&on_cpu.derivatives),
        );
    }
}
