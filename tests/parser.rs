//! Property tests of the expression parser: no input makes it panic, its
//! errors point inside the source, and printing a tree (with every
//! parenthesis or with as few as possible) and parsing the text gives the
//! same tree back.

use chainrule::lang::{BinOp, Expr, ExprKind, ParseError, Span, parse_expression};
use proptest::prelude::*;

/// An expression's tree without spans, so that trees parsed from different
/// texts can be compared.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Number(f64),
    Name(String),
    Neg(Box<Shape>),
    Binary(BinOp, Box<Shape>, Box<Shape>),
    Call(String, Vec<Shape>),
}

fn shape(expr: &Expr) -> Shape {
    match &expr.kind {
        ExprKind::Number(value) => Shape::Number(*value),
        ExprKind::Name(name) => Shape::Name(name.clone()),
        ExprKind::Neg(operand) => Shape::Neg(Box::new(shape(operand))),
        ExprKind::Binary { op, lhs, rhs } => {
            Shape::Binary(*op, Box::new(shape(lhs)), Box::new(shape(rhs)))
        }
        ExprKind::Call { name, args, .. } => {
            Shape::Call(name.clone(), args.iter().map(shape).collect())
        }
        ExprKind::Index { .. } | ExprKind::List(_) => {
            panic!("the generated expressions have no indices or lists")
        }
    }
}

/// Every subexpression wrapped in parentheses, so that precedence plays no
/// part in reading it back.
fn fully_parenthesized(shape: &Shape) -> String {
    match shape {
        // `{}` prints the shortest digits that read back to the same f64,
        // and never in exponent form.
        Shape::Number(value) => format!("{value}"),
        Shape::Name(name) => name.clone(),
        Shape::Neg(operand) => format!("(-{})", fully_parenthesized(operand)),
        Shape::Binary(op, lhs, rhs) => format!(
            "({} {} {})",
            fully_parenthesized(lhs),
            op.symbol(),
            fully_parenthesized(rhs)
        ),
        Shape::Call(name, args) => {
            let args: Vec<String> = args.iter().map(fully_parenthesized).collect();
            format!("{name}({})", args.join(", "))
        }
    }
}

/// How tightly a node binds: a child that binds more loosely than its
/// context needs parentheses.
fn binding(shape: &Shape) -> u8 {
    match shape {
        Shape::Binary(BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, ..) => 0,
        Shape::Binary(BinOp::Add | BinOp::Sub, ..) => 1,
        Shape::Binary(BinOp::Mul | BinOp::Div | BinOp::MatMul, ..) => 2,
        Shape::Neg(_) => 3,
        Shape::Binary(BinOp::Pow, ..) => 4,
        Shape::Number(_) | Shape::Name(_) | Shape::Call(..) => 5,
    }
}

/// The text with only the parentheses that precedence and associativity
/// require.
fn minimally_parenthesized(shape: &Shape) -> String {
    let wrap = |child: &Shape, needed: bool| {
        let text = minimally_parenthesized(child);
        if needed { format!("({text})") } else { text }
    };
    match shape {
        Shape::Number(value) => format!("{value}"),
        Shape::Name(name) => name.clone(),
        Shape::Neg(operand) => format!("-{}", wrap(operand, binding(operand) < 3)),
        Shape::Binary(op, lhs, rhs) => {
            let own = binding(shape);
            let (lhs_needs, rhs_needs) = match op {
                // Right-associative, and a minus may start an exponent but
                // a negated base needs parentheses: (-x)^2 is not -x^2.
                BinOp::Pow => (binding(lhs) <= own, binding(rhs) < 3),
                // Comparisons do not chain: a comparison operand is bracketed.
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    (binding(lhs) <= own, binding(rhs) <= own)
                }
                // Left-associative: a - (b - c) keeps its parentheses.
                _ => (binding(lhs) < own, binding(rhs) <= own),
            };
            format!(
                "{}{}{}",
                wrap(lhs, lhs_needs),
                op.symbol(),
                wrap(rhs, rhs_needs)
            )
        }
        Shape::Call(name, args) => {
            let args: Vec<String> = args.iter().map(minimally_parenthesized).collect();
            format!("{name}({})", args.join(","))
        }
    }
}

fn within(source: &str, span: Span) -> bool {
    span.start <= span.end
        && span.end <= source.len()
        && source.is_char_boundary(span.start)
        && source.is_char_boundary(span.end)
}

fn check_error(source: &str, error: &ParseError) -> Result<(), TestCaseError> {
    prop_assert!(
        within(source, error.span),
        "{:?} outside {source:?}",
        error.span
    );
    prop_assert_eq!(&error.source_text, source);
    let rendered = error.to_string();
    prop_assert!(rendered.starts_with(&error.message));
    prop_assert!(rendered.contains('^'));
    Ok(())
}

