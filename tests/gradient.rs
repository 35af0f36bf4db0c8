//! Gradients of scalar losses (`Backend::gradient`) on the GPU and on the CPU
//! backend, against closed forms and independent f64 references: Parr and
//! Howard's neuron (the activation's per-sample gradient and the batch
//! gradient of its mean squared error), cross-entropy with one-hot and soft
//! labels (softmax(z) sum(t) - t), a two-layer classifier whose batch mean
//! gradient is the mean of its per-sample gradients, every gradient against
//! central finite differences of `Program::forward` and against the
//! forward-mode oracle `Program::jacobian_dense`, logits of magnitude 1e4,
//! mse on scalars and vectors, and bad requests (an Err saying what is
//! wrong, never a panic).

mod common;

use chainrule::program::{Kind, Program, Shape};
use chainrule::{Backend, CpuBackend, Error, Gradient, GradientOutput, Reduction};
use common::{ATOL, RTOL, gpu, rng, uniform};
use rand::Rng;
use rand::rngs::StdRng;

/// GPU results (f32 arithmetic) are held to this fraction of the largest
/// magnitude in play; CPU results (f64 arithmetic rounded once to f32) to
/// the element-wise accuracy contract ATOL + RTOL |expected|.
const GPU_REL: f64 = 1e-5;

const NEURON: &str =
    "input x[16]\ninput t\nparam w[16] b\na = relu(dot(w, x) + b)\nloss = mse(a, t)\noutput loss\n";

const ACTIVATION: &str = "input x[16]\nparam w[16] b\na = relu(dot(w, x) + b)\noutput a\n";

const CROSS_ENTROPY: &str = "input z[10]\ninput t[10]\nloss = cross_entropy(z, t)\noutput loss\n";

const CLASSIFIER: &str = "input x[8]\ninput t[4]\nparam W1[16,8] b1[16] W2[4,16] b2[4]\nh = tanh(W1 @ x + b1)\nz = W2 @ h + b2\nloss = cross_entropy(z, t)\noutput loss\n";

const SOFTPLUS: &str =
    "input x[5]\nparam W[3,5] v[3]\ny = sum(softplus(W @ x) * v) + mean(x * x)\noutput y\n";

/// Each variable's values by name: inputs B x size, params their size.
type Vars = Vec<(String, Vec<f32>)>;

/// The GPU (when there is one) and the CPU backend, with whether each is the GPU.
fn backends() -> Vec<(Backend, bool)> {
    let mut all = Vec::new();
    if let Some(context) = gpu() {
        all.push((Backend::Gpu(context), true));
    }
    all.push((Backend::Cpu(CpuBackend), false));
    all
}

fn name(on_gpu: bool) -> &'static str {
    if on_gpu { "gpu" } else { "cpu" }
}

fn parse(text: &str) -> Program {
    Program::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn bound(vars: &Vars) -> Vec<(&str, &[f32])> {
    vars.iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect()
}

/// Runs a gradient that must succeed, and checks the gradients come back in
/// the order asked.
fn run(
    backend: &Backend,
    label: &str,
    program: &Program,
    wrt: &[&str],
    vars: &Vars,
    reduction: Reduction,
) -> GradientOutput {
    let out = backend
        .gradient(program, wrt, &bound(vars), reduction)
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let names: Vec<&str> = out.gradients.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, wrt, "{label}: gradients in the order asked");
    out
}

/// The gradient called `variable`, checked to have `shape`.
fn grad<'a>(out: &'a GradientOutput, variable: &str, shape: &[usize]) -> &'a Gradient {
    let g = out
        .gradients
        .iter()
        .find(|g| g.name == variable)
        .unwrap_or_else(|| panic!("no gradient for `{variable}`"));
    assert_eq!(g.shape, shape, "shape of the gradient of `{variable}`");
    assert_eq!(
        g.values.len(),
        shape.iter().product::<usize>(),
        "length of the gradient of `{variable}`"
    );
    g
}

