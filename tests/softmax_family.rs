//! logsumexp, log_softmax, softmax and cross_entropy on both backends,
//! computed from differences to the maximum so that no value depends on how
//! large the logits are, and at the limits where logits are infinite: one
//! -Inf among finite logits (a masked logit), an infinite maximum, all -Inf.
//! Values, Jacobians, JVPs, VJPs and gradients are held to closed forms in
//! f64.

mod common;

use chainrule::Reduction;
use chainrule::program::Shape;
use common::programs::{backends, parse};
use common::{meets_contract, rng, uniform};
use rand::Rng;

const INF: f32 = f32::INFINITY;
const LN2: f64 = std::f64::consts::LN_2;

/// Every element of `actual` meets the contract for `expected` (NaN for
/// NaN, the same infinity, else within 1e-6 + 1e-5 |expected|).
fn assert_meets(label: &str, rows: &[Vec<f32>], actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{label}: length");
    let failures: Vec<String> = actual
        .iter()
        .zip(expected)
        .enumerate()
        .filter(|&(_, (&a, &e))| !meets_contract(a, e))
        .map(|(i, (a, e))| format!("  [{i}] actual {a:e}, expected {e:e}"))
        .collect();
    assert!(
        failures.is_empty(),
        "{label} (logits {rows:?}):\n{}",
        failures.join("\n")
    );
}

/// A program with input `z` (and `t`), one sample per row, checked on both
/// backends: its values, its Jacobian with respect to z, the JVP and VJP
/// with all-ones seeds, and, for a scalar output, the per-sample gradient.
/// `expected(row)` gives one sample's (values, Jacobian row-major).
fn check(
    label: &str,
    text: &str,
    z: &[Vec<f32>],
    t: Option<&[Vec<f32>]>,
    expected: impl Fn(usize) -> (Vec<f64>, Vec<f64>),
) {
    let program = parse(text);
    let n = z[0].len();
    let batch = z.len();
    let m = program.shapes[program.output].size();
    let flat_z: Vec<f32> = z.concat();
    let flat_t: Vec<f32> = t.map(<[Vec<f32>]>::concat).unwrap_or_default();
    let mut vars: Vec<(&str, &[f32])> = vec![("z", &flat_z)];
    if t.is_some() {
        vars.push(("t", &flat_t));
    }
    let (mut values, mut jacobian) = (Vec::new(), Vec::new());
    for b in 0..batch {
        let (v, j) = expected(b);
        assert_eq!((v.len(), j.len()), (m, m * n), "{label}: expected sizes");
        values.extend(v);
        jacobian.extend(j);
    }
    // J 1 and 1^T J: row sums and column sums.
    let jvp: Vec<f64> = jacobian.chunks(n).map(|row| row.iter().sum()).collect();
    let vjp: Vec<f64> = jacobian
        .chunks(m * n)
        .flat_map(|j| (0..n).map(move |c| (0..m).map(|r| j[r * n + c]).sum::<f64>()))
        .collect();
    for (backend, name) in backends() {
        let label = format!("{label} on the {name}");
        let out = backend
            .jacobian(&program, "z", &vars)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_meets(&format!("{label}: values"), z, &out.values, &values);
        let dense: Vec<f32> = out
            .jacobian
            .try_to_dense(batch)
            .expect("dense")
            .into_iter()
            .map(|v| v as f32)
            .collect();
        assert_meets(&format!("{label}: Jacobian"), z, &dense, &jacobian);
        let jvp_out = backend
            .jvp(&program, "z", &vars, &vec![1.0; batch * n])
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_meets(&format!("{label}: JVP"), z, &jvp_out, &jvp);
        let vjp_out = backend
            .vjp(&program, "z", &vars, &vec![1.0; batch * m])
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_meets(&format!("{label}: VJP"), z, &vjp_out, &vjp);
        if program.shapes[program.output] == Shape::Scalar {
            let g = backend
                .gradient(&program, &["z"], &vars, Reduction::PerSample)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_meets(&format!("{label}: loss"), z, &g.values, &values);
            assert_meets(
                &format!("{label}: gradient"),
                z,
                &g.gradients[0].values,
                &jacobian,
            );
        }
    }
}

/// The Jacobian of log_softmax, I - 1 s^T, from s = exp(log_softmax).
fn log_softmax_jacobian(log_softmax: &[f64]) -> Vec<f64> {
    let n = log_softmax.len();
    let s: Vec<f64> = log_softmax.iter().map(|l| l.exp()).collect();
    (0..n * n)
        .map(|e| f64::from(u8::from(e / n == e % n)) - s[e % n])
        .collect()
}

