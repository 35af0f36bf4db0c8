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
            // logsumexp's softmax, as the node's partials.
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
            Entries::Softmax => GpuJacobian::Dense {
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
            // A selection is the same 0/1 matrix for every sample, formed
            // once here as a Shared factor: the products of the chain rule
            // with it are exact (1 x a = a, 0 x anything = 0, one term per
            // sum), and the planner priced it as that matrix.
            Entries::Rows { start } => {
                self.selection(rows, cols, (0..rows).map(|i| (i, start + i)))?
            }
            Entries::Placed { offset } => {
                self.selection(rows, cols, (0..cols).map(|j| (offset + j, j)))?
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

/// The largest selection formed as a matrix on the device: 8 MiB of f32.
/// A product with such a matrix costs its rows times its columns times the
/// other factor's width, so an assembly of two 2000-element halves took
/// minutes on lavapipe where the CPU path's gathers take a second; past
/// this size the error sends the program there.
const SELECTION_MAX: usize = 1 << 21;

impl GpuAlgebra<'_> {
    /// The rows x cols matrix with a one at each of `ones` (row, column),
    /// zeros elsewhere, shared by the batch.
    fn selection(
        &self,
        rows: usize,
        cols: usize,
        ones: impl Iterator<Item = (usize, usize)>,
    ) -> Result<GpuJacobian> {
        let elements = rows.saturating_mul(cols);
        if elements > SELECTION_MAX {
            return Err(Error::TooLarge {
                what: format!(
                    "the {rows} x {cols} selection matrix of an index, slice or assembly \
                     on the GPU's op-by-op path (the CPU path gathers instead: `--cpu`)"
                ),
                needed: elements as u64 * 4,
                limit: SELECTION_MAX as u64 * 4,
            });
        }
        let mut data = vec![0f32; elements];
        for (r, c) in ones {
            if let Some(entry) = data.get_mut(r * cols + c) {
                *entry = 1.0;
            }
        }
        Ok(GpuJacobian::Shared {
            rows,
            cols,
            buffer: self.context.upload_shared(&data),
        })
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
