//! The values of products, sums and Jacobian-vector products, structure by
//! structure, in f64. Every entry point validates its operands first, so the
//! slicing below stays in bounds; results take the structure that
//! `product_shape` and `sum_shape` decide, so planner and values agree.
//! Every product of two entries is the chain rule's (`chain_mul`): a zero
//! factor gives zero even against an infinite or NaN one, so a path through
//! a zero partial contributes nothing, in whatever order a chain is taken.

use super::{Jacobian, Structure, checked_len, product_shape, sum_shape, zeros};
use crate::error::{Error, Result};
use crate::ops::chain_mul;

/// Calls `f(b, sample)` for each `size`-long sample of `out`. A zero size
/// has nothing to fill, and `chunks_exact_mut(0)` would panic.
fn for_each_sample(out: &mut [f64], size: usize, mut f: impl FnMut(usize, &mut [f64])) {
    if size == 0 {
        return;
    }
    for (b, sample) in out.chunks_exact_mut(size).enumerate() {
        f(b, sample);
    }
}

/// Sample `b`'s matrix of a shared or dense operand (the same slice for
/// every sample when shared); empty for the others, which callers exclude.
fn matrix(j: &Jacobian, b: usize) -> &[f64] {
    match j {
        Jacobian::Shared { data, .. } => data,
        Jacobian::Dense {
            rows, cols, data, ..
        } => {
            let size = rows * cols;
            &data[b * size..(b + 1) * size]
        }
        Jacobian::Identity { .. } | Jacobian::Diagonal { .. } => &[],
    }
}

/// Sample `b`'s diagonal of a diagonal operand; empty for the others.
fn diagonal(j: &Jacobian, b: usize) -> &[f64] {
    match j {
        Jacobian::Diagonal { n, data, .. } => &data[b * n..(b + 1) * n],
        _ => &[],
    }
}

/// `out += a b` for row-major `a` (m x k) and `b` (k x n), `out` m x n.
/// The i-k-j order streams rows of `b` and `out`, which keeps it cache-friendly.
fn matmul_add(out: &mut [f64], a: &[f64], b: &[f64], k: usize, n: usize) {
    if out.is_empty() || k == 0 {
        return;
    }
    for (out_row, a_row) in out.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
        for (&a_ik, b_row) in a_row.iter().zip(b.chunks_exact(n)) {
            for (o, &b_kj) in out_row.iter_mut().zip(b_row) {
                *o += chain_mul(a_ik, b_kj);
            }
        }
    }
}

/// Adds 1 (identity) or the diagonal (diagonal) to the diagonal of each
/// n x n sample of `out`; the other structures never reach here.
fn add_diagonal(j: &Jacobian, out: &mut [f64], n: usize) {
    for_each_sample(out, n * n, |b, sample| {
        let diagonal_entries = sample.iter_mut().step_by(n + 1);
        match j {
            Jacobian::Identity { .. } => diagonal_entries.for_each(|x| *x += 1.0),
            Jacobian::Diagonal { .. } => {
                for (x, &d) in diagonal_entries.zip(diagonal(j, b)) {
                    *x += d;
                }
            }
            Jacobian::Shared { .. } | Jacobian::Dense { .. } => {}
        }
    });
}

impl Jacobian {
    /// `out += self` over the dense view (B x rows x cols); `self` must be
    /// valid for the batch `out` holds.
    pub(super) fn add_into_dense(&self, out: &mut [f64]) {
        let shape = self.shape();
        match self {
            Jacobian::Identity { .. } | Jacobian::Diagonal { .. } => {
                add_diagonal(self, out, shape.rows);
            }
            Jacobian::Shared { .. } | Jacobian::Dense { .. } => {
                for_each_sample(out, shape.rows * shape.cols, |b, sample| {
                    for (o, &x) in sample.iter_mut().zip(matrix(self, b)) {
                        *o += x;
                    }
                });
            }
        }
    }
}

pub(super) fn product(left: &Jacobian, right: &Jacobian, batch: usize) -> Result<Jacobian> {
    left.validate(batch)?;
    right.validate(batch)?;
    let (shape, _) = product_shape(left.shape(), right.shape(), batch)?;
    let (m, k, n) = (shape.rows, left.cols(), shape.cols);
    match (left, right) {
        (Jacobian::Identity { .. }, x) | (x, Jacobian::Identity { .. }) => return Ok(x.clone()),
        (Jacobian::Diagonal { data: a, .. }, Jacobian::Diagonal { data: b, .. }) => {
            let data = a.iter().zip(b).map(|(&x, &y)| chain_mul(x, y)).collect();
            return Ok(Jacobian::Diagonal { batch, n, data });
        }
        (Jacobian::Shared { data: a, .. }, Jacobian::Shared { data: b, .. }) => {
            // One product for the whole batch: the point of keeping it shared.
            let mut data = zeros(&[m, n], &shape)?;
            matmul_add(&mut data, a, b, k, n);
            return Ok(Jacobian::Shared {
                rows: m,
                cols: n,
                data,
            });
        }
        _ => {}
    }
    debug_assert_eq!(shape.structure, Structure::Dense);
    let mut data = zeros(&[batch, m, n], &shape)?;
    match (left, right) {
        (Jacobian::Diagonal { .. }, _) => for_each_sample(&mut data, m * n, |b, out| {
            // Scale row i of the right operand by d_i.
            for ((out_row, row), &d) in out
                .chunks_exact_mut(n)
                .zip(matrix(right, b).chunks_exact(n))
                .zip(diagonal(left, b))
            {
                for (o, &x) in out_row.iter_mut().zip(row) {
                    *o = chain_mul(d, x);
                }
            }
        }),
        (_, Jacobian::Diagonal { .. }) => for_each_sample(&mut data, m * n, |b, out| {
            // Scale column j of the left operand by d_j.
            let d = diagonal(right, b);
            for (out_row, row) in out.chunks_exact_mut(n).zip(matrix(left, b).chunks_exact(n)) {
                for ((o, &x), &dj) in out_row.iter_mut().zip(row).zip(d) {
                    *o = chain_mul(x, dj);
                }
            }
        }),
        _ => for_each_sample(&mut data, m * n, |b, out| {
            matmul_add(out, matrix(left, b), matrix(right, b), k, n);
        }),
    }
    Ok(Jacobian::Dense {
        batch,
        rows: m,
        cols: n,
        data,
    })
}

