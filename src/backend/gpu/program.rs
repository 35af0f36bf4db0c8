//! Vector programs on the GPU: the forward pass over a batch (values of
//! every node, and the local partials of element-wise nodes, which are the
//! diagonals of their local Jacobians), and the algebra that runs a Jacobian
//! plan on structured device Jacobians.

use std::collections::HashMap;
use std::sync::Arc;

use super::array::F32_BYTES;
use super::context::GpuContext;
use super::jacobian::{BatchLayout, GpuJacobian, Segments};
use super::rows::{LOOP_UP_TO, RowOp, RowOperand};
use crate::error::{Error, Result};
use crate::ops::{BinaryOp, RowPartial, UnaryOp};
use crate::program::{Kind, NodeId, Op, Program};
use crate::shaders;

const WORKGROUP: usize = 256;

/// A node's value over the batch: per sample, or one for all samples.
#[derive(Debug, Clone)]
pub(crate) enum NodeValue {
    /// B x size, in the layout's segments.
    PerSample(Segments),
    /// One value (a parameter or a constant), `size` elements.
    Shared(Arc<wgpu::Buffer>),
}

/// The forward pass of a program over a batch.
pub(crate) struct Forward {
    pub(crate) layout: BatchLayout,
    pub(crate) values: Vec<NodeValue>,
    /// For element-wise nodes, the partial w.r.t. each operand, per output element.
    pub(crate) partials: Vec<Vec<Segments>>,
    /// For each `x @ W` node ([`Op::VecMat`]), W^T: its local Jacobian in x
    /// (empty after a values-only pass, which no plan reads).
    pub(crate) transposed: Vec<Option<Arc<wgpu::Buffer>>>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ForwardParams {
    total: u32,
    row_stride: u32,
    size: u32,
    a_size: u32,
    b_size: u32,
    a_shared: u32,
    b_shared: u32,
    scale: f32,
}

/// The parameters of [`product_source`]'s kernel.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ProductParams {
    total: u32,
    row_stride: u32,
    n: u32,
    a_shared: u32,
    /// The chunk of elements this dispatch takes: `start..start + len`.
    start: u32,
    len: u32,
    /// 0: the products before each element, forward; 1: times those
    /// after it, backward.
    backward: u32,
    pad: u32,
}

/// The most elements of a row one dispatch of [`product_source`] takes:
/// software drivers stop an invocation's loops after 65,535 iterations.
const PRODUCT_CHUNK: usize = 16_384;

/// The parameters of shaders/select.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SelectParams {
    total: u32,
    row_stride: u32,
    size: u32,
    a_size: u32,
    b_size: u32,
    a_shared: u32,
    b_shared: u32,
    start: u32,
    split: u32,
    pad: [u32; 3],
}

/// The element-wise forward kernel of `op`: value and partials, with scalar
/// expansion and shared (parameter) operands.
fn elementwise_source(call: &str, binary: bool) -> String {
    let mut src = shaders::library();
    src.push_str(
        "\nstruct ForwardParams {\n    total: u32,\n    row_stride: u32,\n    size: u32,\n    a_size: u32,\n    \
         b_size: u32,\n    a_shared: u32,\n    b_shared: u32,\n    scale: f32,\n}\n\n\
         @group(0) @binding(0) var<uniform> params: ForwardParams;\n\
         @group(0) @binding(1) var<storage, read> a: array<f32>;\n",
    );
    if binary {
        src.push_str(
            "@group(0) @binding(2) var<storage, read> b: array<f32>;\n\
             @group(0) @binding(3) var<storage, read_write> out_v: array<f32>;\n\
             @group(0) @binding(4) var<storage, read_write> out_da: array<f32>;\n\
             @group(0) @binding(5) var<storage, read_write> out_db: array<f32>;\n",
        );
    } else {
        src.push_str(
            "@group(0) @binding(2) var<storage, read_write> out_v: array<f32>;\n\
             @group(0) @binding(3) var<storage, read_write> out_da: array<f32>;\n",
        );
    }
    src.push_str(
        "\nfn operand_index(sample: u32, i: u32, size: u32, is_shared: u32) -> u32 {\n    \
         let base = select(sample * size, 0u, is_shared == 1u);\n    return base + select(i, 0u, size == 1u);\n}\n\n\
         @compute @workgroup_size(256)\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {\n    \
         let e = gid.y * params.row_stride + gid.x;\n    if (e >= params.total) {\n        return;\n    }\n    \
         let sample = e / params.size;\n    let i = e % params.size;\n    \
         let va = a[operand_index(sample, i, params.a_size, params.a_shared)];\n",
    );
    if binary {
        src.push_str(&format!(
            "    let vb = b[operand_index(sample, i, params.b_size, params.b_shared)];\n    \
             let d = {call};\n    out_v[e] = d.x;\n    out_da[e] = d.y;\n    out_db[e] = d.z;\n}}\n"
        ));
    } else {
        src.push_str(&format!(
            "    let d = {call};\n    out_v[e] = d.x;\n    out_da[e] = d.y;\n}}\n"
        ));
    }
    src
}

