//! The expression parser, with the precedence of ordinary mathematics:
//!
//! ```text
//! sum     = product (("+" | "-") product)*
//! product = unary (("*" | "/" | "@") unary | <implicit> unary)*
//! unary   = "-" unary | power
//! power   = primary ("^" unary)?
//! primary = NUMBER | NAME | NAME "(" (sum ("," sum)*)? ")" | "(" sum ")"
//! ```
//!
//! `power` takes a `unary` on its right, which makes `^` right-associative,
//! lets an exponent start with a minus (`2^-x`), and still binds tighter
//! than a minus on its left (`-x^2` is `-(x^2)`). `<implicit>` is a product
//! with no `*`, allowed only where a number literal is directly followed,
//! with no space, by a name or `(`: `3x`, `9(x + 1)`, `2x^2`.
//!
//! The grammar is parsed by operator precedence with explicit stacks rather
//! than by recursive descent: a debug build spends about 12 KiB of call stack
//! per level of recursive descent, so nesting that is harmless in release
//! would overflow a 2 MiB test thread. Here nesting costs heap only, and
//! [`MAX_DEPTH`] bounds the trees handed to the recursive passes after us.

use super::ast::{BinOp, Expr, ExprKind, Span};
use super::error::ParseError;
use super::lexer::{Token, TokenKind, tokenize};

/// The most levels a parsed tree may have, and the most brackets and
/// operators that may be open at once. Every later pass (and `Drop`) walks
/// trees recursively, so this is what keeps them off the end of the stack.
pub(crate) const MAX_DEPTH: usize = 256;

/// Parses one expression: the whole of `source`, which may have blank lines
/// and comments around the expression but no line break inside it.
pub fn parse_expression(source: &str) -> Result<Expr, ParseError> {
    let mut tokens = tokenize(source)?;
    // A file ends with a line break, and blank lines around a lone expression
    // are harmless; only a line break inside it would be a second statement.
    let end = tokens
        .iter()
        .rposition(|t| !matches!(t.kind, TokenKind::Newline | TokenKind::Eof))
        .map_or(0, |i| i + 1);
    // "Expected ..." at the end points just after the expression, not at the
    // start of the blank lines that follow it.
    let eof_at = tokens.get(end).map_or(source.len(), |t| t.span.start);
    tokens.truncate(end);
    let leading = tokens
        .iter()
        .take_while(|t| t.kind == TokenKind::Newline)
        .count();
    tokens.drain(..leading);
    if tokens.is_empty() {
        return Err(ParseError::new(source, Span::new(0, 0), "empty expression"));
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        span: Span::new(eof_at, eof_at),
    });

    let (expr, next) = parse_expression_at(source, &tokens, 0)?;
    match tokens.get(next) {
        Some(token) if token.kind != TokenKind::Eof => Err(unexpected(source, token)),
        _ => Ok(expr),
    }
}

/// Parses the longest expression starting at `tokens[start]` and returns it
/// with the index of the first token it did not use (a `)`, `,`, `=`, line
/// break... with no bracket of its own open), for parsers of larger forms
/// that embed expressions. `tokens` should end with `Eof`; reading past its
/// end behaves as if it did.
pub(crate) fn parse_expression_at(
    source: &str,
    tokens: &[Token],
    start: usize,
) -> Result<(Expr, usize), ParseError> {
    let mut parser = Parser {
        source,
        tokens,
        pos: start,
        open: 0,
        eof: Token {
            kind: TokenKind::Eof,
            span: Span::new(source.len(), source.len()),
        },
    };
    let node = parser.expression()?;
    Ok((node.expr, parser.pos))
}

/// "unexpected X" for a token that cannot continue a complete expression.
fn unexpected(source: &str, token: &Token) -> ParseError {
    let error = ParseError::new(
        source,
        token.span,
        format!("unexpected {}", token.describe(source)),
    );
    match token.kind {
        TokenKind::Number(_) | TokenKind::Name(_) | TokenKind::LParen => {
            error.with_help("write `*` to multiply")
        }
        TokenKind::RParen => error.with_help("this `)` has no matching `(`"),
        TokenKind::Comma => error.with_help("`,` separates the arguments of a call"),
        TokenKind::Newline => error.with_help("an expression must be on one line"),
        _ => error,
    }
}

