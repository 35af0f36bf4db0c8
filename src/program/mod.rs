//! Vector programs: functions of vector inputs and matrix parameters, written
//! one statement a line, whose Jacobians the vector chain rule composes
//! (Parr & Howard, "The Matrix Calculus You Need For Deep Learning").
//!
//! ```
//! use chainrule::program::{Op, Program, Shape};
//!
//! let program = Program::parse(
//!     "input x[3]
//!      param W[2,3]  b[2]
//!      h = sigmoid(W @ x + b)
//!      output h",
//! )?;
//! assert_eq!(program.shapes[program.output], Shape::Vector(2));
//! assert!(program.nodes.iter().any(|op| matches!(op, Op::MatVec(..))));
//!
//! // A bare expression is a scalar function of scalar inputs.
//! let f = Program::parse("ln(x^2)")?;
//! let x = f.variable("x").unwrap_or_default();
//! let jacobian = f.jacobian_dense(&[&[2.0]], x)?;
//! assert!((jacobian[0] - 1.0).abs() < 1e-12);
//! # Ok::<(), chainrule::Error>(())
//! ```
//!
//! What the parser guarantees about a [`Program`], for the passes after it:
//!
//! - `nodes` is in topological order (operands before users) and holds only
//!   the nodes the output depends on; a variable the output does not depend
//!   on has no node ([`Program::variable_node`] is `None`, its Jacobian zero).
//! - Identical subexpressions are one node, so a value used twice is one
//!   node with two users, and an operation may take the same node twice
//!   (`x * x`, `dot(x, x)`): both partials then add up.
//! - A `Matrix` shape belongs only to `Variable` nodes of matrix params, and
//!   such a node is only ever the matrix operand of `MatVec` or `VecMat`
//!   (a per-sample matrix input is read as the vector of its elements). Every other node
//!   is a scalar or a vector. A scaled matrix (`-W @ x`, `2 W @ x`) becomes
//!   a scalar times the product.
//! - Constants are scalars, rounded to f32. Unary minus is a product with the
//!   constant -1, `x^c` with a constant c is the unary `pow(c)`, and
//!   operations on constants alone are folded.

mod builder;
mod derive;
mod eval;
mod local;
mod lower;
mod matrix;
mod parse;
mod rules;
mod select;

use std::fmt;

pub use builder::{Handle, ProgramBuilder};
pub use local::{Entries, LocalJacobian};
pub use lower::VECTOR_FUNCTIONS;

use crate::error::{Error, Result};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};

/// The most elements one variable may have: beyond what any device binds,
/// and small enough that sizes and their products never overflow.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// The shape of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One number.
    Scalar,
    /// A vector of this length.
    Vector(usize),
    /// A matrix of (rows, columns), stored row-major.
    Matrix(usize, usize),
}

impl Shape {
    /// The number of elements (saturating, so that a shape built by hand
    /// cannot make it overflow).
    pub fn size(&self) -> usize {
        match *self {
            Shape::Scalar => 1,
            Shape::Vector(n) => n,
            Shape::Matrix(m, n) => m.saturating_mul(n),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Scalar => write!(f, "scalar"),
            Shape::Vector(n) => write!(f, "[{n}]"),
            Shape::Matrix(m, n) => write!(f, "[{m},{n}]"),
        }
    }
}

/// Whether a variable changes from sample to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value per sample of the batch; Jacobians are taken with respect to
    /// inputs.
    Input,
    /// One value shared by the whole batch (weights, biases).
    Param,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Input => "input",
            Kind::Param => "param",
        })
    }
}

/// A declared input or parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Its name in the text.
    pub name: String,
    /// Input or parameter.
    pub kind: Kind,
    /// Its shape.
    pub shape: Shape,
}

impl Variable {
    /// The shape of the node that reads this variable: its declared shape,
    /// except that a per-sample matrix input is read as the vector of its
    /// elements, row-major (a matrix param stays a matrix, the left operand
    /// of [`Op::MatVec`]).
    pub fn node_shape(&self) -> Shape {
        match (self.kind, self.shape) {
            (Kind::Input, Shape::Matrix(m, n)) => Shape::Vector(m.saturating_mul(n)),
            (_, shape) => shape,
        }
    }
}

/// Index of a node in [`Program::nodes`].
pub type NodeId = usize;

