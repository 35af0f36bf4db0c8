//! Selections (min, max, relu, abs, leaky_relu) pass on the winning
//! branch's tangent and cotangent only: where the losing branch's tangent
//! is infinite or NaN, a zero partial times it is zero, not NaN. Ties keep
//! the half-and-half split. Checked on expressions (fused and unfused
//! kernels, the f64 reference) and on programs (Jacobian, JVP, VJP and
//! gradients, GPU and CPU), against values derived by hand.

mod common;

use chainrule::graph::{Graph, InputOrder};
use chainrule::schedule::Fusion;
use chainrule::{Reduction, npy};
use common::programs::{backends, parse};
use common::{gpu, meets_contract};

fn assert_meets(label: &str, actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{label}: length");
    let failures: Vec<String> = actual
        .iter()
        .zip(expected)
        .enumerate()
        .filter(|&(_, (&a, &e))| !meets_contract(a, e))
        .map(|(i, (a, e))| format!("  [{i}] actual {a:e}, expected {e:e}"))
        .collect();
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
}

/// One scalar expression of x at `points` as (x, value, derivative), on
/// the GPU fused and unfused and on the CPU.
fn check_expression(text: &str, points: &[(f32, f64, f64)]) {
    let graph = Graph::parse(text, InputOrder::FirstAppearance).expect("parses");
    let xs: Vec<f32> = points.iter().map(|p| p.0).collect();
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let derivatives: Vec<f64> = points.iter().map(|p| p.2).collect();
    for (backend, name) in backends() {
        for fusion in [Fusion::Fused, Fusion::Unfused] {
            let label = format!("{text} on the {name} ({fusion:?}) at {xs:?}");
            let out = backend
                .evaluate(&graph, &[&xs], fusion)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_meets(&format!("{label}: values"), &out.values, &values);
            assert_meets(
                &format!("{label}: derivatives"),
                &out.derivatives,
                &derivatives,
            );
        }
    }
}

/// The input, e^10 beside a branch that overflows: at x = 100 in
/// f32, and at 1000 where f64 overflows too (so the reference is tested
/// as well); where exp(x) wins, its own derivative.
#[test]
fn min_of_an_overflowing_branch_has_the_winners_derivative() {
    let e10 = 10f64.exp();
    check_expression(
        "min(exp(x), exp(10))",
        &[
            (100.0, e10, 0.0),
            (1000.0, e10, 0.0),
            (89.0, e10, 0.0),
            (f32::INFINITY, e10, 0.0),
            (5.0, 5f64.exp(), 5f64.exp()),
            (-3.0, (-3f64).exp(), (-3f64).exp()),
        ],
    );
}

#[test]
fn every_selection_ignores_the_losing_branch() {
    // max with the loser at -Inf: its tangent is -Inf.
    check_expression(
        "max(-exp(x), -5)",
        &[(100.0, -5.0, 0.0), (1000.0, -5.0, 0.0), (0.0, -1.0, -1.0)],
    );
    // The loser at a pole: ln(0) = -Inf with partial +Inf, 1/0 = +Inf with
    // partial -Inf. Here the f64 reference overflowed too.
    check_expression(
        "max(x, ln(x))",
        &[(0.0, 0.0, 1.0), (2.0, 2.0, 1.0), (0.5, 0.5, 1.0)],
    );
    check_expression("min(x, 1/x)", &[(0.0, 0.0, 1.0), (4.0, 0.25, -1.0 / 16.0)]);
    // relu and leaky_relu with slope 0 select 0 below the kink.
    check_expression(
        "relu(-exp(x))",
        &[(100.0, 0.0, 0.0), (1000.0, 0.0, 0.0), (0.0, 0.0, 0.0)],
    );
    check_expression(
        "leaky_relu(-exp(x), 0)",
        &[(100.0, 0.0, 0.0), (1000.0, 0.0, 0.0), (1.0, 0.0, 0.0)],
    );
    // elu's partial below 0, alpha e^x, is 0 at -Inf: a saturated branch
    // whose tangent is -Inf adds nothing either.
    check_expression(
        "elu(-exp(x))",
        &[
            (100.0, -1.0, 0.0),
            (1000.0, -1.0, 0.0),
            (0.0, 1f64.exp().recip() - 1.0, -(1f64.exp().recip())),
        ],
    );
    // abs at its kink (abs'(0) = 0) meets an undefined tangent (Inf - Inf):
    // the function is 0 everywhere, so is its derivative.
    check_expression(
        "abs(sqrt(x) - sqrt(x))",
        &[(0.0, 0.0, 0.0), (4.0, 0.0, 0.0)],
    );
    // A selection inside a selection.
    check_expression(
        "relu(min(exp(x), 3) - 1)",
        &[
            (100.0, 2.0, 0.0),
            (0.5, 0.5f64.exp() - 1.0, 0.5f64.exp()),
            (-1.0, 0.0, 0.0),
        ],
    );
}

