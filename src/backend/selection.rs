//! Selections on the CPU path: the local Jacobians of indexing and
//! assembly ([`Op::Slice`](crate::program::Op::Slice),
//! [`Op::Concat`](crate::program::Op::Concat)) pick or place elements, so
//! they are kept as the column each row picks, and a product with one
//! gathers the rows (S J) or scatters the columns (J S) of the other
//! factor. No matrix of zeros and ones is formed, except where a selection
//! is itself the answer or meets another term in a sum that overlaps it.

use crate::error::{Error, Result};
use crate::jacobian::{Jacobian, zeros};

/// A rows x cols matrix whose row r is the unit row picking column
/// `pick[r]`, or zero where `pick[r]` is `None`; the same for every sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selection {
    /// Columns.
    pub(crate) cols: usize,
    /// The column each row picks; its length is the number of rows.
    pub(crate) pick: Vec<Option<usize>>,
}

impl Selection {
    /// Rows `start..start + len` of the identity of size `cols`: a slice.
    pub(crate) fn rows_of_identity(start: usize, len: usize, cols: usize) -> Self {
        Selection {
            cols,
            pick: (start..start + len).map(Some).collect(),
        }
    }

    /// The identity of size `cols` placed at rows `offset..` of `rows`: a
    /// part of a concatenation.
    pub(crate) fn placed(offset: usize, cols: usize, rows: usize) -> Self {
        Selection {
            cols,
            pick: (0..rows)
                .map(|r| r.checked_sub(offset).filter(|&c| c < cols))
                .collect(),
        }
    }

    fn rows(&self) -> usize {
        self.pick.len()
    }

    /// `self * right`, itself a selection: row r picks what `right`'s row
    /// `self.pick[r]` picks. The caller checks that the sizes meet.
    pub(crate) fn compose(&self, right: &Selection) -> Selection {
        let pick = self
            .pick
            .iter()
            .map(|c| c.and_then(|c| right.pick.get(c).copied().flatten()))
            .collect();
        Selection {
            cols: right.cols,
            pick,
        }
    }

    /// The selection as a Shared matrix, for a result or an overlapping sum.
    fn to_shared(&self) -> Result<Jacobian> {
        let mut data = zeros(&[self.rows(), self.cols], &"a selection's matrix")?;
        for (r, c) in self.pick.iter().enumerate() {
            if let Some(c) = c
                && let Some(one) = data.get_mut(r * self.cols + c)
            {
                *one = 1.0;
            }
        }
        Ok(Jacobian::Shared {
            rows: self.rows(),
            cols: self.cols,
            data,
        })
    }
}

/// What the CPU algebra multiplies: a structured Jacobian or a selection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CpuJacobian {
    /// Identity, Diagonal, Shared or Dense.
    Structured(Jacobian),
    /// Picks or places elements.
    Selection(Selection),
}

fn mismatch(left: (usize, usize), right: (usize, usize)) -> Error {
    Error::Shape(format!(
        "cannot multiply a {}x{} Jacobian by a {}x{} one",
        left.0, left.1, right.0, right.1
    ))
}

/// Row `r` of sample `b` of `j` (`cols` wide), added into `out` scaled by 1.
fn add_row(j: &Jacobian, b: usize, r: usize, out: &mut [f64]) {
    match j {
        Jacobian::Identity { .. } => {
            if let Some(x) = out.get_mut(r) {
                *x += 1.0;
            }
        }
        Jacobian::Diagonal { n, data, .. } => {
            if let (Some(x), Some(&d)) = (out.get_mut(r), data.get(b * n + r)) {
                *x += d;
            }
        }
        Jacobian::Shared { cols, data, .. } => {
            let row = data.get(r * cols..(r + 1) * cols).unwrap_or(&[]);
            for (x, &v) in out.iter_mut().zip(row) {
                *x += v;
            }
        }
        Jacobian::Dense {
            rows, cols, data, ..
        } => {
            let start = (b * rows + r) * cols;
            let row = data.get(start..start + cols).unwrap_or(&[]);
            for (x, &v) in out.iter_mut().zip(row) {
                *x += v;
            }
        }
    }
}

/// Element (r, c) of sample `b` of `j`.
fn element(j: &Jacobian, b: usize, r: usize, c: usize) -> f64 {
    match j {
        Jacobian::Identity { .. } => f64::from(u8::from(r == c)),
        Jacobian::Diagonal { n, data, .. } => {
            if r == c {
                data.get(b * n + r).copied().unwrap_or(0.0)
            } else {
                0.0
            }
        }
        Jacobian::Shared { cols, data, .. } => data.get(r * cols + c).copied().unwrap_or(0.0),
        Jacobian::Dense {
            rows, cols, data, ..
        } => data.get((b * rows + r) * cols + c).copied().unwrap_or(0.0),
    }
}

/// S J: the rows of `j` that `s` picks.
fn gather_rows(s: &Selection, j: &Jacobian, batch: usize) -> Result<CpuJacobian> {
    if s.cols != j.rows() {
        return Err(mismatch((s.rows(), s.cols), (j.rows(), j.cols())));
    }
    let cols = j.cols();
    let per_sample = !matches!(j, Jacobian::Identity { .. } | Jacobian::Shared { .. });
    if matches!(j, Jacobian::Identity { .. }) {
        return Ok(CpuJacobian::Selection(s.clone()));
    }
    let samples = if per_sample { batch } else { 1 };
    let mut data = zeros(&[samples, s.rows(), cols], &"a selection's product")?;
    for b in 0..samples {
        for (r, c) in s.pick.iter().enumerate() {
            if let Some(c) = *c {
                let start = (b * s.rows() + r) * cols;
                if let Some(row) = data.get_mut(start..start + cols) {
                    add_row(j, b, c, row);
                }
            }
        }
    }
    Ok(CpuJacobian::Structured(if per_sample {
        Jacobian::Dense {
            batch,
            rows: s.rows(),
            cols,
            data,
        }
    } else {
        Jacobian::Shared {
            rows: s.rows(),
            cols,
            data,
        }
    }))
}

