//! Executing a compiled gradient (`crate::compile`): per chunk of the
//! batch, the fused kernel and then the reduction of its partial sums, in
//! one command buffer; the chunks' sums are added on the host in f64, in
//! chunk order, so the result is deterministic.

use std::sync::Arc;

use super::array::{F32_BYTES, GpuArray};
use super::context::{GpuContext, Kernel};
use crate::backend::compiled::FusedOutput;
use crate::compile::{FusedGradient, MAX_TRIPS, WORKGROUP};
use crate::error::{Error, Result};
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct FusedParams {
    pub(super) count: u32,
    pub(super) scale: f32,
    pub(super) per_invocation: u32,
    pub(super) pad0: u32,
}

/// The most workgroups a fused kernel launches; each invocation then takes
/// several samples, which gathers summed gradients in registers and keeps
/// the partial sums few. 1024 x 256 invocations fill the largest GPUs.
/// Samples one invocation may take when each costs `trips` loop
/// iterations and the invocation `fixed` more: one unless the kernel
/// `loops` over samples.
fn per_invocation_max((trips, fixed): (usize, usize), loops: bool) -> usize {
    if loops {
        (MAX_TRIPS.saturating_sub(fixed) / trips.max(1)).max(1)
    } else {
        1
    }
}

/// A software adapter runs workgroups one after another on a few cores,
/// and each barrier costs it tens of microseconds: 64 workgroups keep every
/// core busy there.
fn target_groups(device_type: &str) -> usize {
    if device_type == "Cpu" { 64 } else { 1024 }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    rows: u32,
    width: u32,
    first: u32,
    out_offset: u32,
}

/// The same, left on the device.
pub struct FusedResident {
    /// The value per sample of each sweep's node, when the plan writes
    /// values (empty otherwise).
    pub values: Vec<GpuArray>,
    /// Per gradient slot asked for per sample: its B x size rows.
    pub per_sample: Vec<Option<GpuArray>>,
    /// The summed gradients (`summed_width` floats), over the whole batch.
    pub summed: Option<GpuArray>,
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuContext {
    /// Whether `plan` can run here: its bindings within the device's limit.
    pub(crate) fn fits_fused(&self, plan: &FusedGradient) -> bool {
        let limit = self.device.limits().max_storage_buffers_per_shader_stage as usize;
        plan.storage_bindings() <= limit
            && plan.param_floats as u64 * F32_BYTES <= self.limits.max_binding_bytes
    }

    /// Samples per chunk: every per-sample array of a chunk fits one binding,
    /// one 2-D grid, and its partial sums fit one binding too.
    fn fused_rows(&self, plan: &FusedGradient, input_sizes: &[usize]) -> Result<usize> {
        let capacity = self.segment_capacity();
        let widest = input_sizes
            .iter()
            .copied()
            .chain(
                plan.gradients
                    .iter()
                    .filter(|g| g.destination.writes_rows())
                    .map(|g| g.size),
            )
            .chain([1])
            .max()
            .unwrap_or(1);
        let max = self.limits.max_workgroups_per_dimension as usize;
        let fixed = crate::compile::sum_trips(plan.summed_width);
        let mut rows = (capacity / widest.max(1))
            .min(max * max * WORKGROUP)
            .min(self.samples_per_dispatch((plan.trips, fixed), plan.loops_over_samples()));
        if let Some(fit) = capacity.checked_div(plan.summed_width) {
            // One partial row per launched workgroup, which a 2-D grid pads
            // by up to a row of the grid; the reduction's loop over those
            // rows stays bounded.
            let groups = if fit <= max { fit } else { fit - max };
            rows = rows.min(groups.saturating_mul(WORKGROUP));
            rows = rows.min(MAX_TRIPS * WORKGROUP);
        }
        if rows == 0 {
            return Err(Error::TooLarge {
                what: format!("one sample's {widest} values"),
                needed: widest as u64 * F32_BYTES,
                limit: self.limits.max_binding_bytes,
            });
        }
        Ok(rows)
    }

    fn fused_kernels(&self, plan: &FusedGradient) -> Result<(Arc<Kernel>, Option<Arc<Kernel>>)> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        plan.source.hash(&mut hasher);
        let label = format!("fused gradient {:016x}", hasher.finish());
        let fused = pollster::block_on(self.kernel(&label, || plan.source.clone()))?;
        let reduce = if plan.summed_width > 0 {
            Some(pollster::block_on(
                self.kernel("reduce columns", || shaders::REDUCE.to_string()),
            )?)
        } else {
            None
        };
        Ok((fused, reduce))
    }

