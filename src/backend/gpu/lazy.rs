//! The lazy algebra of structured device Jacobians: products keep their
//! diagonal factors pending (as row, inner and column scalings) until a
//! kernel needs them, so that diagonals are folded into products and never
//! stored densely; sums keep structure where the rules allow.

use std::sync::Arc;

use super::context::GpuContext;
use super::jacobian::{BatchLayout, GpuJacobian, Segments, WORKGROUP, shape_error};
use crate::backend::selection::Selection;
use crate::error::{Error, Result};

/// A product not yet (fully) computed: diag(row) * core * diag(col).
#[derive(Debug, Clone)]
pub(crate) enum Lazy {
    /// A finished Jacobian.
    Ready(GpuJacobian),
    /// A selection (an index's, a slice's or an assembly's local
    /// Jacobian, or a product of them), the same for every sample: its
    /// products with other factors are gathers, never matrix products.
    Selection(Selection),
    /// A scaled core; at least one of the parts is pending.
    Scaled {
        row: Option<Segments>,
        core: Core,
        col: Option<Segments>,
        rows: usize,
        cols: usize,
    },
}

/// The middle of a pending product.
#[derive(Debug, Clone)]
pub(crate) enum Core {
    /// A Shared or Dense matrix.
    Matrix(GpuJacobian),
    /// a * diag(mid) * b, a and b Shared or Dense.
    Product {
        a: GpuJacobian,
        mid: Option<Segments>,
        b: GpuJacobian,
    },
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct JacParams {
    mode: u32,
    rows: u32,
    cols: u32,
    total: u32,
    row_stride: u32,
    x_kind: u32,
    y_kind: u32,
    flags: u32,
}

/// Operand kinds of shaders/jacobian.wgsl.
const ABSENT: u32 = 0;
const IDENTITY: u32 = 1;
const DIAGONAL: u32 = 2;
const SHARED: u32 = 3;
const DENSE: u32 = 4;

fn kind_code(j: &GpuJacobian) -> u32 {
    match j {
        GpuJacobian::Identity { .. } => IDENTITY,
        GpuJacobian::Diagonal { .. } => DIAGONAL,
        GpuJacobian::Shared { .. } => SHARED,
        GpuJacobian::Dense { .. } => DENSE,
    }
}

impl GpuContext {
    /// One pass of shaders/jacobian.wgsl over every segment.
    #[expect(clippy::too_many_arguments, reason = "the kernel's own parameters")]
    fn elementwise(
        &self,
        mode: u32,
        x: (&GpuJacobian, u32),
        y: Option<(&GpuJacobian, u32)>,
        row: Option<&Segments>,
        col: Option<&Segments>,
        out_per_sample: usize,
        shape: (usize, usize),
        layout: BatchLayout,
    ) -> Result<Segments> {
        let kernel = self.kernel_sync("jacobian/elementwise", crate::shaders::JACOBIAN)?;
        let buffer_of = |j: &GpuJacobian, s: usize| -> Arc<wgpu::Buffer> {
            match j {
                GpuJacobian::Shared { buffer, .. } => Arc::clone(buffer),
                GpuJacobian::Diagonal { segments, .. } | GpuJacobian::Dense { segments, .. } => {
                    segments
                        .get(s)
                        .cloned()
                        .unwrap_or_else(|| Arc::clone(&self.dummy))
                }
                GpuJacobian::Identity { .. } => Arc::clone(&self.dummy),
            }
        };
        let mut segments = Vec::with_capacity(layout.segments());
        for s in 0..layout.segments() {
            let total = layout.samples_in(s) * out_per_sample;
            let out = self.pooled(total);
            let grid = self.grid_1d(total);
            let params = JacParams {
                mode,
                rows: shape.0 as u32,
                cols: shape.1 as u32,
                total: total as u32,
                row_stride: grid.0 * WORKGROUP as u32,
                x_kind: x.1,
                y_kind: y.map_or(ABSENT, |y| y.1),
                flags: u32::from(row.is_some()) | (u32::from(col.is_some()) << 2),
            };
            let uniform = self.uniform(&params);
            let xb = buffer_of(x.0, s);
            let yb = y.map_or_else(|| Arc::clone(&self.dummy), |y| buffer_of(y.0, s));
            let r = row
                .and_then(|r| r.get(s).cloned())
                .unwrap_or_else(|| Arc::clone(&self.dummy));
            let c = col
                .and_then(|c| c.get(s).cloned())
                .unwrap_or_else(|| Arc::clone(&self.dummy));
            self.dispatch(
                &kernel,
                &[&uniform, &xb, &yb, &out, &r, &c],
                grid,
                "jacobian elementwise",
            );
            segments.push(out);
        }
        Ok(segments)
    }

