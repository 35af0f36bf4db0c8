//! The program compiler: turns a program and a request into a short list
//! of generated kernels. Every kernel generated from a program's nodes is
//! written here (the one exception: the tiled product's epilogue, in the
//! GPU backend's `products.rs`, which puts one op-table call in place of
//! a static kernel's store), in three forms:
//!
//! - a gradient (batch mean or per sample, several nodes' gradients as
//!   sweeps of one kernel), JVP, VJP or small dense Jacobian: one fused
//!   kernel per batch chunk and one reduction, below;
//! - the forward pass that the structured plan's products read
//!   ([`forward`], [`values`]);
//! - the values and derivatives of an element-wise function of scalars,
//!   region by region of the schedule's plan ([`elementwise`]).
//!
//! The fused kernel:
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
//!
//! A [`FusedGradient`] is the plan for either backend: the GPU runs its
//! `source`; the CPU path runs the same sweeps, in the same [`Mode`], to
//! the same slots, sample by sample in f64 (`backend/compiled.rs`). So
//! whether a request is fused or runs the structured plan is decided here,
//! once, for both.

use std::fmt::Write;

use crate::ops::{BinaryOp, RowPartial, UnaryOp};
use crate::program::{Kind, NodeId, Op, Program, Shape};
use crate::shaders;

/// Invocations per workgroup of the fused kernel and of the reduction.
pub const WORKGROUP: usize = 256;
/// The most floats of private state (values, partials, cotangents) one
/// sample may keep: beyond this a register-resident kernel spills so much
/// that the structured plan is the better choice.
pub const PRIVATE_FLOATS: usize = 4096;
/// The longest vector a fused kernel keeps in registers. Longer ones (one
/// long sample, as in a log-sum-exp over a million logits) go to the
/// structured plan, whose reductions are trees across invocations; a
/// private array of thousands of floats also takes a software driver
/// minutes to compile.
pub const MAX_VECTOR: usize = 256;
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
    /// Each sample's gradient times the call's `scale`, written as B x size
    /// rows: with a scale of 1/B, the sample's share of the gradient of the
    /// batch mean (an input's gradient of a mean loss).
    Share,
    /// Summed over the batch (the caller scales it to a mean).
    Summed,
}

impl Destination {
    /// Whether the gradient is written as rows, one per sample.
    pub fn writes_rows(self) -> bool {
        matches!(self, Destination::PerSample | Destination::Share)
    }
}

/// One reverse sweep of a fused gradient kernel: cotangents seeded with 1
/// at the scalar node `of` (the output, or any node it reads), and the
/// gradients of `of` they give, with respect to `wrt` (variable index and
/// destination each). The sweeps of one kernel share its forward pass.
/// Any destination fits any variable: rows (`PerSample`, `Share`) or sums
/// over the batch (`Summed`), of an input's or a param's gradient alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// The node differentiated.
    pub of: NodeId,
    /// The variables, each with where its gradient goes.
    pub wrt: Vec<(usize, Destination)>,
}

impl Sweep {
    /// The output's one sweep, per sample, of a VJP, JVP or Jacobian.
    fn of_output(program: &Program, wrt: usize) -> Sweep {
        Sweep {
            of: program.output,
            wrt: vec![(wrt, Destination::PerSample)],
        }
    }
}

