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
use crate::backend::selection::Selection;
use crate::error::{Error, Result};
use crate::jacobian::{JacShape, Structure};
use crate::program::{Entries, Program};

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
        let local = program.local_jacobian(node, slot)?;
        let JacShape {
            structure,
            rows,
            cols,
        } = local.shape;
        let partial = |slot: usize| -> Result<Segments> {
            self.forward.partials[node]
                .get(slot)
                .cloned()
                .ok_or_else(|| Error::Shape(format!("node {node} has no partial {slot}")))
        };
        let jacobian = match local.entries {
            Entries::Unit => GpuJacobian::Identity { n: rows },
            // The forward pass writes element-wise partials, and
            // a reduction's kept row (softmax, products of the others), as
            // the node's partials.
            Entries::Partial { slot } if structure == Structure::Diagonal => {
                GpuJacobian::Diagonal {
                    n: rows,
                    segments: partial(slot)?,
                }
            }
            Entries::Partial { slot } => GpuJacobian::Dense {
                rows,
                cols,
                segments: partial(slot)?,
            },
            Entries::KeptRow => GpuJacobian::Dense {
                rows,
                cols,
                segments: partial(0)?,
            },
            Entries::MatrixTransposed(_) => {
                match self.forward.transposed.get(node).cloned().flatten() {
                    Some(buffer) => GpuJacobian::Shared { rows, cols, buffer },
                    None => return Err(Error::Shape(format!("node {node} has no W^T"))),
                }
            }
            Entries::Matrix(w) => match &self.forward.values[w] {
                NodeValue::Shared(buffer) => GpuJacobian::Shared {
                    rows,
                    cols,
                    buffer: Arc::clone(buffer),
                },
                NodeValue::PerSample(_) => {
                    return Err(Error::Shape("the matrix of `@` must be a parameter".into()));
                }
            },
            Entries::Constant(value) => GpuJacobian::Shared {
                rows,
                cols,
                buffer: self.context.upload_shared(&vec![value as f32; rows * cols]),
            },
            // A batch-invariant other side (a param) makes the row shared.
            Entries::Values(other) => match &self.forward.values[other] {
                NodeValue::PerSample(segments) => GpuJacobian::Dense {
                    rows,
                    cols,
                    segments: segments.clone(),
                },
                NodeValue::Shared(buffer) => GpuJacobian::Shared {
                    rows,
                    cols,
                    buffer: Arc::clone(buffer),
                },
            },
            // A selection stays one: its products are gathers (lazy.rs).
            Entries::Rows { start } => {
                return Ok(Lazy::Selection(Selection::rows_of_identity(
                    start, rows, cols,
                )));
            }
            Entries::Placed { offset } => {
                return Ok(Lazy::Selection(Selection::placed(offset, cols, rows)));
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
        // A selection stays one, for the gathers of the products it meets.
        if let Lazy::Selection(_) = value {
            return Ok(value);
        }
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
