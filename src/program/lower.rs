//! Lowering expressions into a [`Program`]'s nodes: names resolve to
//! variables and earlier assignments, identical subexpressions become one
//! node, constants fold, and whatever reaches the output is kept.
//!
//! Lowering walks expression trees with explicit stacks rather than
//! recursion, and assignments refer to earlier nodes by id, so neither deep
//! nesting nor a long program grows the call stack. The operations and
//! their shape rules are in `rules`.

use std::collections::HashMap;

use super::{Kind, MAX_ELEMENTS, NodeId, Op, Program, Shape, Variable};
use crate::lang::{Expr, ExprKind, ParseError, Span, suggest};
use crate::ops::{BinaryOp, ReduceOp, functions};

/// Words that begin statements, so never names.
pub(super) const KEYWORDS: [&str; 3] = ["input", "param", "output"];

/// The functions of whole vectors that programs lower into the reductions
/// and selections: each call, and its derivative as `chainrule ops` shows
/// it (the README's table gives the edges).
pub const VECTOR_FUNCTIONS: [(&str, &str); 10] = [
    ("softmax(z)", "diag(s) - s s^T, s = softmax(z)"),
    ("log_softmax(z)", "I - 1 s^T, s = softmax(z)"),
    ("mse(y, t)", "2 (y - t) / n in y, -2 (y - t) / n in t"),
    (
        "cross_entropy(z, t)",
        "softmax(z) sum(t) - t in z, -log_softmax(z) in t",
    ),
    ("norm(x)", "x / norm(x) (0 at x = 0)"),
    ("max(x)", "1/t at each of the t largest, 0 elsewhere"),
    ("min(x)", "1/t at each of the t smallest, 0 elsewhere"),
    ("cross(a, b)", "[b]x^T in a, [a]x in b"),
    ("outer(a, b)", "b_j in a_i, a_i in b_j"),
    ("transpose(A)", "a selection: each entry moves"),
];

/// The functions programs add to those of element-wise expressions: the
/// reductions of the op table ([`ReduceOp`]) and the constructs lowered
/// into them ([`VECTOR_FUNCTIONS`]; `max` and `min` of one argument are
/// among them, of two they are element-wise).
pub(super) fn vector_functions() -> Vec<&'static str> {
    let element_wise = crate::ops::functions();
    let composites = VECTOR_FUNCTIONS
        .iter()
        .filter_map(|(call, _)| call.split('(').next())
        .filter(|name| !element_wise.contains(name));
    let reductions = ReduceOp::catalogue().into_iter().map(ReduceOp::name);
    reductions.chain(composites).collect()
}

pub(super) type Parsed<T> = Result<T, ParseError>;

/// A declared name and its shape.
pub(super) struct Declaration {
    pub(super) name: String,
    pub(super) name_span: Span,
    /// The name with its brackets.
    pub(super) span: Span,
    pub(super) shape: Shape,
}

/// The 1-based line on which `span` starts.
pub(super) fn line_of(text: &str, span: Span) -> usize {
    text.get(..span.start)
        .map_or(1, |head| head.matches('\n').count() + 1)
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
    VecMat(NodeId, NodeId),
    Reduce(ReduceOp, NodeId, Option<NodeId>),
    ShiftMax(NodeId),
    /// The operand, the first element, the length, and whether a scalar.
    Slice(NodeId, usize, usize, bool),
    Concat(NodeId, NodeId),
}

impl Key {
    fn of(op: Op) -> Key {
        match op {
            Op::Variable(v) => Key::Variable(v),
            Op::Constant(c) => Key::Constant(c.to_bits()),
            Op::Unary(op, a) => Key::Unary(op.name(), op.parameter().map_or(0, f32::to_bits), a),
            Op::Binary(op, a, b) => Key::Binary(op, a, b),
            Op::MatVec(w, x) => Key::MatVec(w, x),
            Op::VecMat(w, x) => Key::VecMat(w, x),
            Op::Reduce(r, a, b) => Key::Reduce(r, a, b),
            Op::ShiftMax(a) => Key::ShiftMax(a),
            Op::Slice(a, start, shape) => {
                Key::Slice(a, start, shape.size(), shape == Shape::Scalar)
            }
            Op::Concat(a, b) => Key::Concat(a, b),
        }
    }
}

/// What an expression lowers to: a node, a per-sample matrix, or a matrix
/// param waiting for the vector on the right of its `@`, with any scalar
/// factor written on it (`-W`, `0.5 W`), which is applied to the product
/// instead.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value {
    Node(NodeId),
    /// A matrix that varies per sample (a matrix input, or computed from
    /// one): a vector node of its `rows * cols` elements, row-major. Every
    /// operation on it lowers to the vector operations and selections.
    Grid {
        node: NodeId,
        rows: usize,
        cols: usize,
    },
    /// A param matrix: `rows` and `cols` as written, which for
    /// `transpose(W)` are W's columns and rows.
    Matrix {
        var: NodeId,
        rows: usize,
        cols: usize,
        scale: Option<NodeId>,
        transposed: bool,
    },
}

