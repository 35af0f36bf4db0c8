//! Vector programs: parsing (shapes, sharing, errors with carets), the f64
//! forward pass against values worked by hand, and the dense Jacobian oracle
//! against central finite differences. Random inputs print their seed; set
//! CHAINRULE_SEED to replay one.

use chainrule::Error;
use chainrule::graph::{Graph, InputOrder};
use chainrule::lang::ParseError;
use chainrule::ops::{BinaryOp, ReduceOp, UnaryOp};
use chainrule::program::{Kind, Op, Program, Shape, Variable};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TWO_LAYERS: &str = "\
input x[64]
param W1[128,64]  b1[128]  W2[32,128]  b2[32]
h = sigmoid(W1 @ x + b1)
y = tanh(W2 @ h + b2)
output y
";

fn parsed(text: &str) -> Program {
    Program::parse(text).unwrap_or_else(|e| panic!("{text:?} failed to parse:\n{e}"))
}

fn parse_error(text: &str) -> ParseError {
    match Program::parse(text) {
        Ok(program) => panic!("{text:?} parsed as {program:?}"),
        Err(Error::Parse(e)) => e,
        Err(other) => panic!("{text:?}: not a parse error: {other}"),
    }
}

/// The message, the text under the caret and the help of an error.
fn error_parts(text: &str) -> (String, String, Option<String>) {
    let e = parse_error(text);
    let under = text.get(e.span.start..e.span.end).unwrap_or("<bad span>");
    (e.message.clone(), under.to_owned(), e.help.clone())
}

fn var(name: &str, kind: Kind, shape: Shape) -> Variable {
    Variable {
        name: name.to_owned(),
        kind,
        shape,
    }
}

#[test]
fn two_layer_network() {
    let p = parsed(TWO_LAYERS);
    assert_eq!(
        p.variables,
        vec![
            var("x", Kind::Input, Shape::Vector(64)),
            var("W1", Kind::Param, Shape::Matrix(128, 64)),
            var("b1", Kind::Param, Shape::Vector(128)),
            var("W2", Kind::Param, Shape::Matrix(32, 128)),
            var("b2", Kind::Param, Shape::Vector(32)),
        ]
    );
    assert_eq!(p.inputs(), vec![0]);
    assert_eq!(p.params(), vec![1, 2, 3, 4]);
    assert_eq!(p.variable("W2"), Some(3));
    assert_eq!(p.variable("nope"), None);
    assert_eq!(
        p.nodes,
        vec![
            Op::Variable(1),
            Op::Variable(0),
            Op::MatVec(0, 1),
            Op::Variable(2),
            Op::Binary(BinaryOp::Add, 2, 3),
            Op::Unary(UnaryOp::Sigmoid, 4),
            Op::Variable(3),
            Op::MatVec(6, 5),
            Op::Variable(4),
            Op::Binary(BinaryOp::Add, 7, 8),
            Op::Unary(UnaryOp::Tanh, 9),
        ]
    );
    use Shape::{Matrix, Vector};
    assert_eq!(
        p.shapes,
        vec![
            Matrix(128, 64),
            Vector(64),
            Vector(128),
            Vector(128),
            Vector(128),
            Vector(128),
            Matrix(32, 128),
            Vector(32),
            Vector(32),
            Vector(32),
            Vector(32),
        ]
    );
    assert_eq!(p.output, 10);
    assert_eq!(p.output_name, "y");
    let named: Vec<(usize, &str)> = p
        .names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.as_deref().map(|n| (i, n)))
        .collect();
    assert_eq!(named, vec![(5, "h"), (10, "y")]);
    assert_eq!(p.variable_node(0), Some(1));
    assert_eq!(p.check(), Ok(()));
}

#[test]
fn shapes_display_as_in_messages() {
    assert_eq!(Shape::Scalar.to_string(), "scalar");
    assert_eq!(Shape::Vector(64).to_string(), "[64]");
    assert_eq!(Shape::Matrix(128, 64).to_string(), "[128,64]");
    assert_eq!(Shape::Matrix(128, 64).size(), 8192);
    assert_eq!(Shape::Scalar.size(), 1);
    assert_eq!(Shape::Matrix(usize::MAX, 2).size(), usize::MAX);
}

#[test]
fn a_bare_expression_has_scalar_inputs_and_output_y() {
    let p = parsed("ln(sin(x^3)^2) + t*pi");
    assert_eq!(
        p.variables,
        vec![
            var("x", Kind::Input, Shape::Scalar),
            var("t", Kind::Input, Shape::Scalar),
        ]
    );
    assert_eq!(p.output_name, "y");
    assert!(p.shapes.iter().all(|&s| s == Shape::Scalar));
    assert!(
        p.nodes
            .contains(&Op::Unary(UnaryOp::Pow { exponent: 3.0 }, 0))
    );
    assert!(p.names.iter().all(Option::is_none));
    // A bare expression may span no more than its line, like a graph's.
    assert_eq!(
        parse_error("x +\ny").message,
        "expected an expression after `+`"
    );
}