/// Sum (scale 1), mean (scale 1/n) or dot of each sample's vector: one
/// invocation per sample, a loop of n (at most `LOOP_UP_TO`; longer rows
/// take the tree of `rows.rs`).
fn reduction_source(dot: bool) -> String {
    let mut src = String::from(
        "struct ForwardParams {\n    total: u32,\n    row_stride: u32,\n    size: u32,\n    a_size: u32,\n    \
         b_size: u32,\n    a_shared: u32,\n    b_shared: u32,\n    scale: f32,\n}\n\n\
         @group(0) @binding(0) var<uniform> params: ForwardParams;\n\
         @group(0) @binding(1) var<storage, read> a: array<f32>;\n",
    );
    if dot {
        src.push_str("@group(0) @binding(2) var<storage, read> b: array<f32>;\n@group(0) @binding(3) var<storage, read_write> out_v: array<f32>;\n");
    } else {
        src.push_str("@group(0) @binding(2) var<storage, read_write> out_v: array<f32>;\n");
    }
    src.push_str(
        "\n@compute @workgroup_size(256)\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {\n    \
         let sample = gid.y * params.row_stride + gid.x;\n    if (sample >= params.total) {\n        return;\n    }\n    \
         let n = params.a_size;\n    let a_base = select(sample * n, 0u, params.a_shared == 1u);\n    \
         let b_base = select(sample * n, 0u, params.b_shared == 1u);\n    var sum = 0.0;\n    \
         for (var i = 0u; i < n; i = i + 1u) {\n",
    );
    if dot {
        src.push_str("        sum = sum + a[a_base + i] * b[b_base + i];\n");
    } else {
        src.push_str("        sum = sum + a[a_base + i];\n");
    }
    src.push_str("    }\n    out_v[sample] = sum * params.scale;\n}\n");
    src
}

/// prod of each sample's vector and its partial row, the products of the
/// others, as `products_of_others` in src/ops/reduce.rs (exact at zeros):
/// forward, each element's row entry is the product of the elements
/// before it, and the value the product of all once the last chunk is
/// done; backward, each entry is multiplied by the product of the
/// elements after it. Both products are compensated and scaled by powers
/// of two as they go (`ScaledProduct`, shaders/common.wgsl), so no
/// intermediate product overflows: forward writes each entry's mantissa to
/// `out_others` and its exponent to `exponents`, and the running product
/// is carried between chunks in `carry`, three floats a sample (the
/// exponent's bits). One invocation per sample and chunk of at most
/// [`PRODUCT_CHUNK`] elements, so rows of any length take bounded loops.
fn product_source() -> String {
    let mut src = shaders::library();
    src.push_str(
        "\nstruct ProductParams {\n    total: u32,\n    row_stride: u32,\n    n: u32,\n    a_shared: u32,\n    \
         start: u32,\n    len: u32,\n    backward: u32,\n    pad: u32,\n}\n\n\
         @group(0) @binding(0) var<uniform> params: ProductParams;\n\
         @group(0) @binding(1) var<storage, read> a: array<f32>;\n\
         @group(0) @binding(2) var<storage, read_write> out_v: array<f32>;\n\
         @group(0) @binding(3) var<storage, read_write> out_others: array<f32>;\n\
         @group(0) @binding(4) var<storage, read_write> carry: array<f32>;\n\
         @group(0) @binding(5) var<storage, read_write> exponents: array<i32>;\n\n\
         @compute @workgroup_size(256)\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {\n    \
         let sample = gid.y * params.row_stride + gid.x;\n    if (sample >= params.total) {\n        return;\n    }\n    \
         let n = params.n;\n    let base = select(sample * n, 0u, params.a_shared == 1u);\n    \
         let row = sample * n;\n    \
         let first = select(params.start == 0u, params.start + params.len == n, params.backward == 1u);\n    \
         var running = scaled_one();\n    \
         if (!first) {\n        \
         running = ScaledProduct(vec2<f32>(carry[3u * sample], carry[3u * sample + 1u]), \
         bitcast<i32>(carry[3u * sample + 2u]));\n    }\n    \
         if (params.backward == 0u) {\n        \
         for (var k = 0u; k < params.len; k = k + 1u) {\n            \
         let i = params.start + k;\n            out_others[row + i] = scaled_mantissa(running);\n            \
         exponents[row + i] = running.e;\n            \
         running = scaled_step(running, a[base + i]);\n        }\n        \
         if (params.start + params.len == n) {\n            out_v[sample] = scaled_value(running);\n        }\n    \
         } else {\n        \
         for (var k = 0u; k < params.len; k = k + 1u) {\n            \
         let i = params.start + params.len - 1u - k;\n            \
         out_others[row + i] = times_power_of_two(out_others[row + i] * scaled_mantissa(running), \
         exponents[row + i] + running.e);\n            \
         running = scaled_step(running, a[base + i]);\n        }\n    }\n    \
         carry[3u * sample] = running.m.x;\n    carry[3u * sample + 1u] = running.m.y;\n    \
         carry[3u * sample + 2u] = bitcast<f32>(running.e);\n}\n",
    );
    src
}

