//! Element-wise graphs on the GPU, fused and unfused, against the closed
//! forms of Parr and Howard's scalar examples, the f64 reference, central
//! finite differences, and the IEEE answers at domain edges.

mod common;

use chainrule::graph::{Graph, InputOrder};
use chainrule::schedule::Fusion;
use chainrule::{Backend, Error, GpuContext};
use common::{gpu, meets_contract, rng, uniform};

const FUSIONS: [Fusion; 2] = [Fusion::Fused, Fusion::Unfused];

fn parse(text: &str) -> Graph {
    Graph::parse(text, InputOrder::FirstAppearance).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Checks GPU results (both plans) and the reference against closed forms.
fn check_closed_form(
    context: &GpuContext,
    text: &str,
    columns: &[Vec<f32>],
    value: impl Fn(&[f64]) -> f64,
    gradient: impl Fn(&[f64]) -> Vec<f64>,
) {
    let graph = parse(text);
    let refs: Vec<&[f32]> = columns.iter().map(Vec::as_slice).collect();
    let k = columns.len();
    for fusion in FUSIONS {
        let out = context.evaluate(&graph, &refs, fusion).expect("evaluates");
        for i in 0..columns[0].len() {
            let point: Vec<f64> = columns.iter().map(|c| f64::from(c[i])).collect();
            let expected = value(&point);
            assert!(
                meets_contract(out.values[i], expected),
                "{text} ({fusion:?}) at {point:?}: value {} expected {expected}",
                out.values[i]
            );
            for (j, g) in gradient(&point).into_iter().enumerate() {
                let actual = out.derivatives[i * k + j];
                assert!(
                    meets_contract(actual, g),
                    "{text} ({fusion:?}) at {point:?}: d/d{} = {actual}, expected {g}",
                    graph.inputs()[j]
                );
            }
        }
    }
    // The reference itself against the closed form, in f64.
    for i in 0..columns[0].len() {
        let point: Vec<f64> = columns.iter().map(|c| f64::from(c[i])).collect();
        let (v, g) = graph.evaluate(&point);
        assert!(
            (v - value(&point)).abs() <= 1e-12 * (1.0 + v.abs()),
            "{text} reference value"
        );
        for (a, b) in g.iter().zip(gradient(&point)) {
            assert!(
                (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
                "{text} reference gradient {a} vs {b}"
            );
        }
    }
}

#[test]
fn parr_and_howard_scalar_examples() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("scalar examples");
    // Where every example is well conditioned: x^3 stays below pi, so
    // sin(x^3) is away from its zeros.
    let xs = vec![uniform(&mut rng, 4099, 0.2, 1.4)];
    type F = fn(&[f64]) -> f64;
    type G = fn(&[f64]) -> Vec<f64>;
    let cases: Vec<(&str, F, G)> = vec![
        ("3x", |p| 3.0 * p[0], |_| vec![3.0]),
        ("x^3", |p| p[0].powi(3), |p| vec![3.0 * p[0] * p[0]]),
        (
            "x^2 + 3x",
            |p| p[0] * p[0] + 3.0 * p[0],
            |p| vec![2.0 * p[0] + 3.0],
        ),
        ("x^2 * x", |p| p[0].powi(3), |p| vec![3.0 * p[0] * p[0]]),
        ("ln(x^2)", |p| (p[0] * p[0]).ln(), |p| vec![2.0 / p[0]]),
        (
            "9(x + x^2)",
            |p| 9.0 * (p[0] + p[0] * p[0]),
            |p| vec![9.0 + 18.0 * p[0]],
        ),
        (
            "sin(x^2)",
            |p| (p[0] * p[0]).sin(),
            |p| vec![2.0 * p[0] * (p[0] * p[0]).cos()],
        ),
        (
            "ln(sin(x^3)^2)",
            |p| p[0].powi(3).sin().powi(2).ln(),
            |p| vec![6.0 * p[0] * p[0] * p[0].powi(3).cos() / p[0].powi(3).sin()],
        ),
        (
            "x + x^2",
            |p| p[0] + p[0] * p[0],
            |p| vec![1.0 + 2.0 * p[0]],
        ),
        ("x * x^2", |p| p[0].powi(3), |p| vec![3.0 * p[0] * p[0]]),
        (
            "sin(x + x^2)",
            |p| (p[0] + p[0] * p[0]).sin(),
            |p| vec![(p[0] + p[0] * p[0]).cos() * (1.0 + 2.0 * p[0])],
        ),
    ];
    for (text, value, gradient) in cases {
        check_closed_form(&context, text, &xs, value, gradient);
    }
    let xy = vec![
        uniform(&mut rng, 2053, -2.0, 2.0),
        uniform(&mut rng, 2053, -1.5, 1.5),
    ];
    check_closed_form(
        &context,
        "3x^2y",
        &xy,
        |p| 3.0 * p[0] * p[0] * p[1],
        |p| vec![6.0 * p[0] * p[1], 3.0 * p[0] * p[0]],
    );
    check_closed_form(
        &context,
        "2x + y^8",
        &xy,
        |p| 2.0 * p[0] + p[1].powi(8),
        |p| vec![2.0, 8.0 * p[1].powi(7)],
    );
}

#[test]
fn the_derivative_of_a_constant_is_zero() {
    let graph = Graph::parse("99", InputOrder::Given(vec!["x".into()])).expect("parses");
    let xs = [1.0f32, -3.0, 1e30];
    let backends: Vec<Backend> = gpu()
        .map(Backend::Gpu)
        .into_iter()
        .chain([Backend::Cpu(chainrule::CpuBackend)])
        .collect();
    for backend in backends {
        for fusion in FUSIONS {
            let out = backend.evaluate(&graph, &[&xs], fusion).expect("evaluates");
            assert_eq!(out.values, vec![99.0; 3]);
            assert_eq!(out.derivatives, vec![0.0; 3]);
        }
    }
}

/// Fused and unfused plans, and the resident form, agree with the reference
/// on a graph with fan-out, several inputs and every kind of node.
#[test]
fn fused_unfused_resident_and_reference_agree() {
    let Some(context) = gpu() else { return };
    let mut rng = rng("plans agree");
    let text = "sigmoid(a*b + a) * tanh(b) + max(a, b)^2 - exp(-a^2) / (1 + b^2) + softplus(a - b)";
    let graph = parse(text);
    let columns = [
        uniform(&mut rng, 70_001, -3.0, 3.0),
        uniform(&mut rng, 70_001, -3.0, 3.0),
    ];
    let refs: Vec<&[f32]> = columns.iter().map(Vec::as_slice).collect();
    let (values, derivatives) = graph.evaluate_columns(&refs).expect("reference");
    let fused = context
        .evaluate(&graph, &refs, Fusion::Fused)
        .expect("fused");
    let unfused = context
        .evaluate(&graph, &refs, Fusion::Unfused)
        .expect("unfused");
    let arrays: Vec<_> = columns
        .iter()
        .map(|c| context.upload(c).expect("upload"))
        .collect();
    let array_refs: Vec<_> = arrays.iter().collect();
    let (v, d) = context
        .evaluate_resident(&graph, &array_refs, Fusion::Fused)
        .expect("resident");
    let resident_values = context.download(&v).expect("download");
    let resident_derivatives = context.download(&d).expect("download");
    assert_eq!(resident_values, fused.values, "resident equals host path");
    assert_eq!(
        resident_derivatives, fused.derivatives,
        "resident equals host path"
    );
    for out in [&fused, &unfused] {
        assert_eq!(out.inputs, 2);
        for (a, e) in out.values.iter().zip(&values) {
            assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "value {a} vs {e}");
        }
        for (a, e) in out.derivatives.iter().zip(&derivatives) {
            assert!(
                (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                "derivative {a} vs {e}"
            );
        }
    }
}

/// The tiny-limits context splits the rows into many chunks (and its
/// resident arrays into many segments); results must not change.
#[test]
fn chunked_graph_equals_unchunked() {
    let Some(context) = gpu() else { return };
    let small = GpuContext::new(&chainrule::ContextOptions {
        limits: chainrule::LimitsOverride {
            max_binding_bytes: Some(8192),
            max_buffer_bytes: Some(8192),
            max_workgroups_per_dimension: Some(2),
        },
        ..chainrule::ContextOptions::default()
    })
    .expect("small context");
    let mut rng = rng("chunked graph");
    // Three inputs (a row an invocation), one (a quad of rows an
    // invocation, the input bound where it lies), and one under sin (a row
    // an invocation again), over a last chunk that ends inside a quad.
    for (text, k) in [
        ("x*y*z + sin(x)*exp(y) - z^3/(1 + x^2)", 3),
        ("exp(x) * x + x^3/(1 + x^2)", 1),
        ("sin(x)*exp(x) + x^3/(1 + x^2)", 1),
    ] {
        let graph = parse(text);
        let columns: Vec<Vec<f32>> = (0..k)
            .map(|_| uniform(&mut rng, 10_007, -2.0, 2.0))
            .collect();
        let refs: Vec<&[f32]> = columns.iter().map(Vec::as_slice).collect();
        chunked_matches(&context, &small, &graph, &columns, &refs);
    }
}

fn chunked_matches(
    context: &GpuContext,
    small: &GpuContext,
    graph: &Graph,
    columns: &[Vec<f32>],
    refs: &[&[f32]],
) {
    let (values, derivatives) = graph.evaluate_columns(refs).expect("reference");
    for fusion in FUSIONS {
        let whole = context.evaluate(graph, refs, fusion).expect("whole");
        let chunked = small.evaluate(graph, refs, fusion).expect("chunked");
        assert_eq!(whole, chunked, "{fusion:?}");
        for (a, e) in whole.values.iter().zip(&values) {
            assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "value {a} vs {e}");
        }
        for (a, e) in whole.derivatives.iter().zip(&derivatives) {
            let close = (a - e).abs() <= 1e-5 * (1.0 + e.abs());
            assert!(close, "derivative {a} vs {e}");
        }
        let arrays: Vec<_> = columns
            .iter()
            .map(|c| small.upload(c).expect("upload"))
            .collect();
        let array_refs: Vec<_> = arrays.iter().collect();
        let (v, d) = small
            .evaluate_resident(graph, &array_refs, fusion)
            .expect("resident");
        assert_eq!(small.download(&v).expect("download"), whole.values);
        assert_eq!(small.download(&d).expect("download"), whole.derivatives);
    }
}

