//! Element-wise functions of scalar inputs, seen as what they are: a
//! [`Program`] whose inputs and nodes are all scalars and whose operations
//! are all element-wise. There is one IR, one parser and one lowering (the
//! program's); this view adds what the fused element-wise kernel, the CPU
//! executor and `explain` read besides the nodes: which inputs each node
//! depends on (the structure of its tangent, which is zero, and never
//! computed, for the others) and how many users each node has (a node with
//! two or more is where paths fan out, and their contributions add: the
//! total-derivative chain rule). Knows nothing of wgpu.

mod eval;

use crate::error::{Error, Result};
pub use crate::ops::functions;
pub use crate::program::{InputOrder, NodeId};
use crate::program::{Kind, Op, Program, Shape};

pub use eval::Workspace;

/// A scalar function of named scalar inputs: a program of element-wise
/// operations on scalars.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    program: Program,
    inputs: Vec<String>,
    /// For each node, the inputs it depends on, ascending.
    deps: Vec<Vec<usize>>,
    /// The tangents of all nodes together: the size of a workspace.
    tangents: usize,
}

impl Graph {
    /// Parses and lowers an expression such as `ln(sin(x^3)^2)`; the
    /// inputs are its free names in `order`.
    pub fn parse(text: &str, order: InputOrder) -> Result<Graph> {
        Graph::from_program(Program::parse_expression(text, &order)?)
    }

    /// The element-wise view of `program`, which must take scalar inputs
    /// only (no params) and use element-wise operations only: anything
    /// else is an error saying which node is not.
    pub fn from_program(program: Program) -> Result<Graph> {
        program.check()?;
        for variable in &program.variables {
            if variable.kind != Kind::Input || variable.shape != Shape::Scalar {
                return Err(Error::InvalidArgument(format!(
                    "`{}` is a {} of shape {}: element-wise functions take scalar inputs only \
                     (write a program and use `jacobian` for vectors and params)",
                    variable.name, variable.kind, variable.shape
                )));
            }
        }
        for (op, shape) in program.nodes.iter().zip(&program.shapes) {
            let elementwise = matches!(
                op,
                Op::Variable(_) | Op::Constant(_) | Op::Unary(..) | Op::Binary(..)
            );
            if !elementwise || *shape != Shape::Scalar {
                return Err(Error::InvalidArgument(format!(
                    "this function is not element-wise on scalars (it makes a value of shape \
                     {shape}, or uses a vector operation): lists, indexing, `@` and reductions \
                     need a program with `input x[n]`; use `jacobian` or `grad` for it"
                )));
            }
        }
        let inputs = program.variables.iter().map(|v| v.name.clone()).collect();
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(program.nodes.len());
        for op in &program.nodes {
            let mut d: Vec<usize> = match *op {
                Op::Variable(i) => vec![i],
                _ => op
                    .operands()
                    .flat_map(|a| deps.get(a).into_iter().flatten().copied())
                    .collect(),
            };
            d.sort_unstable();
            d.dedup();
            deps.push(d);
        }
        let tangents = deps.iter().map(Vec::len).sum();
        Ok(Graph {
            program,
            inputs,
            deps,
            tangents,
        })
    }

    /// The program this is a view of.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The nodes, operands before users; each is a variable (a scalar
    /// input), a constant, or a unary or binary element-wise operation.
    pub fn nodes(&self) -> &[Op] {
        &self.program.nodes
    }

    /// The input names, in the order their columns appear in derivatives.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The node whose value is the function's.
    pub fn output(&self) -> NodeId {
        self.program.output
    }

    /// The inputs node `id` depends on, ascending.
    pub fn deps(&self, id: NodeId) -> &[usize] {
        self.deps.get(id).map_or(&[], Vec::as_slice)
    }

    /// Whether the output depends on input `j` (an input in the order but
    /// not in the text does not).
    pub fn reads_input(&self, j: usize) -> bool {
        self.program.variable_node(j).is_some()
    }

    /// How many users each node has (the output counts one more): a node
    /// with two or more is where paths fan out.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes().len()];
        for op in self.nodes() {
            for a in op.operands() {
                if let Some(u) = uses.get_mut(a) {
                    *u += 1;
                }
            }
        }
        if let Some(u) = uses.get_mut(self.output()) {
            *u += 1;
        }
        uses
    }
}
