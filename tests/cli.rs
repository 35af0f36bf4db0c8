//! The two binaries as a user runs them: `chainrule info` and `ops`, and
//! `jacobench` on the GPU and on the CPU fallback, including a machine whose
//! Vulkan driver cannot be found (a bogus ICD path): an error or a clear
//! fallback, never a panic.

mod common;

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary starts")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// No Vulkan driver at all: the loader is pointed at a file that does not exist.
const NO_DRIVER: [(&str, &str); 3] = [
    ("VK_ICD_FILENAMES", "/nonexistent/chainrule-no-driver.json"),
    ("VK_DRIVER_FILES", "/nonexistent/chainrule-no-driver.json"),
    ("WGPU_BACKEND", "vulkan"),
];

#[test]
fn ops_lists_every_operation() {
    let output = run(env!("CARGO_BIN_EXE_chainrule"), &["ops"], &[]);
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    for op in chainrule::UnaryOp::catalogue() {
        assert!(
            stdout.lines().any(|l| l.starts_with(op.name())),
            "{op} missing from:\n{stdout}"
        );
    }
    let reductions = chainrule::ops::ReduceOp::catalogue().map(|r| format!("{r}("));
    let functions = chainrule::program::VECTOR_FUNCTIONS.map(|(call, _)| call.to_string());
    for call in reductions.iter().chain(&functions) {
        assert!(
            stdout.lines().any(|l| l.starts_with(call.as_str())),
            "{call} missing from:\n{stdout}"
        );
    }
    // Every two-argument operation, as the language writes it (each form
    // parses).
    for (_, written) in chainrule::ops::BinaryOp::written() {
        assert!(
            stdout.lines().any(|l| l.starts_with(written)),
            "{written} missing from:\n{stdout}"
        );
        for form in written.split("; ") {
            chainrule::graph::Graph::parse(form, chainrule::program::InputOrder::FirstAppearance)
                .unwrap_or_else(|e| panic!("{form}: {e}"));
        }
    }
    // An exponent has no default: pow is shown as the language writes it.
    assert!(stdout.contains("pow(x, p)") && !stdout.contains("pow(3)"));
}

/// A reader that stops early (`chainrule ops | head -1`) ends the command
/// quietly, not with a panic about the closed pipe.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    for args in [&["ops"][..], &["info"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chainrule"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // Closed before the command has printed anything.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("the command ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            output.status.success() || !stderr.is_empty(),
            "{args:?} failed without a word"
        );
    }
}

#[test]
fn info_names_the_chosen_adapter() {
    if common::gpu().is_none() {
        return;
    }
    let output = run(env!("CARGO_BIN_EXE_chainrule"), &["info"], &[]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("chosen: "), "{stdout}");
    assert!(
        stdout.contains("max_storage_buffer_binding_size"),
        "{stdout}"
    );
}

#[test]
fn info_without_a_driver_is_an_error_not_a_panic() {
    let output = run(env!("CARGO_BIN_EXE_chainrule"), &["info"], &NO_DRIVER);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("no GPU adapter found"), "{stderr}");
    assert!(
        stderr.contains("mesa-vulkan-drivers"),
        "says what to install: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_misspelt_backend_is_refused_not_ignored() {
    let output = run(
        env!("CARGO_BIN_EXE_chainrule"),
        &["info"],
        &[("WGPU_BACKEND", "vulkna")],
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("WGPU_BACKEND=\"vulkna\" is not understood"),
        "{stderr}"
    );
}

fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("the JSON was written");
    serde_json::from_str(&text).expect("valid JSON")
}

fn metric(records: &[serde_json::Value], case: &str, path: &str, metric: &str) -> Option<f64> {
    records
        .iter()
        .find(|r| r["case"] == case && r["path"] == path && r["metric"] == metric)
        .and_then(|r| r["value"].as_f64())
}

