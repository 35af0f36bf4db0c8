//! Batched Jacobians that keep their structure, so that composing them by the
//! vector chain rule never densifies what need not be (Parr & Howard, "The
//! Matrix Calculus You Need For Deep Learning"; Griewank & Naumann,
//! "Accumulating Jacobians as chained sparse matrix products", 2003).
//!
//! Layout is numerator layout: `J[i][j] = d y_i / d x_j`, so the Jacobian of
//! `y` (m) with respect to `x` (n) is m x n, and the chain rule for
//! `y = f(g(x))` is the product `J_f J_g`. Every Jacobian stands for a batch
//! of B of them, one per sample; B is passed to every operation because
//! [`Jacobian::Identity`] and [`Jacobian::Shared`] are the same for every
//! sample and do not store it.
//!
//! Two layers: [`JacShape`] with [`product_shape`] and [`sum_shape`] say what
//! structure an operation yields and what it costs, without values (for
//! planning, e.g. the matrix-chain order in `schedule::chain`); [`Jacobian`]
//! holds f64 values and computes them, as the CPU reference.
//!
//! Cost model, for the whole batch (a multiply-add is 2 flops; bytes are 4
//! per f32 element, each operand read once and the result written once; an
//! identity stores nothing):
//!
//! | product            | result   | flops       |
//! |--------------------|----------|-------------|
//! | I X, X I           | X        | 0 (no work) |
//! | Diag Diag          | Diag     | B n         |
//! | Diag Shared/Dense  | Dense    | B m n       |
//! | Shared/Dense Diag  | Dense    | B m n       |
//! | Shared Shared      | Shared   | 2 m k n     |
//! | other pairs        | Dense    | 2 B m k n   |
//!
//! A sum costs one flop per addition actually needed (only the diagonal
//! where one side is an identity or diagonal; once, not B times, where both
//! sides are shared): I+I, I+Diag, Diag+Diag give Diag (B n); Shared+Shared
//! gives Shared (m n); I+Shared gives Shared (n); Diag+Shared gives Dense
//! (B n); Dense with Dense or Shared gives Dense (B m n); Dense with I or Diag
//! gives Dense (B n).

mod algebra;

use std::fmt;
use std::ops::{Add, AddAssign};

use crate::error::{Error, Result};

/// What a batched Jacobian looks like, which decides what storing and
/// multiplying it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Structure {
    /// The identity, the same for every sample; stores nothing.
    Identity,
    /// A square diagonal matrix per sample (element-wise functions).
    Diagonal,
    /// One matrix for the whole batch (linear layers: the weights).
    Shared,
    /// A full matrix per sample.
    Dense,
    /// Picks or places elements (the local Jacobian of an index, a slice
    /// or an assembly): at most one nonzero, a one, in each row, the same
    /// for every sample. Stored as the column each row picks; its products
    /// are gathers of the other factor's rows or columns, no arithmetic.
    Selection,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Structure::Identity => "Identity",
            Structure::Diagonal => "Diagonal",
            Structure::Shared => "Shared",
            Structure::Dense => "Dense",
            Structure::Selection => "Selection",
        })
    }
}

/// Structure and size of a batched Jacobian (rows x cols per sample); for planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JacShape {
    /// How the values are stored.
    pub structure: Structure,
    /// Outputs (m).
    pub rows: usize,
    /// Inputs (n).
    pub cols: usize,
}

impl JacShape {
    /// The n x n identity.
    pub fn identity(n: usize) -> Self {
        Self {
            structure: Structure::Identity,
            rows: n,
            cols: n,
        }
    }

    /// An n x n diagonal per sample.
    pub fn diagonal(n: usize) -> Self {
        Self {
            structure: Structure::Diagonal,
            rows: n,
            cols: n,
        }
    }

    /// One rows x cols matrix for the whole batch.
    pub fn shared(rows: usize, cols: usize) -> Self {
        Self {
            structure: Structure::Shared,
            rows,
            cols,
        }
    }

    /// A rows x cols matrix per sample.
    pub fn dense(rows: usize, cols: usize) -> Self {
        Self {
            structure: Structure::Dense,
            rows,
            cols,
        }
    }