/// The Jacobian of softmax, diag(s) - s s^T.
fn softmax_jacobian(s: &[f64]) -> Vec<f64> {
    let n = s.len();
    (0..n * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            let diagonal = if i == j { s[i] } else { 0.0 };
            diagonal - s[i] * s[j]
        })
        .collect()
}

/// The logits of every case below with their log_softmax, each worked out
/// by hand from differences to the maximum: ties at 1e8 (where z -
/// logsumexp(z) in f32 gives 0), logits 8 apart at 1e8 (one f32 step), an
/// infinite maximum (the limit: one-hot), a masked logit, the two ends of
/// f32's range, all -Inf and tied +Inf (no limit: NaN), and NaN.
fn log_softmax_cases() -> Vec<(Vec<f32>, Vec<f64>)> {
    let gap = (1.0 + (-8f64).exp()).ln();
    let nan = f64::NAN;
    vec![
        (vec![1e8, 1e8], vec![-LN2, -LN2]),
        (vec![1e8, 1e8 - 8.0], vec![-gap, -8.0 - gap]),
        (vec![-1e8, -1e8 - 8.0], vec![-gap, -8.0 - gap]),
        (vec![1e30, 1e30], vec![-LN2, -LN2]),
        (vec![INF, 1.0], vec![0.0, f64::NEG_INFINITY]),
        (vec![-INF, 0.0], vec![f64::NEG_INFINITY, 0.0]),
        (vec![3e38, -3e38], vec![0.0, -6e38]),
        (vec![-INF, -INF], vec![nan, nan]),
        (vec![INF, INF], vec![nan, nan]),
        (vec![f32::NAN, 0.0], vec![nan, nan]),
    ]
}

#[test]
fn log_softmax_of_large_and_infinite_logits() {
    let cases = log_softmax_cases();
    let z: Vec<Vec<f32>> = cases.iter().map(|(z, _)| z.clone()).collect();
    check(
        "log_softmax",
        "input z[2]\ny = log_softmax(z)\noutput y\n",
        &z,
        None,
        |b| {
            let l = cases[b].1.clone();
            let j = log_softmax_jacobian(&l);
            (l, j)
        },
    );
}

#[test]
fn softmax_of_large_and_infinite_logits_sums_to_one() {
    let cases = log_softmax_cases();
    let z: Vec<Vec<f32>> = cases.iter().map(|(z, _)| z.clone()).collect();
    let softmax = |b: usize| -> Vec<f64> { cases[b].1.iter().map(|l| l.exp()).collect() };
    check(
        "softmax",
        "input z[2]\ny = softmax(z)\noutput y\n",
        &z,
        None,
        |b| (softmax(b), softmax_jacobian(&softmax(b))),
    );
    // Sums to one within rounding, for logits of any size.
    let mut rng = rng("softmax sums to one");
    let n = 37;
    let rows: Vec<Vec<f32>> = (0..64)
        .map(|b| {
            let scale = 10f32.powi(b % 31);
            let offset = if b % 2 == 0 { scale } else { -scale };
            uniform(&mut rng, n, -20.0, 20.0)
                .into_iter()
                .map(|v| offset + v * scale.sqrt())
                .collect()
        })
        .collect();
    let flat: Vec<f32> = rows.concat();
    let program = parse(&format!("input z[{n}]\ny = softmax(z)\noutput y\n"));
    for (backend, name) in backends() {
        let out = backend
            .jacobian(&program, "z", &[("z", &flat)])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (b, s) in out.values.chunks(n).enumerate() {
            let total: f64 = s.iter().map(|&v| f64::from(v)).sum();
            assert!(
                (total - 1.0).abs() <= 1e-6,
                "softmax on the {name}: row {b} sums to {total} (logits {:?})",
                rows[b]
            );
        }
    }
}

#[test]
fn logsumexp_at_its_limits() {
    let nan = f64::NAN;
    let cases: Vec<(Vec<f32>, f64, Vec<f64>)> = vec![
        (vec![-INF, -INF], f64::NEG_INFINITY, vec![nan, nan]),
        (vec![1e8, 1e8], 1e8 + LN2, vec![0.5, 0.5]),
        (vec![INF, 1.0], f64::INFINITY, vec![1.0, 0.0]),
        (vec![1.0, INF], f64::INFINITY, vec![0.0, 1.0]),
        (vec![-INF, 0.0], 0.0, vec![0.0, 1.0]),
        (vec![-INF, INF], f64::INFINITY, vec![0.0, 1.0]),
        (vec![INF, INF], f64::INFINITY, vec![nan, nan]),
        (vec![-1e30, -1e30], -1e30 + LN2, vec![0.5, 0.5]),
        (vec![f32::NAN, 1.0], nan, vec![nan, nan]),
    ];
    let z: Vec<Vec<f32>> = cases.iter().map(|(z, ..)| z.clone()).collect();
    check(
        "logsumexp",
        "input z[2]\ny = logsumexp(z)\noutput y\n",
        &z,
        None,
        |b| (vec![cases[b].1], cases[b].2.clone()),
    );
    // One element: logsumexp is the element, its gradient 1, at -Inf too.
    check(
        "logsumexp of one element",
        "input z[1]\ny = logsumexp(z)\noutput y\n",
        &[vec![-INF], vec![INF], vec![3.0]],
        None,
        |b| (vec![[f64::NEG_INFINITY, f64::INFINITY, 3.0][b]], vec![1.0]),
    );
}