/// One gradient the kernel produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradientSlot {
    /// The node differentiated (the output for a VJP, JVP or Jacobian).
    pub of: NodeId,
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
/// then the seed when `seeded`; then, when `values`, the values of each
/// sweep's node (B x its size, a buffer each, in the order of
/// `value_sizes`); then one buffer per gradient written as rows, in the
/// order of `gradients`; then the partial sums (one row of
/// `summed_width` per workgroup) when `summed_width > 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FusedGradient {
    /// WGSL of the fused kernel.
    pub source: String,
    /// Inputs read per sample, as variable indices.
    pub inputs: Vec<usize>,
    /// Floats per sample of each entry of `inputs`.
    pub input_sizes: Vec<usize>,
    /// Params read, as variable indices, with their offsets in the
    /// concatenated parameter buffer.
    pub params: Vec<(usize, usize)>,
    /// Total floats of the parameter buffer.
    pub param_floats: usize,
    /// Every gradient asked for, in the order asked.
    pub gradients: Vec<GradientSlot>,
    /// Columns of a partial row: the summed gradients' sizes added up.
    pub summed_width: usize,
    /// Whether the values of the nodes differentiated are written.
    pub values: bool,
    /// Elements per sample of each node differentiated, one per sweep (the
    /// output's size for a VJP, JVP or Jacobian).
    pub value_sizes: Vec<usize>,
    /// Whether the kernel reads a seed, B x size rows: the output's
    /// cotangent for a VJP, the input's tangent for a JVP.
    pub seeded: bool,
    /// An upper bound on the loop iterations one sample takes (see
    /// `loop_trips`); the executor sizes samples per invocation by it.
    pub trips: usize,
    /// The sweeps, in order: each sweep's slots are the next `wrt.len()`
    /// of `gradients`, and its node's values the next of `value_sizes`.
    pub sweeps: Vec<Sweep>,
    /// Which way the derivatives travel.
    pub mode: Mode,
}

impl FusedGradient {
    /// Whether each invocation loops over several samples (a grid apart,
    /// `params.per_invocation` of them): only where gradients are summed
    /// over the batch, which then gather in registers. Every other kernel,
    /// and every forward pass, takes one sample an invocation.
    pub fn loops_over_samples(&self) -> bool {
        loops_over_samples(self.summed_width)
    }