/// One operation of a program.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// The variable with this index in [`Program::variables`].
    Variable(usize),
    /// A scalar constant, rounded to f32 like graph constants.
    Constant(f64),
    /// An element-wise unary operation.
    Unary(UnaryOp, NodeId),
    /// An element-wise binary operation on equal shapes, or with one side a
    /// scalar that meets every element of the other (scalar expansion).
    Binary(BinaryOp, NodeId, NodeId),
    /// Matrix [m,n] times vector [n], giving [m]. The matrix is always a
    /// `Variable` node of a param.
    MatVec(NodeId, NodeId),
    /// Vector [m] times matrix [m,n], giving [n]: x^T W, the product with
    /// the matrix's transpose (`x @ W`, `transpose(W) @ x`). The operands
    /// are in `MatVec`'s order, the matrix (a param's `Variable` node)
    /// first.
    VecMat(NodeId, NodeId),
    /// A reduction of a vector (or, for [`ReduceOp::Dot`], of two of one
    /// length) to a scalar, from the table in [`crate::ops::ReduceOp`]:
    /// the second operand is there exactly when the arity is 2.
    Reduce(ReduceOp, NodeId, Option<NodeId>),
    /// z - max(z): a vector shifted so that its largest element is 0, from
    /// which `log_softmax`, `softmax` and `cross_entropy` are computed, so
    /// that no value depends on how large the elements are. The maximum is
    /// held constant under differentiation (as JAX's stop_gradient does), so
    /// the local Jacobian is the identity; every function the lowering
    /// applies to the shifted vector is invariant under the shift, so the
    /// Jacobians of their results are exact. Not in the text language. An
    /// infinite maximum shared by one element gives 0 there and -Inf
    /// elsewhere (the limit); shared by several (or all -Inf), NaN.
    ShiftMax(NodeId),
    /// Elements `start..start + shape.size()` of a vector, as `shape`: a
    /// `Scalar` for `x[i]`, a `Vector` for `x[a:b]` (and, of a scalar, the
    /// vector of length 1 that `[s]` makes). Its local Jacobian selects
    /// rows; the backends keep it as a selection, never as a matrix.
    Slice(NodeId, usize, Shape),
    /// Two scalars or vectors joined into one vector, the first's elements
    /// first: `[a, b, c]` is `Concat(Concat(a, b), c)`. Each operand's local
    /// Jacobian places its elements among the result's: a selection too.
    Concat(NodeId, NodeId),
}

impl Op {
    /// The nodes this operation reads, in order; a node read twice appears
    /// twice.
    pub fn operands(&self) -> impl Iterator<Item = NodeId> + use<> {
        let (a, b) = match *self {
            Op::Variable(_) | Op::Constant(_) => (None, None),
            Op::Unary(_, a) | Op::ShiftMax(a) | Op::Slice(a, ..) => (Some(a), None),
            Op::Reduce(_, a, b) => (Some(a), b),
            Op::Binary(_, a, b) | Op::MatVec(a, b) | Op::VecMat(a, b) | Op::Concat(a, b) => {
                (Some(a), Some(b))
            }
        };
        a.into_iter().chain(b)
    }

    /// The same operation reading `f(a)` wherever this one reads `a`.
    pub fn map_operands(self, mut f: impl FnMut(NodeId) -> NodeId) -> Op {
        match self {
            Op::Variable(_) | Op::Constant(_) => self,
            Op::Unary(u, a) => Op::Unary(u, f(a)),
            Op::Binary(b, x, y) => Op::Binary(b, f(x), f(y)),
            Op::MatVec(w, x) => Op::MatVec(f(w), f(x)),
            Op::VecMat(w, x) => Op::VecMat(f(w), f(x)),
            Op::Reduce(r, a, b) => Op::Reduce(r, f(a), b.map(&mut f)),
            Op::ShiftMax(a) => Op::ShiftMax(f(a)),
            Op::Slice(a, start, shape) => Op::Slice(f(a), start, shape),
            Op::Concat(a, b) => Op::Concat(f(a), f(b)),
        }
    }

    /// For a product of a param matrix and a vector, `(matrix, vector,
    /// transposed)`: `transposed` for `x @ W` (W^T x).
    pub fn matrix_product(&self) -> Option<(NodeId, NodeId, bool)> {
        match *self {
            Op::MatVec(w, x) => Some((w, x, false)),
            Op::VecMat(w, x) => Some((w, x, true)),
            _ => None,
        }
    }
}

