//! `chainrule jacobian` and `chainrule explain` on programs, as a user runs
//! them: the result against the per-sample oracle, JAX's shape convention,
//! and clear errors for every kind of bad file.

mod common;

use std::path::{Path, PathBuf};

use chainrule::npy;
use chainrule::program::Program;

const MLP: &str = "input x[6]\nparam W1[5,6] b1[5] W2[3,5] b2[3]\nh = sigmoid(W1 @ x + b1)\ny = tanh(W2 @ h + b2)\noutput y\n";

fn write(dir: &Path, name: &str, shape: &[usize], data: &[f32]) -> PathBuf {
    let path = dir.join(format!("{name}.npy"));
    npy::write(&path, shape, data).expect("write");
    path
}

fn arg(kind: &str, name: &str, path: &Path) -> [String; 2] {
    [format!("--{kind}"), format!("{name}={}", path.display())]
}

#[test]
fn the_two_layer_network_matches_the_oracle_in_jax_layout() {
    let dir = common::scratch("jac-mlp");
    let mut rng = common::rng("cli jacobian");
    let batch = 19;
    let x = common::uniform(&mut rng, batch * 6, -4.0, 4.0);
    let w1 = common::uniform(&mut rng, 30, -0.4, 0.4);
    let b1 = common::uniform(&mut rng, 5, -0.4, 0.4);
    let w2 = common::uniform(&mut rng, 15, -0.45, 0.45);
    let b2 = common::uniform(&mut rng, 3, -0.45, 0.45);
    let program_path = dir.join("mlp.txt");
    std::fs::write(&program_path, MLP).expect("program");
    let mut args = vec![
        "jacobian".to_string(),
        format!("@{}", program_path.display()),
    ];
    args.extend(arg("input", "x", &write(&dir, "x", &[batch, 6], &x)));
    args.extend(arg("param", "W1", &write(&dir, "w1", &[5, 6], &w1)));
    args.extend(arg("param", "b1", &write(&dir, "b1", &[5], &b1)));
    args.extend(arg("param", "W2", &write(&dir, "w2", &[3, 5], &w2)));
    args.extend(arg("param", "b2", &write(&dir, "b2", &[3], &b2)));
    let (out, values) = (dir.join("J.npy"), dir.join("Y.npy"));
    args.extend([
        "--out".into(),
        out.display().to_string(),
        "--values".into(),
        values.display().to_string(),
    ]);
    let program = Program::parse(MLP).expect("parses");
    let mut modes = vec![vec!["--cpu".to_string()]];
    if common::gpu().is_some() {
        modes.push(vec![]);
    }
    for extra in modes {
        let mut full = args.clone();
        full.extend(extra.iter().cloned());
        let (ok, stdout, stderr) = common::chainrule(&full);
        assert!(ok, "{extra:?}: {stdout}\n{stderr}");
        // A run meant for the GPU must not have fallen back to the CPU.
        assert!(!stderr.contains("falling back"), "{extra:?}: {stderr}");
        let j = npy::read(&out).expect("J");
        assert_eq!(
            j.shape,
            vec![batch, 3, 6],
            "batch, output shape, input shape"
        );
        assert_eq!(npy::read(&values).expect("Y").shape, vec![batch, 3]);
        let f64s = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
        let (w1d, b1d, w2d, b2d) = (f64s(&w1), f64s(&b1), f64s(&w2), f64s(&b2));
        for b in 0..batch {
            let xs = f64s(&x[b * 6..b * 6 + 6]);
            let dense = program
                .jacobian_dense(&[&xs, &w1d, &b1d, &w2d, &b2d], 0)
                .expect("oracle");
            for (k, e) in dense.iter().enumerate() {
                let a = f64::from(j.data[b * 18 + k]);
                assert!(
                    (a - e).abs() <= 1e-6 + 1e-5 * e.abs(),
                    "{extra:?} sample {b} [{k}]: {a} vs {e}"
                );
            }
        }
    }
}

#[test]
fn a_scalar_output_gives_shape_batch_by_input() {
    let dir = common::scratch("jac-scalar");
    let x = vec![0.5f32; 4 * 3];
    let mut args = vec![
        "jacobian".to_string(),
        "input x[3]\ny = sum(x * x)\noutput y".to_string(),
    ];
    args.extend(arg("input", "x", &write(&dir, "x", &[4, 3], &x)));
    let out = dir.join("J.npy");
    args.extend(["--out".into(), out.display().to_string(), "--cpu".into()]);
    let (ok, _, stderr) = common::chainrule(&args);
    assert!(ok, "{stderr}");
    let j = npy::read(&out).expect("J");
    assert_eq!(j.shape, vec![4, 3]);
    assert!(j.data.iter().all(|&v| v == 1.0), "d sum(x^2)/dx = 2x = 1");
}

#[test]
fn bad_files_and_flags_get_clear_errors() {
    let dir = common::scratch("jac-bad");
    let x = write(&dir, "x", &[4, 6], &[0.1; 24]);
    let x_wrong = write(&dir, "xw", &[4, 5], &[0.1; 20]);
    let w1 = write(&dir, "w1", &[5, 6], &[0.1; 30]);
    let w1_wrong = write(&dir, "w1w", &[6, 5], &[0.1; 30]);
    let b1 = write(&dir, "b1", &[5], &[0.1; 5]);
    let w2 = write(&dir, "w2", &[3, 5], &[0.1; 15]);
    let b2 = write(&dir, "b2", &[3], &[0.1; 3]);
    let out = dir.join("J.npy");
    let base = |x: &Path, w1: &Path, x_kind: &str| {
        let mut args = vec!["jacobian".to_string(), MLP.to_string()];
        args.extend(arg(x_kind, "x", x));
        args.extend(arg("param", "W1", w1));
        args.extend(arg("param", "b1", &b1));
        args.extend(arg("param", "W2", &w2));
        args.extend(arg("param", "b2", &b2));
        args.extend(["--out".into(), out.display().to_string(), "--cpu".into()]);
        args
    };
    let mut missing = base(&x, &w1, "input");
    missing.drain(10..12);
    let mut extra = base(&x, &w1, "input");
    extra.extend(arg("input", "z", &x));
    let mut wrt_param = base(&x, &w1, "input");
    wrt_param.extend(["--wrt".into(), "W1".into()]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (base(&x_wrong, &w1, "input"), "expected shape (B, 6)"),
        (base(&x, &w1_wrong, "input"), "expected shape (5, 6)"),
        (base(&x, &w1, "param"), "pass it with --input"),
        (missing, "no values given for `b2`"),
        (extra, "no variable `z`"),
        (wrt_param, "--wrt W1: not an input"),
        (
            {
                let mut a = base(&x, &w1, "input");
                a[1] = "input x[6]\ny = W @ x\noutput y".into();
                a
            },
            "W",
        ),
    ];
    for (args, expected) in cases {
        common::assert_fails_clearly(&format!("{args:?}"), common::chainrule(&args), expected);
    }
}

#[test]
fn explain_shows_the_chain_and_its_costs() {
    let (ok, stdout, stderr) = common::chainrule(&["explain", MLP, "--batch", "4096"]);
    assert!(ok, "{stderr}");
    for needle in [
        "Diagonal",
        "Shared",
        "chosen order",
        "pure forward",
        "pure reverse",
        "fewer flops",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
}
