//! Comparisons `<`, `<=`, `>`, `>=` and `where(c, a, b)`: values and
//! Jacobian, JVP, VJP and gradient on the GPU and the CPU path against the
//! f64 oracle, the oracle against central differences away from the switch
//! points, the branch not taken keeping its NaN and infinities out of the
//! value and the derivative (`where(x > 0, sqrt(x), 0)` at x < 0, a masked
//! softmax), ties for `<=`, the scalar expressions of `chainrule eval`, and
//! the parser's precedence and refusal of chained comparisons.

mod common;

use chainrule::Reduction;
use chainrule::program::Program;
use common::programs::{assert_close, backends, check, output, parse};
use common::{gpu, rng};

#[test]
fn comparisons_and_where_agree_with_the_oracle() {
    let mut rng = rng("comparisons_and_where_agree_with_the_oracle");
    check(
        "where on vectors",
        "input x[5]\ninput y[5]\nz = where(x > y, sin(x) * y, y^2 - x) + (x <= 0.3)\noutput z",
        &["x", "y"],
        &mut rng,
    );
    check(
        "scalar condition and scalar branch",
        "input x[4]\ninput s\nz = where(s > 0, x * s, 2) + where(x < s, 1, x)\noutput z",
        &["x", "s"],
        &mut rng,
    );
    check(
        "a gradient through where",
        "input x[6]\nparam w[6]\ny = sum(where(w * x >= 0.1, (w * x)^2, -x)) + (sum(x) < 0)\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "scalars",
        "input a\ninput b\ny = where(a >= b, exp(a), cos(b)) * (a > -2)\noutput y",
        &["a", "b"],
        &mut rng,
    );
}

#[test]
fn a_masked_softmax_ignores_the_masked_logits() {
    let mut rng = rng("a_masked_softmax_ignores_the_masked_logits");
    let text = "input z[5]\ninput mask[5]\np = softmax(where(mask > 0, z, -1e30))\noutput p";
    check("masked softmax", text, &["z"], &mut rng);
    // Against an independent softmax over the unmasked logits only.
    let program = parse(text);
    let z = [0.3f32, -1.2, 2.0, 0.7, -0.4];
    let mask = [1.0f32, 0.0, 1.0, -1.0, 1.0];
    let kept: Vec<usize> = (0..5).filter(|&i| mask[i] > 0.0).collect();
    let total: f64 = kept.iter().map(|&i| f64::from(z[i]).exp()).sum();
    let p: Vec<f64> = (0..5)
        .map(|i| {
            if mask[i] > 0.0 {
                f64::from(z[i]).exp() / total
            } else {
                0.0
            }
        })
        .collect();
    let mut jacobian = vec![0.0; 25];
    for i in 0..5 {
        for j in 0..5 {
            if mask[i] > 0.0 && mask[j] > 0.0 {
                jacobian[i * 5 + j] = p[i] * (f64::from(u8::from(i == j)) - p[j]);
            }
        }
    }
    let bound: Vec<(&str, &[f32])> = vec![("z", &z), ("mask", &mask)];
    for (backend, path) in backends() {
        let out = backend.jacobian(&program, "z", &bound).expect("jacobian");
        let values: Vec<f64> = out.values.iter().map(|&v| f64::from(v)).collect();
        assert_close(&format!("masked softmax on the {path}"), &values, &p, 1e-6);
        let dense = out.jacobian.to_dense(1);
        assert_close(
            &format!("masked softmax Jacobian on the {path}"),
            &dense,
            &jacobian,
            1e-5,
        );
    }
}

