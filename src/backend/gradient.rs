//! Gradients of a scalar output (a loss) by reverse accumulation: the
//! cotangent of each variable is a vector-Jacobian product through the
//! structured local Jacobians, planned like any other chain. A matrix W
//! enters through `W @ v`, whose cotangent g gives W's gradient as the outer
//! product g v^T per sample, or summed over the batch as G^T V, one matrix
//! product over the rows of each segment.
//! Gradients are of the batch mean of the output unless per-sample ones are
//! asked for.

use crate::backend::Backend;
use crate::backend::chain::reverse_cotangents;
use crate::backend::cpu_program::{CpuAlgebra, forward};
use crate::backend::gpu::{BatchLayout, GpuJacobian};
use crate::backend::selection::CpuJacobian;
use crate::backend::vector::bind;
use crate::compile::{self, Destination, Sweep};
use crate::error::{Error, Result};
use crate::jacobian::Jacobian;
use crate::ops::chain_mul;
use crate::program::{Kind, Program, Shape};

/// Batch mean, or one gradient per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The gradient of the mean of the output over the batch.
    #[default]
    Mean,
    /// Each sample's gradient of its own output.
    PerSample,
}

/// One variable's gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// The variable.
    pub name: String,
    /// Its array shape: the variable's shape, with the batch first for
    /// per-sample gradients and for inputs (whose gradient is per sample).
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f32>,
}

/// The output's values and the gradients asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientOutput {
    /// The output (for [`Backend::gradients`], the requested line) for
    /// each sample.
    pub values: Vec<f32>,
    /// Their mean over the batch (the batch's loss, for a loss).
    pub mean: f64,
    /// One per variable asked for, in the order asked.
    pub gradients: Vec<Gradient>,
}

/// One request of [`Backend::gradients`]: the gradient of the scalar line
/// `of` (the output's name, or any line the output reads) with respect to
/// the variables `wrt`, reduced over the batch by `reduction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradientRequest<'a> {
    /// The line differentiated.
    pub of: &'a str,
    /// The variables, by name.
    pub wrt: &'a [&'a str],
    /// Batch mean, or one gradient per sample.
    pub reduction: Reduction,
}

/// How one variable's gradient is formed.
enum Target {
    /// The cotangent of the variable's own node.
    Node { node: usize },
    /// A matrix: the cotangents of its products `W @ v`, each with `v`.
    Matrix {
        uses: Vec<(usize, usize, bool)>,
        rows: usize,
        cols: usize,
    },
}

fn target(program: &Program, variable: usize) -> Result<Target> {
    let node = program.variable_node(variable);
    let Some(node) = node else {
        return Err(Error::InvalidArgument(format!(
            "`{}` does not affect the output, so its gradient is zero; remove it from the request",
            program.variables[variable].name
        )));
    };
    match program.variables[variable].node_shape() {
        Shape::Matrix(rows, cols) => Ok(Target::Matrix {
            uses: program
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(id, op)| match op.matrix_product() {
                    Some((w, v, transposed)) if w == node => Some((id, v, transposed)),
                    _ => None,
                })
                .collect(),
            rows,
            cols,
        }),
        _ => Ok(Target::Node { node }),
    }
}

fn dims(program: &Program, variable: usize, batch: Option<usize>) -> Vec<usize> {
    let mut dims: Vec<usize> = batch.into_iter().collect();
    match program.variables[variable].shape {
        Shape::Scalar => {}
        Shape::Vector(n) => dims.push(n),
        Shape::Matrix(m, n) => {
            dims.push(m);
            dims.push(n);
        }
    }
    dims
}

/// Sums B x size per-sample rows, scaled.
fn batch_sum(rows: &[f64], size: usize, scale: f64) -> Vec<f32> {
    let mut total = vec![0f64; size];
    for row in rows.chunks(size.max(1)) {
        for (t, v) in total.iter_mut().zip(row) {
            *t += v;
        }
    }
    total.into_iter().map(|t| (t * scale) as f32).collect()
}

