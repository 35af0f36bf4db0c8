//! Element-wise requests: the values and derivatives of a function of
//! scalar inputs at every element. Each region of the schedule's plan (the
//! whole graph when fused, one operation when not) becomes a kernel that
//! computes each node's value and its tangents (forward mode, one tangent
//! per input the node depends on) in registers, reading inputs, constants
//! and earlier regions' results, and writing the region's outputs. Node
//! values and local partials come from the same op-table calls as every
//! other compiled kernel (`unary_call`, `binary_call`); the f64 mirror
//! is `Graph::evaluate`. Each partial meets a tangent through `chain_mul`,
//! so a zero partial (the losing side of a selection) adds nothing even
//! against an infinite tangent.
//!
//! Forward mode rather than the reverse sweep of a gradient kernel: a
//! region's outputs are read by later regions as values and tangents, and
//! with one input (the common case, W1 and W4) both modes cost the same.

use std::fmt::Write;

use super::{binary_call, literal, unary_call};
use crate::graph::{Graph, NodeId};
use crate::ops::UnaryOp;
use crate::program::Op;
use crate::schedule::{Region, is_operation};
use crate::shaders;

/// Where each binding of a generated kernel gets its buffer, in binding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The uniform {n, row_stride}.
    Params,
    /// All inputs, one block of n per input.
    Inputs,
    /// Values of a node computed by an earlier region.
    Values(NodeId),
    /// Tangents (n x k, row-major) of a node computed by an earlier region.
    Tangents(NodeId),
    /// Values written by this region.
    OutValues(NodeId),
    /// Tangents written by this region (every column; zeros where the node
    /// does not depend on that input).
    OutTangents(NodeId),
}

/// A generated kernel and the buffers it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionKernel {
    /// WGSL of the kernel.
    pub source: String,
    /// What each binding holds, in binding order.
    pub bindings: Vec<Binding>,
    /// Rows each invocation takes: 4 (read and written as `vec4`, over
    /// buffers of whole quads) for a graph of at most one input, whose
    /// rows are contiguous in every buffer, unless the region has sin, cos
    /// or tan; 1 otherwise.
    pub rows_per_invocation: usize,
}