/// The head of the per-sample reductions over a logit vector `a`: their
/// parameters and `row_max`, the maximum of a sample's elements (NaN aside),
/// how many equal it, and whether any is NaN; the mirror of `row_max` in
/// src/program/eval.rs. One invocation per sample, loops of n (at most
/// `LOOP_UP_TO`; longer rows take the tree of `rows.rs`).
fn logits_source(outputs: &str) -> String {
    let mut src = shaders::library();
    src.push_str(
        "\nstruct ForwardParams {\n    total: u32,\n    row_stride: u32,\n    size: u32,\n    a_size: u32,\n    \
         b_size: u32,\n    a_shared: u32,\n    b_shared: u32,\n    scale: f32,\n}\n\n\
         @group(0) @binding(0) var<uniform> params: ForwardParams;\n\
         @group(0) @binding(1) var<storage, read> a: array<f32>;\n",
    );
    src.push_str(outputs);
    src.push_str(
        "\nstruct RowMax {\n    max: f32,\n    ties: u32,\n    nan: bool,\n}\n\n\
         fn row_max(base: u32, n: u32) -> RowMax {\n    \
         var row = RowMax(inf_like(a[base], true), 0u, false);\n    \
         for (var i = 0u; i < n; i = i + 1u) {\n        let z = a[base + i];\n        \
         if (is_nan_f32(z)) {\n            row.nan = true;\n        \
         } else if (z > row.max) {\n            row.max = z;\n            row.ties = 1u;\n        \
         } else if (z == row.max) {\n            row.ties = row.ties + 1u;\n        }\n    }\n    \
         return row;\n}\n\n\
         @compute @workgroup_size(256)\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {\n    \
         let sample = gid.y * params.row_stride + gid.x;\n    if (sample >= params.total) {\n        return;\n    }\n    \
         let n = params.a_size;\n    let base = select(sample * n, 0u, params.a_shared == 1u);\n    \
         let row = row_max(base, n);\n    \
         // An infinite maximum held by several elements (or all -Inf) has no limit.\n    \
         let undefined = row.nan || (is_inf_f32(row.max) && row.ties > 1u);\n",
    );
    src
}

/// logsumexp of each sample's vector with the maximum subtracted, and its
/// gradient softmax(z) = exp(z - m) / sum(exp(z - m)) as the local partial
/// row (not exp(z - lse): lse rounded to f32 is off by up to half an ulp of
/// |z|, which would make every softmax wrong by that much). At an infinite
/// maximum: lse is that infinity, softmax one-hot where one element holds
/// it, NaN where several do. The mirror of `log_sum_exp` and `softmax` in
/// src/program/eval.rs.
fn log_sum_exp_source() -> String {
    let mut src = logits_source(
        "@group(0) @binding(2) var<storage, read_write> out_v: array<f32>;\n\
         @group(0) @binding(3) var<storage, read_write> out_softmax: array<f32>;\n",
    );
    src.push_str(
        "    if (row.nan) {\n        out_v[sample] = nan_like(row.max);\n    \
         } else if (is_inf_f32(row.max)) {\n        out_v[sample] = row.max;\n    }\n    \
         if (row.nan || is_inf_f32(row.max)) {\n        \
         for (var i = 0u; i < n; i = i + 1u) {\n            \
         let hot = select(0.0, 1.0, a[base + i] == row.max);\n            \
         out_softmax[sample * n + i] = select(hot, nan_like(row.max), undefined);\n        }\n        \
         return;\n    }\n    \
         var total = 0.0;\n    for (var i = 0u; i < n; i = i + 1u) {\n        \
         total = total + exp_acc(a[base + i] - row.max);\n    }\n    \
         out_v[sample] = row.max + ln_acc(total);\n    \
         for (var i = 0u; i < n; i = i + 1u) {\n        \
         out_softmax[sample * n + i] = exp_acc(a[base + i] - row.max) / total;\n    }\n}\n",
    );
    src
}

/// z - max(z) for each sample ([`Op::ShiftMax`]): 0 and -Inf at an infinite
/// maximum held by one element, NaN where several hold it or any element is
/// NaN. The mirror of `shift_max` in src/program/eval.rs.
fn shift_max_source() -> String {
    let mut src =
        logits_source("@group(0) @binding(2) var<storage, read_write> out_v: array<f32>;\n");
    src.push_str(
        "    for (var i = 0u; i < n; i = i + 1u) {\n        let z = a[base + i];\n        \
         var d = z - row.max;\n        if (undefined) {\n            d = nan_like(z);\n        \
         } else if (is_inf_f32(row.max)) {\n            \
         d = select(inf_like(z, true), 0.0, z == row.max);\n        }\n        \
         out_v[sample * n + i] = d;\n    }\n}\n",
    );
    src
}

impl GpuContext {
    fn run_kernel<P: bytemuck::Pod>(
        &self,
        label: &str,
        source: impl FnOnce() -> String,
        params: P,
        buffers: &[&wgpu::Buffer],
        grid: (u32, u32),
    ) -> Result<()> {
        let kernel = pollster::block_on(self.kernel(label, source))?;
        let uniform = self.uniform(&params);
        let mut bound: Vec<&wgpu::Buffer> = vec![&uniform];
        bound.extend_from_slice(buffers);
        self.dispatch(&kernel, &bound, (grid.0, grid.1, 1), label);
        Ok(())
    }

    pub(super) fn new_segments(&self, layout: BatchLayout, per_sample: usize) -> Segments {
        (0..layout.segments())
            .map(|s| {
                Arc::new(self.take_buffer(
                    (layout.samples_in(s) * per_sample).max(1) as u64 * F32_BYTES,
                    wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                ))
            })
            .collect()
    }

