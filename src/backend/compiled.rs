//! A compiled request ([`FusedGradient`], from `crate::compile`) on either
//! backend. The compiler decides what one fused pass over each sample
//! computes: its sweeps, their direction, the variables and where each
//! gradient goes. The GPU runs the generated kernel; the CPU runs the same
//! passes here, sample by sample in f64: the forward pass, then each sweep
//! by the same local partials (the op table's `value_and_derivative`,
//! `value_and_partials` and row partials, the chain rule's products by
//! [`chain_mul`]), writing the same slots. So the request-to-plan decisions
//! exist once, and the backends differ only in the kernels.

use crate::backend::Backend;
use crate::backend::cpu_program::{CpuForward, forward};
use crate::compile::{Destination, FusedGradient, Mode, NotFused, sweep_nodes};
use crate::error::{Error, Result};
use crate::ops::chain_mul;
use crate::program::{Entries, NodeId, Op, Program};

/// What a compiled request returns, before it is shaped per variable; the
/// rows in f32, or (`T = f64`) as the CPU computes them, for a Jacobian
/// that keeps the reference's precision.
pub(crate) struct FusedOutput<T = f32> {
    /// The value per sample of each sweep's node (the output's for a VJP,
    /// JVP or Jacobian), when the plan writes values.
    pub(crate) values: Vec<Vec<f32>>,
    /// Per gradient slot: its B x size rows (empty for summed slots).
    pub(crate) per_sample: Vec<Vec<T>>,
    /// The summed gradients, `summed_width` columns, over the whole batch.
    pub(crate) summed: Vec<f64>,
}

impl<T> FusedOutput<T> {
    /// The first sweep's values (the output's, for a one-sweep plan).
    pub(crate) fn take_values(&mut self) -> Vec<f32> {
        self.values
            .first_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

/// A float the rows of a [`FusedOutput`] may hold.
pub(crate) trait Element: Copy + Default {
    /// From the GPU's f32.
    fn from_f32(x: f32) -> Self;
    /// From the CPU's f64.
    fn from_f64(x: f64) -> Self;
}

impl Element for f32 {
    fn from_f32(x: f32) -> f32 {
        x
    }
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
}

impl Element for f64 {
    fn from_f32(x: f32) -> f64 {
        f64::from(x)
    }
    fn from_f64(x: f64) -> f64 {
        x
    }
}

impl Backend {
    /// Runs `plan`, compiled from `program`, over `batch` samples of
    /// `variables` (every variable of the program, in declaration order),
    /// with `scale` applied to `Share` rows and `seed` (B x size rows) for
    /// a seeded plan: the generated kernel on the GPU, the same passes in
    /// f64 on the CPU. `None` when the device cannot bind the kernel (too
    /// many buffers, parameters past a binding's size); the caller then
    /// runs the structured plan.
    pub(crate) fn run_compiled<T: Element>(
        &self,
        program: &Program,
        plan: &FusedGradient,
        variables: &[&[f32]],
        batch: usize,
        scale: f32,
        seed: Option<(&[f32], usize)>,
    ) -> Result<Option<FusedOutput<T>>> {
        match self {
            Backend::Gpu(context) => {
                if !context.fits_fused(plan) {
                    return Ok(None);
                }
                let out = context.fused_gradient(plan, variables, batch, scale, seed)?;
                Ok(Some(FusedOutput {
                    values: out.values,
                    per_sample: out
                        .per_sample
                        .into_iter()
                        .map(|rows| rows.into_iter().map(T::from_f32).collect())
                        .collect(),
                    summed: out.summed,
                }))
            }
            Backend::Cpu(_) => {
                run_on_host(program, plan, variables, batch, f64::from(scale), seed).map(Some)
            }
        }
    }
}

/// Sample `b`'s values of every node.
struct Sample<'a> {
    forward: &'a CpuForward,
    sizes: &'a [usize],
    b: usize,
}

impl Sample<'_> {
    fn at(&self, id: NodeId) -> &[f64] {
        self.forward.row(id, self.b)
    }
}

/// Element `i` of a node's value or derivative, a scalar meeting every
/// element (the kernels' broadcast).
fn element(v: &[f64], i: usize) -> f64 {
    if v.len() == 1 { v[0] } else { v[i] }
}