/// A parsed subexpression and what its parent needs to know about it.
struct Node {
    expr: Expr,
    /// Levels of the tree, 1 for a leaf.
    height: usize,
    /// The node's text with any parentheses around it, so that the parent's
    /// span covers them while the node's own span stays on its content (an
    /// unknown name in `(y)` is underlined as `y`).
    outer: Span,
}

impl Node {
    fn leaf(kind: ExprKind, span: Span) -> Self {
        Node {
            expr: Expr { kind, span },
            height: 1,
            outer: span,
        }
    }
}

/// An operator still waiting for its (right) operand.
enum Op {
    Neg { minus: Span },
    Binary { op: BinOp, at: Span, lhs: Node },
}

impl Op {
    fn power(&self) -> u8 {
        match self {
            Op::Binary { op, .. } => power(*op),
            Op::Neg { .. } => 3,
        }
    }
}

/// How tightly an operator binds. An incoming operator first applies the
/// pending ones of at least its power (of greater power, for `^`), so a
/// minus, between `* /` and `^`, makes `-x*y` `(-x)*y` and `-x^2` `-(x^2)`.
fn power(op: BinOp) -> u8 {
    match op {
        BinOp::Add | BinOp::Sub => 1,
        // `@` shares the level of `*`, as in NumPy.
        BinOp::Mul | BinOp::Div | BinOp::MatMul => 2,
        BinOp::Pow => 4,
    }
}

/// An open bracket, and what it has collected so far.
enum Bracket {
    Group {
        open: Span,
    },
    Call {
        name: String,
        name_span: Span,
        open: Span,
        args: Vec<Expr>,
        /// The tallest argument so far.
        height: usize,
    },
}

