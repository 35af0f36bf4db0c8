//! The chain-rule explanations: the four steps for the examples of the
//! paper and the seed, and every step-4 formula checked numerically against
//! the f64 reference gradient at random points, not only by its text.

mod common;

use chainrule::explain::{Explanation, explain};
use chainrule::graph::{Graph, InputOrder};
use chainrule::ops::{BinaryOp, UnaryOp};
use chainrule::program::{Kind, Op, Program, Shape, Variable};
use common::rng;
use rand::Rng;

fn parse(text: &str) -> Graph {
    match Graph::parse(text, InputOrder::FirstAppearance) {
        Ok(graph) => graph,
        Err(e) => panic!("`{text}` does not parse: {e}"),
    }
}

/// Within 1e-9, relative to the reference (absolute below magnitude 1,
/// where cancellation in either formula leaves only absolute accuracy).
fn close(got: f64, want: f64) -> bool {
    (got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-9 * want.abs().max(1.0)
}

/// Checks every step-4 formula of `graph` against `Graph::evaluate` at
/// `samples` random points with each input drawn from `low..high`, skipping
/// points that `skip` rules out (poles, kinks).
fn check_numerically(
    text: &str,
    graph: &Graph,
    explanation: &Explanation,
    (low, high): (f64, f64),
    skip: &dyn Fn(&[f64]) -> bool,
) {
    let mut rng = rng(text);
    let k = graph.inputs().len();
    let mut checked = 0;
    for _ in 0..2000 {
        if checked == 100 {
            break;
        }
        let point: Vec<f64> = (0..k).map(|_| rng.random_range(low..high)).collect();
        if skip(&point) {
            continue;
        }
        checked += 1;
        let (_, gradient) = graph.evaluate(&point);
        for (j, want) in gradient.iter().enumerate() {
            let got = explanation.evaluate_derivative(j, &point);
            assert!(
                got.is_some_and(|g| close(g, *want)),
                "`{text}`: d/d{} = {} at {point:?} gives {got:?}, the reference {want}",
                graph.inputs()[j],
                explanation.derivative(j),
            );
        }
    }
    assert!(checked > 0, "`{text}`: every sample was skipped");
}

fn never(_: &[f64]) -> bool {
    false
}

#[test]
fn ln_sin_cube_squared_in_four_steps() {
    let text = "ln(sin(x^3)^2)";
    let graph = parse(text);
    let e = explain(&graph);
    let shown = e.to_string();
    for heading in [
        "Step 1. Introduce intermediate variables",
        "Step 2. Local derivatives",
        "Step 3. Combine: products along each path, sums across paths",
        "Step 4. The derivative",
    ] {
        assert!(shown.contains(heading), "missing `{heading}` in\n{shown}");
    }
    assert_eq!(
        e.intermediates,
        [
            "u1 = x^3",
            "u2 = sin(u1)",
            "u3 = u2^2",
            "u4 = ln(u3)",
            "y = u4"
        ]
    );
    assert_eq!(
        e.local_derivatives,
        [
            "du1/dx = 3*x^2",
            "du2/du1 = cos(u1)",
            "du3/du2 = 2*u2",
            "du4/du3 = 1/u3"
        ]
    );
    assert_eq!(e.paths.len(), 1);
    assert_eq!(e.paths[0].count, 1);
    assert_eq!(
        e.paths[0].listed,
        [
            "x -> u1 -> u2 -> u3 -> u4: du4/du3 * du3/du2 * du2/du1 * du1/dx \
          = (1/u3) * (2*u2) * cos(u1) * (3*x^2)"
        ]
    );
    assert_eq!(e.derivative(0), "6*x^2*cos(x^3)/sin(x^3)");
    assert!(shown.contains("dy/dx = 6*x^2*cos(x^3)/sin(x^3)"));
    check_numerically(text, &graph, &e, (-2.0, 2.0), &|p| {
        p[0].powi(3).sin().abs() < 1e-3
    });
    // Also against the closed form itself.
    for x in [0.3_f64, 0.9, 1.2, -0.7] {
        let want = 6.0 * x * x * (x * x * x).cos() / (x * x * x).sin();
        let got = e.evaluate_derivative(0, &[x]);
        assert!(got.is_some_and(|g| close(g, want)), "{got:?} vs {want}");
    }
}

#[test]
fn fan_out_sums_two_paths() {
    let text = "x + x^2";
    let graph = parse(text);
    let e = explain(&graph);
    assert_eq!(e.intermediates, ["u1 = x^2", "u2 = x + u1", "y = u2"]);
    assert_eq!(
        e.local_derivatives,
        ["du1/dx = 2*x", "du2/dx = 1", "du2/du1 = 1"]
    );
    let paths = &e.paths[0];
    assert_eq!(paths.count, 2);
    assert_eq!(
        paths.listed,
        [
            "x -> u2: du2/dx = 1",
            "x -> u1 -> u2: du2/du1 * du1/dx = 1 * (2*x)"
        ]
    );
    assert_eq!(paths.total, "dy/dx = du2/dx + du2/du1 * du1/dx");
    let shown = e.to_string();
    assert!(
        shown.contains(
            "x reaches y along 2 paths; their contributions are summed \
             (total-derivative chain rule)"
        ),
        "{shown}"
    );
    assert_eq!(e.derivative(0), "1 + 2*x");
    check_numerically(text, &graph, &e, (-3.0, 3.0), &never);
}

#[test]
fn one_variable_examples() {
    let cases = [
        ("x * x^2", "3*x^2"),
        ("sin(x + x^2)", "cos(x + x^2)*(1 + 2*x)"),
        ("9*(x+x^2)", "9*(1 + 2*x)"),
        ("x*x", "2*x"),
        ("-x", "-1"),
        ("x", "1"),
        ("1/x", "-1/x^2"),
        ("sqrt(x)", "1/(2*sqrt(x))"),
        ("sin(x)/sin(x)^3", "-2*cos(x)/sin(x)^3"),
        ("x^2 * x^-2", "0"),
    ];
    for (text, want) in cases {
        let graph = parse(text);
        let e = explain(&graph);
        assert_eq!(e.derivative(0), want, "`{text}`\n{e}");
        check_numerically(text, &graph, &e, (0.1, 3.0), &|p| p[0].sin().abs() < 1e-3);
    }
}

#[test]
fn two_inputs_give_one_partial_each() {
    for (text, dx, dy) in [("3*x^2*y", "6*x*y", "3*x^2"), ("2*x + y^8", "2", "8*y^7")] {
        let graph = parse(text);
        let e = explain(&graph);
        // An input is called y, so the output is f.
        assert_eq!(e.output, "f");
        assert_eq!((e.derivative(0), e.derivative(1)), (dx, dy), "{e}");
        let shown = e.to_string();
        assert!(shown.contains(&format!("df/dx = {dx}\n")), "{shown}");
        assert!(shown.contains(&format!("df/dy = {dy}\n")), "{shown}");
        check_numerically(text, &graph, &e, (-2.0, 2.0), &never);
    }
}

#[test]
fn a_constant_has_derivative_zero() {
    let e = explain(&parse("99"));
    assert!(e.inputs.is_empty());
    assert_eq!(e.intermediates, ["y = 99"]);
    assert_eq!(e.derivative(0), "");
    assert!(e.to_string().contains("its derivative is 0"));

    let graph = match Graph::parse("99", InputOrder::Given(vec!["x".into()])) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    let e = explain(&graph);
    assert_eq!(e.derivative(0), "0");
    assert_eq!(e.paths[0].count, 0);
    assert_eq!(e.evaluate_derivative(0, &[1.5]), Some(0.0));
    assert!(e.to_string().contains("dy/dx = 0"));
}

#[test]
fn kinks_render_and_follow_the_reference() {
    for text in [
        "relu(x)",
        "relu(x^2 - 1) * x",
        "max(x, x^2)",
        "min(x, 1 - x) + max(x, 0)",
        "max(x, x)",
        "leaky_relu(x) + elu(x, 0.5) + abs(x)",
    ] {
        let graph = parse(text);
        let e = explain(&graph);
        let shown = e.to_string();
        assert!(shown.contains("Step 4"), "{shown}");
        check_numerically(text, &graph, &e, (-2.0, 2.0), &never);
        // At the kinks themselves, where the conventions decide.
        for x in [0.0, 1.0, -1.0, 0.5] {
            let want = graph.evaluate(&[x]).1[0];
            let got = e.evaluate_derivative(0, &[x]);
            assert!(
                got.is_some_and(|g| close(g, want)),
                "`{text}` at {x}: {got:?} vs {want}"
            );
        }
    }
    let e = explain(&parse("max(x, x^2)"));
    assert!(
        e.local_derivatives
            .contains(&"du2/dx = [x > u1] + [x = u1]/2".to_string()),
        "{e}"
    );
    assert_eq!(explain(&parse("relu(x)")).derivative(0), "[x > 0]");
}

#[test]
fn every_operation_matches_the_reference() {
    let mut texts: Vec<String> = UnaryOp::catalogue()
        .iter()
        .filter(|op| op.parameter().is_none())
        .map(|op| format!("{}(x*y + x/4)", op.name()))
        .collect();
    texts.extend(
        [
            "leaky_relu(x - y, 0.2)",
            "elu(x - y, 0.5)",
            "(x*y)^2.5",
            "(x + y)^-3",
            "x - y",
            "x / y",
            "x^y",
            "y^(x*y)",
            "2^x",
            "min(x, y) * max(x, y)",
            "atan2(x - 0.5, y) + atan2(y, x)",
            "xlogy(x, y) + xlogy(x * y, y / x)",
            "sigmoid(tanh(x) * softplus(y)) - gelu(x / y)",
        ]
        .map(String::from),
    );
    for text in &texts {
        let graph = parse(text);
        let e = explain(&graph);
        // x*y + x/4 stays below pi/2, so tan has no pole here; atanh's
        // formula 1/(1 - u^2) goes on past the domain |u| < 1, where the
        // reference is NaN, so those points are left out.
        let outside = |p: &[f64]| text.starts_with("atanh") && (p[0] * p[1] + p[0] / 4.0) >= 1.0;
        check_numerically(text, &graph, &e, (0.1, 1.0), &|p| {
            p.windows(2).any(|w| (w[0] - w[1]).abs() < 1e-6) || outside(p)
        });
    }
}

/// The graph of `nodes` (node 0 reads the scalar input `x`; the last is
/// the output), built as a program by hand: too deep, or with too many
/// paths, to write as text.
fn graph_of(nodes: Vec<Op>) -> Graph {
    let count = nodes.len();
    let program = Program {
        variables: vec![Variable {
            name: "x".into(),
            kind: Kind::Input,
            shape: Shape::Scalar,
        }],
        nodes,
        shapes: vec![Shape::Scalar; count],
        output: count - 1,
        output_name: "y".into(),
        names: vec![None; count],
    };
    Graph::from_program(program).expect("an element-wise program")
}

/// `u_{k+1} = sin(u_k) + u_k`: every level doubles the paths.
fn doubling(levels: usize) -> Graph {
    let mut nodes = vec![Op::Variable(0)];
    for _ in 0..levels {
        let u = nodes.len() - 1;
        nodes.push(Op::Unary(UnaryOp::Sin, u));
        nodes.push(Op::Binary(BinaryOp::Add, u + 1, u));
    }
    graph_of(nodes)
}

#[test]
fn exponentially_many_paths_are_counted_not_listed() {
    let e = explain(&doubling(40));
    let paths = &e.paths[0];
    assert_eq!(paths.count, 1 << 40);
    assert_eq!(paths.listed.len(), 16);
    let shown = e.to_string();
    assert!(shown.contains("along 1099511627776 paths"), "{shown}");
    assert!(shown.contains("and 1099511627760 more not listed"));
    assert!(
        e.derivative(0).starts_with("(too large"),
        "{}",
        e.derivative(0)
    );
    assert_eq!(e.evaluate_derivative(0, &[0.5]), None);

    // Beyond u128 the count saturates.
    let e = explain(&doubling(200));
    assert_eq!(e.paths[0].count, u128::MAX);
    assert!(e.to_string().contains("more than 10^38 paths"));

    // Small enough to write out, and still right.
    let graph = doubling(3);
    let e = explain(&graph);
    assert_eq!(e.paths[0].count, 8);
    check_numerically("doubling(3)", &graph, &e, (-2.0, 2.0), &never);
}

#[test]
fn deep_graphs_do_not_exhaust_the_stack() {
    let mut nodes = vec![Op::Variable(0)];
    for u in 0..20_000 {
        nodes.push(Op::Unary(UnaryOp::Sin, u));
    }
    let e = explain(&graph_of(nodes));
    assert_eq!(e.intermediates.len(), 20_001);
    assert!(e.derivative(0).starts_with("(too large"));
    assert!(!e.to_string().is_empty());
}

#[test]
fn names_never_clash() {
    // An input called u1 moves the intermediates to v1, ...; one called y
    // moves the output to f.
    let e = explain(&parse("u1 * y + sin(u1)"));
    assert_eq!(e.output, "f");
    assert!(
        e.intermediates.iter().any(|l| l.starts_with("v1 = ")),
        "{e}"
    );
    assert_eq!(e.derivative(0), "y + cos(u1)");
    assert_eq!(e.derivative(1), "u1");
}

/// Random small graphs of bounded operations: whatever the shape (fan-out,
/// an operand used twice, unused inputs), step 4 agrees with the reference.
#[test]
fn random_graphs_match_the_reference() {
    let mut rng = rng("random graphs");
    let unary = [
        "sin({})",
        "cos({})",
        "tanh({})",
        "sigmoid({})",
        "square({})",
        "relu({})",
        "({})^3",
        "softplus({})",
    ];
    let binary = [
        "({} + {})",
        "({} - {})",
        "({} * {})",
        "max({}, {})",
        "min({}, {})",
    ];
    for _ in 0..300 {
        // Text whose repeated subexpressions the parser shares: fan-out,
        // an operand used twice and unused inputs all occur.
        let mut terms = vec!["x".to_string(), "y".to_string(), "0.5".to_string()];
        for _ in 0..rng.random_range(1..10) {
            let a = terms[rng.random_range(0..terms.len())].clone();
            let term = if rng.random_bool(0.5) {
                unary[rng.random_range(0..unary.len())].replacen("{}", &a, 1)
            } else {
                let c = &terms[rng.random_range(0..terms.len())];
                binary[rng.random_range(0..binary.len())]
                    .replacen("{}", &a, 1)
                    .replacen("{}", c, 1)
            };
            terms.push(term);
        }
        let text = &terms[terms.len() - 1];
        let graph = Graph::parse(text, InputOrder::Given(vec!["x".into(), "y".into()]))
            .unwrap_or_else(|e| panic!("`{text}`: {e}"));
        let e = explain(&graph);
        assert!(!e.to_string().is_empty());
        check_numerically("random graph", &graph, &e, (-1.0, 1.0), &never);
    }
}

/// `explain` takes a param as it takes an input, and a matrix param
/// through each of its products, with the outer product that gives its
/// Jacobian.
#[test]
fn params_are_explained_and_matrices_through_their_products() {
    use chainrule::explain::explain_variable;
    use chainrule::program::Program;
    let text = "input x[3]  z[3]\nparam W[2,3] b[2] w[3]\n\
                h = tanh(W @ x + b) + W @ z\ny = sum(h) * dot(w, x)\noutput y";
    let program = Program::parse(text).expect("parses");
    let var = |name: &str| program.variable(name).expect("declared");
    let w = explain_variable(&program, var("w"), 8).expect("w");
    assert!(
        w.contains("with respect to w") && w.contains("/dw [Dense 1x3] = x^T"),
        "{w}"
    );
    let b = explain_variable(&program, var("b"), 8).expect("b");
    assert!(
        b.contains("with respect to b") && b.contains("sum of 1 path"),
        "{b}"
    );
    let big = explain_variable(&program, var("W"), 8).expect("W");
    for expected in [
        "with respect to (W @ x)",
        "with respect to (W @ z)",
        "dy_k/dW[i, j] = (dy/d(W @ x))[k, i] x_j",
        "dy_k/dW[i, j] = (dy/d(W @ z))[k, i] z_j",
        "Per sample, dy/dW = (dy/d(W @ x))^T x^T + (dy/d(W @ z))^T z^T",
        "dy_k/dW[i, j] is the sum of these 2 terms, one for each product.",
    ] {
        assert!(big.contains(expected), "{expected} missing from:\n{big}");
    }
    // Each factor says what it is: an element-wise function's diagonal,
    // a product's matrix.
    let x = explain_variable(&program, var("x"), 8).expect("x");
    for expected in [
        "= diag(tanh'((W @ x) + b)), tanh'(x) = 1 - tanh(x)^2",
        "d(W @ x)/dx [Shared 2x3] = W",
    ] {
        assert!(x.contains(expected), "{expected} missing from:\n{x}");
    }
    // A vector output: the element-wise formula, no scalar's gradient.
    let program =
        Program::parse("input x[3]\nparam V[3,2]\ny = softmax(x @ V)\noutput y").expect("parses");
    let v = explain_variable(&program, 1, 8).expect("V");
    assert!(
        v.contains("dy_k/dV[i, j] = x_i (dy/d(x @ V))[k, j]") && !v.contains("Per sample"),
        "{v}"
    );
    let x = explain_variable(&program, 0, 8).expect("x");
    assert!(x.contains("d(x @ V)/dx [Shared 2x3] = V^T"), "{x}");
    assert!(explain_variable(&program, 7, 8).is_err());
}