/// The index a node of `len` elements takes for element `i` of a
/// broadcast.
fn index(len: usize, i: usize) -> usize {
    if len == 1 { 0 } else { i }
}

/// Per binary node and operand: whether the structured plan's local
/// Jacobian is the identity there, where the partial is taken as exactly 1
/// (as the kernel's `binary_partial` does), so that a NaN in one operand
/// leaves the other's derivative alone.
fn unit_partials(program: &Program) -> Vec<[bool; 2]> {
    (0..program.nodes.len())
        .map(|id| {
            if !matches!(program.nodes[id], Op::Binary(..)) {
                return [false; 2];
            }
            [0, 1].map(|slot| {
                program
                    .local_jacobian(id, slot)
                    .is_ok_and(|local| local.entries == Entries::Unit)
            })
        })
        .collect()
}

/// One sweep's fixed context: the program, which nodes carry a derivative,
/// and the unit partials.
struct Pass<'a> {
    program: &'a Program,
    needed: &'a [bool],
    unit: &'a [[bool; 2]],
}

impl Pass<'_> {
    /// The partials of binary node `id` at element `i`.
    fn binary_partials(&self, x: &Sample<'_>, id: NodeId, i: usize) -> [f64; 2] {
        let Op::Binary(f, a, b) = self.program.nodes[id] else {
            return [0.0; 2];
        };
        let (_, pa, pb) = f.value_and_partials(element(x.at(a), i), element(x.at(b), i));
        let [ua, ub] = self.unit[id];
        [if ua { 1.0 } else { pa }, if ub { 1.0 } else { pb }]
    }

    /// Cotangents from node `of`, seeded by `seed`, back to every needed
    /// node (`d[id]`, each node's size).
    fn reverse(&self, x: &Sample<'_>, of: NodeId, seed: impl Fn(usize) -> f64, d: &mut [Vec<f64>]) {
        for (id, g) in d.iter_mut().enumerate() {
            if self.needed[id] {
                g.fill(0.0);
            }
        }
        for (i, g) in d[of].iter_mut().enumerate() {
            *g = seed(i);
        }
        let needed = self.needed;
        for id in (0..=of).rev() {
            if !needed[id] {
                continue;
            }
            let g = std::mem::take(&mut d[id]);
            match self.program.nodes[id] {
                Op::Variable(_) | Op::Constant(_) => {}
                Op::Unary(f, a) => {
                    for (i, (&gi, &xi)) in g.iter().zip(x.at(a)).enumerate() {
                        d[a][i] += chain_mul(f.value_and_derivative(xi).1, gi);
                    }
                }
                Op::Binary(_, a, b) => {
                    for (i, &gi) in g.iter().enumerate() {
                        let partials = self.binary_partials(x, id, i);
                        for (operand, p) in [a, b].into_iter().zip(partials) {
                            if needed[operand] {
                                let at = index(d[operand].len(), i);
                                d[operand][at] += chain_mul(p, gi);
                            }
                        }
                    }
                }
                Op::MatVec(w, v) | Op::VecMat(w, v) => {
                    let (rows, cols) = (g.len(), x.sizes[v]);
                    // W @ v reads W[r, c]; v @ W (W^T v) reads W[c, r].
                    let at = |r: usize, c: usize| match self.program.nodes[id] {
                        Op::VecMat(..) => c * rows + r,
                        _ => r * cols + c,
                    };
                    let (wv, vv) = (x.at(w), x.at(v));
                    if needed[v] {
                        for c in 0..cols {
                            let acc: f64 = (0..rows).map(|r| chain_mul(wv[at(r, c)], g[r])).sum();
                            d[v][c] += acc;
                        }
                    }
                    if needed[w] {
                        for r in 0..rows {
                            for c in 0..cols {
                                d[w][at(r, c)] += chain_mul(g[r], vv[c]);
                            }
                        }
                    }
                }
                Op::Reduce(r, ..) => {
                    let operands: Vec<NodeId> = self.program.nodes[id].operands().collect();
                    let values: Vec<&[f64]> = operands.iter().map(|&o| x.at(o)).collect();
                    for (slot, &operand) in operands.iter().enumerate() {
                        if needed[operand] {
                            let row = r.partials(&values, slot);
                            for (t, p) in d[operand].iter_mut().zip(row) {
                                *t += chain_mul(p, g[0]);
                            }
                        }
                    }
                }
                // The maximum is held constant under differentiation.
                Op::ShiftMax(a) => add(&mut d[a], &g),
                // The transpose of a selection scatters.
                Op::Slice(a, start, _) => add(&mut d[a][start..], &g),
                Op::Concat(a, b) => {
                    let split = x.sizes[a];
                    for (operand, part) in [(a, &g[..split]), (b, &g[split..])] {
                        if needed[operand] {
                            add(&mut d[operand], part);
                        }
                    }
                }
            }
            d[id] = g;
        }
    }

    /// Tangents of every needed node, forward from variable `wrt` seeded by
    /// `seed` (`d[id]`, each node's size; zero where not needed).
    fn tangent(&self, x: &Sample<'_>, wrt: usize, seed: impl Fn(usize) -> f64, d: &mut [Vec<f64>]) {
        let needed = self.needed;
        for id in 0..self.program.nodes.len() {
            if !needed[id] {
                continue;
            }
            let mut t = std::mem::take(&mut d[id]);
            t.fill(0.0);
            let from = |o: NodeId| needed[o].then(|| d[o].as_slice());
            match self.program.nodes[id] {
                Op::Variable(v) if v == wrt => {
                    for (i, ti) in t.iter_mut().enumerate() {
                        *ti = seed(i);
                    }
                }
                Op::Variable(_) | Op::Constant(_) => {}
                Op::Unary(f, a) => {
                    if let Some(ta) = from(a) {
                        for ((ti, &xi), &tai) in t.iter_mut().zip(x.at(a)).zip(ta) {
                            *ti = chain_mul(f.value_and_derivative(xi).1, tai);
                        }
                    }
                }
                Op::Binary(_, a, b) => {
                    for (i, ti) in t.iter_mut().enumerate() {
                        let partials = self.binary_partials(x, id, i);
                        for (operand, p) in [a, b].into_iter().zip(partials) {
                            if let Some(to) = from(operand) {
                                *ti += chain_mul(p, element(to, i));
                            }
                        }
                    }
                }
                // The matrix is a param (a matrix input is a vector node),
                // so only the vector carries a tangent.
                Op::MatVec(w, v) | Op::VecMat(w, v) => {
                    if let Some(tv) = from(v) {
                        let (rows, cols) = (t.len(), tv.len());
                        let wv = x.at(w);
                        for (r, tr) in t.iter_mut().enumerate() {
                            *tr = (0..cols)
                                .map(|c| match self.program.nodes[id] {
                                    Op::VecMat(..) => chain_mul(wv[c * rows + r], tv[c]),
                                    _ => chain_mul(wv[r * cols + c], tv[c]),
                                })
                                .sum();
                        }
                    }
                }
                Op::Reduce(r, ..) => {
                    let operands: Vec<NodeId> = self.program.nodes[id].operands().collect();
                    let values: Vec<&[f64]> = operands.iter().map(|&o| x.at(o)).collect();
                    for (slot, &operand) in operands.iter().enumerate() {
                        if let Some(to) = from(operand) {
                            let row = r.partials(&values, slot);
                            t[0] += row
                                .iter()
                                .zip(to)
                                .map(|(&p, &ti)| chain_mul(p, ti))
                                .sum::<f64>();
                        }
                    }
                }
                Op::ShiftMax(a) => {
                    if let Some(ta) = from(a) {
                        t.copy_from_slice(ta);
                    }
                }
                Op::Slice(a, start, _) => {
                    if let Some(ta) = from(a) {
                        let n = t.len();
                        t.copy_from_slice(&ta[start..start + n]);
                    }
                }
                Op::Concat(a, b) => {
                    let split = x.sizes[a];
                    if let Some(ta) = from(a) {
                        t[..split].copy_from_slice(ta);
                    }
                    if let Some(tb) = from(b) {
                        t[split..].copy_from_slice(tb);
                    }
                }
            }
            d[id] = t;
        }
    }
}

