//! Vector programs on the CPU in f64: the forward pass over a batch and the
//! algebra that runs a Jacobian plan on the reference structured Jacobians.
//! The same plans as the GPU runs, so the two can be compared step for step.

use crate::backend::chain::JacobianAlgebra;
use crate::backend::selection::{CpuJacobian, Selection};
use crate::error::{Error, Result};
use crate::jacobian::Jacobian;
use crate::ops::BinaryOp;
use crate::program::{Kind, Op, Program, softmax};

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
        let n = self.size(node);
        Ok(match self.program.nodes[node] {
            Op::Slice(a, start, _) => {
                CpuJacobian::Selection(Selection::rows_of_identity(start, n, self.size(a)))
            }
            Op::Concat(a, b) => {
                let (offset, part) = if slot == 0 { (0, a) } else { (self.size(a), b) };
                CpuJacobian::Selection(Selection::placed(offset, self.size(part), n))
            }
            _ => CpuJacobian::Structured(self.structured(node, slot)?),
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
            data: vec![0.0; self.forward.batch * rows * cols],
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
    /// The local Jacobian of an operation whose Jacobian has one of the
    /// structures of `Jacobian` (every operation but the selections).
    fn structured(&self, node: usize, slot: usize) -> Result<Jacobian> {
        let batch = self.forward.batch;
        let n = self.size(node);
        Ok(match self.program.nodes[node] {
            // The maximum is held constant under differentiation.
            Op::ShiftMax(_) => Jacobian::Identity { n },
            Op::Unary(op, a) => Jacobian::Diagonal {
                batch,
                n,
                data: (0..batch * n)
                    .map(|e| op.value_and_derivative(self.at(a, e / n, e % n)).1)
                    .collect(),
            },
            Op::Binary(op, a, b) => {
                let operand = if slot == 0 { a } else { b };
                let unit =
                    matches!(op, BinaryOp::Add) || (matches!(op, BinaryOp::Sub) && slot == 0);
                if self.size(operand) == n && unit {
                    return Ok(Jacobian::Identity { n });
                }
                let data: Vec<f64> = (0..batch * n)
                    .map(|e| {
                        let (s, i) = (e / n, e % n);
                        let (_, da, db) = op.value_and_partials(self.at(a, s, i), self.at(b, s, i));
                        if slot == 0 { da } else { db }
                    })
                    .collect();
                if self.size(operand) == n {
                    Jacobian::Diagonal { batch, n, data }
                } else {
                    Jacobian::Dense {
                        batch,
                        rows: n,
                        cols: 1,
                        data,
                    }
                }
            }
            Op::MatVec(w, v) => Jacobian::Shared {
                rows: n,
                cols: self.size(v),
                data: self.forward.values[w][..n * self.size(v)].to_vec(),
            },
            // x^T W: the Jacobian in x is W^T (n x k for W of k x n).
            Op::VecMat(w, v) => {
                let k = self.size(v);
                let weights = &self.forward.values[w];
                Jacobian::Shared {
                    rows: n,
                    cols: k,
                    data: (0..n * k).map(|e| weights[(e % k) * n + e / k]).collect(),
                }
            }
            Op::Sum(a) | Op::Mean(a) => {
                let scale = if matches!(self.program.nodes[node], Op::Mean(_)) {
                    1.0 / self.size(a) as f64
                } else {
                    1.0
                };
                Jacobian::Shared {
                    rows: 1,
                    cols: self.size(a),
                    data: vec![scale; self.size(a)],
                }
            }
            Op::LogSumExp(a) => {
                // The gradient of logsumexp is softmax(z).
                let n_a = self.size(a);
                let data = self.forward.values[a]
                    .chunks(n_a.max(1))
                    .flat_map(softmax)
                    .collect();
                Jacobian::Dense {
                    batch,
                    rows: 1,
                    cols: n_a,
                    data,
                }
            }
            Op::Dot(a, b) => {
                let other = if slot == 0 { b } else { a };
                Jacobian::Dense {
                    batch,
                    rows: 1,
                    cols: self.size(a),
                    data: self.forward.values[other].clone(),
                }
            }
            Op::Slice(..) | Op::Concat(..) => {
                return Err(Error::Shape(
                    "a selection is not a structured Jacobian".into(),
                ));
            }
            Op::Variable(_) | Op::Constant(_) => {
                return Err(Error::Shape("leaves have no local Jacobian".into()));
            }
        })
    }
}
