//! Unit tests of the parent module.

use super::*;

/// The tree in prefix notation, ignoring spans: `(+ x (* 3 y))`.
fn sexp(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Number(value) => format!("{value}"),
        ExprKind::Name(name) => name.clone(),
        ExprKind::Neg(operand) => format!("(neg {})", sexp(operand)),
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({} {} {})", op.symbol(), sexp(lhs), sexp(rhs))
        }
        ExprKind::Call { name, args, .. } => {
            let args: String = args.iter().map(|arg| format!(" {}", sexp(arg))).collect();
            format!("({name}:{args})")
        }
        ExprKind::Index {
            base, start, end, ..
        } => match end {
            Some(end) => format!("(slice {} {start} {end})", sexp(base)),
            None => format!("(index {} {start})", sexp(base)),
        },
        ExprKind::List(items) => {
            let items: String = items
                .iter()
                .map(|item| format!(" {}", sexp(item)))
                .collect();
            format!("(list{items})")
        }
    }
}

fn parsed(source: &str) -> String {
    match parse_expression(source) {
        Ok(expr) => sexp(&expr),
        Err(e) => panic!("{source:?} failed to parse:\n{e}"),
    }
}

fn error(source: &str) -> ParseError {
    match parse_expression(source) {
        Ok(expr) => panic!("{source:?} parsed as {}", sexp(&expr)),
        Err(e) => e,
    }
}

#[test]
fn precedence_as_in_mathematics() {
    for (source, tree) in [
        ("-x^2", "(neg (^ x 2))"),
        ("2^-x", "(^ 2 (neg x))"),
        ("x^y^z", "(^ x (^ y z))"),
        ("3x", "(* 3 x)"),
        ("9(x+x^2)", "(* 9 (+ x (^ x 2)))"),
        ("2x^2", "(* 2 (^ x 2))"),
        ("a-b-c", "(- (- a b) c)"),
        ("a/b*c", "(* (/ a b) c)"),
        ("a+b*c", "(+ a (* b c))"),
        ("a*b+c", "(+ (* a b) c)"),
        ("(a+b)*c", "(* (+ a b) c)"),
        ("-a*b", "(* (neg a) b)"),
        ("a*-b", "(* a (neg b))"),
        ("a--b", "(- a (neg b))"),
        ("--x", "(neg (neg x))"),
        ("-x^-y^z", "(neg (^ x (neg (^ y z))))"),
        ("2^-x*3", "(* (^ 2 (neg x)) 3)"),
        ("(-x)^2", "(^ (neg x) 2)"),
        ("x^(y+1)", "(^ x (+ y 1))"),
        ("1/2x", "(* (/ 1 2) x)"),
        ("2^3x", "(* (^ 2 3) x)"),
        ("-3x", "(* (neg 3) x)"),
    ] {
        assert_eq!(parsed(source), tree, "{source}");
    }
}

#[test]
fn matrix_vector_products_bind_like_products() {
    for (source, tree) in [
        ("W1 @ x + b1", "(+ (@ W1 x) b1)"),
        ("W2 @ h", "(@ W2 h)"),
        ("-W @ x", "(@ (neg W) x)"),
        ("b + W @ x", "(+ b (@ W x))"),
        ("A @ B @ x", "(@ (@ A B) x)"),
        ("W @ x * 2", "(* (@ W x) 2)"),
        ("2 * W @ x", "(@ (* 2 W) x)"),
        ("2W @ x", "(@ (* 2 W) x)"),
        ("W @ x^2", "(@ W (^ x 2))"),
        ("W @ -x", "(@ W (neg x))"),
        ("sigmoid(W @ x)", "(sigmoid: (@ W x))"),
    ] {
        assert_eq!(parsed(source), tree, "{source}");
    }
    let source = " W1 @ x + b1";
    let expr = parse_expression(source).unwrap_or_else(|e| panic!("{e}"));
    let ExprKind::Binary { lhs, .. } = &expr.kind else {
        panic!("{}", sexp(&expr));
    };
    assert_eq!(span_text(source, lhs.span), "W1 @ x");
}

#[test]
fn calls() {
    assert_eq!(parsed("sin(x)"), "(sin: x)");
    assert_eq!(parsed("max(x, 0.5*y)"), "(max: x (* 0.5 y))");
    assert_eq!(parsed("f()"), "(f:)");
    assert_eq!(parsed("x(1)"), "(x: 1)");
    assert_eq!(parsed("sin (x)"), "(sin: x)");
    assert_eq!(parsed("-exp(x)^2"), "(neg (^ (exp: x) 2))");
    assert_eq!(parsed("3exp(-x)"), "(* 3 (exp: (neg x)))");
    assert_eq!(parsed("f(g(x), (y))"), "(f: (g: x) y)");
}

#[test]
fn numbers() {
    assert_eq!(
        parsed("0.5 + .5 + 1e-3 + 2.5E+4"),
        "(+ (+ (+ 0.5 0.5) 0.001) 25000)"
    );
    assert_eq!(parsed("2e"), "(* 2 e)");
}