/// Generates the kernel for `region` of `graph`.
pub fn region(graph: &Graph, region: &Region) -> RegionKernel {
    let k = graph.inputs().len();
    let nodes = graph.nodes();
    let computed = |id: NodeId| region.nodes.contains(&id);
    // Operands the region needs but does not compute.
    let mut needed: Vec<NodeId> = Vec::new();
    let need = |id: NodeId, needed: &mut Vec<NodeId>| {
        if !computed(id) && !needed.contains(&id) {
            needed.push(id);
        }
    };
    for &id in &region.nodes {
        for a in nodes[id].operands() {
            need(a, &mut needed);
        }
    }
    for &id in &region.outputs {
        need(id, &mut needed);
    }
    needed.sort_unstable();

    let mut bindings = vec![Binding::Params];
    if needed
        .iter()
        .any(|&id| matches!(nodes[id], Op::Variable(_)))
    {
        bindings.push(Binding::Inputs);
    }
    for &id in &needed {
        if is_operation(&nodes[id]) {
            bindings.push(Binding::Values(id));
            if !graph.deps(id).is_empty() {
                bindings.push(Binding::Tangents(id));
            }
        }
    }
    for &id in &region.outputs {
        bindings.push(Binding::OutValues(id));
        if k > 0 {
            bindings.push(Binding::OutTangents(id));
        }
    }

    // With at most one input, each invocation takes a quad of rows: one
    // vec4 access per buffer instead of four (software drivers pay per
    // access), the body run once per row of the quad in a loop of four.
    // Measured on lavapipe, that ran W4's x * x^2 about twice as fast, but
    // regions with sin, cos or tan (whose argument reduction dominates)
    // 5 to 10% slower, so those keep a row an invocation. (Measured again
    // once the reduction stopped indexing an array: within the noise.)
    let trig = region.nodes.iter().any(|&id| {
        matches!(
            nodes[id],
            Op::Unary(UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tan, _)
        )
    });
    let quads = k <= 1 && !trig;
    let element = if quads { "vec4<f32>" } else { "f32" };
    let mut src = shaders::library();
    src.push_str(
        "\nstruct Params {\n    n: u32,\n    row_stride: u32,\n    pad0: u32,\n    pad1: u32,\n}\n\n",
    );
    for (index, binding) in bindings.iter().enumerate() {
        let declaration = match *binding {
            Binding::Params => "var<uniform> params: Params".to_string(),
            Binding::Inputs => format!("var<storage, read> inputs: array<{element}>"),
            Binding::Values(id) => format!("var<storage, read> in_v{id}: array<{element}>"),
            Binding::Tangents(id) => format!("var<storage, read> in_t{id}: array<{element}>"),
            Binding::OutValues(id) => {
                format!("var<storage, read_write> out_v{id}: array<{element}>")
            }
            Binding::OutTangents(id) => {
                format!("var<storage, read_write> out_t{id}: array<{element}>")
            }
        };
        let _ = writeln!(src, "@group(0) @binding({index}) {declaration};");
    }
    // `params.n` counts invocations: rows, or quads of rows.
    src.push_str(
        "\n@compute @workgroup_size(256)\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {\n    \
         let i = gid.y * params.row_stride + gid.x;\n    if (i >= params.n) {\n        return;\n    }\n",
    );
    if quads {
        for &id in &region.outputs {
            let _ = writeln!(src, "    var ov{id}: vec4<f32>;");
            if k > 0 {
                let _ = writeln!(src, "    var ot{id}: vec4<f32>;");
            }
        }
        for &id in &needed {
            match nodes[id] {
                Op::Variable(_) => {
                    let _ = writeln!(src, "    let q{id} = inputs[i];");
                }
                Op::Constant(_) => {}
                _ => {
                    let _ = writeln!(src, "    let q{id} = in_v{id}[i];");
                    if !graph.deps(id).is_empty() {
                        let _ = writeln!(src, "    let qt{id} = in_t{id}[i];");
                    }
                }
            }
        }
        src.push_str("    for (var c = 0u; c < 4u; c = c + 1u) {\n");
    }
    for &id in &needed {
        let deps = graph.deps(id);
        match nodes[id] {
            Op::Variable(j) => {
                let value = if quads {
                    format!("q{id}[c]")
                } else {
                    format!("inputs[{j}u * params.n + i]")
                };
                let _ = writeln!(src, "    let v{id} = {value};");
                let _ = writeln!(src, "    let t{id}_{j} = 1.0;");
            }
            Op::Constant(c) => {
                let _ = writeln!(src, "    let v{id} = {};", literal(c));
            }
            _ => {
                let value = if quads {
                    format!("q{id}[c]")
                } else {
                    format!("in_v{id}[i]")
                };
                let _ = writeln!(src, "    let v{id} = {value};");
                for &j in deps {
                    let tangent = if quads {
                        format!("qt{id}[c]")
                    } else {
                        format!("in_t{id}[i * {k}u + {j}u]")
                    };
                    let _ = writeln!(src, "    let t{id}_{j} = {tangent};");
                }
            }
        }
    }
    for &id in &region.nodes {
        let deps = graph.deps(id);
        let (call, operands): (String, Vec<(char, NodeId)>) = match nodes[id] {
            Op::Unary(op, a) => (unary_call(op, &format!("v{a}")), vec![('y', a)]),
            Op::Binary(op, a, b) => (
                binary_call(op, &format!("v{a}"), &format!("v{b}")),
                vec![('y', a), ('z', b)],
            ),
            // Variables and constants; a graph has no other node.
            _ => continue,
        };
        let _ = writeln!(src, "    let d{id} = {call};");
        let _ = writeln!(src, "    let v{id} = d{id}.x;");
        for &j in deps {
            let terms: Vec<String> = operands
                .iter()
                .filter(|(_, operand)| graph.deps(*operand).contains(&j))
                .map(|(c, operand)| format!("chain_mul(d{id}.{c}, t{operand}_{j})"))
                .collect();
            let _ = writeln!(src, "    let t{id}_{j} = {};", terms.join(" + "));
        }
    }
    for &id in &region.outputs {
        let deps = graph.deps(id);
        let tangent = |j: usize| {
            if deps.contains(&j) {
                format!("t{id}_{j}")
            } else {
                "0.0".to_string()
            }
        };
        if quads {
            let _ = writeln!(src, "    ov{id}[c] = v{id};");
            if k > 0 {
                let _ = writeln!(src, "    ot{id}[c] = {};", tangent(0));
            }
        } else {
            let _ = writeln!(src, "    out_v{id}[i] = v{id};");
            for j in 0..k {
                let _ = writeln!(src, "    out_t{id}[i * {k}u + {j}u] = {};", tangent(j));
            }
        }
    }
    if quads {
        src.push_str("    }\n");
        for &id in &region.outputs {
            let _ = writeln!(src, "    out_v{id}[i] = ov{id};");
            if k > 0 {
                let _ = writeln!(src, "    out_t{id}[i] = ot{id};");
            }
        }
    }
    src.push_str("}\n");
    RegionKernel {
        source: src,
        bindings,
        rows_per_invocation: if quads { 4 } else { 1 },
    }
}