/// ln of 0 and of negatives, sqrt of negatives, division by zero, powers of
/// negative bases: the IEEE answers, and the neighbours untouched.
#[test]
fn domain_edges_give_ieee_answers_and_stay_in_their_sample() {
    let Some(context) = gpu() else { return };
    let cases: [(&str, f32, f32, f32); 8] = [
        ("ln(x)", 0.0, f32::NEG_INFINITY, f32::INFINITY),
        ("ln(x)", -1.0, f32::NAN, f32::NAN),
        ("sqrt(x)", -4.0, f32::NAN, f32::NAN),
        ("1/x", 0.0, f32::INFINITY, f32::NEG_INFINITY),
        ("1/x", -0.0, f32::NEG_INFINITY, f32::NEG_INFINITY),
        ("x/x", 0.0, f32::NAN, f32::NAN),
        ("x^0.5", -1.0, f32::NAN, f32::NAN),
        ("x^3", -2.0, -8.0, 12.0),
    ];
    let same = |a: f32, b: f32| (a.is_nan() && b.is_nan()) || a == b;
    for (text, x, value, derivative) in cases {
        let graph = parse(text);
        let xs = [2.0, x, 3.0];
        for fusion in FUSIONS {
            let out = context.evaluate(&graph, &[&xs], fusion).expect("evaluates");
            assert!(
                same(out.values[1], value),
                "{text} at {x}: {} not {value}",
                out.values[1]
            );
            assert!(
                same(out.derivatives[1], derivative),
                "{text}' at {x}: {} not {derivative}",
                out.derivatives[1]
            );
            for i in [0, 2] {
                let (v, g) = graph.evaluate(&[f64::from(xs[i])]);
                assert!(
                    meets_contract(out.values[i], v) && meets_contract(out.derivatives[i], g[0])
                );
            }
        }
    }
    // A variable exponent: (-8)^y is defined for integer y only, and its
    // partial in y (a^y ln a) is NaN for a negative base.
    let graph = parse("x^y");
    let out = context
        .evaluate(
            &graph,
            &[&[-8.0, -8.0, 0.0], &[3.0, 0.5, 2.0]],
            Fusion::Fused,
        )
        .expect("evaluates");
    assert_eq!(out.values[0], -512.0);
    assert_eq!(out.derivatives[0], 192.0);
    assert!(out.derivatives[1].is_nan() && out.values[1].is_nan());
    assert_eq!(&out.derivatives[4..6], &[0.0, 0.0]);
}

