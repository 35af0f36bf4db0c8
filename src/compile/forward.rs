//! The forward pass of the structured Jacobian plan as one fused kernel:
//! every value in registers, and written to memory only where the plan's
//! algebra reads it (the output, the vectors that `W @ v` and `dot` read)
//! and the local partials of the nodes on a derivative path, which become
//! the diagonals the matrix products fold in. Replaces a kernel per node
//! with every intermediate round-tripping through memory.

use std::fmt::Write;

use super::passes::forward_pass;
use super::{
    NodeId, NotFused, Op, Program, binary_call, bind_variables, needed, open_samples, prelude,
    quad_of, row_type, state_floats, unroll_small_loops,
};
use crate::ops::{BinaryOp, RowPartial};
use crate::program::Kind;

/// What one output buffer of the kernel holds, per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The node's value.
    Value,
    /// The node's local partial with respect to its operand `slot`
    /// (element by element; a reduction's kept row: softmax for log-sum-exp,
    /// the products of the others for prod).
    Partial(usize),
}

/// One output buffer: B x size rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOutput {
    /// The node.
    pub node: NodeId,
    /// Value or partial.
    pub written: Written,
    /// Floats per sample.
    pub size: usize,
}

/// A compiled forward pass. Bindings, in order: the uniform `{count, scale,
/// per_invocation}`, one buffer per entry of `inputs`, the params packed in
/// `params` order (when there are any), then one buffer per entry of
/// `outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FusedForward {
    /// WGSL of the kernel.
    pub source: String,
    /// Inputs read per sample, as variable indices.
    pub inputs: Vec<usize>,
    /// Params with their offsets in the packed parameter buffer.
    pub params: Vec<(usize, usize)>,
    /// Floats of the parameter buffer.
    pub param_floats: usize,
    /// What the kernel writes.
    pub outputs: Vec<ForwardOutput>,
    /// An upper bound on the loop iterations one sample takes.
    pub trips: usize,
}

/// The loop-iteration bound of a forward pass writing `written` floats.
fn forward_trips(program: &Program, written: usize) -> usize {
    super::loop_trips(program, 0, written)
}

/// Compiles the forward pass that a Jacobian, JVP, VJP or gradient plan
/// with respect to `variables` reads, or says why not.
pub fn forward(program: &Program, variables: &[usize]) -> Result<FusedForward, NotFused> {
    build(program, variables, false)
}

/// The forward pass writing the output's values alone: no plan reads
/// anything else, so selections are compiled too.
pub fn values(program: &Program) -> Result<FusedForward, NotFused> {
    build(program, &[], true)
}

