//! The program compiler: turns a vector program and a request into a short
//! list of generated kernels. Today it compiles the request that the
//! op-by-op path serves worst, the gradient of a scalar output (batch mean
//! or per sample), into one fused kernel per batch chunk and one reduction:
//!
//! 1. `per_sample`: one invocation per sample runs the forward pass with
//!    every value in registers (vectors as private arrays), then the reverse
//!    pass with every cotangent in registers, and writes only what was asked:
//!    the output's value, per-sample gradients, and for gradients summed
//!    over the batch one partial sum per workgroup (a fixed tree in
//!    workgroup memory, so the result does not depend on scheduling);
//! 2. `shaders/reduce.wgsl`: the partials of a chunk summed column by column,
//!    again by a fixed tree.
//!
//! Matrices stay in the parameter buffer and are read where used, never
//! copied per sample. Element-wise operations call the op table's WGSL
//! functions (`{name}_vd`, `{name}_vdd` in `shaders/`), so an operation's
//! calculus is written once. Every loop's trip count is a constant of the
//! program, bounded by [`MAX_TRIPS`], so software drivers that cut long loops
//! short never see one.
//!
//! A program whose per-sample state does not fit registers
//! ([`PRIVATE_FLOATS`]) is not compiled here; the caller runs the structured
//! plan instead.

use std::fmt::Write;

use crate::ops::{BinaryOp, UnaryOp};
use crate::program::{Kind, NodeId, Op, Program, Shape};
use crate::shaders;

/// Invocations per workgroup of the fused kernel and of the reduction.
pub const WORKGROUP: usize = 256;
/// The most floats of private state (values, partials, cotangents) one
/// sample may keep: beyond this a register-resident kernel spills so much
/// that the structured plan is the better choice.
pub const PRIVATE_FLOATS: usize = 4096;
/// Gradient elements summed per round of the workgroup tree: 16 x 256
/// floats fill the 16 KiB of workgroup memory every adapter offers.
pub const ROUND: usize = 16;
/// The longest loop a generated kernel may contain (software drivers stop
/// loops after 65,535 iterations without an error).
pub const MAX_TRIPS: usize = 65_535;

/// Where a variable's gradient goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Each sample's gradient, written as B x size rows.
    PerSample,
    /// Summed over the batch (the caller scales it to a mean).
    Summed,
}

/// One gradient the kernel produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradientSlot {
    /// The variable's index in the program.
    pub variable: usize,
    /// Its number of elements.
    pub size: usize,
    /// Per sample or summed.
    pub destination: Destination,
    /// For a summed gradient, its first column in the partial rows.
    pub offset: usize,
}

/// A compiled gradient request: the fused kernel, and how to bind it.
///
/// Bindings, in order: 0 the uniform `{count, scale}`; then one buffer per
/// entry of `inputs` (B x size rows of that input); then the parameters,
/// concatenated in the order of `params` (only when `params` is not empty);
/// then the seed when `seeded`; then the output's values (B x output size)
/// when `values`; then one buffer per per-sample gradient in
/// the order of `gradients`; then the partial sums (one row of
/// `summed_width` per workgroup) when `summed_width > 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FusedGradient {
    /// WGSL of the fused kernel.
    pub source: String,
    /// Inputs read per sample, as variable indices.
    pub inputs: Vec<usize>,
    /// Params read, as variable indices, with their offsets in the
    /// concatenated parameter buffer.
    pub params: Vec<(usize, usize)>,
    /// Total floats of the parameter buffer.
    pub param_floats: usize,
    /// Every gradient asked for, in the order asked.
    pub gradients: Vec<GradientSlot>,
    /// Columns of a partial row: the summed gradients' sizes added up.
    pub summed_width: usize,
    /// Whether the output's values are written.
    pub values: bool,
    /// Whether the kernel reads a seed, B x size rows: the output's
    /// cotangent for a VJP, the input's tangent for a JVP.
    pub seeded: bool,
    /// Elements of the output per sample.
    pub output_size: usize,
}

impl FusedGradient {
    /// Storage bindings the kernel uses, to compare with the device's limit.
    pub fn storage_bindings(&self) -> usize {
        let per_sample = self
            .gradients
            .iter()
            .filter(|g| g.destination == Destination::PerSample)
            .count();
        self.inputs.len()
            + usize::from(!self.params.is_empty())
            + usize::from(self.seeded)
            + usize::from(self.values)
            + per_sample
            + usize::from(self.summed_width > 0)
    }
}

