//! Lowering the text language's expressions into graphs: names become
//! inputs, repeated subexpressions become one shared node, constant
//! subexpressions are folded, and `x^c` with a constant c becomes the unary
//! `pow(c)`. Every error points at the text that caused it.

use super::{Graph, GraphBuilder, Node, NodeId};
use crate::error::{Error, Result};
use crate::lang::{BinOp, Expr, ExprKind, ParseError, Span, parse_expression, suggest};
use crate::ops::{BinaryOp, UnaryOp};

/// Every function the expression language knows, for suggestions and help:
/// read from the op tables (each unary operation by name, and the binary
/// ones written as calls), so a new operation needs no entry here.
pub fn functions() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = UnaryOp::catalogue()
        .into_iter()
        .map(|op| op.name())
        .collect();
    names.extend(BinaryOp::call_names());
    names.push("where");
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(*name));
    names
}

/// The order of the inputs, which is the order of the derivative columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputOrder {
    /// Each free name is an input, in order of first appearance.
    FirstAppearance,
    /// Exactly these inputs, in this order; a name not among them is an
    /// error, and one that does not appear has a derivative column of zeros.
    Given(Vec<String>),
}

impl Graph {
    /// Parses and lowers an expression such as `ln(sin(x^3)^2)`.
    pub fn parse(text: &str, order: InputOrder) -> Result<Graph> {
        let expr = parse_expression(text).map_err(Error::Parse)?;
        Graph::lower(&expr, text, order)
    }

    /// Lowers a parsed expression; `source` is its text, for error messages.
    pub fn lower(expr: &Expr, source: &str, order: InputOrder) -> Result<Graph> {
        let (builder, fixed) = match order {
            InputOrder::FirstAppearance => (GraphBuilder::default(), false),
            InputOrder::Given(names) => (GraphBuilder::with_inputs(names), true),
        };
        let mut lowering = Lowering {
            builder,
            source,
            fixed,
        };
        let output = lowering.lower(expr).map_err(Error::Parse)?;
        Ok(lowering.builder.finish(output))
    }
}

struct Lowering<'a> {
    builder: GraphBuilder,
    source: &'a str,
    /// Whether the inputs were given up front (unknown names are errors).
    fixed: bool,
}

type Lowered = std::result::Result<NodeId, ParseError>;