/// `dst += src`, element by element.
fn add(dst: &mut [f64], src: &[f64]) {
    for (t, s) in dst.iter_mut().zip(src) {
        *t += s;
    }
}

/// The f64 twin of the fused kernel: for each sample, the forward pass,
/// then each sweep's tangents or cotangents, written to the plan's slots
/// (rows scaled by `scale` for `Share`, summed over the batch for
/// `Summed`, each row of a Jacobian by its own pass).
fn run_on_host<T: Element>(
    program: &Program,
    plan: &FusedGradient,
    variables: &[&[f32]],
    batch: usize,
    scale: f64,
    seed: Option<(&[f32], usize)>,
) -> Result<FusedOutput<T>> {
    if plan.seeded != seed.is_some() {
        return Err(Error::InvalidArgument(
            "the plan and the call disagree on a seed".into(),
        ));
    }
    if let Some((rows, size)) = seed
        && rows.len() != batch.saturating_mul(size)
    {
        return Err(Error::Shape(format!(
            "the seed holds {} values, not {batch} x {size}",
            rows.len()
        )));
    }
    let needed: Vec<Vec<bool>> = plan
        .sweeps
        .iter()
        .map(|sweep| sweep_nodes(program, sweep))
        .collect::<std::result::Result<_, NotFused>>()
        .map_err(|NotFused(why)| Error::InvalidArgument(why))?;
    let forward = forward(program, variables, batch)?;
    let sizes: Vec<usize> = program.shapes.iter().map(|s| s.size()).collect();
    let unit = unit_partials(program);
    let mut values: Vec<Vec<f32>> = if plan.values {
        plan.value_sizes
            .iter()
            .map(|&size| crate::backend::host_vec(batch.saturating_mul(size), "values"))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let mut per_sample: Vec<Vec<T>> = plan
        .gradients
        .iter()
        .map(|g| {
            if g.destination.writes_rows() {
                crate::backend::host_vec(batch.saturating_mul(g.size), "per-sample gradients")
            } else {
                Ok(Vec::new())
            }
        })
        .collect::<Result<_>>()?;
    let mut summed = vec![0f64; plan.summed_width];
    let mut d: Vec<Vec<f64>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let output = program.output;
    let m = sizes[output];
    for b in 0..batch {
        let x = Sample {
            forward: &forward,
            sizes: &sizes,
            b,
        };
        let seed_row = |size: usize| -> &[f32] {
            seed.map_or(&[][..], |(rows, _)| &rows[b * size..(b + 1) * size])
        };
        let mut first = 0;
        for (k, sweep) in plan.sweeps.iter().enumerate() {
            let slots = first..first + sweep.wrt.len();
            first = slots.end;
            let pass = Pass {
                program,
                needed: &needed[k],
                unit: &unit,
            };
            match plan.mode {
                Mode::Reverse { seeded } => {
                    let row = seed_row(sizes[sweep.of]);
                    let seed = |i: usize| {
                        if seeded { f64::from(row[i]) } else { 1.0 }
                    };
                    pass.reverse(&x, sweep.of, seed, &mut d);
                }
                Mode::Forward => {
                    let (v, _) = sweep.wrt[0];
                    let row = seed_row(program.variables[v].shape.size());
                    pass.tangent(&x, v, |i| f64::from(row[i]), &mut d);
                }
                Mode::Jacobian { reverse } => {
                    let (v, _) = sweep.wrt[0];
                    let n = program.variables[v].shape.size();
                    let node = program.variable_node(v).unwrap_or(0);
                    let out = &mut per_sample[slots.start];
                    if reverse {
                        for unit in 0..m {
                            pass.reverse(&x, sweep.of, |i| f64::from(u8::from(i == unit)), &mut d);
                            for (i, &g) in d[node].iter().enumerate() {
                                out[(b * m + unit) * n + i] = T::from_f64(g);
                            }
                        }
                    } else {
                        for unit in 0..n {
                            pass.tangent(&x, v, |i| f64::from(u8::from(i == unit)), &mut d);
                            for (i, &t) in d[output].iter().enumerate() {
                                out[(b * m + i) * n + unit] = T::from_f64(t);
                            }
                        }
                    }
                    continue;
                }
            }
            for k in slots {
                let slot = &plan.gradients[k];
                let node = match plan.mode {
                    Mode::Forward => output,
                    _ => program.variable_node(slot.variable).unwrap_or(0),
                };
                let g = &d[node];
                match slot.destination {
                    Destination::PerSample | Destination::Share => {
                        let factor = if slot.destination == Destination::Share {
                            scale
                        } else {
                            1.0
                        };
                        let row = &mut per_sample[k][b * slot.size..(b + 1) * slot.size];
                        for (r, &gi) in row.iter_mut().zip(g) {
                            *r = T::from_f64(gi * factor);
                        }
                    }
                    Destination::Summed => {
                        add(&mut summed[slot.offset..slot.offset + slot.size], g);
                    }
                }
            }
        }
        for (k, sweep) in plan.sweeps.iter().enumerate().take(values.len()) {
            let n = sizes[sweep.of];
            for (v, &xi) in values[k][b * n..(b + 1) * n].iter_mut().zip(x.at(sweep.of)) {
                *v = xi as f32;
            }
        }
    }
    Ok(FusedOutput {
        values,
        per_sample,
        summed,
    })
}

#[cfg(test)]
mod tests {
    //! The CPU's passes against the dual-number oracle in f64 (nothing in
    //! common but the op table's local derivatives), for every mode and
    //! destination and every kind of node.
    use super::*;
    use crate::compile::{self, Sweep};
    use crate::program::Kind;
    use rand::Rng;
    use rand::rngs::StdRng;

    /// Programs that hold every kind of node between them: unary and
    /// binary (a scalar meeting a vector), both products, every
    /// reduction, the shift by the maximum (softmax), slices, elements and
    /// assemblies, fan-out.
    const PROGRAMS: &[&str] = &[
        "input x[5]\nparam W[3,5] b[3]\nh = tanh(W @ x + b)\n\
         y = logsumexp(h) + dot(h, h) * mean(x) - sum(exp(x) / 5)\noutput y",
        "input x[4]  t\nparam V[4,6]\nz = x @ V\ns = softmax(z)\n\
         y = [s[0:2] * t, z[3], sigmoid(z[1:5]) ^ 2]\noutput y",
        "input x[3]  s\nparam w[3]\ny = [x[1] * s - x[2], s / (1 + dot(x, w)), sin(x) * w]\noutput y",
    ];

    /// Random values in [-0.8, 0.8) for every variable, B samples of each
    /// input.
    fn bind(program: &Program, batch: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
        program
            .variables
            .iter()
            .map(|v| {
                let n = match v.kind {
                    Kind::Input => batch * v.shape.size(),
                    Kind::Param => v.shape.size(),
                };
                (0..n).map(|_| rng.random_range(-0.8..0.8)).collect()
            })
            .collect()
    }

    /// The oracle's Jacobian of `program`'s output w.r.t. `wrt` at sample
    /// `b`, m x n.
    fn oracle(program: &Program, data: &[Vec<f32>], b: usize, wrt: usize) -> Vec<f64> {
        let sample: Vec<Vec<f64>> = program
            .variables
            .iter()
            .zip(data)
            .map(|(v, d)| {
                let n = v.shape.size();
                let start = if v.kind == Kind::Input { b * n } else { 0 };
                d[start..start + n].iter().map(|&x| f64::from(x)).collect()
            })
            .collect();
        let refs: Vec<&[f64]> = sample.iter().map(Vec::as_slice).collect();
        program.jacobian_dense(&refs, wrt).expect("the oracle")
    }

    fn close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                "{what}: {g:e} against the oracle's {w:e}"
            );
        }
    }

    #[test]
    fn host_passes_match_the_oracle_in_every_mode() {
        let batch = 3;
        let mut rng = crate::testing::rng("host passes");
        for text in PROGRAMS {
            let program = Program::parse(text).expect("parses");
            let data = bind(&program, batch, &mut rng);
            let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
            let m = program.shapes[program.output].size();
            for (v, variable) in program.variables.iter().enumerate() {
                if variable.kind != Kind::Input {
                    continue;
                }
                let n = variable.shape.size();
                let truth: Vec<Vec<f64>> =
                    (0..batch).map(|b| oracle(&program, &data, b, v)).collect();
                // The Jacobian, by tangents (m >= n) or cotangents (m < n).
                let plan = compile::jacobian_any_size(&program, v, true).expect("compiles");
                let out: FusedOutput<f64> =
                    run_on_host(&program, &plan, &refs, batch, 1.0, None).expect("runs");
                close(
                    &out.per_sample[0],
                    &truth.concat(),
                    &format!("{text}\nJacobian d/d{}", variable.name),
                );
                // A JVP and a VJP with seeds whose products are known.
                let tangents = bind(&program, batch * n, &mut rng)[v][..batch * n].to_vec();
                let cotangents: Vec<f32> = (0..batch * m)
                    .map(|i| (i % 7) as f32 * 0.25 - 0.5)
                    .collect();
                for (plan, seed_rows, size, expected) in [
                    (
                        compile::jvp(&program, v, true).expect("compiles"),
                        &tangents,
                        n,
                        (0..batch)
                            .flat_map(|b| {
                                (0..m)
                                    .map(|i| {
                                        (0..n)
                                            .map(|j| {
                                                truth[b][i * n + j] * f64::from(tangents[b * n + j])
                                            })
                                            .sum::<f64>()
                                    })
                                    .collect::<Vec<_>>()
                            })
                            .collect::<Vec<f64>>(),
                    ),
                    (
                        compile::vjp(&program, v, true).expect("compiles"),
                        &cotangents,
                        m,
                        (0..batch)
                            .flat_map(|b| {
                                (0..n)
                                    .map(|j| {
                                        (0..m)
                                            .map(|i| {
                                                f64::from(cotangents[b * m + i])
                                                    * truth[b][i * n + j]
                                            })
                                            .sum::<f64>()
                                    })
                                    .collect::<Vec<_>>()
                            })
                            .collect::<Vec<f64>>(),
                    ),
                ] {
                    let out: FusedOutput<f64> =
                        run_on_host(&program, &plan, &refs, batch, 1.0, Some((seed_rows, size)))
                            .expect("runs");
                    close(
                        &out.per_sample[0],
                        &expected,
                        &format!("{text}\n{:?} d/d{}", plan.mode, variable.name),
                    );
                }
            }
        }
    }

    #[test]
    fn host_sweeps_write_every_destination() {
        // Two sweeps of one program: the loss's batch sums (a matrix
        // param, a vector param) and an input's shares, and a line's
        // per-sample gradients.
        let text = "input x[5]\nparam W[3,5] b[3]\nh = tanh(W @ x + b)\na = sum(h)\n\
                    loss = logsumexp(h) * a\noutput loss";
        let program = Program::parse(text).expect("parses");
        let batch = 4;
        let data = bind(&program, batch, &mut crate::testing::rng("host sweeps"));
        let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let var = |name: &str| program.variable(name).expect("declared");
        let (x, w, b) = (var("x"), var("W"), var("b"));
        let a = program.line("a").expect("a line");
        let sweeps = [
            Sweep {
                of: program.output,
                wrt: vec![
                    (w, Destination::Summed),
                    (b, Destination::Summed),
                    (x, Destination::Share),
                ],
            },
            Sweep {
                of: a,
                wrt: vec![(w, Destination::PerSample)],
            },
        ];
        let plan = compile::gradients(&program, &sweeps, true).expect("compiles");
        let scale = 0.25;
        let out: FusedOutput<f64> =
            run_on_host(&program, &plan, &refs, batch, scale, None).expect("runs");
        let line = program.with_output("a").expect("a line");
        let mut summed = vec![0.0; plan.summed_width];
        for s in 0..batch {
            let gw = oracle(&program, &data, s, w);
            let gb = oracle(&program, &data, s, b);
            add(&mut summed[..15], &gw);
            add(&mut summed[15..], &gb);
            let gx: Vec<f64> = oracle(&program, &data, s, x)
                .iter()
                .map(|g| g * scale)
                .collect();
            close(
                &out.per_sample[2][s * 5..(s + 1) * 5],
                &gx,
                "d loss/dx, shared",
            );
            close(
                &out.per_sample[3][s * 15..(s + 1) * 15],
                &oracle(&line, &data, s, w),
                "d a/dW per sample",
            );
        }
        close(&out.summed, &summed, "d loss/dW and d loss/db summed");
        assert_eq!(out.values.len(), 2, "a value row per sweep");
    }
}
