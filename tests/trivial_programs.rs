//! Programs that compute little or nothing from the variable asked about:
//! an input passed through, a constant multiple, a selection of all of it,
//! and a variable the output does not read. Every request answers on the
//! GPU as on the CPU path (identity, diagonal or zero Jacobians), where the
//! generated kernels read few or none of their bindings.

mod common;

use chainrule::{Backend, CpuBackend, Reduction};
use common::programs::{assert_close, backends, parse};

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&e| f64::from(e)).collect()
}

#[test]
fn pass_through_and_unused_inputs_on_every_path() {
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    let a: Vec<f32> = (0..36).map(|i| i as f32 * 0.1).collect();
    for text in [
        "input x[3]\ny = x\noutput y",
        "input x[3]\noutput x",
        "input x[3]\ny = 2 * x\noutput y",
        "input x[3]\ny = x[0:3]\noutput y",
        "input A[3,3] x[3]\ny = A[0]\noutput y",
        "input A[3,3] x[3]\ny = A\noutput y",
        "input A[3,3] x[3]\ny = sum(A) + 0 * sum(x)\noutput y",
    ] {
        let program = parse(text);
        let mut bound: Vec<(&str, &[f32])> = vec![("x", &x[..])];
        if program.variable("A").is_some() {
            bound.push(("A", &a[..]));
        }
        let m = program.shapes[program.output].size();
        let cpu = Backend::Cpu(CpuBackend);
        let want = cpu.jacobian(&program, "x", &bound).expect("the CPU path");
        let want_jacobian = want.jacobian.try_to_dense(4).expect("dense");
        let seed_in = vec![0.5f32; 12];
        let seed_out = vec![0.5f32; 4 * m];
        for (backend, path) in backends() {
            let at = format!("{text} on the {path}");
            let got = backend
                .jacobian(&program, "x", &bound)
                .unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_close(&at, &f64s(&got.values), &f64s(&want.values), 1e-6);
            assert_close(
                &format!("{at}: Jacobian"),
                &got.jacobian.try_to_dense(4).expect("dense"),
                &want_jacobian,
                1e-6,
            );
            let values = backend
                .values(&program, &bound)
                .unwrap_or_else(|e| panic!("{at}: values: {e}"));
            assert_close(
                &format!("{at}: values"),
                &f64s(&values),
                &f64s(&want.values),
                1e-6,
            );
            let jvp = backend
                .jvp(&program, "x", &bound, &seed_in)
                .unwrap_or_else(|e| panic!("{at}: jvp: {e}"));
            let want_jvp = cpu.jvp(&program, "x", &bound, &seed_in).expect("cpu jvp");
            assert_close(&format!("{at}: jvp"), &f64s(&jvp), &f64s(&want_jvp), 1e-6);
            let vjp = backend
                .vjp(&program, "x", &bound, &seed_out)
                .unwrap_or_else(|e| panic!("{at}: vjp: {e}"));
            let want_vjp = cpu.vjp(&program, "x", &bound, &seed_out).expect("cpu vjp");
            assert_close(&format!("{at}: vjp"), &f64s(&vjp), &f64s(&want_vjp), 1e-6);
            if m == 1 {
                for reduction in [Reduction::Mean, Reduction::PerSample] {
                    let got = backend
                        .gradient(&program, &["x"], &bound, reduction)
                        .unwrap_or_else(|e| panic!("{at}: gradient: {e}"));
                    let want = cpu
                        .gradient(&program, &["x"], &bound, reduction)
                        .expect("cpu gradient");
                    assert_close(
                        &format!("{at}: gradient"),
                        &f64s(&got.gradients[0].values),
                        &f64s(&want.gradients[0].values),
                        1e-6,
                    );
                }
            }
        }
    }
}