    /// (columns, rows) of a 2-D grid of `groups` workgroups.
    fn grid_of(&self, groups: usize) -> (u32, u32) {
        let max = self.limits.max_workgroups_per_dimension as usize;
        let rows = groups.div_ceil(max).max(1);
        (groups.div_ceil(rows).max(1) as u32, rows as u32)
    }

    /// Encodes one chunk: the fused kernel over `count` samples, then the
    /// reduction of its partials into `sums[out_offset..]`.
    #[expect(clippy::too_many_arguments, reason = "one chunk's buffers, each named")]
    fn encode_fused_chunk(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        plan: &FusedGradient,
        kernels: &(Arc<Kernel>, Option<Arc<Kernel>>),
        count: usize,
        scale: f32,
        inputs: &[&wgpu::Buffer],
        params: Option<&wgpu::Buffer>,
        seed: Option<&wgpu::Buffer>,
        values: &[&wgpu::Buffer],
        per_sample: &[&wgpu::Buffer],
        sums: Option<(&wgpu::Buffer, usize)>,
    ) -> Result<()> {
        let fixed = crate::compile::sum_trips(plan.summed_width);
        let ((columns, rows), per_invocation) =
            self.sample_grid(count, (plan.trips, fixed), plan.loops_over_samples())?;
        let launched = columns as usize * rows as usize;
        let uniform = self.uniform(&FusedParams {
            count: count as u32,
            scale,
            per_invocation: per_invocation as u32,
            pad0: 0,
        });
        let partials = if plan.summed_width > 0 {
            Some(self.take_buffer((launched * plan.summed_width) as u64 * F32_BYTES, STORAGE))
        } else {
            None
        };
        let mut bound: Vec<&wgpu::Buffer> = vec![&uniform];
        bound.extend_from_slice(inputs);
        bound.extend(params);
        bound.extend(seed);
        bound.extend_from_slice(values);
        bound.extend_from_slice(per_sample);
        bound.extend(partials.as_ref());
        self.encode_dispatch(
            encoder,
            &kernels.0,
            &bound,
            (columns, rows, 1),
            "fused gradient",
        );
        if let (Some(partials), Some(reduce), Some((sums, offset))) =
            (partials.as_ref(), kernels.1.as_ref(), sums)
        {
            let max = self.limits.max_workgroups_per_dimension as usize;
            let per_dispatch = max * max;
            for first in (0..plan.summed_width).step_by(per_dispatch) {
                let uniform = self.uniform(&ReduceParams {
                    rows: launched as u32,
                    width: plan.summed_width as u32,
                    first: first as u32,
                    out_offset: offset as u32,
                });
                let grid = self.grid_of(per_dispatch.min(plan.summed_width - first));
                self.encode_dispatch(
                    encoder,
                    reduce,
                    &[&uniform, partials, sums],
                    (grid.0, grid.1, 1),
                    "reduce columns",
                );
            }
        }
        if let Some(partials) = partials {
            self.recycle(partials);
        }
        Ok(())
    }