    /// diag(row) X diag(col) for a dense X (B x m x n in segments), each
    /// product the chain rule's.
    pub(super) fn scale_dense(
        &self,
        x: &Segments,
        row: Option<&Segments>,
        col: Option<&Segments>,
        (rows, cols): (usize, usize),
        layout: BatchLayout,
    ) -> Result<Segments> {
        let x = GpuJacobian::Dense {
            rows,
            cols,
            segments: x.clone(),
        };
        self.elementwise(
            0,
            (&x, DENSE),
            None,
            row,
            col,
            rows * cols,
            (rows, cols),
            layout,
        )
    }

    /// x + y densified (or x alone, densified, when y is None).
    pub(super) fn combine(
        &self,
        x: &GpuJacobian,
        y: Option<&GpuJacobian>,
        layout: BatchLayout,
    ) -> Result<GpuJacobian> {
        let (rows, cols) = x.dims();
        if let Some(y) = y {
            if y.dims() != (rows, cols) {
                return Err(shape_error("sum", (rows, cols), y.dims()));
            }
        }
        let segments = self.elementwise(
            1,
            (x, kind_code(x)),
            y.map(|y| (y, kind_code(y))),
            None,
            None,
            rows * cols,
            (rows, cols),
            layout,
        )?;
        Ok(GpuJacobian::Dense {
            rows,
            cols,
            segments,
        })
    }

    /// x ⊙ y for two diagonals (B x n each).
    fn hadamard(
        &self,
        x: &Segments,
        y: &Segments,
        n: usize,
        layout: BatchLayout,
    ) -> Result<Segments> {
        let dx = GpuJacobian::Diagonal {
            n,
            segments: x.clone(),
        };
        let dy = GpuJacobian::Diagonal {
            n,
            segments: y.clone(),
        };
        self.elementwise(
            2,
            (&dx, DIAGONAL),
            Some((&dy, DIAGONAL)),
            None,
            None,
            n,
            (n, 1),
            layout,
        )
    }

