//! Derivatives as transformations of the IR: a program in, a program out.
//!
//! [`Program::jvp_program`] adds a tangent input and returns the program of
//! the forward tangent J v; [`Program::vjp_program`] adds a cotangent input
//! and returns the program of u^T J; [`Program::gradient_program`] is the
//! VJP of a scalar output with the seed 1. Each rule is the vector chain rule
//! of Parr and Howard ("The Matrix Calculus You Need For Deep Learning",
//! sections 4 and 5) on one operation, and every element-wise partial comes
//! from the op tables as an expression of the language
//! ([`UnaryOp::derivative_expression`], [`BinaryOp::partial_expressions`]),
//! lowered into operations that have derivatives themselves. So the results
//! are ordinary programs: they run on every backend and through the program
//! compiler unchanged, and they can be transformed again: the JVP of a
//! gradient program is a Hessian-vector product, with no code for second
//! derivatives anywhere.
//!
//! Products of a partial and a tangent or cotangent use `chain_mul`, whose
//! zero factor wins over anything (the zero-factor rule of the compiled
//! kernels): a path through a zero partial adds nothing, even where the
//! other factor is infinite or NaN, such as a branch `where` did not take.

use super::lower::{Lowering, Value};
use super::{Kind, NodeId, Op, Program, Shape, Variable};
use crate::error::{Error, Result};
use crate::lang::{Span, parse_expression};
use crate::ops::{BinaryOp, ReduceOp, RowPartial, UnaryOp};

/// The most nodes a transformation makes (16 times the most one construct
/// of the language may add).
const MAX_NODES: usize = 1 << 20;

/// A new program under construction: the original's variables and nodes
/// first, then the derivative's, shared where identical.
struct Builder {
    lowering: Lowering<'static>,
    /// The new id of each of the original program's nodes.
    map: Vec<NodeId>,
}

impl Builder {
    fn new(program: &Program) -> Builder {
        let mut lowering = Lowering::new("", false);
        lowering.internal = true;
        // Variables are not entered by name: derivative expressions bind
        // only their own names (`x`, `y`, `alpha`, `p`).
        lowering.variables = program.variables.clone();
        let mut map: Vec<NodeId> = Vec::with_capacity(program.nodes.len());
        for (op, shape) in program.nodes.iter().zip(&program.shapes) {
            let op = op.map_operands(|a| map.get(a).copied().unwrap_or(a));
            map.push(lowering.add(op, *shape));
        }
        for (id, name) in program.names.iter().enumerate() {
            if let (Some(name), Some(&new)) = (name, map.get(id)) {
                if let Some(slot) = lowering.names.get_mut(new) {
                    *slot = Some(name.clone());
                }
            }
        }
        Builder { lowering, map }
    }

    /// A name for a new variable: `base`, or with enough `_` appended to be
    /// unlike every other variable's.
    fn fresh_name(&self, base: &str) -> String {
        let mut name = base.to_string();
        while self.lowering.variables.iter().any(|v| v.name == name) {
            name.push('_');
        }
        name
    }

    /// A new variable and the node that reads it.
    fn variable(&mut self, name: String, kind: Kind, shape: Shape) -> NodeId {
        let index = self.lowering.variables.len();
        let variable = Variable { name, kind, shape };
        let node_shape = variable.node_shape();
        self.lowering.variables.push(variable);
        self.lowering.add(Op::Variable(index), node_shape)
    }

    fn shape(&self, id: NodeId) -> Shape {
        self.lowering.shape(id)
    }

    fn add(&mut self, op: Op, shape: Shape) -> NodeId {
        self.lowering.add(op, shape)
    }

    fn constant(&mut self, value: f64) -> NodeId {
        self.lowering.constant(value)
    }