    /// Checks that an identity or diagonal is square: the fields are public,
    /// so a non-square one can be written down, and it has no meaning.
    pub fn validate(&self) -> Result<()> {
        let square_only = matches!(self.structure, Structure::Identity | Structure::Diagonal);
        if square_only && self.rows != self.cols {
            return Err(Error::Shape(format!(
                "{self} is not square; an identity or diagonal Jacobian has rows = cols"
            )));
        }
        Ok(())
    }

    /// Elements stored for a batch of `batch`, as f64 so that costs of huge
    /// batches cannot overflow.
    pub fn elements(&self, batch: usize) -> f64 {
        let (b, m, n) = (batch as f64, self.rows as f64, self.cols as f64);
        match self.structure {
            Structure::Identity => 0.0,
            Structure::Diagonal => b * n,
            Structure::Shared => m * n,
            Structure::Dense => b * m * n,
            // The column each row picks.
            Structure::Selection => m,
        }
    }
}

impl fmt::Display for JacShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}", self.structure, self.rows, self.cols)
    }
}

/// Work of one operation for the whole batch: flops (a multiply-add is 2) and bytes moved (f32: 4 per element read or written, counting each operand once and the result once).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cost {
    /// Floating-point operations.
    pub flops: f64,
    /// Bytes read and written, at 4 bytes per element.
    pub bytes: f64,
}

impl Cost {
    /// Whether `self` is cheaper than `other`: fewer flops, ties broken by
    /// fewer bytes. This order is compatible with addition, which is what
    /// lets a chain's optimum be built from its sub-chains' optima.
    pub fn cheaper_than(&self, other: &Cost) -> bool {
        self.flops < other.flops || (self.flops == other.flops && self.bytes < other.bytes)
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost {
            flops: self.flops + other.flops,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), Add::add)
    }
}

/// 4 bytes per f32 element, over both operands and the result.
fn traffic(a: JacShape, b: JacShape, result: JacShape, batch: usize) -> f64 {
    4.0 * (a.elements(batch) + b.elements(batch) + result.elements(batch))
}

/// The structure, size and cost of `left` (m x k) times `right` (k x n) for
/// a batch of `batch`; a Shape error if the inner sizes differ.
pub fn product_shape(left: JacShape, right: JacShape, batch: usize) -> Result<(JacShape, Cost)> {
    use Structure::{Dense, Diagonal, Identity, Selection, Shared};
    left.validate()?;
    right.validate()?;
    if left.cols != right.rows {
        return Err(Error::Shape(format!(
            "cannot multiply {left} by {right}: the left has {} columns but the right has {} rows",
            left.cols, right.rows
        )));
    }
    let (b, m, k, n) = (
        batch as f64,
        left.rows as f64,
        left.cols as f64,
        right.cols as f64,
    );
    let (structure, flops) = match (left.structure, right.structure) {
        // An identity is a no-op: the other operand is the product as it is.
        (Identity, _) => return Ok((right, Cost::default())),
        (_, Identity) => return Ok((left, Cost::default())),
        // Gathers: the other factor's rows (S J) or columns (J S) moved,
        // nothing computed. Two selections compose into one.
        (Selection, Selection) => (Selection, 0.0),
        (Selection, Shared) | (Shared, Selection) => (Shared, 0.0),
        (Selection, Diagonal | Dense) | (Diagonal | Dense, Selection) => (Dense, 0.0),
        (Diagonal, Diagonal) => (Diagonal, b * n),
        // Scaling rows or columns: one multiply per result element.
        (Diagonal, Shared | Dense) | (Shared | Dense, Diagonal) => (Dense, b * m * n),
        // One product serves every sample.
        (Shared, Shared) => (Shared, 2.0 * m * k * n),
        (Shared | Dense, Shared | Dense) => (Dense, 2.0 * b * m * k * n),
    };
    let result = JacShape {
        structure,
        rows: left.rows,
        cols: right.cols,
    };
    let bytes = traffic(left, right, result, batch);
    Ok((result, Cost { flops, bytes }))
}

