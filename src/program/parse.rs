//! The program form's statements and their lowering into a [`Program`].
//!
//! Parsing goes in two passes: the first reads every line (declarations
//! take effect at once, so a variable may be declared below its first use),
//! the second lowers the assignments in order and then the output. A name
//! assigned on a later line is therefore an error of its own, "used before
//! it is assigned", rather than an unknown name.
//!
//! Lowering walks expression trees with explicit stacks rather than
//! recursion, and assignments refer to earlier nodes by id, so neither deep
//! nesting nor a long program grows the call stack.

use std::collections::HashMap;

use super::{Kind, MAX_ELEMENTS, NodeId, Op, Program, Shape, Variable};
use crate::graph::FUNCTIONS;
use crate::lang::{
    BinOp, Expr, ExprKind, ParseError, Span, Token, TokenKind, parse_expression,
    parse_expression_at, suggest, tokenize,
};
use crate::ops::{BinaryOp, UnaryOp};

/// Words that begin statements, so never names.
const KEYWORDS: [&str; 3] = ["input", "param", "output"];

/// The functions programs add to those of element-wise expressions.
const REDUCTIONS: [&str; 3] = ["sum", "mean", "dot"];

type Parsed<T> = Result<T, ParseError>;

/// Parses `text` as a program, or as a bare expression when no line looks
/// like a statement of one.
pub(super) fn parse(text: &str) -> Parsed<Program> {
    let tokens = tokenize(text)?;
    let starts = statement_starts(&tokens);
    if !starts.iter().any(|&start| opens_statement(&tokens, start)) {
        let expr = parse_expression(text)?;
        let mut lowering = Lowering::new(text, true);
        let value = lowering.lower(&expr)?;
        let output = lowering.node(value, &expr)?;
        return Ok(lowering.finish(output, "y".to_owned()));
    }
    program(text, &tokens, &starts)
}

/// The index of the first token of every non-blank line.
fn statement_starts(tokens: &[Token]) -> Vec<usize> {
    let mut previous_ends_line = true;
    let mut starts = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let ends_line = matches!(token.kind, TokenKind::Newline | TokenKind::Eof);
        if previous_ends_line && !ends_line {
            starts.push(i);
        }
        previous_ends_line = ends_line;
    }
    starts
}

/// Whether the line at `start` can only be a program's statement: `NAME =`,
/// or a keyword not followed by an operator (`input + 1` is an expression
/// in a variable called `input`).
fn opens_statement(tokens: &[Token], start: usize) -> bool {
    let kind = |i: usize| tokens.get(i).map(|t| &t.kind);
    let Some(TokenKind::Name(first)) = kind(start) else {
        return false;
    };
    let next = kind(start + 1);
    if next == Some(&TokenKind::Equals) {
        return true;
    }
    let continues_expression = matches!(
        next,
        Some(
            TokenKind::Plus
                | TokenKind::Minus
                | TokenKind::Star
                | TokenKind::Slash
                | TokenKind::Caret
                | TokenKind::At
                | TokenKind::LParen
                | TokenKind::RParen
                | TokenKind::Comma
        )
    );
    KEYWORDS.contains(&first.as_str()) && !continues_expression
}

/// An assignment, read in the first pass and lowered in the second.
struct Assignment {
    name: String,
    name_span: Span,
    expr: Expr,
}

