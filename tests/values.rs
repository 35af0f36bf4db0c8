//! `Backend::values`: a program's output for each sample without
//! derivatives, on the GPU (one fused forward kernel, or a kernel per node
//! for programs too large for registers) and the CPU path, against the f64
//! oracle; bad input is an error.

mod common;

use chainrule::{Backend, CpuBackend};
use common::programs::{assert_close, backends, bind, output, parse, random_values, sample};
use common::rng;

fn check(label: &str, text: &str, batch: usize, rng: &mut rand::rngs::StdRng) {
    let program = parse(text);
    let data = random_values(&program, batch, (-1.5, 1.5), rng);
    let bound = bind(&program, &data);
    let expected: Vec<f64> = (0..batch)
        .flat_map(|b| output(&program, &sample(&program, &data, b)))
        .collect();
    for (backend, path) in backends() {
        let got = backend
            .values(&program, &bound)
            .unwrap_or_else(|e| panic!("{label} on the {path}: {e}"));
        let got: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
        assert_close(&format!("{label} on the {path}"), &got, &expected, 1e-5);
    }
}

#[test]
fn values_match_the_oracle_on_every_path() {
    let mut rng = rng("values_match_the_oracle_on_every_path");
    check(
        "a layer",
        "input x[8]\nparam W[5,8] b[5]\ny = tanh(W @ x + b)\noutput y",
        33,
        &mut rng,
    );
    check(
        "selections and matrices",
        "input A[3,3]\ninput x[3]\ny = [norm(A @ x), max(x), cross(x, A[0])]\noutput y",
        17,
        &mut rng,
    );
    check(
        "a long reduction (a kernel per node on the GPU)",
        "input x[3000]\ny = logsumexp(x)\noutput y",
        3,
        &mut rng,
    );
    check(
        "a wide layer written x @ W",
        "input x[300]\nparam W[300,20]\ny = sigmoid(x @ W)\noutput y",
        5,
        &mut rng,
    );
}

#[test]
fn values_refuse_bad_input() {
    let program = parse("input x[3]\ny = sum(x)\noutput y");
    for (backend, path) in backends() {
        for (what, data) in [("4 values", vec![1.0f32; 4]), ("none", vec![])] {
            let result = backend.values(&program, &[("x", &data[..])]);
            assert!(result.is_err(), "{what} on the {path}: {result:?}");
        }
        assert!(backend.values(&program, &[]).is_err(), "no x on the {path}");
    }
    let cpu = Backend::Cpu(CpuBackend);
    assert_eq!(
        cpu.values(&program, &[("x", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0][..])])
            .expect("two samples"),
        vec![6.0, 15.0]
    );
}