#[test]
fn comments_blank_lines_commas_and_declarations_anywhere() {
    let p = parsed(
        "# a comment\n\n  output  s # the result\ns = dot(a, b) + c\ninput a[3], b[3]\r\nparam c\n",
    );
    assert_eq!(p.output_name, "s");
    assert_eq!(p.inputs(), vec![0, 1]);
    assert_eq!(p.params(), vec![2]);
    assert_eq!(p.shapes.get(p.output), Some(&Shape::Scalar));
    let p = parsed("input x[2]\noutput 2 * sum(x)");
    assert_eq!(p.output_name, "y");
    let p = parsed("input y[2]\noutput 2 * sum(y)");
    assert_eq!(p.output_name, "output");
}

#[test]
fn a_value_used_twice_is_one_node() {
    let p = parsed("input x[3]\nparam W[3,3]\ny = W @ x + x\noutput y");
    let x = p.variable_node(0).unwrap_or(usize::MAX);
    let w = p.variable_node(1).unwrap_or(usize::MAX);
    let product = p.nodes.iter().position(|op| *op == Op::MatVec(w, x));
    let Some(product) = product else {
        panic!("no W @ x in {:?}", p.nodes);
    };
    assert_eq!(
        p.nodes.get(p.output),
        Some(&Op::Binary(BinaryOp::Add, product, x))
    );
    let readers_of_x = p
        .nodes
        .iter()
        .filter(|op| op.operands().any(|o| o == x))
        .count();
    assert_eq!(readers_of_x, 2);
    assert_eq!(p.nodes.len(), 4);

    // Identical subexpressions are shared too, and unused lines are dropped.
    let p = parsed("input x[3]\na = sin(x)\nb = sin(x)\nunused = exp(x)\noutput a * b");
    assert_eq!(p.nodes.len(), 3);
    assert_eq!(p.nodes.get(2), Some(&Op::Binary(BinaryOp::Mul, 1, 1)));
    assert_eq!(p.names.get(1), Some(&Some("a".to_owned())));
    // A variable the output ignores has no node.
    let p = parsed("input x[3] z\noutput x");
    assert_eq!(p.variable_node(1), None);
    assert_eq!(p.nodes, vec![Op::Variable(0)]);
}

#[test]
fn scalars_meet_every_element() {
    for (text, op) in [
        ("x + z", BinaryOp::Add),
        ("x * z", BinaryOp::Mul),
        ("z - x", BinaryOp::Sub),
    ] {
        let p = parsed(&format!("input x[4]\ninput z\noutput {text}"));
        assert_eq!(p.shapes.get(p.output), Some(&Shape::Vector(4)), "{text}");
        assert!(matches!(p.nodes.get(p.output), Some(Op::Binary(o, ..)) if *o == op));
    }
    let p = parsed("input x[4]\noutput -x / 2 + 1");
    assert!(p.nodes.contains(&Op::Constant(-1.0)));
    assert_eq!(p.shapes.get(p.output), Some(&Shape::Vector(4)));
    // `x^c` is the unary power; operations on constants fold.
    let p = parsed("input x[4]\noutput x^(1 + 1)");
    assert_eq!(
        p.nodes.get(p.output),
        Some(&Op::Unary(UnaryOp::Pow { exponent: 2.0 }, 0))
    );
}

#[test]
fn reductions() {
    let p = parsed("input x[5]\noutput sum(x)");
    assert_eq!(
        p.nodes,
        vec![Op::Variable(0), Op::Reduce(ReduceOp::Sum, 0, None)]
    );
    assert_eq!(p.shapes, vec![Shape::Vector(5), Shape::Scalar]);
    let p = parsed("input x[5]\noutput mean(x^2)");
    assert!(matches!(
        p.nodes.get(p.output),
        Some(Op::Reduce(ReduceOp::Mean, _, None))
    ));
    let p = parsed("input w[5] x[5]\noutput dot(w, x)");
    assert_eq!(
        p.nodes,
        vec![
            Op::Variable(0),
            Op::Variable(1),
            Op::Reduce(ReduceOp::Dot, 0, Some(1))
        ]
    );
    assert_eq!(p.shapes.get(2), Some(&Shape::Scalar));
    // Functions of the element-wise language apply element-wise.
    let p = parsed("input x[5]\ny = leaky_relu(x, 0.2) + elu(x) + max(x, 0) + pow(x, x)\noutput y");
    assert!(
        p.nodes
            .contains(&Op::Unary(UnaryOp::LeakyRelu { alpha: 0.2 }, 0))
    );
    assert!(p.nodes.contains(&Op::Unary(UnaryOp::Elu { alpha: 1.0 }, 0)));
    assert!(p.nodes.contains(&Op::Binary(BinaryOp::Pow, 0, 0)));
}