    /// The forward pass: `variables[v]` holds input v's B x size values or
    /// parameter v's values; `wrt` are the variables whose derivatives the
    /// plan takes. One fused kernel where the program fits registers,
    /// otherwise a kernel per node.
    pub(crate) fn forward(
        &self,
        program: &Program,
        variables: &[&[f32]],
        layout: BatchLayout,
        wrt: &[usize],
    ) -> Result<Forward> {
        let plan = crate::compile::forward(program, wrt);
        if let Some(mut forward) = self.try_fused_forward(plan, program, variables, layout)? {
            forward.transposed = self.transposed_params(program, variables)?;
            return Ok(forward);
        }
        self.forward_by_node(program, variables, layout, true)
    }

    /// The forward pass as one fused kernel per segment, or `None` where
    /// the program does not fit one.
    fn try_fused_forward(
        &self,
        plan: std::result::Result<crate::compile::FusedForward, crate::compile::NotFused>,
        program: &Program,
        variables: &[&[f32]],
        layout: BatchLayout,
    ) -> Result<Option<Forward>> {
        // A pass that computes nothing to write (the output is a variable)
        // needs no kernel; the per-node pass binds the variables.
        if let Some(plan) = plan.ok().filter(|plan| !plan.outputs.is_empty()) {
            let limit = self.device.limits().max_storage_buffers_per_shader_stage as usize;
            let bindings =
                plan.inputs.len() + usize::from(!plan.params.is_empty()) + plan.outputs.len();
            if bindings <= limit
                && layout.per_segment <= self.samples_per_dispatch((plan.trips, 0), false)
            {
                return self
                    .fused_forward(&plan, program, variables, layout)
                    .map(Some);
            }
        }
        Ok(None)
    }

    /// For each `x @ W` node ([`Op::VecMat`]), W^T (n x k for W of k x n)
    /// uploaded from the host: the node's local Jacobian in x, and the
    /// matrix its product by node reads.
    pub(crate) fn transposed_params(
        &self,
        program: &Program,
        variables: &[&[f32]],
    ) -> Result<Vec<Option<Arc<wgpu::Buffer>>>> {
        let mut out = Vec::with_capacity(program.nodes.len());
        for (id, op) in program.nodes.iter().enumerate() {
            let Op::VecMat(w, x) = *op else {
                out.push(None);
                continue;
            };
            let data = match program.nodes.get(w) {
                Some(&Op::Variable(v)) => variables.get(v).copied(),
                _ => None,
            };
            let (k, n) = (program.shapes[x].size(), program.shapes[id].size());
            let data = data.filter(|d| d.len() == k * n).ok_or_else(|| {
                Error::Shape(format!(
                    "node {id}: the matrix of `x @ W` has no {k} x {n} values"
                ))
            })?;
            let transposed: Vec<f32> = (0..n * k).map(|e| data[(e % k) * n + e / k]).collect();
            out.push(Some(self.upload_shared(&transposed)));
        }
        Ok(out)
    }

    /// The output's values alone, B x its size: one fused kernel per
    /// segment (selections included) where the program fits registers,
    /// otherwise a kernel per node.
    pub(crate) fn output_values(
        &self,
        program: &Program,
        variables: &[&[f32]],
        batch: usize,
    ) -> Result<Vec<f32>> {
        // A matrix is a param's, uploaded once for the batch: only the
        // per-sample values decide how many samples a segment holds.
        let largest = program
            .shapes
            .iter()
            .filter(|s| !matches!(s, crate::program::Shape::Matrix(..)))
            .map(|s| s.size())
            .max()
            .unwrap_or(1);
        let layout = self.batch_layout(batch, largest)?;
        let plan = crate::compile::values(program);
        let forward = match self.try_fused_forward(plan, program, variables, layout)? {
            Some(forward) => forward,
            None => self.forward_by_node(program, variables, layout, false)?,
        };
        self.download_node(
            &forward,
            program.output,
            program.shapes[program.output].size(),
        )
    }

