//! Executing element-wise plans on the GPU: every region's generated kernel
//! (cached by its source) over the rows of a chunk, intermediates in pooled
//! buffers, host to host or device to device.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::array::{F32_BYTES, GpuArray};
use super::context::{GpuContext, Kernel};
use crate::backend::{EvalOutput, reserve_host};
use crate::compile::elementwise::{self, Binding, RegionKernel};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::schedule::{self, Fusion};

const WORKGROUP: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    row_stride: u32,
    pad0: u32,
    pad1: u32,
}

/// A plan's kernels, compiled.
struct Compiled {
    regions: Vec<(RegionKernel, Arc<Kernel>)>,
}

/// Buffers of one chunk: the inputs, and each node written by some region.
struct ChunkBuffers<'a> {
    inputs: Option<&'a wgpu::Buffer>,
    values: HashMap<NodeId, &'a wgpu::Buffer>,
    tangents: HashMap<NodeId, &'a wgpu::Buffer>,
}

impl GpuContext {
    async fn compile_plan(&self, graph: &Graph, fusion: Fusion) -> Result<Compiled> {
        let plan = schedule::elementwise(graph, fusion);
        let mut regions = Vec::with_capacity(plan.regions.len());
        for region in &plan.regions {
            let generated = elementwise::region(graph, region);
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            generated.source.hash(&mut hasher);
            let label = format!("fused/{:016x}", hasher.finish());
            let source = generated.source.clone();
            let kernel = self.kernel(&label, || source).await?;
            regions.push((generated, kernel));
        }
        Ok(Compiled { regions })
    }

    /// Rows per chunk: the inputs (k per row) and the derivatives (k per
    /// row) must each fit one binding.
    fn rows_per_chunk(&self, k: usize) -> Result<usize> {
        let rows = (self.segment_capacity() / k.max(1)) & !63;
        if rows == 0 {
            return Err(Error::TooLarge {
                what: format!("one row of {k} inputs"),
                needed: k as u64 * 64 * F32_BYTES,
                limit: self.limits.max_binding_bytes,
            });
        }
        Ok(rows)
    }

