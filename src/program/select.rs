//! The shape rules of indexing and assembly: `x[i]` and `x[a:b]` of a
//! vector, within its bounds, and `[a, b, ...]` of scalars and vectors.
//! Both lower to selections ([`Op::Slice`], [`Op::Concat`]), whose
//! Jacobians pick or place elements and are never formed as matrices.

use super::lower::{Lowering, Parsed};
use super::{MAX_ELEMENTS, NodeId, Op, Shape};
use crate::lang::{Expr, Span};

impl Lowering<'_> {
    /// `base[start]` (`end` is `None`) or `base[start:end]`, where `base` is
    /// the node of the text at `at` and `brackets` the index's text.
    pub(super) fn index(
        &mut self,
        base: NodeId,
        at: Span,
        start: usize,
        end: Option<usize>,
        brackets: Span,
    ) -> Parsed<NodeId> {
        let name = self.text(at);
        let n = match self.shape(base) {
            Shape::Vector(n) => n,
            shape => {
                return Err(self
                    .error(
                        at,
                        format!("`{name}` is {shape}; only a vector can be indexed"),
                    )
                    .with_help("index a vector declared as `input x[n]` or computed from one"));
            }
        };
        let (length, shape) = match end {
            None if start >= n => {
                return Err(self
                    .error(
                        brackets,
                        format!(
                            "index {start} is out of range for `{name}`, which has {n} elements"
                        ),
                    )
                    .with_help(format!("indices of `{name}` run from 0 to {}", n - 1)));
            }
            None => (1, Shape::Scalar),
            Some(end) if end <= start => {
                return Err(self
                    .error(brackets, format!("the slice `[{start}:{end}]` is empty"))
                    .with_help("`x[a:b]` holds elements a to b - 1, so b must exceed a"));
            }
            Some(end) if end > n => {
                return Err(self
                    .error(
                        brackets,
                        format!("the slice `[{start}:{end}]` runs past the end of `{name}`, which has {n} elements"),
                    )
                    .with_help(format!("the last slice that fits ends at {n}: `[{start}:{n}]`")));
            }
            Some(end) => (end - start, Shape::Vector(end - start)),
        };
        if start == 0 && length == n && shape != Shape::Scalar {
            return Ok(base);
        }
        // A slice of a slice reads the original vector.
        if let Some(&Op::Slice(inner, offset, Shape::Vector(_))) = self.nodes.get(base) {
            if self.shape(inner) == Shape::Scalar {
                // `[s][0]` is `s`.
                return Ok(inner);
            }
            return Ok(self.add(Op::Slice(inner, offset + start, shape), shape));
        }
        Ok(self.add(Op::Slice(base, start, shape), shape))
    }

    /// `[parts...]`, the parts' elements in order as one vector.
    pub(super) fn assemble(&mut self, parts: &[NodeId], expr: &Expr) -> Parsed<NodeId> {
        let total: usize = parts.iter().map(|&p| self.shape(p).size()).sum();
        if total > MAX_ELEMENTS {
            return Err(self.error(
                expr.span,
                format!(
                    "this vector would have {total} elements; at most {MAX_ELEMENTS} are allowed"
                ),
            ));
        }
        let Some((&first, rest)) = parts.split_first() else {
            return Err(self.error(expr.span, "`[]` assembles no elements"));
        };
        let mut joined = match self.shape(first) {
            // `[s]` is the vector of one element.
            Shape::Scalar if rest.is_empty() => {
                let shape = Shape::Vector(1);
                self.add(Op::Slice(first, 0, shape), shape)
            }
            _ => first,
        };
        for &part in rest {
            let size = self.shape(joined).size() + self.shape(part).size();
            joined = self.add(Op::Concat(joined, part), Shape::Vector(size));
        }
        Ok(joined)
    }
}