/// The structure and cost of `a + b` for a batch of `batch`; a Shape error
/// naming both shapes if their sizes differ.
pub fn sum_shape(a: JacShape, b: JacShape, batch: usize) -> Result<(JacShape, Cost)> {
    use Structure::{Dense, Diagonal, Identity, Selection, Shared};
    a.validate()?;
    b.validate()?;
    if a.rows != b.rows || a.cols != b.cols {
        return Err(Error::Shape(format!(
            "cannot add {a} and {b}: the sizes differ"
        )));
    }
    let (bf, m, n) = (batch as f64, a.rows as f64, a.cols as f64);
    // A selection in a sum is formed as the matrix it stands for.
    let formed = |j: JacShape| JacShape {
        structure: if j.structure == Selection {
            Shared
        } else {
            j.structure
        },
        ..j
    };
    let (a, b) = (formed(a), formed(b));
    let (structure, flops) = match (a.structure, b.structure) {
        (Identity | Diagonal, Identity | Diagonal) => (Diagonal, bf * n),
        (Shared | Selection, Shared | Selection) => (Shared, m * n),
        (Identity, Shared | Selection) | (Shared | Selection, Identity) => (Shared, n),
        // A per-sample diagonal makes the shared matrix differ per sample.
        (Diagonal, Shared | Selection) | (Shared | Selection, Diagonal) => (Dense, bf * n),
        (Dense, Dense | Shared | Selection) | (Shared | Selection, Dense) => (Dense, bf * m * n),
        (Dense, Identity | Diagonal) | (Identity | Diagonal, Dense) => (Dense, bf * n),
    };
    let result = JacShape {
        structure,
        rows: a.rows,
        cols: a.cols,
    };
    let bytes = traffic(a, b, result, batch);
    Ok((result, Cost { flops, bytes }))
}

/// A batched Jacobian with its values, f64 (the CPU reference).
#[derive(Debug, Clone, PartialEq)]
pub enum Jacobian {
    /// I_n for every sample.
    Identity {
        /// Rows = cols.
        n: usize,
    },
    /// B x n: sample b's diagonal at `data[b*n..]`.
    Diagonal {
        /// Samples (B).
        batch: usize,
        /// Rows = cols.
        n: usize,
        /// The diagonals, sample after sample.
        data: Vec<f64>,
    },
    /// One rows x cols matrix, row-major, the same for every sample.
    Shared {
        /// Outputs.
        rows: usize,
        /// Inputs.
        cols: usize,
        /// Row-major values.
        data: Vec<f64>,
    },
    /// B x rows x cols, row-major per sample.
    Dense {
        /// Samples (B).
        batch: usize,
        /// Outputs.
        rows: usize,
        /// Inputs.
        cols: usize,
        /// Row-major matrices, sample after sample.
        data: Vec<f64>,
    },
}

/// The product of `dims` as a length, or a TooLarge error where it could
/// not be allocated (beyond `isize::MAX` bytes, where `Vec` would panic).
pub(crate) fn checked_len(dims: &[usize], what: &dyn fmt::Display) -> Result<usize> {
    let too_large = || Error::TooLarge {
        what: what.to_string(),
        needed: u64::MAX,
        limit: isize::MAX as u64,
    };
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_large)?;
    match len.checked_mul(std::mem::size_of::<f64>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(len),
        _ => Err(too_large()),
    }
}

/// Zeros for an array of `dims` f64 values, or an error if the length
/// overflows or the host cannot allocate it: a dense Jacobian of a long
/// vector can ask for more memory than there is, which must be an error,
/// not an abort.
pub(crate) fn zeros(dims: &[usize], what: &dyn fmt::Display) -> Result<Vec<f64>> {
    let len = checked_len(dims, what)?;
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| Error::HostMemory {
        what: what.to_string(),
        needed: (len as u64).saturating_mul(8),
    })?;
    data.resize(len, 0.0);
    Ok(data)
}

impl Jacobian {
    /// A diagonal Jacobian, checked: `data` must hold `batch * n` values.
    pub fn diagonal(batch: usize, n: usize, data: Vec<f64>) -> Result<Self> {
        let jacobian = Jacobian::Diagonal { batch, n, data };
        jacobian.validate(batch)?;
        Ok(jacobian)
    }

    /// A shared Jacobian, checked: `data` must hold `rows * cols` values.
    pub fn shared(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        let jacobian = Jacobian::Shared { rows, cols, data };
        jacobian.validate(0)?;
        Ok(jacobian)
    }