    /// Records every region's dispatch over `n` rows.
    fn encode_plan(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        compiled: &Compiled,
        n: usize,
        buffers: &ChunkBuffers<'_>,
    ) -> Result<()> {
        // The grid and uniform of a region taking `per` rows an invocation
        // (a region with sin, cos or tan takes one, others four).
        let grid_of = |per: usize| {
            let invocations = n.div_ceil(per);
            let (columns, rows, _) = self.grid_1d(invocations);
            let params = Params {
                n: invocations as u32,
                row_stride: columns * WORKGROUP as u32,
                pad0: 0,
                pad1: 0,
            };
            ((columns, rows), self.uniform(&params))
        };
        let missing = |what: &str| Error::Gpu {
            operation: "graph evaluation".into(),
            message: format!("no buffer for {what}"),
        };
        for (generated, kernel) in &compiled.regions {
            let ((columns, rows), uniform) = grid_of(generated.rows_per_invocation);
            let mut entries = Vec::with_capacity(generated.bindings.len());
            let mut bound: Vec<&wgpu::Buffer> = Vec::with_capacity(generated.bindings.len());
            for (index, binding) in generated.bindings.iter().enumerate() {
                let buffer = match *binding {
                    Binding::Params => &uniform,
                    Binding::Inputs => buffers.inputs.ok_or_else(|| missing("inputs"))?,
                    Binding::Values(id) | Binding::OutValues(id) => buffers
                        .values
                        .get(&id)
                        .copied()
                        .ok_or_else(|| missing("values"))?,
                    Binding::Tangents(id) | Binding::OutTangents(id) => buffers
                        .tangents
                        .get(&id)
                        .copied()
                        .ok_or_else(|| missing("tangents"))?,
                };
                bound.push(buffer);
                entries.push(wgpu::BindGroupEntry {
                    binding: index as u32,
                    resource: buffer.as_entire_binding(),
                });
            }
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("graph region bindings"),
                layout: &kernel.layout,
                entries: &entries,
            });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("graph region"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(columns, rows, 1);
            self.record_dispatch(super::jacobian::storage_bytes(bound));
        }
        Ok(())
    }

    /// Nodes whose values and tangents some region writes, other than the output.
    fn intermediates(compiled: &Compiled, output: NodeId) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = compiled
            .regions
            .iter()
            .flat_map(|(g, _)| g.bindings.iter())
            .filter_map(|b| match *b {
                Binding::OutValues(id) if id != output => Some(id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Values and derivatives of `graph` for one column per input (blocking).
    pub fn evaluate(&self, graph: &Graph, inputs: &[&[f32]], fusion: Fusion) -> Result<EvalOutput> {
        pollster::block_on(self.evaluate_async(graph, inputs, fusion))
    }

    /// Values (N) and derivatives (N x k, row-major) of `graph` for N samples
    /// given as one column per input, streamed through the device in chunks.
    pub async fn evaluate_async(
        &self,
        graph: &Graph,
        inputs: &[&[f32]],
        fusion: Fusion,
    ) -> Result<EvalOutput> {
        self.check_alive()?;
        let n_total = graph.check_columns(inputs)?;
        let k = graph.inputs().len();
        let compiled = self.compile_plan(graph, fusion).await?;
        let mut values = reserve_host(n_total, "values")?;
        let mut derivatives = reserve_host(n_total.saturating_mul(k), "derivatives")?;
        if n_total == 0 {
            return Ok(EvalOutput {
                values,
                derivatives,
                inputs: k,
            });
        }
        let rows = self.rows_per_chunk(k)?.min(n_total);
        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let bytes = |elements: usize| (elements.max(1) as u64) * F32_BYTES;
        let output = graph.output();
        let written: Vec<NodeId> = std::iter::once(output)
            .chain(Self::intermediates(&compiled, output))
            .collect();
        // One pool take per buffer, reused by every chunk.
        let mut owned: Vec<wgpu::Buffer> = Vec::new();
        let inputs_buffer = (k > 0).then(|| self.take_buffer(bytes(rows * k), storage));
        for _ in &written {
            owned.push(self.take_buffer(bytes(rows), storage));
            owned.push(self.take_buffer(bytes(rows * k), storage));
        }
        let result = async {
            let mut buffers = ChunkBuffers {
                inputs: inputs_buffer.as_ref(),
                values: HashMap::new(),
                tangents: HashMap::new(),
            };
            for (i, &id) in written.iter().enumerate() {
                buffers.values.insert(id, &owned[2 * i]);
                buffers.tangents.insert(id, &owned[2 * i + 1]);
            }
            let chunks = n_total.div_ceil(rows);
            for (index, start) in (0..n_total).step_by(rows).enumerate() {
                let n = rows.min(n_total - start);
                let operation = format!("evaluating the graph, chunk {} of {chunks}", index + 1);
                let encoder = self
                    .scoped(&operation, || {
                        if let Some(target) = &inputs_buffer {
                            for (j, column) in inputs.iter().enumerate() {
                                self.queue.write_buffer(
                                    target,
                                    (j * n) as u64 * F32_BYTES,
                                    bytemuck::cast_slice(&column[start..start + n]),
                                );
                            }
                        }
                        let mut encoder =
                            self.device
                                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                                    label: Some("graph"),
                                });
                        self.encode_plan(&mut encoder, &compiled, n, &buffers)
                            .map(|()| encoder)
                    })
                    .await??;
                let mut reads = vec![(buffers.values[&output], n)];
                if k > 0 {
                    reads.push((buffers.tangents[&output], n * k));
                }
                self.read_back(Some(encoder), &reads, &operation, |i, floats| {
                    if i == 0 {
                        values.extend_from_slice(floats);
                    } else {
                        derivatives.extend_from_slice(floats);
                    }
                })
                .await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        for buffer in owned.into_iter().chain(inputs_buffer) {
            self.recycle(buffer);
        }
        result.map(|()| EvalOutput {
            values,
            derivatives,
            inputs: k,
        })
    }

    /// Values and derivatives of `graph` for device-resident input columns,
    /// left on the device (blocking): values (N) and derivatives (N x k).
    pub fn evaluate_resident(
        &self,
        graph: &Graph,
        inputs: &[&GpuArray],
        fusion: Fusion,
    ) -> Result<(GpuArray, GpuArray)> {
        pollster::block_on(self.evaluate_resident_async(graph, inputs, fusion))
    }

    /// See [`GpuContext::evaluate_resident`]. The work is submitted, not
    /// awaited: download the results or call [`GpuContext::synchronize`].
    pub async fn evaluate_resident_async(
        &self,
        graph: &Graph,
        inputs: &[&GpuArray],
        fusion: Fusion,
    ) -> Result<(GpuArray, GpuArray)> {
        self.check_alive()?;
        let k = graph.inputs().len();
        if inputs.len() != k {
            return Err(Error::Shape(format!(
                "the function has {k} input(s) but {} array(s) were given",
                inputs.len()
            )));
        }
        for array in inputs {
            self.check_owned(array)?;
        }
        let n_total = inputs.first().map_or(0, |a| a.len());
        if inputs.iter().any(|a| a.len() != n_total) {
            return Err(Error::Shape("input arrays differ in length".into()));
        }
        let compiled = self.compile_plan(graph, fusion).await?;
        let rows = self.rows_per_chunk(k)?;
        let values = self
            .alloc_array_segmented("graph values", n_total, rows)
            .await?;
        let derivatives = self
            .alloc_array_segmented("graph derivatives", n_total * k, rows * k.max(1))
            .await?;
        if n_total == 0 {
            return Ok((values, derivatives));
        }
        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let bytes = |elements: usize| (elements.max(1) as u64) * F32_BYTES;
        let output = graph.output();
        let intermediates = Self::intermediates(&compiled, output);
        // One input segmented like the chunks is bound where it lies; other
        // inputs are copied into one block per chunk.
        let direct = k == 1 && inputs[0].segment_len == rows;
        let inputs_buffer =
            (k > 0 && !direct).then(|| self.take_buffer(bytes(rows.min(n_total) * k), storage));
        let mut owned = Vec::new();
        for _ in &intermediates {
            owned.push(self.take_buffer(bytes(rows.min(n_total)), storage));
            owned.push(self.take_buffer(bytes(rows.min(n_total) * k), storage));
        }
        let result = self
            .scoped("evaluating the graph (resident)", || {
                let mut encoder =
                    self.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("graph resident"),
                        });
                for (chunk, start) in (0..n_total).step_by(rows).enumerate() {
                    let n = rows.min(n_total - start);
                    if let Some(target) = &inputs_buffer {
                        for (j, array) in inputs.iter().enumerate() {
                            copy_rows(&mut encoder, array, start, n, target, j * n);
                        }
                    }
                    let mut buffers = ChunkBuffers {
                        inputs: if direct {
                            Some(inputs[0].segments[chunk].as_ref())
                        } else {
                            inputs_buffer.as_ref()
                        },
                        values: HashMap::new(),
                        tangents: HashMap::new(),
                    };
                    buffers
                        .values
                        .insert(output, values.segments[chunk].as_ref());
                    if k > 0 {
                        buffers
                            .tangents
                            .insert(output, derivatives.segments[chunk].as_ref());
                    }
                    for (i, &id) in intermediates.iter().enumerate() {
                        buffers.values.insert(id, &owned[2 * i]);
                        buffers.tangents.insert(id, &owned[2 * i + 1]);
                    }
                    self.encode_plan(&mut encoder, &compiled, n, &buffers)?;
                }
                self.queue.submit([encoder.finish()]);
                Ok::<(), Error>(())
            })
            .await;
        for buffer in owned.into_iter().chain(inputs_buffer) {
            self.recycle(buffer);
        }
        result??;
        Ok((values, derivatives))
    }
}

/// Copies rows `start..start + n` of `array` to `target` at element `at`,
/// across the array's segments.
fn copy_rows(
    encoder: &mut wgpu::CommandEncoder,
    array: &GpuArray,
    start: usize,
    n: usize,
    target: &wgpu::Buffer,
    at: usize,
) {
    let mut row = start;
    while row < start + n {
        let segment = row / array.segment_len;
        let offset = row % array.segment_len;
        let take = (array.segment_len - offset).min(start + n - row);
        encoder.copy_buffer_to_buffer(
            &array.segments[segment],
            offset as u64 * F32_BYTES,
            target,
            (at + row - start) as u64 * F32_BYTES,
            take as u64 * F32_BYTES,
        );
        row += take;
    }
}