impl Backend {
    /// Gradients of `program`'s scalar output w.r.t. the named variables,
    /// with each variable's values by name (inputs B x size, parameters
    /// their size). With [`Reduction::Mean`] a parameter's gradient is that
    /// of the batch mean, and an input's is each sample's share of it. A
    /// variable the output does not read has a gradient of zeros (as in
    /// JAX), of the shape it would have otherwise.
    pub fn gradient(
        &self,
        program: &Program,
        wrt: &[&str],
        variables: &[(&str, &[f32])],
        reduction: Reduction,
    ) -> Result<GradientOutput> {
        check_request(program, wrt)?;
        // Variables the output reads go through the planner; the others'
        // gradients are zeros, spliced in where they were asked for.
        let unread = |name: &str| {
            program
                .variable(name)
                .filter(|&v| program.variable_node(v).is_none())
        };
        let read: Vec<&str> = wrt
            .iter()
            .copied()
            .filter(|n| unread(n).is_none())
            .collect();
        let mut out = if read.is_empty() {
            output(self.values(program, variables)?, Vec::new())
        } else {
            self.gradient_of_read(program, &read, variables, reduction)?
        };
        let batch = out.values.len();
        let mut computed = std::mem::take(&mut out.gradients).into_iter();
        for name in wrt {
            let Some(v) = unread(name) else {
                out.gradients.extend(computed.next());
                continue;
            };
            let per_batch =
                reduction == Reduction::PerSample || program.variables[v].kind == Kind::Input;
            let shape = dims(program, v, per_batch.then_some(batch));
            let size = shape.iter().product();
            out.gradients.push(Gradient {
                name: (*name).to_string(),
                shape,
                values: vec![0.0; size],
            });
        }
        Ok(out)
    }

