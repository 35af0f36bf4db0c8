//! Vector programs on the CPU in f64: the forward pass over a batch and the
//! algebra that runs a structured Jacobian plan on the reference structured
//! Jacobians, for the requests the program compiler leaves to that plan.
//! The same plans as the GPU runs, so the two can be compared step for step;
//! compiled requests run in `compiled.rs`.

use crate::backend::chain::JacobianAlgebra;
use crate::backend::selection::{CpuJacobian, Selection};
use crate::error::{Error, Result};
use crate::jacobian::Jacobian;
use crate::jacobian::{JacShape, Structure};
use crate::program::{Entries, Kind, LocalJacobian, Program, softmax};

/// Every node's value for every sample, B x size (a parameter's and a
/// constant's repeated per sample for uniform indexing).
pub(crate) struct CpuForward {
    pub(crate) batch: usize,
    pub(crate) values: Vec<Vec<f64>>,
}

/// The forward pass: `variables[v]` holds input v's B x size values or
/// parameter v's values.
pub(crate) fn forward(program: &Program, variables: &[&[f32]], batch: usize) -> Result<CpuForward> {
    let count = program.nodes.len();
    let mut values: Vec<Vec<f64>> = (0..count)
        .map(|id| Vec::with_capacity(batch * program.shapes[id].size()))
        .collect();
    let mut sample_vars: Vec<Vec<f64>> = program
        .variables
        .iter()
        .map(|v| vec![0.0; v.shape.size()])
        .collect();
    for b in 0..batch {
        for (v, variable) in program.variables.iter().enumerate() {
            let size = variable.shape.size();
            let data = variables
                .get(v)
                .ok_or_else(|| Error::Shape(format!("no values for `{}`", variable.name)))?;
            let start = match variable.kind {
                Kind::Input => b * size,
                Kind::Param => 0,
            };
            let slice = data
                .get(start..start + size)
                .ok_or_else(|| Error::Shape(format!("`{}` has too few values", variable.name)))?;
            for (dst, &src) in sample_vars[v].iter_mut().zip(slice) {
                *dst = f64::from(src);
            }
        }
        let refs: Vec<&[f64]> = sample_vars.iter().map(Vec::as_slice).collect();
        let node_values = program.forward(&refs)?;
        for (id, v) in node_values.into_iter().enumerate() {
            values[id].extend(v);
        }
    }
    Ok(CpuForward { batch, values })
}

/// Runs a Jacobian plan in f64.
pub(crate) struct CpuAlgebra<'a> {
    pub(crate) program: &'a Program,
    pub(crate) forward: &'a CpuForward,
    pub(crate) seed: Option<Jacobian>,
}

impl CpuAlgebra<'_> {
    fn size(&self, id: usize) -> usize {
        self.program.shapes[id].size()
    }

    /// Value `i` of node `id` in sample `b` (scalars broadcast).
    fn at(&self, id: usize, b: usize, i: usize) -> f64 {
        let size = self.size(id);
        self.forward.values[id][b * size + if size == 1 { 0 } else { i }]
    }
}