    /// The sum of two Jacobians of one shape, keeping structure where the
    /// rules allow (Diagonal + Diagonal stays diagonal, Shared + Shared shared).
    pub(crate) fn jacobian_sum(
        &self,
        x: &GpuJacobian,
        y: &GpuJacobian,
        layout: BatchLayout,
    ) -> Result<GpuJacobian> {
        if x.dims() != y.dims() {
            return Err(shape_error("sum", x.dims(), y.dims()));
        }
        let (rows, cols) = x.dims();
        let diagonal_like = |j: &GpuJacobian| {
            matches!(
                j,
                GpuJacobian::Identity { .. } | GpuJacobian::Diagonal { .. }
            )
        };
        if diagonal_like(x) && diagonal_like(y) {
            // Mode 1 over an n x 1 "matrix" adds the two diagonals as vectors:
            // an identity term contributes 1 where i == j, i.e. at column 0.
            let as_vector = |j: &GpuJacobian| match j {
                GpuJacobian::Diagonal { n, segments } => (
                    GpuJacobian::Dense {
                        rows: *n,
                        cols: 1,
                        segments: segments.clone(),
                    },
                    DENSE,
                ),
                other => (other.clone(), ABSENT),
            };
            let (xv, xk) = as_vector(x);
            let (yv, yk) = as_vector(y);
            let ones = |k: u32| if k == ABSENT { 1.0 } else { 0.0 };
            if xk == ABSENT || yk == ABSENT {
                // Identity + something diagonal: add 1 through a constant diagonal.
                let one = vec![ones(xk) + ones(yk); layout.batch * rows];
                let extra = self.upload_segments(layout, rows, &one)?;
                let base = if xk == DENSE {
                    Some(xv)
                } else if yk == DENSE {
                    Some(yv)
                } else {
                    None
                };
                let segments = match base {
                    Some(base) => self.elementwise(
                        1,
                        (&base, DENSE),
                        Some((
                            &GpuJacobian::Dense {
                                rows,
                                cols: 1,
                                segments: extra,
                            },
                            DENSE,
                        )),
                        None,
                        None,
                        rows,
                        (rows, 1),
                        layout,
                    )?,
                    None => extra,
                };
                return Ok(GpuJacobian::Diagonal { n: rows, segments });
            }
            let segments = self.elementwise(
                1,
                (&xv, DENSE),
                Some((&yv, DENSE)),
                None,
                None,
                rows,
                (rows, 1),
                layout,
            )?;
            return Ok(GpuJacobian::Diagonal { n: rows, segments });
        }
        let invariant = |j: &GpuJacobian| {
            matches!(j, GpuJacobian::Identity { .. } | GpuJacobian::Shared { .. })
        };
        if invariant(x) && invariant(y) {
            // Nothing varies per sample: one sum for the whole batch.
            let one = BatchLayout {
                batch: 1,
                per_segment: 1,
            };
            if let GpuJacobian::Dense { segments, .. } = self.combine(x, Some(y), one)? {
                if let Some(buffer) = segments.into_iter().next() {
                    return Ok(GpuJacobian::Shared { rows, cols, buffer });
                }
            }
            return Err(Error::Shape("a shared sum produced no buffer".into()));
        }
        self.combine(x, Some(y), layout)
    }

    /// Finishes a lazy product.
    pub(crate) fn materialize(&self, lazy: Lazy, layout: BatchLayout) -> Result<GpuJacobian> {
        match lazy {
            Lazy::Ready(j) => Ok(j),
            Lazy::Selection(s) => self.selection_matrix(&s),
            Lazy::Scaled {
                row,
                core,
                col,
                rows,
                cols,
            } => match core {
                Core::Product { a, mid, b } => self.matmul(
                    row.as_ref(),
                    &a,
                    mid.as_ref(),
                    &b,
                    col.as_ref(),
                    false,
                    layout,
                ),
                Core::Matrix(m) if row.is_none() && col.is_none() => Ok(m),
                Core::Matrix(m) => {
                    let segments = self.elementwise(
                        0,
                        (&m, kind_code(&m)),
                        None,
                        row.as_ref(),
                        col.as_ref(),
                        rows * cols,
                        (rows, cols),
                        layout,
                    )?;
                    Ok(GpuJacobian::Dense {
                        rows,
                        cols,
                        segments,
                    })
                }
            },
        }
    }