fn program(text: &str, tokens: &[Token], starts: &[usize]) -> Parsed<Program> {
    let mut lowering = Lowering::new(text, false);
    let mut assignments: Vec<Assignment> = Vec::new();
    let mut output: Option<(Span, Expr)> = None;
    for &start in starts {
        let mut cursor = Cursor {
            source: text,
            tokens,
            pos: start,
            eof: Token {
                kind: TokenKind::Eof,
                span: Span::new(text.len(), text.len()),
            },
        };
        let first = cursor.peek().clone();
        let word = match &first.kind {
            TokenKind::Name(name) => name.as_str(),
            _ => "",
        };
        let assigns = tokens.get(start + 1).map(|t| &t.kind) == Some(&TokenKind::Equals);
        match word {
            "input" | "param" if !assigns => {
                cursor.bump();
                let kind = if word == "input" {
                    Kind::Input
                } else {
                    Kind::Param
                };
                for declaration in cursor.declarations(word)? {
                    lowering.declare(kind, declaration)?;
                }
            }
            "output" if !assigns => {
                cursor.bump();
                if cursor.at_line_end() {
                    return Err(cursor
                        .error(
                            first.span,
                            "expected a name or an expression after `output`",
                        )
                        .with_help("name the result: `output y`"));
                }
                let expr = cursor.expression()?;
                if let Some((earlier, _)) = &output {
                    return Err(cursor
                        .error(first.span, "a program has exactly one `output`")
                        .with_help(format!("the first is on line {}", line_of(text, *earlier))));
                }
                output = Some((first.span, expr));
            }
            _ if assigns && !word.is_empty() => {
                let name = word.to_owned();
                cursor.bump();
                cursor.bump();
                let expr = cursor.expression()?;
                lowering.check_new_name(&name, first.span)?;
                if let Some(earlier) = assignments.iter().find(|a| a.name == name) {
                    return Err(cursor
                        .error(first.span, format!("`{name}` is assigned twice"))
                        .with_help(format!(
                            "it is first assigned on line {}; each name is assigned once",
                            line_of(text, earlier.name_span)
                        )));
                }
                assignments.push(Assignment {
                    name,
                    name_span: first.span,
                    expr,
                });
            }
            _ => return Err(not_a_statement(text, &first)),
        }
    }

    for assignment in &assignments {
        lowering
            .later
            .insert(assignment.name.clone(), assignment.name_span);
    }
    for Assignment {
        name,
        name_span,
        expr,
    } in assignments
    {
        if let Some(&index) = lowering.by_name.get(&name) {
            return Err(lowering.already_declared(&name, index, name_span));
        }
        // Still in `later` while its own line is lowered: `h = h + 1` uses
        // `h` before it is assigned.
        let value = lowering.lower(&expr)?;
        let id = lowering.node(value, &expr)?;
        lowering.later.remove(&name);
        // A variable keeps its own name; a node named twice keeps the first.
        let is_variable = matches!(lowering.nodes.get(id), Some(Op::Variable(_)));
        if let Some(slot @ None) = lowering.names.get_mut(id) {
            if !is_variable {
                *slot = Some(name.clone());
            }
        }
        lowering.values.insert(name, id);
    }

    let Some((_, expr)) = output else {
        return Err(ParseError::new(
            text,
            Span::new(text.len(), text.len()),
            "the program has no `output`",
        )
        .with_help("add a line `output NAME` naming the result"));
    };
    let value = lowering.lower(&expr)?;
    let id = lowering.node(value, &expr)?;
    let output_name = match &expr.kind {
        ExprKind::Name(name) if name != "pi" => name.clone(),
        _ if lowering.is_taken("y") => "output".to_owned(),
        _ => "y".to_owned(),
    };
    Ok(lowering.finish(id, output_name))
}

/// The error for a line that begins no statement.
fn not_a_statement(text: &str, first: &Token) -> ParseError {
    let error = ParseError::new(
        text,
        first.span,
        format!(
            "expected `input`, `param`, `output` or `name = expression`, found {}",
            first.describe(text)
        ),
    );
    match &first.kind {
        TokenKind::Name(name) if suggest(name, &KEYWORDS).is_some() => {
            let near = suggest(name, &KEYWORDS).unwrap_or_default();
            error.with_help(format!("did you mean `{near}`?"))
        }
        _ => error.with_help(
            "each line declares (`input x[3]`), assigns (`h = ...`) or names the result (`output h`)",
        ),
    }
}

/// The 1-based line on which `span` starts.
fn line_of(text: &str, span: Span) -> usize {
    text.get(..span.start)
        .map_or(1, |head| head.matches('\n').count() + 1)
}

/// A declared name and its shape.
struct Declaration {
    name: String,
    name_span: Span,
    /// The name with its brackets.
    span: Span,
    shape: Shape,
}

/// Reads the tokens of one statement.
struct Cursor<'a> {
    source: &'a str,
    tokens: &'a [Token],
    pos: usize,
    eof: Token,
}