    /// The forward pass with a kernel per node, every value and partial in
    /// memory: for programs too large for registers.
    /// `with_partials`: whether a plan reads the partials (a values-only
    /// pass skips a layer's derivative).
    fn forward_by_node(
        &self,
        program: &Program,
        variables: &[&[f32]],
        layout: BatchLayout,
        with_partials: bool,
    ) -> Result<Forward> {
        let size = |id: usize| program.shapes[id].size();
        let transposed = self.transposed_params(program, variables)?;
        let mut values: Vec<NodeValue> = Vec::with_capacity(program.nodes.len());
        let mut partials: Vec<Vec<Segments>> = Vec::with_capacity(program.nodes.len());
        let layers = layers(program);
        // The values and partials of nodes a layer's epilogue computed
        // ahead of their turn (placeholders for those it made unneeded).
        let mut ready: HashMap<NodeId, (NodeValue, Vec<Segments>)> = HashMap::new();
        for (id, op) in program.nodes.iter().enumerate() {
            if let Some((value, node_partials)) = ready.remove(&id) {
                values.push(value);
                partials.push(node_partials);
                continue;
            }
            if let Some(layer) = &layers[id] {
                let weights = transposed[id]
                    .clone()
                    .or_else(|| match &values[layer.matrix] {
                        NodeValue::Shared(buffer) => Some(Arc::clone(buffer)),
                        NodeValue::PerSample(_) => None,
                    });
                let operands = (&values[layer.vector], weights);
                if let (NodeValue::PerSample(x), Some(weights)) = operands {
                    let scoped = format!("forward pass, layer at node {id}");
                    // The bias, a param, may come after the product in
                    // the node order: then it is uploaded now, for its turn.
                    let bias = match layer.bias {
                        Some((_, b)) if b < id => Some(values[b].clone()),
                        Some((_, b)) => {
                            let Op::Variable(v) = program.nodes[b] else {
                                return Err(Error::Shape(format!("node {b} is not a bias")));
                            };
                            let data = variables.get(v).copied().ok_or_else(|| {
                                Error::Shape(format!(
                                    "no values for variable {}",
                                    program.variables[v].name
                                ))
                            })?;
                            let value = NodeValue::Shared(self.upload_shared(data));
                            ready.insert(b, (value.clone(), Vec::new()));
                            Some(value)
                        }
                        None => None,
                    };
                    let done = pollster::block_on(self.scoped(&scoped, || {
                        let operands = (x, &weights, bias.as_ref());
                        self.run_layer(layer, program, operands, layout, with_partials)
                    }))??;
                    if let Some(done) = done {
                        // Nothing reads the product or the sum but the next
                        // node of the layer, so neither is kept.
                        values.push(NodeValue::PerSample(Vec::new()));
                        partials.push(Vec::new());
                        if let (Some((add, _)), Some(_)) = (layer.bias, layer.activation) {
                            ready.insert(add, (NodeValue::PerSample(Vec::new()), Vec::new()));
                        }
                        ready.insert(layer.last, done);
                        continue;
                    }
                }
            }
            let n = size(id);
            let scoped = format!("forward pass, node {id}");
            let (value, node_partials) = pollster::block_on(self.scoped(
                &scoped,
                || -> Result<(NodeValue, Vec<Segments>)> {
                    Ok(match *op {
                        Op::Variable(v) => {
                            let data = variables.get(v).ok_or_else(|| {
                                Error::Shape(format!(
                                    "no values for variable {}",
                                    program.variables[v].name
                                ))
                            })?;
                            match program.variables[v].kind {
                                Kind::Param => {
                                    (NodeValue::Shared(self.upload_shared(data)), vec![])
                                }
                                Kind::Input => (
                                    NodeValue::PerSample(self.upload_segments(layout, n, data)?),
                                    vec![],
                                ),
                            }
                        }
                        Op::Constant(c) => {
                            (NodeValue::Shared(self.upload_shared(&[c as f32])), vec![])
                        }
                        Op::Unary(unary, a) => {
                            let call = match unary.parameter() {
                                Some(p) => format!("{}_vd(va, {p:?})", unary.name()),
                                None => format!("{}_vd(va)", unary.name()),
                            };
                            let label = format!("forward/{call}");
                            self.elementwise_node(
                                &label,
                                &call,
                                false,
                                &values,
                                (a, None),
                                (size(a), 1),
                                n,
                                layout,
                            )?
                        }
                        Op::Binary(binary, a, b) => {
                            let call = format!("{}_vdd(va, vb)", binary.name());
                            let label = format!("forward/{}", binary.name());
                            self.elementwise_node(
                                &label,
                                &call,
                                true,
                                &values,
                                (a, Some(b)),
                                (size(a), size(b)),
                                n,
                                layout,
                            )?
                        }
                        Op::MatVec(w, v) | Op::VecMat(w, v) => {
                            let (m, k) = (size(id), size(v));
                            // x @ W is W^T x: the product with W^T's rows.
                            let weights = match (&values[w], &transposed[id]) {
                                (_, Some(buffer)) => Arc::clone(buffer),
                                (NodeValue::Shared(buffer), None) => Arc::clone(buffer),
                                (NodeValue::PerSample(_), None) => {
                                    return Err(Error::Shape(
                                        "the matrix of `@` must be a parameter".into(),
                                    ));
                                }
                            };
                            let transposed = GpuJacobian::Shared {
                                rows: m,
                                cols: k,
                                buffer: weights,
                            };
                            let one = BatchLayout {
                                batch: 1,
                                per_segment: 1,
                            };
                            let out = match &values[v] {
                                NodeValue::PerSample(segments) => {
                                    let mut out = Vec::with_capacity(segments.len());
                                    for (s, segment) in segments.iter().enumerate() {
                                        // The samples as rows: X (samples x k) times W^T.
                                        let rows = GpuJacobian::Shared {
                                            rows: layout.samples_in(s),
                                            cols: k,
                                            buffer: Arc::clone(segment),
                                        };
                                        match self.value_product(&rows, &transposed, true, one)? {
                                            GpuJacobian::Shared { buffer, .. } => out.push(buffer),
                                            _ => {
                                                return Err(Error::Shape(
                                                    "unexpected product structure".into(),
                                                ));
                                            }
                                        }
                                    }
                                    NodeValue::PerSample(out)
                                }
                                NodeValue::Shared(vector) => {
                                    let row = GpuJacobian::Shared {
                                        rows: 1,
                                        cols: k,
                                        buffer: Arc::clone(vector),
                                    };
                                    match self.value_product(&row, &transposed, true, one)? {
                                        GpuJacobian::Shared { buffer, .. } => {
                                            NodeValue::Shared(buffer)
                                        }
                                        _ => {
                                            return Err(Error::Shape(
                                                "unexpected product structure".into(),
                                            ));
                                        }
                                    }
                                }
                            };
                            (out, vec![])
                        }
                        Op::ShiftMax(a) => {
                            let n_a = size(a);
                            let out = self.new_segments(layout, n_a);
                            for (s, target) in out.iter().enumerate() {
                                let samples = layout.samples_in(s);
                                let (xa, a_shared) = segment_of(&values[a], s);
                                if n_a > LOOP_UP_TO {
                                    let z = RowOperand {
                                        buffer: &xa,
                                        shared: a_shared == 1,
                                    };
                                    self.finish_logits(z, (samples, n_a), target, None)?;
                                    continue;
                                }
                                let (gx, gy, _) = self.grid_1d(samples);
                                let params = ForwardParams {
                                    total: samples as u32,
                                    row_stride: gx * WORKGROUP as u32,
                                    size: n_a as u32,
                                    a_size: n_a as u32,
                                    b_size: n_a as u32,
                                    a_shared,
                                    b_shared: 0,
                                    scale: 1.0,
                                };
                                self.run_kernel(
                                    "forward/shift_max",
                                    shift_max_source,
                                    params,
                                    &[&xa, target],
                                    (gx, gy),
                                )?;
                            }
                            (NodeValue::PerSample(out), vec![])
                        }
                        Op::Reduce(r, a, _) if r.partial() == RowPartial::Softmax => {
                            let n_a = size(a);
                            let out = self.new_segments(layout, 1);
                            let softmax = self.new_segments(layout, n_a);
                            for (s, (target, rows)) in out.iter().zip(&softmax).enumerate() {
                                let samples = layout.samples_in(s);
                                let (xa, a_shared) = segment_of(&values[a], s);
                                if n_a > LOOP_UP_TO {
                                    let z = RowOperand {
                                        buffer: &xa,
                                        shared: a_shared == 1,
                                    };
                                    self.finish_logits(z, (samples, n_a), target, Some(rows))?;
                                    continue;
                                }
                                let (gx, gy, _) = self.grid_1d(samples);
                                let params = ForwardParams {
                                    total: samples as u32,
                                    row_stride: gx * WORKGROUP as u32,
                                    size: 1,
                                    a_size: n_a as u32,
                                    b_size: n_a as u32,
                                    a_shared,
                                    b_shared: 0,
                                    scale: 1.0,
                                };
                                self.run_kernel(
                                    "forward/logsumexp",
                                    log_sum_exp_source,
                                    params,
                                    &[&xa, target, rows],
                                    (gx, gy),
                                )?;
                            }
                            (NodeValue::PerSample(out), vec![softmax])
                        }
                        Op::Reduce(r, a, _) if r.partial() == RowPartial::Others => {
                            let n_a = size(a);
                            let out = self.new_segments(layout, 1);
                            let others = self.new_segments(layout, n_a);
                            let carry = self.new_segments(layout, 3);
                            let exponents = self.new_segments(layout, n_a);
                            // Every chunk forward, then every chunk backward.
                            let chunks: Vec<usize> = (0..n_a).step_by(PRODUCT_CHUNK).collect();
                            let passes: Vec<(usize, u32)> = chunks
                                .iter()
                                .map(|&start| (start, 0))
                                .chain(chunks.iter().rev().map(|&start| (start, 1)))
                                .collect();
                            for (s, target) in out.iter().enumerate() {
                                let samples = layout.samples_in(s);
                                let (xa, a_shared) = segment_of(&values[a], s);
                                let (gx, gy, _) = self.grid_1d(samples);
                                for &(start, direction) in &passes {
                                    let params = ProductParams {
                                        total: samples as u32,
                                        row_stride: gx * WORKGROUP as u32,
                                        n: n_a as u32,
                                        a_shared,
                                        start: start as u32,
                                        len: PRODUCT_CHUNK.min(n_a - start) as u32,
                                        backward: direction,
                                        pad: 0,
                                    };
                                    self.run_kernel(
                                        "forward/prod",
                                        product_source,
                                        params,
                                        &[&xa, target, &others[s], &carry[s], &exponents[s]],
                                        (gx, gy),
                                    )?;
                                }
                            }
                            (NodeValue::PerSample(out), vec![others])
                        }
                        Op::Slice(a, start, _) => (
                            self.select_node(&values, (a, size(a), start), None, n, layout)?,
                            vec![],
                        ),
                        Op::Concat(a, b) => (
                            self.select_node(
                                &values,
                                (a, size(a), 0),
                                Some((b, size(b))),
                                n,
                                layout,
                            )?,
                            vec![],
                        ),
                        // Linear and bilinear reductions: `weight` times the
                        // sum of the operands' products.
                        Op::Reduce(r, a, other) => {
                            let dot = other.is_some();
                            let scale = r.weight(size(a)) as f32;
                            let out = self.new_segments(layout, 1);
                            for (s, target) in out.iter().enumerate() {
                                let samples = layout.samples_in(s);
                                let (xa, a_shared) = segment_of(&values[a], s);
                                let mut buffers: Vec<Arc<wgpu::Buffer>> = vec![xa];
                                let mut b_shared = 0;
                                if let Some(b) = other {
                                    let (xb, shared) = segment_of(&values[b], s);
                                    buffers.push(xb);
                                    b_shared = shared;
                                }
                                if size(a) > LOOP_UP_TO {
                                    let operand = |i: usize, shared: u32| RowOperand {
                                        buffer: &buffers[i],
                                        shared: shared == 1,
                                    };
                                    let (row_op, b) = if dot {
                                        (RowOp::Dot, Some(operand(1, b_shared)))
                                    } else {
                                        (RowOp::Sum, None)
                                    };
                                    self.reduce_rows(
                                        row_op,
                                        (operand(0, a_shared), b),
                                        (samples, size(a)),
                                        scale,
                                        Some(target),
                                    )?;
                                    continue;
                                }
                                buffers.push(Arc::clone(target));
                                let refs: Vec<&wgpu::Buffer> =
                                    buffers.iter().map(|b| b.as_ref()).collect();
                                let (gx, gy, _) = self.grid_1d(samples);
                                let grid = (gx, gy);
                                let params = ForwardParams {
                                    total: samples as u32,
                                    row_stride: grid.0 * WORKGROUP as u32,
                                    size: 1,
                                    a_size: size(a) as u32,
                                    b_size: size(a) as u32,
                                    a_shared,
                                    b_shared,
                                    scale,
                                };
                                let label = if dot { "forward/dot" } else { "forward/sum" };
                                self.run_kernel(
                                    label,
                                    || reduction_source(dot),
                                    params,
                                    &refs,
                                    grid,
                                )?;
                            }
                            (NodeValue::PerSample(out), vec![])
                        }
                    })
                },
            ))??;
            values.push(value);
            partials.push(node_partials);
        }
        Ok(Forward {
            layout,
            values,
            partials,
            transposed,
        })
    }