pub(super) fn sum(a: &Jacobian, b: &Jacobian, batch: usize) -> Result<Jacobian> {
    a.validate(batch)?;
    b.validate(batch)?;
    let (shape, _) = sum_shape(a.shape(), b.shape(), batch)?;
    let (m, n) = (shape.rows, shape.cols);
    Ok(match shape.structure {
        // Both are identities or diagonals: add the diagonals.
        Structure::Identity | Structure::Diagonal => {
            let mut data = zeros(&[batch, n], &shape)?;
            for term in [a, b] {
                match term {
                    Jacobian::Diagonal { data: d, .. } => {
                        data.iter_mut().zip(d).for_each(|(x, &y)| *x += y);
                    }
                    _ => data.iter_mut().for_each(|x| *x += 1.0),
                }
            }
            Jacobian::Diagonal { batch, n, data }
        }
        // Both are shared, or one is an identity: one matrix still serves all.
        Structure::Shared => {
            let mut data = zeros(&[m, n], &shape)?;
            for term in [a, b] {
                match term {
                    Jacobian::Shared { data: s, .. } => {
                        data.iter_mut().zip(s).for_each(|(x, &y)| *x += y);
                    }
                    _ => add_diagonal(term, &mut data, n),
                }
            }
            Jacobian::Shared {
                rows: m,
                cols: n,
                data,
            }
        }
        // Never the sum of stored Jacobians; `sum_shape` forms selections.
        Structure::Selection => {
            return Err(Error::Shape("a sum cannot be a selection".into()));
        }
        Structure::Dense => {
            let mut data = zeros(&[batch, m, n], &shape)?;
            a.add_into_dense(&mut data);
            b.add_into_dense(&mut data);
            Jacobian::Dense {
                batch,
                rows: m,
                cols: n,
                data,
            }
        }
    })
}

/// Checks that a vector holds `batch * width` values.
fn check_vector(j: &Jacobian, what: &str, len: usize, batch: usize, width: usize) -> Result<()> {
    let shape = j.shape();
    let expected = checked_len(&[batch, width], &shape)?;
    if len != expected {
        return Err(Error::Shape(format!(
            "{what} of {shape} for a batch of {batch} needs {expected} values \
             ({batch} x {width}) but got {len}"
        )));
    }
    Ok(())
}

pub(super) fn jvp(j: &Jacobian, tangents: &[f64], batch: usize) -> Result<Vec<f64>> {
    j.validate(batch)?;
    let (m, n) = (j.rows(), j.cols());
    check_vector(j, "jvp", tangents.len(), batch, n)?;
    Ok(match j {
        Jacobian::Identity { .. } => tangents.to_vec(),
        Jacobian::Diagonal { data, .. } => data
            .iter()
            .zip(tangents)
            .map(|(&d, &v)| chain_mul(d, v))
            .collect(),
        Jacobian::Shared { .. } | Jacobian::Dense { .. } => {
            let mut out = zeros(&[batch, m], &j.shape())?;
            if n > 0 {
                for_each_sample(&mut out, m, |b, out| {
                    let v = &tangents[b * n..(b + 1) * n];
                    for (o, row) in out.iter_mut().zip(matrix(j, b).chunks_exact(n)) {
                        *o = row.iter().zip(v).map(|(&x, &y)| chain_mul(x, y)).sum();
                    }
                });
            }
            out
        }
    })
}

pub(super) fn vjp(j: &Jacobian, cotangents: &[f64], batch: usize) -> Result<Vec<f64>> {
    j.validate(batch)?;
    let (m, n) = (j.rows(), j.cols());
    check_vector(j, "vjp", cotangents.len(), batch, m)?;
    Ok(match j {
        Jacobian::Identity { .. } => cotangents.to_vec(),
        Jacobian::Diagonal { data, .. } => data
            .iter()
            .zip(cotangents)
            .map(|(&d, &u)| chain_mul(d, u))
            .collect(),
        Jacobian::Shared { .. } | Jacobian::Dense { .. } => {
            let mut out = zeros(&[batch, n], &j.shape())?;
            // u^T J is a combination of J's rows weighted by u.
            for_each_sample(&mut out, n, |b, out| {
                let u = &cotangents[b * m..(b + 1) * m];
                for (&ui, row) in u.iter().zip(matrix(j, b).chunks_exact(n)) {
                    for (o, &x) in out.iter_mut().zip(row) {
                        *o += chain_mul(ui, x);
                    }
                }
            });
            out
        }
    })
}
