//! Per-sample matrices and the functions built from the vector operations:
//! `A @ x`, `x @ A`, `A @ B` and `W @ A`, `transpose`, `outer`, `cross`,
//! `norm`, `prod`, and `max` and `min` of one vector.
//!
//! A per-sample matrix ([`Value::Grid`]) is a vector node of its elements,
//! row-major. Everything here lowers to operations the backends already
//! have: rows and elements are selections ([`Op::Slice`]), assembled
//! results are concatenations ([`Op::Concat`], joined as a balanced tree so
//! that the intermediate vectors stay short), and products are dot products
//! and scalar-times-row sums. The Jacobians are therefore those of the
//! parts: selections stay selections, never matrices of zeros and ones.
//! Each construct grows the program by nodes in proportion to the work it
//! does, so a construct that would add more than [`MAX_EXPANSION`] nodes is
//! refused with the size it would need.

use super::lower::{Lowered, Lowering, Parsed, Value};
use super::{NodeId, Op, Shape};
use crate::lang::{BinOp, Expr, Span};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};

/// The most nodes one matrix construct, `prod` or `max` may add.
pub const MAX_EXPANSION: usize = 1 << 16;

/// The largest finite f32, above which an f32 is +Inf.
const F32_MAX: f64 = f32::MAX as f64;