    /// The values of a selection, `n` per sample: elements `start..` of
    /// node `a` (of `a_size` elements), followed, for an assembly, by every
    /// element of node `b` (of `b_size`) from element `split` on.
    fn select_node(
        &self,
        values: &[NodeValue],
        (a, a_size, start): (usize, usize, usize),
        b: Option<(usize, usize)>,
        n: usize,
        layout: BatchLayout,
    ) -> Result<NodeValue> {
        let split = if b.is_some() { a_size } else { n };
        let out = self.new_segments(layout, n);
        for (s, target) in out.iter().enumerate() {
            let total = layout.samples_in(s) * n;
            let (xa, a_shared) = segment_of(&values[a], s);
            let (xb, b_shared, b_size) = match b {
                Some((b, b_size)) => {
                    let (xb, shared) = segment_of(&values[b], s);
                    (xb, shared, b_size)
                }
                None => (Arc::clone(&self.dummy), 0, 0),
            };
            let (gx, gy, _) = self.grid_1d(total);
            let params = SelectParams {
                total: total as u32,
                row_stride: gx * WORKGROUP as u32,
                size: n as u32,
                a_size: a_size as u32,
                b_size: b_size as u32,
                a_shared,
                b_shared,
                start: start as u32,
                split: split as u32,
                pad: [0; 3],
            };
            self.run_kernel(
                "forward/select",
                || shaders::SELECT.to_string(),
                params,
                &[&xa, &xb, target],
                (gx, gy),
            )?;
        }
        Ok(NodeValue::PerSample(out))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one private step of the forward pass"
    )]
    fn elementwise_node(
        &self,
        label: &str,
        call: &str,
        binary: bool,
        values: &[NodeValue],
        (a, b): (usize, Option<usize>),
        (a_size, b_size): (usize, usize),
        n: usize,
        layout: BatchLayout,
    ) -> Result<(NodeValue, Vec<Segments>)> {
        let out_v = self.new_segments(layout, n);
        let out_da = self.new_segments(layout, n);
        let out_db = if binary {
            self.new_segments(layout, n)
        } else {
            Vec::new()
        };
        for s in 0..layout.segments() {
            let total = layout.samples_in(s) * n;
            let (xa, a_shared) = segment_of(&values[a], s);
            let mut buffers: Vec<Arc<wgpu::Buffer>> = vec![xa];
            let mut b_shared = 0;
            if let Some(b) = b {
                let (xb, shared) = segment_of(&values[b], s);
                buffers.push(xb);
                b_shared = shared;
            }
            buffers.push(Arc::clone(&out_v[s]));
            buffers.push(Arc::clone(&out_da[s]));
            if binary {
                buffers.push(Arc::clone(&out_db[s]));
            }
            let refs: Vec<&wgpu::Buffer> = buffers.iter().map(|b| b.as_ref()).collect();
            let (gx, gy, _) = self.grid_1d(total);
            let grid = (gx, gy);
            let params = ForwardParams {
                total: total as u32,
                row_stride: grid.0 * WORKGROUP as u32,
                size: n as u32,
                a_size: a_size as u32,
                b_size: b_size as u32,
                a_shared,
                b_shared,
                scale: 1.0,
            };
            self.run_kernel(
                label,
                || elementwise_source(call, binary),
                params,
                &refs,
                grid,
            )?;
        }
        let mut partials = vec![out_da];
        if binary {
            partials.push(out_db);
        }
        Ok((NodeValue::PerSample(out_v), partials))
    }
}