impl Cursor<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.eof)
    }

    fn bump(&mut self) -> Span {
        let span = self.peek().span;
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        span
    }

    fn at_line_end(&self) -> bool {
        matches!(self.peek().kind, TokenKind::Newline | TokenKind::Eof)
    }

    fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError::new(self.source, span, message)
    }

    fn found(&self) -> String {
        self.peek().describe(self.source)
    }

    /// An expression that runs to the end of the line.
    fn expression(&mut self) -> Parsed<Expr> {
        let (expr, next) = parse_expression_at(self.source, self.tokens, self.pos)?;
        self.pos = next;
        if self.at_line_end() {
            return Ok(expr);
        }
        let token = self.peek();
        let error = self.error(token.span, format!("unexpected {}", self.found()));
        Err(match token.kind {
            TokenKind::Number(_) | TokenKind::Name(_) | TokenKind::LParen => {
                error.with_help("write `*` to multiply")
            }
            TokenKind::RParen => error.with_help("this `)` has no matching `(`"),
            TokenKind::Comma => error.with_help("`,` separates the arguments of a call"),
            TokenKind::LBracket | TokenKind::RBracket => {
                error.with_help("sizes in brackets belong in `input` and `param` lines")
            }
            _ => error.with_help("each line holds one statement"),
        })
    }

    /// The names after `input` or `param`, each with an optional `[n]` or
    /// `[m,n]`, separated by spaces or commas.
    fn declarations(&mut self, keyword: &str) -> Parsed<Vec<Declaration>> {
        let mut declarations = Vec::new();
        loop {
            let token = self.peek().clone();
            let TokenKind::Name(name) = token.kind else {
                let error = if declarations.is_empty() && self.at_line_end() {
                    self.error(token.span, format!("expected a name after `{keyword}`"))
                } else {
                    self.error(
                        token.span,
                        format!("expected a name to declare, found {}", self.found()),
                    )
                };
                return Err(error.with_help(format!(
                    "declare like `{keyword} x[64]`, `{keyword} W[128,64]`, or `{keyword} t` for a scalar"
                )));
            };
            self.bump();
            let shape = if self.peek().kind == TokenKind::LBracket {
                self.bump();
                self.sizes()?
            } else {
                Shape::Scalar
            };
            let end = self
                .pos
                .checked_sub(1)
                .and_then(|i| self.tokens.get(i))
                .map_or(token.span.end, |t| t.span.end);
            declarations.push(Declaration {
                name,
                name_span: token.span,
                span: Span::new(token.span.start, end),
                shape,
            });
            if self.peek().kind == TokenKind::Comma {
                self.bump();
                continue;
            }
            if self.at_line_end() {
                return Ok(declarations);
            }
            if !matches!(self.peek().kind, TokenKind::Name(_)) {
                let error = self.error(
                    self.peek().span,
                    format!(
                        "expected `[`, another name or the end of the line, found {}",
                        self.found()
                    ),
                );
                return Err(error.with_help("sizes go in square brackets: `x[3]`, `W[2,3]`"));
            }
        }
    }

    /// `n]` or `m,n]`, after the `[`.
    fn sizes(&mut self) -> Parsed<Shape> {
        let rows = self.size()?;
        let shape = match self.peek().kind {
            TokenKind::Comma => {
                self.bump();
                Shape::Matrix(rows, self.size()?)
            }
            _ => Shape::Vector(rows),
        };
        if self.peek().kind != TokenKind::RBracket {
            let expected = match shape {
                Shape::Vector(_) => "`,` or `]`",
                _ => "`]`",
            };
            return Err(self
                .error(
                    self.peek().span,
                    format!("expected {expected}, found {}", self.found()),
                )
                .with_help("a vector is `x[n]`, a matrix `W[m,n]`"));
        }
        self.bump();
        Ok(shape)
    }

    fn size(&mut self) -> Parsed<usize> {
        let token = self.peek().clone();
        let TokenKind::Number(value) = token.kind else {
            return Err(self.error(
                token.span,
                format!("expected a size, found {}", self.found()),
            ));
        };
        // Exact for every whole number up to MAX_ELEMENTS.
        if value.fract() != 0.0 || !(1.0..=MAX_ELEMENTS as f64).contains(&value) {
            return Err(self.error(
                token.span,
                format!("a size must be a whole number from 1 to {MAX_ELEMENTS}"),
            ));
        }
        self.bump();
        Ok(value as usize)
    }
}

/// Hash key for sharing identical nodes; constants and parameters by their
/// bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Variable(usize),
    Constant(u64),
    Unary(&'static str, u32, NodeId),
    Binary(BinaryOp, NodeId, NodeId),
    MatVec(NodeId, NodeId),
    Sum(NodeId),
    Mean(NodeId),
    Dot(NodeId, NodeId),
}

impl Key {
    fn of(op: Op) -> Key {
        match op {
            Op::Variable(v) => Key::Variable(v),
            Op::Constant(c) => Key::Constant(c.to_bits()),
            Op::Unary(op, a) => Key::Unary(op.name(), op.parameter().map_or(0, f32::to_bits), a),
            Op::Binary(op, a, b) => Key::Binary(op, a, b),
            Op::MatVec(w, x) => Key::MatVec(w, x),
            Op::Sum(a) => Key::Sum(a),
            Op::Mean(a) => Key::Mean(a),
            Op::Dot(a, b) => Key::Dot(a, b),
        }
    }
}

/// What an expression lowers to: a node, or a matrix waiting for the
/// vector on the right of its `@`, with any scalar factor written on it
/// (`-W`, `0.5 W`), which is applied to the product instead.
#[derive(Debug, Clone, Copy)]
enum Value {
    Node(NodeId),
    Matrix {
        var: NodeId,
        rows: usize,
        cols: usize,
        scale: Option<NodeId>,
    },
}

