//! Batched Jacobians, JVPs and VJPs of vector programs, on either backend:
//! binding the variables, planning (the scheduler), the forward pass and the
//! plan's products (the backend), and reading the result back.

use crate::backend::Backend;
use crate::backend::chain::run_plan;
use crate::backend::cpu_program::{CpuAlgebra, forward};
use crate::backend::gpu::{BatchLayout, GpuContext, GpuJacobian};
use crate::error::{Error, Result};
use crate::jacobian::{JacShape, Jacobian, Structure, product_shape};
use crate::program::{Kind, Op, Program};
use crate::schedule::chain::Bracketing;
use crate::schedule::vector::{Factor, JacobianPlan, Request, local_shape, plan};

/// A program's Jacobian over a batch, with the output values.
#[derive(Debug, Clone, PartialEq)]
pub struct JacobianOutput {
    /// d output / d input, structured; `to_dense` gives B x m x n.
    pub jacobian: Jacobian,
    /// The output's values, B x m.
    pub values: Vec<f32>,
    /// The plan that computed it: the chain orders and their costs.
    pub plan: JacobianPlan,
    /// Samples.
    pub batch: usize,
}

/// The variables bound in declaration order, and the batch size.
pub(crate) fn bind<'a>(
    program: &Program,
    variables: &[(&str, &'a [f32])],
) -> Result<(Vec<&'a [f32]>, usize)> {
    for (name, _) in variables {
        if program.variable(name).is_none() {
            return Err(Error::InvalidArgument(format!(
                "`{name}` is not a variable of the program"
            )));
        }
    }
    let mut bound = Vec::with_capacity(program.variables.len());
    let mut batch: Option<(usize, &str)> = None;
    for variable in &program.variables {
        let mut matches = variables.iter().filter(|(n, _)| *n == variable.name);
        let (_, data) = matches.next().ok_or_else(|| {
            Error::InvalidArgument(format!("no values given for `{}`", variable.name))
        })?;
        if matches.next().is_some() {
            return Err(Error::InvalidArgument(format!(
                "`{}` is given twice",
                variable.name
            )));
        }
        let size = variable.shape.size();
        match variable.kind {
            Kind::Param => {
                if data.len() != size {
                    return Err(Error::Shape(format!(
                        "parameter `{}` is declared {} ({size} values) but {} were given",
                        variable.name,
                        variable.shape,
                        data.len()
                    )));
                }
            }
            Kind::Input => {
                if data.len() % size != 0 {
                    return Err(Error::Shape(format!(
                        "input `{}` is declared {}: {} values are not a whole number of samples",
                        variable.name,
                        variable.shape,
                        data.len()
                    )));
                }
                let b = data.len() / size;
                match batch {
                    Some((first, other)) if first != b => {
                        return Err(Error::Shape(format!(
                            "input `{}` has {b} samples but `{other}` has {first}",
                            variable.name
                        )));
                    }
                    _ => batch = Some((b, variable.name.as_str())),
                }
            }
        }
        bound.push(*data);
    }
    if program.inputs().is_empty() {
        return Err(Error::InvalidArgument(
            "the program has no input, so no batch to run: declare at least one `input`".into(),
        ));
    }
    let batch = batch.map_or(0, |(b, _)| b);
    if batch == 0 {
        return Err(Error::InvalidArgument(
            "the batch is empty: give each input at least one sample".into(),
        ));
    }
    Ok((bound, batch))
}

fn wrt_index(program: &Program, wrt: &str) -> Result<usize> {
    let index = program.variable(wrt).ok_or_else(|| {
        Error::InvalidArgument(format!("`{wrt}` is not a variable of the program"))
    })?;
    if program.variables[index].kind != Kind::Input {
        return Err(Error::InvalidArgument(format!(
            "`{wrt}` is a parameter; Jacobians are taken with respect to inputs"
        )));
    }
    Ok(index)
}

/// The largest per-sample matrix any step of the plan produces or reads.
fn largest_per_sample(
    program: &Program,
    plan: &JacobianPlan,
    seed: Option<JacShape>,
) -> Result<usize> {
    let mut largest = program.shapes.iter().map(|s| s.size()).max().unwrap_or(1);
    let mut shared_shapes: Vec<(usize, JacShape)> = Vec::new();
    for step in plan.shared.iter().chain(std::iter::once(&plan.output)) {
        largest = largest.max(stored(step.shape));
        for term in &step.terms {
            let shapes: Vec<JacShape> = term
                .factors
                .iter()
                .map(|&f| match f {
                    Factor::Local { node, slot } => local_shape(program, node, slot),
                    Factor::Shared(node) => shared_shapes
                        .iter()
                        .find(|(n, _)| *n == node)
                        .map(|(_, s)| *s)
                        .ok_or_else(|| Error::Shape("shared step missing".into())),
                    Factor::Seed => seed.ok_or_else(|| Error::Shape("no seed".into())),
                })
                .collect::<Result<_>>()?;
            if let Some(order) = &term.order {
                largest = largest.max(walk(&order.bracketing, &shapes, plan.batch)?.rows_cols());
            }
        }
        shared_shapes.push((step.node, step.shape));
    }
    Ok(largest)
}

trait RowsCols {
    fn rows_cols(&self) -> usize;
}

impl RowsCols for (JacShape, usize) {
    fn rows_cols(&self) -> usize {
        self.1
    }
}

/// The floats a Jacobian of this shape keeps in one buffer: a sample's
/// diagonal or dense block, a selection's indices, or the shared matrix
/// (which must fit a binding too); none for the identity. A diagonal is
/// its n elements, not n x n: the gradient of `sum(sin(x))` for x of
/// 20,000 elements is 20,000 floats a sample, not 400 million.
fn stored(s: JacShape) -> usize {
    match s.structure {
        Structure::Identity => 0,
        Structure::Diagonal | Structure::Selection => s.rows,
        Structure::Shared | Structure::Dense => s.rows * s.cols,
    }
}

/// The result shape of a bracketing, and the largest product inside it.
fn walk(tree: &Bracketing, shapes: &[JacShape], batch: usize) -> Result<(JacShape, usize)> {
    match tree {
        Bracketing::Leaf(i) => {
            let s = shapes
                .get(*i)
                .copied()
                .ok_or_else(|| Error::Shape("factor missing".into()))?;
            Ok((s, stored(s)))
        }
        Bracketing::Product(l, r) => {
            let (ls, lmax) = walk(l, shapes, batch)?;
            let (rs, rmax) = walk(r, shapes, batch)?;
            let (s, _) = product_shape(ls, rs, batch)?;
            Ok((s, lmax.max(rmax).max(stored(s))))
        }
    }
}

/// A layout must hold whole samples, and the Jacobian the batch it names.
fn check_layout(layout: BatchLayout, j: &Jacobian) -> Result<()> {
    if layout.per_segment == 0 && layout.batch > 0 {
        return Err(Error::InvalidArgument(
            "a batch layout needs at least one sample per segment".into(),
        ));
    }
    match j {
        Jacobian::Diagonal { batch, .. } | Jacobian::Dense { batch, .. }
            if *batch != layout.batch =>
        {
            Err(Error::Shape(format!(
                "the Jacobian holds {batch} samples but the layout {}",
                layout.batch
            )))
        }
        _ => Ok(()),
    }
}

/// A device Jacobian's segments must be the layout's.
fn check_segments(layout: BatchLayout, j: &GpuJacobian) -> Result<()> {
    match j {
        GpuJacobian::Diagonal { segments, .. } | GpuJacobian::Dense { segments, .. }
            if segments.len() != layout.segments() || layout.per_segment == 0 =>
        {
            Err(Error::Shape(format!(
                "the Jacobian has {} segments but the layout {}",
                segments.len(),
                layout.segments()
            )))
        }
        _ => Ok(()),
    }
}

impl GpuContext {
    /// A structured Jacobian on the device (f32) from the f64 reference type.
    pub fn upload_jacobian(&self, j: &Jacobian, layout: BatchLayout) -> Result<GpuJacobian> {
        check_layout(layout, j)?;
        let f32s = |d: &[f64]| d.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        Ok(match j {
            Jacobian::Identity { n } => GpuJacobian::Identity { n: *n },
            Jacobian::Diagonal { n, data, .. } => GpuJacobian::Diagonal {
                n: *n,
                segments: self.upload_segments(layout, *n, &f32s(data))?,
            },
            Jacobian::Shared { rows, cols, data } => GpuJacobian::Shared {
                rows: *rows,
                cols: *cols,
                buffer: self.upload_shared(&f32s(data)),
            },
            Jacobian::Dense {
                rows, cols, data, ..
            } => GpuJacobian::Dense {
                rows: *rows,
                cols: *cols,
                segments: self.upload_segments(layout, rows * cols, &f32s(data))?,
            },
        })
    }

    /// Reads a structured Jacobian back, keeping its structure.
    pub fn download_jacobian(&self, j: &GpuJacobian, layout: BatchLayout) -> Result<Jacobian> {
        check_segments(layout, j)?;
        let f64s = |d: Vec<f32>| d.into_iter().map(f64::from).collect::<Vec<f64>>();
        pollster::block_on(async {
            Ok(match j {
                GpuJacobian::Identity { n } => Jacobian::Identity { n: *n },
                GpuJacobian::Diagonal { n, segments } => Jacobian::Diagonal {
                    batch: layout.batch,
                    n: *n,
                    data: f64s(self.download_segments(layout, *n, segments).await?),
                },
                GpuJacobian::Shared { rows, cols, buffer } => {
                    let one = BatchLayout {
                        batch: 1,
                        per_segment: 1,
                    };
                    Jacobian::Shared {
                        rows: *rows,
                        cols: *cols,
                        data: f64s(
                            self.download_segments(one, rows * cols, &vec![buffer.clone()])
                                .await?,
                        ),
                    }
                }
                GpuJacobian::Dense {
                    rows,
                    cols,
                    segments,
                } => Jacobian::Dense {
                    batch: layout.batch,
                    rows: *rows,
                    cols: *cols,
                    data: f64s(
                        self.download_segments(layout, rows * cols, segments)
                            .await?,
                    ),
                },
            })
        })
    }

    /// The product of a chain of device Jacobians in the given bracketing,
    /// diagonals folded into the products' kernels.
    pub fn chain_product(
        &self,
        factors: &[GpuJacobian],
        bracketing: &Bracketing,
        layout: BatchLayout,
    ) -> Result<GpuJacobian> {
        fn go(
            context: &GpuContext,
            factors: &[GpuJacobian],
            tree: &Bracketing,
            layout: BatchLayout,
        ) -> Result<super::gpu::jacobian_lazy::Lazy> {
            match tree {
                Bracketing::Leaf(i) => factors
                    .get(*i)
                    .cloned()
                    .map(super::gpu::jacobian_lazy::Lazy::Ready)
                    .ok_or_else(|| Error::Shape(format!("factor {i} missing"))),
                Bracketing::Product(l, r) => {
                    let left = go(context, factors, l, layout)?;
                    let right = go(context, factors, r, layout)?;
                    context.lazy_product(left, right, layout)
                }
            }
        }
        for factor in factors {
            check_segments(layout, factor)?;
        }
        let lazy = go(self, factors, bracketing, layout)?;
        self.materialize(lazy, layout)
    }
}

/// Each sample's dense Jacobian (and the values) by the program
/// compiler's plan (the fused kernel, or its f64 twin on the CPU), or
/// `None` when it is too large for one.
fn fused_jacobian(
    backend: &Backend,
    program: &Program,
    wrt: usize,
    bound: &[&[f32]],
    batch: usize,
    selects: bool,
) -> Result<Option<(Vec<f64>, Vec<f32>)>> {
    // With selections the structured plan runs op by op on the device, a
    // kernel per node and a gather per product with a selection, so the
    // fused kernel takes any size its budgets allow.
    let plan = if selects {
        crate::compile::jacobian_any_size(program, wrt, true)
    } else {
        crate::compile::jacobian(program, wrt, true)
    };
    let Ok(plan) = plan else {
        return Ok(None);
    };
    let Some(mut out) = backend.run_compiled::<f64>(program, &plan, bound, batch, 1.0, None)?
    else {
        return Ok(None);
    };
    let values = out.take_values();
    Ok(Some((out.per_sample.swap_remove(0), values)))
}

/// A JVP or VJP by the program compiler's plan (the fused kernel, or its
/// f64 twin on the CPU), or `None` when the program does not compile to
/// one and the structured plan should run.
fn fused_seeded(
    backend: &Backend,
    program: &Program,
    wrt: &str,
    variables: &[(&str, &[f32])],
    request: Request,
    seed: &[f32],
) -> Result<Option<Vec<f32>>> {
    program.check()?;
    let wrt = wrt_index(program, wrt)?;
    let (bound, batch) = bind(program, variables)?;
    let n = program.variables[wrt].shape.size();
    let m = program.shapes[program.output].size();
    let (plan, seed_size) = match request {
        Request::Jvp => (crate::compile::jvp(program, wrt, true), n),
        Request::Vjp => (crate::compile::vjp(program, wrt, true), m),
        Request::Jacobian => return Ok(None),
    };
    if seed.len() != batch * seed_size {
        let what = if request == Request::Jvp {
            "tangents"
        } else {
            "cotangents"
        };
        return Err(Error::Shape(format!(
            "{what}: expected {batch} x {seed_size} values, got {}",
            seed.len()
        )));
    }
    let Ok(plan) = plan else {
        return Ok(None);
    };
    let out = backend.run_compiled(program, &plan, &bound, batch, 1.0, Some((seed, seed_size)))?;
    Ok(out.map(|mut out| out.per_sample.swap_remove(0)))
}

fn seed_jacobian(
    request: Request,
    data: &[f32],
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<Jacobian> {
    if data.len() != batch * rows * cols {
        let what = if request == Request::Jvp {
            "tangents"
        } else {
            "cotangents"
        };
        return Err(Error::Shape(format!(
            "{what}: expected {batch} x {} values, got {}",
            rows * cols,
            data.len()
        )));
    }
    Ok(Jacobian::Dense {
        batch,
        rows,
        cols,
        data: data.iter().map(|&x| f64::from(x)).collect(),
    })
}

impl GpuContext {
    /// Runs `plan` on the device: forward pass, then the plan's products,
    /// leaving the result there.
    fn run_on_device(
        &self,
        program: &Program,
        plan: &JacobianPlan,
        bound: &[&[f32]],
        batch: usize,
        seed: Option<Jacobian>,
    ) -> Result<(GpuJacobian, BatchLayout, super::gpu::Forward)> {
        let n = program
            .variables
            .get(plan.wrt)
            .map_or(1, |v| v.shape.size());
        let seed_shape = seed.as_ref().map(Jacobian::shape);
        let largest = largest_per_sample(program, plan, seed_shape)?;
        let layout = self.batch_layout(batch, largest)?;
        let forward = self.forward(program, bound, layout, &[plan.wrt])?;
        let seed = seed.map(|s| self.upload_jacobian(&s, layout)).transpose()?;
        let mut algebra = super::gpu::program_algebra(self, program, &forward, seed);
        let result = run_plan(plan, &mut algebra, n)?;
        let result = self.materialize(result, layout)?;
        Ok((result, layout, forward))
    }

    /// The batched Jacobian of `program`'s output w.r.t. input `wrt`, left
    /// on the device (the inputs are uploaded; nothing is read back), for
    /// callers that chain GPU work, and for timing. Call
    /// [`GpuContext::synchronize`] to wait for it, or download it.
    pub fn jacobian_on_device(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, &[f32])],
    ) -> Result<(GpuJacobian, BatchLayout)> {
        program.check()?;
        let wrt = wrt_index(program, wrt)?;
        let (bound, batch) = bind(program, variables)?;
        let plan = plan(program, wrt, Request::Jacobian, batch)?;
        let (result, layout, _) = self.run_on_device(program, &plan, &bound, batch, None)?;
        Ok((result, layout))
    }
}