/// A layer the forward pass by node runs as one product with its
/// epilogue: `W @ x` (or `x @ W`), then `+ b` with b a param of the
/// product's shape, then an element-wise activation, each node the only
/// reader of the one before and none of them the output but the last.
#[derive(Debug, Clone, Copy)]
struct Layer {
    /// The matrix's node and the vector's.
    matrix: NodeId,
    vector: NodeId,
    /// The sum's node and the bias's.
    bias: Option<(NodeId, NodeId)>,
    /// The activation's node and function.
    activation: Option<(NodeId, UnaryOp)>,
    /// The layer's last node: its value is what the epilogue writes.
    last: NodeId,
}

/// For each product node that starts a layer with a bias or an activation,
/// the layer.
fn layers(program: &Program) -> Vec<Option<Layer>> {
    let mut readers: Vec<Vec<NodeId>> = vec![Vec::new(); program.nodes.len()];
    for (id, op) in program.nodes.iter().enumerate() {
        for operand in op.operands() {
            if let Some(r) = readers.get_mut(operand) {
                r.push(id);
            }
        }
    }
    // The one node that reads `id`, when `id` is not the output.
    let only_reader = |id: NodeId| match readers[id].as_slice() {
        &[reader] if id != program.output => Some(reader),
        _ => None,
    };
    let is_bias = |id: NodeId, like: NodeId| {
        program.is_param_node(id) && program.shapes[id] == program.shapes[like]
    };
    (0..program.nodes.len())
        .map(|id| {
            let (matrix, vector, _) = program.nodes[id].matrix_product()?;
            let mut layer = Layer {
                matrix,
                vector,
                bias: None,
                activation: None,
                last: id,
            };
            if let Some(reader) = only_reader(id)
                && let Op::Binary(BinaryOp::Add, a, b) = program.nodes[reader]
            {
                let other = if a == id { b } else { a };
                if (a == id) != (b == id) && is_bias(other, id) {
                    layer.bias = Some((reader, other));
                    layer.last = reader;
                }
            }
            if let Some(reader) = only_reader(layer.last)
                && let Op::Unary(f, _) = program.nodes[reader]
            {
                layer.activation = Some((reader, f));
                layer.last = reader;
            }
            (layer.last != id).then_some(layer)
        })
        .collect()
}