impl Lowering<'_> {
    /// Elements `start..start + shape.size()` of `base`: `base` itself when
    /// that is all of it, and a slice of a slice reads the original.
    pub(super) fn take(&mut self, base: NodeId, start: usize, shape: Shape) -> NodeId {
        let n = self.shape(base).size();
        if start == 0 && shape.size() == n && shape != Shape::Scalar {
            return base;
        }
        if shape == Shape::Scalar && self.shape(base) == Shape::Scalar {
            return base;
        }
        if let Some(&Op::Slice(inner, offset, Shape::Vector(_))) = self.nodes.get(base) {
            if self.shape(inner) == Shape::Scalar {
                return inner;
            }
            return self.add(Op::Slice(inner, offset + start, shape), shape);
        }
        self.add(Op::Slice(base, start, shape), shape)
    }

    /// The parts' elements in order as one vector, concatenated as a
    /// balanced tree (a chain would hold vectors of every length up to the
    /// whole in each sample's state).
    pub(super) fn join(&mut self, parts: &[NodeId]) -> NodeId {
        match parts {
            [] => self.constant(0.0),
            [single] => match self.shape(*single) {
                Shape::Scalar => {
                    self.add(Op::Slice(*single, 0, Shape::Vector(1)), Shape::Vector(1))
                }
                _ => *single,
            },
            _ => {
                let (left, right) = parts.split_at(parts.len() / 2);
                let (a, b) = (self.join_part(left), self.join_part(right));
                let size = self.shape(a).size() + self.shape(b).size();
                self.add(Op::Concat(a, b), Shape::Vector(size))
            }
        }
    }

    /// A part of a join: a lone scalar stays a scalar, as `Concat` takes it.
    fn join_part(&mut self, parts: &[NodeId]) -> NodeId {
        match parts {
            [single] => *single,
            _ => self.join(parts),
        }
    }

    /// Refuses a construct that would add `nodes` nodes.
    fn expansion(&self, nodes: usize, what: &str, span: Span) -> Parsed<()> {
        if nodes <= MAX_EXPANSION {
            return Ok(());
        }
        Err(self
            .error(
                span,
                format!(
                    "`{}`: {what} would add about {nodes} operations to the program; at most {MAX_EXPANSION} are allowed",
                    self.text(span)
                ),
            )
            .with_help("matrix constructs, `prod`, `max` and `min` grow the program with the size of their operands; keep per-sample matrices small (rotations, cameras, covariances) and use a param matrix for a layer"))
    }

    /// `op` (`Add` or `Mul`) over the terms as a balanced tree; `empty`
    /// for none.
    fn tree(&mut self, op: BinaryOp, empty: f64, terms: &[NodeId]) -> NodeId {
        match terms {
            [] => self.constant(empty),
            [single] => *single,
            _ => {
                let (left, right) = terms.split_at(terms.len() / 2);
                let (a, b) = (self.tree(op, empty, left), self.tree(op, empty, right));
                self.apply(op, a, b)
            }
        }
    }

    /// The sum of scalar-times-vector terms, added as a balanced tree.
    fn sum_tree(&mut self, terms: &[NodeId]) -> NodeId {
        self.tree(BinaryOp::Add, 0.0, terms)
    }

    /// Row `i` of a grid, a vector of `cols` elements.
    fn row(&mut self, node: NodeId, cols: usize, i: usize) -> NodeId {
        self.take(node, i * cols, Shape::Vector(cols))
    }

    /// Element `i` of a vector node, as a scalar.
    fn element(&mut self, node: NodeId, i: usize) -> NodeId {
        self.take(node, i, Shape::Scalar)
    }

    /// `v @ M` for a vector `v` of `rows` elements and a grid `M`:
    /// sum_i v[i] M[i,:].
    fn vector_times_grid(&mut self, v: NodeId, m: NodeId, rows: usize, cols: usize) -> NodeId {
        let mut terms = Vec::with_capacity(rows);
        for i in 0..rows {
            let (vi, row) = (self.element(v, i), self.row(m, cols, i));
            terms.push(self.apply(BinaryOp::Mul, vi, row));
        }
        self.sum_tree(&terms)
    }

    /// The elements of a grid in column-major order: its transpose's
    /// elements row-major.
    fn transposed(&mut self, node: NodeId, rows: usize, cols: usize) -> NodeId {
        if rows == 1 || cols == 1 {
            return node;
        }
        let mut parts = Vec::with_capacity(rows * cols);
        for j in 0..cols {
            for i in 0..rows {
                parts.push(self.element(node, i * cols + j));
            }
        }
        self.join(&parts)
    }

    /// `A @ B` where at least one side is a per-sample matrix, or both are
    /// vectors (their dot product, as NumPy's `@`).
    pub(super) fn grid_matmul(
        &mut self,
        a: Value,
        b: Value,
        (lhs, rhs): (&Expr, &Expr),
        span: Span,
    ) -> Lowered {
        let whole = self.text(span);
        let (left, right) = (self.text(lhs.span), self.text(rhs.span));
        let mismatch = |this: &Self, sa: Shape, sb: Shape| {
            Err(this
                .error(
                    span,
                    format!("`{whole}`: {left} is {sa} but {right} is {sb}"),
                )
                .with_help("`@` needs the left side's columns to match the right side's rows"))
        };
        match (a, b) {
            (Value::Grid { node, rows, cols }, Value::Node(x)) => {
                let sx = self.shape(x);
                if sx != Shape::Vector(cols) {
                    return mismatch(self, Shape::Matrix(rows, cols), sx);
                }
                self.expansion(3 * rows, "this product", span)?;
                let mut parts = Vec::with_capacity(rows);
                for i in 0..rows {
                    let row = self.row(node, cols, i);
                    parts.push(self.reduce(ReduceOp::Dot, row, Some(x)));
                }
                Ok(Value::Node(self.join(&parts)))
            }
            (Value::Node(x), Value::Grid { node, rows, cols }) => {
                let sx = self.shape(x);
                if sx != Shape::Vector(rows) {
                    return mismatch(self, sx, Shape::Matrix(rows, cols));
                }
                self.expansion(4 * rows, "this product", span)?;
                Ok(Value::Node(self.vector_times_grid(x, node, rows, cols)))
            }
            (
                Value::Grid {
                    node: p,
                    rows: m,
                    cols: k,
                },
                Value::Grid {
                    node: q,
                    rows,
                    cols: n,
                },
            ) => {
                if rows != k {
                    return mismatch(self, Shape::Matrix(m, k), Shape::Matrix(rows, n));
                }
                self.expansion(m * (4 * k + 1), "this product", span)?;
                let mut out = Vec::with_capacity(m);
                for i in 0..m {
                    let row = self.row(p, k, i);
                    out.push(self.vector_times_grid(row, q, k, n));
                }
                Ok(Value::Grid {
                    node: self.join(&out),
                    rows: m,
                    cols: n,
                })
            }
            (
                Value::Matrix {
                    var,
                    rows: m,
                    cols: k,
                    scale,
                    transposed,
                },
                Value::Grid { node, rows, cols: n },
            ) => {
                // Column j of W @ A is W @ A[:, j].
                if rows != k {
                    return mismatch(self, Shape::Matrix(m, k), Shape::Matrix(rows, n));
                }
                self.expansion(n * (k + 2) + 2 * m * n, "this product", span)?;
                let columns = self.transposed(node, k, n);
                let mut products = Vec::with_capacity(n);
                for j in 0..n {
                    let column = self.take(columns, j * k, Shape::Vector(k));
                    products.push(self.param_times(var, transposed, column, m));
                }
                let stacked = self.join(&products);
                let product = self.transposed(stacked, n, m);
                Ok(Value::Grid {
                    node: self.scaled(scale, product),
                    rows: m,
                    cols: n,
                })
            }
            (
                Value::Grid {
                    node,
                    rows: m,
                    cols: k,
                },
                Value::Matrix {
                    var,
                    rows,
                    cols: n,
                    scale,
                    transposed,
                },
            ) => {
                // Row i of A @ W is A[i] @ W.
                if rows != k {
                    return mismatch(self, Shape::Matrix(m, k), Shape::Matrix(rows, n));
                }
                self.expansion(3 * m, "this product", span)?;
                let mut products = Vec::with_capacity(m);
                for i in 0..m {
                    let row = self.row(node, k, i);
                    // A row times W is W^T times the row.
                    products.push(self.param_times(var, !transposed, row, n));
                }
                let product = self.join(&products);
                Ok(Value::Grid {
                    node: self.scaled(scale, product),
                    rows: m,
                    cols: n,
                })
            }
            (
                Value::Node(x),
                Value::Matrix {
                    var,
                    rows,
                    cols,
                    scale,
                    transposed,
                },
            ) => {
                let sx = self.shape(x);
                if sx != Shape::Vector(rows) {
                    return mismatch(self, sx, Shape::Matrix(rows, cols));
                }
                let product = self.param_times(var, !transposed, x, cols);
                Ok(Value::Node(self.scaled(scale, product)))
            }
            (Value::Node(x), Value::Node(y)) => {
                let (sx, sy) = (self.shape(x), self.shape(y));
                match (sx, sy) {
                    (Shape::Vector(m), Shape::Vector(n)) if m == n => {
                        Ok(Value::Node(self.reduce(ReduceOp::Dot, x, Some(y))))
                    }
                    _ => Err(self
                        .error(
                            span,
                            format!("`{whole}`: {left} is {sx} and {right} is {sy}"),
                        )
                        .with_help(if self.bare {
                            "every name in a bare expression is a scalar: write a program with `param W[m,n]` and `input x[n]` for `W @ x`"
                        } else {
                            "`@` multiplies matrices and vectors; for two vectors of one length it is their dot product, and a scalar multiplies with `*`"
                        })),
                }
            }
            (Value::Matrix { .. }, Value::Matrix { rows, cols, .. }) => Err(self
                .error(
                    span,
                    format!(
                        "`{whole}`: the right side of `@` must be a vector, but {right} is a matrix {}",
                        Shape::Matrix(rows, cols)
                    ),
                )
                .with_help("products of two param matrices are not supported; write `A @ (B @ x)`")),
            (Value::Matrix { .. }, Value::Node(_)) => Err(self.internal(lhs)),
        }
    }

    /// An element-wise binary operation where at least one side is a
    /// per-sample matrix: the other side is a matrix of the same shape or a
    /// scalar.
    pub(super) fn grid_binary(
        &mut self,
        op: BinOp,
        (a, lhs): (Value, &Expr),
        (b, rhs): (Value, &Expr),
        span: Span,
    ) -> Lowered {
        let (rows, cols) = match (a, b) {
            (Value::Grid { rows, cols, .. }, _) | (_, Value::Grid { rows, cols, .. }) => {
                (rows, cols)
            }
            _ => return Err(self.internal(lhs)),
        };
        let (x, y) = (
            self.grid_operand(a, lhs, rows, cols, span)?,
            self.grid_operand(b, rhs, rows, cols, span)?,
        );
        let op = super::rules::elementwise_op(op).ok_or_else(|| self.internal(lhs))?;
        let node = self.elementwise(op, (x, lhs.span), (y, rhs.span), span)?;
        Ok(Value::Grid { node, rows, cols })
    }

    /// The node of one operand of an element-wise operation on matrices of
    /// `rows x cols`: such a matrix or a scalar.
    pub(super) fn grid_operand(
        &self,
        value: Value,
        expr: &Expr,
        rows: usize,
        cols: usize,
        span: Span,
    ) -> Parsed<NodeId> {
        let shape = match value {
            Value::Grid {
                node,
                rows: r,
                cols: c,
            } if (r, c) == (rows, cols) => return Ok(node),
            Value::Grid {
                rows: r, cols: c, ..
            } => Shape::Matrix(r, c),
            Value::Node(id) if self.shape(id) == Shape::Scalar => return Ok(id),
            Value::Node(id) => self.shape(id),
            // A param matrix only multiplies.
            Value::Matrix { rows, cols, .. } => {
                return Err(self.param_matrix_error(expr, rows, cols));
            }
        };
        Err(self
            .error(
                span,
                format!(
                    "`{}`: {} is {shape}, where a matrix {} or a scalar is needed",
                    self.text(span),
                    self.text(expr.span),
                    Shape::Matrix(rows, cols)
                ),
            )
            .with_help(
                "element-wise operations on matrices need equal shapes, or a scalar on one side",
            ))
    }

    /// `A[i]` (row i, a vector) or `A[a:b]` (rows a to b - 1, a matrix) of a
    /// per-sample matrix.
    pub(super) fn grid_index(
        &mut self,
        (node, rows, cols): (NodeId, usize, usize),
        at: Span,
        start: usize,
        end: Option<usize>,
        brackets: Span,
    ) -> Lowered {
        let name = self.text(at);
        let out_of_range = |this: &Self, what: String| {
            Err(this
                .error(brackets, what)
                .with_help(format!("`{name}` has rows 0 to {}", rows - 1)))
        };
        match end {
            None if start >= rows => out_of_range(
                self,
                format!("row {start} is out of range for `{name}`, which has {rows} rows"),
            ),
            None => Ok(Value::Node(self.row(node, cols, start))),
            Some(end) if end <= start => Err(self
                .error(brackets, format!("the rows `[{start}:{end}]` are empty"))
                .with_help("`A[a:b]` holds rows a to b - 1, so b must exceed a")),
            Some(end) if end > rows => out_of_range(
                self,
                format!(
                    "the rows `[{start}:{end}]` run past the end of `{name}`, which has {rows} rows"
                ),
            ),
            Some(end) => Ok(Value::Grid {
                node: self.take(node, start * cols, Shape::Vector((end - start) * cols)),
                rows: end - start,
                cols,
            }),
        }
    }

    /// The functions of this module, and element-wise functions and
    /// reductions applied to per-sample matrices; `None` for a call the
    /// vector rules handle.
    pub(super) fn matrix_call(
        &mut self,
        name: &str,
        values: &[Value],
        args: &[Expr],
        span: Span,
    ) -> Parsed<Option<Value>> {
        let grid = values.iter().find_map(|value| match *value {
            Value::Grid { rows, cols, .. } => Some((rows, cols)),
            _ => None,
        });
        match (name, values) {
            ("transpose", &[value]) => {
                let arg = &args[0];
                return match value {
                    Value::Grid { node, rows, cols } => {
                        self.expansion(2 * rows * cols, "this transpose", span)?;
                        Ok(Some(Value::Grid {
                            node: self.transposed(node, rows, cols),
                            rows: cols,
                            cols: rows,
                        }))
                    }
                    Value::Matrix {
                        var,
                        rows,
                        cols,
                        scale,
                        transposed,
                    } => Ok(Some(Value::Matrix {
                        var,
                        rows: cols,
                        cols: rows,
                        scale,
                        transposed: !transposed,
                    })),
                    Value::Node(id) => {
                        let shape = self.shape(id);
                        Err(self
                            .error(
                                arg.span,
                                format!(
                                    "`transpose` needs a matrix, but {} is {shape}",
                                    self.text(arg.span)
                                ),
                            )
                            .with_help("a vector has no orientation here: `x @ A` and `A @ x` both take it as it is"))
                    }
                };
            }
            ("outer", &[a, b]) => {
                let (x, y) = (self.node(a, &args[0])?, self.node(b, &args[1])?);
                return match (self.shape(x), self.shape(y)) {
                    (Shape::Vector(m), Shape::Vector(n)) => {
                        self.expansion(2 * m, "this outer product", span)?;
                        let mut rows = Vec::with_capacity(m);
                        for i in 0..m {
                            let xi = self.element(x, i);
                            rows.push(self.apply(BinaryOp::Mul, xi, y));
                        }
                        Ok(Some(Value::Grid {
                            node: self.join(&rows),
                            rows: m,
                            cols: n,
                        }))
                    }
                    (sx, sy) => Err(self
                        .error(
                            span,
                            format!(
                                "`{}`: `outer` needs two vectors, but {} is {sx} and {} is {sy}",
                                self.text(span),
                                self.text(args[0].span),
                                self.text(args[1].span)
                            ),
                        )
                        .with_help("outer(a, b)[i, j] = a[i] * b[j]")),
                };
            }
            ("cross", &[a, b]) => {
                let (x, y) = (self.node(a, &args[0])?, self.node(b, &args[1])?);
                let (sx, sy) = (self.shape(x), self.shape(y));
                if (sx, sy) != (Shape::Vector(3), Shape::Vector(3)) {
                    return Err(self
                        .error(
                            span,
                            format!(
                                "`{}`: `cross` needs two vectors [3], but {} is {sx} and {} is {sy}",
                                self.text(span),
                                self.text(args[0].span),
                                self.text(args[1].span)
                            ),
                        )
                        .with_help("the cross product is defined for 3-vectors"));
                }
                let mut parts = Vec::with_capacity(3);
                for (i, j) in [(1, 2), (2, 0), (0, 1)] {
                    let (xi, yj) = (self.element(x, i), self.element(y, j));
                    let (xj, yi) = (self.element(x, j), self.element(y, i));
                    let first = self.apply(BinaryOp::Mul, xi, yj);
                    let second = self.apply(BinaryOp::Mul, xj, yi);
                    parts.push(self.apply(BinaryOp::Sub, first, second));
                }
                return Ok(Some(Value::Node(self.join(&parts))));
            }
            _ => {}
        }
        let reduces = ReduceOp::from_name(name).is_some_and(|r| r.arity() == 1)
            && values.len() == 1
            || matches!(
                (name, values.len()),
                ("norm" | "prod" | "max" | "min", 1) | ("mse", 2)
            );
        let mut nodes = Vec::with_capacity(values.len());
        if reduces {
            for (&value, arg) in values.iter().zip(args) {
                nodes.push(self.flat(value, arg)?);
            }
            if name == "mse" {
                if let (&[Value::Grid { rows, cols, .. }, b], [_, rhs]) = (values, args) {
                    self.grid_operand(b, rhs, rows, cols, span)?;
                } else if let (&[a, Value::Grid { rows, cols, .. }], [lhs, _]) = (values, args) {
                    self.grid_operand(a, lhs, rows, cols, span)?;
                }
            }
        } else if let Some((rows, cols)) = grid {
            let elementwise = crate::ops::functions().contains(&name);
            if !elementwise {
                return Ok(None);
            }
            for (&value, arg) in values.iter().zip(args) {
                nodes.push(self.grid_operand(value, arg, rows, cols, span)?);
            }
            let values: Vec<Value> = nodes.into_iter().map(Value::Node).collect();
            let node = self.vector_call(name, &values, args, span)?;
            return Ok(Some(Value::Grid { node, rows, cols }));
        } else {
            return Ok(None);
        }
        let Some(&x) = nodes.first() else {
            return Ok(None);
        };
        let shape = self.shape(x);
        let node = match name {
            "norm" => match shape {
                Shape::Scalar => self.unary(UnaryOp::Abs, x),
                _ => self.norm(x),
            },
            "prod" => match shape {
                Shape::Scalar => x,
                _ => self.reduce(ReduceOp::Prod, x, None),
            },
            "max" | "min" => match shape {
                Shape::Scalar => x,
                Shape::Vector(n) => {
                    if name == "max" {
                        self.maximum(x, n)
                    } else {
                        let minus_one = self.constant(-1.0);
                        let negated = self.apply(BinaryOp::Mul, minus_one, x);
                        let top = self.maximum(negated, n);
                        let zero = self.constant(0.0);
                        self.apply(BinaryOp::Sub, zero, top)
                    }
                }
                Shape::Matrix(..) => return Err(self.internal(&args[0])),
            },
            _ => {
                let values: Vec<Value> = nodes.into_iter().map(Value::Node).collect();
                self.vector_call(name, &values, args, span)?
            }
        };
        Ok(Some(Value::Node(node)))
    }

    /// sqrt(dot(x, x)), with x scaled by 2^85 or 2^-85 first where the
    /// sum of squares would underflow or overflow f32 (below 2^-100 or
    /// above 2^100, |x| about 1e-15 and 1e15): norm([1e-23, 0, 0]) is
    /// 1e-23 with gradient [1, 0, 0], not 0 with an infinite one. Each
    /// branch's derivative is that of the norm; `where` keeps the others
    /// out of it. The factor also bounds the chain rule's intermediate
    /// cotangent of the squares, 1 / (2 k^2 norm): within a branch it
    /// stays between 2^-121 and 2^119, so neither a huge vector's gradient
    /// overflows (as with 2^-100, at norm 1e20) nor a tiny one's
    /// underflows to 0.
    fn norm(&mut self, x: NodeId) -> NodeId {
        let squares = self.reduce(ReduceOp::Dot, x, Some(x));
        let plain = self.unary(UnaryOp::Sqrt, squares);
        let scaled = |this: &mut Self, factor: f64| {
            let up = this.constant(factor);
            let moved = this.apply(BinaryOp::Mul, up, x);
            let squares = this.reduce(ReduceOp::Dot, moved, Some(moved));
            let root = this.unary(UnaryOp::Sqrt, squares);
            this.apply(BinaryOp::Div, root, up)
        };
        let small = scaled(self, 2f64.powi(85));
        let large = scaled(self, 2f64.powi(-85));
        let tiny = self.constant(2f64.powi(-100));
        let huge = self.constant(2f64.powi(100));
        let underflows = self.apply(BinaryOp::Lt, squares, tiny);
        let overflows = self.apply(BinaryOp::Gt, squares, huge);
        let upper = self.select_value(overflows, large, plain);
        self.select_value(underflows, small, upper)
    }

    /// max(x) of a vector of `n` elements, its gradient split evenly among
    /// tied maxima (as JAX's `max`):
    ///
    /// with s = x - max(x) (the shift the softmax family uses, exactly 0 at
    /// every maximum) and the tie mask t = (s >= 0), the value is
    /// sum(where(t, x / c, 0)) with c = sum(where(t, 1, 0)): the
    /// comparisons have no derivative, so the gradient is t / c; the value
    /// is the maximum itself for one or a power of two of tied elements,
    /// and within an ulp of it for other counts. Where the shift has no
    /// value (a NaN element, several +Inf or all -Inf) the mask is empty and
    /// the limits are taken instead: NaN (value and gradient) if any element
    /// is NaN, else +Inf
    /// (shared among the +Inf elements) if any, else -Inf (the mean of the
    /// elements, shared evenly).
    fn maximum(&mut self, x: NodeId, n: usize) -> NodeId {
        let zero = self.constant(0.0);
        let one = self.constant(1.0);
        let half = self.constant(0.5);
        let count = |this: &mut Self, mask: NodeId| {
            let ones = this.apply(BinaryOp::WhereA, mask, one);
            this.reduce(ReduceOp::Sum, ones, None)
        };
        // The kept elements, each divided by their count before they are
        // added, so that tied values near f32's largest cannot overflow.
        let kept = |this: &mut Self, mask: NodeId, count: NodeId| {
            let shared = this.apply(BinaryOp::Div, x, count);
            let taken = this.apply(BinaryOp::WhereA, mask, shared);
            this.reduce(ReduceOp::Sum, taken, None)
        };
        let shifted = self.add(Op::ShiftMax(x), Shape::Vector(n));
        let ties = self.apply(BinaryOp::Ge, shifted, zero);
        let tied = count(self, ties);
        let finite = kept(self, ties, tied);
        // The limits, when no element is a maximum of finite shift.
        let big = self.constant(F32_MAX);
        let infinite = self.apply(BinaryOp::Gt, x, big);
        let infinities = count(self, infinite);
        let infinity = kept(self, infinite, infinities);
        let lowest = self.constant(-F32_MAX);
        let above = self.apply(BinaryOp::Ge, x, lowest);
        let below = self.apply(BinaryOp::Lt, x, lowest);
        let ordered = self.apply(BinaryOp::Add, above, below);
        let ordered = self.reduce(ReduceOp::Sum, ordered, None);
        let count_n = self.constant(n as f64);
        let nans = self.apply(BinaryOp::Sub, count_n, ordered);
        let mean = self.reduce(ReduceOp::Mean, x, None);
        let any_infinity = self.apply(BinaryOp::Gt, infinities, half);
        let limit = self.select_value(any_infinity, infinity, mean);
        // With a NaN element, NaN for the value and every partial (as
        // JAX): sum(x)^2 is NaN, and so is its derivative 2 sum(x).
        let total = self.reduce(ReduceOp::Sum, x, None);
        let poisoned = self.unary(UnaryOp::Square, total);
        let any_nan = self.apply(BinaryOp::Gt, nans, half);
        let limit = self.select_value(any_nan, poisoned, limit);
        let has_ties = self.apply(BinaryOp::Gt, tied, half);
        self.select_value(has_ties, finite, limit)
    }
}