/// Why a request was not compiled into a fused kernel; the caller then
/// runs the structured plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFused(pub String);

/// An f32 constant as a WGSL literal that round-trips exactly.
pub(crate) fn literal(value: f64) -> String {
    let v = value as f32;
    if v.is_nan() {
        return "nan_like(0.0)".into();
    }
    if v.is_infinite() {
        return format!("inf_like(0.0, {})", v < 0.0);
    }
    let text = format!("{v:?}");
    if text.contains(['.', 'e', 'E']) {
        text
    } else {
        format!("{text}.0")
    }
}

/// The WGSL call giving vec2(value, derivative) of `op` at `x`.
fn unary_call(op: UnaryOp, x: &str) -> String {
    match op.parameter() {
        Some(p) => format!("{}_vd({x}, {})", op.name(), literal(f64::from(p))),
        None => format!("{}_vd({x})", op.name()),
    }
}

/// The WGSL call giving vec3(value, d/da, d/db) of `op` at (a, b).
fn binary_call(op: BinaryOp, a: &str, b: &str) -> String {
    format!("{}_vdd({a}, {b})", op.name())
}

/// How the kernel reads each node.
struct Layout<'a> {
    program: &'a Program,
    /// For each variable: its binding name (inputs) or offset (params).
    input_binding: Vec<Option<usize>>,
    param_offset: Vec<Option<usize>>,
}

impl Layout<'_> {
    fn size(&self, id: NodeId) -> usize {
        self.program.shapes[id].size()
    }

    fn is_scalar(&self, id: NodeId) -> bool {
        self.program.shapes[id] == Shape::Scalar
    }

    /// The WGSL expression for element `i` of node `id` (`i` is ignored
    /// for a scalar, which is how scalar expansion reads).
    fn at(&self, id: NodeId, i: &str) -> String {
        match self.program.nodes[id] {
            Op::Constant(c) => literal(c),
            Op::Variable(v) => {
                let scalar = self.is_scalar(id);
                if let Some(k) = self.input_binding[v] {
                    if scalar {
                        format!("in{k}[s]")
                    } else {
                        format!("in{k}[s * {}u + {i}]", self.size(id))
                    }
                } else {
                    let offset = self.param_offset[v].unwrap_or(0);
                    if scalar {
                        format!("prm[{offset}u]")
                    } else {
                        format!("prm[{offset}u + {i}]")
                    }
                }
            }
            _ if self.is_scalar(id) => format!("v{id}"),
            _ => format!("v{id}[{i}]"),
        }
    }
}

/// The cotangent variable of node `id`, element `i`.
fn cot(layout: &Layout<'_>, id: NodeId, i: &str) -> String {
    if layout.is_scalar(id) {
        format!("g{id}")
    } else {
        format!("g{id}[{i}]")
    }
}

/// A WGSL declaration of private state of `size` floats named `name`.
fn declare(src: &mut String, name: &str, scalar: bool, size: usize) {
    if scalar {
        let _ = writeln!(src, "    var {name}: f32 = 0.0;");
    } else {
        let _ = writeln!(src, "    var {name}: array<f32, {size}>;");
    }
}

/// Opens a loop over `0..n` with index `i` (nothing for a scalar).
fn open_loop(src: &mut String, n: usize, scalar: bool) {
    if !scalar {
        let _ = writeln!(src, "    for (var i = 0u; i < {n}u; i = i + 1u) {{");
    } else {
        src.push_str("    {\n        let i = 0u;\n");
    }
}

/// The longest loop over a vector's elements written out in full: with
/// constant indices every private array stays in registers.
const UNROLL: usize = 32;

