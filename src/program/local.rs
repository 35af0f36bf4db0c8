//! Each operation's local Jacobian, defined once: its structure, its size
//! and where its entries come from. The planner prices chains from it; the
//! CPU and GPU algebras materialise the entries from it, each from its own
//! forward pass, so no backend decides an operation's structure by itself.
//!
//! The formulas are those of Parr and Howard, "The Matrix Calculus You Need
//! For Deep Learning": an element-wise function of one vector has a
//! diagonal Jacobian (section 4.4), `W @ x` has W (4.5), a sum has a row of
//! ones (4.6), and a scalar expanded across a vector has a column (4.4).

use super::{NodeId, Op, Program};
use crate::error::{Error, Result};
use crate::jacobian::{JacShape, Structure};
use crate::ops::{BinaryOp, RowPartial};

/// Where a local Jacobian's entries come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entries {
    /// None: the identity.
    Unit,
    /// The element-wise partial derivative with respect to operand `slot`,
    /// one per element and sample (the diagonal, or for a scalar expanded
    /// across a vector, the column).
    Partial {
        /// Which operand.
        slot: usize,
    },
    /// The reduction's row of partials that its forward pass keeps per
    /// sample, as the op table defines it ([`crate::ops::ReduceOp::partials`]):
    /// softmax(z) for logsumexp, the products of the others for prod.
    KeptRow,
    /// The values of this node, as a row: the Jacobian of a dot product
    /// with respect to one side is the other side.
    Values(NodeId),
    /// The param matrix W of this node, as stored: d(W x)/dx = W.
    Matrix(NodeId),
    /// The param matrix W of this node, transposed: d(x^T W)/dx = W^T.
    MatrixTransposed(NodeId),
    /// Every entry this constant: 1 for a sum, 1/n for a mean.
    Constant(f64),
    /// A slice: the node's elements are the operand's elements
    /// `start..start + rows`. Like `Placed`, a selection: the backends
    /// gather or scatter the neighbouring factor's rows or columns, and the
    /// planner prices it so ([`Structure::Selection`]).
    Rows {
        /// The operand's first element taken.
        start: usize,
    },
    /// A concatenation: the operand's elements are the node's elements
    /// `offset..offset + cols`.
    Placed {
        /// Where the operand's first element lands.
        offset: usize,
    },
}

impl Entries {
    /// Whether these are a selection's (gathered or scattered, never
    /// multiplied).
    pub fn is_selection(&self) -> bool {
        matches!(self, Entries::Rows { .. } | Entries::Placed { .. })
    }
}

/// A node's local Jacobian with respect to one operand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalJacobian {
    /// Its structure and size (rows: the node's elements; columns: the
    /// operand's).
    pub shape: JacShape,
    /// Where its entries come from.
    pub entries: Entries,
}

impl Program {
    /// The local Jacobian of `node` with respect to its operand in `slot`
    /// (0 or 1). Leaves have none, and neither has the matrix of a product
    /// (params are not differentiated through a product's matrix slot).
    pub fn local_jacobian(&self, node: NodeId, slot: usize) -> Result<LocalJacobian> {
        let op = *self
            .nodes
            .get(node)
            .ok_or_else(|| Error::Shape(format!("node {node} is not in the program")))?;
        let operand = op
            .operands()
            .nth(slot)
            .ok_or_else(|| Error::Shape(format!("node {node} has no operand {slot}")))?;
        let size = |id: NodeId| self.shapes.get(id).map_or(0, |s| s.size());
        let (rows, cols) = (size(node), size(operand));
        let local = |structure, entries| LocalJacobian {
            shape: JacShape {
                structure,
                rows,
                cols,
            },
            entries,
        };
        Ok(match op {
            Op::Unary(..) => local(Structure::Diagonal, Entries::Partial { slot }),
            // The maximum is held constant under differentiation.
            Op::ShiftMax(_) => local(Structure::Identity, Entries::Unit),
            Op::Binary(f, ..) => {
                let unit = matches!(f, BinaryOp::Add) || (matches!(f, BinaryOp::Sub) && slot == 0);
                match (cols == rows, unit) {
                    (true, true) => local(Structure::Identity, Entries::Unit),
                    (true, false) => local(Structure::Diagonal, Entries::Partial { slot }),
                    // A scalar expanded across a vector: a column per sample.
                    (false, _) => local(Structure::Dense, Entries::Partial { slot }),
                }
            }
            Op::MatVec(w, _) | Op::VecMat(w, _) => {
                if slot != 1 {
                    return Err(Error::Shape(
                        "matrices are parameters, not differentiated".into(),
                    ));
                }
                let entries = if matches!(op, Op::MatVec(..)) {
                    Entries::Matrix(w)
                } else {
                    Entries::MatrixTransposed(w)
                };
                local(Structure::Shared, entries)
            }
            Op::Slice(_, start, _) => local(Structure::Selection, Entries::Rows { start }),
            Op::Concat(a, _) => {
                let offset = if slot == 0 { 0 } else { size(a) };
                local(Structure::Selection, Entries::Placed { offset })
            }
            Op::Reduce(r, a, b) => match r.partial() {
                RowPartial::Uniform => local(Structure::Shared, Entries::Constant(r.weight(cols))),
                RowPartial::Other => {
                    let other = if slot == 0 { b.unwrap_or(a) } else { a };
                    // A param on the other side (`dot(x, w)`) is one row
                    // for the whole batch.
                    let structure = if self.is_param_node(other) {
                        Structure::Shared
                    } else {
                        Structure::Dense
                    };
                    local(structure, Entries::Values(other))
                }
                RowPartial::Softmax | RowPartial::Others => {
                    local(Structure::Dense, Entries::KeptRow)
                }
            },
            Op::Variable(_) | Op::Constant(_) => {
                return Err(Error::Shape("leaves have no local Jacobian".into()));
            }
        })
    }
}