/// Builds the program's nodes from expressions, sharing identical ones.
struct Lowering<'a> {
    source: &'a str,
    /// A bare expression: free names become scalar inputs.
    bare: bool,
    variables: Vec<Variable>,
    /// Where each variable was declared, for "declared twice".
    declared_at: Vec<Span>,
    by_name: HashMap<String, usize>,
    nodes: Vec<Op>,
    shapes: Vec<Shape>,
    names: Vec<Option<String>>,
    shared: HashMap<Key, NodeId>,
    /// Names assigned so far.
    values: HashMap<String, NodeId>,
    /// Names assigned on lines not lowered yet.
    later: HashMap<String, Span>,
}

type Lowered = Parsed<Value>;

impl<'a> Lowering<'a> {
    fn new(source: &'a str, bare: bool) -> Self {
        Lowering {
            source,
            bare,
            variables: Vec::new(),
            declared_at: Vec::new(),
            by_name: HashMap::new(),
            nodes: Vec::new(),
            shapes: Vec::new(),
            names: Vec::new(),
            shared: HashMap::new(),
            values: HashMap::new(),
            later: HashMap::new(),
        }
    }

    fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError::new(self.source, span, message)
    }

    /// The text at `span` for a message, on one line and not too long.
    fn text(&self, span: Span) -> String {
        let text = self.source.get(span.start..span.end).unwrap_or("?");
        let words: Vec<&str> = text.split_whitespace().collect();
        let text = words.join(" ");
        if text.chars().count() <= 40 {
            return text;
        }
        let head: String = text.chars().take(37).collect();
        format!("{head}...")
    }

    fn shape(&self, id: NodeId) -> Shape {
        self.shapes.get(id).copied().unwrap_or(Shape::Scalar)
    }

    fn constant_of(&self, id: NodeId) -> Option<f64> {
        match self.nodes.get(id) {
            Some(&Op::Constant(c)) => Some(c),
            _ => None,
        }
    }

    fn is_taken(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.values.contains_key(name)
    }

    /// Adds `op` of shape `shape`, or finds the identical node.
    fn add(&mut self, op: Op, shape: Shape) -> NodeId {
        let key = Key::of(op);
        if let Some(&id) = self.shared.get(&key) {
            return id;
        }
        self.nodes.push(op);
        self.shapes.push(shape);
        self.names.push(None);
        let id = self.nodes.len() - 1;
        self.shared.insert(key, id);
        id
    }

    /// A constant, rounded to f32 as on the GPU.
    fn constant(&mut self, value: f64) -> NodeId {
        self.add(Op::Constant(f64::from(value as f32)), Shape::Scalar)
    }

    /// Rejects keywords, functions and `pi` as names of new values.
    fn check_new_name(&self, name: &str, span: Span) -> Parsed<()> {
        let what = if KEYWORDS.contains(&name) {
            "a keyword"
        } else if FUNCTIONS.contains(&name) || REDUCTIONS.contains(&name) {
            "a function"
        } else if name == "pi" {
            "a constant"
        } else {
            return Ok(());
        };
        Err(self
            .error(span, format!("`{name}` is {what}"))
            .with_help("choose another name"))
    }

    fn already_declared(&self, name: &str, index: usize, span: Span) -> ParseError {
        let (kind, line) = match (self.variables.get(index), self.declared_at.get(index)) {
            (Some(variable), Some(&at)) => (variable.kind, line_of(self.source, at)),
            _ => (Kind::Input, 1),
        };
        let article = if kind == Kind::Input { "an" } else { "a" };
        self.error(
            span,
            format!(
                "`{name}` is declared as {article} {kind} on line {line}; an assignment cannot redefine it"
            ),
        )
        .with_help("choose another name")
    }

    fn declare(&mut self, kind: Kind, declaration: Declaration) -> Parsed<()> {
        let Declaration {
            name,
            name_span,
            span,
            shape,
        } = declaration;
        self.check_new_name(&name, name_span)?;
        if let Some(&at) = self
            .by_name
            .get(&name)
            .and_then(|&i| self.declared_at.get(i))
        {
            return Err(self
                .error(name_span, format!("`{name}` is declared twice"))
                .with_help(format!(
                    "it is first declared on line {}",
                    line_of(self.source, at)
                )));
        }
        if kind == Kind::Input && matches!(shape, Shape::Matrix(..)) {
            return Err(self
                .error(span, format!("`{name}`: a per-sample matrix input is not supported yet"))
                .with_help(format!(
                    "declare it with `param {name}{shape}` to share it across the batch, or flatten it into a vector"
                )));
        }
        if shape.size() > MAX_ELEMENTS {
            return Err(self.error(
                span,
                format!(
                    "`{name}` would have {} elements; at most {MAX_ELEMENTS} are allowed",
                    shape.size()
                ),
            ));
        }
        self.by_name.insert(name.clone(), self.variables.len());
        self.variables.push(Variable { name, kind, shape });
        self.declared_at.push(span);
        Ok(())
    }

    /// Lowers `expr` bottom-up with explicit stacks: a debug build spends
    /// kilobytes of call stack per level of recursion, and expressions may
    /// be nested 256 levels deep.
    fn lower(&mut self, expr: &Expr) -> Lowered {
        // `true` once the node's operands are on `values`.
        let mut tasks: Vec<(&Expr, bool)> = vec![(expr, false)];
        let mut values: Vec<Value> = Vec::new();
        while let Some((expr, operands_done)) = tasks.pop() {
            let value = match (&expr.kind, operands_done) {
                (ExprKind::Number(value), _) => self.number(*value, expr.span)?,
                (ExprKind::Name(name), _) => self.name(name, expr.span)?,
                (ExprKind::Neg(inner), false) => {
                    tasks.push((expr, true));
                    tasks.push((inner, false));
                    continue;
                }
                (ExprKind::Binary { lhs, rhs, .. }, false) => {
                    tasks.push((expr, true));
                    tasks.push((rhs, false));
                    tasks.push((lhs, false));
                    continue;
                }
                (
                    ExprKind::Call {
                        name,
                        name_span,
                        args,
                    },
                    false,
                ) => {
                    // Before the arguments, so that `foo(x)` reports `foo`.
                    self.check_call(name, *name_span, args.len(), expr.span)?;
                    tasks.push((expr, true));
                    tasks.extend(args.iter().rev().map(|arg| (arg, false)));
                    continue;
                }
                (ExprKind::Neg(_), true) => {
                    let operand = self.pop(&mut values, 1, expr)?;
                    match operand.as_slice() {
                        &[value] => self.negate(value),
                        _ => return Err(self.internal(expr)),
                    }
                }
                (ExprKind::Binary { op, lhs, rhs }, true) => {
                    let operands = self.pop(&mut values, 2, expr)?;
                    match operands.as_slice() {
                        &[a, b] => self.binary(*op, (a, lhs), (b, rhs), expr.span)?,
                        _ => return Err(self.internal(expr)),
                    }
                }
                (ExprKind::Call { name, args, .. }, true) => {
                    let operands = self.pop(&mut values, args.len(), expr)?;
                    Value::Node(self.call(name, &operands, args, expr.span)?)
                }
            };
            values.push(value);
        }
        match values.as_slice() {
            &[value] => Ok(value),
            _ => Err(self.internal(expr)),
        }
    }

    /// The last `count` values, in order.
    fn pop(&self, values: &mut Vec<Value>, count: usize, expr: &Expr) -> Parsed<Vec<Value>> {
        let start = values
            .len()
            .checked_sub(count)
            .ok_or_else(|| self.internal(expr))?;
        Ok(values.split_off(start))
    }

    /// An error for a broken invariant of the lowering itself, which would
    /// be a bug: reported rather than panicking.
    fn internal(&self, expr: &Expr) -> ParseError {
        self.error(
            expr.span,
            "internal error: this expression could not be lowered",
        )
        .with_help("please report it, with the program")
    }

    /// The node of an expression that must not be a matrix.
    fn node(&self, value: Value, expr: &Expr) -> Parsed<NodeId> {
        match value {
            Value::Node(id) => Ok(id),
            Value::Matrix { rows, cols, .. } => Err(self
                .error(
                    expr.span,
                    format!(
                        "`{}` is a matrix {}; a matrix may only be the left side of `@`",
                        self.text(expr.span),
                        Shape::Matrix(rows, cols)
                    ),
                )
                .with_help("multiply it by a vector: `W @ x`")),
        }
    }

    fn number(&mut self, value: f64, span: Span) -> Lowered {
        if !(value as f32).is_finite() {
            return Err(self.error(span, "this number is beyond the f32 range"));
        }
        Ok(Value::Node(self.constant(value)))
    }

    fn name(&mut self, name: &str, span: Span) -> Lowered {
        if name == "pi" {
            return Ok(Value::Node(self.constant(std::f64::consts::PI)));
        }
        if let Some(&index) = self.by_name.get(name) {
            let shape = self.variables.get(index).map_or(Shape::Scalar, |v| v.shape);
            let var = self.add(Op::Variable(index), shape);
            return Ok(match shape {
                Shape::Matrix(rows, cols) => Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale: None,
                },
                _ => Value::Node(var),
            });
        }
        if let Some(&id) = self.values.get(name) {
            return Ok(Value::Node(id));
        }
        if FUNCTIONS.contains(&name) || REDUCTIONS.contains(&name) {
            return Err(self
                .error(span, format!("`{name}` is a function, not a variable"))
                .with_help(format!("call it: {name}(x)")));
        }
        if self.bare {
            let index = self.variables.len();
            self.by_name.insert(name.to_owned(), index);
            self.variables.push(Variable {
                name: name.to_owned(),
                kind: Kind::Input,
                shape: Shape::Scalar,
            });
            self.declared_at.push(span);
            return Ok(Value::Node(self.add(Op::Variable(index), Shape::Scalar)));
        }
        if let Some(&at) = self.later.get(name) {
            return Err(self
                .error(span, format!("`{name}` is used before it is assigned"))
                .with_help(format!(
                    "it is assigned on line {}; assign it before this line",
                    line_of(self.source, at)
                )));
        }
        let mut known: Vec<&str> = self.variables.iter().map(|v| v.name.as_str()).collect();
        known.extend(self.values.keys().map(String::as_str));
        // Sorted so that a tie between suggestions is decided the same way
        // on every run, whatever the hash map's order.
        known.sort_unstable();
        let help = match suggest(name, &known) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!(
                "declare it: `input {name}[n]` or `param {name}[n]` (`input {name}` for a scalar)"
            ),
        };
        Err(self
            .error(span, format!("`{name}` is not declared"))
            .with_help(help))
    }

    /// `op` on two scalar nodes, for the factors of a scaled matrix.
    fn scale(&mut self, op: BinaryOp, a: Option<NodeId>, b: NodeId) -> NodeId {
        let a = a.unwrap_or_else(|| self.constant(1.0));
        self.apply(op, a, b)
    }

    fn negate(&mut self, value: Value) -> Value {
        let minus_one = self.constant(-1.0);
        match value {
            Value::Node(a) => Value::Node(self.apply(BinaryOp::Mul, minus_one, a)),
            Value::Matrix {
                var,
                rows,
                cols,
                scale,
            } => Value::Matrix {
                var,
                rows,
                cols,
                scale: Some(self.scale(BinaryOp::Mul, scale, minus_one)),
            },
        }
    }

    fn binary(
        &mut self,
        op: BinOp,
        (a, lhs): (Value, &Expr),
        (b, rhs): (Value, &Expr),
        span: Span,
    ) -> Lowered {
        let scalar = |id: NodeId| self.shape(id) == Shape::Scalar;
        match (op, a, b) {
            (BinOp::MatMul, _, _) => return self.matmul(a, b, lhs, rhs, span),
            (
                BinOp::Mul,
                Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                },
                Value::Node(s),
            )
            | (
                BinOp::Mul,
                Value::Node(s),
                Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                },
            ) if scalar(s) => {
                let scale = Some(self.scale(BinaryOp::Mul, scale, s));
                return Ok(Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                });
            }
            (
                BinOp::Div,
                Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                },
                Value::Node(s),
            ) if scalar(s) => {
                let scale = Some(self.scale(BinaryOp::Div, scale, s));
                return Ok(Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                });
            }
            _ => {}
        }
        let a = self.node(a, lhs)?;
        let b = self.node(b, rhs)?;
        let op = match op {
            BinOp::Add => BinaryOp::Add,
            BinOp::Sub => BinaryOp::Sub,
            BinOp::Mul => BinaryOp::Mul,
            BinOp::Div => BinaryOp::Div,
            BinOp::Pow | BinOp::MatMul => BinaryOp::Pow,
        };
        self.elementwise(op, (a, lhs.span), (b, rhs.span), span)
            .map(Value::Node)
    }

    /// `W @ x`, with any scalar factor written on `W` applied to the result.
    fn matmul(&mut self, a: Value, b: Value, lhs: &Expr, rhs: &Expr, span: Span) -> Lowered {
        let whole = self.text(span);
        let (left, right) = (self.text(lhs.span), self.text(rhs.span));
        let Value::Matrix {
            var,
            rows,
            cols,
            scale,
        } = a
        else {
            let shape = self.node(a, lhs).map(|id| self.shape(id))?;
            return Err(self
                .error(
                    span,
                    format!(
                        "`{whole}`: the left side of `@` must be a matrix, but {left} is {shape}"
                    ),
                )
                .with_help("declare a matrix with `param W[m,n]`"));
        };
        let x = match b {
            Value::Node(x) => x,
            Value::Matrix { rows, cols, .. } => {
                return Err(self
                    .error(
                        span,
                        format!(
                            "`{whole}`: the right side of `@` must be a vector, but {right} is a matrix {}",
                            Shape::Matrix(rows, cols)
                        ),
                    )
                    .with_help("matrix-matrix products are not supported; write `A @ (B @ x)`"));
            }
        };
        let x_shape = self.shape(x);
        if x_shape != Shape::Vector(cols) {
            return Err(self
                .error(
                    span,
                    format!(
                        "`{whole}`: {left} is {} but {right} is {x_shape}",
                        Shape::Matrix(rows, cols)
                    ),
                )
                .with_help("`@` needs a matrix [m,n] and a vector [n]"));
        }
        let product = self.add(Op::MatVec(var, x), Shape::Vector(rows));
        Ok(Value::Node(match scale {
            Some(s) if self.constant_of(s) != Some(1.0) => self.apply(BinaryOp::Mul, s, product),
            _ => product,
        }))
    }

    /// An element-wise binary operation, after checking that the shapes
    /// agree (equal, or one a scalar).
    fn elementwise(
        &mut self,
        op: BinaryOp,
        (a, lhs): (NodeId, Span),
        (b, rhs): (NodeId, Span),
        span: Span,
    ) -> Parsed<NodeId> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa != sb && sa != Shape::Scalar && sb != Shape::Scalar {
            return Err(self
                .error(
                    span,
                    format!(
                        "`{}`: {} is {sa} but {} is {sb}",
                        self.text(span),
                        self.text(lhs),
                        self.text(rhs)
                    ),
                )
                .with_help("element-wise operations need equal shapes, or a scalar on one side"));
        }
        Ok(self.apply(op, a, b))
    }

    /// `op` on nodes whose shapes agree, folding constants as graphs do.
    fn apply(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
        let (sa, sb) = (self.shape(a), self.shape(b));
        let shape = if sa == Shape::Scalar { sb } else { sa };
        match (op, self.constant_of(a), self.constant_of(b)) {
            (_, Some(x), Some(y)) => {
                let value = op.value_and_partials(x, y).0;
                // Folding may leave f32's range; the node then stays and is
                // evaluated (to the same infinity or NaN) per sample.
                if (value as f32).is_finite() {
                    return self.constant(value);
                }
                self.add(Op::Binary(op, a, b), shape)
            }
            (BinaryOp::Pow, None, Some(exponent)) => {
                let op = UnaryOp::Pow {
                    exponent: exponent as f32,
                };
                self.add(Op::Unary(op, a), sa)
            }
            _ => self.add(Op::Binary(op, a, b), shape),
        }
    }

    fn unary(&mut self, op: UnaryOp, a: NodeId) -> NodeId {
        if let Some(c) = self.constant_of(a) {
            let value = op.value_and_derivative(c).0;
            if (value as f32).is_finite() {
                return self.constant(value);
            }
        }
        let shape = self.shape(a);
        self.add(Op::Unary(op, a), shape)
    }

    /// Checks a call's function and number of arguments before the
    /// arguments are lowered, so that `foo(x)` reports `foo` first.
    fn check_call(&self, name: &str, name_span: Span, count: usize, span: Span) -> Parsed<()> {
        if !FUNCTIONS.contains(&name) && !REDUCTIONS.contains(&name) {
            let mut known: Vec<&str> = FUNCTIONS.to_vec();
            known.extend(REDUCTIONS);
            let help = match suggest(name, &known) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("known functions: {}", known.join(", ")),
            };
            return Err(self
                .error(name_span, format!("unknown function `{name}`"))
                .with_help(help));
        }
        let (wanted, fits) = match name {
            "min" | "max" | "pow" | "dot" => ("two arguments", count == 2),
            "leaky_relu" | "elu" => ("one or two arguments", count == 1 || count == 2),
            _ => ("one argument", count == 1),
        };
        if fits {
            return Ok(());
        }
        Err(self.error(span, format!("`{name}` takes {wanted}, got {count}")))
    }

    /// A known function applied to lowered arguments of the right number.
    fn call(&mut self, name: &str, values: &[Value], args: &[Expr], span: Span) -> Parsed<NodeId> {
        let mut nodes = Vec::with_capacity(values.len());
        for (&value, arg) in values.iter().zip(args) {
            nodes.push((self.node(value, arg)?, arg.span));
        }
        let arity = || ParseError::new(self.source, span, format!("wrong arguments to `{name}`"));
        match (name, nodes.as_slice()) {
            ("sum" | "mean", &[(x, at)]) => {
                let shape = self.shape(x);
                if !matches!(shape, Shape::Vector(_)) {
                    return Err(self
                        .error(
                            at,
                            format!("`{name}` needs a vector, but {} is {shape}", self.text(at)),
                        )
                        .with_help(format!("`{name}` reduces a vector to a scalar")));
                }
                let op = if name == "sum" {
                    Op::Sum(x)
                } else {
                    Op::Mean(x)
                };
                Ok(self.add(op, Shape::Scalar))
            }
            ("dot", &[(a, lhs), (b, rhs)]) => {
                let (sa, sb) = (self.shape(a), self.shape(b));
                match (sa, sb) {
                    (Shape::Vector(m), Shape::Vector(n)) if m == n => {
                        Ok(self.add(Op::Dot(a, b), Shape::Scalar))
                    }
                    (Shape::Vector(_), Shape::Vector(_)) => Err(self
                        .error(
                            span,
                            format!(
                                "`{}`: {} is {sa} but {} is {sb}",
                                self.text(span),
                                self.text(lhs),
                                self.text(rhs)
                            ),
                        )
                        .with_help("`dot` needs two vectors of one length")),
                    _ => {
                        let (at, shape) = if sa == Shape::Scalar {
                            (lhs, sa)
                        } else {
                            (rhs, sb)
                        };
                        Err(self
                            .error(
                                span,
                                format!(
                                    "`{}`: `dot` needs two vectors, but {} is {shape}",
                                    self.text(span),
                                    self.text(at)
                                ),
                            )
                            .with_help("multiply by a scalar with `*`"))
                    }
                }
            }
            ("min" | "max" | "pow", &[a, b]) => {
                let op = match name {
                    "min" => BinaryOp::Min,
                    "max" => BinaryOp::Max,
                    _ => BinaryOp::Pow,
                };
                self.elementwise(op, a, b, span)
            }
            ("leaky_relu" | "elu", [(x, _), slope @ ..]) => {
                let alpha = match slope {
                    [] if name == "elu" => 1.0,
                    [] => 0.01,
                    [(id, at), ..] => match self.constant_of(*id) {
                        Some(alpha) => alpha as f32,
                        None => {
                            return Err(self
                                .error(*at, format!("the slope of `{name}` must be a constant")));
                        }
                    },
                };
                let op = if name == "elu" {
                    UnaryOp::Elu { alpha }
                } else {
                    UnaryOp::LeakyRelu { alpha }
                };
                Ok(self.unary(op, *x))
            }
            (_, &[(x, _)]) => {
                let op = UnaryOp::catalogue()
                    .into_iter()
                    .find(|op| op.name() == name && op.parameter().is_none());
                match op {
                    Some(op) => Ok(self.unary(op, x)),
                    None => Err(arity()),
                }
            }
            _ => Err(arity()),
        }
    }

    /// The program of the nodes `output` depends on, renumbered in order.
    fn finish(self, output: NodeId, output_name: String) -> Program {
        let count = self.nodes.len();
        let mut live = vec![false; count];
        if let Some(slot) = live.get_mut(output) {
            *slot = true;
        }
        for id in (0..count).rev() {
            if !live.get(id).copied().unwrap_or(false) {
                continue;
            }
            if let Some(op) = self.nodes.get(id) {
                for operand in op.operands() {
                    if let Some(slot) = live.get_mut(operand) {
                        *slot = true;
                    }
                }
            }
        }
        let mut renumbered = vec![0; count];
        let mut program = Program {
            variables: self.variables,
            nodes: Vec::new(),
            shapes: Vec::new(),
            output: 0,
            output_name,
            names: Vec::new(),
        };
        let kept = self.nodes.into_iter().zip(self.shapes).zip(self.names);
        for (id, ((op, shape), name)) in kept.enumerate() {
            if !live.get(id).copied().unwrap_or(false) {
                continue;
            }
            let new = |old: NodeId| renumbered.get(old).copied().unwrap_or(0);
            let op = match op {
                Op::Variable(_) | Op::Constant(_) => op,
                Op::Unary(f, a) => Op::Unary(f, new(a)),
                Op::Binary(f, a, b) => Op::Binary(f, new(a), new(b)),
                Op::MatVec(w, x) => Op::MatVec(new(w), new(x)),
                Op::Sum(a) => Op::Sum(new(a)),
                Op::Mean(a) => Op::Mean(new(a)),
                Op::Dot(a, b) => Op::Dot(new(a), new(b)),
            };
            if let Some(slot) = renumbered.get_mut(id) {
                *slot = program.nodes.len();
            }
            program.nodes.push(op);
            program.shapes.push(shape);
            program.names.push(name);
        }
        program.output = renumbered.get(output).copied().unwrap_or(0);
        program
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_program(text: &str) -> bool {
        let tokens = tokenize(text).unwrap_or_default();
        statement_starts(&tokens)
            .iter()
            .any(|&start| opens_statement(&tokens, start))
    }

    #[test]
    fn programs_are_told_from_bare_expressions() {
        for text in [
            "input x",
            "param W[2,2]",
            "output y",
            "y = x",
            "\n\n  h = 1\n",
        ] {
            assert!(is_program(text), "{text:?}");
        }
        for text in [
            "x",
            "input + 1",
            "output(x)",
            "sin(x) * y",
            "",
            "# input x\n",
        ] {
            assert!(!is_program(text), "{text:?}");
        }
    }

    #[test]
    fn statements_start_after_line_breaks() {
        let tokens = tokenize("a\n\n b c\n").unwrap_or_default();
        assert_eq!(statement_starts(&tokens), vec![0, 3]);
    }

    #[test]
    fn messages_quote_long_text_shortened() {
        let source = format!("{} + y", "x".repeat(60));
        let lowering = Lowering::new(&source, true);
        let text = lowering.text(Span::new(0, source.len()));
        assert_eq!(text.chars().count(), 40);
        assert!(text.ends_with("..."));
        assert_eq!(lowering.text(Span::new(0, 3)), "xxx");
    }
}