/// Writes each loop `for (var i = 0u; i < Nu; i = i + 1u) { body }` of at
/// most [`UNROLL`] trips as N blocks `{ let i = Ku; body }`.
fn unroll_small_loops(src: &str) -> String {
    const HEAD: &str = "for (var i = 0u; i < ";
    const TAIL: &str = "u; i = i + 1u) {";
    let mut out = String::with_capacity(src.len() * 2);
    let mut rest = src;
    while let Some(start) = rest.find(HEAD) {
        let after = &rest[start + HEAD.len()..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        let trips: Option<usize> = digits.parse().ok();
        let open = start + HEAD.len() + digits.len() + TAIL.len();
        let well_formed = after[digits.len()..].starts_with(TAIL);
        let close = well_formed.then(|| matching_brace(&rest[open..])).flatten();
        match (trips, close) {
            (Some(n), Some(close)) if n <= UNROLL => {
                out.push_str(&rest[..start]);
                let body = unroll_small_loops(&rest[open..open + close]);
                for k in 0..n {
                    let _ = write!(out, "{{ let i = {k}u;{body}}}");
                }
                rest = &rest[open + close + 1..];
            }
            _ => {
                out.push_str(&rest[..start + HEAD.len()]);
                rest = &rest[start + HEAD.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The offset of the `}` that closes a block whose `{` was just before `text`.
fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (index, ch) in text.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// The nodes whose cotangents the reverse pass needs: those that depend on
/// a variable asked for.
pub fn needed(program: &Program, variables: &[usize]) -> Vec<bool> {
    let mut needed = vec![false; program.nodes.len()];
    for (id, op) in program.nodes.iter().enumerate() {
        needed[id] = match *op {
            Op::Variable(v) => variables.contains(&v),
            Op::Constant(_) => false,
            _ => op.operands().any(|o| needed[o]),
        };
    }
    needed
}

/// Compiles the gradient of `program`'s scalar output with respect to
/// `wrt` (variable index and destination each) into one fused kernel, or
/// says why not. With `values` the kernel also writes the output's value
/// for each sample. The program must have passed [`Program::check`].
pub fn gradient(
    program: &Program,
    wrt: &[(usize, Destination)],
    values: bool,
) -> Result<FusedGradient, NotFused> {
    if program.shapes[program.output] != Shape::Scalar {
        return Err(NotFused("the output is not a scalar".into()));
    }
    compile(program, wrt, values, Mode::Reverse { seeded: false })
}

/// Compiles a VJP, u^T J per sample, with respect to input `wrt`: the seed
/// binding holds u (B x output size), the one per-sample output u^T J.
pub fn vjp(program: &Program, wrt: usize, values: bool) -> Result<FusedGradient, NotFused> {
    compile(
        program,
        &[(wrt, Destination::PerSample)],
        values,
        Mode::Reverse { seeded: true },
    )
}

/// Compiles a JVP, J v per sample, with respect to input `wrt`: the seed
/// binding holds v (B x size of `wrt`), the one per-sample output J v
/// (B x output size), by forward tangents carried in registers.
pub fn jvp(program: &Program, wrt: usize, values: bool) -> Result<FusedGradient, NotFused> {
    compile(
        program,
        &[(wrt, Destination::PerSample)],
        values,
        Mode::Forward,
    )
}

/// Which way derivatives travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Cotangents from the output back, seeded with 1 (a gradient) or with
    /// a cotangent per sample (a VJP).
    Reverse { seeded: bool },
    /// Tangents from one input forward, seeded per sample (a JVP).
    Forward,
}

fn compile(
    program: &Program,
    wrt: &[(usize, Destination)],
    values: bool,
    mode: Mode,
) -> Result<FusedGradient, NotFused> {
    let seeded = mode != (Mode::Reverse { seeded: false });
    let output_size = program.shapes[program.output].size();
    let variables: Vec<usize> = wrt.iter().map(|&(v, _)| v).collect();
    let needed = needed(program, &variables);
    if variables
        .iter()
        .any(|&v| program.variable_node(v).is_none())
    {
        return Err(NotFused(
            "a variable asked for does not reach the output".into(),
        ));
    }

    // Private state: a value per computed node, a partial per unary node
    // and log-sum-exp on the reverse path, a cotangent per needed node.
    let mut private = 0usize;
    for (id, op) in program.nodes.iter().enumerate() {
        let size = program.shapes[id].size();
        if size > MAX_TRIPS {
            return Err(NotFused(format!("node {id} has {size} elements")));
        }
        let computed = !matches!(op, Op::Variable(_) | Op::Constant(_));
        private += size * usize::from(computed);
        private += size * usize::from(needed[id]);
        private += size * usize::from(needed[id] && matches!(op, Op::Unary(..) | Op::LogSumExp(_)));
    }
    if private > PRIVATE_FLOATS {
        return Err(NotFused(format!(
            "{private} floats of state per sample exceed {PRIVATE_FLOATS}"
        )));
    }

    // Bindings.
    let mut input_binding = vec![None; program.variables.len()];
    let mut param_offset = vec![None; program.variables.len()];
    let mut inputs = Vec::new();
    let mut params = Vec::new();
    let mut param_floats = 0usize;
    for (id, op) in program.nodes.iter().enumerate() {
        if let Op::Variable(v) = *op {
            match program.variables[v].kind {
                Kind::Input => {
                    input_binding[v] = Some(inputs.len());
                    inputs.push(v);
                }
                Kind::Param => {
                    param_offset[v] = Some(param_floats);
                    params.push((v, param_floats));
                    param_floats += program.shapes[id].size();
                }
            }
        }
    }
    let mut gradients = Vec::new();
    let mut summed_width = 0usize;
    for &(variable, destination) in wrt {
        let size = match mode {
            Mode::Forward => output_size,
            Mode::Reverse { .. } => program.variables[variable].shape.size(),
        };
        let offset = if destination == Destination::Summed {
            summed_width += size;
            summed_width - size
        } else {
            0
        };
        gradients.push(GradientSlot {
            variable,
            size,
            destination,
            offset,
        });
    }
    if private + summed_width > PRIVATE_FLOATS {
        return Err(NotFused(format!(
            "{} floats of state per sample exceed {PRIVATE_FLOATS}",
            private + summed_width
        )));
    }
    let layout = Layout {
        program,
        input_binding,
        param_offset,
    };

    let mut src = shaders::library();
    src.push_str(
        "\nstruct FusedParams {\n    count: u32,\n    scale: f32,\n    per_invocation: u32,\n    pad0: u32,\n}\n\n\
         // A zero partial means the operand was not selected (relu below 0,\n\
         // the losing side of max), and a zero cotangent or tangent means a\n\
         // path that was not selected further on: either passes nothing on,\n\
         // even where the other factor is infinite and 0 * inf would be NaN.\n\
         fn chain_selected(partial: f32, g: f32) -> f32 {\n    \
         return select(partial * g, 0.0, partial == 0.0 || g == 0.0);\n}\n\n",
    );
    let mut binding = 0usize;
    let _ = writeln!(
        src,
        "@group(0) @binding({binding}) var<uniform> params: FusedParams;"
    );
    for (k, _) in inputs.iter().enumerate() {
        binding += 1;
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read> in{k}: array<f32>;"
        );
    }
    if !params.is_empty() {
        binding += 1;
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read> prm: array<f32>;"
        );
    }
    if seeded {
        binding += 1;
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read> seed: array<f32>;"
        );
    }
    if values {
        binding += 1;
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read_write> out_value: array<f32>;"
        );
    }
    for (k, slot) in gradients.iter().enumerate() {
        if slot.destination == Destination::PerSample {
            binding += 1;
            let _ = writeln!(
                src,
                "@group(0) @binding({binding}) var<storage, read_write> out_g{k}: array<f32>;"
            );
        }
    }
    if summed_width > 0 {
        binding += 1;
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read_write> partials: array<f32>;\n\
             var<workgroup> red: array<f32, {}>;",
            ROUND * WORKGROUP
        );
    }
    let _ = write!(
        src,
        "\n@compute @workgroup_size({WORKGROUP})\n\
         fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,\n        \
         @builtin(num_workgroups) groups: vec3<u32>) {{\n    \
         let lid = lid3.x;\n    let wg = wid.y * groups.x + wid.x;\n    \
         let threads = groups.x * groups.y * {WORKGROUP}u;\n"
    );
    if summed_width > 0 {
        let _ = writeln!(src, "    var acc: array<f32, {summed_width}>;");
    }
    // Each invocation takes samples a grid apart, so that neighbours read
    // neighbouring rows and the summed gradients gather in registers before
    // any workgroup memory is touched.
    let _ = writeln!(
        src,
        "    for (var k = 0u; k < params.per_invocation; k = k + 1u) {{\n    \
         let sample = k * threads + wg * {WORKGROUP}u + lid;\n    \
         let live = sample < params.count;\n    let s = min(sample, params.count - 1u);"
    );

    match mode {
        Mode::Reverse { seeded } => {
            forward_pass(&mut src, &layout, &needed);
            reverse_pass(&mut src, &layout, &needed, seeded);
        }
        Mode::Forward => {
            forward_pass(&mut src, &layout, &needed);
            tangent_pass(&mut src, &layout, &needed, variables[0]);
        }
    }

    // Outputs.
    src.push_str("    if (live) {\n");
    if values {
        let _ = writeln!(
            src,
            "        out_value[s] = {};",
            layout.at(program.output, "0u")
        );
    }
    for (k, slot) in gradients.iter().enumerate() {
        let node = match mode {
            Mode::Forward => program.output,
            Mode::Reverse { .. } => program.variable_node(slot.variable).unwrap_or(0),
        };
        let scalar = layout.is_scalar(node);
        match (slot.destination, scalar) {
            (Destination::PerSample, true) => {
                let _ = writeln!(src, "        out_g{k}[s] = g{node} * params.scale;");
            }
            (Destination::PerSample, false) => {
                let _ = writeln!(
                    src,
                    "        for (var i = 0u; i < {n}u; i = i + 1u) {{\n            \
                     out_g{k}[s * {n}u + i] = g{node}[i] * params.scale;\n        }}",
                    n = slot.size
                );
            }
            (Destination::Summed, true) => {
                let _ = writeln!(
                    src,
                    "        acc[{o}u] = acc[{o}u] + g{node};",
                    o = slot.offset
                );
            }
            (Destination::Summed, false) => {
                let _ = writeln!(
                    src,
                    "        for (var i = 0u; i < {n}u; i = i + 1u) {{\n            \
                     acc[{o}u + i] = acc[{o}u + i] + g{node}[i];\n        }}",
                    n = slot.size,
                    o = slot.offset
                );
            }
        }
    }
    src.push_str("    }\n    }\n");
    if summed_width > 0 {
        workgroup_sums(&mut src, summed_width);
    }
    src.push_str("}\n");
    let src = unroll_small_loops(&src);

    Ok(FusedGradient {
        source: src,
        inputs,
        params,
        param_floats,
        gradients,
        summed_width,
        values,
        seeded,
        output_size,
    })
}