    /// Several gradients of one program's lines, each a
    /// [`GradientRequest`], with the variables' values by name as for
    /// [`Backend::gradient`]; one [`GradientOutput`] per request, in order,
    /// each holding its line's values. On the GPU the requests share one
    /// fused kernel where the program compiles to one: one forward pass, a
    /// reverse sweep per request, the inputs read once. W3's batch-mean
    /// gradient of the loss beside each sample's gradient of the
    /// activation is two requests of one program.
    ///
    /// Every declared variable is bound, as for the program's output. A
    /// request naming a variable its line does not read gets zeros for it,
    /// and then each request runs by itself (still correct, no longer one
    /// kernel).
    ///
    /// Errors: no request, or any error [`Backend::gradient`] gives for a
    /// request, with `of` in place of the output; a name that is not a
    /// line of the program.
    pub fn gradients(
        &self,
        program: &Program,
        requests: &[GradientRequest<'_>],
        variables: &[(&str, &[f32])],
    ) -> Result<Vec<GradientOutput>> {
        program.check()?;
        if requests.is_empty() {
            return Err(Error::InvalidArgument(
                "ask for at least one gradient".into(),
            ));
        }
        let lines: Vec<Program> = requests
            .iter()
            .map(|r| program.with_output(r.of))
            .collect::<Result<_>>()?;
        for (request, line) in requests.iter().zip(&lines) {
            check_request(line, request.wrt)?;
        }
        let (bound, batch) = bind(program, variables)?;
        let mut sweeps = Vec::new();
        for request in requests {
            let Some(of) = program.line(request.of) else {
                return Err(Error::InvalidArgument(format!(
                    "`{}` is not a line of the program",
                    request.of
                )));
            };
            let indices: Vec<usize> = request
                .wrt
                .iter()
                .map(|name| variable_index(program, name))
                .collect::<Result<_>>()?;
            sweeps.push((of, indices, request.reduction));
        }
        if let Some(outs) = fused(self, program, &sweeps, &bound, batch)? {
            return Ok(outs);
        }
        requests
            .iter()
            .zip(&lines)
            .map(|(r, line)| self.gradient(line, r.wrt, variables, r.reduction))
            .collect()
    }

    /// Gradients of variables the output reads (the checks above passed).
    fn gradient_of_read(
        &self,
        program: &Program,
        wrt: &[&str],
        variables: &[(&str, &[f32])],
        reduction: Reduction,
    ) -> Result<GradientOutput> {
        let indices: Vec<usize> = wrt
            .iter()
            .map(|name| variable_index(program, name))
            .collect::<Result<_>>()?;
        let (bound, batch) = bind(program, variables)?;
        let targets: Vec<Target> = indices
            .iter()
            .map(|&v| target(program, v))
            .collect::<Result<_>>()?;
        // The nodes whose cotangents are needed: those that depend on a
        // variable asked for (the product `W @ v` depends on W).
        let mut needed = vec![false; program.nodes.len()];
        for target in &targets {
            match target {
                Target::Node { node } => needed[*node] = true,
                Target::Matrix { uses, .. } => {
                    for &(product, ..) in uses {
                        needed[product] = true;
                    }
                }
            }
        }
        for id in 0..program.nodes.len() {
            if program.nodes[id].operands().any(|o| needed[o]) {
                needed[id] = true;
            }
        }
        let sweep = [(program.output, indices.clone(), reduction)];
        if let Some(out) =
            fused(self, program, &sweep, &bound, batch)?.and_then(|outs| outs.into_iter().next())
        {
            return Ok(out);
        }
        let ones = vec![1.0f32; batch];
        let scale = 1.0 / batch as f64;
        match self {
            Backend::Cpu(_) => {
                let forward = forward(program, &bound, batch)?;
                let seed = Jacobian::Dense {
                    batch,
                    rows: 1,
                    cols: 1,
                    data: vec![1.0; batch],
                };
                let mut algebra = CpuAlgebra {
                    program,
                    forward: &forward,
                    seed: None,
                };
                let seed = CpuJacobian::Structured(seed);
                let cotangents = reverse_cotangents(program, &mut algebra, seed, &needed)?;
                let cotangent = |node: usize| -> Result<Vec<f64>> {
                    cotangents
                        .get(node)
                        .cloned()
                        .flatten()
                        .ok_or_else(|| Error::Shape(format!("node {node} got no cotangent")))?
                        .into_jacobian()?
                        .try_to_dense(batch)
                };
                let mut gradients = Vec::new();
                for (&variable, target) in indices.iter().zip(&targets) {
                    let (per_sample, size) = match target {
                        Target::Node { node } => (cotangent(*node)?, program.shapes[*node].size()),
                        Target::Matrix { uses, rows, cols } => {
                            // A batch mean's outer products are summed as
                            // they are formed: one rows x cols matrix, not
                            // one a sample.
                            let summed = reduction == Reduction::Mean;
                            let samples = if summed { 1 } else { batch };
                            let mut outer = crate::jacobian::zeros(
                                &[samples, *rows, *cols],
                                &"per-sample weight gradients",
                            )?;
                            for &(product, v, transposed) in uses {
                                let g = cotangent(product)?;
                                let per = g.len() / batch.max(1);
                                for b in 0..batch {
                                    let at = if summed { 0 } else { b };
                                    let (gb, vb) = (&g[b * per..(b + 1) * per], forward.row(v, b));
                                    // W @ v: g v^T; v @ W: v g^T.
                                    let (left, right) =
                                        if transposed { (vb, gb) } else { (gb, vb) };
                                    for i in 0..*rows {
                                        for j in 0..*cols {
                                            outer[(at * rows + i) * cols + j] +=
                                                chain_mul(left[i], right[j]);
                                        }
                                    }
                                }
                            }
                            (outer, rows * cols)
                        }
                    };
                    gradients.push(finish(
                        program, variable, per_sample, size, batch, reduction, scale,
                    ));
                }
                let values: Vec<f32> = forward
                    .batch_rows(program.output)
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                Ok(output(values, gradients))
            }
            Backend::Gpu(context) => {
                let largest = program.shapes.iter().map(|s| s.size()).max().unwrap_or(1);
                // The reverse pass forms nothing larger per sample than a
                // node's value: cotangent rows and W's outer products.
                let layout = context.batch_layout(batch, largest)?;
                let forward = context.forward(program, &bound, layout, &indices)?;
                let seed = context.upload_jacobian(
                    &Jacobian::Dense {
                        batch,
                        rows: 1,
                        cols: 1,
                        data: vec![1.0; batch],
                    },
                    layout,
                )?;
                let mut algebra = super::gpu::program_algebra(context, program, &forward, None);
                let cotangents = reverse_cotangents(
                    program,
                    &mut algebra,
                    crate::backend::gpu::jacobian_lazy::Lazy::Ready(seed),
                    &needed,
                )?;
                let cotangent = |node: usize| -> Result<GpuJacobian> {
                    let lazy = cotangents
                        .get(node)
                        .cloned()
                        .flatten()
                        .ok_or_else(|| Error::Shape(format!("node {node} got no cotangent")))?;
                    context.materialize(lazy, layout)
                };
                let mut gradients = Vec::new();
                for (&variable, target) in indices.iter().zip(&targets) {
                    // A weight's gradient of the batch mean: G^T V, one
                    // product per segment over its rows, for every `W @ v`.
                    if let (Target::Matrix { uses, rows, cols }, Reduction::Mean) =
                        (target, reduction)
                    {
                        let mut total = vec![0f64; rows * cols];
                        for &(product, v, transposed) in uses {
                            // W @ v adds g v^T; v @ W adds v g^T, whose
                            // transpose g v^T is formed the same way (with
                            // W's dimensions swapped) and transposed back.
                            let (rows, cols) = if transposed {
                                (cols, rows)
                            } else {
                                (rows, cols)
                            };
                            let g = as_rows(cotangent(product)?, *rows)?;
                            let row = context.node_row(&forward, v, *cols)?;
                            let one = BatchLayout {
                                batch: 1,
                                per_segment: 1,
                            };
                            for (s, g_segment) in g.iter().enumerate() {
                                let samples = layout.samples_in(s);
                                let part = match &row {
                                    GpuJacobian::Dense { segments, .. } => {
                                        let v_segment = segments.get(s).ok_or_else(|| {
                                            Error::Shape(
                                                "values have fewer segments than the layout".into(),
                                            )
                                        })?;
                                        let buffer = context.transposed_product(
                                            g_segment,
                                            v_segment,
                                            (samples, *rows, *cols),
                                        )?;
                                        GpuJacobian::Shared {
                                            rows: *rows,
                                            cols: *cols,
                                            buffer,
                                        }
                                    }
                                    // v shared by the batch: (sum of g) v^T.
                                    shared => {
                                        let g_rows = GpuJacobian::Shared {
                                            rows: samples,
                                            cols: *rows,
                                            buffer: g_segment.clone(),
                                        };
                                        let ones_row = GpuJacobian::Shared {
                                            rows: 1,
                                            cols: samples,
                                            buffer: context.upload_shared(&ones[..samples]),
                                        };
                                        let sum = context.matmul(
                                            None, &ones_row, None, &g_rows, None, false, one,
                                        )?;
                                        let column = match sum {
                                            GpuJacobian::Shared { buffer, .. } => {
                                                GpuJacobian::Shared {
                                                    rows: *rows,
                                                    cols: 1,
                                                    buffer,
                                                }
                                            }
                                            other => other,
                                        };
                                        context
                                            .matmul(None, &column, None, shared, None, false, one)?
                                    }
                                };
                                let part = context.download_jacobian(&part, one)?.to_dense(1);
                                for (e, p) in part.into_iter().enumerate() {
                                    // Entry (i, j) of the rows x cols part.
                                    let (i, j) = (e / cols, e % cols);
                                    let at = if transposed { j * rows + i } else { e };
                                    if let Some(t) = total.get_mut(at) {
                                        *t += p;
                                    }
                                }
                            }
                        }
                        gradients.push(Gradient {
                            name: program.variables[variable].name.clone(),
                            shape: dims(program, variable, None),
                            values: total.into_iter().map(|t| (t * scale) as f32).collect(),
                        });
                        continue;
                    }
                    let (rows_per_sample, size) = match target {
                        Target::Node { node } => {
                            let g = cotangent(*node)?;
                            let size = program.shapes[*node].size();
                            (as_rows(g, size)?, size)
                        }
                        Target::Matrix { uses, rows, cols } => {
                            let mut total: Option<GpuJacobian> = None;
                            for &(product, v, transposed) in uses {
                                // g (rows x 1) times v (1 x cols) per sample:
                                // the outer product; for v @ W, v (rows x 1)
                                // times g (1 x cols).
                                let outer = if transposed {
                                    let g = as_rows(cotangent(product)?, *cols)?;
                                    let column = match context.node_row(&forward, v, *rows)? {
                                        GpuJacobian::Dense { segments, .. } => GpuJacobian::Dense {
                                            rows: *rows,
                                            cols: 1,
                                            segments,
                                        },
                                        GpuJacobian::Shared { buffer, .. } => GpuJacobian::Shared {
                                            rows: *rows,
                                            cols: 1,
                                            buffer,
                                        },
                                        other => other,
                                    };
                                    let row = GpuJacobian::Dense {
                                        rows: 1,
                                        cols: *cols,
                                        segments: g,
                                    };
                                    context
                                        .matmul(None, &column, None, &row, None, false, layout)?
                                } else {
                                    let g = as_rows(cotangent(product)?, *rows)?;
                                    let column = GpuJacobian::Dense {
                                        rows: *rows,
                                        cols: 1,
                                        segments: g,
                                    };
                                    let row = context.node_row(&forward, v, *cols)?;
                                    context
                                        .matmul(None, &column, None, &row, None, false, layout)?
                                };
                                total = Some(match total {
                                    None => outer,
                                    Some(t) => context.jacobian_sum(&t, &outer, layout)?,
                                });
                            }
                            let total = total.ok_or_else(|| {
                                Error::InvalidArgument(
                                    "the matrix is never used in a product".into(),
                                )
                            })?;
                            (as_rows(total, rows * cols)?, rows * cols)
                        }
                    };
                    let values =
                        match (reduction, program.variables[variable].kind) {
                            (Reduction::Mean, Kind::Param) => {
                                // One product per segment, ones(1 x S) times the S x size rows.
                                let mut total = vec![0f64; size];
                                for (s, segment) in rows_per_sample.iter().enumerate() {
                                    let samples = layout.samples_in(s);
                                    let left = GpuJacobian::Shared {
                                        rows: 1,
                                        cols: samples,
                                        buffer: context.upload_shared(&ones[..samples]),
                                    };
                                    let right = GpuJacobian::Shared {
                                        rows: samples,
                                        cols: size,
                                        buffer: segment.clone(),
                                    };
                                    let one = BatchLayout {
                                        batch: 1,
                                        per_segment: 1,
                                    };
                                    let sum = context
                                        .matmul(None, &left, None, &right, None, false, one)?;
                                    let part = context.download_jacobian(&sum, one)?.to_dense(1);
                                    for (t, p) in total.iter_mut().zip(part) {
                                        *t += p;
                                    }
                                }
                                total.into_iter().map(|t| (t * scale) as f32).collect()
                            }
                            (Reduction::Mean, Kind::Input) => {
                                let rows = pollster::block_on(context.download_rows(
                                    layout,
                                    size,
                                    &rows_per_sample,
                                ))?;
                                rows.into_iter()
                                    .map(|v| (f64::from(v) * scale) as f32)
                                    .collect()
                            }
                            (Reduction::PerSample, _) => pollster::block_on(
                                context.download_rows(layout, size, &rows_per_sample),
                            )?,
                        };
                    let per_batch = reduction == Reduction::PerSample
                        || program.variables[variable].kind == Kind::Input;
                    gradients.push(Gradient {
                        name: program.variables[variable].name.clone(),
                        shape: dims(program, variable, per_batch.then_some(batch)),
                        values,
                    });
                }
                let values = context.download_node(&forward, program.output, 1)?;
                Ok(output(values, gradients))
            }
        }
    }
}

/// Checks one gradient request of `program`'s output: a valid program, a
/// scalar output, at least one variable.
fn check_request(program: &Program, wrt: &[&str]) -> Result<()> {
    program.check()?;
    if program.shapes[program.output] != Shape::Scalar {
        return Err(Error::Shape(format!(
            "a gradient needs a scalar output, but `{}` is {}; reduce it (sum, mean, mse, cross_entropy), or take its Jacobian (`chainrule jacobian`, or `Backend::jacobian` and `Backend::vjp` from Rust)",
            program.output_name, program.shapes[program.output]
        )));
    }
    if wrt.is_empty() {
        return Err(Error::InvalidArgument(
            "name at least one variable to differentiate".into(),
        ));
    }
    Ok(())
}

fn variable_index(program: &Program, name: &str) -> Result<usize> {
    program
        .variable(name)
        .ok_or_else(|| Error::InvalidArgument(format!("`{name}` is not a variable of the program")))
}

/// Gradients by the program compiler's plan (one fused kernel on the GPU,
/// its f64 twin on the CPU), a reverse sweep per request (the node
/// differentiated, the variables by index, the reduction), or `None` when
/// they do not compile to one (a variable the node does not read,
/// per-sample state too large for registers) and each should run by
/// itself on the structured plan.
fn fused(
    backend: &Backend,
    program: &Program,
    requests: &[(usize, Vec<usize>, Reduction)],
    bound: &[&[f32]],
    batch: usize,
) -> Result<Option<Vec<GradientOutput>>> {
    let sweeps: Vec<Sweep> = requests
        .iter()
        .map(|(of, indices, reduction)| Sweep {
            of: *of,
            wrt: indices
                .iter()
                .map(|&v| match (reduction, program.variables[v].kind) {
                    (Reduction::Mean, Kind::Param) => (v, Destination::Summed),
                    (Reduction::Mean, Kind::Input) => (v, Destination::Share),
                    (Reduction::PerSample, _) => (v, Destination::PerSample),
                })
                .collect(),
        })
        .collect();
    let Ok(plan) = compile::gradients(program, &sweeps, true) else {
        return Ok(None);
    };
    // Shares are of the batch mean, and so are summed gradients (only a
    // mean asks for them), scaled here.
    let scale = 1.0 / batch as f64;
    let Some(out) = backend.run_compiled(program, &plan, bound, batch, scale as f32, None)? else {
        return Ok(None);
    };
    let mut per_sample = out.per_sample;
    let mut slots = plan.gradients.iter().enumerate();
    let mut outs = Vec::with_capacity(requests.len());
    for ((_, indices, _), values) in requests.iter().zip(out.values) {
        let mut gradients = Vec::with_capacity(indices.len());
        for (k, slot) in slots.by_ref().take(indices.len()) {
            let name = program.variables[slot.variable].name.clone();
            gradients.push(if slot.destination.writes_rows() {
                Gradient {
                    name,
                    shape: dims(program, slot.variable, Some(batch)),
                    values: std::mem::take(&mut per_sample[k]),
                }
            } else {
                Gradient {
                    name,
                    shape: dims(program, slot.variable, None),
                    values: out.summed[slot.offset..slot.offset + slot.size]
                        .iter()
                        .map(|&t| (t * scale) as f32)
                        .collect(),
                }
            });
        }
        outs.push(output(values, gradients));
    }
    Ok(Some(outs))
}

/// The per-sample rows of a cotangent or outer product, as segments.
fn as_rows(j: GpuJacobian, size: usize) -> Result<crate::backend::gpu::Segments> {
    match j {
        GpuJacobian::Dense {
            rows,
            cols,
            segments,
        } if rows * cols == size => Ok(segments),
        other => Err(Error::Shape(format!(
            "expected {size} values per sample, got a {:?} Jacobian",
            other.dims()
        ))),
    }
}

fn finish(
    program: &Program,
    variable: usize,
    per_sample: Vec<f64>,
    size: usize,
    batch: usize,
    reduction: Reduction,
    scale: f64,
) -> Gradient {
    let kind = program.variables[variable].kind;
    let (shape, values) = match (reduction, kind) {
        (Reduction::Mean, Kind::Param) => (
            dims(program, variable, None),
            batch_sum(&per_sample, size, scale),
        ),
        (Reduction::Mean, Kind::Input) => (
            dims(program, variable, Some(batch)),
            per_sample.iter().map(|&v| (v * scale) as f32).collect(),
        ),
        (Reduction::PerSample, _) => (
            dims(program, variable, Some(batch)),
            per_sample.iter().map(|&v| v as f32).collect(),
        ),
    };
    Gradient {
        name: program.variables[variable].name.clone(),
        shape,
        values,
    }
}

fn output(values: Vec<f32>, gradients: Vec<Gradient>) -> GradientOutput {
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64;
    GradientOutput {
        values,
        mean,
        gradients,
    }
}