    /// Storage bindings the kernel uses, to compare with the device's limit.
    pub fn storage_bindings(&self) -> usize {
        let per_sample = self
            .gradients
            .iter()
            .filter(|g| g.destination.writes_rows())
            .count();
        self.inputs.len()
            + usize::from(!self.params.is_empty())
            + usize::from(self.seeded)
            + if self.values {
                self.value_sizes.len()
            } else {
                0
            }
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

/// The WGSL call giving vec2(value, derivative) of `op` at `x`: every
/// generated kernel's, the layer epilogue's included.
pub(crate) fn unary_call(op: UnaryOp, x: &str) -> String {
    match op.parameter() {
        Some(p) => format!("{}_vd({x}, {})", op.name(), literal(f64::from(p))),
        None => format!("{}_vd({x})", op.name()),
    }
}

/// The WGSL call giving vec3(value, d/da, d/db) of `op` at (a, b).
fn binary_call(op: BinaryOp, a: &str, b: &str) -> String {
    format!("{}_vdd({a}, {b})", op.name())
}

/// The partial of binary node `id` in operand `slot`, as WGSL, where `e`
/// holds its `_vdd` triple: 1 where the structured plan's local Jacobian is
/// the identity (`+`, and the first operand of `-`, on equal shapes), so a
/// NaN in one operand leaves the other's derivative alone there as on the
/// other paths (and in JAX); elsewhere the element-wise partial.
fn binary_partial(program: &Program, id: NodeId, slot: usize, e: &str) -> String {
    let unit = program
        .local_jacobian(id, slot)
        .is_ok_and(|local| local.entries == crate::program::Entries::Unit);
    if unit {
        "1.0".into()
    } else {
        format!("{e}.{}", if slot == 0 { 'y' } else { 'z' })
    }
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
                    // Read from the sample's copy that `open_samples` made.
                    if scalar {
                        format!("x{k}")
                    } else {
                        format!("x{k}[{i}]")
                    }
                } else if hoisted(self.program, v) {
                    // The invocation's copy, read once before its samples.
                    if scalar {
                        format!("p{v}")
                    } else {
                        format!("p{v}[{i}]")
                    }
                } else {
                    let offset = self.param_offset[v].unwrap_or(0);
                    format!("prm[{offset}u + {i}]")
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
    program.depending_on(variables)
}

/// The nodes a sweep carries a cotangent (or tangent) for: those that
/// depend on one of its variables and that its node depends on. Every
/// variable must reach the node.
pub(crate) fn sweep_nodes(program: &Program, sweep: &Sweep) -> Result<Vec<bool>, NotFused> {
    let vars: Vec<usize> = sweep.wrt.iter().map(|&(v, _)| v).collect();
    let reaching = program.reaching(sweep.of);
    if vars
        .iter()
        .any(|&v| program.variable_node(v).is_none_or(|node| !reaching[node]))
    {
        return Err(NotFused(
            "a variable asked for does not reach the node differentiated".into(),
        ));
    }
    let depends = needed(program, &vars);
    Ok(depends
        .iter()
        .zip(&reaching)
        .map(|(&d, &r)| d && r)
        .collect())
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
    gradients(
        program,
        &[Sweep {
            of: program.output,
            wrt: wrt.to_vec(),
        }],
        values,
    )
}

/// Compiles several gradients of one program into one fused kernel, a
/// reverse sweep each after one forward pass, so that the inputs are read
/// once: W3's batch-summed gradient of the loss and each sample's gradient
/// of the activation, for example. Each sweep's node must be a scalar.
/// With `values` the kernel also writes each sweep's node's value.
pub fn gradients(
    program: &Program,
    sweeps: &[Sweep],
    values: bool,
) -> Result<FusedGradient, NotFused> {
    // `compile` checks the program and that each node exists.
    for sweep in sweeps {
        if let Some(shape) = program
            .shapes
            .get(sweep.of)
            .filter(|&&s| s != Shape::Scalar)
        {
            return Err(NotFused(format!(
                "node {} is {shape}, not a scalar",
                sweep.of
            )));
        }
    }
    compile(program, sweeps, values, Mode::Reverse { seeded: false })
}

/// Compiles a VJP, u^T J per sample, with respect to input `wrt`: the seed
/// binding holds u (B x output size), the one per-sample output u^T J.
pub fn vjp(program: &Program, wrt: usize, values: bool) -> Result<FusedGradient, NotFused> {
    compile(
        program,
        &[Sweep::of_output(program, wrt)],
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
        &[Sweep::of_output(program, wrt)],
        values,
        Mode::Forward,
    )
}

/// The most tangent or cotangent passes a fused Jacobian makes, and the
/// most elements of each sample's Jacobian: beyond these, the structured
/// plan's matrix products do the work better.
pub const JACOBIAN_PASSES: usize = 16;
/// See [`JACOBIAN_PASSES`].
pub const JACOBIAN_ELEMENTS: usize = 1024;

/// Compiles each sample's dense Jacobian of the output with respect to
/// input `wrt`, B x m x n row-major in the one per-sample output: forward
/// tangent passes, one per column, or reverse passes, one per row,
/// whichever are fewer.
pub fn jacobian(program: &Program, wrt: usize, values: bool) -> Result<FusedGradient, NotFused> {
    validate(program, &[wrt])?;
    let m = program.shapes[program.output].size();
    let n = program.variables[wrt].shape.size();
    if m.min(n) > JACOBIAN_PASSES || m * n > JACOBIAN_ELEMENTS {
        return Err(NotFused(format!(
            "a {m} x {n} Jacobian is left to the matrix products"
        )));
    }
    jacobian_any_size(program, wrt, values)
}

/// [`jacobian`] without its limits on passes and elements, for programs
/// the structured plan runs slowly on the device (selections: a kernel per
/// node and a gather per product with one): bounded only by the state and
/// loop budgets every fused kernel keeps.
pub fn jacobian_any_size(
    program: &Program,
    wrt: usize,
    values: bool,
) -> Result<FusedGradient, NotFused> {
    validate(program, &[wrt])?;
    let (m, n) = (
        program.shapes[program.output].size(),
        program.variables[wrt].shape.size(),
    );
    compile(
        program,
        &[Sweep::of_output(program, wrt)],
        values,
        Mode::Jacobian { reverse: m < n },
    )
}

/// Which way a compiled request's derivatives travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Cotangents from the output back, seeded with 1 (a gradient) or with
    /// a cotangent per sample (a VJP).
    Reverse { seeded: bool },
    /// Tangents from one input forward, seeded per sample (a JVP).
    Forward,
    /// The whole per-sample Jacobian with respect to one input, a column
    /// per tangent pass seeded with a unit vector, or (`reverse`) a row per
    /// cotangent pass; the values are computed once.
    Jacobian { reverse: bool },
}

fn compile(
    program: &Program,
    sweeps: &[Sweep],
    values: bool,
    mode: Mode,
) -> Result<FusedGradient, NotFused> {
    let variables: Vec<usize> = sweeps
        .iter()
        .flat_map(|s| s.wrt.iter().map(|&(v, _)| v))
        .collect();
    validate(program, &variables)?;
    if sweeps.is_empty() || variables.is_empty() {
        return Err(NotFused("no gradient was asked for".into()));
    }
    if let Some(sweep) = sweeps.iter().find(|s| s.of >= program.nodes.len()) {
        return Err(NotFused(format!(
            "node {} is not one of the program's {}",
            sweep.of,
            program.nodes.len()
        )));
    }
    let seeded = matches!(mode, Mode::Forward | Mode::Reverse { seeded: true });
    let output_size = program.shapes[program.output].size();
    // Each sweep's cotangents: the nodes that depend on one of its
    // variables and that its node depends on. The forward pass keeps the
    // partials any sweep reads.
    let per_sweep: Vec<Vec<bool>> = sweeps
        .iter()
        .map(|sweep| sweep_nodes(program, sweep))
        .collect::<Result<_, _>>()?;
    let needed: Vec<bool> = (0..program.nodes.len())
        .map(|id| per_sweep.iter().any(|n| n[id]))
        .collect();

    let private = state_floats(program, &needed)?;

    let (layout, inputs, params, param_floats) = bind_variables(program);
    let mut gradients = Vec::new();
    let mut summed_width = 0usize;
    for sweep in sweeps {
        for &(variable, destination) in &sweep.wrt {
            let size = match mode {
                Mode::Forward => output_size,
                Mode::Reverse { .. } => program.variables[variable].shape.size(),
                Mode::Jacobian { .. } => output_size * program.variables[variable].shape.size(),
            };
            let offset = if destination == Destination::Summed {
                summed_width += size;
                summed_width - size
            } else {
                0
            };
            gradients.push(GradientSlot {
                of: sweep.of,
                variable,
                size,
                destination,
                offset,
            });
        }
    }
    if private + summed_width > PRIVATE_FLOATS {
        return Err(NotFused(format!(
            "{} floats of state per sample exceed {PRIVATE_FLOATS}",
            private + summed_width
        )));
    }
    let passes = match mode {
        Mode::Jacobian { reverse: true } => output_size,
        Mode::Jacobian { reverse: false } => variables
            .first()
            .map_or(1, |&v| program.variables[v].shape.size()),
        _ => sweeps.len(),
    };
    let value_sizes: Vec<usize> = sweeps.iter().map(|s| program.shapes[s.of].size()).collect();
    let written =
        value_sizes.iter().sum::<usize>() + gradients.iter().map(|g| g.size).sum::<usize>();
    let trips = loop_trips(program, passes, written);
    if trips.saturating_mul(2) > MAX_TRIPS || trips + sum_trips(summed_width) > MAX_TRIPS {
        return Err(NotFused(format!(
            "{trips} loop iterations a sample leave too few for a batch"
        )));
    }
    let (mut src, mut binding) = prelude(&layout, &inputs, &params);
    if seeded {
        binding += 1;
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read> seed: array<f32>;"
        );
    }
    if values {
        for k in 0..sweeps.len() {
            binding += 1;
            let _ = writeln!(
                src,
                "@group(0) @binding({binding}) var<storage, read_write> out_v{k}: array<f32>;"
            );
        }
    }
    for (k, slot) in gradients.iter().enumerate() {
        if slot.destination.writes_rows() {
            binding += 1;
            let ty = if quad_rows(slot, mode) {
                row_type(slot.size)
            } else {
                "f32"
            };
            let _ = writeln!(
                src,
                "@group(0) @binding({binding}) var<storage, read_write> out_g{k}: array<{ty}>;"
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
    open_samples(&mut src, &layout, (&inputs, &params), summed_width);
    forward_pass(&mut src, &layout, &needed);
    let mut first_slot = 0;
    for (sweep, needed) in sweeps.iter().zip(&per_sweep) {
        let slots = first_slot..first_slot + sweep.wrt.len();
        first_slot = slots.end;
        // A sweep's cotangents live in its own block, so that the next
        // sweep's may take the same names.
        src.push_str("    {\n");
        match mode {
            Mode::Reverse { seeded } => {
                let seed = if seeded { Seed::Buffer } else { Seed::One };
                reverse_pass(&mut src, &layout, needed, seed, sweep.of);
            }
            Mode::Forward => {
                tangent_pass(&mut src, &layout, needed, variables[0], Seed::Buffer);
            }
            Mode::Jacobian { reverse } => {
                let wrt = variables[0];
                let n = program.variables[wrt].shape.size();
                let m = output_size;
                let wrt_node = program.variable_node(wrt).unwrap_or(0);
                if reverse {
                    let _ = writeln!(
                        src,
                        "    for (var unit = 0u; unit < {m}u; unit = unit + 1u) {{"
                    );
                    reverse_pass(&mut src, &layout, needed, Seed::Unit, sweep.of);
                    let _ = writeln!(
                        src,
                        "    if (live) {{\n        for (var i = 0u; i < {n}u; i = i + 1u) {{\n            \
                         out_g0[(s * {m}u + unit) * {n}u + i] = {};\n        }}\n    }}\n    }}",
                        cot(&layout, wrt_node, "i")
                    );
                } else {
                    let _ = writeln!(
                        src,
                        "    for (var unit = 0u; unit < {n}u; unit = unit + 1u) {{"
                    );
                    tangent_pass(&mut src, &layout, needed, wrt, Seed::Unit);
                    let _ = writeln!(
                        src,
                        "    if (live) {{\n        for (var i = 0u; i < {m}u; i = i + 1u) {{\n            \
                         out_g0[(s * {m}u + i) * {n}u + unit] = {};\n        }}\n    }}\n    }}",
                        cot(&layout, program.output, "i")
                    );
                }
            }
        }
        src.push_str("    if (live) {\n");
        for k in slots {
            write_gradient(&mut src, &layout, mode, k, &gradients[k]);
        }
        src.push_str("    }\n    }\n");
    }

    // Values.
    if values {
        src.push_str("    if (live) {\n");
        for (k, (sweep, &n)) in sweeps.iter().zip(&value_sizes).enumerate() {
            let _ = writeln!(
                src,
                "        for (var i = 0u; i < {n}u; i = i + 1u) {{\n            \
                 out_v{k}[s * {n}u + i] = {};\n        }}",
                layout.at(sweep.of, "i")
            );
        }
        src.push_str("    }\n");
    }
    src.push_str("    }\n");
    if summed_width > 0 {
        workgroup_sums(&mut src, summed_width);
    }
    src.push_str("}\n");
    let src = unroll_small_loops(&src);

    Ok(FusedGradient {
        source: src,
        input_sizes: inputs
            .iter()
            .map(|&v| program.variables[v].shape.size())
            .collect(),
        inputs,
        params,
        param_floats,
        gradients,
        summed_width,
        values,
        value_sizes,
        seeded,
        trips,
        sweeps: sweeps.to_vec(),
        mode,
    })
}

/// Writes gradient slot `k` for sample `s` from the cotangent (or, for a
/// JVP, the output's tangent) its pass left; a Jacobian's slots are written
/// by their passes.
fn write_gradient(
    src: &mut String,
    layout: &Layout<'_>,
    mode: Mode,
    k: usize,
    slot: &GradientSlot,
) {
    let program = layout.program;
    let node = match mode {
        Mode::Forward => program.output,
        Mode::Reverse { .. } => program.variable_node(slot.variable).unwrap_or(0),
        Mode::Jacobian { .. } => return,
    };
    let scale = if slot.destination == Destination::Share {
        " * params.scale"
    } else {
        ""
    };
    let scalar = layout.is_scalar(node);
    match (slot.destination, scalar) {
        (Destination::PerSample | Destination::Share, true) => {
            let _ = writeln!(src, "        out_g{k}[s] = g{node}{scale};");
        }
        (Destination::PerSample | Destination::Share, false) if quad_rows(slot, mode) => {
            let _ = writeln!(
                src,
                "        for (var j = 0u; j < {q}u; j = j + 1u) {{\n            \
                 out_g{k}[s * {q}u + j] = {}{scale};\n        }}",
                quad_of(|i| format!("g{node}[{i}]")),
                q = slot.size / 4
            );
        }
        (Destination::PerSample | Destination::Share, false) => {
            let _ = writeln!(
                src,
                "        for (var i = 0u; i < {n}u; i = i + 1u) {{\n            \
                 out_g{k}[s * {n}u + i] = g{node}[i]{scale};\n        }}",
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

/// A program that has passed [`Program::check`] and variable indices within
/// it: the compiler's entry points are public, and a program built or
/// edited by hand must give a reason, not a panic.
fn validate(program: &Program, variables: &[usize]) -> Result<(), NotFused> {
    program
        .check()
        .map_err(|e| NotFused(format!("the program is not valid: {e}")))?;
    match variables.iter().find(|&&v| v >= program.variables.len()) {
        Some(v) => Err(NotFused(format!(
            "variable {v} is not one of the program's {}",
            program.variables.len()
        ))),
        None => Ok(()),
    }
}

/// Floats of private state one sample keeps: each input's row and vector
/// param, a value per computed node, a partial per unary node and
/// log-sum-exp on a derivative path, a tangent or cotangent per node on it;
/// or why the program does not fit.
fn state_floats(program: &Program, needed: &[bool]) -> Result<usize, NotFused> {
    let mut private = 0usize;
    for (id, op) in program.nodes.iter().enumerate() {
        let size = program.shapes[id].size();
        // A param matrix stays in memory, unless its gradient is asked
        // for: that is a private array per sample like a vector's.
        let vector = match program.shapes[id] {
            crate::program::Shape::Matrix(..) if !needed[id] => 0,
            _ => size,
        };
        if vector > MAX_VECTOR {
            return Err(NotFused(format!("node {id} has {size} elements")));
        }
        // Computed values, each input's row copied in once, and the params
        // read once per invocation.
        let held = match op {
            Op::Constant(_) => false,
            Op::Variable(v) => {
                program
                    .variables
                    .get(*v)
                    .is_some_and(|v| v.kind == Kind::Input)
                    || hoisted(program, *v)
            }
            _ => true,
        };
        private += size * usize::from(held);
        private += size * usize::from(needed[id]);
        // The partials kept for the derivative passes: an element-wise
        // function's, and a reduction's kept row (softmax, products of
        // the others) over its operand.
        let kept = match *op {
            Op::Unary(..) => size,
            // prod keeps each partial's exponent beside it.
            Op::Reduce(r, a, _) if r.partial() == RowPartial::Others => {
                2 * program.shapes[a].size()
            }
            Op::Reduce(r, a, _) if r.partial().kept() => program.shapes[a].size(),
            _ => 0,
        };
        private += kept * usize::from(needed[id]);
    }
    if private > PRIVATE_FLOATS {
        return Err(NotFused(format!(
            "{private} floats of state per sample exceed {PRIVATE_FLOATS}"
        )));
    }
    Ok(private)
}

/// An upper bound on the loop iterations one sample costs an invocation:
/// the forward pass once and each derivative pass `passes` times, counting
/// every loop as written (unrolled ones too). Software drivers cut an
/// invocation's loops short once their iterations add up past 65,535 (the
/// loops of one invocation count together, nested ones multiplied), so the
/// executor keeps samples per invocation times this, plus the reduction's
/// loops, within [`MAX_TRIPS`].
fn loop_trips(program: &Program, passes: usize, written: usize) -> usize {
    let size = |id: NodeId| program.shapes[id].size();
    let mut per_pass = 0usize;
    for (id, op) in program.nodes.iter().enumerate() {
        per_pass += match *op {
            // A matrix is read where used, never looped over by itself.
            Op::Variable(_) | Op::Constant(_) => match program.shapes[id] {
                crate::program::Shape::Matrix(..) => 0,
                _ => size(id),
            },
            Op::MatVec(_, x) | Op::VecMat(_, x) => 2 * (size(id) * size(x) + size(id)),
            Op::ShiftMax(a) => 4 * size(a),
            Op::Reduce(r, a, _) if r.partial().kept() => 4 * size(a),
            Op::Reduce(_, a, _) => 2 * size(a),
            _ => 2 * size(id),
        };
    }
    per_pass
        .saturating_mul(passes.saturating_add(1))
        .saturating_add(written)
        .saturating_add(1)
}

/// Loop iterations of the workgroup sums of `width` columns.
pub(crate) fn sum_trips(width: usize) -> usize {
    width.div_ceil(ROUND) * (ROUND + 2 * (WORKGROUP / ROUND) + 1)
}

/// Where the kernel reads each variable: inputs bound one buffer each in
/// order of appearance, params packed into one buffer.
fn bind_variables(program: &Program) -> (Layout<'_>, Vec<usize>, Vec<(usize, usize)>, usize) {
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
    let layout = Layout {
        program,
        input_binding,
        param_offset,
    };
    (layout, inputs, params, param_floats)
}

/// The library, the uniform, and the bindings of inputs and params; the
/// last binding index used.
fn prelude(layout: &Layout<'_>, inputs: &[usize], params: &[(usize, usize)]) -> (String, usize) {
    let mut src = shaders::library();
    src.push_str(
        "\nstruct FusedParams {\n    count: u32,\n    scale: f32,\n    per_invocation: u32,\n    pad0: u32,\n}\n\n",
    );
    let mut binding = 0usize;
    let _ = writeln!(
        src,
        "@group(0) @binding({binding}) var<uniform> params: FusedParams;"
    );
    for (k, &v) in inputs.iter().enumerate() {
        binding += 1;
        let ty = row_type(layout.program.variables[v].shape.size());
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read> in{k}: array<{ty}>;"
        );
    }
    if !params.is_empty() {
        binding += 1;
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read> prm: array<f32>;"
        );
    }
    (src, binding)
}

/// Whether rows of `n` floats are read or written four at a time, as
/// `vec4<f32>`: software drivers pay per access, not per float.
fn quads(n: usize) -> bool {
    n >= 4 && n.is_multiple_of(4)
}

/// The element type of a storage array of rows of `n` floats.
fn row_type(n: usize) -> &'static str {
    if quads(n) { "vec4<f32>" } else { "f32" }
}

/// The quad `j` (a WGSL loop index) of a row whose element `i` is
/// `element(i)`, as a `vec4<f32>` expression.
fn quad_of(element: impl Fn(&str) -> String) -> String {
    let parts: Vec<String> = (0..4).map(|c| element(&format!("4u * j + {c}u"))).collect();
    format!("vec4<f32>({})", parts.join(", "))
}

/// Whether a per-sample gradient's rows are written as quads (not a
/// Jacobian's, which is written element by element).
fn quad_rows(slot: &GradientSlot, mode: Mode) -> bool {
    !matches!(mode, Mode::Jacobian { .. }) && quads(slot.size)
}

/// Whether variable `v` is a param read once per invocation into
/// registers (a scalar or vector; a matrix stays in memory): software
/// drivers pay a per-invocation loop for every storage access, even one
/// every invocation makes alike.
fn hoisted(program: &Program, v: usize) -> bool {
    program.variables.get(v).is_some_and(|variable| {
        variable.kind == Kind::Param && !matches!(variable.shape, Shape::Matrix(..))
    })
}

/// Whether a kernel summing `summed_width` floats over the batch loops
/// over several samples an invocation ([`FusedGradient::loops_over_samples`]).
fn loops_over_samples(summed_width: usize) -> bool {
    summed_width > 0
}

/// The entry point, opened up to the body run for each sample `s` (with
/// `live` false past the batch); `summed_width` registers accumulate sums.
/// A kernel that sums loops over `params.per_invocation` samples an
/// invocation ([`FusedGradient::loops_over_samples`]); any other takes one.
/// Params are read once per invocation and each input's row once per
/// sample, into registers.
fn open_samples(
    src: &mut String,
    layout: &Layout<'_>,
    (inputs, params): (&[usize], &[(usize, usize)]),
    summed_width: usize,
) {
    let _ = write!(
        src,
        "\n@compute @workgroup_size({WORKGROUP})\n\
         fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,\n        \
         @builtin(num_workgroups) groups: vec3<u32>) {{\n    \
         let lid = lid3.x;\n    let wg = wid.y * groups.x + wid.x;\n"
    );
    if summed_width > 0 {
        let _ = writeln!(src, "    var acc: array<f32, {summed_width}>;");
    }
    for &(v, offset) in params {
        if !hoisted(layout.program, v) {
            continue;
        }
        match layout.program.variables[v].shape {
            Shape::Vector(n) => {
                let _ = writeln!(
                    src,
                    "    var p{v}: array<f32, {n}>;\n    for (var i = 0u; i < {n}u; i = i + 1u) {{\n        \
                     p{v}[i] = prm[{offset}u + i];\n    }}"
                );
            }
            _ => {
                let _ = writeln!(src, "    let p{v} = prm[{offset}u];");
            }
        }
    }
    if loops_over_samples(summed_width) {
        // Each invocation takes samples a grid apart, so that neighbours
        // read neighbouring rows and the summed gradients gather in
        // registers before any workgroup memory is touched.
        let _ = writeln!(
            src,
            "    let threads = groups.x * groups.y * {WORKGROUP}u;\n    \
             for (var k = 0u; k < params.per_invocation; k = k + 1u) {{\n    \
             let sample = k * threads + wg * {WORKGROUP}u + lid;"
        );
    } else {
        // Nothing to gather: one sample an invocation, the grid covering
        // the batch. A loop whose trip count only the uniform knows made
        // such kernels a third slower on lavapipe.
        let _ = writeln!(src, "    {{\n    let sample = wg * {WORKGROUP}u + lid;");
    }
    let _ = writeln!(
        src,
        "    let live = sample < params.count;\n    let s = min(sample, params.count - 1u);"
    );
    // Each input's row is read from memory once, into registers, however
    // many passes read it after.
    for (k, &v) in inputs.iter().enumerate() {
        let n = layout.program.variables[v].shape.size();
        if layout.program.variables[v].shape == Shape::Scalar {
            let _ = writeln!(src, "    let x{k} = in{k}[s];");
        } else if quads(n) {
            let q = n / 4;
            let _ = writeln!(
                src,
                "    var x{k}: array<f32, {n}>;\n    for (var j = 0u; j < {q}u; j = j + 1u) {{\n        \
                 let q = in{k}[s * {q}u + j];\n        x{k}[4u * j] = q.x;\n        x{k}[4u * j + 1u] = q.y;\n        \
                 x{k}[4u * j + 2u] = q.z;\n        x{k}[4u * j + 3u] = q.w;\n    }}"
            );
        } else {
            let _ = writeln!(
                src,
                "    var x{k}: array<f32, {n}>;\n    for (var i = 0u; i < {n}u; i = i + 1u) {{\n        \
                 x{k}[i] = in{k}[s * {n}u + i];\n    }}"
            );
        }
    }
}

pub mod elementwise;
mod forward;
mod passes;

pub use forward::{ForwardOutput, FusedForward, Written, forward, values};
use passes::{Seed, forward_pass, reverse_pass, tangent_pass, workgroup_sums};

#[cfg(test)]
mod tests;