/// Logits, targets, the loss, and its gradient with respect to the logits.
type CrossEntropyCase = (Vec<f32>, Vec<f32>, f64, Vec<f64>);

#[test]
fn cross_entropy_of_large_infinite_and_masked_logits() {
    let cases: Vec<CrossEntropyCase> = vec![
        (vec![1e4, 1e4], vec![1.0, 0.0], LN2, vec![-0.5, 0.5]),
        (vec![1e8, 1e8], vec![0.0, 1.0], LN2, vec![0.5, -0.5]),
        // A masked logit with no weight adds nothing: 0 log 0 = 0.
        (vec![-INF, 0.0], vec![0.0, 1.0], 0.0, vec![0.0, 0.0]),
        (vec![0.0, -INF], vec![1.0, 0.0], 0.0, vec![0.0, 0.0]),
        (vec![-INF, 3.0], vec![0.0, 0.5], 0.0, vec![0.0, 0.0]),
        // An infinite logit: the limits.
        (vec![INF, 1.0], vec![1.0, 0.0], 0.0, vec![0.0, 0.0]),
        (
            vec![INF, 1.0],
            vec![0.0, 1.0],
            f64::INFINITY,
            vec![1.0, -1.0],
        ),
        // A masked logit that carries weight: an infinite loss.
        (
            vec![-INF, 0.0],
            vec![1.0, 0.0],
            f64::INFINITY,
            vec![-1.0, 1.0],
        ),
    ];
    let z: Vec<Vec<f32>> = cases.iter().map(|(z, ..)| z.clone()).collect();
    let t: Vec<Vec<f32>> = cases.iter().map(|(_, t, ..)| t.clone()).collect();
    check(
        "cross_entropy",
        "input z[2]\ninput t[2]\nloss = cross_entropy(z, t)\noutput loss\n",
        &z,
        Some(&t),
        |b| (vec![cases[b].2], cases[b].3.clone()),
    );
}

/// Soft targets over logits with masked entries, at several magnitudes:
/// the loss is sum(t) logsumexp(z) - sum(t z) over the unmasked entries,
/// the gradient softmax(z) sum(t) - t, both from differences to the maximum.
#[test]
fn cross_entropy_with_masks_and_soft_targets_matches_its_closed_form() {
    let mut rng = rng("masked cross-entropy");
    let n = 6;
    let batch = 40;
    let mut z = Vec::new();
    let mut t = Vec::new();
    for b in 0..batch {
        let offset = [0.0f32, 1e4, -1e4, 1e7][b % 4];
        let mut row: Vec<f32> = uniform(&mut rng, n, -5.0, 5.0)
            .into_iter()
            .map(|v| v + offset)
            .collect();
        let mut weights = uniform(&mut rng, n, 0.0, 1.0);
        for _ in 0..rng.random_range(1..n) {
            let masked = rng.random_range(0..n);
            row[masked] = -INF;
            weights[masked] = 0.0;
        }
        if weights.iter().all(|&w| w == 0.0) {
            let kept = (0..n).find(|&i| row[i].is_finite()).unwrap_or(0);
            row[kept] = offset;
            weights[kept] = 1.0;
        }
        z.push(row);
        t.push(weights);
    }
    let expected = |b: usize| {
        let (zi, ti) = (&z[b], &t[b]);
        let max = zi
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let shifted: Vec<f64> = zi.iter().map(|&v| f64::from(v) - max).collect();
        let total: f64 = shifted.iter().map(|d| d.exp()).sum();
        let weight: f64 = ti.iter().map(|&w| f64::from(w)).sum();
        let loss: f64 = shifted
            .iter()
            .zip(ti)
            .filter(|(_, w)| **w != 0.0)
            .map(|(d, &w)| f64::from(w) * (total.ln() - d))
            .sum();
        let gradient = shifted
            .iter()
            .zip(ti)
            .map(|(d, &w)| d.exp() / total * weight - f64::from(w))
            .collect();
        (vec![loss], gradient)
    };
    check(
        "masked cross_entropy",
        &format!("input z[{n}]\ninput t[{n}]\nloss = cross_entropy(z, t)\noutput loss\n"),
        &z,
        Some(&t),
        expected,
    );
}