impl Op {
    /// For an element-wise operation, its f64 partial derivative with
    /// respect to operand `slot` at operand values `a` (and `b` for a
    /// binary one), from the op tables: the entries of
    /// [`Entries::Partial`]. `None` for any other operation.
    pub fn elementwise_partial(&self, slot: usize, a: f64, b: f64) -> Option<f64> {
        match *self {
            Op::Unary(f, _) => Some(f.value_and_derivative(a).1),
            Op::Binary(f, ..) => {
                let (_, da, db) = f.value_and_partials(a, b);
                Some(if slot == 0 { da } else { db })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_structure() -> Result<()> {
        let program = Program::parse(
            "input x[3]  s
             param W[2,3]  V[3,2]
             h = tanh(W @ x) + s
             z = [h, x[0:1]]
             output logsumexp(z * 2) + mean(x @ V) + dot(x, x) * prod(x)",
        )?;
        let mut seen = Vec::new();
        for (node, op) in program.nodes.iter().enumerate() {
            for slot in 0..op.operands().count() {
                let Ok(local) = program.local_jacobian(node, slot) else {
                    // Only a product's matrix slot has none.
                    assert!(op.matrix_product().is_some() && slot == 0, "{op:?}");
                    continue;
                };
                let JacShape {
                    structure,
                    rows,
                    cols,
                } = local.shape;
                assert_eq!(rows, program.shapes[node].size(), "{op:?}");
                let operand = op.operands().nth(slot).unwrap_or(node);
                assert_eq!(cols, program.shapes[operand].size(), "{op:?}");
                seen.push((structure, local.entries));
            }
        }
        let has = |structure, entries: fn(&Entries) -> bool| {
            seen.iter().any(|(s, e)| *s == structure && entries(e))
        };
        assert!(has(Structure::Diagonal, |e| matches!(
            e,
            Entries::Partial { .. }
        )));
        assert!(has(Structure::Dense, |e| matches!(
            e,
            Entries::Partial { .. }
        )));
        assert!(has(Structure::Identity, |e| *e == Entries::Unit));
        assert!(has(Structure::Shared, |e| matches!(e, Entries::Matrix(_))));
        assert!(has(Structure::Shared, |e| matches!(
            e,
            Entries::MatrixTransposed(_)
        )));
        assert!(has(Structure::Shared, |e| *e == Entries::Constant(1.0 / 2.0)));
        assert!(has(Structure::Selection, |e| matches!(
            e,
            Entries::Rows { start: 0 }
        )));
        assert!(has(Structure::Selection, |e| matches!(
            e,
            Entries::Placed { offset: 2 }
        )));
        assert!(has(Structure::Dense, |e| *e == Entries::KeptRow));
        assert!(has(Structure::Dense, |e| matches!(e, Entries::Values(_))));
        Ok(())
    }
}