    /// A dense Jacobian, checked: `data` must hold `batch * rows * cols` values.
    pub fn dense(batch: usize, rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        let jacobian = Jacobian::Dense {
            batch,
            rows,
            cols,
            data,
        };
        jacobian.validate(batch)?;
        Ok(jacobian)
    }

    /// Structure and size, for planning.
    pub fn shape(&self) -> JacShape {
        match *self {
            Jacobian::Identity { n } => JacShape::identity(n),
            Jacobian::Diagonal { n, .. } => JacShape::diagonal(n),
            Jacobian::Shared { rows, cols, .. } => JacShape::shared(rows, cols),
            Jacobian::Dense { rows, cols, .. } => JacShape::dense(rows, cols),
        }
    }

    /// Outputs per sample.
    pub fn rows(&self) -> usize {
        self.shape().rows
    }

    /// Inputs per sample.
    pub fn cols(&self) -> usize {
        self.shape().cols
    }

    /// Checks that the stored batch (if any) is `batch` and that `data` has
    /// the length the sizes say. Every operation calls this first, because
    /// the fields are public and an inconsistent value must give an error,
    /// not an out-of-bounds panic.
    pub fn validate(&self, batch: usize) -> Result<()> {
        let (stored_batch, dims, len): (Option<usize>, &[usize], usize) = match self {
            Jacobian::Identity { .. } => return Ok(()),
            Jacobian::Diagonal { batch, n, data } => (Some(*batch), &[*batch, *n], data.len()),
            Jacobian::Shared { rows, cols, data } => (None, &[*rows, *cols], data.len()),
            Jacobian::Dense {
                batch,
                rows,
                cols,
                data,
            } => (Some(*batch), &[*batch, *rows, *cols], data.len()),
        };
        let shape = self.shape();
        match stored_batch {
            Some(stored) if stored != batch => {
                return Err(Error::Shape(format!(
                    "{shape} holds a batch of {stored} but the operation is for a batch of {batch}"
                )));
            }
            _ => {}
        }
        let expected = checked_len(dims, &shape)?;
        if len != expected {
            return Err(Error::Shape(format!(
                "{shape} should hold {expected} values but holds {len}"
            )));
        }
        Ok(())
    }

    /// The dense view, B x rows x cols, or an error if the Jacobian is
    /// inconsistent with `batch` or the view would not fit in memory.
    pub fn try_to_dense(&self, batch: usize) -> Result<Vec<f64>> {
        self.validate(batch)?;
        let shape = self.shape();
        let what = format!("the dense view of {batch} samples' {shape} Jacobian");
        let mut out = zeros(&[batch, shape.rows, shape.cols], &what)?;
        self.add_into_dense(&mut out);
        Ok(out)
    }

    /// The dense view, B x rows x cols. Empty if the Jacobian is inconsistent
    /// with `batch` (see [`Jacobian::validate`]); [`Jacobian::try_to_dense`]
    /// says why.
    pub fn to_dense(&self, batch: usize) -> Vec<f64> {
        self.try_to_dense(batch).unwrap_or_default()
    }

    /// The product `self * right`, with the structure [`product_shape`] says.
    pub fn product(&self, right: &Jacobian, batch: usize) -> Result<Jacobian> {
        algebra::product(self, right, batch)
    }

    /// The sum `self + other`, with the structure [`sum_shape`] says.
    pub fn sum(&self, other: &Jacobian, batch: usize) -> Result<Jacobian> {
        algebra::sum(self, other, batch)
    }

    /// `J v` per sample (forward mode): tangents B x cols to B x rows.
    pub fn jvp(&self, tangents: &[f64], batch: usize) -> Result<Vec<f64>> {
        algebra::jvp(self, tangents, batch)
    }