#[test]
fn a_shape_mismatch_names_both_shapes() {
    let text = "input x[32]\nparam W1[128,64]\ny = W1 @ x\noutput y";
    assert_eq!(
        parse_error(text).to_string(),
        "`W1 @ x`: W1 is [128,64] but x is [32]\n\
         line 3 | y = W1 @ x\n       \
         |     ^^^^^^\n\
         help: `@` needs a matrix [m,n] and a vector [n]"
    );
    assert_eq!(
        parse_error("input a[3] b[4]\noutput sin(a) + b").to_string(),
        "`sin(a) + b`: sin(a) is [3] but b is [4]\n\
         line 2 | output sin(a) + b\n       \
         |        ^^^^^^^^^^\n\
         help: element-wise operations need equal shapes, or a scalar on one side"
    );
}

#[test]
fn errors_point_at_the_offending_text() {
    let some = |s: &str| Some(s.to_owned());
    let cases: Vec<(&str, &str, &str, Option<String>)> = vec![
        (
            "input x[3]\ny = sigmoid(xx)\noutput y",
            "`xx` is not declared",
            "xx",
            some("did you mean `x`?"),
        ),
        (
            "input x\noutput x + rate",
            "`rate` is not declared",
            "rate",
            some("declare it: `input rate[n]` or `param rate[n]` (`input rate` for a scalar)"),
        ),
        (
            "input x[3]\ny = x",
            "the program has no `output`",
            "",
            some("add a line `output NAME` naming the result"),
        ),
        (
            "input x[3]\nparam x[3]\noutput x",
            "`x` is declared twice",
            "x",
            some("it is first declared on line 1"),
        ),
        (
            "input x[3]\nh = x\nh = 2x\noutput h",
            "`h` is assigned twice",
            "h",
            some("it is first assigned on line 2; each name is assigned once"),
        ),
        (
            "input x[3]\nx = 2x\noutput x",
            "`x` is declared as an input on line 1; an assignment cannot redefine it",
            "x",
            some("choose another name"),
        ),
        (
            "input x[3]\na = b + 1\nb = x\noutput a",
            "`b` is used before it is assigned",
            "b",
            some("it is assigned on line 3; assign it before this line"),
        ),
        (
            "input x[3]\noutput x\noutput x",
            "a program has exactly one `output`",
            "output",
            some("the first is on line 2"),
        ),
        (
            "input X[3,4]\noutput X @ X",
            "`X @ X`: X is [3,4] but X is [3,4]",
            "X @ X",
            some("`@` needs the left side's columns to match the right side's rows"),
        ),
        (
            "param W[3,4]\noutput W + 1",
            "`W` is a param matrix [3,4]; a param matrix may only be multiplied with `@`",
            "W",
            some("multiply it: `W @ x`, `x @ W`, `transpose(W) @ x`, `W @ A`, `A @ W`"),
        ),
        (
            "input x[3] y[2]\noutput x @ y",
            "`x @ y`: x is [3] and y is [2]",
            "x @ y",
            some(
                "`@` multiplies matrices and vectors; for two vectors of one length it is their dot product, and a scalar multiplies with `*`",
            ),
        ),
        (
            "param A[2,3] B[3,4]\ninput x[4]\noutput A @ B @ x",
            "`A @ B`: the right side of `@` must be a vector, but B is a matrix [3,4]",
            "A @ B",
            some("products of two param matrices are not supported; write `A @ (B @ x)`"),
        ),
        (
            "param W[2,3]\ninput s\noutput W @ s",
            "`W @ s`: W is [2,3] but s is scalar",
            "W @ s",
            some("`@` needs a matrix [m,n] and a vector [n]"),
        ),
        (
            "input s\noutput sum(s)",
            "`sum` needs a vector, but s is scalar",
            "s",
            some("`sum` reduces a vector to a scalar"),
        ),
        (
            "input a[3] b[4]\noutput dot(a, b)",
            "`dot(a, b)`: a is [3] but b is [4]",
            "dot(a, b)",
            some("`dot` needs two vectors of one length"),
        ),
        (
            "input a[3] s\noutput dot(a, s)",
            "`dot(a, s)`: `dot` needs two vectors, but s is scalar",
            "dot(a, s)",
            some("multiply by a scalar with `*`"),
        ),
        (
            "input x[3]\noutput sigmod(x)",
            "unknown function `sigmod`",
            "sigmod",
            some("did you mean `sigmoid`?"),
        ),
        (
            "input x[3]\noutput dot(x)",
            "`dot` takes two arguments, got 1",
            "dot(x)",
            None,
        ),
        (
            "input x[3]\noutput leaky_relu(x, x)",
            "the slope of `leaky_relu` must be a constant",
            "x",
            None,
        ),
        (
            "input x[0]\noutput x",
            "a size must be a whole number from 1 to 1073741824",
            "0",
            None,
        ),
        (
            "input x[2.5]\noutput x",
            "a size must be a whole number from 1 to 1073741824",
            "2.5",
            None,
        ),
        (
            "input x[3\noutput x",
            "expected `,` or `]`, found line break",
            "\n",
            some("a vector is `x[n]`, a matrix `W[m,n]`"),
        ),
        (
            "input x(3)\noutput x",
            "expected `[`, another name or the end of the line, found `(`",
            "(",
            some("sizes go in square brackets: `x[3]`, `W[2,3]`"),
        ),
        (
            "input\noutput 1",
            "expected a name after `input`",
            "\n",
            some("declare like `input x[64]`, `input W[128,64]`, or `input t` for a scalar"),
        ),
        (
            "inpt x[3]\noutput x",
            "expected `input`, `param`, `output` or `name = expression`, found name `inpt`",
            "inpt",
            some("did you mean `input`?"),
        ),
        (
            "input sum[3]\noutput 1",
            "`sum` is a function",
            "sum",
            some("choose another name"),
        ),
        (
            "input x\noutput x )",
            "unexpected `)`",
            ")",
            some("this `)` has no matching `(`"),
        ),
        (
            "input x\noutput",
            "expected a name or an expression after `output`",
            "output",
            some("name the result: `output y`"),
        ),
        (
            "input x\ny = exp * x\noutput y",
            "`exp` is a function, not a variable",
            "exp",
            some("call it: exp(x)"),
        ),
        (
            "input x\ny = h\nh = y\noutput h",
            "`h` is used before it is assigned",
            "h",
            some("it is assigned on line 3; assign it before this line"),
        ),
        (
            "input x\nh = h + x\noutput h",
            "`h` is used before it is assigned",
            "h",
            some("it is assigned on line 2; assign it before this line"),
        ),
    ];
    for (text, message, under, help) in cases {
        assert_eq!(
            error_parts(text),
            (message.to_owned(), under.to_owned(), help),
            "{text:?}"
        );
    }
}