/// The order of a bare expression's inputs, which is the order of the
/// derivative columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputOrder {
    /// Each free name is an input, in order of first appearance.
    FirstAppearance,
    /// Exactly these inputs, in this order; a name not among them is an
    /// error, and one that does not appear has a derivative column of zeros.
    Given(Vec<String>),
}

/// A vector function, parsed from the text language.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Inputs and params, in declaration order (for a bare expression, its
    /// free names in order of first appearance).
    pub variables: Vec<Variable>,
    /// The operations; operands come before their users, identical
    /// subexpressions are shared, and every node reaches the output.
    pub nodes: Vec<Op>,
    /// The shape of each node.
    pub shapes: Vec<Shape>,
    /// The node whose value is the program's result.
    pub output: NodeId,
    /// What the output is called: the name after `output`, or `y`.
    pub output_name: String,
    /// The name a line gave each node, if any (for explanations). A variable
    /// node keeps its variable's name and has `None` here.
    pub names: Vec<Option<String>>,
}

impl Program {
    /// Parses the program form (`input`, `param`, assignments and one
    /// `output`, a statement a line) or a bare scalar expression such as
    /// `ln(sin(x^3)^2)`, whose free names become scalar inputs and whose
    /// value is the scalar output `y`. Errors show the line with a caret.
    pub fn parse(text: &str) -> Result<Program> {
        parse::parse(text).map_err(Error::Parse)
    }