#[test]
fn the_branch_not_taken_never_reaches_the_result() {
    // sqrt(x) is NaN, and its derivative NaN, at x < 0; ln(x) is -Inf at 0
    // with an infinite derivative.
    let text = "input x[5]\ny = where(x > 0, sqrt(x), 0) + where(x <= 0, 1, ln(x))\noutput y";
    let program = parse(text);
    let x = [-2.0f32, -0.5, 0.0, 0.25, 4.0];
    let value = |x: f64| if x > 0.0 { x.sqrt() + x.ln() } else { 1.0 };
    let slope = |x: f64| {
        if x > 0.0 {
            0.5 / x.sqrt() + 1.0 / x
        } else {
            0.0
        }
    };
    let values: Vec<f64> = x.iter().map(|&x| value(f64::from(x))).collect();
    let mut jacobian = vec![0.0; 25];
    for i in 0..5 {
        jacobian[i * 5 + i] = slope(f64::from(x[i]));
    }
    let at = vec![x.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>()];
    let refs: Vec<&[f64]> = at.iter().map(Vec::as_slice).collect();
    assert_eq!(output(&program, &at), values, "the oracle's values");
    assert_eq!(
        program.jacobian_dense(&refs, 0).expect("the oracle"),
        jacobian,
        "the oracle's Jacobian"
    );
    let bound: Vec<(&str, &[f32])> = vec![("x", &x)];
    let ones = [1.0f32; 5];
    for (backend, path) in backends() {
        let out = backend.jacobian(&program, "x", &bound).expect("jacobian");
        let got: Vec<f64> = out.values.iter().map(|&v| f64::from(v)).collect();
        assert!(got.iter().all(|v| v.is_finite()), "{path}: {got:?}");
        assert_close(&format!("{path}: values"), &got, &values, 1e-6);
        let dense = out.jacobian.to_dense(1);
        assert!(dense.iter().all(|v| v.is_finite()), "{path}: {dense:?}");
        assert_close(&format!("{path}: Jacobian"), &dense, &jacobian, 1e-6);
        let jvp = backend.jvp(&program, "x", &bound, &ones).expect("jvp");
        let vjp = backend.vjp(&program, "x", &bound, &ones).expect("vjp");
        let diagonal: Vec<f64> = (0..5).map(|i| jacobian[i * 5 + i]).collect();
        for (label, got) in [("JVP", jvp), ("VJP", vjp)] {
            let got: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
            assert_close(&format!("{path}: {label}"), &got, &diagonal, 1e-6);
        }
    }
    // A scalar loss, so that the gradient path (the compiled kernels on the
    // GPU) runs too; one sample per element.
    let loss =
        parse("input x\ny = where(x > 0, sqrt(x), 0) * 3 + where(x < 0, 0, 1 / x)\noutput y");
    let xs = [-2.0f32, -0.5, 1.0, 4.0];
    let bound: Vec<(&str, &[f32])> = vec![("x", &xs)];
    let expected: Vec<f64> = xs
        .iter()
        .map(|&x| {
            let x = f64::from(x);
            if x > 0.0 {
                1.5 / x.sqrt() - 1.0 / (x * x)
            } else {
                0.0
            }
        })
        .collect();
    for (backend, path) in backends() {
        let got = backend
            .gradient(&loss, &["x"], &bound, Reduction::PerSample)
            .expect("gradient");
        let got: Vec<f64> = got.gradients[0]
            .values
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_close(&format!("{path}: gradient"), &got, &expected, 1e-6);
    }
}

#[test]
fn a_tie_counts_for_at_most_and_at_least() {
    let program = parse(
        "input x[3]\ninput y[3]\nz = where(x <= y, 2 * x, 3 * y) + (x >= y) + (x < y)\noutput z",
    );
    let x = [0.5f32, -1.0, 2.0];
    let y = [0.5f32, -2.0, 3.0];
    // At the tie x <= y and x >= y hold, x < y does not: 2x + 1.
    let values = [2.0, -6.0 + 1.0, 4.0 + 1.0];
    let dx = [2.0, 0.0, 2.0];
    let dy = [0.0, 3.0, 0.0];
    let bound: Vec<(&str, &[f32])> = vec![("x", &x), ("y", &y)];
    for (backend, path) in backends() {
        for (name, diagonal) in [("x", dx), ("y", dy)] {
            let out = backend.jacobian(&program, name, &bound).expect("jacobian");
            let got: Vec<f64> = out.values.iter().map(|&v| f64::from(v)).collect();
            assert_close(&format!("{path}: values"), &got, &values, 1e-7);
            let mut expected = vec![0.0; 9];
            for i in 0..3 {
                expected[i * 3 + i] = diagonal[i];
            }
            let dense = out.jacobian.to_dense(1);
            assert_close(&format!("{path}: d/d{name}"), &dense, &expected, 1e-7);
        }
    }
}