/// Builds the program's nodes from expressions, sharing identical ones.
pub(super) struct Lowering<'a> {
    pub(super) source: &'a str,
    /// A bare expression: free names become scalar inputs.
    pub(super) bare: bool,
    /// A bare expression whose inputs were given up front: a free name
    /// not among them is an error.
    fixed: bool,
    /// Lowering an op table's derivative expression, where `strong_mul`
    /// (not in the language) is known.
    pub(super) internal: bool,
    pub(super) variables: Vec<Variable>,
    /// Where each variable was declared, for "declared twice".
    pub(super) declared_at: Vec<Span>,
    pub(super) by_name: HashMap<String, usize>,
    pub(super) nodes: Vec<Op>,
    pub(super) shapes: Vec<Shape>,
    pub(super) names: Vec<Option<String>>,
    shared: HashMap<Key, NodeId>,
    /// Names assigned so far.
    pub(super) values: HashMap<String, Value>,
    /// Names assigned on lines not lowered yet.
    pub(super) later: HashMap<String, Span>,
}

pub(super) type Lowered = Parsed<Value>;

impl<'a> Lowering<'a> {
    pub(super) fn new(source: &'a str, bare: bool) -> Self {
        Lowering {
            source,
            bare,
            fixed: false,
            internal: false,
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

    /// A bare expression whose scalar inputs are exactly `names`, in this
    /// order (a name that does not appear is an input the value does not
    /// depend on).
    pub(super) fn with_inputs(source: &'a str, names: &[String]) -> Self {
        let mut lowering = Lowering::new(source, true);
        lowering.fixed = true;
        for name in names {
            if lowering.by_name.contains_key(name) {
                continue;
            }
            lowering
                .by_name
                .insert(name.clone(), lowering.variables.len());
            lowering.variables.push(Variable {
                name: name.clone(),
                kind: Kind::Input,
                shape: Shape::Scalar,
            });
            lowering.declared_at.push(Span::new(0, 0));
        }
        lowering
    }

    pub(super) fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError::new(self.source, span, message)
    }

    /// The text at `span` for a message, on one line and not too long.
    pub(super) fn text(&self, span: Span) -> String {
        let text = self.source.get(span.start..span.end).unwrap_or("?");
        let words: Vec<&str> = text.split_whitespace().collect();
        let text = words.join(" ");
        if text.chars().count() <= 40 {
            return text;
        }
        let head: String = text.chars().take(37).collect();
        format!("{head}...")
    }

    pub(super) fn shape(&self, id: NodeId) -> Shape {
        self.shapes.get(id).copied().unwrap_or(Shape::Scalar)
    }

    pub(super) fn constant_of(&self, id: NodeId) -> Option<f64> {
        match self.nodes.get(id) {
            Some(&Op::Constant(c)) => Some(c),
            _ => None,
        }
    }

    pub(super) fn is_taken(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.values.contains_key(name)
    }

    /// Adds `op` of shape `shape`, or finds the identical node.
    pub(super) fn add(&mut self, op: Op, shape: Shape) -> NodeId {
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
    pub(super) fn constant(&mut self, value: f64) -> NodeId {
        self.add(Op::Constant(f64::from(value as f32)), Shape::Scalar)
    }

    /// Rejects keywords, functions and `pi` as names of new values.
    pub(super) fn check_new_name(&self, name: &str, span: Span) -> Parsed<()> {
        let what = if KEYWORDS.contains(&name) {
            "a keyword"
        } else if functions().contains(&name) || vector_functions().contains(&name) {
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

    pub(super) fn already_declared(&self, name: &str, index: usize, span: Span) -> ParseError {
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

    pub(super) fn declare(&mut self, kind: Kind, declaration: Declaration) -> Parsed<()> {
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
    pub(super) fn lower(&mut self, expr: &Expr) -> Lowered {
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
                (ExprKind::Index { base, .. }, false) => {
                    tasks.push((expr, true));
                    tasks.push((base, false));
                    continue;
                }
                (ExprKind::List(items), false) => {
                    tasks.push((expr, true));
                    tasks.extend(items.iter().rev().map(|item| (item, false)));
                    continue;
                }
                (
                    ExprKind::Index {
                        base,
                        start,
                        end,
                        brackets,
                    },
                    true,
                ) => {
                    let operand = self.pop(&mut values, 1, expr)?;
                    match *operand.as_slice() {
                        [Value::Grid { node, rows, cols }] => {
                            self.grid_index((node, rows, cols), base.span, *start, *end, *brackets)?
                        }
                        [value] => {
                            let node = self.node(value, base)?;
                            Value::Node(self.index(node, base.span, *start, *end, *brackets)?)
                        }
                        _ => return Err(self.internal(expr)),
                    }
                }
                (ExprKind::List(items), true) => {
                    let parts = self.pop(&mut values, items.len(), expr)?;
                    let mut nodes = Vec::with_capacity(parts.len());
                    for (&part, item) in parts.iter().zip(items) {
                        nodes.push(self.node(part, item)?);
                    }
                    Value::Node(self.assemble(&nodes, expr)?)
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
                    self.call(name, &operands, args, expr.span)?
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
    pub(super) fn pop(
        &self,
        values: &mut Vec<Value>,
        count: usize,
        expr: &Expr,
    ) -> Parsed<Vec<Value>> {
        let start = values
            .len()
            .checked_sub(count)
            .ok_or_else(|| self.internal(expr))?;
        Ok(values.split_off(start))
    }

    /// An error for a broken invariant of the lowering itself, which would
    /// be a bug: reported rather than panicking.
    pub(super) fn internal(&self, expr: &Expr) -> ParseError {
        self.error(
            expr.span,
            "internal error: this expression could not be lowered",
        )
        .with_help("please report it, with the program")
    }

    /// The node of a value that may be a per-sample matrix (its elements,
    /// row-major), for an assignment or the output.
    pub(super) fn flat(&self, value: Value, expr: &Expr) -> Parsed<NodeId> {
        match value {
            Value::Grid { node, .. } => Ok(node),
            _ => self.node(value, expr),
        }
    }

    /// The node of an expression that must not be a matrix.
    pub(super) fn node(&self, value: Value, expr: &Expr) -> Parsed<NodeId> {
        match value {
            Value::Node(id) => Ok(id),
            Value::Grid { rows, cols, .. } => Err(self
                .error(
                    expr.span,
                    format!(
                        "`{}` is a matrix {}, but a scalar or a vector is needed here",
                        self.text(expr.span),
                        Shape::Matrix(rows, cols)
                    ),
                )
                .with_help("take a row `A[i]`, an element `A[i, j]`, or multiply: `A @ x`")),
            Value::Matrix { rows, cols, .. } => Err(self.param_matrix_error(expr, rows, cols)),
        }
    }

    /// A param matrix `expr` where it cannot stand: it only multiplies.
    pub(super) fn param_matrix_error(&self, expr: &Expr, rows: usize, cols: usize) -> ParseError {
        self.error(
            expr.span,
            format!(
                "`{}` is a param matrix {}; a param matrix may only be multiplied with `@`",
                self.text(expr.span),
                Shape::Matrix(rows, cols)
            ),
        )
        .with_help("multiply it: `W @ x`, `x @ W`, `transpose(W) @ x`, `W @ A`, `A @ W`")
    }

    pub(super) fn number(&mut self, value: f64, span: Span) -> Lowered {
        if !(value as f32).is_finite() {
            return Err(self.error(span, "this number is beyond the f32 range"));
        }
        Ok(Value::Node(self.constant(value)))
    }

    pub(super) fn name(&mut self, name: &str, span: Span) -> Lowered {
        if name == "pi" {
            return Ok(Value::Node(self.constant(std::f64::consts::PI)));
        }
        if let Some(&index) = self.by_name.get(name) {
            let (shape, kind) = self
                .variables
                .get(index)
                .map_or((Shape::Scalar, Kind::Input), |v| (v.shape, v.kind));
            if let (Shape::Matrix(rows, cols), Kind::Input) = (shape, kind) {
                // A per-sample matrix is read as its elements, row-major.
                let node = self.add(Op::Variable(index), Shape::Vector(rows * cols));
                return Ok(Value::Grid { node, rows, cols });
            }
            let var = self.add(Op::Variable(index), shape);
            return Ok(match shape {
                Shape::Matrix(rows, cols) => Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale: None,
                    transposed: false,
                },
                _ => Value::Node(var),
            });
        }
        if let Some(&value) = self.values.get(name) {
            return Ok(value);
        }
        if functions().contains(&name) || vector_functions().contains(&name) {
            return Err(self
                .error(span, format!("`{name}` is a function, not a variable"))
                .with_help(format!("call it: {name}(x)")));
        }
        if self.fixed {
            let known: Vec<&str> = self.variables.iter().map(|v| v.name.as_str()).collect();
            let help = match suggest(name, &known) {
                Some(near) => format!("did you mean `{near}`? the inputs are {}", known.join(", ")),
                None => format!("the inputs are {}", known.join(", ")),
            };
            return Err(self
                .error(span, format!("`{name}` is not an input"))
                .with_help(help));
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

    /// The program of the nodes `output` depends on, renumbered in order.
    pub(super) fn finish(self, output: NodeId, output_name: String) -> Program {
        Program {
            variables: self.variables,
            nodes: self.nodes,
            shapes: self.shapes,
            output,
            output_name,
            names: self.names,
        }
        .pruned_to(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