    /// An element-wise binary operation; a scalar meets every element of a
    /// vector.
    fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
        let shape = match self.shape(a) {
            Shape::Scalar => self.shape(b),
            shape => shape,
        };
        self.add(Op::Binary(op, a, b), shape)
    }

    /// partial * tangent with the zero-factor rule: a zero factor wins
    /// over an infinite or NaN one.
    fn chain(&mut self, partial: NodeId, other: NodeId) -> NodeId {
        self.binary(BinaryOp::ChainMul, partial, other)
    }

    /// Zeros of `like`'s shape (0 whatever `like` holds, NaN included).
    fn zeros_like(&mut self, like: NodeId) -> NodeId {
        let zero = self.constant(0.0);
        self.chain(zero, like)
    }

    /// `value` made `like`'s shape: a scalar spread over a vector, a
    /// vector summed to a scalar (a scalar operand's share of an
    /// element-wise result).
    fn fit(&mut self, value: NodeId, like: NodeId) -> NodeId {
        match (self.shape(value), self.shape(like)) {
            (a, b) if a == b => value,
            (Shape::Scalar, _) => {
                let zeros = self.zeros_like(like);
                self.binary(BinaryOp::Add, value, zeros)
            }
            (_, Shape::Scalar) => self.add(Op::Reduce(ReduceOp::Sum, value, None), Shape::Scalar),
            _ => value,
        }
    }

    /// `a + b`, either of which may be absent (zero).
    fn plus(&mut self, a: Option<NodeId>, b: Option<NodeId>) -> Option<NodeId> {
        match (a, b) {
            (Some(a), Some(b)) => Some(self.binary(BinaryOp::Add, a, b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// An op table's expression with its names bound to nodes.
    fn expression(&mut self, text: &'static str, bindings: &[(&str, NodeId)]) -> Result<NodeId> {
        let expr = parse_expression(text).map_err(Error::Parse)?;
        self.lowering.source = text;
        self.lowering.values.clear();
        for &(name, node) in bindings {
            self.lowering
                .values
                .insert(name.to_string(), Value::Node(node));
        }
        let value = self.lowering.lower(&expr).map_err(Error::Parse)?;
        self.lowering.values.clear();
        match value {
            Value::Node(id) => Ok(id),
            _ => Err(Error::Shape(format!(
                "the derivative expression `{text}` is not a scalar or vector"
            ))),
        }
    }

    /// f'(a) for a unary operation.
    fn unary_derivative(&mut self, f: UnaryOp, a: NodeId) -> Result<NodeId> {
        let parameter = self.constant(f64::from(f.parameter().unwrap_or(0.0)));
        self.expression(
            f.derivative_expression(),
            &[("x", a), ("alpha", parameter), ("p", parameter)],
        )
    }

    /// The partial of `f(a, b)` with respect to the operand in `slot`.
    fn binary_partial(&mut self, f: BinaryOp, slot: usize, a: NodeId, b: NodeId) -> Result<NodeId> {
        let text = f.partial_expressions()[slot.min(1)];
        self.expression(text, &[("x", a), ("y", b)])
    }

    /// softmax(z), as the lowering writes it (exp of log_softmax).
    fn softmax(&mut self, z: NodeId) -> Result<NodeId> {
        let at = Span::new(0, 0);
        let log_softmax = self.lowering.log_softmax(z, at, at).map_err(Error::Parse)?;
        let shape = self.shape(log_softmax);
        Ok(self.add(Op::Unary(UnaryOp::Exp, log_softmax), shape))
    }

    /// prod_{j != i} x_j for each element of the vector `x`, in the order
    /// `products_of_others` in src/ops/reduce.rs takes (the product of the
    /// elements before each times that of those after it, exact at zeros),
    /// in scalar multiplications of its elements, which have derivatives
    /// themselves: 3n products and n slices. Plain products, not its
    /// scaled ones: an intermediate product may overflow here where the
    /// kernels' would not.
    fn products_of_others(&mut self, x: NodeId) -> NodeId {
        let n = self.shape(x).size();
        let elements: Vec<NodeId> = (0..n)
            .map(|i| self.add(Op::Slice(x, i, Shape::Scalar), Shape::Scalar))
            .collect();
        let one = self.constant(1.0);
        let mut before = Vec::with_capacity(n);
        let mut running = one;
        for &e in &elements {
            before.push(running);
            running = self.binary(BinaryOp::Mul, running, e);
        }
        let mut after = vec![one; n];
        let mut running = one;
        for (i, &e) in elements.iter().enumerate().rev() {
            after[i] = running;
            running = self.binary(BinaryOp::Mul, running, e);
        }
        let parts: Vec<NodeId> = before
            .iter()
            .zip(&after)
            .map(|(&a, &b)| self.binary(BinaryOp::Mul, a, b))
            .collect();
        match parts[..] {
            [one] => self.add(Op::Slice(one, 0, Shape::Vector(1)), Shape::Vector(1)),
            _ => self.join(&parts),
        }
    }

    /// The cotangent of `whole` from the cotangents of slices of it,
    /// `(first element, cotangent)`: each set of non-overlapping slices is
    /// laid out with zeros between them as one balanced concatenation, and
    /// the sets (several where slices overlap) are summed.
    fn place(&mut self, whole: NodeId, mut pieces: Vec<(usize, NodeId)>) -> NodeId {
        let length = self.shape(whole).size();
        if self.shape(whole) == Shape::Scalar {
            let mut sum = None;
            for (_, c) in pieces {
                let c = self.fit(c, whole);
                sum = self.plus(sum, Some(c));
            }
            return sum.unwrap_or(whole);
        }
        pieces.sort_by_key(|&(start, _)| start);
        let mut layers: Vec<(usize, Vec<(usize, NodeId)>)> = Vec::new();
        for (start, c) in pieces {
            let end = start + self.shape(c).size();
            match layers.iter_mut().find(|(last, _)| *last <= start) {
                Some((last, layer)) => {
                    *last = end;
                    layer.push((start, c));
                }
                None => layers.push((end, vec![(start, c)])),
            }
        }
        let mut sum = None;
        for (_, layer) in layers {
            let mut parts = Vec::new();
            let mut at = 0;
            for (start, c) in layer {
                if start > at {
                    parts.push(self.zeros_of(whole, at, start - at));
                }
                at = start + self.shape(c).size();
                parts.push(c);
            }
            if at < length {
                parts.push(self.zeros_of(whole, at, length - at));
            }
            let joined = self.join(&parts);
            sum = self.plus(sum, Some(joined));
        }
        sum.unwrap_or(whole)
    }

    /// `count` zeros, from elements `start..` of `whole` (so of a node that
    /// already exists, whatever it holds).
    fn zeros_of(&mut self, whole: NodeId, start: usize, count: usize) -> NodeId {
        let piece = self.add(
            Op::Slice(whole, start, Shape::Vector(count)),
            Shape::Vector(count),
        );
        self.zeros_like(piece)
    }

    /// The parts joined into one vector by a balanced tree of
    /// concatenations, so that the intermediate vectors sum to
    /// n log n elements rather than n^2.
    fn join(&mut self, parts: &[NodeId]) -> NodeId {
        match parts {
            [] => self.constant(0.0),
            [one] => *one,
            _ => {
                let (left, right) = parts.split_at(parts.len() / 2);
                let (left, right) = (self.join(left), self.join(right));
                let size = self.shape(left).size() + self.shape(right).size();
                self.add(Op::Concat(left, right), Shape::Vector(size))
            }
        }
    }

    fn finish(self, output: NodeId, name: String) -> Result<Program> {
        let nodes = self.lowering.nodes.len();
        if nodes > MAX_NODES {
            return Err(Error::InvalidArgument(format!(
                "the derived program would have {nodes} nodes, more than the {MAX_NODES} a \
                 transformation makes"
            )));
        }
        let program = self.lowering.finish(output, name);
        program.check()?;
        Ok(program)
    }
}

impl Program {
    fn variable_named(&self, name: &str) -> Result<usize> {
        self.variable(name).ok_or_else(|| {
            let names: Vec<&str> = self.variables.iter().map(|v| v.name.as_str()).collect();
            Error::InvalidArgument(format!(
                "`{name}` is not a variable of the program (it has {})",
                names.join(", ")
            ))
        })
    }

    /// The program of the forward tangent (JVP) J v with respect to
    /// variable `wrt` (an input or a param): the same variables plus one
    /// more, the tangent v, of `wrt`'s shape and kind, called `d` + its
    /// name (with `_` appended while that is taken); its output, of the
    /// output's shape, is the directional derivative of the output along v.
    pub fn jvp_program(&self, wrt: &str) -> Result<Program> {
        self.check()?;
        let v = self.variable_named(wrt)?;
        let declared = self.variables[v].clone();
        let mut b = Builder::new(self);
        let name = b.fresh_name(&format!("d{wrt}"));
        let tangent_input = b.variable(name, declared.kind, declared.shape);
        let map = b.map.clone();
        let new = |old: NodeId| map.get(old).copied().unwrap_or(old);
        let mut tangents: Vec<Option<NodeId>> = vec![None; self.nodes.len()];
        for (id, op) in self.nodes.iter().enumerate() {
            let t = |old: NodeId| tangents.get(old).copied().flatten();
            let node = new(id);
            let tangent = match *op {
                Op::Variable(i) => (i == v).then_some(tangent_input),
                Op::Constant(_) => None,
                Op::Unary(f, a) => match t(a) {
                    Some(ta) => {
                        let d = b.unary_derivative(f, new(a))?;
                        Some(b.chain(d, ta))
                    }
                    None => None,
                },
                Op::Binary(f, x, y) => {
                    let mut sum = None;
                    for (slot, operand) in [x, y].into_iter().enumerate() {
                        if let Some(to) = t(operand) {
                            let p = b.binary_partial(f, slot, new(x), new(y))?;
                            let term = b.chain(p, to);
                            sum = b.plus(sum, Some(term));
                        }
                    }
                    sum
                }
                Op::MatVec(w, x) | Op::VecMat(w, x) => {
                    let shape = self.shapes[id];
                    let rebuild = |m: NodeId, x: NodeId| match *op {
                        Op::MatVec(..) => Op::MatVec(m, x),
                        _ => Op::VecMat(m, x),
                    };
                    let along_x = t(x).map(|tx| b.add(rebuild(new(w), tx), shape));
                    let along_w = t(w).map(|tw| b.add(rebuild(tw, new(x)), shape));
                    b.plus(along_x, along_w)
                }
                Op::Reduce(r, x, y) => match r.partial() {
                    // Linear and bilinear: the reductions with each operand
                    // in turn replaced by its tangent, added.
                    RowPartial::Uniform | RowPartial::Other => {
                        let mut sum = None;
                        for (slot, operand) in op.operands().enumerate() {
                            if let Some(to) = t(operand) {
                                let (nx, ny) = (new(x), y.map(new));
                                let reduced = match slot {
                                    0 => Op::Reduce(r, to, ny),
                                    _ => Op::Reduce(r, nx, Some(to)),
                                };
                                let term = b.add(reduced, Shape::Scalar);
                                sum = b.plus(sum, Some(term));
                            }
                        }
                        sum
                    }
                    RowPartial::Softmax => match t(x) {
                        Some(tx) => {
                            let softmax = b.softmax(new(x))?;
                            Some(b.add(Op::Reduce(ReduceOp::Dot, softmax, Some(tx)), Shape::Scalar))
                        }
                        None => None,
                    },
                    RowPartial::Others => match t(x) {
                        Some(tx) => {
                            let others = b.products_of_others(new(x));
                            let terms = b.chain(others, tx);
                            Some(b.add(Op::Reduce(ReduceOp::Sum, terms, None), Shape::Scalar))
                        }
                        None => None,
                    },
                },
                // The maximum is held constant under differentiation.
                Op::ShiftMax(z) => t(z),
                Op::Slice(a, start, shape) => {
                    t(a).map(|ta| b.add(Op::Slice(ta, start, shape), shape))
                }
                Op::Concat(x, y) => match (t(x), t(y)) {
                    (None, None) => None,
                    (tx, ty) => {
                        let tx = tx.unwrap_or_else(|| b.zeros_like(new(x)));
                        let ty = ty.unwrap_or_else(|| b.zeros_like(new(y)));
                        Some(b.add(Op::Concat(tx, ty), self.shapes[id]))
                    }
                },
            };
            tangents[id] = tangent.map(|t| b.fit(t, node));
        }
        let out = new(self.output);
        let output = match tangents.get(self.output).copied().flatten() {
            Some(t) => t,
            None => b.zeros_like(out),
        };
        b.finish(output, format!("d{}", self.output_name))
    }

    /// The program of the VJP u^T J with respect to variable `wrt` (an
    /// input, or a scalar or vector param): the same variables plus one
    /// more input, the cotangent u, of the output's shape, called `u` (with
    /// `_` appended while that is taken); its output, of `wrt`'s shape
    /// (a per-sample matrix input's as the vector of its elements), is
    /// u^T J for each sample. A matrix param is refused: its gradient is
    /// an outer product, which the IR does not have.
    pub fn vjp_program(&self, wrt: &str) -> Result<Program> {
        self.reverse_program(wrt, true)
    }

    /// The program of the gradient of a scalar output with respect to
    /// variable `wrt`, for each sample: [`Program::vjp_program`] with the
    /// seed 1 and no cotangent input. Its JVP ([`Program::jvp_program`])
    /// is the Hessian-vector product.
    pub fn gradient_program(&self, wrt: &str) -> Result<Program> {
        self.check()?;
        let shape = self.shapes[self.output];
        if shape != Shape::Scalar {
            return Err(Error::Shape(format!(
                "a gradient needs a scalar output, but `{}` is {shape}",
                self.output_name
            )));
        }
        self.reverse_program(wrt, false)
    }

    fn reverse_program(&self, wrt: &str, seeded: bool) -> Result<Program> {
        self.check()?;
        let v = self.variable_named(wrt)?;
        if let Shape::Matrix(..) = self.variables[v].shape {
            if self.variables[v].kind == Kind::Param {
                return Err(Error::InvalidArgument(format!(
                    "`{wrt}` is a matrix param: the reverse transformation gives inputs' and \
                     vector params' cotangents only (a matrix's is an outer product); take \
                     its JVP, or its gradient with `Backend::gradient`"
                )));
            }
        }
        let depends = self.depending_on(&[v]);
        let mut b = Builder::new(self);
        let map = b.map.clone();
        let new = |old: NodeId| map.get(old).copied().unwrap_or(old);
        let seed = if seeded {
            let name = b.fresh_name("u");
            let shape = self
                .shapes
                .get(self.output)
                .copied()
                .unwrap_or(Shape::Scalar);
            b.variable(name, Kind::Input, shape)
        } else {
            b.constant(1.0)
        };
        let mut cotangents: Vec<Option<NodeId>> = vec![None; self.nodes.len()];
        let mut pieces: Vec<Vec<(usize, NodeId)>> = vec![Vec::new(); self.nodes.len()];
        if depends.get(self.output).copied().unwrap_or(false) {
            cotangents[self.output] = Some(seed);
        }
        for id in (0..self.nodes.len()).rev() {
            let placed = std::mem::take(&mut pieces[id]);
            if !placed.is_empty() {
                let whole = b.place(new(id), placed);
                cotangents[id] = b.plus(cotangents[id], Some(whole));
            }
            let Some(c) = cotangents[id] else { continue };
            let op = self.nodes[id];
            // Each operand that depends on `wrt` gets its share, made its shape.
            let mut shares: Vec<(NodeId, NodeId)> = Vec::new();
            let wanted = |a: NodeId| depends.get(a).copied().unwrap_or(false);
            match op {
                Op::Variable(_) | Op::Constant(_) => {}
                Op::Unary(f, a) => {
                    if wanted(a) {
                        let d = b.unary_derivative(f, new(a))?;
                        shares.push((a, b.chain(c, d)));
                    }
                }
                Op::Binary(f, x, y) => {
                    for (slot, operand) in [x, y].into_iter().enumerate() {
                        if wanted(operand) {
                            let p = b.binary_partial(f, slot, new(x), new(y))?;
                            shares.push((operand, b.chain(c, p)));
                        }
                    }
                }
                Op::MatVec(w, x) | Op::VecMat(w, x) => {
                    if wanted(w) {
                        return Err(Error::InvalidArgument(format!(
                            "`{wrt}` is read through a matrix product's matrix: its cotangent \
                             is an outer product, which the reverse transformation does not make"
                        )));
                    }
                    if wanted(x) {
                        let shape = self.shapes[x];
                        let back = match op {
                            Op::MatVec(..) => Op::VecMat(new(w), c),
                            _ => Op::MatVec(new(w), c),
                        };
                        shares.push((x, b.add(back, shape)));
                    }
                }
                Op::Reduce(r, ..) => {
                    let operands: Vec<NodeId> = op.operands().collect();
                    for (slot, &operand) in operands.iter().enumerate() {
                        if !wanted(operand) {
                            continue;
                        }
                        let share = match r.partial() {
                            RowPartial::Uniform => match r.weight(self.shapes[operand].size()) {
                                1.0 => c,
                                weight => {
                                    let weight = b.constant(weight);
                                    b.binary(BinaryOp::Mul, c, weight)
                                }
                            },
                            RowPartial::Other => b.chain(c, new(operands[1 - slot])),
                            RowPartial::Softmax => {
                                let softmax = b.softmax(new(operand))?;
                                b.chain(c, softmax)
                            }
                            RowPartial::Others => {
                                let others = b.products_of_others(new(operand));
                                b.chain(c, others)
                            }
                        };
                        shares.push((operand, share));
                    }
                }
                Op::ShiftMax(z) => shares.push((z, c)),
                // Gathered per operand and placed once, when the operand's
                // turn comes: many slices of one vector (a product's or a
                // maximum's elements) then cost their sizes, not each a
                // vector of the operand's length.
                Op::Slice(a, start, _) => {
                    if wanted(a) {
                        pieces[a].push((start, c));
                    }
                }
                Op::Concat(x, y) => {
                    let (sx, sy) = (self.shapes[x], self.shapes[y]);
                    if wanted(x) {
                        shares.push((x, b.add(Op::Slice(c, 0, sx), sx)));
                    }
                    if wanted(y) {
                        shares.push((y, b.add(Op::Slice(c, sx.size(), sy), sy)));
                    }
                }
            }
            for (operand, share) in shares {
                if !wanted(operand) {
                    continue;
                }
                let share = b.fit(share, new(operand));
                let sum = b.plus(cotangents[operand], Some(share));
                cotangents[operand] = sum;
            }
        }
        let variable = self.variable_node(v);
        let output = match variable.and_then(|node| cotangents.get(node).copied().flatten()) {
            Some(c) => c,
            None => {
                // The output does not depend on `wrt`: zeros of its shape.
                let like = b.add(Op::Variable(v), self.variables[v].node_shape());
                b.zeros_like(like)
            }
        };
        b.finish(output, format!("d{}_d{wrt}", self.output_name))
    }
}
