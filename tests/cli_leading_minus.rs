//! Every command's expression or program may begin with a minus sign, as
//! `-x^2` does: given plainly, after `--` with the options following it, and
//! after `--` at the end. Clap would otherwise read `-x^2` as a cluster of
//! short flags and refuse it.

mod common;

use std::path::Path;

use chainrule::npy;

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// The GPU (when there is one) and the CPU, as the flags that choose them.
fn modes() -> Vec<Vec<&'static str>> {
    let mut modes = vec![vec!["--cpu"]];
    if common::gpu().is_some() {
        modes.push(vec![]);
    }
    modes
}

fn run(args: &[String]) -> (String, String) {
    let (ok, stdout, stderr) = common::chainrule(args);
    assert!(ok, "{args:?} failed:\n{stdout}\n{stderr}");
    assert!(
        !stderr.contains("falling back"),
        "{args:?} fell back: {stderr}"
    );
    (stdout, stderr)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// An expression's value and derivative at x.
type ClosedForm = fn(f64) -> (f64, f64);

#[test]
fn eval_accepts_an_expression_beginning_with_minus() {
    let dir = common::scratch("minus-eval");
    let xs = [-2.0f32, -0.5, 0.0, 1.5, 3.0];
    let x_path = dir.join("x.npy");
    npy::write(&x_path, &[xs.len()], &xs).expect("write x");
    let x_arg = format!("x={}", path(&x_path));
    let (v, d) = (path(&dir.join("v.npy")), path(&dir.join("d.npy")));
    let cases: [(&str, ClosedForm); 3] = [
        ("-x^2", |x| (-x * x, -2.0 * x)),
        ("-3*x + 1", |x| (-3.0 * x + 1.0, -3.0)),
        ("-exp(-x)", |x| (-(-x).exp(), (-x).exp())),
    ];
    for extra in modes() {
        for (expression, closed_form) in &cases {
            let outputs = ["--values", &v, "--derivatives", &d];
            let forms = [
                // Plainly, with the options after it.
                [&["eval", expression, "--input", &x_arg][..], &outputs[..]].concat(),
                // After `--`, with the options still after it.
                [
                    &["eval", "--", expression, "--input", &x_arg][..],
                    &outputs[..],
                ]
                .concat(),
                // After `--` at the end, as clap suggests.
                [
                    &["eval", "--input", &x_arg][..],
                    &outputs[..],
                    &["--", expression][..],
                ]
                .concat(),
            ];
            for form in forms {
                let mut args = strings(&form);
                args.splice(1..1, extra.iter().map(|s| s.to_string()));
                run(&args);
                let values = npy::read(Path::new(&v)).expect("values");
                let derivatives = npy::read(Path::new(&d)).expect("derivatives");
                for (i, &x) in xs.iter().enumerate() {
                    let (value, derivative) = closed_form(f64::from(x));
                    assert!(
                        common::meets_contract(values.data[i], value)
                            && common::meets_contract(derivatives.data[i], derivative),
                        "{args:?} at x = {x}: ({}, {}), expected ({value}, {derivative})",
                        values.data[i],
                        derivatives.data[i]
                    );
                }
            }
        }
    }
}

#[test]
fn explain_accepts_an_expression_beginning_with_minus() {
    for args in [
        vec!["explain", "-x^2"],
        vec!["explain", "--", "-x^2"],
        vec!["explain", "-x^2", "--batch", "8"],
        vec!["explain", "--", "-x^2", "--batch", "8"],
    ] {
        let (stdout, _) = run(&strings(&args));
        assert!(stdout.contains("dy/dx = -2*x"), "{args:?}:\n{stdout}");
    }
}

#[test]
fn jacobian_and_grad_accept_a_program_beginning_with_minus() {
    let dir = common::scratch("minus-program");
    let xs = [-1.0f32, 0.25, 2.0];
    let x_path = dir.join("x.npy");
    npy::write(&x_path, &[xs.len()], &xs).expect("write x");
    let x_arg = format!("x={}", path(&x_path));
    let out = path(&dir.join("J.npy"));
    let grads = dir.join("grads");
    for extra in modes() {
        let mut args = strings(&["jacobian", "-x^2", "--input", &x_arg, "--out", &out]);
        args.extend(extra.iter().map(|s| s.to_string()));
        run(&args);
        let j = npy::read(Path::new(&out)).expect("jacobian");
        for (i, &x) in xs.iter().enumerate() {
            assert!(
                common::meets_contract(j.data[i], -2.0 * f64::from(x)),
                "jacobian {extra:?} at x = {x}: {}",
                j.data[i]
            );
        }
        let mut args = strings(&[
            "grad",
            "--",
            "-x^2",
            "--input",
            &x_arg,
            "--wrt",
            "x",
            "--per-sample",
            "--out-dir",
            &path(&grads),
        ]);
        args.splice(1..1, extra.iter().map(|s| s.to_string()));
        run(&args);
        let g = npy::read(&grads.join("x.npy")).expect("gradient");
        for (i, &x) in xs.iter().enumerate() {
            assert!(
                common::meets_contract(g.data[i], -2.0 * f64::from(x)),
                "grad {extra:?} at x = {x}: {}",
                g.data[i]
            );
        }
    }
}
