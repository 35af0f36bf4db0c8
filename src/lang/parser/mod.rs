//! The expression parser, with the precedence of ordinary mathematics:
//!
//! ```text
//! compare = sum (("<" | "<=" | ">" | ">=") sum)?
//! sum     = product (("+" | "-") product)*
//! product = unary (("*" | "/" | "@") unary | <implicit> unary)*
//! unary   = "-" unary | power
//! power   = indexed ("^" unary)?
//! indexed = primary ("[" INDEX (":" INDEX)? "]")*
//! primary = NUMBER | NAME | NAME "(" (compare ("," compare)*)? ")"
//!         | "(" compare ")" | "[" compare ("," compare)* "]"
//! ```
//!
//! A comparison gives 1 or 0 and does not chain: `a < b < c` is an error
//! (write `(a < b) < c` if that is really meant).
//!
//! `INDEX` is a non-negative integer literal: `x[2]` is an element, `x[1:4]`
//! the slice of elements 1, 2 and 3. `[a, b]` concatenates scalars and
//! vectors into one vector.
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
            Op::Neg { .. } => 4,
        }
    }
}

/// How tightly an operator binds. An incoming operator first applies the
/// pending ones of at least its power (of greater power, for `^`), so a
/// minus, between `* /` and `^`, makes `-x*y` `(-x)*y` and `-x^2` `-(x^2)`.
fn power(op: BinOp) -> u8 {
    match op {
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 1,
        BinOp::Add | BinOp::Sub => 2,
        // `@` shares the level of `*`, as in NumPy.
        BinOp::Mul | BinOp::Div | BinOp::MatMul => 3,
        BinOp::Pow => 5,
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
    /// `[a, b, ...]`, a vector assembled from its parts.
    List {
        open: Span,
        items: Vec<Expr>,
        /// The tallest part so far.
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
            TokenKind::Less => Some((BinOp::Lt, true)),
            TokenKind::LessEq => Some((BinOp::Le, true)),
            TokenKind::Greater => Some((BinOp::Gt, true)),
            TokenKind::GreaterEq => Some((BinOp::Ge, true)),
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
                operand = self.indices(operand)?;
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
                    if op.is_comparison() {
                        self.unchained(&lhs, op, at)?;
                    }
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

    /// Refuses `a < b < c`: comparisons give 1 or 0, so a chain would not
    /// mean what it means in mathematics. A parenthesised comparison on the
    /// left, `(a < b) < c`, is taken as written.
    fn unchained(&self, lhs: &Node, op: BinOp, at: Span) -> Result<(), ParseError> {
        let ExprKind::Binary { op: first, .. } = lhs.expr.kind else {
            return Ok(());
        };
        if !first.is_comparison() || lhs.outer != lhs.expr.span {
            return Ok(());
        }
        Err(self
            .error(
                lhs.expr.span.to(at),
                format!(
                    "comparisons do not chain: `{}` then `{}`",
                    first.symbol(),
                    op.symbol()
                ),
            )
            .with_help("a comparison gives 1 or 0; write `a < b` and `b < c` separately, or bracket one side"))
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
                TokenKind::LBracket => {
                    self.bump();
                    if self.peek().kind == TokenKind::RBracket {
                        let close = self.bump();
                        return Err(self
                            .error(span.to(close), "`[]` assembles no elements")
                            .with_help("list the parts of the vector: `[a, b]`"));
                    }
                    Bracket::List {
                        open: span,
                        items: Vec::new(),
                        height: 0,
                    }
                }
                _ => return Err(self.missing_operand(*after)),
            };
            self.open(span)?;
            *after = Some(match bracket {
                Bracket::List { .. } => "[",
                _ => "(",
            });
            outer.push((bracket, std::mem::take(ops)));
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
                Bracket::List {
                    open,
                    mut items,
                    height,
                },
                TokenKind::RBracket | TokenKind::Comma,
            ) => {
                let height = height.max(content.height);
                items.push(content.expr);
                let finished = token.kind == TokenKind::RBracket;
                let close = self.bump();
                if !finished {
                    return Ok(Closed::NextArgument(Bracket::List {
                        open,
                        items,
                        height,
                    }));
                }
                let height = height + 1;
                if height > MAX_DEPTH {
                    return Err(self.too_deep(open));
                }
                let span = open.to(close);
                Ok(Closed::Operand(Node {
                    expr: Expr {
                        kind: ExprKind::List(items),
                        span,
                    },
                    height,
                    outer: span,
                }))
            }
            (Bracket::List { open, .. }, TokenKind::Eof | TokenKind::Newline) => Err(self
                .error(open, "unclosed `[`")
                .with_help("add a `]` to close it")),
            (Bracket::List { .. }, _) => {
                Err(self.error(token.span, format!("expected `,` or `]`, found {found}")))
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

    /// `node` with the index and slice brackets that follow it applied,
    /// left to right (`x[0:4][1]`). `A[i, j]` and `A[i, a:b]` are row i,
    /// then its element or slice: `A[i][j]`, `A[i][a:b]`.
    fn indices(&mut self, mut node: Node) -> Result<Node, ParseError> {
        while self.peek().kind == TokenKind::LBracket {
            let open = self.bump();
            let mut parts = vec![self.index_part()?];
            if parts[0].1.is_none() && self.peek().kind == TokenKind::Comma {
                self.bump();
                parts.push(self.index_part()?);
            }
            let token = self.peek();
            if token.kind != TokenKind::RBracket {
                let wanted = match parts.as_slice() {
                    [(_, None)] => "`:`, `,` or `]`",
                    _ => "`]`",
                };
                let found = token.describe(self.source);
                return Err(self.error(token.span, format!("expected {wanted}, found {found}")));
            }
            let close = self.bump();
            for (start, end) in parts {
                let height = node.height + 1;
                if height > MAX_DEPTH {
                    return Err(self.too_deep(open));
                }
                let span = node.outer.to(close);
                node = Node {
                    expr: Expr {
                        kind: ExprKind::Index {
                            base: Box::new(node.expr),
                            start,
                            end,
                            brackets: open.to(close),
                        },
                        span,
                    },
                    height,
                    outer: span,
                };
            }
        }
        Ok(node)
    }

    /// `i` or `a:b` inside index brackets.
    fn index_part(&mut self) -> Result<(usize, Option<usize>), ParseError> {
        let start = self.index_literal()?;
        if self.peek().kind != TokenKind::Colon {
            return Ok((start, None));
        }
        self.bump();
        Ok((start, Some(self.index_literal()?)))
    }

    /// A non-negative integer literal inside index brackets.
    fn index_literal(&mut self) -> Result<usize, ParseError> {
        let token = self.peek();
        let span = token.span;
        let text = self.source.get(span.start..span.end).unwrap_or("");
        match token.kind {
            TokenKind::Number(value)
                if text.bytes().all(|b| b.is_ascii_digit()) && value < 1e15 =>
            {
                self.bump();
                Ok(value as usize)
            }
            TokenKind::Number(_) => Err(self
                .error(span, format!("`{text}` is not an index"))
                .with_help("an index is a whole number written with digits only, as in `x[2]`")),
            TokenKind::Minus => Err(self
                .error(span, "an index cannot be negative")
                .with_help("indices count from 0 at the first element")),
            _ => {
                let found = token.describe(self.source);
                Err(self
                    .error(span, format!("expected an index, found {found}"))
                    .with_help("indices are integer literals: `x[2]`, `x[1:4]`"))
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
mod tests;