    /// The lazy product left * right.
    pub(crate) fn lazy_product(
        &self,
        left: Lazy,
        right: Lazy,
        layout: BatchLayout,
    ) -> Result<Lazy> {
        let dims = |l: &Lazy| match l {
            Lazy::Ready(j) => j.dims(),
            Lazy::Selection(s) => (s.pick.len(), s.cols),
            Lazy::Scaled { rows, cols, .. } => (*rows, *cols),
        };
        let (m, k) = dims(&left);
        let (k2, n) = dims(&right);
        if k != k2 {
            return Err(shape_error("product", (m, k), (k2, n)));
        }
        // Identity and diagonal factors never reach a kernel on their own.
        match (left, right) {
            (Lazy::Ready(GpuJacobian::Identity { .. }), other)
            | (other, Lazy::Ready(GpuJacobian::Identity { .. })) => Ok(other),
            (Lazy::Selection(l), Lazy::Selection(r)) => Ok(Lazy::Selection(l.compose(&r))),
            // S X: the rows of X that S picks.
            (Lazy::Selection(s), other) => {
                let x = self.materialize(other, layout)?;
                let rows = self.index_map(s.pick.iter().copied())?;
                Ok(Lazy::Ready(self.gather(
                    &x,
                    (Some(&rows), None),
                    (m, n),
                    layout,
                )?))
            }
            // X S: the columns of X moved to where S places them, each
            // picked once (an index's, slice's or assembly's are).
            (other, Lazy::Selection(s)) => {
                let x = self.materialize(other, layout)?;
                let mut inverse = vec![None; n];
                for (i, c) in s.pick.iter().enumerate() {
                    if let Some(slot) = c.and_then(|c| inverse.get_mut(c)) {
                        if slot.is_some() {
                            let matrix = Lazy::Ready(self.selection_matrix(&s)?);
                            return self.lazy_product(Lazy::Ready(x), matrix, layout);
                        }
                        *slot = Some(i);
                    }
                }
                let cols = self.index_map(inverse.into_iter())?;
                Ok(Lazy::Ready(self.gather(
                    &x,
                    (None, Some(&cols)),
                    (m, n),
                    layout,
                )?))
            }
            (
                Lazy::Ready(GpuJacobian::Diagonal { segments: a, .. }),
                Lazy::Ready(GpuJacobian::Diagonal { segments: b, .. }),
            ) => Ok(Lazy::Ready(GpuJacobian::Diagonal {
                n: m,
                segments: self.hadamard(&a, &b, m, layout)?,
            })),
            (Lazy::Ready(GpuJacobian::Diagonal { segments: d, .. }), other) => {
                let (row, core, col) = self.open(other)?;
                let row = match row {
                    Some(r) => self.hadamard(&d, &r, m, layout)?,
                    None => d,
                };
                Ok(Lazy::Scaled {
                    row: Some(row),
                    core,
                    col,
                    rows: m,
                    cols: n,
                })
            }
            (other, Lazy::Ready(GpuJacobian::Diagonal { segments: d, .. })) => {
                let (row, core, col) = self.open(other)?;
                let col = match col {
                    Some(c) => self.hadamard(&c, &d, n, layout)?,
                    None => d,
                };
                Ok(Lazy::Scaled {
                    row,
                    core,
                    col: Some(col),
                    rows: m,
                    cols: n,
                })
            }
            (left, right) => {
                let (row, left_core, left_col) = self.open(left)?;
                let (right_row, right_core, col) = self.open(right)?;
                let a = self.finish_core(left_core, layout)?;
                let b = self.finish_core(right_core, layout)?;
                let mid = match (left_col, right_row) {
                    (Some(x), Some(y)) => Some(self.hadamard(&x, &y, k, layout)?),
                    (x, y) => x.or(y),
                };
                Ok(Lazy::Scaled {
                    row,
                    core: Core::Product { a, mid, b },
                    col,
                    rows: m,
                    cols: n,
                })
            }
        }
    }

    /// Splits a lazy value into (row scaling, core, column scaling).
    fn open(&self, lazy: Lazy) -> Result<(Option<Segments>, Core, Option<Segments>)> {
        match lazy {
            Lazy::Ready(j @ (GpuJacobian::Shared { .. } | GpuJacobian::Dense { .. })) => {
                Ok((None, Core::Matrix(j), None))
            }
            Lazy::Ready(_) | Lazy::Selection(_) => Err(Error::Shape(
                "identity, diagonal and selection factors are handled before this point".into(),
            )),
            Lazy::Scaled { row, core, col, .. } => Ok((row, core, col)),
        }
    }

    fn finish_core(&self, core: Core, layout: BatchLayout) -> Result<GpuJacobian> {
        match core {
            Core::Matrix(m) => Ok(m),
            Core::Product { a, mid, b } => {
                self.matmul(None, &a, mid.as_ref(), &b, None, false, layout)
            }
        }
    }

