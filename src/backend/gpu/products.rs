//! Products of structured Jacobians on the device: the tiled batched
//! product (shaders/matmul.wgsl) with diagonal scalings folded into its
//! rows, inner dimension and columns, and the per-element product for many
//! small matrices (shaders/matmul_small.wgsl), including G^T X over a batch.

use std::sync::Arc;

use super::array::F32_BYTES;
use super::context::GpuContext;
use super::jacobian::{BatchLayout, GpuJacobian, Segments, WORKGROUP, shape_error};
use super::rows::{RowOp, RowOperand};
use crate::compile::unary_call;
use crate::error::{Error, Result};
use crate::ops::UnaryOp;

/// Rows and columns of C per matmul workgroup (shaders/matmul.wgsl).
const TILE: usize = 64;
/// Depth of the K slice that workgroup stages per loop iteration.
const K_TILE: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    samples: u32,
    a_stride: u32,
    b_stride: u32,
    c_stride: u32,
    flags: u32,
    block_rows: u32,
    block_cols: u32,
    pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FaceSplitParams {
    m: u32,
    k: u32,
    n: u32,
    total: u32,
    row_stride: u32,
    flags: u32,
    pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SmallParams {
    m: u32,
    k: u32,
    n: u32,
    total: u32,
    a_stride: u32,
    b_stride: u32,
    row_stride: u32,
    flags: u32,
    k_chunk: u32,
    chunks: u32,
    pad: [u32; 2],
}

/// Flag bit of both product kernels: the products are the chain rule's.
const CHAIN: u32 = 32;
/// Flag bit 3 of shaders/matmul.wgsl: B is stored transposed.
const TRANSPOSED_B: u32 = 8;
/// Flag bit of the tiled kernel: a batch of face-split products.
const FACE_SPLIT: u32 = 64;
/// The largest face-splitting product (elements of T, k m n) formed to
/// turn a batch of scaled products into one: 16 MiB of f32.
const FACE_SPLIT_MAX: usize = 1 << 22;
/// Flag bits of both product kernels: row and column scaling.
const ROW_COL: u32 = 1 | 4;

/// The longest loop over K in one invocation of the per-element kernel:
/// software drivers stop a loop after 65,535 iterations without an error.
const SMALL_K: usize = 65_535;
/// Beyond this K, a product with few elements per sample is split along K
/// (each chunk one invocation, the chunks added by the tree of `rows.rs`)
/// so that a long dot product does not run on one invocation.
const SPLIT_FROM: usize = 8192;

/// How a product of `m x n` elements per sample over an inner dimension
/// `k` is split along K: (products per chunk, chunks), or `None` for one
/// loop per element. Chosen from the shape alone, so that a sample's result
/// never depends on the batch it came in. A chunk holds at least `m * n`
/// products, so the partials of a sample never outnumber its K.
fn split_plan(m: usize, k: usize, n: usize, tiled: bool) -> Option<(usize, usize)> {
    let needed = if tiled {
        k.div_ceil(K_TILE) > SMALL_K
    } else {
        k > SMALL_K || (k > SPLIT_FROM && m * n < 1024)
    };
    if !needed {
        return None;
    }
    let len = (m * n).max(256).max(k.div_ceil(4096)).min(SMALL_K);
    Some((len, k.div_ceil(len)))
}

impl GpuContext {
    /// C = diag(row) a diag(mid) b diag(col), a and b Shared or Dense
    /// (b optionally stored transposed). Shared when nothing varies per
    /// sample. A product of the chain rule: a factor that is exactly zero
    /// gives zero even against an infinite or NaN one (`chain_mul`).
    #[expect(clippy::too_many_arguments, reason = "the kernel's own parameters")]
    pub(crate) fn matmul(
        &self,
        row: Option<&Segments>,
        a: &GpuJacobian,
        mid: Option<&Segments>,
        b: &GpuJacobian,
        col: Option<&Segments>,
        transpose_b: bool,
        layout: BatchLayout,
    ) -> Result<GpuJacobian> {
        self.scaled_product(row, a, mid, b, col, transpose_b, layout, CHAIN)
    }

    /// a b with IEEE's products, for values rather than derivatives (the
    /// forward pass's `W @ x`, where 0 * Inf is NaN, as on the CPU).
    pub(crate) fn value_product(
        &self,
        a: &GpuJacobian,
        b: &GpuJacobian,
        transpose_b: bool,
        layout: BatchLayout,
    ) -> Result<GpuJacobian> {
        self.scaled_product(None, a, None, b, None, transpose_b, layout, 0)
    }

    /// Whether [`GpuContext::layer_product`] takes a layer of `samples`
    /// rows, `k` inputs and `m` outputs in one tiled kernel: no split of K
    /// (the epilogue must follow the whole sum) and a grid within limits.
    pub(crate) fn layer_fits(&self, samples: usize, k: usize, m: usize) -> bool {
        let max_grid = self.limits.max_workgroups_per_dimension as usize;
        split_plan(samples, k, m, true).is_none()
            && samples.div_ceil(TILE) <= max_grid
            && m.div_ceil(TILE) <= max_grid
    }

    /// A layer of the forward pass as one product with its epilogue:
    /// f(X W^T + 1 bias^T) for X the samples' rows (`samples` x k, in `x`)
    /// and W^T stored as `weights` (m x k, the layout the tiled kernel reads
    /// for `W @ x`), with `bias` (m values) added by column where given and
    /// the activation f applied where given, its derivative f' written
    /// beside the values where `derivative` says (the local Jacobian the
    /// plan reads; a values-only pass skips it). The products
    /// are IEEE's, as in the value of `W @ x` by node, so the results are
    /// those of the three nodes run one by one, without two of them going
    /// through memory. The caller checks [`GpuContext::layer_fits`].
    pub(crate) fn layer_product(
        &self,
        x: &Arc<wgpu::Buffer>,
        (samples, k, m): (usize, usize, usize),
        weights: &Arc<wgpu::Buffer>,
        (bias, activation, derivative): (Option<&Arc<wgpu::Buffer>>, Option<UnaryOp>, bool),
    ) -> Result<(Arc<wgpu::Buffer>, Option<Arc<wgpu::Buffer>>)> {
        if !self.layer_fits(samples, k, m) {
            return Err(Error::TooLarge {
                what: format!("a layer of {samples} x {k} by {k} x {m} in one kernel"),
                needed: (samples * m) as u64 * F32_BYTES,
                limit: u64::from(self.limits.max_workgroups_per_dimension).pow(2)
                    * (TILE * TILE) as u64
                    * F32_BYTES,
            });
        }
        let derivative = derivative && activation.is_some();
        let label = format!(
            "forward/layer{}{}{}",
            if bias.is_some() { "+bias" } else { "" },
            activation.map_or_else(String::new, |f| format!("+{f}")),
            if derivative { "+derivative" } else { "" }
        );
        // Generated on the first call only: the kernel cache keeps it.
        let source = || epilogue_source(bias.is_some(), activation, derivative);
        let kernel = pollster::block_on(self.kernel(&label, source))?;
        let out = self.pooled(samples * m);
        let derivative = derivative.then(|| self.pooled(samples * m));
        let params = MatmulParams {
            m: samples as u32,
            k: k as u32,
            n: m as u32,
            samples: 1,
            a_stride: 0,
            b_stride: 0,
            c_stride: (samples * m) as u32,
            flags: TRANSPOSED_B,
            block_rows: 0,
            block_cols: 0,
            pad: [0; 2],
        };
        let uniform = self.uniform(&params);
        let mut bound: Vec<&wgpu::Buffer> = vec![
            &uniform,
            x,
            weights,
            &out,
            &self.dummy,
            &self.dummy,
            bias.unwrap_or(&self.dummy),
        ];
        bound.extend(derivative.as_deref());
        self.dispatch(
            &kernel,
            &bound,
            (m.div_ceil(TILE) as u32, samples.div_ceil(TILE) as u32, 1),
            &label,
        );
        Ok((out, derivative))
    }

    #[expect(clippy::too_many_arguments, reason = "the kernel's own parameters")]
    fn scaled_product(
        &self,
        row: Option<&Segments>,
        a: &GpuJacobian,
        mid: Option<&Segments>,
        b: &GpuJacobian,
        col: Option<&Segments>,
        transpose_b: bool,
        layout: BatchLayout,
        chain: u32,
    ) -> Result<GpuJacobian> {
        let (m, k) = a.dims();
        let (b_rows, b_cols) = b.dims();
        let (kb, n) = if transpose_b {
            (b_cols, b_rows)
        } else {
            (b_rows, b_cols)
        };
        if k != kb {
            return Err(shape_error("matrix product", (m, k), (kb, n)));
        }
        // The tiled kernel's K loop runs ceil(k / K_TILE) times, which
        // `split_plan` keeps within what software drivers execute.
        let max_grid = self.limits.max_workgroups_per_dimension as usize;
        let small_shape = m * n <= 1024 || m < 4 || n < 4;
        let split = split_plan(m, k, n, !small_shape);
        if split.is_none()
            && !small_shape
            && (m.div_ceil(TILE) > max_grid || n.div_ceil(TILE) > max_grid)
        {
            return Err(Error::TooLarge {
                what: format!("a {m}x{k} by {k}x{n} product in one kernel"),
                needed: (m * n) as u64 * F32_BYTES,
                limit: (max_grid * TILE).pow(2) as u64 * F32_BYTES,
            });
        }
        let per_sample = |j: &GpuJacobian| matches!(j, GpuJacobian::Dense { .. });
        let varies =
            per_sample(a) || per_sample(b) || row.is_some() || mid.is_some() || col.is_some();
        let kernel = self.kernel_sync("jacobian/matmul", crate::shaders::MATMUL)?;
        let flags = u32::from(row.is_some())
            | (u32::from(mid.is_some()) << 1)
            | (u32::from(col.is_some()) << 2)
            | if transpose_b { TRANSPOSED_B } else { 0 }
            | chain;
        let operand = |j: &GpuJacobian, s: usize| -> Result<Arc<wgpu::Buffer>> {
            match j {
                GpuJacobian::Shared { buffer, .. } => Ok(Arc::clone(buffer)),
                GpuJacobian::Dense { segments, .. } => segments.get(s).cloned().ok_or_else(|| {
                    Error::Shape("a per-sample operand has fewer segments than the layout".into())
                }),
                _ => Err(Error::Shape("matmul operands are Shared or Dense".into())),
            }
        };
        let scale = |d: Option<&Segments>, s: usize| -> Arc<wgpu::Buffer> {
            d.and_then(|d| d.get(s).cloned())
                .unwrap_or_else(|| Arc::clone(&self.dummy))
        };
        let stride = |j: &GpuJacobian| match j {
            GpuJacobian::Dense { rows, cols, .. } => (rows * cols) as u32,
            _ => 0,
        };
        if let Some(split) = split {
            return self.split_product(
                row,
                a,
                mid,
                b,
                col,
                (m, k, n),
                flags,
                split,
                layout,
                varies,
            );
        }
        if !varies {
            let out = self.pooled(m * n);
            let params = MatmulParams {
                m: m as u32,
                k: k as u32,
                n: n as u32,
                samples: 1,
                a_stride: 0,
                b_stride: 0,
                c_stride: (m * n) as u32,
                flags,
                block_rows: 0,
                block_cols: 0,
                pad: [0; 2],
            };
            let uniform = self.uniform(&params);
            let (a0, b0) = (operand(a, 0)?, operand(b, 0)?);
            self.dispatch(
                &kernel,
                &[
                    &uniform,
                    &a0,
                    &b0,
                    &out,
                    &self.dummy,
                    &self.dummy,
                    &self.dummy,
                ],
                (n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1),
                "jacobian matmul",
            );
            return Ok(GpuJacobian::Shared {
                rows: m,
                cols: n,
                buffer: out,
            });
        }
        if let (Some(mid), false) = (mid, small_shape) {
            if let Some(out) =
                self.face_split_product(row, a, mid, b, col, (m, k, n), layout, flags)?
            {
                return Ok(out);
            }
        }
        // Many small products (a row times a matrix, an outer product): one
        // invocation per element beats 64 x 64 tiles that would sit idle.
        let small = small_shape;
        let small_kernel = if small {
            Some(self.kernel_sync("jacobian/matmul_small", crate::shaders::MATMUL_SMALL)?)
        } else {
            None
        };
        let mut segments = Vec::with_capacity(layout.segments());
        for s in 0..layout.segments() {
            let samples = layout.samples_in(s);
            let out = self.pooled(samples * m * n);
            if let Some(small_kernel) = &small_kernel {
                let total = samples * m * n;
                let (gx, gy, _) = self.grid_1d(total);
                let params = SmallParams {
                    m: m as u32,
                    k: k as u32,
                    n: n as u32,
                    total: total as u32,
                    a_stride: stride(a),
                    b_stride: stride(b),
                    row_stride: gx * WORKGROUP as u32,
                    flags,
                    k_chunk: 0,
                    chunks: 1,
                    pad: [0; 2],
                };
                let uniform = self.uniform(&params);
                let (a_s, b_s) = (operand(a, s)?, operand(b, s)?);
                let (r, md, c) = (scale(row, s), scale(mid, s), scale(col, s));
                self.dispatch(
                    small_kernel,
                    &[&uniform, &a_s, &b_s, &out, &r, &md, &c],
                    (gx, gy, 1),
                    "jacobian small matmul",
                );
                segments.push(out);
                continue;
            }
            let params = MatmulParams {
                m: m as u32,
                k: k as u32,
                n: n as u32,
                samples: samples as u32,
                a_stride: stride(a),
                b_stride: stride(b),
                c_stride: (m * n) as u32,
                flags,
                block_rows: 0,
                block_cols: 0,
                pad: [0; 2],
            };
            let uniform = self.uniform(&params);
            let (a_s, b_s) = (operand(a, s)?, operand(b, s)?);
            let (r, md, c) = (scale(row, s), scale(mid, s), scale(col, s));
            self.dispatch(
                &kernel,
                &[&uniform, &a_s, &b_s, &out, &r, &md, &c],
                (
                    n.div_ceil(TILE) as u32,
                    m.div_ceil(TILE) as u32,
                    samples as u32,
                ),
                "jacobian matmul",
            );
            segments.push(out);
        }
        Ok(GpuJacobian::Dense {
            rows: m,
            cols: n,
            segments,
        })
    }

    /// diag(row_b) A diag(mid_b) B diag(col_b) for every sample b, A and B
    /// shared, as one product over the whole batch: S T, where row b of S
    /// is mid_b and T (k x m n) is the face-splitting product of A and B
    /// (shaders/face_split.wgsl), with the row and column scalings in the
    /// product's epilogue. The same multiply-adds as one product per
    /// sample, but in tiles that sit full where m or n is smaller than a
    /// tile (W2's 32 x 64 Jacobians leave half of each 64 x 64 tile idle).
    /// `None` where the per-sample products waste little or T would be
    /// large: the caller runs them instead.
    #[expect(clippy::too_many_arguments, reason = "the kernel's own parameters")]
    fn face_split_product(
        &self,
        row: Option<&Segments>,
        a: &GpuJacobian,
        mid: &Segments,
        b: &GpuJacobian,
        col: Option<&Segments>,
        (m, k, n): (usize, usize, usize),
        layout: BatchLayout,
        flags: u32,
    ) -> Result<Option<GpuJacobian>> {
        let (GpuJacobian::Shared { buffer: a, .. }, GpuJacobian::Shared { buffer: b, .. }) = (a, b)
        else {
            return Ok(None);
        };
        let padded = m.next_multiple_of(TILE) * n.next_multiple_of(TILE);
        let wasteful = 8 * padded > 9 * m * n;
        let max_grid = self.limits.max_workgroups_per_dimension as usize;
        let total = k * m * n;
        if !wasteful
            || total > FACE_SPLIT_MAX.min(self.segment_capacity())
            || (m * n).div_ceil(TILE) > max_grid
            || layout.per_segment.div_ceil(TILE) > max_grid
        {
            return Ok(None);
        }
        let face = self.kernel_sync("jacobian/face_split", crate::shaders::FACE_SPLIT)?;
        let t = self.pooled(total);
        let (gx, gy, _) = self.grid_1d(total);
        let uniform = self.uniform(&FaceSplitParams {
            m: m as u32,
            k: k as u32,
            n: n as u32,
            total: total as u32,
            row_stride: gx * WORKGROUP as u32,
            flags: flags & (8 | CHAIN),
            pad: [0; 2],
        });
        self.dispatch(
            &face,
            &[&uniform, a, b, &t],
            (gx, gy, 1),
            "face-splitting product",
        );
        let kernel = self.kernel_sync("jacobian/matmul", crate::shaders::MATMUL)?;
        let scale = |d: Option<&Segments>, s: usize| -> Arc<wgpu::Buffer> {
            d.and_then(|d| d.get(s).cloned())
                .unwrap_or_else(|| Arc::clone(&self.dummy))
        };
        let mut segments = Vec::with_capacity(layout.segments());
        for s in 0..layout.segments() {
            let samples = layout.samples_in(s);
            let out = self.pooled(samples * m * n);
            let uniform = self.uniform(&MatmulParams {
                m: samples as u32,
                k: k as u32,
                n: (m * n) as u32,
                samples: 1,
                a_stride: 0,
                b_stride: 0,
                c_stride: 0,
                flags: (flags & (ROW_COL | CHAIN)) | FACE_SPLIT,
                block_rows: m as u32,
                block_cols: n as u32,
                pad: [0; 2],
            });
            let s_rows = mid.get(s).cloned().ok_or_else(|| {
                Error::Shape("an inner scaling has fewer segments than the layout".into())
            })?;
            let (r, c) = (scale(row, s), scale(col, s));
            self.dispatch(
                &kernel,
                &[&uniform, &s_rows, &t, &out, &r, &self.dummy, &c],
                (
                    (m * n).div_ceil(TILE) as u32,
                    samples.div_ceil(TILE) as u32,
                    1,
                ),
                "jacobian face-split matmul",
            );
            segments.push(out);
        }
        Ok(Some(GpuJacobian::Dense {
            rows: m,
            cols: n,
            segments,
        }))
    }

    /// The product of `scaled_product` split along K: the per-element
    /// kernel sums each chunk of K into partials, the tree of `rows.rs` adds
    /// each element's partials in a fixed order, and the row and column
    /// scalings follow (after the sum, as in the unsplit kernels).
    #[expect(clippy::too_many_arguments, reason = "the kernel's own parameters")]
    fn split_product(
        &self,
        row: Option<&Segments>,
        a: &GpuJacobian,
        mid: Option<&Segments>,
        b: &GpuJacobian,
        col: Option<&Segments>,
        (m, k, n): (usize, usize, usize),
        flags: u32,
        (k_chunk, chunks): (usize, usize),
        layout: BatchLayout,
        varies: bool,
    ) -> Result<GpuJacobian> {
        let kernel = self.kernel_sync("jacobian/matmul_small", crate::shaders::MATMUL_SMALL)?;
        let layout = if varies {
            layout
        } else {
            BatchLayout {
                batch: 1,
                per_segment: 1,
            }
        };
        let operand = |j: &GpuJacobian, s: usize| -> Result<(Arc<wgpu::Buffer>, u32)> {
            match j {
                GpuJacobian::Shared { buffer, .. } => Ok((Arc::clone(buffer), 0)),
                GpuJacobian::Dense {
                    segments,
                    rows,
                    cols,
                } => segments
                    .get(s)
                    .cloned()
                    .map(|buffer| (buffer, (rows * cols) as u32))
                    .ok_or_else(|| {
                        Error::Shape(
                            "a per-sample operand has fewer segments than the layout".into(),
                        )
                    }),
                _ => Err(Error::Shape("matmul operands are Shared or Dense".into())),
            }
        };
        let mut segments = Vec::with_capacity(layout.segments());
        for s in 0..layout.segments() {
            let total = layout.samples_in(s) * m * n;
            let partials = total * chunks;
            if partials > self.segment_capacity() {
                return Err(Error::TooLarge {
                    what: format!(
                        "the {chunks} partial sums of each of {total} elements of a product over {k}"
                    ),
                    needed: partials as u64 * F32_BYTES,
                    limit: self.segment_capacity() as u64 * F32_BYTES,
                });
            }
            let sums = self.pooled(partials);
            let (gx, gy, _) = self.grid_1d(partials);
            let ((a_s, a_stride), (b_s, b_stride)) = (operand(a, s)?, operand(b, s)?);
            let params = SmallParams {
                m: m as u32,
                k: k as u32,
                n: n as u32,
                total: partials as u32,
                a_stride,
                b_stride,
                row_stride: gx * WORKGROUP as u32,
                flags: flags & !ROW_COL,
                k_chunk: k_chunk as u32,
                chunks: chunks as u32,
                pad: [0; 2],
            };
            let uniform = self.uniform(&params);
            let md = mid
                .and_then(|d| d.get(s).cloned())
                .unwrap_or_else(|| Arc::clone(&self.dummy));
            self.dispatch(
                &kernel,
                &[&uniform, &a_s, &b_s, &sums, &self.dummy, &md, &self.dummy],
                (gx, gy, 1),
                "jacobian split product",
            );
            let summand = RowOperand {
                buffer: &sums,
                shared: false,
            };
            segments.push(self.reduce_rows(
                RowOp::Sum,
                (summand, None),
                (total, chunks),
                1.0,
                None,
            )?);
        }
        if !varies {
            return Ok(GpuJacobian::Shared {
                rows: m,
                cols: n,
                buffer: Arc::clone(&segments[0]),
            });
        }
        let segments = if row.is_some() || col.is_some() {
            self.scale_dense(&segments, row, col, (m, n), layout)?
        } else {
            segments
        };
        Ok(GpuJacobian::Dense {
            rows: m,
            cols: n,
            segments,
        })
    }

    /// G^T X for row-stacked G (k x m) and X (k x n), both one buffer: the
    /// sum over k samples of the outer products g x^T, in one dispatch.
    pub(crate) fn transposed_product(
        &self,
        g: &wgpu::Buffer,
        x: &wgpu::Buffer,
        (k, m, n): (usize, usize, usize),
    ) -> Result<Arc<wgpu::Buffer>> {
        // k is the samples of one segment, at most the grid's width, itself
        // at most 65,535; the loop over them stays within what software
        // drivers execute.
        if k > SMALL_K {
            return Err(Error::LoopTooLong {
                what: format!("a product over {k} samples"),
                iterations: k as u64,
                limit: SMALL_K as u64,
            });
        }
        let kernel = self.kernel_sync("jacobian/matmul_small", crate::shaders::MATMUL_SMALL)?;
        let out = self.pooled(m * n);
        let total = m * n;
        let (gx, gy, _) = self.grid_1d(total);
        let params = SmallParams {
            m: m as u32,
            k: k as u32,
            n: n as u32,
            total: total as u32,
            a_stride: 0,
            b_stride: 0,
            row_stride: gx * WORKGROUP as u32,
            flags: 16 | CHAIN,
            k_chunk: 0,
            chunks: 1,
            pad: [0; 2],
        };
        let uniform = self.uniform(&params);
        self.dispatch(
            &kernel,
            &[&uniform, g, x, &out, &self.dummy, &self.dummy, &self.dummy],
            (gx, gy, 1),
            "jacobian transposed product",
        );
        Ok(out)
    }
}

/// The epilogue of shaders/matmul.wgsl's default `store`, which
/// [`epilogue_source`] replaces.
const PLAIN_STORE: &str = "fn store(at: u32, col: u32, v: f32) {\n    c[at] = v;\n}\n";

/// The tiled product with a layer's epilogue: the bias (in the column
/// scaling's binding) added by column and the activation's value, and its
/// derivative (binding 7) where asked, stored, from the op table's WGSL
/// functions.
fn epilogue_source(bias: bool, activation: Option<UnaryOp>, derivative: bool) -> String {
    let z = if bias { "v + col_scale[col]" } else { "v" };
    let store = match activation {
        Some(f) if !derivative => format!(
            "fn store(at: u32, col: u32, v: f32) {{\n    c[at] = {}.x;\n}}\n",
            unary_call(f, z)
        ),
        Some(f) => {
            let call = unary_call(f, z);
            format!(
                "@group(0) @binding(7) var<storage, read_write> derivative: array<f32>;\n\n\
                 fn store(at: u32, col: u32, v: f32) {{\n    let e = {call};\n    \
                 c[at] = e.x;\n    derivative[at] = e.y;\n}}\n"
            )
        }
        None => format!("fn store(at: u32, col: u32, v: f32) {{\n    c[at] = {z};\n}}\n"),
    };
    format!(
        "{}\n{}",
        crate::shaders::library(),
        crate::shaders::MATMUL.replace(PLAIN_STORE, &store)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layer kernels replace matmul.wgsl's plain `store`; were it
    /// reworded, they would silently store the bare product.
    #[test]
    fn the_layer_epilogue_replaces_the_plain_store() {
        assert!(crate::shaders::MATMUL.contains(PLAIN_STORE));
        let source = epilogue_source(true, Some(UnaryOp::Tanh), true);
        assert!(!source.contains(PLAIN_STORE));
        assert!(source.contains("tanh_vd(v + col_scale[col])"));
        assert!(source.contains("derivative[at] = e.y"));
    }
}
