//! Checks shared by the tests of program constructs: a construct's values,
//! Jacobian, JVP, VJP and per-sample gradient on every backend against the
//! f64 oracle, and the oracle against central differences.

use chainrule::program::{Kind, Program};
use chainrule::{Backend, CpuBackend, Reduction};
use rand::rngs::StdRng;

use super::{gpu, uniform};

/// The GPU (when there is one) and the CPU backend, with a name.
pub fn backends() -> Vec<(Backend, &'static str)> {
    let mut all = Vec::new();
    if let Some(context) = gpu() {
        all.push((Backend::Gpu(context), "gpu"));
    }
    all.push((Backend::Cpu(CpuBackend), "cpu"));
    all
}

pub fn parse(text: &str) -> Program {
    Program::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// ||actual - expected|| / max(||expected||, 1e-30), Frobenius.
pub fn relative_error(actual: &[f64], expected: &[f64]) -> f64 {
    assert_eq!(actual.len(), expected.len(), "lengths");
    let diff: f64 = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).powi(2))
        .sum();
    let norm: f64 = expected.iter().map(|e| e * e).sum();
    (diff / norm.max(1e-60)).sqrt()
}

pub fn assert_close(label: &str, actual: &[f64], expected: &[f64], tolerance: f64) {
    let error = relative_error(actual, expected);
    assert!(
        error <= tolerance,
        "{label}: relative error {error:e} > {tolerance:e}\nactual   {actual:?}\nexpected {expected:?}"
    );
}

/// Uniform random values in `range` for every variable of `program`: an
/// input's for `batch` samples, a param's once.
pub fn random_values(
    program: &Program,
    batch: usize,
    range: (f32, f32),
    rng: &mut StdRng,
) -> Vec<Vec<f32>> {
    program
        .variables
        .iter()
        .map(|v| {
            let samples = if v.kind == Kind::Param { 1 } else { batch };
            uniform(rng, samples * v.shape.size(), range.0, range.1)
        })
        .collect()
}

/// `data` (one array per variable, in order) by the variables' names, as
/// the backends take it.
pub fn bind<'a>(program: &'a Program, data: &'a [Vec<f32>]) -> Vec<(&'a str, &'a [f32])> {
    program
        .variables
        .iter()
        .zip(data)
        .map(|(v, d)| (v.name.as_str(), d.as_slice()))
        .collect()
}

/// The f64 values of each variable for sample `b`.
pub fn sample(program: &Program, data: &[Vec<f32>], b: usize) -> Vec<Vec<f64>> {
    program
        .variables
        .iter()
        .zip(data)
        .map(|(v, d)| {
            let n = v.shape.size();
            let b = if v.kind == Kind::Param { 0 } else { b };
            d[b * n..(b + 1) * n]
                .iter()
                .map(|&x| f64::from(x))
                .collect()
        })
        .collect()
}

/// The output's value at `values`, in f64.
pub fn output(program: &Program, values: &[Vec<f64>]) -> Vec<f64> {
    let refs: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
    let all = program.forward(&refs).unwrap_or_else(|e| panic!("{e}"));
    all[program.output].clone()
}

/// Central differences of `f` with respect to `x`, row-major m x n.
pub fn central(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64]) -> Vec<f64> {
    let m = f(x).len();
    let mut jacobian = vec![0.0; m * x.len()];
    for j in 0..x.len() {
        let h = 1e-6 * x[j].abs().max(1.0);
        let (mut plus, mut minus) = (x.to_vec(), x.to_vec());
        plus[j] += h;
        minus[j] -= h;
        let (fp, fm) = (f(&plus), f(&minus));
        for i in 0..m {
            jacobian[i * x.len() + j] = (fp[i] - fm[i]) / (2.0 * h);
        }
    }
    jacobian
}

/// Checks `text` with respect to each input in `wrt` on a batch of random
/// samples: the oracle against central differences, then every backend's
/// values, Jacobian, JVP, VJP (and per-sample gradient for a scalar
/// output) against the oracle.
pub fn check(label: &str, text: &str, wrt: &[&str], rng: &mut StdRng) {
    let program = parse(text);
    let batch = 7;
    let data = random_values(&program, batch, (-1.5, 1.5), rng);
    let bound = bind(&program, &data);
    let m = program.shapes[program.output].size();
    for &name in wrt {
        let v = program.variable(name).expect("a variable");
        let n = program.variables[v].shape.size();
        let mut values = Vec::new();
        let mut oracle = Vec::new();
        for b in 0..batch {
            let at = sample(&program, &data, b);
            let refs: Vec<&[f64]> = at.iter().map(Vec::as_slice).collect();
            let jacobian = program.jacobian_dense(&refs, v).expect("the oracle");
            let differences = central(
                |x| {
                    let mut moved = at.clone();
                    moved[v] = x.to_vec();
                    output(&program, &moved)
                },
                &at[v],
            );
            assert_close(
                &format!("{label}: oracle vs central differences, d/d{name}"),
                &jacobian,
                &differences,
                1e-6,
            );
            values.extend(output(&program, &at));
            oracle.extend(jacobian);
        }
        let tangents = uniform(rng, batch * n, -1.0, 1.0);
        let cotangents = uniform(rng, batch * m, -1.0, 1.0);
        let mut jvp = vec![0.0; batch * m];
        let mut vjp = vec![0.0; batch * n];
        for b in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let e = oracle[(b * m + i) * n + j];
                    jvp[b * m + i] += e * f64::from(tangents[b * n + j]);
                    vjp[b * n + j] += e * f64::from(cotangents[b * m + i]);
                }
            }
        }
        let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        for (backend, path) in backends() {
            let at = format!("{label} on the {path}, d/d{name}");
            let out = backend
                .jacobian(&program, name, &bound)
                .unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_close(&format!("{at}: values"), &f64s(&out.values), &values, 1e-6);
            let dense = out.jacobian.to_dense(batch);
            assert_close(&format!("{at}: Jacobian"), &dense, &oracle, 1e-5);
            let got = backend
                .jvp(&program, name, &bound, &tangents)
                .unwrap_or_else(|e| panic!("{at}: jvp: {e}"));
            assert_close(&format!("{at}: JVP"), &f64s(&got), &jvp, 1e-5);
            let got = backend
                .vjp(&program, name, &bound, &cotangents)
                .unwrap_or_else(|e| panic!("{at}: vjp: {e}"));
            assert_close(&format!("{at}: VJP"), &f64s(&got), &vjp, 1e-5);
            if m == 1 {
                let got = backend
                    .gradient(&program, &[name], &bound, Reduction::PerSample)
                    .unwrap_or_else(|e| panic!("{at}: gradient: {e}"));
                assert_close(
                    &format!("{at}: gradient"),
                    &f64s(&got.gradients[0].values),
                    &oracle,
                    1e-5,
                );
            }
        }
    }
}