    /// The selection as the matrix of zeros and ones it stands for, shared
    /// by the batch: where it is a result, or meets a sum.
    fn selection_matrix(&self, s: &Selection) -> Result<GpuJacobian> {
        let (rows, cols) = (s.pick.len(), s.cols);
        let what = format!("the {rows} x {cols} matrix of a selection");
        let mut data = crate::backend::host_vec(rows.saturating_mul(cols), &what)?;
        for (r, c) in s.pick.iter().enumerate() {
            if let Some(one) = c.and_then(|c| data.get_mut(r * cols + c)) {
                *one = 1.0;
            }
        }
        Ok(GpuJacobian::Shared {
            rows,
            cols,
            buffer: self.upload_shared(&data),
        })
    }

    /// Element (rows[i], cols[j]) of `x` at (i, j) of a `shape` result,
    /// zero where a map holds [`NONE`]; an absent map reads as it is
    /// (shaders/gather.wgsl). Shared when `x` is, per sample otherwise.
    fn gather(
        &self,
        x: &GpuJacobian,
        (rows, cols): (Option<&Arc<wgpu::Buffer>>, Option<&Arc<wgpu::Buffer>>),
        shape: (usize, usize),
        layout: BatchLayout,
    ) -> Result<GpuJacobian> {
        let kernel = pollster::block_on(
            self.kernel("jacobian/gather", || crate::shaders::GATHER.to_string()),
        )?;
        let (x_rows, x_cols) = x.dims();
        let shared = matches!(x, GpuJacobian::Identity { .. } | GpuJacobian::Shared { .. });
        let segments = if shared { 1 } else { layout.segments() };
        let mut out = Vec::with_capacity(segments);
        for s in 0..segments {
            let samples = if shared { 1 } else { layout.samples_in(s) };
            let total = samples * shape.0 * shape.1;
            let buffer = self.pooled(total);
            let grid = self.grid_1d(total);
            let source = match x {
                GpuJacobian::Identity { .. } => Arc::clone(&self.dummy),
                GpuJacobian::Shared { buffer, .. } => Arc::clone(buffer),
                GpuJacobian::Diagonal { segments, .. } | GpuJacobian::Dense { segments, .. } => {
                    segments.get(s).cloned().ok_or_else(|| {
                        Error::Shape(
                            "a per-sample factor has fewer segments than the layout".into(),
                        )
                    })?
                }
            };
            let params = GatherParams {
                total: total as u32,
                row_stride: grid.0 * WORKGROUP as u32,
                rows: shape.0 as u32,
                cols: shape.1 as u32,
                x_rows: x_rows as u32,
                x_cols: x_cols as u32,
                kind: kind_code(x),
                flags: u32::from(rows.is_some()) | (u32::from(cols.is_some()) << 1),
            };
            let uniform = self.uniform(&params);
            let row_map = rows.map_or_else(|| Arc::clone(&self.dummy), Arc::clone);
            let col_map = cols.map_or_else(|| Arc::clone(&self.dummy), Arc::clone);
            self.dispatch(
                &kernel,
                &[&uniform, &source, &row_map, &col_map, &buffer],
                grid,
                "jacobian gather",
            );
            out.push(buffer);
        }
        let (rows, cols) = shape;
        Ok(if shared {
            let buffer = out
                .into_iter()
                .next()
                .unwrap_or_else(|| Arc::clone(&self.dummy));
            GpuJacobian::Shared { rows, cols, buffer }
        } else {
            GpuJacobian::Dense {
                rows,
                cols,
                segments: out,
            }
        })
    }
}

/// shaders/gather.wgsl's mark for "no element": a zero row or column.
const NONE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    total: u32,
    row_stride: u32,
    rows: u32,
    cols: u32,
    x_rows: u32,
    x_cols: u32,
    kind: u32,
    flags: u32,
}

impl GpuContext {
    /// An index map for shaders/gather.wgsl on the device.
    fn index_map(&self, map: impl Iterator<Item = Option<usize>>) -> Result<Arc<wgpu::Buffer>> {
        let mut words: Vec<u32> = Vec::new();
        for index in map {
            words.push(match index {
                Some(i) => u32::try_from(i).map_err(|_| {
                    Error::Shape(format!("a selection index {i} past what u32 holds"))
                })?,
                None => NONE,
            });
        }
        // Stored as the bytes they are: the kernel reads u32.
        Ok(self.upload_shared(bytemuck::cast_slice(&words)))
    }
}