#[test]
fn ties_keep_the_half_and_half_split() {
    check_expression("max(x, 2 - x)", &[(1.0, 1.0, 0.0), (3.0, 3.0, 1.0)]);
    check_expression("min(x, 2)", &[(2.0, 2.0, 0.5), (1.0, 1.0, 1.0)]);
    check_expression("max(x, 0)", &[(0.0, 0.0, 0.5), (-1.0, 0.0, 0.0)]);
    check_expression("min(3*x, x + 2)", &[(1.0, 3.0, 2.0), (0.0, 0.0, 3.0)]);
}

/// A program of input x (and params), checked on both backends: values,
/// Jacobian, JVP and VJP with all-ones seeds, and for a scalar output the
/// per-sample gradient. `expected[b]` is sample b's (values, Jacobian).
fn check_program(
    text: &str,
    x: &[Vec<f32>],
    params: &[(&str, &[f32])],
    expected: &[(Vec<f64>, Vec<f64>)],
) {
    let program = parse(text);
    let n = x[0].len();
    let m = expected[0].0.len();
    let batch = x.len();
    let flat: Vec<f32> = x.concat();
    let mut vars: Vec<(&str, &[f32])> = vec![("x", &flat)];
    vars.extend_from_slice(params);
    let values: Vec<f64> = expected.iter().flat_map(|e| e.0.clone()).collect();
    let jacobian: Vec<f64> = expected.iter().flat_map(|e| e.1.clone()).collect();
    let jvp: Vec<f64> = jacobian.chunks(n).map(|row| row.iter().sum()).collect();
    let vjp: Vec<f64> = jacobian
        .chunks(m * n)
        .flat_map(|j| (0..n).map(move |c| (0..m).map(|r| j[r * n + c]).sum::<f64>()))
        .collect();
    for (backend, name) in backends() {
        let label = format!("{text} on the {name} at {x:?}");
        let out = backend
            .jacobian(&program, "x", &vars)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_meets(&format!("{label}: values"), &out.values, &values);
        let dense: Vec<f32> = out
            .jacobian
            .try_to_dense(batch)
            .expect("dense")
            .into_iter()
            .map(|v| v as f32)
            .collect();
        assert_meets(&format!("{label}: Jacobian"), &dense, &jacobian);
        let jvp_out = backend
            .jvp(&program, "x", &vars, &vec![1.0; batch * n])
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_meets(&format!("{label}: JVP"), &jvp_out, &jvp);
        let vjp_out = backend
            .vjp(&program, "x", &vars, &vec![1.0; batch * m])
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_meets(&format!("{label}: VJP"), &vjp_out, &vjp);
        if m == 1 {
            let g = backend
                .gradient(&program, &["x"], &vars, Reduction::PerSample)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_meets(
                &format!("{label}: gradient"),
                &g.gradients[0].values,
                &jacobian,
            );
        }
    }
}

/// A diagonal Jacobian, row-major.
fn diagonal(d: &[f64]) -> Vec<f64> {
    let n = d.len();
    (0..n * n)
        .map(|e| if e / n == e % n { d[e / n] } else { 0.0 })
        .collect()
}