impl GpuContext {
    /// The value of a layer's last node, and its partial where it is an
    /// activation, over every segment: one product with its epilogue each.
    /// `None` where a segment's product would need a split of K; the nodes
    /// then run one by one.
    fn run_layer(
        &self,
        layer: &Layer,
        program: &Program,
        (x, weights, bias): (&Segments, &Arc<wgpu::Buffer>, Option<&NodeValue>),
        layout: BatchLayout,
        with_partials: bool,
    ) -> Result<Option<(NodeValue, Vec<Segments>)>> {
        let (k, m) = (
            program.shapes[layer.vector].size(),
            program.shapes[layer.last].size(),
        );
        let fits = (0..layout.segments()).all(|s| self.layer_fits(layout.samples_in(s), k, m));
        let bias = match bias {
            Some(NodeValue::Shared(buffer)) => Some(buffer),
            Some(NodeValue::PerSample(_)) => return Ok(None),
            None => None,
        };
        if !fits || x.len() != layout.segments() {
            return Ok(None);
        }
        let activation = layer.activation.map(|(_, f)| f);
        let mut values = Vec::with_capacity(x.len());
        let mut derivatives = Vec::with_capacity(x.len());
        for (s, segment) in x.iter().enumerate() {
            let samples = layout.samples_in(s);
            let epilogue = (bias, activation, with_partials);
            let (value, derivative) =
                self.layer_product(segment, (samples, k, m), weights, epilogue)?;
            values.push(value);
            derivatives.extend(derivative);
        }
        let partials = if activation.is_some() && with_partials {
            vec![derivatives]
        } else {
            Vec::new()
        };
        Ok(Some((NodeValue::PerSample(values), partials)))
    }
}

/// Segment `s` of a node's value, and whether it is shared (1) or per sample (0).
fn segment_of(value: &NodeValue, s: usize) -> (Arc<wgpu::Buffer>, u32) {
    match value {
        NodeValue::Shared(buffer) => (Arc::clone(buffer), 1),
        NodeValue::PerSample(segments) => (
            Arc::clone(&segments[s.min(segments.len().saturating_sub(1))]),
            0,
        ),
    }
}

impl GpuContext {
    /// A node's value as a 1 x size row per sample (or shared).
    pub(crate) fn node_row(
        &self,
        forward: &Forward,
        node: usize,
        size: usize,
    ) -> Result<GpuJacobian> {
        match forward.values.get(node) {
            Some(NodeValue::PerSample(segments)) => Ok(GpuJacobian::Dense {
                rows: 1,
                cols: size,
                segments: segments.clone(),
            }),
            Some(NodeValue::Shared(buffer)) => Ok(GpuJacobian::Shared {
                rows: 1,
                cols: size,
                buffer: Arc::clone(buffer),
            }),
            None => Err(Error::Shape(format!("no node {node}"))),
        }
    }

    /// Per-sample rows in segments, read back as B x size.
    pub(crate) async fn download_rows(
        &self,
        layout: BatchLayout,
        size: usize,
        segments: &Segments,
    ) -> Result<Vec<f32>> {
        self.download_segments(layout, size, segments).await
    }

    /// A node's values for every sample, B x size.
    pub(crate) fn download_node(
        &self,
        forward: &Forward,
        node: usize,
        size: usize,
    ) -> Result<Vec<f32>> {
        let layout = forward.layout;
        match forward.values.get(node) {
            Some(NodeValue::PerSample(segments)) => {
                pollster::block_on(self.download_segments(layout, size, segments))
            }
            Some(NodeValue::Shared(buffer)) => {
                let one = BatchLayout {
                    batch: 1,
                    per_segment: 1,
                };
                let value = pollster::block_on(self.download_segments(
                    one,
                    size,
                    &vec![Arc::clone(buffer)],
                ))?;
                Ok(value.repeat(layout.batch))
            }
            None => Err(Error::Shape(format!("no node {node}"))),
        }
    }
}
