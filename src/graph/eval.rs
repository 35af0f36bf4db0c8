//! The f64 reference executor of a graph: forward mode with one tangent per
//! input, carried only where the node depends on that input, exactly as the
//! generated WGSL does, so the two agree on which products are ever formed.
//! A reusable workspace keeps the per-sample loop free of allocation.

use super::{Graph, NodeId};
use crate::error::{Error, Result};
use crate::ops::chain_mul;
use crate::program::Op;

/// Scratch space for evaluating one graph many times without allocating:
/// every node's value, and its tangents (one per input it depends on) laid
/// end to end.
#[derive(Debug, Clone)]
pub struct Workspace {
    values: Vec<f64>,
    tangents: Vec<f64>,
    /// Where each node's tangents start in `tangents`.
    offsets: Vec<usize>,
}

impl Graph {
    /// Scratch space sized for this graph.
    pub fn workspace(&self) -> Workspace {
        let mut offsets = Vec::with_capacity(self.nodes().len());
        let mut total = 0;
        for deps in &self.deps {
            offsets.push(total);
            total += deps.len();
        }
        Workspace {
            values: vec![0.0; self.nodes().len()],
            tangents: vec![0.0; total],
            offsets,
        }
    }

    /// The value and the gradient (one partial per input) at `point`, in f64.
    pub fn evaluate(&self, point: &[f64]) -> (f64, Vec<f64>) {
        let mut gradient = vec![0.0; self.inputs.len()];
        let value = self.evaluate_into(point, &mut self.workspace(), &mut gradient);
        (value, gradient)
    }

    /// Tangent `j` of `operand`, scaled by `partial`, if the operand depends
    /// on j. A zero partial gives zero whatever the tangent (`chain_mul`):
    /// the losing operand of a selection adds nothing, even where its
    /// tangent is infinite.
    fn term(&self, ws: &Workspace, operand: NodeId, j: usize, partial: f64) -> Option<f64> {
        let k = self.deps[operand].binary_search(&j).ok()?;
        let at = ws.offsets.get(operand)? + k;
        ws.tangents.get(at).map(|&t| chain_mul(partial, t))
    }

    /// The value at `point`, with the gradient written to `gradient` (one
    /// entry per input). Forward mode: each node's tangent is the sum over
    /// its operands that depend on each input of partial times tangent, in
    /// operand order, as the generated WGSL computes it.
    ///
    /// A missing input reads as NaN, a gradient slice too short keeps the
    /// entries it has, and a workspace of another graph's size is remade
    /// (one of the same sizes gives wrong numbers, never a panic).
    pub fn evaluate_into(&self, point: &[f64], ws: &mut Workspace, gradient: &mut [f64]) -> f64 {
        if ws.values.len() != self.nodes().len()
            || ws.offsets.len() != self.nodes().len()
            || ws.tangents.len() != self.tangents
        {
            *ws = self.workspace();
        }
        for (id, node) in self.nodes().iter().enumerate() {
            let (value, partials) = match *node {
                Op::Variable(i) => (
                    point.get(i).copied().unwrap_or(f64::NAN),
                    [(id, 1.0), (id, 0.0)],
                ),
                Op::Unary(op, a) => {
                    let (value, d) = op.value_and_derivative(ws.values[a]);
                    (value, [(a, d), (usize::MAX, 0.0)])
                }
                Op::Binary(op, a, b) => {
                    let (value, da, db) = op.value_and_partials(ws.values[a], ws.values[b]);
                    (value, [(a, da), (b, db)])
                }
                // A constant; `Graph::from_program` admits no other node.
                Op::Constant(c) => (c, [(id, 0.0), (id, 0.0)]),
                _ => (f64::NAN, [(id, 0.0), (id, 0.0)]),
            };
            ws.values[id] = value;
            let start = ws.offsets.get(id).copied().unwrap_or(0);
            for (k, &j) in self.deps[id].iter().enumerate() {
                let tangent = match *node {
                    Op::Variable(_) => 1.0,
                    Op::Constant(_) => 0.0,
                    _ => {
                        let first = self.term(ws, partials[0].0, j, partials[0].1);
                        let second = (partials[1].0 != usize::MAX)
                            .then(|| self.term(ws, partials[1].0, j, partials[1].1))
                            .flatten();
                        match (first, second) {
                            (Some(a), Some(b)) => a + b,
                            (Some(t), None) | (None, Some(t)) => t,
                            (None, None) => 0.0,
                        }
                    }
                };
                if let Some(t) = ws.tangents.get_mut(start + k) {
                    *t = tangent;
                }
            }
        }
        gradient.fill(0.0);
        let out = self.output();
        for (k, &j) in self.deps[out].iter().enumerate() {
            let at = ws.offsets.get(out).copied().unwrap_or(0) + k;
            if let (Some(g), Some(&t)) = (gradient.get_mut(j), ws.tangents.get(at)) {
                *g = t;
            }
        }
        ws.values[out]
    }

    /// Checks that `inputs` holds one column per input, all of one length;
    /// returns that length.
    pub fn check_columns(&self, inputs: &[&[f32]]) -> Result<usize> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Shape(format!(
                "the function has {} input(s) ({}) but {} column(s) were given",
                self.inputs.len(),
                self.inputs.join(", "),
                inputs.len()
            )));
        }
        let n = inputs.first().map_or(0, |c| c.len());
        for (name, column) in self.inputs.iter().zip(inputs) {
            if column.len() != n {
                return Err(Error::Shape(format!(
                    "input `{name}` has {} samples but `{}` has {n}",
                    column.len(),
                    self.inputs[0]
                )));
            }
        }
        Ok(n)
    }

    /// Values (N) and derivatives (N x k, row-major) for N samples given as
    /// one column per input, in f64 on all threads, rounded to f32 once.
    pub fn evaluate_columns(&self, inputs: &[&[f32]]) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = self.check_columns(inputs)?;
        let k = self.inputs.len();
        let mut values = crate::backend::host_vec(n, "values")?;
        let mut derivatives = crate::backend::host_vec(n.saturating_mul(k), "derivatives")?;
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        let rows = if n < 1 << 14 {
            n.max(1)
        } else {
            n.div_ceil(threads)
        };
        std::thread::scope(|scope| {
            for (chunk, (v, d)) in values
                .chunks_mut(rows)
                .zip(derivatives.chunks_mut(rows * k.max(1)))
                .enumerate()
            {
                scope.spawn(move || {
                    let mut point = vec![0.0; k];
                    let mut gradient = vec![0.0; k];
                    let mut workspace = self.workspace();
                    for (r, value) in v.iter_mut().enumerate() {
                        let i = chunk * rows + r;
                        for (j, column) in inputs.iter().enumerate() {
                            point[j] = f64::from(column[i]);
                        }
                        let y = self.evaluate_into(&point, &mut workspace, &mut gradient);
                        *value = y as f32;
                        for (j, g) in gradient.iter().enumerate() {
                            d[r * k + j] = *g as f32;
                        }
                    }
                });
            }
        });
        Ok((values, derivatives))
    }
}