/// Values of every computed node, and the partials the reverse pass reads.
fn forward_pass(src: &mut String, layout: &Layout<'_>, needed: &[bool]) {
    let program = layout.program;
    for (id, &op) in program.nodes.iter().enumerate() {
        let scalar = layout.is_scalar(id);
        let n = layout.size(id);
        let keep_partial = needed[id];
        match op {
            Op::Variable(_) | Op::Constant(_) => continue,
            Op::Unary(f, a) => {
                declare(src, &format!("v{id}"), scalar, n);
                if keep_partial {
                    declare(src, &format!("d{id}"), scalar, n);
                }
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        let e = {};",
                    unary_call(f, &layout.at(a, "i"))
                );
                let _ = writeln!(src, "        {} = e.x;", layout.at(id, "i"));
                if keep_partial {
                    let target = if scalar {
                        format!("d{id}")
                    } else {
                        format!("d{id}[i]")
                    };
                    let _ = writeln!(src, "        {target} = e.y;");
                }
                src.push_str("    }\n");
            }
            Op::Binary(f, a, b) => {
                declare(src, &format!("v{id}"), scalar, n);
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {} = {}.x;",
                    layout.at(id, "i"),
                    binary_call(f, &layout.at(a, "i"), &layout.at(b, "i"))
                );
                src.push_str("    }\n");
            }
            Op::MatVec(w, x) => {
                let cols = layout.size(x);
                declare(src, &format!("v{id}"), scalar, n);
                let _ = writeln!(
                    src,
                    "    for (var r = 0u; r < {n}u; r = r + 1u) {{\n        var acc = 0.0;\n        \
                     for (var c = 0u; c < {cols}u; c = c + 1u) {{\n            \
                     acc = acc + {} * {};\n        }}\n        {} = acc;\n    }}",
                    layout.at(w, &format!("r * {cols}u + c")),
                    layout.at(x, "c"),
                    layout.at(id, "r")
                );
            }
            Op::Sum(a) | Op::Mean(a) => {
                let len = layout.size(a);
                let _ = writeln!(
                    src,
                    "    var v{id} = 0.0;\n    for (var i = 0u; i < {len}u; i = i + 1u) {{\n        \
                     v{id} = v{id} + {};\n    }}",
                    layout.at(a, "i")
                );
                if matches!(op, Op::Mean(_)) {
                    let _ = writeln!(src, "    v{id} = v{id} / {};", literal(len as f64));
                }
            }
            Op::Dot(a, b) => {
                let len = layout.size(a);
                let _ = writeln!(
                    src,
                    "    var v{id} = 0.0;\n    for (var i = 0u; i < {len}u; i = i + 1u) {{\n        \
                     v{id} = v{id} + {} * {};\n    }}",
                    layout.at(a, "i"),
                    layout.at(b, "i")
                );
            }
            Op::LogSumExp(a) => {
                // The maximum first, so that no exponential overflows. The
                // limits at an infinite maximum are those of the f64
                // reference (`log_sum_exp`, `softmax` in src/program/eval.rs):
                // lse is that infinity; softmax is one-hot where one element
                // holds it and NaN where several do; NaN anywhere gives NaN.
                let len = layout.size(a);
                let z = layout.at(a, "i");
                row_stats(src, id, len, &z);
                let _ = writeln!(
                    src,
                    "    var t{id} = 0.0;\n    \
                     for (var i = 0u; i < {len}u; i = i + 1u) {{\n        \
                     t{id} = t{id} + exp_acc({z} - m{id});\n    }}\n    \
                     var v{id} = m{id} + ln_acc(t{id});\n    \
                     if (is_inf_f32(m{id})) {{\n        v{id} = m{id};\n    }}\n    \
                     if (nan{id}) {{\n        v{id} = nan_like(0.0);\n    }}"
                );
                if keep_partial {
                    let _ = writeln!(
                        src,
                        "    var d{id}: array<f32, {len}>;\n    \
                         for (var i = 0u; i < {len}u; i = i + 1u) {{\n        let z = {z};\n        \
                         d{id}[i] = exp_acc(z - m{id}) / t{id};\n        \
                         if (is_inf_f32(m{id})) {{\n            d{id}[i] = select(0.0, 1.0, z == m{id});\n        }}\n        \
                         if (undefined{id}) {{\n            d{id}[i] = nan_like(0.0);\n        }}\n    }}"
                    );
                }
            }
            Op::ShiftMax(a) => {
                // z - max(z), the maximum held constant (its Jacobian is the
                // identity); the limits of `shift_max` in src/program/eval.rs.
                let len = layout.size(a);
                let z = layout.at(a, "i");
                row_stats(src, id, len, &z);
                let _ = writeln!(
                    src,
                    "    var v{id}: array<f32, {len}>;\n    \
                     for (var i = 0u; i < {len}u; i = i + 1u) {{\n        let z = {z};\n        \
                     v{id}[i] = z - m{id};\n        \
                     if (is_inf_f32(m{id})) {{\n            v{id}[i] = select(inf_like(z, true), 0.0, z == m{id});\n        }}\n        \
                     if (undefined{id}) {{\n            v{id}[i] = nan_like(0.0);\n        }}\n    }}"
                );
            }
        }
    }
}