fn largest(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// `actual` against the f64 `expected`: on the GPU each element within
/// GPU_REL * `scale`, on the CPU within the accuracy contract. Non-finite
/// values always fail. Panics listing the first failures.
fn compare(label: &str, on_gpu: bool, actual: &[f32], expected: &[f64], scale: f64) {
    assert_eq!(actual.len(), expected.len(), "{label}: length");
    let tolerance = |e: f64| {
        if on_gpu {
            GPU_REL * scale
        } else {
            ATOL + RTOL * e.abs()
        }
    };
    let failures: Vec<String> = actual
        .iter()
        .zip(expected)
        .enumerate()
        .filter(|&(_, (&a, &e))| !(a.is_finite() && (f64::from(a) - e).abs() <= tolerance(e)))
        .map(|(i, (&a, &e))| {
            format!(
                "  [{i}] actual {a:e}, expected {e:e}, tolerance {:e}",
                tolerance(e)
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{label} on the {}: {} of {} elements out of tolerance (scale {scale:e}):\n{}",
        name(on_gpu),
        failures.len(),
        actual.len(),
        failures[..failures.len().min(12)].join("\n")
    );
}

/// The batch loss against its f64 reference.
fn compare_mean(label: &str, actual: f64, expected: f64) {
    assert!(
        actual.is_finite() && (actual - expected).abs() <= 1e-7 + GPU_REL * expected.abs(),
        "{label}: batch loss {actual:e}, expected {expected:e}"
    );
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

fn to64(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

/// softmax(z) and log_softmax(z) in f64, with the maximum subtracted.
fn softmax64(z: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let max = z
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let total: f64 = z.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    let log_softmax: Vec<f64> = z.iter().map(|&v| f64::from(v) - max - total.ln()).collect();
    (log_softmax.iter().map(|l| l.exp()).collect(), log_softmax)
}

fn one_hot(rng: &mut StdRng, batch: usize, classes: usize) -> Vec<f32> {
    let mut t = vec![0f32; batch * classes];
    for row in t.chunks_mut(classes) {
        row[rng.random_range(0..classes)] = 1.0;
    }
    t
}

/// A neuron's data, with every sample away from the kink: |w.x + b| > 1e-3
/// (samples closer to it are drawn again).
struct NeuronData {
    x: Vec<f32>,
    t: Vec<f32>,
    w: Vec<f32>,
    b: f32,
    /// w.x + b per sample, in f64.
    z: Vec<f64>,
}

fn neuron_data(rng: &mut StdRng, batch: usize) -> NeuronData {
    let w = uniform(rng, 16, -0.5, 0.5);
    let b = rng.random_range(-0.3f32..0.3);
    let mut x = Vec::with_capacity(batch * 16);
    let mut z = Vec::with_capacity(batch);
    while z.len() < batch {
        let xi = uniform(rng, 16, -1.0, 1.0);
        let zi = dot64(&w, &xi) + f64::from(b);
        if zi.abs() > 1e-3 {
            x.extend(xi);
            z.push(zi);
        }
    }
    let active = z.iter().filter(|&&z| z > 0.0).count();
    assert!(
        active > batch / 10 && active < batch * 9 / 10,
        "the data should exercise both sides of the kink ({active} of {batch} active)"
    );
    let t = uniform(rng, batch, -0.5, 1.5);
    NeuronData { x, t, w, b, z }
}

/// Parr & Howard: d relu(w.x + b) / dw is x where w.x + b > 0 and 0
/// elsewhere; d/db is 1 or 0 likewise.
#[test]
fn neuron_activation_gradient_is_x_or_zero() {
    let mut rng = rng("neuron activation");
    let batch = 300;
    let data = neuron_data(&mut rng, batch);
    let program = parse(ACTIVATION);
    let vars: Vars = vec![
        ("x".into(), data.x.clone()),
        ("w".into(), data.w.clone()),
        ("b".into(), vec![data.b]),
    ];
    let mut expected_w = Vec::with_capacity(batch * 16);
    let mut expected_b = Vec::with_capacity(batch);
    let mut expected_a = Vec::with_capacity(batch);
    for (xi, &zi) in data.x.chunks(16).zip(&data.z) {
        let on = zi > 0.0;
        expected_w.extend(xi.iter().map(|&v| if on { f64::from(v) } else { 0.0 }));
        expected_b.push(if on { 1.0 } else { 0.0 });
        expected_a.push(zi.max(0.0));
    }
    for (backend, on_gpu) in backends() {
        let out = run(
            &backend,
            "activation",
            &program,
            &["w", "b"],
            &vars,
            Reduction::PerSample,
        );
        let dw = grad(&out, "w", &[batch, 16]);
        let db = grad(&out, "b", &[batch]);
        compare("da/dw", on_gpu, &dw.values, &expected_w, 1.0);
        compare("da/db", on_gpu, &db.values, &expected_b, 1.0);
        compare(
            "activation values",
            on_gpu,
            &out.values,
            &expected_a,
            largest(&expected_a),
        );
        // Where the neuron is off the derivative is exactly zero, not small.
        for (s, &zi) in data.z.iter().enumerate() {
            if zi < 0.0 {
                assert!(
                    dw.values[s * 16..(s + 1) * 16].iter().all(|&v| v == 0.0)
                        && db.values[s] == 0.0,
                    "{}: sample {s} (w.x + b = {zi:e}) should have zero gradient",
                    name(on_gpu)
                );
            }
        }
    }
}

/// Parr & Howard: the gradient of C = mean_i (relu(w.x_i + b) - t_i)^2 is
/// dC/dw = (2/N) sum over active samples of e_i x_i, dC/db = (2/N) sum of
/// e_i, with e_i = w.x_i + b - t_i; per sample, 2 e_i x_i and 2 e_i, and
/// for the inputs 2 e_i w and -2 (a_i - t_i).
#[test]
fn neuron_loss_gradient_matches_parr_and_howard() {
    let mut rng = rng("neuron loss");
    let batch = 300;
    let data = neuron_data(&mut rng, batch);
    let program = parse(NEURON);
    let vars: Vars = vec![
        ("x".into(), data.x.clone()),
        ("t".into(), data.t.clone()),
        ("w".into(), data.w.clone()),
        ("b".into(), vec![data.b]),
    ];
    let n = batch as f64;
    let mut mean_w = vec![0f64; 16];
    let mut mean_b = 0f64;
    let mut abs_w = vec![0f64; 16];
    let mut abs_b = 0f64;
    let (mut per_w, mut per_b, mut per_x, mut per_t, mut losses) =
        (vec![], vec![], vec![], vec![], vec![]);
    for ((xi, &zi), &ti) in data.x.chunks(16).zip(&data.z).zip(&data.t) {
        let t = f64::from(ti);
        let a = zi.max(0.0);
        losses.push((a - t).powi(2));
        per_t.push(-2.0 * (a - t));
        if zi > 0.0 {
            let e = zi - t;
            for (j, &x) in xi.iter().enumerate() {
                mean_w[j] += 2.0 / n * e * f64::from(x);
                abs_w[j] += (2.0 / n * e * f64::from(x)).abs();
                per_w.push(2.0 * e * f64::from(x));
            }
            mean_b += 2.0 / n * e;
            abs_b += (2.0 / n * e).abs();
            per_b.push(2.0 * e);
            per_x.extend(data.w.iter().map(|&w| 2.0 * e * f64::from(w)));
        } else {
            per_w.extend([0.0; 16]);
            per_b.push(0.0);
            per_x.extend([0.0; 16]);
        }
    }
    let loss = losses.iter().sum::<f64>() / n;
    // A batch sum's f32 error scales with the sum of the magnitudes.
    let scale_w = largest(&abs_w);
    for (backend, on_gpu) in backends() {
        let out = run(
            &backend,
            "neuron mean",
            &program,
            &["w", "b"],
            &vars,
            Reduction::Mean,
        );
        compare(
            "dC/dw",
            on_gpu,
            &grad(&out, "w", &[16]).values,
            &mean_w,
            scale_w,
        );
        compare(
            "dC/db",
            on_gpu,
            &grad(&out, "b", &[]).values,
            &[mean_b],
            abs_b,
        );
        compare("losses", on_gpu, &out.values, &losses, largest(&losses));
        compare_mean("neuron", out.mean, loss);

        let out = run(
            &backend,
            "neuron per sample",
            &program,
            &["x", "t", "w", "b"],
            &vars,
            Reduction::PerSample,
        );
        let checks: [(&str, Vec<usize>, &[f64]); 4] = [
            ("x", vec![batch, 16], &per_x),
            ("t", vec![batch], &per_t),
            ("w", vec![batch, 16], &per_w),
            ("b", vec![batch], &per_b),
        ];
        for (variable, shape, expected) in checks {
            compare(
                &format!("per-sample dC/d{variable}"),
                on_gpu,
                &grad(&out, variable, &shape).values,
                expected,
                largest(expected),
            );
        }
    }
}

/// Random logits and the per-sample gradient of cross_entropy(z, t) w.r.t. z:
/// softmax(z) sum(t) - t; w.r.t. t: -log_softmax(z).
fn check_cross_entropy(label: &str, z: &[f32], t: &[f32], batch: usize) {
    let program = parse(CROSS_ENTROPY);
    let vars: Vars = vec![("z".into(), z.to_vec()), ("t".into(), t.to_vec())];
    let mut dz = Vec::with_capacity(batch * 10);
    let mut dt = Vec::with_capacity(batch * 10);
    let mut losses = Vec::with_capacity(batch);
    for (zi, ti) in z.chunks(10).zip(t.chunks(10)) {
        let (softmax, log_softmax) = softmax64(zi);
        let total: f64 = ti.iter().map(|&v| f64::from(v)).sum();
        dz.extend(
            softmax
                .iter()
                .zip(ti)
                .map(|(p, &t)| p * total - f64::from(t)),
        );
        dt.extend(log_softmax.iter().map(|l| -l));
        losses.push(
            -log_softmax
                .iter()
                .zip(ti)
                .map(|(l, &t)| l * f64::from(t))
                .sum::<f64>(),
        );
    }
    let loss = losses.iter().sum::<f64>() / batch as f64;
    for (backend, on_gpu) in backends() {
        let out = run(
            &backend,
            label,
            &program,
            &["z", "t"],
            &vars,
            Reduction::PerSample,
        );
        compare(
            &format!("{label}: dL/dz"),
            on_gpu,
            &grad(&out, "z", &[batch, 10]).values,
            &dz,
            largest(&dz),
        );
        compare(
            &format!("{label}: dL/dt"),
            on_gpu,
            &grad(&out, "t", &[batch, 10]).values,
            &dt,
            largest(&dt),
        );
        compare(
            &format!("{label}: losses"),
            on_gpu,
            &out.values,
            &losses,
            largest(&losses),
        );
        compare_mean(label, out.mean, loss);
    }
}

#[test]
fn cross_entropy_gradient_is_softmax_minus_target() {
    let mut rng = rng("cross entropy");
    let batch = 256;
    let z = uniform(&mut rng, batch * 10, -6.0, 6.0);
    check_cross_entropy("one-hot", &z, &one_hot(&mut rng, batch, 10), batch);
    // Soft labels: each row a probability vector, so sum(t) = 1.
    let mut soft = uniform(&mut rng, batch * 10, 0.01, 1.0);
    for row in soft.chunks_mut(10) {
        let total: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= total);
    }
    check_cross_entropy("probabilities", &z, &soft, batch);
    // Weights that do not sum to one: the gradient is softmax(z) sum(t) - t.
    let mut weights = uniform(&mut rng, batch * 10, 0.0, 1.0);
    for row in weights.chunks_mut(10) {
        let scale = rng.random_range(0.25f32..3.0);
        row.iter_mut().for_each(|v| *v *= scale);
    }
    check_cross_entropy("unnormalized weights", &z, &weights, batch);
}

/// Random values for every variable: inputs in [-2, 2] (a one-hot row for a
/// target `t`), parameters in +-1/sqrt(fan-in) (the last dimension).
fn bindings(program: &Program, batch: usize, rng: &mut StdRng) -> Vars {
    program
        .variables
        .iter()
        .map(|v| {
            let size = v.shape.size();
            let values = match v.kind {
                Kind::Input if v.name == "t" => one_hot(rng, batch, size),
                Kind::Input => uniform(rng, batch * size, -2.0, 2.0),
                Kind::Param => {
                    let fan_in = match v.shape {
                        Shape::Matrix(_, n) => n,
                        _ => 1,
                    };
                    let scale = 1.0 / (fan_in as f32).sqrt();
                    uniform(rng, size, -scale, scale)
                }
            };
            (v.name.clone(), values)
        })
        .collect()
}

/// A variable's shape as gradient dimensions, with the batch first if given.
fn dims(program: &Program, variable: usize, batch: Option<usize>) -> Vec<usize> {
    let mut dims: Vec<usize> = batch.into_iter().collect();
    match program.variables[variable].shape {
        Shape::Scalar => {}
        Shape::Vector(n) => dims.push(n),
        Shape::Matrix(m, n) => dims.extend([m, n]),
    }
    dims
}

#[test]
fn batch_mean_is_the_mean_of_per_sample_gradients() {
    let mut rng = rng("batch mean");
    let batch = 256;
    let program = parse(CLASSIFIER);
    let vars = bindings(&program, batch, &mut rng);
    // An unusual order, to check that gradients come back in the order asked.
    let wrt = ["W2", "b1", "W1", "b2"];
    for (backend, on_gpu) in backends() {
        let mean = run(
            &backend,
            "classifier mean",
            &program,
            &wrt,
            &vars,
            Reduction::Mean,
        );
        let per_sample = run(
            &backend,
            "classifier per sample",
            &program,
            &wrt,
            &vars,
            Reduction::PerSample,
        );
        assert_eq!(mean.values, per_sample.values, "the same losses either way");
        for variable in wrt {
            let index = program.variable(variable).expect("declared");
            let size = program.variables[index].shape.size();
            let rows = grad(&per_sample, variable, &dims(&program, index, Some(batch)));
            let mut average = vec![0f64; size];
            let mut magnitude = vec![0f64; size];
            for row in rows.values.chunks(size) {
                for ((a, m), &v) in average.iter_mut().zip(&mut magnitude).zip(row) {
                    *a += f64::from(v) / batch as f64;
                    *m += f64::from(v).abs() / batch as f64;
                }
            }
            let g = grad(&mean, variable, &dims(&program, index, None));
            assert!(
                largest(&average) > 1e-3,
                "{variable}: the mean gradient should not vanish"
            );
            compare(
                &format!("mean d/d{variable} vs the mean of per-sample"),
                on_gpu,
                &g.values,
                &average,
                largest(&magnitude),
            );
        }
    }
}

/// Each sample's variables in declaration order, in f64.
fn sample(program: &Program, vars: &Vars, b: usize) -> Vec<Vec<f64>> {
    program
        .variables
        .iter()
        .map(|v| {
            let data = &vars.iter().find(|(n, _)| *n == v.name).expect("bound").1;
            let size = v.shape.size();
            let start = if v.kind == Kind::Input { b * size } else { 0 };
            to64(&data[start..start + size])
        })
        .collect()
}

fn loss64(program: &Program, values: &[Vec<f64>]) -> f64 {
    let refs: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
    program.forward(&refs).expect("f64 forward")[program.output][0]
}

/// d loss / d values[variable][j] by central differences, step 1e-6
/// relative (1e-6 max(|v|, 1)).
fn central(program: &Program, values: &mut [Vec<f64>], variable: usize, j: usize) -> f64 {
    let v = values[variable][j];
    let h = 1e-6 * v.abs().max(1.0);
    values[variable][j] = v + h;
    let up = loss64(program, values);
    values[variable][j] = v - h;
    let down = loss64(program, values);
    values[variable][j] = v;
    (up - down) / (2.0 * h)
}

/// The f64 references for one variable: per-sample rows by finite
/// differences and by the oracle, B x size each.
fn references(
    program: &Program,
    samples: &mut [Vec<Vec<f64>>],
    variable: usize,
) -> (Vec<f64>, Vec<f64>) {
    let size = program.variables[variable].shape.size();
    let mut differences = Vec::with_capacity(samples.len() * size);
    let mut oracle = Vec::with_capacity(samples.len() * size);
    for values in samples.iter_mut() {
        for j in 0..size {
            differences.push(central(program, values, variable, j));
        }
        let refs: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
        let row = program.jacobian_dense(&refs, variable).expect("oracle");
        assert_eq!(row.len(), size, "one output, {size} columns");
        oracle.extend(row);
    }
    (differences, oracle)
}

/// Mean over the batch of B x size rows, and the mean of their magnitudes.
fn batch_mean(rows: &[f64], size: usize) -> (Vec<f64>, Vec<f64>) {
    let batch = (rows.len() / size) as f64;
    let mut mean = vec![0f64; size];
    let mut magnitude = vec![0f64; size];
    for row in rows.chunks(size) {
        for ((m, a), &v) in mean.iter_mut().zip(&mut magnitude).zip(row) {
            *m += v / batch;
            *a += v.abs() / batch;
        }
    }
    (mean, magnitude)
}

fn check_against_references(label: &str, text: &str, batch: usize, rng: &mut StdRng) {
    let program = parse(text);
    let vars = bindings(&program, batch, rng);
    let mut samples: Vec<Vec<Vec<f64>>> = (0..batch).map(|b| sample(&program, &vars, b)).collect();
    let losses: Vec<f64> = samples.iter().map(|s| loss64(&program, s)).collect();
    let loss = losses.iter().sum::<f64>() / batch as f64;
    let x = program.variable("x").expect("an input x");
    let params = program.params();
    let x_size = program.variables[x].shape.size();

    // The two references agree with each other first.
    let (x_differences, x_oracle) = references(&program, &mut samples, x);
    let mut param_refs = Vec::new();
    for &p in &params {
        let size = program.variables[p].shape.size();
        let (differences, oracle) = references(&program, &mut samples, p);
        let (mean_differences, _) = batch_mean(&differences, size);
        let (mean_oracle, magnitude) = batch_mean(&oracle, size);
        param_refs.push((
            p,
            oracle,
            mean_differences,
            mean_oracle,
            largest(&magnitude),
        ));
    }
    for (what, differences, oracle) in std::iter::once(("x", &x_differences, &x_oracle)).chain(
        param_refs
            .iter()
            .map(|(p, _, d, o, _)| (program.variables[*p].name.as_str(), d, o)),
    ) {
        let scale = largest(oracle).max(1.0);
        for (d, o) in differences.iter().zip(oracle) {
            assert!(
                (d - o).abs() <= 1e-7 * scale,
                "{label} d/d{what}: finite difference {d:e} vs oracle {o:e}"
            );
        }
    }

    let mut wrt: Vec<&str> = params
        .iter()
        .map(|&p| program.variables[p].name.as_str())
        .collect();
    wrt.push("x");
    let x_scale = largest(&x_differences);
    for (backend, on_gpu) in backends() {
        let mean = run(&backend, label, &program, &wrt, &vars, Reduction::Mean);
        compare(
            &format!("{label}: losses"),
            on_gpu,
            &mean.values,
            &losses,
            largest(&losses),
        );
        compare_mean(label, mean.mean, loss);
        for (p, _, mean_differences, mean_oracle, magnitude) in &param_refs {
            let variable = program.variables[*p].name.as_str();
            let g = grad(&mean, variable, &dims(&program, *p, None));
            compare(
                &format!("{label}: mean d/d{variable} vs finite differences"),
                on_gpu,
                &g.values,
                mean_differences,
                *magnitude,
            );
            compare(
                &format!("{label}: mean d/d{variable} vs the oracle"),
                on_gpu,
                &g.values,
                mean_oracle,
                *magnitude,
            );
        }
        // An input's gradient under Mean is each sample's share of the batch mean.
        let shares: Vec<f64> = x_differences.iter().map(|d| d / batch as f64).collect();
        compare(
            &format!("{label}: mean d/dx"),
            on_gpu,
            &grad(&mean, "x", &[batch, x_size]).values,
            &shares,
            x_scale / batch as f64,
        );

        let per_sample = run(&backend, label, &program, &wrt, &vars, Reduction::PerSample);
        compare(
            &format!("{label}: per-sample d/dx vs finite differences"),
            on_gpu,
            &grad(&per_sample, "x", &[batch, x_size]).values,
            &x_differences,
            x_scale,
        );
        compare(
            &format!("{label}: per-sample d/dx vs the oracle"),
            on_gpu,
            &grad(&per_sample, "x", &[batch, x_size]).values,
            &x_oracle,
            x_scale,
        );
        for (p, oracle, ..) in &param_refs {
            let variable = program.variables[*p].name.as_str();
            compare(
                &format!("{label}: per-sample d/d{variable} vs the oracle"),
                on_gpu,
                &grad(&per_sample, variable, &dims(&program, *p, Some(batch))).values,
                oracle,
                largest(oracle),
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences_and_the_oracle() {
    let mut rng = rng("finite differences");
    check_against_references("classifier", CLASSIFIER, 48, &mut rng);
    check_against_references("softplus", SOFTPLUS, 64, &mut rng);
}

/// Cross-entropy of extreme logits: the loss and the gradient w.r.t. z
/// (softmax(z) - t, per sample and as each sample's share of the mean) are
/// finite and match the f64 reference on both backends.
fn check_extreme(label: &str, z: &[f32], t: &[f32]) {
    let batch = z.len() / 10;
    let program = parse(CROSS_ENTROPY);
    let vars: Vars = vec![("z".into(), z.to_vec()), ("t".into(), t.to_vec())];
    let mut dz = Vec::with_capacity(batch * 10);
    let mut losses = Vec::with_capacity(batch);
    for (zi, ti) in z.chunks(10).zip(t.chunks(10)) {
        let (softmax, log_softmax) = softmax64(zi);
        dz.extend(softmax.iter().zip(ti).map(|(p, &t)| p - f64::from(t)));
        losses.push(
            -log_softmax
                .iter()
                .zip(ti)
                .map(|(l, &t)| l * f64::from(t))
                .sum::<f64>(),
        );
    }
    for (backend, on_gpu) in backends() {
        for reduction in [Reduction::PerSample, Reduction::Mean] {
            let out = run(&backend, label, &program, &["z"], &vars, reduction);
            let g = grad(&out, "z", &[batch, 10]);
            assert!(
                g.values.iter().all(|v| v.is_finite()),
                "{label} on the {}: non-finite gradient",
                name(on_gpu)
            );
            assert!(
                out.mean.is_finite(),
                "{label} on the {}: loss {}",
                name(on_gpu),
                out.mean
            );
            // Computed from differences to the maximum, the loss meets the
            // element-wise contract whatever the logits' magnitude.
            for (s, (&a, &e)) in out.values.iter().zip(&losses).enumerate() {
                assert!(
                    a.is_finite() && (f64::from(a) - e).abs() <= ATOL + RTOL * e.abs(),
                    "{label} on the {}: sample {s} loss {a:e}, expected {e:e} (logits {:?})",
                    name(on_gpu),
                    &z[s * 10..(s + 1) * 10]
                );
            }
            let divide = if reduction == Reduction::Mean {
                batch as f64
            } else {
                1.0
            };
            let expected: Vec<f64> = dz.iter().map(|d| d / divide).collect();
            compare(
                &format!("{label}: dL/dz ({reduction:?})"),
                on_gpu,
                &g.values,
                &expected,
                1.0 / divide,
            );
        }
    }
}

/// One-hot targets: half on the largest logit (loss ~ 0, gradient ~ 0),
/// half on a random class.
fn extreme_targets(rng: &mut StdRng, z: &[f32]) -> Vec<f32> {
    let mut t = vec![0f32; z.len()];
    for (b, (zi, ti)) in z.chunks(10).zip(t.chunks_mut(10)).enumerate() {
        let class = if b % 2 == 0 {
            (0..10)
                .max_by(|&i, &j| zi[i].total_cmp(&zi[j]))
                .unwrap_or(0)
        } else {
            rng.random_range(0..10)
        };
        ti[class] = 1.0;
    }
    t
}

/// Logits of magnitude 1e4, where exp overflows in f32 and f64 alike unless
/// the maximum is subtracted: all positive, mixed signs, all negative, each
/// row with its largest entry at least 200 above the rest, so that softmax
/// is one-hot and the gradient is onehot(argmax) - onehot(t).
#[test]
fn extreme_logits_give_finite_loss_and_one_hot_softmax_gradient() {
    let mut rng = rng("extreme logits");
    let batch = 60;
    let mut z = Vec::with_capacity(batch * 10);
    for b in 0..batch {
        let mut row: Vec<f32> = match b % 3 {
            0 => uniform(&mut rng, 10, 5e3, 9e3),
            1 => (0..10)
                .map(|_| {
                    let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                    sign * rng.random_range(5e3f32..9e3)
                })
                .collect(),
            _ => uniform(&mut rng, 10, -1e4, -6e3),
        };
        let top = if b % 3 == 2 {
            rng.random_range(-5.5e3f32..-4e3)
        } else {
            rng.random_range(9.2e3f32..1e4)
        };
        row[rng.random_range(0..10)] = top;
        z.extend(row);
    }
    let t = extreme_targets(&mut rng, &z);
    check_extreme("separated logits of magnitude 1e4", &z, &t);
}

/// Exact ties at +-1e4: softmax is uniform over the +1e4 entries (1/k), not
/// one-hot, so the gradient tests the accuracy of softmax itself at large
/// magnitude (the f64 reference is exact; f32 can give softmax to ~1e-7 by
/// exp(z - max) / sum).
#[test]
fn tied_logits_of_magnitude_1e4_give_uniform_softmax_gradient() {
    let mut rng = rng("tied logits");
    let batch = 40;
    let mut z = Vec::with_capacity(batch * 10);
    for b in 0..batch {
        let mut row: Vec<f32> = if b % 4 == 0 {
            vec![1e4; 10]
        } else {
            (0..10)
                .map(|_| if rng.random_bool(0.5) { 1e4 } else { -1e4 })
                .collect()
        };
        row[rng.random_range(0..10)] = 1e4;
        z.extend(row);
    }
    let t = extreme_targets(&mut rng, &z);
    check_extreme("tied logits of magnitude 1e4", &z, &t);
}

/// mse(y, t) is (y - t)^2 for scalars and the mean of (y - t)^2 over the
/// elements for vectors, for inputs and for a param fitted to the batch.
#[test]
fn mse_on_scalars_and_vectors() {
    let mut rng = rng("mse");
    let batch = 200;
    for n in [1usize, 7] {
        let text = if n == 1 {
            "input y\ninput t\nloss = mse(y, t)\noutput loss\n".to_string()
        } else {
            format!("input y[{n}]\ninput t[{n}]\nloss = mse(y, t)\noutput loss\n")
        };
        let program = parse(&text);
        let y = uniform(&mut rng, batch * n, -3.0, 3.0);
        let t = uniform(&mut rng, batch * n, -3.0, 3.0);
        let vars: Vars = vec![("y".into(), y.clone()), ("t".into(), t.clone())];
        let differences: Vec<f64> = y
            .iter()
            .zip(&t)
            .map(|(&y, &t)| f64::from(y) - f64::from(t))
            .collect();
        let losses: Vec<f64> = differences
            .chunks(n)
            .map(|d| d.iter().map(|d| d * d).sum::<f64>() / n as f64)
            .collect();
        let dy: Vec<f64> = differences.iter().map(|d| 2.0 * d / n as f64).collect();
        let dt: Vec<f64> = dy.iter().map(|d| -d).collect();
        let shape = if n == 1 { vec![batch] } else { vec![batch, n] };
        for (backend, on_gpu) in backends() {
            let out = run(
                &backend,
                &text,
                &program,
                &["y", "t"],
                &vars,
                Reduction::PerSample,
            );
            compare(
                &format!("{text}: losses"),
                on_gpu,
                &out.values,
                &losses,
                largest(&losses),
            );
            compare(
                &format!("{text}: d/dy"),
                on_gpu,
                &grad(&out, "y", &shape).values,
                &dy,
                largest(&dy),
            );
            compare(
                &format!("{text}: d/dt"),
                on_gpu,
                &grad(&out, "t", &shape).values,
                &dt,
                largest(&dt),
            );
        }
    }
    // A scalar param p fitted to scalar targets: d/dp mean (p - t)^2 = 2 (p - mean t),
    // with the param's (empty) shape; a vector param: 2 (p - mean t) / n.
    for n in [1usize, 6] {
        let text = if n == 1 {
            "input t\nparam p\nloss = mse(p, t)\noutput loss\n".to_string()
        } else {
            format!("input t[{n}]\nparam p[{n}]\nloss = mse(p, t)\noutput loss\n")
        };
        let program = parse(&text);
        let t = uniform(&mut rng, batch * n, -1.0, 1.0);
        let p = uniform(&mut rng, n, 2.0, 3.0);
        let vars: Vars = vec![("t".into(), t.clone()), ("p".into(), p.clone())];
        let mut mean_t = vec![0f64; n];
        for row in t.chunks(n) {
            for (m, &v) in mean_t.iter_mut().zip(row) {
                *m += f64::from(v) / batch as f64;
            }
        }
        let expected: Vec<f64> = p
            .iter()
            .zip(&mean_t)
            .map(|(&p, m)| 2.0 * (f64::from(p) - m) / n as f64)
            .collect();
        let shape = if n == 1 { vec![] } else { vec![n] };
        for (backend, on_gpu) in backends() {
            let out = run(&backend, &text, &program, &["p"], &vars, Reduction::Mean);
            compare(
                &format!("{text}: d/dp"),
                on_gpu,
                &grad(&out, "p", &shape).values,
                &expected,
                largest(&expected),
            );
        }
    }
}

/// A request that must fail: an Err whose message contains every one of `words`.
fn expect_error(
    backend: &Backend,
    label: &str,
    program: &Program,
    wrt: &[&str],
    vars: &[(&str, &[f32])],
    words: &[&str],
) {
    for reduction in [Reduction::Mean, Reduction::PerSample] {
        match backend.gradient(program, wrt, vars, reduction) {
            Ok(out) => panic!("{label}: expected an error, got {:?}", out.gradients),
            Err(error) => {
                let message = error.to_string();
                for word in words {
                    assert!(
                        message.contains(word),
                        "{label}: the message should mention {word:?}: {message}"
                    );
                }
                assert!(
                    matches!(error, Error::Shape(_) | Error::InvalidArgument(_)),
                    "{label}: a shape or argument error, got {error:?}"
                );
            }
        }
    }
}

#[test]
fn bad_requests_are_errors_that_say_what_is_wrong() {
    let neuron = parse(NEURON);
    let x = vec![0.5f32; 3 * 16];
    let t = vec![0.25f32; 3];
    let w = vec![0.1f32; 16];
    let b = [0.2f32];
    let good: Vec<(&str, &[f32])> = vec![("x", &x), ("t", &t), ("w", &w), ("b", &b)];
    let vector = parse("input x[3]\ny = x * 2\noutput y\n");
    let three = [1f32, 2.0, 3.0];
    let unused = parse("input x[3]\nparam u[2]\ny = sum(x)\noutput y\n");
    let two = [1f32, 2.0];
    for (backend, on_gpu) in backends() {
        let on = name(on_gpu);
        // The good request works, so that the failures below are the requests'.
        backend
            .gradient(&neuron, &["w", "b"], &good, Reduction::Mean)
            .unwrap_or_else(|e| panic!("{on}: good request: {e}"));
        expect_error(
            &backend,
            &format!("{on}: vector output"),
            &vector,
            &["x"],
            &[("x", &three)],
            &["scalar", "`y`"],
        );
        expect_error(
            &backend,
            &format!("{on}: unknown wrt"),
            &neuron,
            &["w", "nope"],
            &good,
            &["`nope`", "not a variable"],
        );
        expect_error(
            &backend,
            &format!("{on}: empty wrt"),
            &neuron,
            &[],
            &good,
            &["at least one"],
        );
        expect_error(
            &backend,
            &format!("{on}: empty batch"),
            &neuron,
            &["w"],
            &[("x", &[]), ("t", &[]), ("w", &w), ("b", &b)],
            &["empty"],
        );
        expect_error(
            &backend,
            &format!("{on}: short parameter"),
            &neuron,
            &["w"],
            &[("x", &x), ("t", &t), ("w", &w[..15]), ("b", &b)],
            &["`w`", "16", "15"],
        );
        expect_error(
            &backend,
            &format!("{on}: long parameter"),
            &neuron,
            &["w"],
            &[("x", &x), ("t", &t), ("w", &w), ("b", &[0.2, 0.3])],
            &["`b`", "2"],
        );
        expect_error(
            &backend,
            &format!("{on}: samples disagree"),
            &neuron,
            &["w"],
            &[("x", &x), ("t", &t[..2]), ("w", &w), ("b", &b)],
            &["3", "2", "samples"],
        );
        expect_error(
            &backend,
            &format!("{on}: partial sample"),
            &neuron,
            &["w"],
            &[("x", &x[..40]), ("t", &t), ("w", &w), ("b", &b)],
            &["`x`", "whole number"],
        );
        expect_error(
            &backend,
            &format!("{on}: missing values"),
            &neuron,
            &["w"],
            &[("x", &x), ("t", &t), ("w", &w)],
            &["`b`"],
        );
        // A variable the output ignores has a gradient of zeros, of its
        // shape, beside the others asked for, in the order asked.
        for reduction in [Reduction::Mean, Reduction::PerSample] {
            for wrt in [&["u"][..], &["x", "u"], &["u", "x"]] {
                let out = backend
                    .gradient(&unused, wrt, &[("x", &three), ("u", &two)], reduction)
                    .unwrap_or_else(|e| panic!("{on}: {wrt:?}: {e}"));
                assert_eq!(out.values, vec![6.0], "{on}");
                let names: Vec<&str> = out.gradients.iter().map(|g| g.name.as_str()).collect();
                assert_eq!(names, wrt, "{on}");
                for g in &out.gradients {
                    let (shape, values) = match (g.name.as_str(), reduction) {
                        ("u", Reduction::Mean) => (vec![2], vec![0.0; 2]),
                        ("u", _) => (vec![1, 2], vec![0.0; 2]),
                        _ => (vec![1, 3], vec![1.0; 3]),
                    };
                    assert_eq!((&g.shape, &g.values), (&shape, &values), "{on}: {wrt:?}");
                }
            }
        }
    }
}

/// Batches split into many segments (a context with tiny limits) give the
/// same gradients: G^T V per segment and the ones-row sums add up.
#[test]
fn gradients_over_many_segments_match_the_cpu() {
    if common::gpu().is_none() {
        return;
    }
    let small = chainrule::GpuContext::new(&chainrule::ContextOptions {
        limits: chainrule::LimitsOverride {
            max_binding_bytes: Some(16 * 1024),
            max_buffer_bytes: Some(16 * 1024),
            max_workgroups_per_dimension: Some(7),
        },
        ..chainrule::ContextOptions::default()
    })
    .expect("small context");
    let text = "input x[8]\ninput t[4]\nparam W1[16,8] b1[16] W2[4,16] b2[4]\nh = tanh(W1 @ x + b1)\nz = W2 @ h + b2\nloss = cross_entropy(z, t)\noutput loss\n";
    let program = Program::parse(text).expect("parses");
    let mut rng = common::rng("segmented gradients");
    let batch = 301;
    let x = common::uniform(&mut rng, batch * 8, -2.0, 2.0);
    let t: Vec<f32> = (0..batch * 4)
        .map(|i| if i % 4 == (i / 4) % 4 { 1.0 } else { 0.0 })
        .collect();
    let w1 = common::uniform(&mut rng, 128, -0.35, 0.35);
    let b1 = common::uniform(&mut rng, 16, -0.35, 0.35);
    let w2 = common::uniform(&mut rng, 64, -0.25, 0.25);
    let b2 = common::uniform(&mut rng, 4, -0.25, 0.25);
    let vars: [(&str, &[f32]); 6] = [
        ("x", &x),
        ("t", &t),
        ("W1", &w1),
        ("b1", &b1),
        ("W2", &w2),
        ("b2", &b2),
    ];
    let names = ["W1", "b1", "W2", "b2", "x"];
    let small_backend = Backend::Gpu(std::sync::Arc::new(small));
    for reduction in [Reduction::Mean, Reduction::PerSample] {
        let gpu = small_backend
            .gradient(&program, &names, &vars, reduction)
            .expect("gpu");
        let cpu = Backend::Cpu(CpuBackend)
            .gradient(&program, &names, &vars, reduction)
            .expect("cpu");
        for (g, c) in gpu.gradients.iter().zip(&cpu.gradients) {
            assert_eq!(g.shape, c.shape, "{}", g.name);
            let scale = c.values.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            for (a, b) in g.values.iter().zip(&c.values) {
                assert!(
                    (a - b).abs() <= 1e-5 * scale + 1e-7,
                    "{} {reduction:?}: {a} vs {b}",
                    g.name
                );
            }
        }
    }
}

/// A NaN in one element of an input reaches only that element's
/// derivative, on the GPU's fused kernels as on the CPU path: the `+`
/// between two sums passes each side's cotangent unchanged (its partial is
/// 1, as in JAX) rather than the NaN partial of the element-wise rule,
/// which spread the NaN to every element of the gradient, a JVP and a VJP.
#[test]
fn a_nan_element_spoils_only_its_own_derivative() {
    let program = Program::parse("input x[31]\nloss = sum(sin(x)) + sum(cos(x))\noutput loss")
        .expect("parses");
    let mut x: Vec<f32> = (0..2 * 31).map(|i| (i as f32 * 0.37).sin()).collect();
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    let vars: [(&str, &[f32]); 1] = [("x", &x)];
    let mut backends = vec![Backend::Cpu(CpuBackend)];
    backends.extend(gpu().map(Backend::Gpu));
    for backend in &backends {
        let out = backend
            .gradient(&program, &["x"], &vars, Reduction::PerSample)
            .unwrap_or_else(|e| panic!("{e}"));
        let g = &out.gradients[0].values;
        for (i, (&gi, &xi)) in g.iter().zip(&x).enumerate() {
            if xi.is_finite() {
                let expected = f64::from(xi).cos() - f64::from(xi).sin();
                assert!(
                    (f64::from(gi) - expected).abs() < 1e-5,
                    "{i}: {gi} vs {expected}"
                );
            } else {
                assert!(gi.is_nan(), "{i}: {gi} at x = {xi}");
            }
        }
        let cotangents = [1.0f32, 1.0];
        let vjp = backend
            .vjp(&program, "x", &vars, &cotangents)
            .unwrap_or_else(|e| panic!("{e}"));
        let finite = vjp.iter().filter(|v| v.is_finite()).count();
        assert_eq!(finite, 60, "{vjp:?}");
    }
}