#[test]
fn jacobench_without_a_driver_falls_back_to_the_cpu_with_a_clear_line() {
    let dir = std::env::temp_dir().join(format!("chainrule-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("fallback.json");
    let args = [
        "--workload",
        "w1",
        "--elements",
        "5000",
        "--repeats",
        "1",
        "--ops",
        "sigmoid;gelu",
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    let output = run(env!("CARGO_BIN_EXE_jacobench"), &args, &NO_DRIVER);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("falling back to the CPU backend"),
        "{stderr}"
    );
    let records = records(&json);
    assert!(records.iter().all(|r| r["backend"] == "cpu"));
    for case in ["sigmoid", "gelu"] {
        assert!(metric(&records, case, "cpu", "elements_per_s").is_some_and(|v| v > 0.0));
        // Only the final rounding to f32 separates the CPU path from the reference.
        let contract = metric(&records, case, "cpu", "contract_ratio");
        assert!(contract.is_some_and(|c| c < 0.1), "{case}: {contract:?}");
    }
}

#[test]
fn jacobench_on_the_gpu_reports_every_path_and_its_error() {
    if common::gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("chainrule-cli-gpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("w1.json");
    let svg = dir.join("w1.svg");
    let args = [
        "--workload",
        "w1",
        "--elements",
        "70001",
        "--repeats",
        "1",
        "--ops",
        "tanh;pow(3);sin",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--plot",
        svg.to_str().expect("utf-8 path"),
    ];
    let output = run(env!("CARGO_BIN_EXE_jacobench"), &args, &[]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let records = records(&json);
    for case in ["tanh", "pow(3)", "sin"] {
        for path in ["gpu-end-to-end", "gpu-resident", "cpu", "floor"] {
            assert!(
                metric(&records, case, path, "elements_per_s").is_some_and(|v| v > 0.0),
                "{case} {path} missing"
            );
        }
        let contract = metric(&records, case, "gpu-end-to-end", "contract_ratio");
        assert!(contract.is_some_and(|c| c <= 1.0), "{case}: {contract:?}");
        assert_eq!(
            metric(&records, case, "gpu-end-to-end", "special_value_mismatches"),
            Some(0.0)
        );
    }
    assert!(metric(&records, "copy", "floor", "copy_bandwidth").is_some_and(|v| v > 0.0));
    let plot = std::fs::read_to_string(&svg).expect("the plot was written");
    assert!(plot.starts_with("<svg") || plot.starts_with("<?xml"));
    assert!(plot.contains("pow(3)"));
}

#[test]
fn jacobench_refuses_unknown_workloads() {
    let output = run(env!("CARGO_BIN_EXE_jacobench"), &["--workload", "w9"], &[]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("unknown workload"), "{stderr}");
}

#[test]
fn jacobench_times_w3_resident_and_counts_each_paths_traffic() {
    if common::gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("chainrule-cli-w3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("w3.json");
    let args = [
        "--quick",
        "--workload",
        "w3",
        "--repeats",
        "1",
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    let output = run(env!("CARGO_BIN_EXE_jacobench"), &args, &[]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let records = records(&json);
    let case = "neuron_grad";
    // x and t in, each sample's 16-float gradient out.
    let least = 132.0 * f64::from(1u32 << 16);
    for path in ["gpu-end-to-end", "gpu-resident"] {
        assert!(metric(&records, case, path, "samples_per_s").is_some_and(|v| v > 0.0));
        let dispatches = metric(&records, case, path, "dispatches_per_call");
        assert!(
            dispatches.is_some_and(|d| d >= 2.0),
            "{path}: {dispatches:?}"
        );
        assert_eq!(
            metric(&records, case, path, "min_bytes_per_call"),
            Some(least)
        );
        let bytes = metric(&records, case, path, "bytes_per_call");
        assert!(bytes.is_some_and(|b| b >= least), "{path}: {bytes:?}");
    }
    assert_eq!(metric(&records, case, "cpu", "dispatches_per_call"), None);
    let error = metric(&records, case, "gpu-end-to-end", "relative_frobenius_error");
    assert!(error.is_some_and(|e| e < 1e-5), "{error:?}");
}

/// `explain` of a bare expression takes `--wrt` only for one of its
/// inputs (its four steps give every input's partial).
#[test]
fn explain_of_an_expression_checks_wrt() {
    let bin = env!("CARGO_BIN_EXE_chainrule");
    let output = run(bin, &["explain", "x*z", "--wrt", "q"], &[]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--wrt q: not a variable of the expression (it has x, z)"),
        "{stderr}"
    );
    let output = run(bin, &["explain", "x*z", "--wrt", "z"], &[]);
    assert!(output.status.success());
}