    /// The grid of a fused kernel over `count` samples whose loops take at
    /// most `trips.0` iterations each (plus `trips.1` once per invocation), and
    /// how many samples each invocation takes: one unless the kernel
    /// `loops` over samples, and then few enough that an invocation's loop
    /// iterations stay within what software drivers run.
    pub(super) fn sample_grid(
        &self,
        count: usize,
        trips: (usize, usize),
        loops: bool,
    ) -> Result<((u32, u32), usize)> {
        let per_invocation_max = per_invocation_max(trips, loops);
        let max = self.limits.max_workgroups_per_dimension as usize;
        let target = if loops {
            target_groups(&self.adapter().device_type)
        } else {
            usize::MAX
        };
        let groups = count
            .div_ceil(WORKGROUP)
            .min(target)
            .max(count.div_ceil(WORKGROUP * per_invocation_max))
            .max(1);
        if groups > max * max {
            return Err(Error::TooLarge {
                what: format!("a chunk of {count} samples"),
                needed: count as u64,
                limit: (max * max * WORKGROUP * per_invocation_max) as u64,
            });
        }
        let grid = self.grid_of(groups);
        let launched = grid.0 as usize * grid.1 as usize;
        Ok((grid, count.div_ceil(launched * WORKGROUP)))
    }

    /// The most samples one dispatch of a kernel of `trips` takes (see
    /// [`GpuContext::sample_grid`]).
    pub(super) fn samples_per_dispatch(&self, trips: (usize, usize), loops: bool) -> usize {
        let max = self.limits.max_workgroups_per_dimension as usize;
        max * max * WORKGROUP * per_invocation_max(trips, loops)
    }

    fn param_buffer(
        &self,
        plan: &FusedGradient,
        variables: &[&[f32]],
    ) -> Option<Arc<wgpu::Buffer>> {
        if plan.params.is_empty() {
            return None;
        }
        let mut packed = Vec::with_capacity(plan.param_floats);
        for &(v, _) in &plan.params {
            packed.extend_from_slice(variables[v]);
        }
        Some(self.upload_shared(&packed))
    }

