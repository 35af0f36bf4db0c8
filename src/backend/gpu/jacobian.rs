//! Structured batched Jacobians on the device and their algebra: Identity,
//! Diagonal (B x n), Shared (one m x n for the batch) and Dense (B x m x n),
//! per-sample data split into segments of whole samples that each fit one
//! binding and one dispatch. Products are lazy about diagonals: a diagonal
//! next to a product is folded into that product's kernel as a row, inner
//! or column scaling, so diag(d2) W2 diag(d1) W1 runs as one kernel and
//! nothing diagonal is ever stored as a dense matrix.

use std::sync::Arc;

use super::array::F32_BYTES;
use super::context::GpuContext;
use crate::error::{Error, Result};

/// Rows and columns of C per matmul workgroup (shaders/matmul.wgsl).
const TILE: usize = 64;
/// Depth of the K slice that workgroup stages per loop iteration.
const K_TILE: usize = 16;
const WORKGROUP: usize = 256;

/// How a batch is split: every per-sample buffer holds `per_segment`
/// samples (the last one fewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLayout {
    /// Samples in all.
    pub batch: usize,
    /// Samples per segment.
    pub per_segment: usize,
}

impl BatchLayout {
    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.batch.div_ceil(self.per_segment)
    }

    /// Samples in segment `s`.
    pub fn samples_in(&self, s: usize) -> usize {
        (self.batch - s * self.per_segment).min(self.per_segment)
    }
}

/// Per-sample data: one buffer per segment of the layout.
pub(crate) type Segments = Vec<Arc<wgpu::Buffer>>;

/// A structured batched Jacobian on the device (f32).
#[derive(Debug, Clone)]
pub enum GpuJacobian {
    /// I_n for every sample.
    Identity {
        /// Its size.
        n: usize,
    },
    /// A diagonal per sample, B x n.
    Diagonal {
        /// Its size.
        n: usize,
        /// B x n values.
        segments: Segments,
    },
    /// One matrix for the whole batch.
    Shared {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// rows x cols values, row-major.
        buffer: Arc<wgpu::Buffer>,
    },
    /// A matrix per sample, B x rows x cols.
    Dense {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// B x rows x cols values.
        segments: Segments,
    },
}

impl GpuJacobian {
    /// (rows, cols) per sample.
    pub fn dims(&self) -> (usize, usize) {
        match *self {
            GpuJacobian::Identity { n } | GpuJacobian::Diagonal { n, .. } => (n, n),
            GpuJacobian::Shared { rows, cols, .. } | GpuJacobian::Dense { rows, cols, .. } => {
                (rows, cols)
            }
        }
    }
}

/// A product not yet (fully) computed: diag(row) * core * diag(col).
#[derive(Debug, Clone)]
pub(crate) enum Lazy {
    /// A finished Jacobian.
    Ready(GpuJacobian),
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
struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    samples: u32,
    a_stride: u32,
    b_stride: u32,
    c_stride: u32,
    flags: u32,
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

fn shape_error(what: &str, left: (usize, usize), right: (usize, usize)) -> Error {
    Error::Shape(format!(
        "{what}: {}x{} and {}x{} do not fit",
        left.0, left.1, right.0, right.1
    ))
}

impl GpuContext {
    /// A layout for `batch` samples whose largest per-sample matrix has
    /// `largest` elements: segments fit one binding and one dispatch.
    pub fn batch_layout(&self, batch: usize, largest: usize) -> Result<BatchLayout> {
        let by_binding = self.segment_capacity() / largest.max(1);
        let by_grid = self.limits.max_workgroups_per_dimension as usize;
        let per_segment = batch.min(by_binding).min(by_grid);
        if batch > 0 && per_segment == 0 {
            return Err(Error::TooLarge {
                what: format!("one sample's {largest}-element Jacobian"),
                needed: largest as u64 * F32_BYTES,
                limit: self.limits.max_binding_bytes,
            });
        }
        Ok(BatchLayout {
            batch,
            per_segment: per_segment.max(1),
        })
    }

    fn pooled(&self, elements: usize) -> Arc<wgpu::Buffer> {
        Arc::new(self.take_buffer(
            elements.max(1) as u64 * F32_BYTES,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        ))
    }

    fn segments_for(&self, layout: BatchLayout, per_sample: usize) -> Segments {
        (0..layout.segments())
            .map(|s| self.pooled(layout.samples_in(s) * per_sample))
            .collect()
    }

    /// Uploads per-sample data (B x per_sample, row-major) into segments.
    pub(crate) fn upload_segments(
        &self,
        layout: BatchLayout,
        per_sample: usize,
        data: &[f32],
    ) -> Result<Segments> {
        if data.len() != layout.batch * per_sample {
            return Err(Error::Shape(format!(
                "{} values for {} samples of {per_sample}",
                data.len(),
                layout.batch
            )));
        }
        let segments = self.segments_for(layout, per_sample);
        for (s, buffer) in segments.iter().enumerate() {
            let start = s * layout.per_segment * per_sample;
            let end = start + layout.samples_in(s) * per_sample;
            self.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(&data[start..end]));
        }
        Ok(segments)
    }