/// The maximum of a row `z` (an expression of `i`) of `len` elements, how
/// many elements hold it, and whether any is NaN (tested by bits), as
/// `m{id}`, `ties{id}`, `nan{id}`; `undefined{id}` where an infinite maximum
/// is held by several elements or a NaN is present.
fn row_stats(src: &mut String, id: NodeId, len: usize, z: &str) {
    let _ = writeln!(
        src,
        "    var m{id} = inf_like(0.0, true);\n    var ties{id} = 0u;\n    var nan{id} = false;\n    \
         for (var i = 0u; i < {len}u; i = i + 1u) {{\n        let z = {z};\n        \
         if (is_nan_f32(z)) {{\n            nan{id} = true;\n        \
         }} else if (z > m{id}) {{\n            m{id} = z;\n            ties{id} = 1u;\n        \
         }} else if (z == m{id}) {{\n            ties{id} = ties{id} + 1u;\n        }}\n    }}\n    \
         let undefined{id} = nan{id} || (is_inf_f32(m{id}) && ties{id} > 1u);"
    );
}

/// Cotangents, from the output back to the variables asked for.
fn reverse_pass(src: &mut String, layout: &Layout<'_>, needed: &[bool], seeded: bool) {
    let program = layout.program;
    for (id, _) in program.nodes.iter().enumerate() {
        if needed[id] {
            declare(
                src,
                &format!("g{id}"),
                layout.is_scalar(id),
                layout.size(id),
            );
        }
    }
    let out = program.output;
    if seeded {
        let m = layout.size(out);
        let _ = writeln!(
            src,
            "    for (var i = 0u; i < {m}u; i = i + 1u) {{\n        {} = seed[s * {m}u + i];\n    }}",
            cot(layout, out, "i")
        );
    } else {
        let _ = writeln!(src, "    g{out} = 1.0;");
    }
    for id in (0..program.nodes.len()).rev() {
        if !needed[id] {
            continue;
        }
        let n = layout.size(id);
        let scalar = layout.is_scalar(id);
        match program.nodes[id] {
            Op::Variable(_) | Op::Constant(_) => {}
            Op::Unary(_, a) => {
                open_loop(src, n, scalar);
                let partial = if scalar {
                    format!("d{id}")
                } else {
                    format!("d{id}[i]")
                };
                let _ = writeln!(
                    src,
                    "        {t} = {t} + chain_selected({partial}, {g});\n    }}",
                    t = cot(layout, a, "i"),
                    g = cot(layout, id, "i")
                );
            }
            Op::Binary(f, a, b) => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        let e = {};",
                    binary_call(f, &layout.at(a, "i"), &layout.at(b, "i"))
                );
                for (operand, component) in [(a, 'y'), (b, 'z')] {
                    if needed[operand] {
                        let _ = writeln!(
                            src,
                            "        {t} = {t} + chain_selected(e.{component}, {g});",
                            t = cot(layout, operand, "i"),
                            g = cot(layout, id, "i")
                        );
                    }
                }
                src.push_str("    }\n");
            }
            Op::MatVec(w, x) => {
                let cols = layout.size(x);
                if needed[x] {
                    let _ = writeln!(
                        src,
                        "    for (var c = 0u; c < {cols}u; c = c + 1u) {{\n        var acc = 0.0;\n        \
                         for (var r = 0u; r < {n}u; r = r + 1u) {{\n            \
                         acc = acc + {} * g{id}[r];\n        }}\n        {t} = {t} + acc;\n    }}",
                        layout.at(w, &format!("r * {cols}u + c")),
                        t = cot(layout, x, "c")
                    );
                }
                if needed[w] {
                    let _ = writeln!(
                        src,
                        "    for (var r = 0u; r < {n}u; r = r + 1u) {{\n        \
                         for (var c = 0u; c < {cols}u; c = c + 1u) {{\n            \
                         g{w}[r * {cols}u + c] = g{w}[r * {cols}u + c] + g{id}[r] * {};\n        }}\n    }}",
                        layout.at(x, "c")
                    );
                }
            }
            Op::Sum(a) | Op::Mean(a) => {
                let len = layout.size(a);
                let share = if matches!(program.nodes[id], Op::Mean(_)) {
                    format!("g{id} / {}", literal(len as f64))
                } else {
                    format!("g{id}")
                };
                open_loop(src, len, layout.is_scalar(a));
                let _ = writeln!(
                    src,
                    "        {t} = {t} + {share};\n    }}",
                    t = cot(layout, a, "i")
                );
            }
            Op::Dot(a, b) => {
                let len = layout.size(a);
                open_loop(src, len, layout.is_scalar(a));
                for (operand, other) in [(a, b), (b, a)] {
                    if needed[operand] {
                        let _ = writeln!(
                            src,
                            "        {t} = {t} + g{id} * {};",
                            layout.at(other, "i"),
                            t = cot(layout, operand, "i")
                        );
                    }
                }
                src.push_str("    }\n");
            }
            Op::LogSumExp(a) => {
                let len = layout.size(a);
                open_loop(src, len, layout.is_scalar(a));
                let _ = writeln!(
                    src,
                    "        {t} = {t} + chain_selected(d{id}[i], g{id});\n    }}",
                    t = cot(layout, a, "i")
                );
            }
            Op::ShiftMax(a) => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {t} = {t} + {g};\n    }}",
                    t = cot(layout, a, "i"),
                    g = cot(layout, id, "i")
                );
            }
        }
    }
}

