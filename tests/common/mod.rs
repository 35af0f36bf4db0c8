//! Shared test helpers: seeded random inputs with the seed printed, a GPU
//! context that fails (not skips) under CHAINRULE_REQUIRE_GPU=1, and one
//! comparison against the f64 reference that treats NaN and Inf explicitly.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the helpers"
)]

pub mod programs;

use std::sync::{Arc, OnceLock};

use chainrule::{ContextOptions, GpuContext, UnaryOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The accuracy contract for single operations.
pub const ATOL: f64 = 1e-6;
pub const RTOL: f64 = 1e-5;

/// A generator seeded from CHAINRULE_SEED or the clock; the seed is printed
/// so that a failure can be replayed with CHAINRULE_SEED=<seed>.
pub fn rng(test: &str) -> StdRng {
    let seed = std::env::var("CHAINRULE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("{test}: seed {seed} (replay with CHAINRULE_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut StdRng, n: usize, low: f32, high: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(low..high)).collect()
}

/// The edges every operation is checked on (subnormal results are not asserted).
pub fn edge_inputs() -> Vec<f32> {
    let magnitudes = [
        0.0,
        1e-8,
        1e-4,
        0.5,
        1.0,
        9.0,
        20.0,
        44.0,
        88.7,
        89.0,
        100.0,
        1e30,
        f32::MAX,
        f32::INFINITY,
    ];
    let mut xs: Vec<f32> = magnitudes.iter().flat_map(|&m| [m, -m]).collect();
    xs.push(f32::NAN);
    xs
}

pub fn require_gpu() -> bool {
    std::env::var("CHAINRULE_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// One context for the whole test binary, or `None` (with a printed reason)
/// when there is no adapter and CHAINRULE_REQUIRE_GPU is not 1.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CONTEXT: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let context = CONTEXT.get_or_init(|| {
        GpuContext::new(&ContextOptions::default())
            .map(Arc::new)
            .map_err(|e| e.to_string())
    });
    match context {
        Ok(context) => Some(Arc::clone(context)),
        Err(error) if require_gpu() => {
            panic!("CHAINRULE_REQUIRE_GPU=1 but no GPU context: {error}")
        }
        Err(error) => {
            println!(
                "SKIPPED: no GPU adapter ({error}); set CHAINRULE_REQUIRE_GPU=1 to fail instead"
            );
            None
        }
    }
}

/// Largest errors seen in a comparison.
#[derive(Debug, Default, Clone, Copy)]
pub struct Errors {
    pub max_abs: f64,
    pub max_rel: f64,
}

/// Whether `actual` (f32 from the device) meets the contract for `expected`
/// (the f64 reference): NaN where the reference is NaN, the same infinity
/// where the reference rounds to one in f32, else within atol + rtol |expected|.
/// Where the reference is subnormal in f32, only the absolute bound applies.
pub fn meets_contract(actual: f32, expected: f64) -> bool {
    let rounded = expected as f32;
    if expected.is_nan() {
        return actual.is_nan();
    }
    if rounded.is_infinite() {
        return actual == rounded;
    }
    if !actual.is_finite() {
        return false;
    }
    (f64::from(actual) - expected).abs() <= ATOL + RTOL * expected.abs()
}

/// A GPU result against the CPU path's (f64, rounded to f32) for a whole
/// array: NaN for NaN, else within 2e-5 of the largest finite CPU value
/// (at least 1e-3) plus 1e-6, a bound for results of sums and products
/// along the way rather than of single operations.
pub fn close_to_cpu(label: &str, gpu: &[f32], cpu: &[f32]) {
    close_to_cpu_above(label, gpu, cpu, 1e-3);
}

/// [`close_to_cpu`] with the scale at least `floor`: for results that sum
/// terms of about that size which may cancel, whose f32 error follows the
/// terms, not the sum.
pub fn close_to_cpu_above(label: &str, gpu: &[f32], cpu: &[f32], floor: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{label}: lengths");
    let scale = cpu
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(floor);
    for (i, (a, b)) in gpu.iter().zip(cpu).enumerate() {
        if a.is_nan() && b.is_nan() {
            continue;
        }
        assert!(
            (a - b).abs() <= 2e-5 * scale + 1e-6,
            "{label}[{i}]: gpu {a} vs cpu {b} (scale {scale})"
        );
    }
}

/// Checks every element against the contract; panics listing the first
/// failures (index, input, actual, expected, tolerance) and returns the
/// largest finite errors.
pub fn check(label: &str, xs: &[f32], actual: &[f32], expected: &[f64]) -> Errors {
    assert_eq!(actual.len(), expected.len(), "{label}: length");
    let mut errors = Errors::default();
    let mut failures = Vec::new();
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        if !meets_contract(a, e) {
            failures.push(format!(
                "  [{i}] x = {:e}: actual {a:e}, expected {e:e}, tolerance {:e}",
                xs[i],
                ATOL + RTOL * e.abs()
            ));
        } else if a.is_finite() && e.is_finite() {
            let abs = (f64::from(a) - e).abs();
            errors.max_abs = errors.max_abs.max(abs);
            if e.abs() > 1e-30 {
                errors.max_rel = errors.max_rel.max(abs / e.abs());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: {} of {} elements outside the contract:\n{}",
        failures.len(),
        actual.len(),
        failures
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    errors
}

/// The f64 reference values and derivatives of `op` at `xs`.
pub fn reference(op: UnaryOp, xs: &[f32]) -> (Vec<f64>, Vec<f64>) {
    xs.iter()
        .map(|&x| op.value_and_derivative(f64::from(x)))
        .unzip()
}

/// Runs the `chainrule` binary; (success, stdout, stderr).
pub fn chainrule<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chainrule"))
        .args(args)
        .output()
        .expect("the chainrule binary starts");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts a CLI run failed with `expected` in its message, and no panic.
pub fn assert_fails_clearly(
    context: &str,
    (ok, stdout, stderr): (bool, String, String),
    expected: &str,
) {
    assert!(!ok, "{context} should fail:\n{stdout}");
    assert!(
        stderr.contains(expected),
        "{context}: expected `{expected}` in:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{context}: {stderr}");
}

/// A fresh scratch folder for one test.
pub fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chainrule-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}