struct Parser<'a> {
    source: &'a str,
    tokens: &'a [Token],
    pos: usize,
    /// Operators and brackets open across all levels, for `MAX_DEPTH`.
    open: usize,
    /// What `peek` returns past the end of `tokens`.
    eof: Token,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.eof)
    }

    /// Consumes the current token and returns its span.
    fn bump(&mut self) -> Span {
        let span = self.peek().span;
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        span
    }

    fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError::new(self.source, span, message)
    }

    fn too_deep(&self, span: Span) -> ParseError {
        self.error(span, "expression nested too deeply")
            .with_help(format!(
                "at most {MAX_DEPTH} levels of brackets and operations are allowed; split the expression"
            ))
    }

    /// Counts one more open operator or bracket, the one at `span`.
    fn open(&mut self, span: Span) -> Result<(), ParseError> {
        self.open += 1;
        // Whatever is open encloses at least one more level, the operand.
        if self.open >= MAX_DEPTH {
            return Err(self.too_deep(span));
        }
        Ok(())
    }

    /// The error for a token that cannot start the operand wanted after the
    /// token `after` (or at the start, when `None`).
    fn missing_operand(&self, after: Option<&str>) -> ParseError {
        let token = self.peek();
        let found = token.describe(self.source);
        let Some(after) = after else {
            return self.error(token.span, format!("expected an expression, found {found}"));
        };
        let error = self.error(
            token.span,
            format!("expected an expression after `{after}`"),
        );
        match token.kind {
            TokenKind::Eof => error,
            TokenKind::Newline => error.with_help("an expression must be on one line"),
            _ => error.with_help(format!("found {found}")),
        }
    }

    /// Whether the last token consumed is a number literal touching the
    /// next one: the one place where a product needs no `*`.
    fn follows_number_directly(&self) -> bool {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .is_some_and(|previous| {
                matches!(previous.kind, TokenKind::Number(_))
                    && previous.span.end == self.peek().span.start
            })
    }

    /// The binary operator at the current token, if any, and whether it is
    /// written (`false` for an implicit product, which consumes nothing).
    fn binary_operator(&self) -> Option<(BinOp, bool)> {
        match self.peek().kind {
            TokenKind::Plus => Some((BinOp::Add, true)),
            TokenKind::Minus => Some((BinOp::Sub, true)),
            TokenKind::Star => Some((BinOp::Mul, true)),
            TokenKind::Slash => Some((BinOp::Div, true)),
            TokenKind::Caret => Some((BinOp::Pow, true)),
            TokenKind::At => Some((BinOp::MatMul, true)),
            TokenKind::Name(_) | TokenKind::LParen if self.follows_number_directly() => {
                Some((BinOp::Mul, false))
            }
            _ => None,
        }
    }

    fn expression(&mut self) -> Result<Node, ParseError> {
        // The operators of the innermost bracket, and for each bracket
        // around it the bracket and the operators outside it.
        let mut ops: Vec<Op> = Vec::new();
        let mut outer: Vec<(Bracket, Vec<Op>)> = Vec::new();
        // The token that asked for the next operand, for "expected an
        // expression after ...".
        let mut after: Option<&'static str> = None;
        loop {
            let mut operand = self.operand(&mut ops, &mut outer, &mut after)?;
            loop {
                if let Some((op, written)) = self.binary_operator() {
                    let at = if written {
                        after = Some(op.symbol());
                        self.bump()
                    } else {
                        let next = self.peek().span;
                        Span::new(next.start, next.start)
                    };
                    // `^` is right-associative: an earlier `^` (or a minus
                    // before the base) stays open and takes this whole
                    // power as its operand.
                    let min_power = power(op) + u8::from(op == BinOp::Pow);
                    let lhs = self.reduce(&mut ops, operand, min_power)?;
                    self.open(at)?;
                    ops.push(Op::Binary { op, at, lhs });
                    break;
                }
                // Anything else ends the innermost bracket's content, or the
                // whole expression when no bracket is open.
                operand = self.reduce(&mut ops, operand, 0)?;
                let Some((bracket, enclosing)) = outer.pop() else {
                    return Ok(operand);
                };
                ops = enclosing;
                self.open = self.open.saturating_sub(1);
                operand = match self.close(bracket, operand)? {
                    Closed::Operand(node) => node,
                    Closed::NextArgument(call) => {
                        outer.push((call, std::mem::take(&mut ops)));
                        self.open += 1;
                        after = Some(",");
                        break;
                    }
                };
            }
        }
    }

    /// Reads prefix minuses and opening brackets up to an operand.
    fn operand(
        &mut self,
        ops: &mut Vec<Op>,
        outer: &mut Vec<(Bracket, Vec<Op>)>,
        after: &mut Option<&'static str>,
    ) -> Result<Node, ParseError> {
        loop {
            let token = self.peek();
            let span = token.span;
            let bracket = match &token.kind {
                TokenKind::Number(value) => {
                    let value = *value;
                    self.bump();
                    return Ok(Node::leaf(ExprKind::Number(value), span));
                }
                TokenKind::Minus => {
                    self.bump();
                    self.open(span)?;
                    ops.push(Op::Neg { minus: span });
                    *after = Some("-");
                    continue;
                }
                TokenKind::LParen => {
                    self.bump();
                    Bracket::Group { open: span }
                }
                TokenKind::Name(name) => {
                    let name = name.clone();
                    self.bump();
                    if self.peek().kind != TokenKind::LParen {
                        return Ok(Node::leaf(ExprKind::Name(name), span));
                    }
                    let open = self.bump();
                    if self.peek().kind == TokenKind::RParen {
                        let close = self.bump();
                        return self.finish_call(name, span, Vec::new(), 0, close);
                    }
                    Bracket::Call {
                        name,
                        name_span: span,
                        open,
                        args: Vec::new(),
                        height: 0,
                    }
                }
                _ => return Err(self.missing_operand(*after)),
            };
            self.open(span)?;
            outer.push((bracket, std::mem::take(ops)));
            *after = Some("(");
        }
    }

    /// Applies the pending operators of the innermost bracket that bind at
    /// least `min_power`, innermost first, to `operand`.
    fn reduce(
        &mut self,
        ops: &mut Vec<Op>,
        mut operand: Node,
        min_power: u8,
    ) -> Result<Node, ParseError> {
        while let Some(op) = ops.pop_if(|op| op.power() >= min_power) {
            self.open = self.open.saturating_sub(1);
            operand = match op {
                Op::Neg { minus } => {
                    let height = operand.height + 1;
                    if height > MAX_DEPTH {
                        return Err(self.too_deep(minus));
                    }
                    let span = minus.to(operand.outer);
                    Node {
                        expr: Expr {
                            kind: ExprKind::Neg(Box::new(operand.expr)),
                            span,
                        },
                        height,
                        outer: span,
                    }
                }
                Op::Binary { op, at, lhs } => {
                    let height = lhs.height.max(operand.height) + 1;
                    if height > MAX_DEPTH {
                        return Err(self.too_deep(at));
                    }
                    let span = lhs.outer.to(operand.outer);
                    Node {
                        expr: Expr {
                            kind: ExprKind::Binary {
                                op,
                                lhs: Box::new(lhs.expr),
                                rhs: Box::new(operand.expr),
                            },
                            span,
                        },
                        height,
                        outer: span,
                    }
                }
            };
        }
        Ok(operand)
    }

    /// Ends `bracket`, whose content (or latest argument) is `content`, at
    /// the current token: a `)`, a `,` in a call, or an error.
    fn close(&mut self, bracket: Bracket, mut content: Node) -> Result<Closed, ParseError> {
        let token = self.peek();
        let found = token.describe(self.source);
        match (bracket, &token.kind) {
            (Bracket::Group { open }, TokenKind::RParen) => {
                content.outer = open.to(self.bump());
                Ok(Closed::Operand(content))
            }
            (
                Bracket::Call {
                    name,
                    name_span,
                    open,
                    mut args,
                    height,
                },
                TokenKind::RParen | TokenKind::Comma,
            ) => {
                let height = height.max(content.height);
                args.push(content.expr);
                let finished = token.kind == TokenKind::RParen;
                let close = self.bump();
                if finished {
                    return Ok(Closed::Operand(
                        self.finish_call(name, name_span, args, height, close)?,
                    ));
                }
                Ok(Closed::NextArgument(Bracket::Call {
                    name,
                    name_span,
                    open,
                    args,
                    height,
                }))
            }
            (
                Bracket::Group { open } | Bracket::Call { open, .. },
                TokenKind::Eof | TokenKind::Newline,
            ) => Err(self.unclosed(open)),
            (Bracket::Group { .. }, _) => {
                Err(self.error(token.span, format!("expected `)`, found {found}")))
            }
            (Bracket::Call { .. }, _) => {
                Err(self.error(token.span, format!("expected `,` or `)`, found {found}")))
            }
        }
    }

    /// The call node, once its `)` at `close` is read.
    fn finish_call(
        &self,
        name: String,
        name_span: Span,
        args: Vec<Expr>,
        tallest_argument: usize,
        close: Span,
    ) -> Result<Node, ParseError> {
        let height = tallest_argument + 1;
        if height > MAX_DEPTH {
            return Err(self.too_deep(name_span));
        }
        let span = name_span.to(close);
        Ok(Node {
            expr: Expr {
                kind: ExprKind::Call {
                    name,
                    name_span,
                    args,
                },
                span,
            },
            height,
            outer: span,
        })
    }

    fn unclosed(&self, open: Span) -> ParseError {
        self.error(open, "unclosed `(`")
            .with_help("add a `)` to close it")
    }
}

/// What closing a bracket gave.
enum Closed {
    /// The group or call, complete.
    Operand(Node),
    /// The call after a `,`, waiting for its next argument.
    NextArgument(Bracket),
}

#[cfg(test)]
mod tests {
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
            ("[x]", "expected an expression, found `[`", "["),
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
        let (expr, next) =
            parse_expression_at(source, &tokens, 2).unwrap_or_else(|e| panic!("{e}"));
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
}