#[test]
fn errors_render_with_line_numbers() {
    assert_eq!(
        parse_error("input x[3]\ny = sigmoid(xx)\noutput y").to_string(),
        "`xx` is not declared\nline 2 | y = sigmoid(xx)\n       |             ^^\nhelp: did you mean `x`?"
    );
}

#[test]
fn graphs_reject_matrix_products() {
    let Err(Error::Parse(e)) = Graph::parse("sin(W @ x)", InputOrder::FirstAppearance) else {
        panic!("`@` lowered into a graph");
    };
    assert_eq!(e.message, "`W @ x`: W is scalar and x is scalar");
    assert!(
        e.help
            .as_deref()
            .is_some_and(|h| h.contains("param W[m,n]")),
        "{e}"
    );
    assert_eq!(e.span.start..e.span.end, 4..9);
    // Lists and reductions of scalars are programs, not element-wise
    // functions: the graph says so rather than lowering them.
    for text in ["sum([x, y])", "[x, y][0] + 1", "dot([x], [y])"] {
        let Err(Error::InvalidArgument(m)) = Graph::parse(text, InputOrder::FirstAppearance) else {
            panic!("`{text}` became a graph");
        };
        assert!(m.contains("not element-wise"), "{m}");
    }
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * (1.0 + a.abs().max(b.abs()))
}

fn assert_close(actual: &[f64], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            close(*a, *e, tolerance),
            "{what}[{i}]: {a} vs {e}\n{actual:?}\n{expected:?}"
        );
    }
}

fn output_of(p: &Program, values: &[&[f64]]) -> Vec<f64> {
    let forward = p.forward(values).unwrap_or_else(|e| panic!("{e}"));
    forward.get(p.output).cloned().unwrap_or_default()
}

#[test]
fn forward_by_hand() {
    let p = parsed("input x[2]\nparam W[2,2] b[2]\nh = relu(W @ x + b)\noutput h");
    let (x, w, b) = ([1.0, 2.0], [1.0, -1.0, 0.5, 2.0], [0.25, -10.0]);
    // W x = [1 - 2, 0.5 + 4] = [-1, 4.5]; + b = [-0.75, -5.5]; relu = [0, 0].
    assert_eq!(output_of(&p, &[&x, &w, &b]), vec![0.0, 0.0]);
    let b = [2.0, 1.0];
    assert_eq!(output_of(&p, &[&x, &w, &b]), vec![1.0, 5.5]);

    let p = parsed("input x[3] z\noutput sum(x * z) + mean(x) + dot(x, x)");
    // sum = 2 (1+2+3) = 12, mean = 2, dot = 14.
    assert_eq!(output_of(&p, &[&[1.0, 2.0, 3.0], &[2.0]]), vec![28.0]);

    // A scaled matrix scales the product: -W @ x, 2W @ x, W / 4 @ x.
    let p = parsed("input x[2]\nparam W[1,2]\noutput -W @ x + 2W @ x + W / 4 @ x");
    assert_eq!(output_of(&p, &[&[3.0, 1.0], &[1.0, 2.0]]), vec![5.0 * 1.25]);
    let p = parsed("input x[2]\nparam W[1,2]\noutput --W @ x");
    assert!(p.nodes.iter().all(|op| !matches!(op, Op::Binary(..))));

    let p = parsed("2x + 1");
    let forward = p.forward(&[&[3.0]]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forward.len(), p.nodes.len());
    assert_eq!(forward.get(p.output), Some(&vec![7.0]));
}

