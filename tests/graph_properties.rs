//! Random expression trees (drawn by proptest): the GPU, fused and unfused,
//! against the f64 reference, and the derivatives against central finite
//! differences where the function is smooth there.
//!
//! The trees use well-conditioned operations over inputs in [-2, 2], so that
//! f32 rounding of intermediates stays within a tolerance a composed
//! function can meet: 1e-4 (1 + |reference|), looser than the single-op
//! contract by the depth of the composition.

mod common;

use chainrule::graph::{Graph, InputOrder};
use chainrule::schedule::Fusion;
use proptest::prelude::*;

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x".to_string()),
        Just("y".to_string()),
        (-20i32..20).prop_map(|c| format!("{}", f64::from(c) / 10.0)),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 2, |inner| {
        let unary = [
            "sin", "cos", "tanh", "sigmoid", "softplus", "silu", "gelu", "exp", "abs",
        ];
        prop_oneof![
            (prop::sample::select(unary.to_vec()), inner.clone())
                .prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} + {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} - {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} * {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} / (1 + ({b})^2))")),
            (inner.clone(), 2i32..4).prop_map(|(a, p)| format!("({a})^{p}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("max({a}, {b})")),
        ]
    })
}

fn close(actual: f32, expected: f64) -> bool {
    if expected.is_nan() {
        return actual.is_nan();
    }
    (f64::from(actual) - expected).abs() <= 1e-4 * (1.0 + expected.abs())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_match_the_reference(text in expression(), seed in any::<u64>()) {
        let Some(context) = common::gpu() else { return Ok(()) };
        let graph = Graph::parse(&text, InputOrder::Given(vec!["x".into(), "y".into()]))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let xs = common::uniform(&mut rng, 301, -2.0, 2.0);
        let ys = common::uniform(&mut rng, 301, -2.0, 2.0);
        for fusion in [Fusion::Fused, Fusion::Unfused] {
            let out = context.evaluate(&graph, &[&xs, &ys], fusion)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for i in 0..xs.len() {
                let point = [f64::from(xs[i]), f64::from(ys[i])];
                let (v, g) = graph.evaluate(&point);
                prop_assert!(close(out.values[i], v),
                    "{text} ({fusion:?}) at {point:?}: {} vs {v}", out.values[i]);
                for j in 0..2 {
                    prop_assert!(close(out.derivatives[2 * i + j], g[j]),
                        "{text} ({fusion:?}) d{j} at {point:?}: {} vs {}", out.derivatives[2 * i + j], g[j]);
                    // Central differences with two steps: where they agree the
                    // function is smooth there, and the reference must match.
                    let fd = |h: f64| {
                        let mut up = point;
                        let mut down = point;
                        up[j] += h;
                        down[j] -= h;
                        (graph.evaluate(&up).0 - graph.evaluate(&down).0) / (2.0 * h)
                    };
                    let (coarse, fine) = (fd(1e-4), fd(5e-5));
                    if (coarse - fine).abs() <= 1e-7 * (1.0 + fine.abs()) {
                        prop_assert!((g[j] - fine).abs() <= 1e-5 * (1.0 + fine.abs()),
                            "{text} reference d{j} at {point:?}: {} vs finite difference {fine}", g[j]);
                    }
                }
            }
        }
    }
}