impl Backend {
    fn run_request(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, &[f32])],
        request: Request,
        seed: Option<&[f32]>,
    ) -> Result<JacobianOutput> {
        // A program built by hand rather than parsed is checked here, so
        // that nothing below can index out of range.
        program.check()?;
        let wrt = wrt_index(program, wrt)?;
        let (bound, batch) = bind(program, variables)?;
        let plan = plan(program, wrt, request, batch)?;
        let n = program.variables[wrt].shape.size();
        let m = program.shapes[program.output].size();
        let seed = match (request, seed) {
            (Request::Jacobian, _) => None,
            (Request::Jvp, Some(s)) => Some(seed_jacobian(request, s, batch, n, 1)?),
            (Request::Vjp, Some(s)) => Some(seed_jacobian(request, s, batch, 1, m)?),
            (_, None) => return Err(Error::InvalidArgument("a seed is needed".into())),
        };
        // A dense Jacobian, or one of a program with selections (which
        // the structured plan runs on the device a kernel per node), by the
        // compiler's plan where it fits one.
        let selects = program
            .nodes
            .iter()
            .any(|op| matches!(op, Op::Slice(..) | Op::Concat(..)));
        if request == Request::Jacobian
            && (plan.output.shape.structure == crate::jacobian::Structure::Dense || selects)
            && let Some((data, values)) =
                fused_jacobian(self, program, wrt, &bound, batch, selects)?
        {
            return Ok(JacobianOutput {
                jacobian: Jacobian::Dense {
                    batch,
                    rows: m,
                    cols: n,
                    data,
                },
                values,
                plan,
                batch,
            });
        }
        match self {
            Backend::Cpu(_) => {
                let forward = forward(program, &bound, batch)?;
                let mut algebra = CpuAlgebra {
                    program,
                    forward: &forward,
                    seed,
                };
                let jacobian = run_plan(&plan, &mut algebra, n)?.into_jacobian()?;
                let values = forward
                    .batch_rows(program.output)
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                Ok(JacobianOutput {
                    jacobian,
                    values,
                    plan,
                    batch,
                })
            }
            Backend::Gpu(context) => {
                // The output does not read `wrt`: a zero Jacobian, and the
                // values from the forward pass alone.
                if program.variable_node(wrt).is_none() {
                    let shape = plan.output.shape;
                    let values = context.output_values(program, &bound, batch)?;
                    return Ok(JacobianOutput {
                        jacobian: Jacobian::Dense {
                            batch,
                            rows: shape.rows,
                            cols: shape.cols,
                            data: crate::jacobian::zeros(&[batch, shape.rows, shape.cols], &shape)?,
                        },
                        values,
                        plan,
                        batch,
                    });
                }
                let (result, layout, forward) =
                    context.run_on_device(program, &plan, &bound, batch, seed)?;
                let jacobian = context.download_jacobian(&result, layout)?;
                let values = context.download_node(&forward, program.output, m)?;
                Ok(JacobianOutput {
                    jacobian,
                    values,
                    plan,
                    batch,
                })
            }
        }
    }

    /// A JVP or VJP, as B rows of f32.
    fn seeded(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, &[f32])],
        request: Request,
        seed: &[f32],
    ) -> Result<Vec<f32>> {
        if let Some(rows) = fused_seeded(self, program, wrt, variables, request, seed)? {
            return Ok(rows);
        }
        let out = self.run_request(program, wrt, variables, request, Some(seed))?;
        Ok(out
            .jacobian
            .try_to_dense(out.batch)?
            .into_iter()
            .map(|x| x as f32)
            .collect())
    }

    /// The output's values for each sample, B x its size (row-major), with
    /// each variable's values by name (inputs B x size, parameters their
    /// size), and no derivatives: on the GPU one fused forward kernel where
    /// the program fits registers (a kernel per node otherwise), in f64 on
    /// the CPU path.
    pub fn values(&self, program: &Program, variables: &[(&str, &[f32])]) -> Result<Vec<f32>> {
        program.check()?;
        let (bound, batch) = bind(program, variables)?;
        match self {
            Backend::Cpu(_) => {
                let forward = forward(program, &bound, batch)?;
                Ok(forward
                    .batch_rows(program.output)
                    .iter()
                    .map(|&v| v as f32)
                    .collect())
            }
            Backend::Gpu(context) => context.output_values(program, &bound, batch),
        }
    }

    /// The batched Jacobian of `program`'s output w.r.t. input `wrt`, with
    /// each variable's values by name (inputs B x size, parameters their size).
    pub fn jacobian(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, &[f32])],
    ) -> Result<JacobianOutput> {
        self.run_request(program, wrt, variables, Request::Jacobian, None)
    }

    /// J v for each sample: `tangents` B x n, result B x m.
    pub fn jvp(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, &[f32])],
        tangents: &[f32],
    ) -> Result<Vec<f32>> {
        self.seeded(program, wrt, variables, Request::Jvp, tangents)
    }

    /// u^T J for each sample: `cotangents` B x m, result B x n.
    pub fn vjp(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, &[f32])],
        cotangents: &[f32],
    ) -> Result<Vec<f32>> {
        self.seeded(program, wrt, variables, Request::Vjp, cotangents)
    }
}