#[test]
fn wrong_values_are_errors() {
    let p = parsed("input x[3]\nparam W[2,3]\noutput W @ x");
    assert!(matches!(p.forward(&[&[1.0; 3]]), Err(Error::Shape(_))));
    let Err(Error::Shape(message)) = p.forward(&[&[1.0; 2], &[1.0; 6]]) else {
        panic!("a short vector was accepted");
    };
    assert_eq!(message, "input `x` is [3] and needs 3 values, got 2");
    assert!(p.jacobian_dense(&[&[1.0; 3], &[1.0; 6]], 7).is_err());
    // Hand-made programs are checked rather than trusted.
    let mut broken = p.clone();
    broken.nodes.swap(0, 2);
    assert!(broken.forward(&[&[1.0; 3], &[1.0; 6]]).is_err());
    let mut broken = p.clone();
    broken.output = 99;
    assert!(broken.jacobian_dense(&[&[1.0; 3], &[1.0; 6]], 0).is_err());
    let mut broken = p;
    broken.shapes.pop();
    assert!(broken.check().is_err());
}

/// The seed for this run: CHAINRULE_SEED, or one from the clock, printed
/// so that a failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("CHAINRULE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{test}: CHAINRULE_SEED={seed}");
    seed
}

/// Random values for every variable: magnitudes in [0.5, 2] with either
/// sign, away from the poles of `/` and `ln`.
fn random_values(p: &Program, rng: &mut StdRng) -> Vec<Vec<f64>> {
    p.variables
        .iter()
        .map(|v| {
            (0..v.shape.size())
                .map(|_| {
                    let magnitude = rng.random_range(0.5..2.0);
                    if rng.random_bool(0.5) {
                        magnitude
                    } else {
                        -magnitude
                    }
                })
                .collect()
        })
        .collect()
}

/// d output / d variable `wrt` by central differences, row-major.
fn finite_differences(p: &Program, values: &[Vec<f64>], wrt: usize) -> Vec<f64> {
    let cols = values.get(wrt).map_or(0, Vec::len);
    let rows = p.shapes.get(p.output).map_or(0, Shape::size);
    let mut jacobian = vec![0.0; rows * cols];
    for j in 0..cols {
        let h = 1e-6 * values[wrt][j].abs().max(1.0);
        let at = |delta: f64| {
            let mut shifted = values.to_vec();
            shifted[wrt][j] += delta;
            let slices: Vec<&[f64]> = shifted.iter().map(Vec::as_slice).collect();
            output_of(p, &slices)
        };
        let (plus, minus) = (at(h), at(-h));
        for i in 0..rows {
            jacobian[i * cols + j] = (plus[i] - minus[i]) / (2.0 * h);
        }
    }
    jacobian
}

/// Checks `jacobian_dense` against finite differences for every variable
/// of `text` at a few random points, and returns the last Jacobian for each
/// variable named in `wrt`, with the values it was taken at.
fn check_against_finite_differences(text: &str, rng: &mut StdRng) -> (Program, Vec<Vec<f64>>) {
    let p = parsed(text);
    let mut values = Vec::new();
    for _ in 0..3 {
        values = random_values(&p, rng);
        let slices: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
        for wrt in 0..p.variables.len() {
            let exact = p
                .jacobian_dense(&slices, wrt)
                .unwrap_or_else(|e| panic!("{e}"));
            let numeric = finite_differences(&p, &values, wrt);
            let name = p.variables.get(wrt).map_or("?", |v| v.name.as_str());
            assert_close(&exact, &numeric, 1e-6, &format!("{text:?} d/d{name}"));
        }
    }
    (p, values)
}