impl JacobianAlgebra for CpuAlgebra<'_> {
    type Value = CpuJacobian;

    fn local(&mut self, node: usize, slot: usize) -> Result<CpuJacobian> {
        let local = self.program.local_jacobian(node, slot)?;
        let JacShape { rows, cols, .. } = local.shape;
        Ok(match local.entries {
            Entries::Rows { start } => {
                CpuJacobian::Selection(Selection::rows_of_identity(start, rows, cols))
            }
            Entries::Placed { offset } => {
                CpuJacobian::Selection(Selection::placed(offset, cols, rows))
            }
            _ => CpuJacobian::Structured(self.structured(node, local)?),
        })
    }

    fn seed(&mut self) -> Result<CpuJacobian> {
        self.seed
            .clone()
            .map(CpuJacobian::Structured)
            .ok_or_else(|| Error::InvalidArgument("this request has no seed".into()))
    }

    fn identity(&mut self, n: usize) -> CpuJacobian {
        CpuJacobian::Structured(Jacobian::Identity { n })
    }

    fn zero(&mut self, rows: usize, cols: usize) -> Result<CpuJacobian> {
        Ok(CpuJacobian::Structured(Jacobian::Dense {
            batch: self.forward.batch,
            rows,
            cols,
            data: crate::jacobian::zeros(&[self.forward.batch, rows, cols], &"a zero Jacobian")?,
        }))
    }

    fn product(&mut self, left: CpuJacobian, right: CpuJacobian) -> Result<CpuJacobian> {
        left.product(right, self.forward.batch)
    }

    fn sum(&mut self, a: CpuJacobian, b: CpuJacobian) -> Result<CpuJacobian> {
        a.sum(b, self.forward.batch)
    }

    fn finish(&mut self, value: CpuJacobian) -> Result<CpuJacobian> {
        Ok(value)
    }
}

impl CpuAlgebra<'_> {
    /// The local Jacobian `local` of `node`, one of the structures of
    /// `Jacobian` (every operation's but the selections'), in f64.
    fn structured(&self, node: usize, local: LocalJacobian) -> Result<Jacobian> {
        let batch = self.forward.batch;
        let JacShape {
            structure,
            rows,
            cols,
        } = local.shape;
        let op = self.program.nodes[node];
        Ok(match local.entries {
            Entries::Unit => Jacobian::Identity { n: rows },
            Entries::Partial { slot } => {
                let mut operands = op.operands();
                let a = operands.next().unwrap_or(node);
                let b = operands.next().unwrap_or(a);
                let data = (0..batch * rows)
                    .map(|e| {
                        let (s, i) = (e / rows, e % rows);
                        op.elementwise_partial(slot, self.at(a, s, i), self.at(b, s, i))
                            .unwrap_or(f64::NAN)
                    })
                    .collect();
                match structure {
                    Structure::Diagonal => Jacobian::Diagonal {
                        batch,
                        n: rows,
                        data,
                    },
                    _ => Jacobian::Dense {
                        batch,
                        rows,
                        cols,
                        data,
                    },
                }
            }
            Entries::Matrix(w) => Jacobian::Shared {
                rows,
                cols,
                data: self.forward.values[w][..rows * cols].to_vec(),
            },
            // x^T W: the Jacobian in x is W^T (n x k for W of k x n).
            Entries::MatrixTransposed(w) => {
                let weights = &self.forward.values[w];
                Jacobian::Shared {
                    rows,
                    cols,
                    data: (0..rows * cols)
                        .map(|e| weights[(e % cols) * rows + e / cols])
                        .collect(),
                }
            }
            Entries::Constant(value) => Jacobian::Shared {
                rows,
                cols,
                data: vec![value; rows * cols],
            },
            Entries::Softmax => {
                let z = op.operands().next().unwrap_or(node);
                let data = self.forward.values[z]
                    .chunks(cols.max(1))
                    .flat_map(softmax)
                    .collect();
                Jacobian::Dense {
                    batch,
                    rows,
                    cols,
                    data,
                }
            }
            // A param's values, one copy per sample here: the first is
            // the row the whole batch shares.
            Entries::Values(other) if structure == Structure::Shared => Jacobian::Shared {
                rows,
                cols,
                data: self.forward.values[other]
                    .get(..rows * cols)
                    .ok_or_else(|| Error::Shape("the batch is empty".into()))?
                    .to_vec(),
            },
            Entries::Values(other) => Jacobian::Dense {
                batch,
                rows,
                cols,
                data: self.forward.values[other].clone(),
            },
            Entries::Rows { .. } | Entries::Placed { .. } => {
                return Err(Error::Shape(
                    "a selection is not a structured Jacobian".into(),
                ));
            }
        })
    }
}