#[test]
fn program_selections_pass_on_the_winners_tangent() {
    let e10 = 10f64.exp();
    let e5 = 5f64.exp();
    check_program(
        "input x[3]\ny = min(exp(x), exp(10))\noutput y\n",
        &[vec![100.0, 5.0, 1000.0], vec![f32::INFINITY, -1.0, 89.0]],
        &[],
        &[
            (vec![e10, e5, e10], diagonal(&[0.0, e5, 0.0])),
            (
                vec![e10, (-1f64).exp(), e10],
                diagonal(&[0.0, (-1f64).exp(), 0.0]),
            ),
        ],
    );
    // Summed to a loss, through the gradient's reverse pass.
    check_program(
        "input x[3]\nloss = sum(max(x, ln(x)) + relu(-exp(x)))\noutput loss\n",
        &[vec![0.0, 2.0, 1000.0]],
        &[],
        &[(vec![0.0 + 2.0 + 1000.0], vec![1.0, 1.0, 1.0])],
    );
}

/// Selections between matrix products: the overflowing rows of exp(W1 @ x)
/// lose to 5, and W1 and W2 hold zeros, so any order of the chain
/// W2 diag(min') diag(exp') W1 meets 0 * Inf somewhere, in products of
/// diagonals, in row and column scalings and inside the matrix products.
#[test]
fn selections_between_matrix_products_pass_on_the_winners_tangent() {
    let w1: [f32; 12] = [
        500.0, 500.0, 0.0, 0.0, //
        0.5, -0.25, 0.1, 0.0, //
        0.0, 0.0, 400.0, 400.0,
    ];
    let w2: [f32; 6] = [1.0, 2.0, 3.0, 0.0, -1.0, 0.5];
    let x = vec![
        vec![1.0f32, 1.0, 1.0, 1.0],
        vec![0.0, 0.0, 0.0, 0.0],
        vec![-1.0, -1.0, -1.0, -1.0],
        vec![2.0, 0.0, 0.0, -3.0],
    ];
    let expected: Vec<(Vec<f64>, Vec<f64>)> = x
        .iter()
        .map(|x| {
            let z: Vec<f64> = (0..3)
                .map(|k| {
                    (0..4)
                        .map(|j| f64::from(w1[k * 4 + j]) * f64::from(x[j]))
                        .sum()
                })
                .collect();
            let h: Vec<f64> = z.iter().map(|z| z.exp()).collect();
            let value: Vec<f64> = (0..2)
                .map(|i| {
                    (0..3)
                        .map(|k| f64::from(w2[i * 3 + k]) * h[k].min(5.0))
                        .sum()
                })
                .collect();
            // Only rows where exp wins (h < 5) carry a derivative.
            let jacobian: Vec<f64> = (0..8)
                .map(|e| {
                    let (i, j) = (e / 4, e % 4);
                    (0..3)
                        .filter(|&k| h[k] < 5.0)
                        .map(|k| f64::from(w2[i * 3 + k]) * h[k] * f64::from(w1[k * 4 + j]))
                        .sum()
                })
                .collect();
            (value, jacobian)
        })
        .collect();
    check_program(
        "input x[4]\nparam W1[3,4] W2[2,3]\ny = W2 @ min(exp(W1 @ x), 5)\noutput y\n",
        &x,
        &[("W1", &w1), ("W2", &w2)],
        &expected,
    );
}

/// The command: `chainrule eval 'min(exp(x), exp(10))'` at x = 100.
#[test]
fn the_cli_gives_the_winners_derivative() {
    let dir = common::scratch("selection-cli");
    let x_path = dir.join("x.npy");
    npy::write(&x_path, &[2], &[100.0, 1000.0]).expect("write x");
    let (v, d) = (dir.join("v.npy"), dir.join("d.npy"));
    let mut modes = vec![vec!["--cpu"]];
    if gpu().is_some() {
        modes.push(vec![]);
        modes.push(vec!["--unfused"]);
    }
    for extra in modes {
        let x_arg = format!("x={}", x_path.display());
        let (v_arg, d_arg) = (v.display().to_string(), d.display().to_string());
        let mut args = vec![
            "eval",
            "min(exp(x), exp(10))",
            "--input",
            &x_arg,
            "--values",
            &v_arg,
            "--derivatives",
            &d_arg,
        ];
        args.extend(extra.iter().copied());
        let (ok, stdout, stderr) = common::chainrule(&args);
        assert!(ok, "{extra:?}: {stdout}\n{stderr}");
        assert!(!stderr.contains("falling back"), "{extra:?}: {stderr}");
        let values = npy::read(&v).expect("values");
        let derivatives = npy::read(&d).expect("derivatives");
        assert_meets(
            &format!("{extra:?}: values"),
            &values.data,
            &[10f64.exp(); 2],
        );
        assert_meets(
            &format!("{extra:?}: derivatives"),
            &derivatives.data,
            &[0.0; 2],
        );
    }
}

