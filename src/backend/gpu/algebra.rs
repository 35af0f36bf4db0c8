//! The algebra that runs a Jacobian plan on structured device Jacobians:
//! each node's local Jacobian built from the forward pass (its partials as
//! a diagonal, a parameter matrix as Shared, a row for reductions), and the
//! lazy products and sums of `lazy`.

use std::sync::Arc;

use super::context::GpuContext;
use super::jacobian::{GpuJacobian, Segments};
use super::lazy::Lazy;
use super::program::{Forward, NodeValue};
use crate::backend::chain::JacobianAlgebra;
use crate::error::{Error, Result};
use crate::ops::BinaryOp;
use crate::program::{Op, Program};

/// Runs a Jacobian plan on structured device Jacobians, folding diagonals
/// into neighbouring products.
pub(crate) struct GpuAlgebra<'a> {
    pub(crate) context: &'a GpuContext,
    pub(crate) program: &'a Program,
    pub(crate) forward: &'a Forward,
    pub(crate) seed: Option<GpuJacobian>,
}

impl JacobianAlgebra for GpuAlgebra<'_> {
    type Value = Lazy;

    fn local(&mut self, node: usize, slot: usize) -> Result<Lazy> {
        let program = self.program;
        let size = |id: usize| program.shapes[id].size();
        let n = size(node);
        let partial = |slot: usize| -> Result<Segments> {
            self.forward.partials[node]
                .get(slot)
                .cloned()
                .ok_or_else(|| Error::Shape(format!("node {node} has no partial {slot}")))
        };
        let jacobian = match program.nodes[node] {
            // The maximum is held constant under differentiation.
            Op::ShiftMax(_) => GpuJacobian::Identity { n },
            Op::Unary(..) => GpuJacobian::Diagonal {
                n,
                segments: partial(0)?,
            },
            Op::Binary(op, a, b) => {
                let operand = if slot == 0 { a } else { b };
                let unit =
                    matches!(op, BinaryOp::Add) || (matches!(op, BinaryOp::Sub) && slot == 0);
                if size(operand) == n && unit {
                    GpuJacobian::Identity { n }
                } else if size(operand) == n {
                    GpuJacobian::Diagonal {
                        n,
                        segments: partial(slot)?,
                    }
                } else {
                    GpuJacobian::Dense {
                        rows: n,
                        cols: 1,
                        segments: partial(slot)?,
                    }
                }
            }
            Op::VecMat(_, v) => match self.forward.transposed.get(node).cloned().flatten() {
                Some(buffer) => GpuJacobian::Shared {
                    rows: n,
                    cols: size(v),
                    buffer,
                },
                None => return Err(Error::Shape(format!("node {node} has no W^T"))),
            },
            Op::MatVec(w, v) => match &self.forward.values[w] {
                NodeValue::Shared(buffer) => GpuJacobian::Shared {
                    rows: n,
                    cols: size(v),
                    buffer: Arc::clone(buffer),
                },
                NodeValue::PerSample(_) => {
                    return Err(Error::Shape("the matrix of `@` must be a parameter".into()));
                }
            },
            Op::Sum(a) | Op::Mean(a) => {
                let value = if matches!(program.nodes[node], Op::Mean(_)) {
                    1.0 / size(a) as f32
                } else {
                    1.0
                };
                GpuJacobian::Shared {
                    rows: 1,
                    cols: size(a),
                    buffer: self.context.upload_shared(&vec![value; size(a)]),
                }
            }
            Op::LogSumExp(a) => GpuJacobian::Dense {
                rows: 1,
                cols: size(a),
                segments: partial(0)?,
            },
            Op::Dot(a, b) => {
                let other = if slot == 0 { b } else { a };
                match &self.forward.values[other] {
                    NodeValue::PerSample(segments) => GpuJacobian::Dense {
                        rows: 1,
                        cols: size(a),
                        segments: segments.clone(),
                    },
                    NodeValue::Shared(buffer) => GpuJacobian::Shared {
                        rows: 1,
                        cols: size(a),
                        buffer: Arc::clone(buffer),
                    },
                }
            }
            Op::Slice(..) | Op::Concat(..) => {
                return Err(super::program::selection_refused(program.nodes[node]));
            }
            Op::Variable(_) | Op::Constant(_) => {
                return Err(Error::Shape("leaves have no local Jacobian".into()));
            }
        };
        Ok(Lazy::Ready(jacobian))
    }

    fn seed(&mut self) -> Result<Lazy> {
        self.seed
            .clone()
            .map(Lazy::Ready)
            .ok_or_else(|| Error::InvalidArgument("this request has no seed".into()))
    }

    fn identity(&mut self, n: usize) -> Lazy {
        Lazy::Ready(GpuJacobian::Identity { n })
    }

    fn zero(&mut self, rows: usize, cols: usize) -> Result<Lazy> {
        let layout = self.forward.layout;
        let zeros = vec![0.0; layout.batch * rows * cols];
        Ok(Lazy::Ready(GpuJacobian::Dense {
            rows,
            cols,
            segments: self.context.upload_segments(layout, rows * cols, &zeros)?,
        }))
    }

    fn product(&mut self, left: Lazy, right: Lazy) -> Result<Lazy> {
        self.context.lazy_product(left, right, self.forward.layout)
    }

    fn sum(&mut self, a: Lazy, b: Lazy) -> Result<Lazy> {
        let layout = self.forward.layout;
        let a = self.context.materialize(a, layout)?;
        let b = self.context.materialize(b, layout)?;
        Ok(Lazy::Ready(self.context.jacobian_sum(&a, &b, layout)?))
    }

    fn finish(&mut self, value: Lazy) -> Result<Lazy> {
        Ok(Lazy::Ready(
            self.context.materialize(value, self.forward.layout)?,
        ))
    }
}

/// The algebra for one forward pass; `seed` is the JVP's tangents or the
/// VJP's cotangents.
pub(crate) fn program_algebra<'a>(
    context: &'a GpuContext,
    program: &'a Program,
    forward: &'a Forward,
    seed: Option<GpuJacobian>,
) -> GpuAlgebra<'a> {
    GpuAlgebra {
        context,
        program,
        forward,
        seed,
    }
}