fn build(
    program: &Program,
    variables: &[usize],
    values_only: bool,
) -> Result<FusedForward, NotFused> {
    super::validate(program, variables)?;
    if !values_only
        && program
            .nodes
            .iter()
            .any(|op| matches!(op, Op::Slice(..) | Op::Concat(..)))
    {
        // The structured plan that reads this pass has no selections.
        return Err(NotFused(
            "selections run in the gradient, JVP, VJP and Jacobian kernels only".into(),
        ));
    }
    let needed = needed(program, variables);
    state_floats(program, &needed)?;
    let (layout, inputs, params, param_floats) = bind_variables(program);
    let per_sample = |id: NodeId| match program.nodes[id] {
        Op::Constant(_) => false,
        Op::Variable(v) => program.variables[v].kind == Kind::Input,
        _ => true,
    };
    let mut outputs = Vec::new();
    let value = |id: NodeId, outputs: &mut Vec<ForwardOutput>| {
        let written = ForwardOutput {
            node: id,
            written: Written::Value,
            size: program.shapes[id].size(),
        };
        // A variable's values are already in memory: the executor binds
        // those, so only computed nodes are written.
        let computed = !matches!(program.nodes[id], Op::Variable(_) | Op::Constant(_));
        if computed && per_sample(id) && !outputs.contains(&written) {
            outputs.push(written);
        }
    };
    value(program.output, &mut outputs);
    for (id, op) in program.nodes.iter().enumerate() {
        if values_only {
            break;
        }
        match *op {
            Op::MatVec(_, v) | Op::VecMat(_, v) => value(v, &mut outputs),
            // A bilinear reduction's local Jacobians are its operands.
            Op::Reduce(r, a, Some(b)) if r.partial() == RowPartial::Other => {
                value(a, &mut outputs);
                value(b, &mut outputs);
            }
            _ => {}
        }
        if !needed[id] {
            continue;
        }
        let size = program.shapes[id].size();
        // The partials the plan's local Jacobians read: an operand's slot
        // when the operand is on a derivative path, except where the local
        // Jacobian is the identity (a + b, a - b in a, equal sizes).
        let slots: Vec<(usize, usize)> = match *op {
            Op::Unary(_, a) => vec![(0, a)],
            Op::Reduce(r, a, _) if r.partial().kept() => vec![(0, a)],
            Op::Binary(f, a, b) => [(0, a), (1, b)]
                .into_iter()
                .filter(|&(slot, operand)| {
                    let unit =
                        matches!(f, BinaryOp::Add) || (matches!(f, BinaryOp::Sub) && slot == 0);
                    !(unit && program.shapes[operand].size() == size)
                })
                .collect(),
            _ => Vec::new(),
        };
        for (slot, operand) in slots {
            if !needed[operand] {
                continue;
            }
            let slot_size = match op {
                Op::Reduce(_, a, _) => program.shapes[*a].size(),
                _ => size,
            };
            outputs.push(ForwardOutput {
                node: id,
                written: Written::Partial(slot),
                size: slot_size,
            });
        }
    }

    let (mut src, mut binding) = prelude(&layout, &inputs, &params);
    for (k, out) in outputs.iter().enumerate() {
        binding += 1;
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read_write> out{k}: array<{}>;",
            row_type(out.size)
        );
    }
    open_samples(&mut src, &layout, (&inputs, &params), 0);
    forward_pass(&mut src, &layout, &needed);
    src.push_str("    if (live) {\n");
    for (k, out) in outputs.iter().enumerate() {
        let n = out.size;
        // Element `i` (a WGSL index expression) of what this output holds.
        let element = |i: &str| match (out.written, program.nodes[out.node]) {
            (Written::Value, _) => layout.at(out.node, i),
            (Written::Partial(_), Op::Reduce(..)) => format!("d{}[{i}]", out.node),
            (Written::Partial(_), Op::Unary(..)) => {
                if layout.is_scalar(out.node) {
                    format!("d{}", out.node)
                } else {
                    format!("d{}[{i}]", out.node)
                }
            }
            (Written::Partial(slot), Op::Binary(f, a, b)) => {
                let component = if slot == 0 { 'y' } else { 'z' };
                format!(
                    "{}.{component}",
                    binary_call(f, &layout.at(a, i), &layout.at(b, i))
                )
            }
            _ => "0.0".into(),
        };
        if super::quads(n) {
            // Rows of whole quads are written a vec4 at a time.
            let _ = writeln!(
                src,
                "        for (var j = 0u; j < {q}u; j = j + 1u) {{\n            out{k}[s * {q}u + j] = {};\n        }}",
                quad_of(|i| element(&format!("({i})"))),
                q = n / 4
            );
        } else {
            let _ = writeln!(
                src,
                "        for (var i = 0u; i < {n}u; i = i + 1u) {{\n            out{k}[s * {n}u + i] = {};\n        }}",
                element("i")
            );
        }
    }
    src.push_str("    }\n    }\n}\n");
    let trips = forward_trips(program, outputs.iter().map(|o| o.size).sum());
    if trips.saturating_mul(2) > super::MAX_TRIPS {
        return Err(NotFused(format!(
            "{trips} loop iterations a sample leave too few for a batch"
        )));
    }
    Ok(FusedForward {
        source: unroll_small_loops(&src),
        inputs,
        params,
        param_floats,
        outputs,
        trips,
    })
}
