//! The special functions from the command line, as a user runs them:
//! `eval` of expressions with one and two inputs, `explain` of atan2, and
//! `jacobian` of a program, on the GPU and with `--cpu`, against the f64
//! reference and the program's oracle.

mod common;

use std::path::Path;

use chainrule::graph::{Graph, InputOrder};
use chainrule::npy;
use chainrule::program::Program;

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `--cpu`, and the GPU where there is one.
fn modes() -> Vec<Vec<&'static str>> {
    let mut modes = vec![vec!["--cpu"]];
    if common::gpu().is_some() {
        modes.push(vec![]);
    }
    modes
}

#[test]
fn eval_of_every_new_function_matches_the_reference() {
    let dir = common::scratch("eval-special");
    let mut rng = common::rng("cli special functions");
    let x = common::uniform(&mut rng, 10_001, 0.05, 3.0);
    let y = common::uniform(&mut rng, 10_001, -3.0, 3.0);
    let (x_path, y_path) = (dir.join("x.npy"), dir.join("y.npy"));
    npy::write(&x_path, &[x.len()], &x).expect("write x");
    npy::write(&y_path, &[y.len()], &y).expect("write y");
    let cases = [
        "asinh(x)",
        "acosh(1 + x)",
        "atanh(x / 4)",
        "log1p(x) * expm1(-x)",
        "erf(x) + gelu_exact(-x)",
        "xlogx(x) - atan(x)",
        "atan2(y, x)",
        "xlogy(y, x)",
    ];
    for text in cases {
        let graph = Graph::parse(text, InputOrder::FirstAppearance).expect("parses");
        let names = graph.inputs().to_vec();
        let columns: Vec<&[f32]> = names
            .iter()
            .map(|n| if n == "x" { &x[..] } else { &y[..] })
            .collect();
        let (values, derivatives) = graph.evaluate_columns(&columns).expect("reference");
        for extra in modes() {
            let (v, d) = (dir.join("v.npy"), dir.join("d.npy"));
            let mut args = vec!["eval".to_string(), text.to_string()];
            for n in &names {
                let file = if n == "x" { &x_path } else { &y_path };
                args.extend(["--input".to_string(), format!("{n}={}", path(file))]);
            }
            args.extend([
                "--values".into(),
                path(&v),
                "--derivatives".into(),
                path(&d),
            ]);
            args.extend(extra.iter().map(|s| s.to_string()));
            let (ok, stdout, stderr) = common::chainrule(&args);
            assert!(ok, "{text} {extra:?}: {stdout}\n{stderr}");
            assert!(
                !stderr.contains("falling back"),
                "{text} {extra:?}: {stderr}"
            );
            let got_v = npy::read(&v).expect("values");
            let got_d = npy::read(&d).expect("derivatives");
            // Two terms at most, each within the contract of its own size.
            let close = |a: f32, e: f32| {
                (a.is_nan() && e.is_nan())
                    || (a - e).abs() <= 2.0 * (1e-6 + 1e-5 * e.abs().max(1.0))
            };
            for (i, (&a, &e)) in got_v.data.iter().zip(&values).enumerate() {
                assert!(close(a, e), "{text} {extra:?} value [{i}]: {a} vs {e}");
            }
            for (i, (&a, &e)) in got_d.data.iter().zip(&derivatives).enumerate() {
                assert!(close(a, e), "{text} {extra:?} derivative [{i}]: {a} vs {e}");
            }
        }
    }
}

#[test]
fn explain_writes_the_partials_of_atan2_and_xlogy() {
    let (ok, stdout, stderr) = common::chainrule(&["explain", "atan2(y, x)"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("df/dy = x/(x^2 + y^2)"), "{stdout}");
    assert!(stdout.contains("df/dx = -y/(x^2 + y^2)"), "{stdout}");
    let (ok, stdout, stderr) = common::chainrule(&["explain", "xlogy(x, y) + erf(x)"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("df/dy = x/y"), "{stdout}");
    assert!(stdout.contains("ln(y)"), "{stdout}");
    assert!(stdout.contains("2/sqrt(pi)*exp(-x^2)"), "{stdout}");
}

#[test]
fn a_misspelt_new_function_gets_a_suggestion() {
    for (text, near) in [
        ("gelu_exakt(x)", "`gelu_exact`"),
        ("atan_2(y, x)", "`atan2`"),
        // Other libraries' names, too far from ours for an edit distance.
        ("log(x)", "`ln`"),
        ("arctan(x)", "`atan`"),
    ] {
        let (ok, _, stderr) = common::chainrule(&["explain", text]);
        assert!(!ok);
        assert!(
            stderr.contains(&format!("did you mean {near}?")),
            "{stderr}"
        );
    }
}

/// A program with every new function: the Jacobian from the command line
/// against the program's oracle.
#[test]
fn jacobian_of_a_program_with_the_new_functions() {
    let text = "input p[2]\nparam s\n\
                r = asinh(dot(p, p)) + sum(xlogx(sigmoid(p)))\n\
                theta = atan2(p, 1 - p) + erf(s * sum(p))\n\
                y = r * theta + log1p(exp(-p)) - gelu_exact(p) * atanh(tanh(p) / 2) \
                + xlogy(sigmoid(p), 1 + p^2) + expm1(p / 3) + acosh(2 + p^2) + atan(p)\n\
                output y";
    let program = Program::parse(text).expect("parses");
    let dir = common::scratch("jac-special");
    let mut rng = common::rng("cli jacobian special");
    let batch = 33;
    let p = common::uniform(&mut rng, batch * 2, -2.0, 2.0);
    let (p_path, s_path) = (dir.join("p.npy"), dir.join("s.npy"));
    npy::write(&p_path, &[batch, 2], &p).expect("write p");
    npy::write(&s_path, &[], &[0.7f32]).expect("write s");
    let out = dir.join("J.npy");
    for extra in modes() {
        let mut args = vec![
            "jacobian".to_string(),
            text.to_string(),
            "--input".into(),
            format!("p={}", path(&p_path)),
            "--param".into(),
            format!("s={}", path(&s_path)),
            "--out".into(),
            path(&out),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let (ok, stdout, stderr) = common::chainrule(&args);
        assert!(ok, "{extra:?}: {stdout}\n{stderr}");
        let j = npy::read(&out).expect("J");
        assert_eq!(j.shape, vec![batch, 2, 2]);
        for b in 0..batch {
            let pb: Vec<f64> = p[b * 2..b * 2 + 2].iter().map(|&v| f64::from(v)).collect();
            let want = program
                .jacobian_dense(&[&pb, &[0.7f32.into()]], 0)
                .expect("oracle");
            for (k, w) in want.iter().enumerate() {
                let a = f64::from(j.data[b * 4 + k]);
                assert!(
                    (a - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "{extra:?} sample {b} [{k}]: {a} vs {w}"
                );
            }
        }
    }
}