    /// Runs `plan` on host data: `variables[v]` holds input v's B x size
    /// values or param v's values. `scale` multiplies per-sample gradients
    /// (1/B for an input's share of a batch mean). `seed` is the plan's
    /// seed, rows of the given size, when it reads one.
    pub(crate) fn fused_gradient(
        &self,
        plan: &FusedGradient,
        variables: &[&[f32]],
        batch: usize,
        scale: f32,
        seed: Option<(&[f32], usize)>,
    ) -> Result<FusedOutput> {
        if plan.seeded != seed.is_some() {
            return Err(Error::InvalidArgument(
                "the plan and the call disagree on a seed".into(),
            ));
        }
        if !plan.values {
            return Err(Error::InvalidArgument(
                "a gradient read back to the host needs a plan that writes values".into(),
            ));
        }
        let kernels = self.fused_kernels(plan)?;
        let input_sizes = &plan.input_sizes;
        let mut row_sizes = input_sizes.clone();
        row_sizes.extend(&plan.value_sizes);
        row_sizes.extend(seed.map(|(_, size)| size));
        let rows = self.fused_rows(plan, &row_sizes)?;
        let chunks = batch.div_ceil(rows);
        let params = self.param_buffer(plan, variables);
        let mut values: Vec<Vec<f32>> = plan
            .value_sizes
            .iter()
            .map(|&size| crate::backend::reserve_host(batch.saturating_mul(size), "values"))
            .collect::<Result<_>>()?;
        let mut per_sample: Vec<Vec<f32>> = plan
            .gradients
            .iter()
            .map(|g| {
                if g.destination.writes_rows() {
                    crate::backend::reserve_host(
                        batch.saturating_mul(g.size),
                        "per-sample gradients",
                    )
                } else {
                    Ok(Vec::new())
                }
            })
            .collect::<Result<_>>()?;
        let mut summed = vec![0f64; plan.summed_width];
        for chunk in 0..chunks {
            let first = chunk * rows;
            let count = rows.min(batch - first);
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("fused gradient"),
                });
            let inputs: Vec<wgpu::Buffer> = plan
                .inputs
                .iter()
                .zip(input_sizes)
                .map(|(&v, &size)| {
                    let buffer =
                        self.take_buffer((count * size).max(1) as u64 * F32_BYTES, STORAGE);
                    let rows = &variables[v][first * size..(first + count) * size];
                    self.queue
                        .write_buffer(&buffer, 0, bytemuck::cast_slice(rows));
                    buffer
                })
                .collect();
            let seed_buffer = seed.map(|(rows, size)| {
                let buffer = self.take_buffer((count * size).max(1) as u64 * F32_BYTES, STORAGE);
                let part = &rows[first * size..(first + count) * size];
                self.queue
                    .write_buffer(&buffer, 0, bytemuck::cast_slice(part));
                buffer
            });
            let value_buffers: Vec<wgpu::Buffer> = plan
                .value_sizes
                .iter()
                .map(|&size| self.take_buffer((count * size) as u64 * F32_BYTES, STORAGE))
                .collect();
            let outputs: Vec<(usize, wgpu::Buffer)> = plan
                .gradients
                .iter()
                .enumerate()
                .filter(|(_, g)| g.destination.writes_rows())
                .map(|(k, g)| {
                    (
                        k,
                        self.take_buffer((count * g.size).max(1) as u64 * F32_BYTES, STORAGE),
                    )
                })
                .collect();
            let sums = (plan.summed_width > 0)
                .then(|| self.take_buffer(plan.summed_width as u64 * F32_BYTES, STORAGE));
            let input_refs: Vec<&wgpu::Buffer> = inputs.iter().collect();
            let output_refs: Vec<&wgpu::Buffer> = outputs.iter().map(|(_, b)| b).collect();
            let value_refs: Vec<&wgpu::Buffer> = value_buffers.iter().collect();
            pollster::block_on(self.scoped("fused gradient", || {
                self.encode_fused_chunk(
                    &mut encoder,
                    plan,
                    &kernels,
                    count,
                    scale,
                    &input_refs,
                    params.as_deref(),
                    seed_buffer.as_ref(),
                    &value_refs,
                    &output_refs,
                    sums.as_ref().map(|s| (s, 0)),
                )
            }))??;
            let mut reads: Vec<(&wgpu::Buffer, usize)> = value_buffers
                .iter()
                .zip(&plan.value_sizes)
                .map(|(b, &size)| (b, count * size))
                .collect();
            let sweeps = value_buffers.len();
            for (k, buffer) in &outputs {
                reads.push((buffer, count * plan.gradients[*k].size));
            }
            if let Some(sums) = &sums {
                reads.push((sums, plan.summed_width));
            }
            pollster::block_on(self.read_back(
                Some(encoder),
                &reads,
                "fused gradient",
                |i, floats| {
                    if i < sweeps {
                        values[i].extend_from_slice(floats);
                    } else if i < sweeps + outputs.len() {
                        per_sample[outputs[i - sweeps].0].extend_from_slice(floats);
                    } else {
                        for (t, &f) in summed.iter_mut().zip(floats) {
                            *t += f64::from(f);
                        }
                    }
                },
            ))?;
            for buffer in inputs {
                self.recycle(buffer);
            }
            for buffer in value_buffers {
                self.recycle(buffer);
            }
            if let Some(buffer) = seed_buffer {
                self.recycle(buffer);
            }
            for (_, buffer) in outputs {
                self.recycle(buffer);
            }
            if let Some(sums) = sums {
                self.recycle(sums);
            }
        }
        Ok(FusedOutput {
            values,
            per_sample,
            summed,
        })
    }

    /// Runs `plan` on arrays already on the device, leaving the results
    /// there: `inputs[k]` is the array of `plan.inputs[k]` (B x size, one
    /// segment), `params` the parameters concatenated in `plan.params`
    /// order. Nothing is read back; call [`GpuContext::synchronize`] to time
    /// it. Summed gradients come out summed, not yet scaled.
    pub fn fused_gradient_resident(
        &self,
        plan: &FusedGradient,
        inputs: &[&GpuArray],
        params: Option<&GpuArray>,
        batch: usize,
        scale: f32,
    ) -> Result<FusedResident> {
        if plan.seeded {
            return Err(Error::InvalidArgument(
                "a resident call takes no seed; compile a gradient".into(),
            ));
        }
        if inputs.len() != plan.inputs.len() {
            return Err(Error::InvalidArgument(format!(
                "the plan reads {} inputs but {} arrays were given",
                plan.inputs.len(),
                inputs.len()
            )));
        }
        if batch == 0 {
            return Err(Error::InvalidArgument("the batch is empty".into()));
        }
        let single = |a: &GpuArray| -> Result<Arc<wgpu::Buffer>> {
            self.check_owned(a)?;
            match a.segments.as_slice() {
                [one] => Ok(Arc::clone(one)),
                _ => Err(Error::InvalidArgument(
                    "a resident gradient needs every array in one segment".into(),
                )),
            }
        };
        let input_buffers: Vec<Arc<wgpu::Buffer>> =
            inputs.iter().map(|a| single(a)).collect::<Result<_>>()?;
        let param_buffer = params.map(single).transpose()?;
        for (k, (a, &size)) in inputs.iter().zip(&plan.input_sizes).enumerate() {
            if a.len != batch.saturating_mul(size) {
                return Err(Error::Shape(format!(
                    "input array {k} holds {} values, not {batch} rows of {size}",
                    a.len
                )));
            }
        }
        let given = params.map_or(0, GpuArray::len);
        if given != plan.param_floats {
            return Err(Error::Shape(format!(
                "the plan reads {} parameter values, packed in its order, but {given} were given",
                plan.param_floats
            )));
        }
        let rows = self.fused_rows(plan, &plan.input_sizes)?;
        if rows < batch {
            return Err(Error::TooLarge {
                what: format!("a resident gradient over {batch} samples"),
                needed: batch as u64,
                limit: rows as u64,
            });
        }
        let kernels = self.fused_kernels(plan)?;
        let mut values = Vec::new();
        if plan.values {
            for &size in &plan.value_sizes {
                values.push(pollster::block_on(
                    self.alloc_array("values", batch * size),
                )?);
            }
        }
        let mut per_sample = Vec::with_capacity(plan.gradients.len());
        for g in &plan.gradients {
            per_sample.push(if g.destination.writes_rows() {
                Some(pollster::block_on(
                    self.alloc_array("per-sample gradient", batch * g.size),
                )?)
            } else {
                None
            });
        }
        let summed = if plan.summed_width > 0 {
            Some(pollster::block_on(
                self.alloc_array("summed gradient", plan.summed_width),
            )?)
        } else {
            None
        };
        let first = |a: &GpuArray| -> Result<Arc<wgpu::Buffer>> {
            a.segments
                .first()
                .cloned()
                .ok_or_else(|| Error::InvalidArgument("an empty array".into()))
        };
        let value_buffers: Vec<Arc<wgpu::Buffer>> =
            values.iter().map(first).collect::<Result<_>>()?;
        let output_buffers: Vec<Arc<wgpu::Buffer>> = per_sample
            .iter()
            .flatten()
            .map(first)
            .collect::<Result<_>>()?;
        let sums = summed.as_ref().map(first).transpose()?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("fused gradient"),
            });
        let input_refs: Vec<&wgpu::Buffer> = input_buffers.iter().map(|b| b.as_ref()).collect();
        let output_refs: Vec<&wgpu::Buffer> = output_buffers.iter().map(|b| b.as_ref()).collect();
        let value_refs: Vec<&wgpu::Buffer> = value_buffers.iter().map(|b| b.as_ref()).collect();
        pollster::block_on(self.scoped("fused gradient", || {
            self.encode_fused_chunk(
                &mut encoder,
                plan,
                &kernels,
                batch,
                scale,
                &input_refs,
                param_buffer.as_deref(),
                None,
                &value_refs,
                &output_refs,
                sums.as_deref().map(|s| (s, 0)),
            )?;
            self.queue.submit([encoder.finish()]);
            Ok::<(), Error>(())
        }))??;
        Ok(FusedResident {
            values,
            per_sample,
            summed,
        })
    }
}