/// Every span is non-empty, inside the source, and inside its parent's.
fn check_spans(source: &str, expr: &Expr, parent: Span) -> Result<(), TestCaseError> {
    prop_assert!(within(source, expr.span) && expr.span.start < expr.span.end);
    prop_assert!(parent.start <= expr.span.start && expr.span.end <= parent.end);
    match &expr.kind {
        ExprKind::Number(_) | ExprKind::Name(_) => {}
        ExprKind::Neg(operand) => check_spans(source, operand, expr.span)?,
        ExprKind::Binary { lhs, rhs, .. } => {
            check_spans(source, lhs, expr.span)?;
            check_spans(source, rhs, expr.span)?;
        }
        ExprKind::Call {
            name,
            name_span,
            args,
        } => {
            prop_assert_eq!(
                source.get(name_span.start..name_span.end),
                Some(name.as_str())
            );
            for arg in args {
                check_spans(source, arg, expr.span)?;
            }
        }
        ExprKind::Index { base, .. } => check_spans(source, base, expr.span)?,
        ExprKind::List(items) => {
            for item in items {
                check_spans(source, item, expr.span)?;
            }
        }
    }
    Ok(())
}

/// Parses `source` and checks whichever outcome; returns the tree if any.
fn parse_and_check(source: &str) -> Result<Option<Expr>, TestCaseError> {
    match parse_expression(source) {
        Ok(expr) => {
            check_spans(source, &expr, Span::new(0, source.len()))?;
            Ok(Some(expr))
        }
        Err(error) => {
            check_error(source, &error)?;
            Ok(None)
        }
    }
}

/// Strings of tokens with no grammar, mostly ones the expression parser
/// knows so that its deeper paths are reached more often than with arbitrary
/// strings, and some that only the lexer or the program form knows.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        8 => prop::sample::select(&["x", "y", "1", "2.5e3", ".5", "sin", "exp", "3x"][..]),
        6 => prop::sample::select(&["+", "-", "*", "/", "^"][..]),
        4 => prop::sample::select(&["(", ")", ","][..]),
        3 => prop::sample::select(&[" ", "\n", "#"][..]),
        1 => prop::sample::select(&["@", "=", "[", "]", "é", "π", "1e999", "\t"][..]),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// Number literals in every accepted form.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&["3", "0.5", ".5", "1e-3", "2.5E+4", "7.", "0"][..])
            .prop_map(str::to_owned),
        "[0-9]{1,3}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{1,2})?",
        "\\.[0-9]{1,3}",
    ]
}

fn name_text() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,4}"
}

/// Well-formed expressions written loosely, as people do: any spacing,
/// redundant parentheses, implicit products, a trailing comment. Built as
/// text rather than as trees, so that they reach forms the printers above
/// never produce.
fn loose_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![number_text(), name_text()];
    let tree = leaf.prop_recursive(5, 32, 3, |inner| {
        let space = "[ \t]{0,2}";
        prop_oneof![
            (
                inner.clone(),
                space,
                prop::sample::select(&["+", "-", "*", "/", "^"][..]),
                space,
                inner.clone()
            )
                .prop_map(|(lhs, s1, op, s2, rhs)| format!("{lhs}{s1}{op}{s2}{rhs}")),
            inner.clone().prop_map(|operand| format!("-{operand}")),
            (space, inner.clone(), space).prop_map(|(s1, inner, s2)| format!("({s1}{inner}{s2})")),
            // A name starting with e or E would read as the number's exponent.
            (number_text(), "[a-df-zA-DF-Z_][a-zA-Z0-9_]{0,4}")
                .prop_map(|(number, name)| format!("{number}{name}")),
            (number_text(), inner.clone()).prop_map(|(number, inner)| format!("{number}({inner})")),
            (name_text(), prop::collection::vec(inner, 0..3))
                .prop_map(|(name, args)| format!("{name}({})", args.join(" , "))),
        ]
    });
    (tree, prop::option::of("# [a-z ]{0,8}")).prop_map(|(text, comment)| match comment {
        Some(comment) => format!("{text} {comment}\n"),
        None => text,
    })
}

/// Minimal printing of `expr` (parsed from `source`) reads back the same.
/// Whether the tree has an index or a list, which the printers here do not
/// write (token soup can make `[x]`).
fn has_selection(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::Number(_) | ExprKind::Name(_) => false,
        ExprKind::Neg(operand) => has_selection(operand),
        ExprKind::Binary { lhs, rhs, .. } => has_selection(lhs) || has_selection(rhs),
        ExprKind::Call { args, .. } => args.iter().any(has_selection),
        ExprKind::Index { .. } | ExprKind::List(_) => true,
    }
}