    /// `u^T J` per sample (reverse mode): cotangents B x rows to B x cols.
    pub fn vjp(&self, cotangents: &[f64], batch: usize) -> Result<Vec<f64>> {
        algebra::vjp(self, cotangents, batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sums_and_products_keep_their_structure() {
        let i3 = Jacobian::Identity { n: 3 };
        let two = i3.sum(&i3, 2).unwrap();
        assert_eq!(two, Jacobian::diagonal(2, 3, vec![2.0; 6]).unwrap());
        assert_eq!(i3.product(&i3, 2).unwrap(), i3);
        let s = Jacobian::shared(3, 3, (0..9).map(f64::from).collect()).unwrap();
        let shifted = i3.sum(&s, 4).unwrap();
        assert_eq!(shifted.shape(), JacShape::shared(3, 3));
        assert_eq!(
            shifted.to_dense(1),
            vec![1., 1., 2., 3., 5., 5., 6., 7., 9.]
        );
    }

    #[test]
    fn inconsistent_values_are_errors_not_panics() {
        let short = Jacobian::Dense {
            batch: 2,
            rows: 2,
            cols: 2,
            data: vec![1.0; 7],
        };
        assert!(matches!(short.validate(2), Err(Error::Shape(_))));
        assert!(short.to_dense(2).is_empty());
        assert!(short.try_to_dense(2).is_err());
        let i2 = Jacobian::Identity { n: 2 };
        assert!(short.product(&i2, 2).is_err());
        assert!(i2.product(&short, 2).is_err());
        assert!(short.sum(&i2, 2).is_err());
        assert!(short.jvp(&[0.0; 4], 2).is_err());
        assert!(short.vjp(&[0.0; 4], 2).is_err());
        // A stored batch other than the one passed is a mismatch too.
        let d = Jacobian::diagonal(3, 2, vec![1.0; 6]).unwrap();
        assert!(d.product(&d, 4).is_err());
        assert!(d.to_dense(4).is_empty());
        assert!(Jacobian::dense(2, 2, 2, vec![0.0; 3]).is_err());
        assert!(Jacobian::shared(2, 2, vec![0.0; 3]).is_err());
        let huge = Jacobian::Identity { n: usize::MAX / 2 };
        assert!(matches!(huge.try_to_dense(4), Err(Error::TooLarge { .. })));
        let not_square = JacShape {
            structure: Structure::Diagonal,
            rows: 2,
            cols: 3,
        };
        assert!(product_shape(not_square, JacShape::dense(3, 1), 1).is_err());
        assert!(sum_shape(not_square, not_square, 1).is_err());
    }

    #[test]
    fn a_dense_view_past_memory_is_an_error_not_an_abort() {
        // 1e18 bytes: within isize, beyond any machine's memory.
        let n = 353_553_391;
        match (Jacobian::Identity { n }).try_to_dense(1) {
            Err(Error::HostMemory { needed, .. }) => assert!(needed >= 1_000_000_000_000_000_000),
            other => panic!(
                "expected a host-memory error, got {:?}",
                other.map(|v| v.len())
            ),
        }
        // A length past isize is refused before any allocation.
        assert!(matches!(
            (Jacobian::Identity { n: 1 << 40 }).try_to_dense(2),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn empty_sizes_work() {
        let a = Jacobian::dense(2, 3, 0, vec![]).unwrap();
        let b = Jacobian::shared(0, 4, vec![]).unwrap();
        let p = a.product(&b, 2).unwrap();
        assert_eq!(p.shape(), JacShape::dense(3, 4));
        assert_eq!(p.to_dense(2), vec![0.0; 24]);
        assert_eq!(a.jvp(&[], 2).unwrap(), vec![0.0; 6]);
        assert_eq!(a.vjp(&[1.0; 6], 2).unwrap(), Vec::<f64>::new());
        let z = Jacobian::diagonal(0, 5, vec![]).unwrap();
        assert_eq!(z.product(&z, 0).unwrap().to_dense(0), Vec::<f64>::new());
    }

    #[test]
    fn sums_of_mismatched_sizes_name_both_shapes() {
        let message = sum_shape(JacShape::dense(2, 3), JacShape::shared(3, 2), 1)
            .unwrap_err()
            .to_string();
        assert!(message.contains("Dense 2x3") && message.contains("Shared 3x2"));
    }

    #[test]
    fn cost_adds_and_orders_lexicographically() {
        let a = Cost {
            flops: 1.0,
            bytes: 5.0,
        };
        let b = Cost {
            flops: 1.0,
            bytes: 6.0,
        };
        assert!(a.cheaper_than(&b) && !b.cheaper_than(&a) && !a.cheaper_than(&a));
        let mut c = a;
        c += b;
        assert_eq!(c, a + b);
        assert_eq!([a, b].into_iter().sum::<Cost>(), a + b);
    }
}