fn jacobian(p: &Program, values: &[Vec<f64>], name: &str) -> Vec<f64> {
    let slices: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
    let wrt = p.variable(name).unwrap_or(usize::MAX);
    p.jacobian_dense(&slices, wrt)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn diagonal(entries: &[f64]) -> Vec<f64> {
    let n = entries.len();
    let mut matrix = vec![0.0; n * n];
    for (i, &e) in entries.iter().enumerate() {
        matrix[i * n + i] = e;
    }
    matrix
}

#[test]
fn jacobians_of_the_two_layer_network() {
    let mut rng = StdRng::seed_from_u64(seed("two layers"));
    let text = "input x[5]\nparam W1[7,5] b1[7] W2[3,7] b2[3]\nh = sigmoid(W1 @ x + b1)\ny = tanh(W2 @ h + b2)\noutput y";
    let (p, values) = check_against_finite_differences(text, &mut rng);
    assert_eq!(jacobian(&p, &values, "x").len(), 3 * 5);
    assert_eq!(jacobian(&p, &values, "W1").len(), 3 * 35);
}

#[test]
fn jacobians_of_element_wise_operations_are_diagonal() {
    let mut rng = StdRng::seed_from_u64(seed("element-wise"));
    for op in ["+", "-", "*", "/"] {
        let text = format!("input w[4] x[4]\noutput w {op} x");
        let (p, v) = check_against_finite_differences(&text, &mut rng);
        let (w, x) = (&v[0], &v[1]);
        let (dw, dx): (Vec<f64>, Vec<f64>) = (0..4)
            .map(|i| match op {
                "+" => (1.0, 1.0),
                "-" => (1.0, -1.0),
                "*" => (x[i], w[i]),
                _ => (1.0 / x[i], -w[i] / (x[i] * x[i])),
            })
            .unzip();
        assert_close(&jacobian(&p, &v, "w"), &diagonal(&dw), 1e-12, &text);
        assert_close(&jacobian(&p, &v, "x"), &diagonal(&dx), 1e-12, &text);
    }
}

#[test]
fn jacobians_with_scalar_expansion() {
    let mut rng = StdRng::seed_from_u64(seed("scalar expansion"));
    let (p, v) = check_against_finite_differences("input x[4] z\noutput x + z", &mut rng);
    assert_close(&jacobian(&p, &v, "x"), &diagonal(&[1.0; 4]), 0.0, "x + z");
    assert_close(&jacobian(&p, &v, "z"), &[1.0; 4], 0.0, "x + z");

    let (p, v) = check_against_finite_differences("input x[4] z\noutput x * z", &mut rng);
    let z = v[1][0];
    assert_close(&jacobian(&p, &v, "x"), &diagonal(&[z; 4]), 1e-15, "x * z");
    // d(x z)/dz is the column x.
    assert_close(&jacobian(&p, &v, "z"), &v[0], 1e-15, "x * z");
}

#[test]
fn jacobians_of_reductions() {
    let mut rng = StdRng::seed_from_u64(seed("reductions"));
    let (p, v) = check_against_finite_differences("input x[4]\noutput sum(x)", &mut rng);
    assert_close(&jacobian(&p, &v, "x"), &[1.0; 4], 0.0, "sum(x)");

    let (p, v) = check_against_finite_differences("input x[4]\noutput mean(x)", &mut rng);
    assert_close(&jacobian(&p, &v, "x"), &[0.25; 4], 0.0, "mean(x)");

    let (p, v) = check_against_finite_differences("input x[4] z\noutput sum(x * z)", &mut rng);
    let z = v[1][0];
    let sum: f64 = v[0].iter().sum();
    assert_close(&jacobian(&p, &v, "x"), &[z; 4], 1e-15, "sum(x * z)");
    assert_close(&jacobian(&p, &v, "z"), &[sum], 1e-12, "sum(x * z)");

    // d(w . x)/dx = w^T, a row.
    let (p, v) = check_against_finite_differences("input w[4] x[4]\noutput dot(w, x)", &mut rng);
    assert_close(&jacobian(&p, &v, "x"), &v[0], 1e-15, "dot(w, x)");
    assert_close(&jacobian(&p, &v, "w"), &v[1], 1e-15, "dot(w, x)");

    check_against_finite_differences("input x[4]\noutput dot(x, x) * sum(exp(x))", &mut rng);
    check_against_finite_differences(
        "input x[3] z\nparam W[2,3]\noutput -W @ (x * z) / z + 0.5W @ x^2",
        &mut rng,
    );
}

#[test]
fn parr_and_howard_vector_chain_rule_example() {
    // y = [ln(x^2), sin(3x)] over a scalar x: dy/dx = [2/x, 3 cos(3x)].
    let mut rng = StdRng::seed_from_u64(seed("Parr & Howard"));
    let (p, v) = check_against_finite_differences("ln(x^2)", &mut rng);
    let x = v[0][0];
    assert_close(&jacobian(&p, &v, "x"), &[2.0 / x], 1e-12, "ln(x^2)");
    let (p, v) = check_against_finite_differences("sin(3x)", &mut rng);
    let x = v[0][0];
    assert_close(
        &jacobian(&p, &v, "x"),
        &[3.0 * (3.0 * x).cos()],
        1e-12,
        "sin(3x)",
    );
}

#[test]
fn a_constant_output_has_a_zero_jacobian() {
    let p = parsed("input x[2]\noutput 3");
    assert_eq!(p.jacobian_dense(&[&[1.0, 2.0]], 0), Ok(vec![0.0, 0.0]));
    let p = parsed("input x[2] z\noutput x");
    assert_eq!(
        p.jacobian_dense(&[&[1.0, 2.0], &[5.0]], 1),
        Ok(vec![0.0, 0.0])
    );
}

/// Strings of tokens with no grammar, mostly ones programs know.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        6 => prop::sample::select(&["x", "W", "b", "h", "y", "1", "3", "2.5", "0"][..]),
        4 => prop::sample::select(&["input ", "param ", "output ", " = ", "\n"][..]),
        4 => prop::sample::select(&["+", "-", "*", "/", "^", "@"][..]),
        4 => prop::sample::select(&["(", ")", ",", "[", "]", " "][..]),
        2 => prop::sample::select(&["sum", "mean", "dot", "sigmoid", "leaky_relu", "pow", "pi"][..]),
        1 => prop::sample::select(&["#", "é", "1e999", "\t", "\r\n", "1e40", "[3,4]", "[3]"][..]),
    ];
    prop::collection::vec(token, 0..48).prop_map(|tokens| tokens.concat())
}

