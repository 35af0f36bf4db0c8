//! The operations of programs and their shape rules: element-wise
//! operations on equal shapes or with a scalar met by every element,
//! `@` on a matrix param and a vector, the reductions, and the functions,
//! each rejecting shapes that disagree with a message naming both.

use super::lower::{Lowered, Lowering, Parsed, Value, vector_functions};
use super::{NodeId, Op, Shape};
use crate::lang::{BinOp, Expr, ParseError, Span, suggest};
use crate::ops::functions;
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};

/// Other libraries' names for functions this language spells otherwise
/// (NumPy's and JAX's `log` is `ln` here), for the unknown-function help.
const OTHER_NAMES: [(&str, &str); 7] = [
    ("log", "ln"),
    ("arctan", "atan"),
    ("arcsinh", "asinh"),
    ("arccosh", "acosh"),
    ("arctanh", "atanh"),
    ("power", "pow"),
    ("absolute", "abs"),
];

impl Lowering<'_> {
    /// `op` on two scalar nodes, for the factors of a scaled matrix.
    pub(super) fn scale(&mut self, op: BinaryOp, a: Option<NodeId>, b: NodeId) -> NodeId {
        let a = a.unwrap_or_else(|| self.constant(1.0));
        self.apply(op, a, b)
    }

    pub(super) fn negate(&mut self, value: Value) -> Value {
        let minus_one = self.constant(-1.0);
        match value {
            Value::Node(a) => Value::Node(self.apply(BinaryOp::Mul, minus_one, a)),
            Value::Grid { node, rows, cols } => Value::Grid {
                node: self.apply(BinaryOp::Mul, minus_one, node),
                rows,
                cols,
            },
            Value::Matrix {
                var,
                rows,
                cols,
                scale,
                transposed,
            } => Value::Matrix {
                var,
                rows,
                cols,
                scale: Some(self.scale(BinaryOp::Mul, scale, minus_one)),
                transposed,
            },
        }
    }

    pub(super) fn binary(
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
                    transposed,
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
                    transposed,
                },
            ) if scalar(s) => {
                let scale = Some(self.scale(BinaryOp::Mul, scale, s));
                return Ok(Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                    transposed,
                });
            }
            (
                BinOp::Div,
                Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                    transposed,
                },
                Value::Node(s),
            ) if scalar(s) => {
                let scale = Some(self.scale(BinaryOp::Div, scale, s));
                return Ok(Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                    transposed,
                });
            }
            (_, Value::Grid { .. }, _) | (_, _, Value::Grid { .. }) => {
                return self.grid_binary(op, (a, lhs), (b, rhs), span);
            }
            _ => {}
        }
        let a = self.node(a, lhs)?;
        let b = self.node(b, rhs)?;
        let op = elementwise_op(op).ok_or_else(|| self.internal(lhs))?;
        self.elementwise(op, (a, lhs.span), (b, rhs.span), span)
            .map(Value::Node)
    }

    /// `W @ x`, with any scalar factor written on `W` applied to the result.
    pub(super) fn matmul(
        &mut self,
        a: Value,
        b: Value,
        lhs: &Expr,
        rhs: &Expr,
        span: Span,
    ) -> Lowered {
        let whole = self.text(span);
        let (left, right) = (self.text(lhs.span), self.text(rhs.span));
        let (
            Value::Matrix {
                var,
                rows,
                cols,
                scale,
                transposed,
            },
            Value::Node(x),
        ) = (a, b)
        else {
            return self.grid_matmul(a, b, (lhs, rhs), span);
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
        let product = self.param_times(var, transposed, x, rows);
        Ok(Value::Node(self.scaled(scale, product)))
    }

    /// A param matrix as written (its transpose when `transposed`), of
    /// `rows` rows, times a vector.
    pub(super) fn param_times(
        &mut self,
        var: NodeId,
        transposed: bool,
        x: NodeId,
        rows: usize,
    ) -> NodeId {
        let op = if transposed {
            Op::VecMat(var, x)
        } else {
            Op::MatVec(var, x)
        };
        self.add(op, Shape::Vector(rows))
    }

    /// `node` times the scalar factor written on a matrix, if any.
    pub(super) fn scaled(&mut self, scale: Option<NodeId>, node: NodeId) -> NodeId {
        match scale {
            Some(s) if self.constant_of(s) != Some(1.0) => self.apply(BinaryOp::Mul, s, node),
            _ => node,
        }
    }

    /// An element-wise binary operation, after checking that the shapes
    /// agree (equal, or one a scalar).
    pub(super) fn elementwise(
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

    /// `where(c, a, b)`: each of the three a scalar or of the one shape the
    /// others have, lowered to `where_a(c, a) + where_b(c, b)` (see
    /// `BinaryOp::WhereA`), which selects the value exactly and gives the
    /// branch not taken a partial of exactly 0.
    fn select(
        &mut self,
        c: (NodeId, Span),
        a: (NodeId, Span),
        b: (NodeId, Span),
        span: Span,
    ) -> Parsed<NodeId> {
        let shapes = [c, a, b].map(|(id, at)| (self.shape(id), at));
        if let Some(&(first, first_at)) = shapes.iter().find(|(s, _)| *s != Shape::Scalar) {
            if let Some(&(other, other_at)) = shapes
                .iter()
                .find(|(s, _)| *s != Shape::Scalar && *s != first)
            {
                return Err(self
                    .error(
                        span,
                        format!(
                            "`{}`: {} is {first} but {} is {other}",
                            self.text(span),
                            self.text(first_at),
                            self.text(other_at)
                        ),
                    )
                    .with_help(
                        "`where` needs its three arguments of one shape, or scalars among them",
                    ));
            }
        }
        Ok(self.select_value(c.0, a.0, b.0))
    }

    /// where(c, a, b) of nodes whose shapes agree.
    pub(super) fn select_value(&mut self, c: NodeId, a: NodeId, b: NodeId) -> NodeId {
        let taken = self.apply(BinaryOp::WhereA, c, a);
        let other = self.apply(BinaryOp::WhereB, c, b);
        self.apply(BinaryOp::Add, taken, other)
    }

    /// `op` on nodes whose shapes agree, folding constants as graphs do.
    pub(super) fn apply(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
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

    /// The scalar `r` of `a` (and `b`, for a reduction of two vectors);
    /// the shapes are the caller's to have checked.
    pub(super) fn reduce(&mut self, r: ReduceOp, a: NodeId, b: Option<NodeId>) -> NodeId {
        self.add(Op::Reduce(r, a, b), Shape::Scalar)
    }

    pub(super) fn unary(&mut self, op: UnaryOp, a: NodeId) -> NodeId {
        if let Some(c) = self.constant_of(a) {
            let value = op.value_and_derivative(c).0;
            if (value as f32).is_finite() {
                return self.constant(value);
            }
        }
        let shape = self.shape(a);
        self.add(Op::Unary(op, a), shape)
    }

    /// log_softmax(z) = d - logsumexp(d) with d = z - max(z): logsumexp(d)
    /// lies in [0, ln n], so nothing cancels however large the logits are
    /// (z - logsumexp(z) in f32 loses all of ln 2 at z = 1e8). The shift's
    /// maximum is held constant under differentiation; the result does not
    /// depend on it, so its Jacobian I - 1 softmax(z)^T is exact.
    pub(super) fn log_softmax(&mut self, z: NodeId, at: Span, span: Span) -> Parsed<NodeId> {
        let shifted = self.add(Op::ShiftMax(z), self.shape(z));
        let lse = self.reduce(ReduceOp::LogSumExp, shifted, None);
        self.elementwise(BinaryOp::Sub, (shifted, at), (lse, at), span)
    }

    /// The binary operation a call of `name` makes: the language's, and
    /// `strong_mul` in the op table's derivative expressions.
    fn binary_call(&self, name: &str) -> Option<BinaryOp> {
        BinaryOp::from_call(name)
            .or_else(|| (self.internal && name == "strong_mul").then_some(BinaryOp::StrongMul))
    }

    /// Checks a call's function and number of arguments before the
    /// arguments are lowered, so that `foo(x)` reports `foo` first.
    pub(super) fn check_call(
        &self,
        name: &str,
        name_span: Span,
        count: usize,
        span: Span,
    ) -> Parsed<()> {
        let internal = self.binary_call(name).is_some();
        if !functions().contains(&name) && !vector_functions().contains(&name) && !internal {
            let mut known: Vec<&str> = functions();
            known.extend(vector_functions());
            let alias = OTHER_NAMES
                .iter()
                .find(|&&(other, _)| other == name)
                .map(|&(_, ours)| ours)
                .filter(|ours| known.contains(ours));
            let help = match alias.or_else(|| suggest(name, &known)) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("known functions: {}", known.join(", ")),
            };
            return Err(self
                .error(name_span, format!("unknown function `{name}`"))
                .with_help(help));
        }
        let (wanted, fits) = match name {
            _ if ReduceOp::from_name(name).is_some_and(|r| r.arity() == 2) => {
                ("two arguments", count == 2)
            }
            "mse" | "cross_entropy" | "cross" | "outer" => ("two arguments", count == 2),
            "max" | "min" => ("one or two arguments", count == 1 || count == 2),
            _ if self.binary_call(name).is_some() => ("two arguments", count == 2),
            "leaky_relu" | "elu" => ("one or two arguments", count == 1 || count == 2),
            "where" => ("three arguments", count == 3),
            _ => ("one argument", count == 1),
        };
        if fits {
            return Ok(());
        }
        Err(self.error(span, format!("`{name}` takes {wanted}, got {count}")))
    }

    /// A known function applied to lowered arguments of the right number.
    pub(super) fn call(
        &mut self,
        name: &str,
        values: &[Value],
        args: &[Expr],
        span: Span,
    ) -> Lowered {
        match self.matrix_call(name, values, args, span)? {
            Some(value) => Ok(value),
            None => self.vector_call(name, values, args, span).map(Value::Node),
        }
    }

    /// A reduction of the op table applied to its lowered operands, with
    /// their spans: one vector, or two of one length. `Err(None)` for the
    /// wrong number of operands.
    fn reduction(
        &mut self,
        r: ReduceOp,
        operands: &[(NodeId, Span)],
        span: Span,
    ) -> Result<NodeId, Option<ParseError>> {
        let name = r.name();
        match (r.arity(), operands) {
            (1, &[(x, at)]) => {
                let shape = self.shape(x);
                if !matches!(shape, Shape::Vector(_)) {
                    return Err(Some(
                        self.error(
                            at,
                            format!("`{name}` needs a vector, but {} is {shape}", self.text(at)),
                        )
                        .with_help(format!("`{name}` reduces a vector to a scalar")),
                    ));
                }
                Ok(self.reduce(r, x, None))
            }
            (2, &[(a, lhs), (b, rhs)]) => {
                let (sa, sb) = (self.shape(a), self.shape(b));
                match (sa, sb) {
                    (Shape::Vector(m), Shape::Vector(n)) if m == n => {
                        Ok(self.reduce(r, a, Some(b)))
                    }
                    (Shape::Vector(_), Shape::Vector(_)) => Err(Some(
                        self.error(
                            span,
                            format!(
                                "`{}`: {} is {sa} but {} is {sb}",
                                self.text(span),
                                self.text(lhs),
                                self.text(rhs)
                            ),
                        )
                        .with_help(format!("`{name}` needs two vectors of one length")),
                    )),
                    _ => {
                        let (at, shape) = if sa == Shape::Scalar {
                            (lhs, sa)
                        } else {
                            (rhs, sb)
                        };
                        Err(Some(
                            self.error(
                                span,
                                format!(
                                    "`{}`: `{name}` needs two vectors, but {} is {shape}",
                                    self.text(span),
                                    self.text(at)
                                ),
                            )
                            .with_help("multiply by a scalar with `*`"),
                        ))
                    }
                }
            }
            _ => Err(None),
        }
    }

    /// A function of scalars and vectors.
    pub(super) fn vector_call(
        &mut self,
        name: &str,
        values: &[Value],
        args: &[Expr],
        span: Span,
    ) -> Parsed<NodeId> {
        let mut nodes = Vec::with_capacity(values.len());
        for (&value, arg) in values.iter().zip(args) {
            nodes.push((self.node(value, arg)?, arg.span));
        }
        let arity = || ParseError::new(self.source, span, format!("wrong arguments to `{name}`"));
        if let (Some(op), &[a, b]) = (self.binary_call(name), nodes.as_slice()) {
            return self.elementwise(op, a, b, span);
        }
        if let Some(r) = ReduceOp::from_name(name) {
            return self
                .reduction(r, &nodes, span)
                .map_err(|e| e.unwrap_or_else(arity));
        }
        match (name, nodes.as_slice()) {
            ("where", &[c, a, b]) => self.select(c, a, b, span),
            ("softmax" | "log_softmax", &[(z, at)]) => {
                let shape = self.shape(z);
                if !matches!(shape, Shape::Vector(_)) {
                    return Err(self.error(
                        at,
                        format!("`{name}` needs a vector, but {} is {shape}", self.text(at)),
                    ));
                }
                let log_softmax = self.log_softmax(z, at, span)?;
                if name == "log_softmax" {
                    return Ok(log_softmax);
                }
                Ok(self.unary(UnaryOp::Exp, log_softmax))
            }
            ("mse", &[(y, ys), (t, ts)]) => {
                // The mean over elements of (y - t)^2; plain (y - t)^2 for scalars.
                let difference = self.elementwise(BinaryOp::Sub, (y, ys), (t, ts), span)?;
                let squared = self.unary(UnaryOp::Square, difference);
                match self.shape(squared) {
                    Shape::Vector(_) => Ok(self.reduce(ReduceOp::Mean, squared, None)),
                    _ => Ok(squared),
                }
            }
            ("cross_entropy", &[(z, zs), (t, ts)]) => {
                let (sz, st) = (self.shape(z), self.shape(t));
                if !matches!(sz, Shape::Vector(_)) {
                    return Err(self
                        .error(
                            zs,
                            format!(
                                "`cross_entropy` needs vectors, but the logits {} are {sz}",
                                self.text(zs)
                            ),
                        )
                        .with_help("cross_entropy(z, t) takes logits and probabilities of one vector shape"));
                }
                if sz != st {
                    return Err(self
                        .error(
                            span,
                            format!(
                                "`{}`: logits {} are {sz} but targets {} are {st}",
                                self.text(span),
                                self.text(zs),
                                self.text(ts)
                            ),
                        )
                        .with_help("cross_entropy(z, t) takes logits and probabilities of one vector shape"));
                }
                // -sum(t * log_softmax(z)), a term with t = 0 adding nothing
                // even where log_softmax(z) is -Inf (a masked logit), as xlogy.
                let log_softmax = self.log_softmax(z, zs, span)?;
                let weighted =
                    self.elementwise(BinaryOp::StrongMul, (t, ts), (log_softmax, zs), span)?;
                let total = self.reduce(ReduceOp::Sum, weighted, None);
                // 0 - total rather than -1 * total: a loss of 0 is +0.
                let zero = self.constant(0.0);
                self.elementwise(BinaryOp::Sub, (zero, span), (total, span), span)
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
}

/// The element-wise operation a binary operator of the language writes;
/// `None` for `@`.
pub(super) fn elementwise_op(op: BinOp) -> Option<BinaryOp> {
    Some(match op {
        BinOp::Add => BinaryOp::Add,
        BinOp::Sub => BinaryOp::Sub,
        BinOp::Mul => BinaryOp::Mul,
        BinOp::Div => BinaryOp::Div,
        BinOp::Pow => BinaryOp::Pow,
        BinOp::Lt => BinaryOp::Lt,
        BinOp::Le => BinaryOp::Le,
        BinOp::Gt => BinaryOp::Gt,
        BinOp::Ge => BinaryOp::Ge,
        BinOp::MatMul => return None,
    })
}