/// Tangents of every node that depends on input `wrt`, seeded with the
/// seed's row, forward through the local partials (the same `_vd` and
/// `_vdd` functions as the values). Stored as `g{id}`, like cotangents, so
/// the output is written the same way.
fn tangent_pass(src: &mut String, layout: &Layout<'_>, needed: &[bool], wrt: usize) {
    let program = layout.program;
    for (id, &op) in program.nodes.iter().enumerate() {
        if !needed[id] {
            continue;
        }
        let n = layout.size(id);
        let scalar = layout.is_scalar(id);
        declare(src, &format!("g{id}"), scalar, n);
        // A term of the tangent from operand `o`, if it depends on the input.
        let term = |o: NodeId, partial: &str, i: &str| -> Option<String> {
            needed[o].then(|| format!("chain_selected({partial}, {})", cot(layout, o, i)))
        };
        let sum = |terms: Vec<Option<String>>| -> String {
            let terms: Vec<String> = terms.into_iter().flatten().collect();
            if terms.is_empty() {
                "0.0".into()
            } else {
                terms.join(" + ")
            }
        };
        match op {
            Op::Variable(v) if v == wrt => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {} = seed[s * {n}u + i];\n    }}",
                    cot(layout, id, "i")
                );
            }
            Op::Variable(_) | Op::Constant(_) => {}
            Op::Unary(_, a) => {
                open_loop(src, n, scalar);
                let partial = if scalar {
                    format!("d{id}")
                } else {
                    format!("d{id}[i]")
                };
                let _ = writeln!(
                    src,
                    "        {} = {};\n    }}",
                    cot(layout, id, "i"),
                    sum(vec![term(a, &partial, "i")])
                );
            }
            Op::Binary(f, a, b) => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        let e = {};\n        {} = {};\n    }}",
                    binary_call(f, &layout.at(a, "i"), &layout.at(b, "i")),
                    cot(layout, id, "i"),
                    sum(vec![term(a, "e.y", "i"), term(b, "e.z", "i")])
                );
            }
            Op::MatVec(w, x) => {
                // The matrix is a param, so only x carries a tangent.
                let cols = layout.size(x);
                let _ = writeln!(
                    src,
                    "    for (var r = 0u; r < {n}u; r = r + 1u) {{\n        var acc = 0.0;\n        \
                     for (var c = 0u; c < {cols}u; c = c + 1u) {{\n            \
                     acc = acc + {} * {};\n        }}\n        {} = acc;\n    }}",
                    layout.at(w, &format!("r * {cols}u + c")),
                    cot(layout, x, "c"),
                    cot(layout, id, "r")
                );
            }
            Op::ShiftMax(a) => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {} = {};\n    }}",
                    cot(layout, id, "i"),
                    sum(vec![term(a, "1.0", "i")])
                );
            }
            Op::Sum(a) | Op::Mean(a) | Op::Dot(a, _) | Op::LogSumExp(a) => {
                let len = layout.size(a);
                let contribution = match op {
                    Op::Dot(a, b) => sum(vec![
                        term(a, &layout.at(b, "i"), "i"),
                        term(b, &layout.at(a, "i"), "i"),
                    ]),
                    Op::LogSumExp(_) => sum(vec![term(a, &format!("d{id}[i]"), "i")]),
                    _ => sum(vec![term(a, "1.0", "i")]),
                };
                let _ = writeln!(
                    src,
                    "    for (var i = 0u; i < {len}u; i = i + 1u) {{\n        g{id} = g{id} + {contribution};\n    }}"
                );
                if matches!(op, Op::Mean(_)) {
                    let _ = writeln!(src, "    g{id} = g{id} / {};", literal(len as f64));
                }
            }
        }
    }
}