    /// Uploads one matrix shared by the batch.
    pub(crate) fn upload_shared(&self, data: &[f32]) -> Arc<wgpu::Buffer> {
        let buffer = self.pooled(data.len());
        self.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        buffer
    }

    /// Reads per-sample segments back, B x per_sample.
    pub(crate) async fn download_segments(
        &self,
        layout: BatchLayout,
        per_sample: usize,
        segments: &Segments,
    ) -> Result<Vec<f32>> {
        let mut out = crate::backend::reserve_host(layout.batch * per_sample, "Jacobian")?;
        for (s, buffer) in segments.iter().enumerate() {
            let n = layout.samples_in(s) * per_sample;
            self.read_back(
                None,
                &[(buffer.as_ref(), n)],
                "reading a Jacobian",
                |_, f| out.extend_from_slice(f),
            )
            .await?;
        }
        Ok(out)
    }

    /// The dense view B x rows x cols of a Jacobian.
    pub async fn download_dense(&self, j: &GpuJacobian, layout: BatchLayout) -> Result<Vec<f32>> {
        let (rows, cols) = j.dims();
        let dense = match j {
            GpuJacobian::Dense { segments, .. } => {
                return self.download_segments(layout, rows * cols, segments).await;
            }
            _ => self.combine(j, None, layout)?,
        };
        match &dense {
            GpuJacobian::Dense { segments, .. } => {
                self.download_segments(layout, rows * cols, segments).await
            }
            _ => Err(Error::Gpu {
                operation: "densifying a Jacobian".into(),
                message: "the combine kernel did not give a dense result".into(),
            }),
        }
    }

    fn kernel_sync(
        &self,
        label: &str,
        source: &'static str,
    ) -> Result<Arc<super::context::Kernel>> {
        pollster::block_on(self.kernel(label, || source.to_string()))
    }

    pub(crate) fn uniform<T: bytemuck::Pod>(&self, value: &T) -> wgpu::Buffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("jacobian params"),
            size: std::mem::size_of::<T>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue
            .write_buffer(&buffer, 0, bytemuck::bytes_of(value));
        buffer
    }

    pub(crate) fn dispatch(
        &self,
        kernel: &super::context::Kernel,
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
        label: &str,
    ) {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &kernel.layout,
            entries: &entries,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        }
        self.queue.submit([encoder.finish()]);
    }

    /// C = diag(row) a diag(mid) b diag(col), a and b Shared or Dense
    /// (b optionally stored transposed). Shared when nothing varies per sample.
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
        // The K loop runs ceil(k / K_TILE) times; software drivers stop loops
        // at 65,535 iterations without an error.
        let max_grid = self.limits.max_workgroups_per_dimension as usize;
        if k.div_ceil(K_TILE) > 65_535 || m.div_ceil(TILE) > max_grid || n.div_ceil(TILE) > max_grid
        {
            return Err(Error::TooLarge {
                what: format!("a {m}x{k} by {k}x{n} product in one kernel"),
                needed: (m.max(k).max(n)) as u64,
                limit: (65_535 * K_TILE) as u64,
            });
        }
        let per_sample = |j: &GpuJacobian| matches!(j, GpuJacobian::Dense { .. });
        let varies =
            per_sample(a) || per_sample(b) || row.is_some() || mid.is_some() || col.is_some();
        let kernel = self.kernel_sync("jacobian/matmul", crate::shaders::MATMUL)?;
        let flags = u32::from(row.is_some())
            | (u32::from(mid.is_some()) << 1)
            | (u32::from(col.is_some()) << 2)
            | (u32::from(transpose_b) << 3);
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
        // Many small products (a row times a matrix, an outer product): one
        // invocation per element beats 64 x 64 tiles that would sit idle.
        let small = (m * n <= 1024 || m < 4 || n < 4) && k <= 65_535;
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

    /// G^T X for row-stacked G (k x m) and X (k x n), both one buffer: the
    /// sum over k samples of the outer products g x^T, in one dispatch.
    pub(crate) fn transposed_product(
        &self,
        g: &wgpu::Buffer,
        x: &wgpu::Buffer,
        (k, m, n): (usize, usize, usize),
    ) -> Result<Arc<wgpu::Buffer>> {
        if k > 65_535 {
            return Err(Error::TooLarge {
                what: format!("a product over {k} samples in one loop"),
                needed: k as u64,
                limit: 65_535,
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
            flags: 16,
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

    pub(crate) fn grid_1d(&self, total: usize) -> (u32, u32, u32) {
        let groups = total.div_ceil(WORKGROUP);
        let max = self.limits.max_workgroups_per_dimension as usize;
        let rows = groups.div_ceil(max).max(1);
        (groups.div_ceil(rows) as u32, rows as u32, 1)
    }

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

    /// x + y densified (or x alone, densified, when y is None).
    fn combine(
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
            Lazy::Ready(_) => Err(Error::Shape(
                "identity and diagonal factors are handled before this point".into(),
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
}