impl Lowering<'_> {
    fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError::new(self.source, span, message)
    }

    fn constant_of(&self, id: NodeId) -> Option<f64> {
        match self.builder.node(id) {
            Node::Constant(c) => Some(c),
            _ => None,
        }
    }

    /// A folded constant, or `None` when folding would leave f32's finite
    /// range (the node is then kept and evaluated per sample).
    fn folded(&mut self, value: f64) -> Option<NodeId> {
        let rounded = value as f32;
        rounded.is_finite().then(|| self.builder.constant(value))
    }

    fn lower(&mut self, expr: &Expr) -> Lowered {
        match &expr.kind {
            ExprKind::Number(value) => {
                if !(*value as f32).is_finite() {
                    return Err(self.error(expr.span, "this number is beyond the f32 range"));
                }
                Ok(self.builder.constant(*value))
            }
            ExprKind::Name(name) => self.name(name, expr.span),
            ExprKind::Neg(inner) => {
                let a = self.lower(inner)?;
                if let Some(c) = self.constant_of(a) {
                    return Ok(self.builder.constant(-c));
                }
                let minus_one = self.builder.constant(-1.0);
                Ok(self.builder.add(Node::Binary(BinaryOp::Mul, minus_one, a)))
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.lower(lhs)?;
                let b = self.lower(rhs)?;
                let op = match op {
                    BinOp::Add => BinaryOp::Add,
                    BinOp::Sub => BinaryOp::Sub,
                    BinOp::Mul => BinaryOp::Mul,
                    BinOp::Div => BinaryOp::Div,
                    BinOp::Pow => BinaryOp::Pow,
                    BinOp::Lt => BinaryOp::Lt,
                    BinOp::Le => BinaryOp::Le,
                    BinOp::Gt => BinaryOp::Gt,
                    BinOp::Ge => BinaryOp::Ge,
                    // Graphs are element-wise over scalars; matrices live in programs.
                    BinOp::MatMul => {
                        return Err(self.error(
                            expr.span,
                            "`@` needs a matrix and a vector: write a program with `param W[m,n]`",
                        ));
                    }
                };
                Ok(self.binary(op, a, b))
            }
            ExprKind::Call {
                name,
                name_span,
                args,
            } => self.call(name, *name_span, args, expr.span),
            // Graphs are element-wise over scalars; vectors live in programs.
            ExprKind::Index { .. } | ExprKind::List(_) => Err(self.error(
                expr.span,
                "indexing and `[...]` need vectors: write a program with `input x[n]`",
            )),
        }
    }

    fn name(&mut self, name: &str, span: Span) -> Lowered {
        if name == "pi" {
            return Ok(self.builder.constant(std::f64::consts::PI));
        }
        if self.fixed && !self.builder.inputs().iter().any(|n| n == name) {
            let known: Vec<&str> = self.builder.inputs().iter().map(String::as_str).collect();
            let help = match suggest(name, &known) {
                Some(near) => format!("did you mean `{near}`? the inputs are {}", known.join(", ")),
                None => format!("the inputs are {}", known.join(", ")),
            };
            return Err(self
                .error(span, format!("`{name}` is not an input"))
                .with_help(help));
        }
        if functions().contains(&name) {
            return Err(self
                .error(span, format!("`{name}` is a function, not a variable"))
                .with_help(format!("call it: {name}(x)")));
        }
        Ok(self.builder.input(name))
    }

    fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
        match (op, self.constant_of(a), self.constant_of(b)) {
            (_, Some(x), Some(y)) => {
                let value = op.value_and_partials(x, y).0;
                self.folded(value)
                    .unwrap_or_else(|| self.builder.add(Node::Binary(op, a, b)))
            }
            (BinaryOp::Pow, None, Some(exponent)) => self.builder.add(Node::Unary(
                UnaryOp::Pow {
                    exponent: exponent as f32,
                },
                a,
            )),
            _ => self.builder.add(Node::Binary(op, a, b)),
        }
    }

    fn unary(&mut self, op: UnaryOp, a: NodeId) -> NodeId {
        if let Some(c) = self.constant_of(a) {
            if let Some(id) = self.folded(op.value_and_derivative(c).0) {
                return id;
            }
        }
        self.builder.add(Node::Unary(op, a))
    }

    fn call(&mut self, name: &str, name_span: Span, args: &[Expr], span: Span) -> Lowered {
        let arity = |wanted: &str| format!("`{name}` takes {wanted}, got {}", args.len());
        if let Some(op) = BinaryOp::from_call(name) {
            let [lhs, rhs] = args else {
                return Err(self.error(span, arity("two arguments")));
            };
            let a = self.lower(lhs)?;
            let b = self.lower(rhs)?;
            return Ok(self.binary(op, a, b));
        }
        match name {
            "where" => {
                let [c, a, b] = args else {
                    return Err(self.error(span, arity("three arguments")));
                };
                let (c, a, b) = (self.lower(c)?, self.lower(a)?, self.lower(b)?);
                let a = self.binary(BinaryOp::WhereA, c, a);
                let b = self.binary(BinaryOp::WhereB, c, b);
                Ok(self.binary(BinaryOp::Add, a, b))
            }
            "leaky_relu" | "elu" => {
                let (x, alpha) = match args {
                    [x] => (x, if name == "elu" { 1.0 } else { 0.01 }),
                    [x, alpha] => {
                        let id = self.lower(alpha)?;
                        let Some(alpha) = self.constant_of(id) else {
                            return Err(self.error(
                                alpha.span,
                                format!("the slope of `{name}` must be a constant"),
                            ));
                        };
                        (x, alpha as f32)
                    }
                    _ => return Err(self.error(span, arity("one or two arguments"))),
                };
                let a = self.lower(x)?;
                let op = if name == "elu" {
                    UnaryOp::Elu { alpha }
                } else {
                    UnaryOp::LeakyRelu { alpha }
                };
                Ok(self.unary(op, a))
            }
            _ => {
                let op = UnaryOp::catalogue()
                    .into_iter()
                    .find(|op| op.name() == name && op.parameter().is_none());
                let Some(op) = op else {
                    let known = functions();
                    let help = match suggest(name, &known) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("known functions: {}", known.join(", ")),
                    };
                    return Err(self
                        .error(name_span, format!("unknown function `{name}`"))
                        .with_help(help));
                };
                let [x] = args else {
                    return Err(self.error(span, arity("one argument")));
                };
                let a = self.lower(x)?;
                Ok(self.unary(op, a))
            }
        }
    }
}
