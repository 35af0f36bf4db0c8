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

pub(super) const WORKGROUP: usize = 256;

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

pub(super) fn shape_error(what: &str, left: (usize, usize), right: (usize, usize)) -> Error {
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

    pub(super) fn pooled(&self, elements: usize) -> Arc<wgpu::Buffer> {
        Arc::new(self.take_buffer(
            elements.max(1) as u64 * F32_BYTES,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        ))
    }

    pub(super) fn segments_for(&self, layout: BatchLayout, per_sample: usize) -> Segments {
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

    /// The kernel of a Jacobian shader, compiled after `common.wgsl`.
    pub(super) fn kernel_sync(
        &self,
        label: &str,
        source: &'static str,
    ) -> Result<Arc<super::context::Kernel>> {
        pollster::block_on(self.kernel(label, || crate::shaders::with_common(source)))
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

    /// Records and submits one dispatch of `kernel` on its own.
    pub(crate) fn dispatch(
        &self,
        kernel: &super::context::Kernel,
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
        label: &str,
    ) {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        self.encode_dispatch(&mut encoder, kernel, buffers, groups, label);
        self.queue.submit([encoder.finish()]);
    }

    /// Records one dispatch of `kernel` into `encoder`, `buffers` bound in
    /// order from binding 0, and counts it in the context's traffic.
    pub(crate) fn encode_dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
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
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: None,
        });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        self.record_dispatch(storage_bytes(buffers.iter().copied()));
    }

    pub(crate) fn grid_1d(&self, total: usize) -> (u32, u32, u32) {
        let groups = total.div_ceil(WORKGROUP);
        let max = self.limits.max_workgroups_per_dimension as usize;
        let rows = groups.div_ceil(max).max(1);
        (groups.div_ceil(rows) as u32, rows as u32, 1)
    }
}

/// Bytes of the storage buffers among `buffers` (uniforms left out).
pub(crate) fn storage_bytes<'a>(buffers: impl IntoIterator<Item = &'a wgpu::Buffer>) -> u64 {
    buffers
        .into_iter()
        .filter(|b| b.usage().contains(wgpu::BufferUsages::STORAGE))
        .map(wgpu::Buffer::size)
        .sum()
}
