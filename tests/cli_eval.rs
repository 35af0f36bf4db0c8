//! `chainrule eval` and `chainrule explain` as a user runs them, on .npy
//! files: the seed's example against its closed form, several inputs, f64
//! input, and every kind of bad input with a clear error.

mod common;

use std::path::Path;

use chainrule::npy;
use npyz::WriterBuilder;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn write_f64(p: &Path, data: &[f64]) {
    let file = std::fs::File::create(p).expect("create");
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[data.len() as u64])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .expect("writer");
    writer.extend(data.iter().copied()).expect("write");
    writer.finish().expect("finish");
}

#[test]
fn eval_matches_the_closed_form_of_the_seed_example() {
    let gpu_present = common::gpu().is_some();
    let dir = common::scratch("eval-seed");
    let mut rng = common::rng("eval seed example");
    let xs = common::uniform(&mut rng, 50_001, 0.2, 1.4);
    let x_path = dir.join("x.npy");
    npy::write(&x_path, &[xs.len()], &xs).expect("write x");
    let mut modes = vec![vec!["--cpu"]];
    if gpu_present {
        modes.push(vec![]);
        modes.push(vec!["--unfused"]);
    }
    for extra in modes {
        let (v, d) = (dir.join("v.npy"), dir.join("d.npy"));
        let x_arg = format!("x={}", path(&x_path));
        let mut args = vec![
            "eval",
            "ln(sin(x^3)^2)",
            "--input",
            &x_arg,
            "--values",
            path(&v),
            "--derivatives",
            path(&d),
        ];
        args.extend(extra.iter().copied());
        let (ok, stdout, stderr) = common::chainrule(&args);
        assert!(ok, "{extra:?}: {stdout}\n{stderr}");
        // A run meant for the GPU must not have fallen back to the CPU.
        assert!(!stderr.contains("falling back"), "{extra:?}: {stderr}");
        let values = npy::read(&v).expect("values");
        let derivatives = npy::read(&d).expect("derivatives");
        assert_eq!(values.shape, vec![xs.len()]);
        assert_eq!(
            derivatives.shape,
            vec![xs.len()],
            "one input gives shape (N,)"
        );
        for (i, &x) in xs.iter().enumerate() {
            let x = f64::from(x);
            // Near x^3 = pi/2 the derivative passes through 0, and the f32
            // rounding of x^3 alone (1e-7) moves cos(x^3) by more than the
            // contract allows relative to it: the problem, not the kernel,
            // is ill-conditioned there, so those few samples are skipped.
            if (x * x * x).cos().abs() < 1e-2 {
                continue;
            }
            let closed = 6.0 * x * x * (x * x * x).cos() / (x * x * x).sin();
            assert!(
                common::meets_contract(derivatives.data[i], closed),
                "{extra:?} x = {x}: {} vs {closed}",
                derivatives.data[i]
            );
            let value = (x * x * x).sin().powi(2).ln();
            assert!(common::meets_contract(values.data[i], value));
        }
    }
}