fn check_minimal_round_trip(source: &str, expr: &Expr) -> Result<(), TestCaseError> {
    if has_selection(expr) {
        return Ok(());
    }
    let printed = minimally_parenthesized(&shape(expr));
    let reparsed = parse_expression(&printed)
        .map_err(|e| TestCaseError::fail(format!("{printed:?} from {source:?}:\n{e}")))?;
    prop_assert_eq!(
        shape(&reparsed),
        shape(expr),
        "{:?} from {:?}",
        printed,
        source
    );
    Ok(())
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..1000).prop_map(f64::from),
        0.0..10.0f64,
        (1u32..1000, -20i32..20).prop_map(|(m, e)| f64::from(m) * 10f64.powi(e)),
        prop::num::f64::NORMAL.prop_map(f64::abs),
    ]
}

/// Trees the parser can produce: no negative literals (a minus is `Neg`).
fn shapes() -> impl Strategy<Value = Shape> {
    let leaf = prop_oneof![
        number().prop_map(Shape::Number),
        "[a-zA-Z_][a-zA-Z0-9_]{0,4}".prop_map(Shape::Name),
    ];
    let op = prop::sample::select(vec![
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Pow,
    ]);
    leaf.prop_recursive(6, 48, 3, move |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|operand| Shape::Neg(Box::new(operand))),
            (op.clone(), inner.clone(), inner.clone()).prop_map(|(op, lhs, rhs)| Shape::Binary(
                op,
                Box::new(lhs),
                Box::new(rhs)
            )),
            ("[a-z]{1,5}", prop::collection::vec(inner, 0..4))
                .prop_map(|(name, args)| Shape::Call(name, args)),
        ]
    })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Keep failures on screen rather than writing regression files into
        // the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(6000))]

    #[test]
    fn arbitrary_strings_never_panic(source in any::<String>()) {
        parse_and_check(&source)?;
    }

    #[test]
    fn token_soup_never_panics(source in token_soup()) {
        if let Some(expr) = parse_and_check(&source)? {
            check_minimal_round_trip(&source, &expr)?;
        }
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn fully_parenthesized_trees_parse_back(tree in shapes()) {
        let text = fully_parenthesized(&tree);
        let parsed = parse_expression(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}:\n{e}")))?;
        check_spans(&text, &parsed, Span::new(0, text.len()))?;
        prop_assert_eq!(shape(&parsed), tree, "{:?}", text);
    }

    #[test]
    fn minimally_parenthesized_trees_parse_back(tree in shapes()) {
        let full = fully_parenthesized(&tree);
        let parsed = parse_expression(&full)
            .map_err(|e| TestCaseError::fail(format!("{full:?}:\n{e}")))?;
        let minimal = minimally_parenthesized(&shape(&parsed));
        let reparsed = parse_expression(&minimal)
            .map_err(|e| TestCaseError::fail(format!("{minimal:?}:\n{e}")))?;
        prop_assert_eq!(shape(&reparsed), tree, "{:?}", minimal);
    }

    #[test]
    fn loosely_written_expressions_parse(source in loose_text()) {
        let expr = parse_expression(&source)
            .map_err(|e| TestCaseError::fail(format!("{source:?}:\n{e}")))?;
        check_spans(&source, &expr, Span::new(0, source.len()))?;
        check_minimal_round_trip(&source, &expr)?;
    }
}

/// The minimal printer drops exactly the parentheses the grammar makes
/// redundant; spot-check it so that the round trip above tests the parser
/// rather than agreeing with a wrong printer.
#[test]
fn minimal_printing_examples() {
    for (source, printed) in [
        ("-(x^2)", "-x^2"),
        ("(-x)^2", "(-x)^2"),
        ("2^(-x)", "2^-x"),
        ("x^(y^z)", "x^y^z"),
        ("(x^y)^z", "(x^y)^z"),
        ("(a-b)-c", "a-b-c"),
        ("a-(b-c)", "a-(b-c)"),
        ("a/(b*c)", "a/(b*c)"),
        ("(a/b)*c", "a/b*c"),
        ("9(x+x^2)", "9*(x+x^2)"),
        ("-(a*b)", "-(a*b)"),
        ("(-a)*b", "-a*b"),
        ("f((x), (y+1))", "f(x,y+1)"),
    ] {
        let expr = parse_expression(source).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(minimally_parenthesized(&shape(&expr)), printed, "{source}");
    }
}