/// Parses `text`; a program must pass its own check and evaluate without
/// panicking, an error must point inside the text.
fn parse_and_run(text: &str) -> Result<(), TestCaseError> {
    match Program::parse(text) {
        Ok(p) => {
            prop_assert_eq!(p.check(), Ok(()), "{:?}", text);
            // Sizes from the soup can reach billions; evaluate the small.
            if p.variables.iter().map(|v| v.shape.size()).sum::<usize>() > 10_000 {
                return Ok(());
            }
            let values: Vec<Vec<f64>> = p
                .variables
                .iter()
                .map(|v| vec![0.5; v.shape.size()])
                .collect();
            let slices: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
            prop_assert!(p.forward(&slices).is_ok(), "{:?}", text);
            for wrt in 0..p.variables.len() {
                prop_assert!(p.jacobian_dense(&slices, wrt).is_ok(), "{:?}", text);
            }
        }
        Err(Error::Parse(e)) => {
            prop_assert!(
                e.span.start <= e.span.end && e.span.end <= text.len(),
                "{:?}",
                text
            );
            prop_assert!(!e.to_string().is_empty());
        }
        Err(other) => prop_assert!(false, "{:?}: {}", text, other),
    }
    Ok(())
}

/// Well-formed expressions over the variables of [`PRELUDE`] and the names
/// that random lines assign, so that cases reach the shape checks, the
/// lowering and the evaluation rather than stopping at the syntax.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        12 => prop::sample::select(&["x", "z", "b", "1", "2.5", "pi", "3x"][..]),
        1 => prop::sample::select(&["h", "k"][..]),
    ]
    .prop_map(str::to_owned);
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(&[" + ", " - ", " * ", " / ", "^"][..]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a}{op}{b})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("(W @ {a})")),
            inner.clone().prop_map(|a| format!("leaky_relu({a}, 0.1)")),
            (
                prop::sample::select(&["sigmoid", "exp", "tanh", "relu", "sum", "mean", "ln"][..]),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            (
                prop::sample::select(&["dot", "max", "min", "pow"][..]),
                inner.clone(),
                inner
            )
                .prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
        ]
    })
}

/// The declarations every generated program starts with.
const PRELUDE: &str = "input x[3] z\nparam W[3,3] b[3]\n";

/// Programs of a few assignments and an output, mostly well-formed.
fn program_text() -> impl Strategy<Value = String> {
    let output = prop_oneof![
        prop::sample::select(&["h", "k", "x"][..]).prop_map(str::to_owned),
        expression(),
    ];
    // `h` then `k`, so that most uses of them follow their assignment.
    (prop::collection::vec(expression(), 0..3), output).prop_map(|(lines, output)| {
        let lines: String = ["h", "k"]
            .iter()
            .zip(&lines)
            .map(|(name, expr)| format!("{name} = {expr}\n"))
            .collect();
        format!("{PRELUDE}{lines}output {output}\n")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_programs_never_panic(text in program_text()) {
        parse_and_run(&text)?;
    }

    #[test]
    fn random_strings_never_panic(text in "\\PC{0,60}") {
        parse_and_run(&text)?;
    }

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        parse_and_run(&text)?;
    }

    #[test]
    fn declared_soup_never_panics(body in token_soup()) {
        parse_and_run(&format!("{PRELUDE}{body}\noutput y"))?;
    }
}

/// The fuzz above is only worth its cases if many of them get past the
/// syntax into lowering and evaluation.
#[test]
fn generated_programs_often_parse() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = program_text();
    let mut parsed = 0;
    for _ in 0..1000 {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        parsed += usize::from(Program::parse(&tree.current()).is_ok());
    }
    println!("{parsed} of 1000 generated programs parsed");
    assert!(parsed >= 200, "{parsed} of 1000 generated programs parsed");
}

