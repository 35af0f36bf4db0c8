//! The bulk unary call on the GPU: values and derivatives of one operation
//! for any number of inputs, host to host (streamed in chunks that respect
//! the binding and buffer limits) or device to device.

use super::array::{F32_BYTES, GpuArray};
use super::context::{GpuContext, Kernel};
use crate::backend::UnaryOutput;
use crate::backend::reserve_host;
use crate::error::{Error, Result};
use crate::ops::UnaryOp;
use crate::shaders;

/// Invocations per workgroup in shaders/unary.wgsl.
const WORKGROUP: usize = 256;
/// Largest chunk streamed through the device at once on the host path: large
/// enough to amortise a submission, small enough to bound staging memory.
const HOST_CHUNK: usize = 1 << 25;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UnaryParams {
    n: u32,
    row_stride: u32,
    parameter: f32,
    pad: u32,
}

impl GpuContext {
    /// The workgroup grid for `n` invocations (each of `per` elements):
    /// 1-D while it fits one dimension, 2-D beyond (rows of `x` workgroups).
    fn grid(&self, n: usize, per: usize) -> Result<(u32, u32)> {
        let groups = n.div_ceil(WORKGROUP);
        let max = self.limits.max_workgroups_per_dimension as usize;
        let rows = groups.div_ceil(max);
        if rows > max {
            return Err(Error::TooLarge {
                what: format!("one dispatch of {} elements", n * per),
                needed: (n * per) as u64 * F32_BYTES,
                limit: (max * max * WORKGROUP * per) as u64 * F32_BYTES,
            });
        }
        let columns = groups.div_ceil(rows.max(1));
        // Both fit in u32: each is at most `max`, itself a u32.
        Ok((columns as u32, rows as u32))
    }

    async fn unary_kernel(&self, op: UnaryOp) -> Result<std::sync::Arc<Kernel>> {
        op.validate()?;
        self.kernel(&format!("unary/{}", op.name()), || {
            shaders::unary_kernel(op)
        })
        .await
    }

    /// Records one dispatch of `op` over `n` elements of the given buffers.
    fn encode_unary(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        op: UnaryOp,
        n: usize,
        buffers: [&wgpu::Buffer; 3],
    ) -> Result<()> {
        // The kernel takes four elements an invocation (see unary.wgsl).
        let quads = n.div_ceil(4);
        let (columns, rows) = self.grid(quads, 4)?;
        let params = UnaryParams {
            n: quads as u32,
            row_stride: columns * WORKGROUP as u32,
            parameter: op.parameter().unwrap_or(0.0),
            pad: 0,
        };
        let uniform = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unary params"),
            size: std::mem::size_of::<UnaryParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue
            .write_buffer(&uniform, 0, bytemuck::bytes_of(&params));
        let [xs, values, derivatives] = buffers;
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("unary bindings"),
            layout: &kernel.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: xs.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: values.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: derivatives.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: uniform.as_entire_binding(),
                },
            ],
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("unary"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(columns, rows, 1);
        self.record_dispatch(super::jacobian::storage_bytes([xs, values, derivatives]));
        Ok(())
    }

    /// Values and derivatives of `op` at every element of `xs` (blocking).
    pub fn unary(&self, op: UnaryOp, xs: &[f32]) -> Result<UnaryOutput> {
        pollster::block_on(self.unary_async(op, xs))
    }

    /// Values and derivatives of `op` at every element of `xs`, streamed
    /// through the device in chunks that fit its limits, in pooled buffers.
    pub async fn unary_async(&self, op: UnaryOp, xs: &[f32]) -> Result<UnaryOutput> {
        self.check_alive()?;
        let kernel = self.unary_kernel(op).await?;
        let mut values = reserve_host(xs.len(), "values")?;
        let mut derivatives = reserve_host(xs.len(), "derivatives")?;
        if xs.is_empty() {
            return Ok(UnaryOutput {
                values,
                derivatives,
            });
        }
        let chunk = self.segment_capacity().min(HOST_CHUNK).min(xs.len());
        let label = format!("unary {op}");
        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let bytes = chunk as u64 * F32_BYTES;
        let buffers = self
            .scoped(&label, || {
                [(); 3].map(|()| self.take_buffer(bytes, storage))
            })
            .await?;
        let result = self
            .stream_unary(
                op,
                &kernel,
                xs,
                chunk,
                &buffers,
                &mut values,
                &mut derivatives,
            )
            .await;
        for buffer in buffers {
            self.recycle(buffer);
        }
        result.map(|()| UnaryOutput {
            values,
            derivatives,
        })
    }

    /// The chunk loop of [`GpuContext::unary_async`]: upload, dispatch, read
    /// back and append, one chunk at a time through the same three buffers.
    #[expect(clippy::too_many_arguments, reason = "one private step of one call")]
    async fn stream_unary(
        &self,
        op: UnaryOp,
        kernel: &Kernel,
        xs: &[f32],
        chunk: usize,
        [xs_buffer, values_buffer, derivatives_buffer]: &[wgpu::Buffer; 3],
        values: &mut Vec<f32>,
        derivatives: &mut Vec<f32>,
    ) -> Result<()> {
        let chunks = xs.len().div_ceil(chunk);
        for (index, part) in xs.chunks(chunk).enumerate() {
            let n = part.len();
            let operation = format!("unary {op}, chunk {} of {chunks}", index + 1);
            let encoder = self
                .scoped(&operation, || {
                    self.queue
                        .write_buffer(xs_buffer, 0, bytemuck::cast_slice(part));
                    let mut encoder =
                        self.device
                            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                                label: Some("unary"),
                            });
                    self.encode_unary(
                        &mut encoder,
                        kernel,
                        op,
                        n,
                        [xs_buffer, values_buffer, derivatives_buffer],
                    )
                    .map(|()| encoder)
                })
                .await??;
            self.read_back(
                Some(encoder),
                &[(values_buffer, n), (derivatives_buffer, n)],
                &operation,
                |i, floats| {
                    if i == 0 {
                        values.extend_from_slice(floats);
                    } else {
                        derivatives.extend_from_slice(floats);
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Values and derivatives of `op` for a device array, left on the device
    /// (blocking). The work is submitted, not awaited: call
    /// [`GpuContext::synchronize`] or download to wait for it.
    pub fn unary_resident(&self, op: UnaryOp, xs: &GpuArray) -> Result<(GpuArray, GpuArray)> {
        pollster::block_on(self.unary_resident_async(op, xs))
    }

    /// Values and derivatives of `op` for a device array, left on the device.
    pub async fn unary_resident_async(
        &self,
        op: UnaryOp,
        xs: &GpuArray,
    ) -> Result<(GpuArray, GpuArray)> {
        self.check_owned(xs)?;
        let kernel = self.unary_kernel(op).await?;
        let values = self.alloc_array("unary values", xs.len()).await?;
        let derivatives = self.alloc_array("unary derivatives", xs.len()).await?;
        if xs.is_empty() {
            return Ok((values, derivatives));
        }
        self.scoped(&format!("unary {op} (resident)"), || {
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("unary resident"),
                });
            for (i, n) in xs.segment_lens().enumerate() {
                self.encode_unary(
                    &mut encoder,
                    &kernel,
                    op,
                    n,
                    [
                        &xs.segments[i],
                        &values.segments[i],
                        &derivatives.segments[i],
                    ],
                )?;
            }
            self.queue.submit([encoder.finish()]);
            Ok::<(), Error>(())
        })
        .await??;
        Ok((values, derivatives))
    }
}