/// Each workgroup's sums of the accumulated gradients, ROUND columns at a
/// time, by a fixed two-level tree in workgroup memory: 16 invocations per
/// column add 16 entries each, then one invocation adds their 16 results.
/// Three barriers a round, whatever the workgroup size.
fn workgroup_sums(src: &mut String, width: usize) {
    let rounds = width.div_ceil(ROUND);
    let lanes = WORKGROUP / ROUND;
    let _ = writeln!(
        src,
        "    for (var r = 0u; r < {rounds}u; r = r + 1u) {{\n        \
         let base = r * {ROUND}u;\n        let columns = min({ROUND}u, {width}u - base);\n        \
         for (var c = 0u; c < columns; c = c + 1u) {{\n            \
         red[c * {WORKGROUP}u + lid] = acc[base + c];\n        }}\n        \
         workgroupBarrier();\n        \
         let column = lid / {lanes}u;\n        let part = lid % {lanes}u;\n        \
         if (column < columns) {{\n            var t = 0.0;\n            \
         for (var q = 0u; q < {lanes}u; q = q + 1u) {{\n                \
         t = t + red[column * {WORKGROUP}u + part * {lanes}u + q];\n            }}\n            \
         red[column * {WORKGROUP}u + part * {lanes}u] = t;\n        }}\n        \
         workgroupBarrier();\n        \
         if (lid < columns) {{\n            var t = 0.0;\n            \
         for (var q = 0u; q < {lanes}u; q = q + 1u) {{\n                \
         t = t + red[lid * {WORKGROUP}u + q * {lanes}u];\n            }}\n            \
         partials[wg * {width}u + base + lid] = t;\n        }}\n        \
         workgroupBarrier();\n    }}"
    );
}

#[cfg(test)]
mod tests;