#[test]
fn blank_lines_and_comments_around_the_expression() {
    assert_eq!(parsed("\n\n  x + 1 # the answer\n\n"), "(+ x 1)");
    assert_eq!(parsed("# why\nx\r\n"), "x");
}

fn span_text(source: &str, span: Span) -> &str {
    source.get(span.start..span.end).unwrap_or("<bad span>")
}

#[test]
fn every_span_covers_its_text() {
    let source = " -(a + 2x)^2 * f(b, 3)";
    let expr = parse_expression(source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(span_text(source, expr.span), "-(a + 2x)^2 * f(b, 3)");
    let ExprKind::Binary { lhs, rhs, .. } = &expr.kind else {
        panic!("{}", sexp(&expr));
    };
    assert_eq!(span_text(source, lhs.span), "-(a + 2x)^2");
    assert_eq!(span_text(source, rhs.span), "f(b, 3)");
    let ExprKind::Call {
        name_span, args, ..
    } = &rhs.kind
    else {
        panic!("{}", sexp(rhs));
    };
    assert_eq!(span_text(source, *name_span), "f");
    assert_eq!(span_text(source, args[1].span), "3");
    let ExprKind::Neg(power) = &lhs.kind else {
        panic!("{}", sexp(lhs));
    };
    assert_eq!(span_text(source, power.span), "(a + 2x)^2");
    let ExprKind::Binary { lhs: sum, .. } = &power.kind else {
        panic!("{}", sexp(power));
    };
    // A parenthesized node's own span is its content; its parent's
    // covers the parentheses.
    assert_eq!(span_text(source, sum.span), "a + 2x");
    let ExprKind::Binary { rhs: product, .. } = &sum.kind else {
        panic!("{}", sexp(sum));
    };
    assert_eq!(span_text(source, product.span), "2x");

    let source = "((y))";
    let expr = parse_expression(source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(span_text(source, expr.span), "y");
}

#[test]
fn non_ascii_input() {
    // Non-ASCII in comments is fine; elsewhere it is pointed at.
    assert_eq!(parsed("x # ∂f/∂x\n"), "x");
    let source = "π·x";
    let e = error(source);
    assert_eq!(e.message, "unexpected character `π`");
    assert_eq!(e.span, Span::new(0, 2));
    let source = "é + ";
    let e = error(source);
    assert_eq!(e.span, Span::new(0, 2));
    let e = error("x +\u{3000}\u{3000}");
    assert_eq!(e.message, "expected an expression after `+`");
    assert_eq!(e.span, Span::new(9, 9));
    assert_eq!(
        e.to_string(),
        "expected an expression after `+`\n  | x +\u{3000}\u{3000}\n  |      ^"
    );
}

/// The message and the span's text.
fn message_at(source: &str) -> (String, String) {
    let e = error(source);
    (e.message.clone(), span_text(source, e.span).to_owned())
}

fn pair(message: &str, at: &str) -> (String, String) {
    (message.to_owned(), at.to_owned())
}

#[test]
fn error_messages_name_what_was_expected() {
    let cases = [
        ("", "empty expression", ""),
        ("  # nothing\n\n", "empty expression", ""),
        ("x +", "expected an expression after `+`", ""),
        ("x + )", "expected an expression after `+`", ")"),
        ("x * * y", "expected an expression after `*`", "*"),
        ("2^", "expected an expression after `^`", ""),
        ("-", "expected an expression after `-`", ""),
        ("()", "expected an expression after `(`", ")"),
        ("f(x,)", "expected an expression after `,`", ")"),
        ("f(,x)", "expected an expression after `(`", ","),
        ("*x", "expected an expression, found `*`", "*"),
        (")", "expected an expression, found `)`", ")"),
        ("x)", "unexpected `)`", ")"),
        ("x y", "unexpected name `y`", "y"),
        ("3 x", "unexpected name `x`", "x"),
        ("x 2", "unexpected number `2`", "2"),
        ("(x) (2)", "unexpected `(`", "("),
        ("x, y", "unexpected `,`", ","),
        ("y = x", "unexpected `=`", "="),
        ("x @", "expected an expression after `@`", ""),
        ("@ x", "expected an expression, found `@`", "@"),
        ("x[", "expected an index, found end of input", ""),
        ("x\ny", "unexpected line break", "\n"),
        ("x +\ny", "expected an expression after `+`", "\n"),
        ("(x", "unclosed `(`", "("),
        ("2 * (x + (y)", "unclosed `(`", "("),
        ("f(x, y", "unclosed `(`", "("),
        ("(x y)", "expected `)`, found name `y`", "y"),
        ("f(x y)", "expected `,` or `)`, found name `y`", "y"),
        ("x $", "unexpected character `$`", "$"),
        ("1e400", "number is too large", "1e400"),
        ("x +\n\n", "expected an expression after `+`", ""),
    ];
    for (source, message, at) in cases {
        assert_eq!(message_at(source), pair(message, at), "{source:?}");
    }
}

#[test]
fn truncated_input_points_after_the_expression() {
    let e = error("x +\n\n");
    assert_eq!(e.span, Span::new(3, 3));
    assert_eq!(
        e.to_string(),
        "expected an expression after `+`\nline 1 | x +\n       |    ^"
    );
}

#[test]
fn rendered_errors() {
    let e = error("2 * (x + sin(y)");
    assert_eq!(
        e.to_string(),
        "unclosed `(`\n  | 2 * (x + sin(y)\n  |     ^\nhelp: add a `)` to close it"
    );
    let e = error("(a + b))");
    assert_eq!(
        e.to_string(),
        "unexpected `)`\n  | (a + b))\n  |        ^\nhelp: this `)` has no matching `(`"
    );
    let e = error("x + * 2");
    assert_eq!(
        e.to_string(),
        "expected an expression after `+`\n  | x + * 2\n  |     ^\nhelp: found `*`"
    );
    let e = error("x y");
    assert_eq!(
        e.to_string(),
        "unexpected name `y`\n  | x y\n  |   ^\nhelp: write `*` to multiply"
    );
    let e = error("");
    assert_eq!(e.to_string(), "empty expression\n  |\n  | ^");
}

#[test]
fn nesting_is_limited() {
    let ok = format!(
        "{}x{}",
        "(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    assert_eq!(parsed(&ok), "x");
    for source in [
        format!("{}x{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)),
        "(".repeat(100_000),
        "-".repeat(100_000),
        format!("{}x", "x^".repeat(100_000)),
        format!("{}x", "2^-".repeat(100_000)),
        format!("{}x", "sin(".repeat(100_000)),
    ] {
        let e = error(&source);
        assert_eq!(e.message, "expression nested too deeply");
        assert!(e.span.end <= source.len());
    }
}

#[test]
fn parsing_uses_little_stack_at_any_depth() {
    // Debug builds spend kilobytes of stack per frame; the parser's
    // stack use must not grow with nesting, or a test thread would
    // overflow long before `MAX_DEPTH`.
    let deepest = [
        format!(
            "{}x{}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        ),
        format!("{}x", "-".repeat(MAX_DEPTH - 1)),
        format!("{}x", "x^".repeat(MAX_DEPTH - 1)),
        format!(
            "{}x{}",
            "f(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        ),
        "(".repeat(100_000),
    ];
    let worker = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            deepest
                .iter()
                .map(|source| parse_expression(source).is_ok())
                .collect::<Vec<_>>()
        });
    let parsed = worker.ok().and_then(|worker| worker.join().ok());
    assert_eq!(parsed, Some(vec![true, true, true, true, false]));
}

#[test]
fn tree_height_is_limited() {
    // A chain of n operands has height n.
    let chain = |n: usize| vec!["x"; n].join("+");
    assert!(parse_expression(&chain(MAX_DEPTH)).is_ok());
    let e = error(&chain(MAX_DEPTH + 1));
    assert_eq!(e.message, "expression nested too deeply");
    assert_eq!(span_text(&chain(MAX_DEPTH + 1), e.span), "+");
    let e = error(&vec!["2x"; 100_000].join("*"));
    assert_eq!(e.message, "expression nested too deeply");
}

#[test]
fn embedded_expressions_stop_at_the_first_foreign_token() {
    let source = "y = 2x + 1\nz";
    let tokens = tokenize(source).unwrap_or_default();
    let (expr, next) = parse_expression_at(source, &tokens, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sexp(&expr), "(+ (* 2 x) 1)");
    assert_eq!(tokens.get(next).map(|t| &t.kind), Some(&TokenKind::Newline));
    // Past the end of a slice without `Eof` reads as the end of input.
    let e = parse_expression_at(source, tokens.get(..5).unwrap_or_default(), 2).err();
    assert_eq!(
        e.map(|e| (e.message, e.span)),
        Some((
            "expected an expression after `+`".to_owned(),
            Span::new(source.len(), source.len())
        ))
    );
}

#[test]
fn indices_bind_to_the_operand_before_them() {
    assert_eq!(parsed("x[1]"), "(index x 1)");
    assert_eq!(parsed("-x[0]^2"), "(neg (^ (index x 0) 2))");
    assert_eq!(parsed("2x[1:3]"), "(* 2 (slice x 1 3))");
    assert_eq!(parsed("(a + b)[2]"), "(index (+ a b) 2)");
    assert_eq!(parsed("x[0:4][1]"), "(index (slice x 0 4) 1)");
    assert_eq!(parsed("f(x)[0]"), "(index (f: x) 0)");
}

#[test]
fn brackets_assemble_lists() {
    assert_eq!(parsed("[a, b + 1, c[0]]"), "(list a (+ b 1) (index c 0))");
    assert_eq!(parsed("[[a], b]"), "(list (list a) b)");
    assert_eq!(parsed("[a, b][1]"), "(index (list a b) 1)");
    assert_eq!(parsed("sum([a, (b)])"), "(sum: (list a b))");
    assert_eq!(error("[a, b").message, "unclosed `[`");
    assert_eq!(error("[a)").message, "expected `,` or `]`, found `)`");
    assert_eq!(error("(a]").message, "expected `)`, found `]`");
    assert_eq!(error("x[-1]").message, "an index cannot be negative");
    assert_eq!(error("x[1e2]").message, "`1e2` is not an index");
}