#[test]
fn eval_with_two_inputs_in_flag_order_and_f64_files() {
    let dir = common::scratch("eval-two");
    let xs = [1.0f64, 2.0, -0.5];
    let ys = [3.0f32, -1.0, 0.25];
    let (x_path, y_path, d_path) = (dir.join("x.npy"), dir.join("y.npy"), dir.join("d.npy"));
    write_f64(&x_path, &xs);
    npy::write(&y_path, &[3], &ys).expect("write y");
    let (x_arg, y_arg) = (
        format!("x={}", path(&x_path)),
        format!("y={}", path(&y_path)),
    );
    // --input y first: the columns follow the flags, not the expression.
    let (ok, stdout, stderr) = common::chainrule(&[
        "eval",
        "3*x^2*y",
        "--input",
        &y_arg,
        "--input",
        &x_arg,
        "--derivatives",
        path(&d_path),
        "--cpu",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let d = npy::read(&d_path).expect("derivatives");
    assert_eq!(d.shape, vec![3, 2]);
    for i in 0..3 {
        let (x, y) = (xs[i], f64::from(ys[i]));
        assert_eq!(f64::from(d.data[2 * i]), 3.0 * x * x, "d/dy");
        assert!(
            (f64::from(d.data[2 * i + 1]) - 6.0 * x * y).abs() < 1e-6,
            "d/dx"
        );
    }
}

#[test]
fn eval_refuses_bad_input_clearly() {
    let dir = common::scratch("eval-bad");
    let good = dir.join("good.npy");
    let short = dir.join("short.npy");
    let matrix = dir.join("matrix.npy");
    let ints = dir.join("ints.npy");
    npy::write(&good, &[4], &[1.0, 2.0, 3.0, 4.0]).expect("write");
    npy::write(&short, &[2], &[1.0, 2.0]).expect("write");
    npy::write(&matrix, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).expect("write");
    {
        let file = std::fs::File::create(&ints).expect("create");
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[3])
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .expect("writer");
        writer.extend([1i64, 2, 3]).expect("write");
        writer.finish().expect("finish");
    }
    let arg = |name: &str, p: &Path| format!("{name}={}", path(p));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["x*y".into(), "--input".into(), arg("x", &good)],
            "`y` is not an input",
        ),
        (
            vec![
                "x".into(),
                "--input".into(),
                arg("x", &good),
                "--input".into(),
                arg("z", &good),
            ],
            "`z` does not appear",
        ),
        (
            vec![
                "x*y".into(),
                "--input".into(),
                arg("x", &good),
                "--input".into(),
                arg("y", &short),
            ],
            "has 2 samples",
        ),
        (
            vec!["x".into(), "--input".into(), arg("x", &matrix)],
            "expected a 1-D array",
        ),
        (
            vec!["2 * 3".into()],
            "has no variables, so there are no samples to evaluate (its value is 6)",
        ),
        (
            vec!["x".into(), "--input".into(), arg("x", &ints)],
            "use float32 or float64",
        ),
        (
            vec![
                "x".into(),
                "--input".into(),
                arg("x", &dir.join("missing.npy")),
            ],
            "missing.npy",
        ),
        (
            vec!["x".into(), "--input".into(), "x".into()],
            "expected NAME=FILE.npy",
        ),
        (
            vec!["sigmod(x)".into(), "--input".into(), arg("x", &good)],
            "did you mean `sigmoid`",
        ),
        (vec!["x +".into(), "--input".into(), arg("x", &good)], "^"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["eval".to_string()];
        full.extend(args.iter().cloned());
        full.push("--cpu".into());
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        common::assert_fails_clearly(&format!("{args:?}"), common::chainrule(&refs), expected);
    }
}

#[test]
fn explain_prints_the_four_steps() {
    let (ok, stdout, stderr) = common::chainrule(&["explain", "x + x^2"]);
    assert!(ok, "{stderr}");
    for step in ["Step 1", "Step 2", "Step 3", "Step 4", "2 paths"] {
        assert!(stdout.contains(step), "`{step}` missing:\n{stdout}");
    }
    let (ok, stdout, _) = common::chainrule(&["explain", "ln(sin(x^3)^2)"]);
    assert!(ok);
    assert!(
        stdout.contains("dy/dx = 6*x^2*cos(x^3)/sin(x^3)"),
        "{stdout}"
    );
    let (ok, _, stderr) = common::chainrule(&["explain", "ln(sin(x^3)^2"]);
    assert!(!ok && stderr.contains("unclosed"), "{stderr}");
}

/// `chainrule eval sin(x)` on the CPU path, writing both outputs.
fn eval_sin(x_arg: &str, values: &Path, derivatives: &Path) -> (bool, String, String) {
    common::chainrule(&[
        "eval",
        "sin(x)",
        "--input",
        x_arg,
        "--cpu",
        "--values",
        path(values),
        "--derivatives",
        path(derivatives),
    ])
}

