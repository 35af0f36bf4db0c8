//! Executing a compiled forward pass (`crate::compile::forward`): one fused
//! kernel per segment of the batch, writing the values and partials the
//! structured plan reads, with variables bound as the per-node pass binds
//! them.

use super::context::GpuContext;
use super::fused::FusedParams;
use super::jacobian::{BatchLayout, Segments};
use super::program::{Forward, NodeValue};
use crate::compile::{FusedForward, Written};
use crate::error::{Error, Result};
use crate::program::{Kind, Op, Program};

impl GpuContext {
    /// The forward pass of the structured plan by one fused kernel per
    /// segment of the batch: the values and partials `plan` writes, with
    /// variables and constants bound as the per-node pass binds them.
    pub(crate) fn fused_forward(
        &self,
        plan: &FusedForward,
        program: &Program,
        variables: &[&[f32]],
        layout: BatchLayout,
    ) -> Result<Forward> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        plan.source.hash(&mut hasher);
        let label = format!("fused forward {:016x}", hasher.finish());
        let kernel = pollster::block_on(self.kernel(&label, || plan.source.clone()))?;
        let data = |v: usize| -> Result<&[f32]> {
            variables.get(v).copied().ok_or_else(|| {
                Error::Shape(format!(
                    "no values for variable {}",
                    program.variables[v].name
                ))
            })
        };
        let mut values: Vec<NodeValue> = Vec::with_capacity(program.nodes.len());
        for (id, op) in program.nodes.iter().enumerate() {
            let n = program.shapes[id].size();
            values.push(match *op {
                Op::Variable(v) => match program.variables[v].kind {
                    Kind::Param => NodeValue::Shared(self.upload_shared(data(v)?)),
                    Kind::Input => {
                        NodeValue::PerSample(self.upload_segments(layout, n, data(v)?)?)
                    }
                },
                Op::Constant(c) => NodeValue::Shared(self.upload_shared(&[c as f32])),
                // Written below if the plan reads it; never read otherwise.
                _ => NodeValue::PerSample(Vec::new()),
            });
        }
        let mut partials: Vec<Vec<Segments>> = vec![Vec::new(); program.nodes.len()];
        let outputs: Vec<Segments> = plan
            .outputs
            .iter()
            .map(|out| self.new_segments(layout, out.size))
            .collect();
        let packed = if plan.params.is_empty() {
            None
        } else {
            let mut packed = Vec::with_capacity(plan.param_floats);
            for &(v, _) in &plan.params {
                packed.extend_from_slice(data(v)?);
            }
            Some(self.upload_shared(&packed))
        };
        let input_segments: Vec<Segments> = plan
            .inputs
            .iter()
            .map(
                |&v| match program.variable_node(v).map(|node| &values[node]) {
                    Some(NodeValue::PerSample(segments)) => Ok(segments.clone()),
                    _ => Err(Error::Shape(format!("input {v} has no per-sample values"))),
                },
            )
            .collect::<Result<_>>()?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("fused forward"),
            });
        for s in 0..layout.segments() {
            let count = layout.samples_in(s);
            let (grid, per_invocation) = self.sample_grid(count, (plan.trips, 0), false)?;
            let uniform = self.uniform(&FusedParams {
                count: count as u32,
                scale: 1.0,
                per_invocation: per_invocation as u32,
                pad0: 0,
            });
            let mut bound: Vec<&wgpu::Buffer> = vec![&uniform];
            for segments in &input_segments {
                bound.push(
                    segments
                        .get(s)
                        .ok_or_else(|| Error::Shape("missing segment".into()))?,
                );
            }
            bound.extend(packed.as_deref());
            for segments in &outputs {
                bound.push(
                    segments
                        .get(s)
                        .ok_or_else(|| Error::Shape("missing segment".into()))?,
                );
            }
            self.encode_dispatch(
                &mut encoder,
                &kernel,
                &bound,
                (grid.0, grid.1, 1),
                "fused forward",
            );
        }
        pollster::block_on(self.scoped("fused forward", || {
            self.queue.submit([encoder.finish()]);
        }))?;
        for (out, segments) in plan.outputs.iter().zip(outputs) {
            match out.written {
                Written::Value => values[out.node] = NodeValue::PerSample(segments),
                Written::Partial(slot) => {
                    let row = &mut partials[out.node];
                    if row.len() <= slot {
                        row.resize(slot + 1, Vec::new());
                    }
                    row[slot] = segments;
                }
            }
        }
        Ok(Forward {
            layout,
            values,
            partials,
            // Only the structured plan reads W^T; `forward` adds it.
            transposed: Vec::new(),
        })
    }
}