#[test]
fn deep_nesting_parses_on_a_small_stack() {
    // The expression parser allows 256 levels; lowering recurses once per
    // level, so it must stay frugal even in a debug build.
    let depth = 255;
    let texts = [
        format!(
            "input x[3]\noutput {}x{}",
            "sin(".repeat(depth),
            ")".repeat(depth)
        ),
        format!("input x[3]\noutput {}x", "-".repeat(depth)),
        format!("input x[3]\noutput {}", vec!["x"; depth].join(" + ")),
        format!(
            "input x[3]\nparam W[3,3]\noutput {}x{}",
            "W @ (".repeat(depth / 2),
            ")".repeat(depth / 2)
        ),
        format!(
            "input x[3]\noutput {}x{}",
            "max(x, ".repeat(depth),
            ")".repeat(depth)
        ),
    ];
    let worker = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            texts
                .iter()
                .map(|text| Program::parse(text).map(|p| p.nodes.len()))
                .collect::<Vec<_>>()
        });
    let results = worker.ok().and_then(|worker| worker.join().ok());
    let Some(results) = results else {
        panic!("the parser overflowed its stack");
    };
    for result in results {
        assert!(result.is_ok(), "{result:?}");
    }
}

/// A program built by hand is checked before use: two nodes for one
/// variable, a matrix input, or an empty vector are errors, not wrong answers.
#[test]
fn hand_built_programs_that_would_mislead_are_refused() {
    let base = Program::parse("input x[2]\ny = x + x\noutput y\n").expect("parses");
    let mut twice = base.clone();
    // Read x through two separate nodes: planners find a variable by its node.
    twice.nodes = vec![
        Op::Variable(0),
        Op::Variable(0),
        Op::Binary(BinaryOp::Add, 0, 1),
    ];
    twice.shapes = vec![Shape::Vector(2); 3];
    twice.names = vec![None, None, Some("y".into())];
    twice.output = 2;
    assert!(twice.check().is_err());
    let mut empty = base.clone();
    empty.variables[0].shape = Shape::Vector(0);
    assert!(empty.check().is_err());
    let mut matrix_input = base;
    // A per-sample matrix is read as its elements: [2,1] as [2] is fine,
    // [3,1] as [2] is not.
    matrix_input.variables[0].shape = Shape::Matrix(2, 1);
    assert!(matrix_input.check().is_ok());
    matrix_input.variables[0].shape = Shape::Matrix(3, 1);
    assert!(matrix_input.check().is_err());
}

/// Every vector function `chainrule ops` lists is one the language lowers.
#[test]
fn every_listed_vector_function_lowers() {
    for (call, _) in chainrule::program::VECTOR_FUNCTIONS {
        let name = call.split('(').next().unwrap_or(call);
        let text = match call.matches(',').count() {
            0 if name == "transpose" => format!("input A[2,3]\ny = {name}(A)\noutput y"),
            0 => format!("input x[3]\ny = {name}(x)\noutput y"),
            _ => format!("input a[3]  b[3]\ny = {name}(a, b)\noutput y"),
        };
        Program::parse(&text).unwrap_or_else(|e| panic!("{call}: {e}"));
    }
}

/// A program of params alone has no batch: the error says so, rather than
/// asking for samples of inputs it does not have.
#[test]
fn a_program_without_inputs_says_so() {
    let program = Program::parse("param w[3]\ny = sum(w * w)\noutput y").expect("parses");
    let w = [1.0f32, 2.0, 3.0];
    let backend = chainrule::Backend::Cpu(chainrule::CpuBackend);
    let error = backend
        .values(&program, &[("w", &w)])
        .expect_err("no batch");
    assert!(
        error.to_string().contains("the program has no input"),
        "{error}"
    );
}

/// A line equal to a variable goes by the variable's name, which `line`
/// and `with_output` take.
#[test]
fn a_variable_is_a_line_by_its_name() {
    let program = Program::parse("input s\nparam w\na = s\ny = a * w\noutput y").expect("parses");
    let s = program.line("s").expect("s is a line");
    assert_eq!(Some(s), program.variable_node(0));
    let line = program.with_output("s").expect("its program");
    assert_eq!(line.output_name, "s");
    assert!(program.line("a").is_none(), "a goes by s");
}

/// cross_entropy of scalars says the logits must be a vector; of vectors
/// of two lengths, names both.
#[test]
fn cross_entropy_shape_errors_say_what_is_wrong() {
    let error = Program::parse("input x  y\nl = cross_entropy(x, y)\noutput l")
        .expect_err("scalars")
        .to_string();
    assert!(
        error.contains("`cross_entropy` needs vectors, but the logits x are scalar"),
        "{error}"
    );
    let error = Program::parse("input x[3]  y[2]\nl = cross_entropy(x, y)\noutput l")
        .expect_err("two lengths")
        .to_string();
    assert!(
        error.contains("logits x are [3] but targets y are [2]"),
        "{error}"
    );
}