    /// Parses `text` as one expression of scalar inputs (never as the
    /// program form), with the inputs in `order`: `ln(sin(x^3)^2)`.
    pub fn parse_expression(text: &str, order: &InputOrder) -> Result<Program> {
        if let InputOrder::Given(names) = order {
            for (i, name) in names.iter().enumerate() {
                let mut chars = name.chars();
                let starts = chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
                let is_name = starts && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !is_name || name == "pi" || crate::ops::functions().contains(&name.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "`{name}` cannot name an input: a name is a letter or `_` followed by \
                         letters, digits and `_`, and not `pi` or a function"
                    )));
                }
                if names[..i].contains(name) {
                    return Err(Error::InvalidArgument(format!(
                        "the input `{name}` is given twice"
                    )));
                }
            }
        }
        // A program where an expression belongs would otherwise fail at
        // its first declaration with a message about multiplication.
        let declares = text.lines().any(|line| {
            let mut words = line.split_whitespace();
            let name = |w: &str| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            matches!(words.next(), Some("input" | "param" | "output"))
                && words.next().is_some_and(name)
        });
        if declares {
            return Err(Error::InvalidArgument(
                "this is a program (it has input, param or output lines), not an expression \
                 of scalars: give a program to `jacobian` or `grad` (Program::parse), or \
                 write the expression alone, such as `sin(x) * y`"
                    .into(),
            ));
        }
        parse::parse_expression_in(text, order).map_err(Error::Parse)
    }

    /// The indices of the inputs, in declaration order.
    pub fn inputs(&self) -> Vec<usize> {
        self.of_kind(Kind::Input)
    }

    /// The indices of the params, in declaration order.
    pub fn params(&self) -> Vec<usize> {
        self.of_kind(Kind::Param)
    }

    /// Whether node `id` is a param's variable: the same for every sample.
    pub fn is_param_node(&self, id: NodeId) -> bool {
        matches!(self.nodes.get(id), Some(&Op::Variable(v))
            if self.variables.get(v).is_some_and(|v| v.kind == Kind::Param))
    }

    fn of_kind(&self, kind: Kind) -> Vec<usize> {
        (0..self.variables.len())
            .filter(|&i| self.variables.get(i).is_some_and(|v| v.kind == kind))
            .collect()
    }

    /// The index of the variable called `name`.
    pub fn variable(&self, name: &str) -> Option<usize> {
        self.variables.iter().position(|v| v.name == name)
    }

    /// For each node, whether it depends on one of `variables` (indices
    /// into [`Program::variables`]).
    pub fn depending_on(&self, variables: &[usize]) -> Vec<bool> {
        let mut depends = vec![false; self.nodes.len()];
        for (id, op) in self.nodes.iter().enumerate() {
            depends[id] = match *op {
                Op::Variable(v) => variables.contains(&v),
                _ => op
                    .operands()
                    .any(|o| depends.get(o).copied().unwrap_or(false)),
            };
        }
        depends
    }

    /// The program whose output is the line called `name` (or the output
    /// itself), without the nodes that line does not read. The variables
    /// stay as declared, so bindings by name still fit; those the line
    /// does not read have zero derivatives.
    ///
    /// A line whose value is that of an earlier line or of a variable
    /// (`c = a`, or `c` computing what `a` already computed) shares that
    /// node and is known by the first name only.
    pub fn with_output(&self, name: &str) -> Result<Program> {
        self.check()?;
        if name == self.output_name {
            return Ok(self.clone());
        }
        let Some(node) = self.line(name) else {
            let lines: Vec<&str> = self
                .names
                .iter()
                .flatten()
                .map(String::as_str)
                .filter(|&line| line != self.output_name)
                .collect();
            return Err(Error::InvalidArgument(format!(
                "`{name}` is not a line of the program; its lines are {}the output `{}` \
                 (a line equal to an earlier line or to a variable goes by that first name)",
                if lines.is_empty() {
                    String::new()
                } else {
                    format!("{} and ", lines.join(", "))
                },
                self.output_name
            )));
        };
        let mut program = self.clone().pruned_to(node);
        program.output_name = name.to_string();
        program.check()?;
        Ok(program)
    }

    /// The node of the line called `name`, or the output's when `name`
    /// is the output's name, or a variable's node (a line equal to a
    /// variable goes by the variable's name).
    pub fn line(&self, name: &str) -> Option<NodeId> {
        if name == self.output_name {
            return Some(self.output);
        }
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .or_else(|| self.variable(name).and_then(|v| self.variable_node(v)))
    }

    /// For each node, whether `node` depends on it (itself included).
    pub fn reaching(&self, node: NodeId) -> Vec<bool> {
        let mut reaches = vec![false; self.nodes.len()];
        if let Some(r) = reaches.get_mut(node) {
            *r = true;
        }
        for id in (0..self.nodes.len()).rev() {
            if reaches[id] {
                for o in self.nodes[id].operands() {
                    if let Some(r) = reaches.get_mut(o) {
                        *r = true;
                    }
                }
            }
        }
        reaches
    }

    /// The program of the nodes `output` depends on, renumbered in order,
    /// with `output` its output (the name is kept).
    pub(crate) fn pruned_to(self, output: NodeId) -> Program {
        let live = self.reaching(output);
        let mut renumbered = vec![0; self.nodes.len()];
        let mut program = Program {
            variables: self.variables,
            nodes: Vec::new(),
            shapes: Vec::new(),
            output: 0,
            output_name: self.output_name,
            names: Vec::new(),
        };
        let kept = self.nodes.into_iter().zip(self.shapes).zip(self.names);
        for (id, ((op, shape), name)) in kept.enumerate() {
            if !live.get(id).copied().unwrap_or(false) {
                continue;
            }
            let op = op.map_operands(|old| renumbered.get(old).copied().unwrap_or(0));
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

    /// The node that reads variable `index`, or `None` when the output does
    /// not depend on it.
    pub fn variable_node(&self, index: usize) -> Option<NodeId> {
        self.nodes.iter().position(|op| *op == Op::Variable(index))
    }

    /// Checks the invariants [`Program::parse`] guarantees, so that a
    /// program built or edited by hand gives an error rather than a wrong
    /// answer: lengths agree, operands come first, every variable is read
    /// with its declared shape, and every operation's shapes fit.
    pub fn check(&self) -> Result<()> {
        eval::check(self)
    }

    /// The value of every node for one sample, in f64: `values[v]` holds the
    /// elements of variable `v` (row-major for a matrix).
    pub fn forward(&self, values: &[&[f64]]) -> Result<Vec<Vec<f64>>> {
        eval::forward(self, values)
    }

    /// The Jacobian of the output with respect to variable `wrt` at one
    /// sample, dense and row-major: a row per output element, a column per
    /// element of `wrt`. Computed by forward-mode dual numbers in f64 with a
    /// tangent per element of `wrt`, independently of the Jacobian planner,
    /// so that tests can check it; simple rather than fast (its memory is
    /// the largest node's size times the size of `wrt`). `wrt` is usually
    /// an input; a param gives the Jacobian with respect to the param.
    pub fn jacobian_dense(&self, values: &[&[f64]], wrt: usize) -> Result<Vec<f64>> {
        eval::jacobian_dense(self, values, wrt)
    }
}
