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
use crate::program::{Entries, Kind, LocalJacobian, Op, Program};

/// Every node's value for every sample: B x size for a node that depends
/// on an input, one row the batch shares for the others (params,
/// constants and what is computed from them alone), so that a weight
/// matrix is held once, not once a sample.
pub(crate) struct CpuForward {
    pub(crate) batch: usize,
    values: Vec<Vec<f64>>,
    varies: Vec<bool>,
}

impl CpuForward {
    /// Sample `b`'s value of node `id`.
    pub(crate) fn row(&self, id: usize, b: usize) -> &[f64] {
        let values = &self.values[id];
        if !self.varies[id] {
            return values;
        }
        let n = values.len() / self.batch.max(1);
        &values[b * n..(b + 1) * n]
    }

    /// Node `id`'s values for the whole batch, B x size (a shared row
    /// repeated).
    pub(crate) fn batch_rows(&self, id: usize) -> Vec<f64> {
        if self.varies[id] {
            self.values[id].clone()
        } else {
            self.values[id].repeat(self.batch)
        }
    }
}

/// The forward pass: `variables[v]` holds input v's B x size values or
/// parameter v's values.
pub(crate) fn forward(program: &Program, variables: &[&[f32]], batch: usize) -> Result<CpuForward> {
    let count = program.nodes.len();
    let varies = program.depending_on(&program.inputs());
    let mut values: Vec<Vec<f64>> = (0..count)
        .map(|id| {
            let rows = if varies[id] { batch } else { 1 };
            crate::backend::reserve_host(
                rows.saturating_mul(program.shapes[id].size()),
                "the forward pass's values",
            )
        })
        .collect::<Result<_>>()?;
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
            if varies[id] || b == 0 {
                values[id].extend(v);
            }
        }
    }
    Ok(CpuForward {
        batch,
        values,
        varies,
    })
}

/// Runs a Jacobian plan in f64.
pub(crate) struct CpuAlgebra<'a> {
    pub(crate) program: &'a Program,
    pub(crate) forward: &'a CpuForward,
    pub(crate) seed: Option<Jacobian>,
}

impl CpuAlgebra<'_> {
    /// Value `i` of node `id` in sample `b` (scalars broadcast).
    fn at(&self, id: usize, b: usize, i: usize) -> f64 {
        let row = self.forward.row(id, b);
        row[if row.len() == 1 { 0 } else { i }]
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
                data: self.forward.row(w, 0).to_vec(),
            },
            // x^T W: the Jacobian in x is W^T (n x k for W of k x n).
            Entries::MatrixTransposed(w) => {
                let weights = self.forward.row(w, 0);
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
            Entries::KeptRow => {
                let Op::Reduce(r, z, _) = op else {
                    return Err(Error::Shape(format!("node {node} keeps no row")));
                };
                let data = self
                    .forward
                    .batch_rows(z)
                    .chunks(cols.max(1))
                    .flat_map(|row| r.partials(&[row], 0))
                    .collect();
                Jacobian::Dense {
                    batch,
                    rows,
                    cols,
                    data,
                }
            }
            // A param's values: the row the whole batch shares.
            Entries::Values(other) if structure == Structure::Shared => Jacobian::Shared {
                rows,
                cols,
                data: self.forward.row(other, 0).to_vec(),
            },
            Entries::Values(other) => Jacobian::Dense {
                batch,
                rows,
                cols,
                data: self.forward.batch_rows(other),
            },
            Entries::Rows { .. } | Entries::Placed { .. } => {
                return Err(Error::Shape(
                    "a selection is not a structured Jacobian".into(),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weight matrix, and what is computed from params alone, are held
    /// once for the batch; what depends on an input, once a sample.
    #[test]
    fn the_forward_pass_holds_what_the_batch_shares_once() {
        let program =
            Program::parse("input x[4]\nparam W[3,4] b[3]\nc = b * 2\ny = W @ x + c\noutput y")
                .expect("parses");
        let batch = 50;
        let x: Vec<f32> = (0..batch * 4).map(|i| i as f32 * 0.01).collect();
        let w: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let b = [1.0, 2.0, 3.0];
        let forward = forward(&program, &[&x, &w, &b], batch).expect("runs");
        let line = |name: &str| program.line(name).expect("a line");
        let w_node = program.variable_node(1).expect("read");
        assert_eq!(forward.values[w_node].len(), 12);
        assert_eq!(forward.values[line("c")].len(), 3);
        assert_eq!(forward.values[line("y")].len(), batch * 3);
        assert_eq!(forward.row(line("c"), 49), &[2.0, 4.0, 6.0]);
        assert_eq!(forward.batch_rows(line("c")).len(), batch * 3);
        // Sample 49's y: W x_49 + c.
        let x49 = &x[49 * 4..50 * 4];
        let y: Vec<f64> = (0..3)
            .map(|r| {
                (0..4)
                    .map(|c| f64::from(w[r * 4 + c]) * f64::from(x49[c]))
                    .sum::<f64>()
                    + 2.0 * f64::from(b[r])
            })
            .collect();
        for (got, want) in forward.row(line("y"), 49).iter().zip(&y) {
            assert!((got - want).abs() < 1e-9, "{got} against {want}");
        }
    }
}