/// J S: the columns of `j` moved to the columns `s` places them at.
fn scatter_cols(j: &Jacobian, s: &Selection, batch: usize) -> Result<CpuJacobian> {
    if j.cols() != s.rows() {
        return Err(mismatch((j.rows(), j.cols()), (s.rows(), s.cols)));
    }
    if matches!(j, Jacobian::Identity { .. }) {
        return Ok(CpuJacobian::Selection(s.clone()));
    }
    let (rows, cols) = (j.rows(), s.cols);
    let per_sample = !matches!(j, Jacobian::Shared { .. });
    let samples = if per_sample { batch } else { 1 };
    let mut data = zeros(&[samples, rows, cols], &"a selection's product")?;
    for b in 0..samples {
        for (k, c) in s.pick.iter().enumerate() {
            let Some(c) = *c else { continue };
            for i in 0..rows {
                if let Some(x) = data.get_mut((b * rows + i) * cols + c) {
                    *x += element(j, b, i, k);
                }
            }
        }
    }
    Ok(CpuJacobian::Structured(if per_sample {
        Jacobian::Dense {
            batch,
            rows,
            cols,
            data,
        }
    } else {
        Jacobian::Shared { rows, cols, data }
    }))
}

impl CpuJacobian {
    /// The value as a structured Jacobian, a selection as Shared.
    pub(crate) fn into_jacobian(self) -> Result<Jacobian> {
        match self {
            CpuJacobian::Structured(j) => Ok(j),
            CpuJacobian::Selection(s) => s.to_shared(),
        }
    }

    /// `self * right`.
    pub(crate) fn product(self, right: CpuJacobian, batch: usize) -> Result<CpuJacobian> {
        match (self, right) {
            (CpuJacobian::Structured(l), CpuJacobian::Structured(r)) => {
                Ok(CpuJacobian::Structured(l.product(&r, batch)?))
            }
            (CpuJacobian::Selection(s), CpuJacobian::Structured(j)) => {
                j.validate(batch)?;
                gather_rows(&s, &j, batch)
            }
            (CpuJacobian::Structured(j), CpuJacobian::Selection(s)) => {
                j.validate(batch)?;
                scatter_cols(&j, &s, batch)
            }
            (CpuJacobian::Selection(l), CpuJacobian::Selection(r)) => {
                if l.cols != r.rows() {
                    return Err(mismatch((l.rows(), l.cols), (r.rows(), r.cols)));
                }
                Ok(CpuJacobian::Selection(l.compose(&r)))
            }
        }
    }

    /// `self + other`; two selections that pick in different rows stay one.
    pub(crate) fn sum(self, other: CpuJacobian, batch: usize) -> Result<CpuJacobian> {
        if let (CpuJacobian::Selection(a), CpuJacobian::Selection(b)) = (&self, &other)
            && a.cols == b.cols
            && a.rows() == b.rows()
            && a.pick
                .iter()
                .zip(&b.pick)
                .all(|(x, y)| x.is_none() || y.is_none())
        {
            let pick = a.pick.iter().zip(&b.pick).map(|(x, y)| x.or(*y)).collect();
            return Ok(CpuJacobian::Selection(Selection { cols: a.cols, pick }));
        }
        let (a, b) = (self.into_jacobian()?, other.into_jacobian()?);
        Ok(CpuJacobian::Structured(a.sum(&b, batch)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(j: CpuJacobian, batch: usize) -> Vec<f64> {
        j.into_jacobian().expect("a matrix").to_dense(batch)
    }

    #[test]
    fn gathers_and_scatters_match_the_matrix_products() -> Result<()> {
        let batch = 2;
        let d = Jacobian::Dense {
            batch,
            rows: 3,
            cols: 2,
            data: (0..12).map(f64::from).collect(),
        };
        let diag = Jacobian::Diagonal {
            batch,
            n: 3,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        let s = Selection::rows_of_identity(1, 2, 3);
        let place = Selection::placed(1, 3, 5);
        for j in [d, diag.clone()] {
            let by_matrix = s.to_shared()?.product(&j, batch).map(|p| p.to_dense(batch));
            let by_gather = CpuJacobian::Selection(s.clone())
                .product(CpuJacobian::Structured(j), batch)
                .map(|p| dense(p, batch));
            assert_eq!(by_matrix.ok(), by_gather.ok());
        }
        let j = Jacobian::Dense {
            batch,
            rows: 2,
            cols: 5,
            data: (0..20).map(f64::from).collect(),
        };
        let by_matrix = j
            .product(&place.to_shared()?, batch)
            .map(|p| p.to_dense(batch));
        let by_scatter = CpuJacobian::Structured(j)
            .product(CpuJacobian::Selection(place.clone()), batch)
            .map(|p| dense(p, batch));
        assert_eq!(by_matrix.ok(), by_scatter.ok());
        let slice = Selection::rows_of_identity(1, 3, 4);
        let by_matrix = place
            .to_shared()?
            .product(&slice.to_shared()?, batch)
            .map(|p| p.to_dense(batch));
        let composed = CpuJacobian::Selection(place)
            .product(CpuJacobian::Selection(slice), batch)
            .map(|p| dense(p, batch));
        assert_eq!(by_matrix.ok(), composed.ok());
        let overlapping = CpuJacobian::Selection(s.clone()).sum(CpuJacobian::Selection(s), batch);
        assert!(matches!(overlapping, Ok(CpuJacobian::Structured(_))));
        Ok(())
    }
}
