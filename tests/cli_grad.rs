//! `chainrule grad` as a user runs it: the neuron's gradients against their
//! closed forms, per-sample shapes, and clear errors.

mod common;

use std::path::{Path, PathBuf};

use chainrule::npy;

const NEURON: &str =
    "input x[4]\ninput t\nparam w[4] b\na = relu(dot(w, x) + b)\nloss = mse(a, t)\noutput loss\n";

fn write(dir: &Path, name: &str, shape: &[usize], data: &[f32]) -> String {
    let path = dir.join(format!("{name}.npy"));
    npy::write(&path, shape, data).expect("write");
    path.display().to_string()
}

#[test]
fn grad_writes_the_neurons_gradients() {
    let dir: PathBuf = std::env::temp_dir().join(format!("chainrule-grad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rng = common::rng("cli grad");
    let batch = 300;
    let x = common::uniform(&mut rng, batch * 4, -2.0, 2.0);
    let t = common::uniform(&mut rng, batch, -1.0, 1.0);
    let w = [0.5f32, -0.25, 0.75, 0.1];
    let b = [0.2f32];
    let args = |extra: &[&str], out: &Path| {
        let mut a: Vec<String> = vec![
            "grad".into(),
            NEURON.into(),
            "--input".into(),
            format!("x={}", write(&dir, "x", &[batch, 4], &x)),
            "--input".into(),
            format!("t={}", write(&dir, "t", &[batch], &t)),
            "--param".into(),
            format!("w={}", write(&dir, "w", &[4], &w)),
            "--param".into(),
            format!("b={}", write(&dir, "b", &[], &b)),
            "--out-dir".into(),
            out.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // The closed forms: dC/dw = (2/N) sum over active samples of e_i x_i.
    let (mut gw, mut gb) = ([0f64; 4], 0f64);
    for i in 0..batch {
        let z: f64 = (0..4)
            .map(|j| f64::from(w[j]) * f64::from(x[i * 4 + j]))
            .sum::<f64>()
            + f64::from(b[0]);
        if z > 0.0 {
            let e = z - f64::from(t[i]);
            for j in 0..4 {
                gw[j] += 2.0 * e * f64::from(x[i * 4 + j]) / batch as f64;
            }
            gb += 2.0 * e / batch as f64;
        }
    }
    let mut modes = vec![vec!["--cpu"]];
    if common::gpu().is_some() {
        modes.push(vec![]);
    }
    for extra in modes {
        let out = dir.join(format!("mean{}", extra.len()));
        let mut flags = vec!["--wrt", "w,b"];
        flags.extend(extra.iter().copied());
        let (ok, stdout, stderr) = common::chainrule(&args(&flags, &out));
        assert!(ok, "{stdout}\n{stderr}");
        // A run meant for the GPU must not have fallen back to the CPU.
        assert!(!stderr.contains("falling back"), "{stderr}");
        let dw = npy::read(&out.join("w.npy")).expect("w");
        let db = npy::read(&out.join("b.npy")).expect("b");
        assert_eq!(dw.shape, vec![4]);
        assert!(db.shape.is_empty());
        for (j, (&actual, expected)) in dw.data.iter().zip(gw).enumerate() {
            assert!(
                (f64::from(actual) - expected).abs() < 1e-5,
                "{extra:?} dw[{j}]"
            );
        }
        assert!((f64::from(db.data[0]) - gb).abs() < 1e-5, "{extra:?} db");
        let per = dir.join(format!("per{}", extra.len()));
        let mut flags = vec!["--wrt", "w", "--per-sample"];
        flags.extend(extra.iter().copied());
        let (ok, _, stderr) = common::chainrule(&args(&flags, &per));
        assert!(ok, "{stderr}");
        assert_eq!(
            npy::read(&per.join("w.npy")).expect("w").shape,
            vec![batch, 4]
        );
        // The activation's own per-sample gradient: x where w.x + b > 0.
        let of = dir.join(format!("of{}", extra.len()));
        let mut flags = vec!["--of", "a", "--wrt", "w", "--per-sample"];
        flags.extend(extra.iter().copied());
        let (ok, stdout, stderr) = common::chainrule(&args(&flags, &of));
        assert!(ok, "{stderr}");
        assert!(stdout.contains("a = "), "{stdout}");
        let da = npy::read(&of.join("w.npy")).expect("w");
        assert_eq!(da.shape, vec![batch, 4]);
        for i in 0..batch {
            let z: f64 = (0..4)
                .map(|j| f64::from(w[j]) * f64::from(x[i * 4 + j]))
                .sum::<f64>()
                + f64::from(b[0]);
            if z.abs() < 1e-5 {
                continue; // f32 may put it on the other side of the kink
            }
            for j in 0..4 {
                let expected = if z > 0.0 { x[i * 4 + j] } else { 0.0 };
                assert_eq!(da.data[i * 4 + j], expected, "{extra:?} da/dw[{i}, {j}]");
            }
        }
    }
    let (ok, _, stderr) = common::chainrule(&args(
        &["--of", "h", "--wrt", "w", "--cpu"],
        &dir.join("bad"),
    ));
    assert!(!ok && stderr.contains("`h` is not a line"), "{stderr}");
    let (ok, _, stderr) = common::chainrule(&args(&["--wrt", "q", "--cpu"], &dir.join("bad")));
    assert!(!ok && stderr.contains("`q` is not a variable"), "{stderr}");
    let (ok, _, stderr) =
        common::chainrule(&args(&["--wrt", "w,b,w", "--cpu"], &dir.join("twice")));
    assert!(!ok && stderr.contains("--wrt names `w` twice"), "{stderr}");
    assert!(!dir.join("twice").exists(), "nothing is written");
}