/// Products of structured Jacobians where zeros meet infinities: A (shared,
/// with zero entries) times diag(d) (zeros, infinities) times B (per sample,
/// with infinite and NaN entries), in both bracketings, on the GPU's small
/// and tiled product kernels and on the CPU, against a sum over paths
/// written out here, in which a path with a zero factor adds nothing.
#[test]
fn products_of_jacobians_drop_paths_through_a_zero() {
    use chainrule::jacobian::Jacobian;
    use chainrule::schedule::chain::Bracketing;
    let batch = 3;
    for (m, k, n) in [(3usize, 4usize, 5usize), (70, 66, 68)] {
        // Inner index q by q % 5: 0, d is 0 and B's row infinite or NaN;
        // 1, d is +Inf and B's row 0; 2, A's column 0 and B's row infinite
        // or NaN; else all finite. Every result is finite, and only
        // because each path through a zero adds nothing.
        let a: Vec<f64> = (0..m * k)
            .map(|e| {
                if e % k % 5 == 2 {
                    0.0
                } else {
                    (e % 7) as f64 - 3.5
                }
            })
            .collect();
        let d: Vec<f64> = (0..batch * k)
            .map(|e| match e % k % 5 {
                0 => 0.0,
                1 => f64::INFINITY,
                _ => 0.5 + (e % 3) as f64,
            })
            .collect();
        let b: Vec<f64> = (0..batch * k * n)
            .map(|e| {
                let (q, j) = (e / n % k, e % n);
                match q % 5 {
                    0 | 2 => [f64::INFINITY, f64::NEG_INFINITY, f64::NAN][(e / n + j) % 3],
                    1 => 0.0,
                    _ => ((e + q) % 5) as f64 - 2.0,
                }
            })
            .collect();
        let expected: Vec<f64> = (0..batch * m * n)
            .map(|e| {
                let (s, i, j) = (e / (m * n), e / n % m, e % n);
                (0..k)
                    .map(|q| [a[i * k + q], d[s * k + q], b[(s * k + q) * n + j]])
                    .filter(|path| path.iter().all(|&f| f != 0.0))
                    .map(|path| path.iter().product::<f64>())
                    .sum()
            })
            .collect();
        let factors = [
            Jacobian::shared(m, k, a.clone()).expect("A"),
            Jacobian::diagonal(batch, k, d.clone()).expect("diag"),
            Jacobian::dense(batch, k, n, b.clone()).expect("B"),
        ];
        let leaf = |i| Box::new(Bracketing::Leaf(i));
        let orders = [
            Bracketing::Product(Box::new(Bracketing::Product(leaf(0), leaf(1))), leaf(2)),
            Bracketing::Product(leaf(0), Box::new(Bracketing::Product(leaf(1), leaf(2)))),
        ];
        let reference = factors[0]
            .product(&factors[1], batch)
            .and_then(|ad| ad.product(&factors[2], batch))
            .expect("cpu product");
        let as_f32 = |j: &Jacobian| -> Vec<f32> {
            j.try_to_dense(batch)
                .expect("dense")
                .into_iter()
                .map(|v| v as f32)
                .collect()
        };
        let label = format!("{m}x{k}x{n}");
        assert!(expected.iter().all(|v| v.is_finite()), "{label}: finite");
        assert_meets(
            &format!("{label} on the cpu"),
            &as_f32(&reference),
            &expected,
        );
        let Some(context) = gpu() else { continue };
        let layout = context.batch_layout(batch, k * n * 4).expect("layout");
        let on_device: Vec<_> = factors
            .iter()
            .map(|f| context.upload_jacobian(f, layout).expect("upload"))
            .collect();
        for order in &orders {
            let product = context
                .chain_product(&on_device, order, layout)
                .expect("gpu product");
            let result = context
                .download_jacobian(&product, layout)
                .expect("download");
            assert_meets(
                &format!("{label} on the gpu, {order:?}"),
                &as_f32(&result),
                &expected,
            );
        }
    }
}