#[test]
fn scalar_expressions_select_too() {
    use chainrule::graph::{Graph, InputOrder};
    use chainrule::schedule::Fusion;
    let graph = Graph::parse(
        "where(x > 0, sqrt(x), 0) + (x <= y) * y^2",
        InputOrder::FirstAppearance,
    )
    .expect("parses");
    let xs = [-2.0f32, -0.25, 0.0, 0.5, 4.0, 1.0];
    let ys = [1.0f32, 0.5, -1.0, 0.5, 5.0, 1.0];
    let expected = |x: f64, y: f64| {
        let below = if x <= y { 1.0 } else { 0.0 };
        let value = if x > 0.0 { x.sqrt() } else { 0.0 } + below * y * y;
        let dx = if x > 0.0 { 0.5 / x.sqrt() } else { 0.0 };
        (value, [dx, below * 2.0 * y])
    };
    for i in 0..xs.len() {
        let (x, y) = (f64::from(xs[i]), f64::from(ys[i]));
        let (v, g) = graph.evaluate(&[x, y]);
        let (value, gradient) = expected(x, y);
        assert_eq!(v, value, "reference value at ({x}, {y})");
        assert_eq!(g, gradient.to_vec(), "reference gradient at ({x}, {y})");
    }
    if let Some(context) = gpu() {
        for fusion in [Fusion::Fused, Fusion::Unfused] {
            let out = context
                .evaluate(&graph, &[&xs, &ys], fusion)
                .expect("evaluates");
            for i in 0..xs.len() {
                let (x, y) = (f64::from(xs[i]), f64::from(ys[i]));
                let (value, gradient) = expected(x, y);
                let close = |a: f32, e: f64| (f64::from(a) - e).abs() <= 1e-5 * (1.0 + e.abs());
                assert!(
                    close(out.values[i], value),
                    "{fusion:?} value at ({x}, {y})"
                );
                for (j, g) in gradient.iter().enumerate() {
                    let d = out.derivatives[i * 2 + j];
                    assert!(close(d, *g), "{fusion:?} d{j} at ({x}, {y}): {d}");
                }
            }
        }
    }
}

#[test]
fn comparisons_bind_below_sums_and_do_not_chain() {
    let mut rng = rng("comparisons_bind_below_sums_and_do_not_chain");
    // (x + 1) > (2 * x), not x + (1 > 2) * x.
    check(
        "precedence",
        "input x[4]\ny = (x + 1 > 2 * x) * 10 + x\noutput y",
        &["x"],
        &mut rng,
    );
    let program = parse("input x\ny = x + 1 > 2 * x\noutput y");
    for (x, want) in [(0.5f64, 1.0), (2.0, 0.0)] {
        assert_eq!(output(&program, &[vec![x]]), vec![want], "at {x}");
    }
    let error = Program::parse("input x\ny = 0 < x < 1\noutput y")
        .expect_err("a chain of comparisons")
        .to_string();
    assert!(error.contains("comparisons do not chain"), "{error}");
    // Bracketed, it is taken as written.
    parse("input x\ny = (0 < x) < 1\noutput y");
    let error = Program::parse("input x[3]\ninput c[2]\ny = where(c, x, 0)\noutput y")
        .expect_err("shapes disagree")
        .to_string();
    assert!(error.contains("`where`"), "{error}");
    let error = Program::parse("input x\ny = where(x, 1)\noutput y")
        .expect_err("two arguments")
        .to_string();
    assert!(error.contains("three arguments"), "{error}");
}