/// Outputs are all written or none: a path in a directory that does not
/// exist, or one file named for two outputs, is refused before any work,
/// and no output is left behind; a program where an expression belongs
/// says so. Also for `jacobian --out/--values`.
#[test]
fn outputs_are_checked_before_anything_is_written() {
    let dir = common::scratch("eval-outputs");
    let x_path = dir.join("x.npy");
    npy::write(&x_path, &[3], &[0.5, 1.0, 2.0]).expect("write x");
    let x_arg = format!("x={}", path(&x_path));
    let values = dir.join("v.npy");
    let missing = dir.join("no-such-dir").join("d.npy");
    let run = |values: &Path, derivatives: &Path| eval_sin(&x_arg, values, derivatives);
    common::assert_fails_clearly(
        "a derivatives path in a missing directory",
        run(&values, &missing),
        "does not exist",
    );
    assert!(!values.exists(), "the values were written anyway");
    common::assert_fails_clearly(
        "one file for both outputs",
        run(
            &values,
            &dir.join("..")
                .join(dir.file_name().expect("a name"))
                .join("v.npy"),
        ),
        "each output needs a file of its own",
    );
    assert!(!values.exists(), "the values were written anyway");
    let (ok, stdout, stderr) = run(&values, &dir.join("d.npy"));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(values.exists() && dir.join("d.npy").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("the scratch folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let program = dir.join("p.txt");
    std::fs::write(&program, "input x[3]\noutput sin(x)\n").expect("write the program");
    let out = dir.join("j.npy");
    let program_arg = format!("@{}", path(&program));
    let x3 = dir.join("x3.npy");
    npy::write(&x3, &[1, 3], &[0.5, 1.0, 2.0]).expect("write x3");
    let x3_arg = format!("x={}", path(&x3));
    common::assert_fails_clearly(
        "jacobian --values in a missing directory",
        common::chainrule(&[
            "jacobian",
            &program_arg,
            "--input",
            &x3_arg,
            "--cpu",
            "--out",
            path(&out),
            "--values",
            path(&missing),
        ]),
        "does not exist",
    );
    assert!(!out.exists(), "the Jacobian was written anyway");

    common::assert_fails_clearly(
        "a program given to eval",
        common::chainrule(&["eval", "input x\noutput sin(x)", "--input", &x_arg]),
        "this is a program",
    );
}

/// An output given as a symbolic link is written through it (the link
/// stays), a link to another output is the same file and refused, and
/// `grad --out-dir` naming a file says so.
#[cfg(unix)]
#[test]
fn outputs_through_links_and_out_dir_files() {
    let dir = common::scratch("eval-links");
    let x_path = dir.join("x.npy");
    npy::write(&x_path, &[3], &[0.5, 1.0, 2.0]).expect("write x");
    let x_arg = format!("x={}", path(&x_path));
    let real = dir.join("real.npy");
    std::fs::write(&real, b"old").expect("write real");
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink(&real, &link).expect("link");
    let eval = |values: &Path, derivatives: &Path| eval_sin(&x_arg, values, derivatives);
    common::assert_fails_clearly(
        "a link to the other output",
        eval(&real, &link),
        "each output needs a file of its own",
    );
    assert_eq!(std::fs::read(&real).expect("real"), b"old");
    let (ok, stdout, stderr) = eval(&link, &dir.join("d.npy"));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("the link")
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(npy::read(&real).expect("written through").shape, vec![3]);

    common::assert_fails_clearly(
        "--out-dir naming a file",
        common::chainrule(&[
            "grad",
            "input x\noutput sin(x)",
            "--input",
            &x_arg,
            "--wrt",
            "x",
            "--cpu",
            "--out-dir",
            path(&real),
        ]),
        "--out-dir names a file",
    );
}