/// Names, functions and arity errors point at the text.
#[test]
fn lowering_errors_say_what_and_where() {
    let message = |text: &str, order: InputOrder| match Graph::parse(text, order) {
        Err(Error::Parse(e)) => e.to_string(),
        other => panic!("{text}: expected a parse error, got {other:?}"),
    };
    let m = message("sigmod(x)", InputOrder::FirstAppearance);
    assert!(
        m.contains("unknown function `sigmod`") && m.contains("sigmoid"),
        "{m}"
    );
    assert!(m.contains('^'), "caret: {m}");
    let m = message("relu(x, 2)", InputOrder::FirstAppearance);
    assert!(m.contains("takes one argument"), "{m}");
    let m = message("x + z", InputOrder::Given(vec!["x".into(), "y".into()]));
    assert!(m.contains("`z` is not an input"), "{m}");
    let m = message("leaky_relu(x, y)", InputOrder::FirstAppearance);
    assert!(m.contains("must be a constant"), "{m}");
    let m = message("x + 1e39", InputOrder::FirstAppearance);
    assert!(m.contains("f32 range"), "{m}");
    let m = message("exp + 1", InputOrder::FirstAppearance);
    assert!(m.contains("is a function"), "{m}");
}

/// The f64 executor is public: a short point, a short gradient slice or a
/// workspace of another graph give an answer, never a panic.
#[test]
fn the_executor_takes_bad_arguments_without_panicking() {
    let graph = Graph::parse("x * y + sin(x)", InputOrder::FirstAppearance).expect("parses");
    let (value, gradient) = graph.evaluate(&[1.0]);
    assert!(value.is_nan(), "y is missing: {value}");
    assert_eq!(gradient.len(), 2);
    let other = Graph::parse("exp(a)", InputOrder::FirstAppearance).expect("parses");
    let mut workspace = other.workspace();
    let mut short = [0.0];
    let value = graph.evaluate_into(&[2.0, 3.0], &mut workspace, &mut short);
    assert!((value - (6.0 + 2f64.sin())).abs() < 1e-12);
    assert!((short[0] - (3.0 + 2f64.cos())).abs() < 1e-12);
}
