//! ndarray interop (cargo feature `ndarray`, on by default): the slice API of
//! [`Backend`] with `ArrayView`s in and owned `Array`s out, every shape
//! checked against the program before anything runs. The slice methods stay;
//! these call them, so both give the same numbers.
//!
//! # Shapes
//!
//! The batch comes first, then the variable's declared shape (JAX's
//! convention; a scalar's shape is empty):
//!
//! | what | declared | array shape |
//! |------|----------|-------------|
//! | an input | scalar, `[n]`, `[r,c]` | (B,), (B, n), (B, r, c) |
//! | a parameter | scalar, `[n]`, `[r,c]` | (), (n,), (r, c) |
//! | output values | m... | (B, m...) |
//! | Jacobian of the output w.r.t. input `wrt` (n...) | | (B, m..., n...) |
//! | JVP: tangents in, products out | | (B, n...) in, (B, m...) out |
//! | VJP: cotangents in, products out | | (B, m...) in, (B, n...) out |
//! | gradient, [`Reduction::Mean`], of a parameter | | its own shape |
//! | gradient of an input, or [`Reduction::PerSample`] | | (B, shape...) |
//!
//! Variables are passed as `ArrayViewD`s; a fixed-rank view converts with
//! `.into_dyn()` (an `ArrayView2` of shape (B, n) for an input `[n]`).
//!
//! # Layout
//!
//! Any view is accepted. A view in standard (row-major, contiguous) layout is
//! read in place; any other (a transpose, a strided slice, negative strides)
//! is copied once into row-major order first, so a result never depends on
//! how its inputs lie in memory, only on their logical shape.
//!
//! # Errors
//!
//! A shape that does not match the program is [`Error::Shape`], naming the
//! variable, the shape expected and the shape given; an unknown variable is
//! [`Error::InvalidArgument`]. Nothing here panics.
//!
//! ```
//! use chainrule::ndarray::{Array2, arr1, array};
//! use chainrule::program::Program;
//! use chainrule::{Backend, CpuBackend, Error, UnaryOp};
//!
//! let backend = Backend::Cpu(CpuBackend);
//! let xs = Array2::<f32>::zeros((2, 3));
//! let out = backend.unary_array(UnaryOp::Sigmoid, xs.t())?; // a transposed view
//! assert_eq!(out.derivatives.shape(), &[3, 2]);
//! assert_eq!(out.derivatives[[2, 1]], 0.25);
//!
//! let program = Program::parse("input x[3]\nparam W[2,3]\ny = W @ x\noutput y")?;
//! let w = array![[1f32, 2., 3.], [4., 5., 6.]];
//! let vars = [("x", xs.view().into_dyn()), ("W", w.view().into_dyn())];
//! let out = backend.jacobian_array(&program, "x", &vars)?;
//! assert_eq!(out.jacobian.shape(), &[2, 2, 3]); // (B, m, n)
//! assert_eq!(out.jacobian[[1, 1, 2]], 6.0); // dy_1/dx_2 = W[1, 2]
//!
//! // x flattened to (6,) is refused: the batch comes first, (B, 3).
//! let flat = arr1(&[0f32; 6]);
//! let vars = [("x", flat.view().into_dyn()), ("W", w.view().into_dyn())];
//! let refused = backend.jacobian_array(&program, "x", &vars);
//! assert!(matches!(refused, Err(Error::Shape(_))));
//! # Ok::<(), chainrule::Error>(())
//! ```

use std::borrow::Cow;

use ndarray::{Array, Array1, ArrayD, ArrayView, ArrayView3, ArrayViewD, Dimension, IxDyn};

use crate::backend::{Backend, Reduction, reserve_host};
use crate::error::{Error, Result};
use crate::ops::UnaryOp;
use crate::program::{Kind, Program, Shape};
use crate::schedule::vector::JacobianPlan;

/// Values and derivatives of a bulk element-wise call, each with the shape
/// of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct UnaryArrays<D: Dimension> {
    /// f(x), element for element.
    pub values: Array<f32, D>,
    /// f'(x), element for element.
    pub derivatives: Array<f32, D>,
}

/// A program's Jacobian over a batch as a dense array, with the output values.
#[derive(Debug, Clone, PartialEq)]
pub struct JacobianArrays {
    /// d output / d input, shape (B, m..., n...): the batch, then the
    /// output's shape, then the input's.
    pub jacobian: ArrayD<f64>,
    /// The output's values, shape (B, m...).
    pub values: ArrayD<f32>,
    /// The plan that computed it: the chain orders and their costs.
    pub plan: JacobianPlan,
    /// The output's size m (the product of its shape).
    rows: usize,
    /// The input's size n (the product of its shape).
    cols: usize,
}

impl JacobianArrays {
    /// The Jacobian as B matrices of m x n, the output's and the input's
    /// shapes each flattened row-major; a view, nothing is copied.
    pub fn matrices(&self) -> Result<ArrayView3<'_, f64>> {
        let batch = self.jacobian.shape().first().copied().unwrap_or(0);
        self.jacobian
            .view()
            .into_shape_with_order((batch, self.rows, self.cols))
            .map_err(|e| Error::Shape(format!("the Jacobian as B x m x n: {e}")))
    }
}

/// The output's values and the gradients asked for, as arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientArrays {
    /// The output for each sample, shape (B,).
    pub values: Array1<f32>,
    /// Their mean, the loss of the batch.
    pub mean: f64,
    /// One per variable asked for, in the order asked: its name and its
    /// gradient (shapes in the module documentation).
    pub gradients: Vec<(String, ArrayD<f32>)>,
}

impl GradientArrays {
    /// The gradient of the variable called `name`, if it was asked for.
    pub fn get(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.gradients
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, gradient)| gradient)
    }
}

/// A declared shape as array dimensions: scalar (), vector (n,), matrix (r, c).
fn dims(shape: Shape) -> Vec<usize> {
    match shape {
        Shape::Scalar => Vec::new(),
        Shape::Vector(n) => vec![n],
        Shape::Matrix(rows, cols) => vec![rows, cols],
    }
}

/// `dims` with the batch in front.
fn batched(batch: usize, shape: Shape) -> Vec<usize> {
    let mut out = vec![batch];
    out.extend(dims(shape));
    out
}

/// A shape as Python prints one, e.g. `(4, 3)`, `(4,)`, `()`.
fn show(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// An input's expected shape with the batch unknown, e.g. `(B, 3)`, `(B,)`.
fn show_batched(declared: &[usize]) -> String {
    if declared.is_empty() {
        return "(B,)".to_string();
    }
    let rest: Vec<String> = declared.iter().map(usize::to_string).collect();
    format!("(B, {})", rest.join(", "))
}

/// The elements in row-major (logical) order: borrowed when the view is in
/// standard layout, else copied, with an error rather than an abort when the
/// copy does not fit in memory.
fn row_major<'a, D: Dimension>(view: &ArrayView<'a, f32, D>) -> Result<Cow<'a, [f32]>> {
    if let Some(slice) = view.to_slice() {
        return Ok(Cow::Borrowed(slice));
    }
    let mut copy = reserve_host(view.len(), "a row-major copy of a non-contiguous array")?;
    copy.extend(view.iter().copied());
    Ok(Cow::Owned(copy))
}

/// An owned array of `shape` from row-major values.
fn array<T>(shape: Vec<usize>, values: Vec<T>, what: &str) -> Result<ArrayD<T>> {
    let len = values.len();
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| {
        Error::Shape(format!(
            "{what}: {len} values do not make an array of shape {} ({e})",
            show(&shape)
        ))
    })
}

/// The index of variable `name`, or the error the slice API gives.
fn variable_index(program: &Program, name: &str) -> Result<usize> {
    program
        .variable(name)
        .ok_or_else(|| Error::InvalidArgument(format!("`{name}` is not a variable of the program")))
}

/// The shape of input `wrt`, with the slice API's errors for a name that is
/// not a variable or names a parameter.
fn wrt_shape(program: &Program, wrt: &str) -> Result<Shape> {
    let variable = &program.variables[variable_index(program, wrt)?];
    if variable.kind != Kind::Input {
        return Err(Error::InvalidArgument(format!(
            "`{wrt}` is a parameter; Jacobians are taken with respect to inputs"
        )));
    }
    Ok(variable.shape)
}

/// Each variable's elements in row-major order, borrowed where they already
/// lie so.
type RowMajor<'a> = Vec<Cow<'a, [f32]>>;

/// Checks every view's shape against its declaration and returns the data in
/// row-major order with the batch: the first input's leading dimension, which
/// every other input must share. `None` when no input is given (the slice
/// API then says which is missing).
fn flatten<'a>(
    program: &Program,
    variables: &[(&str, ArrayViewD<'a, f32>)],
) -> Result<(RowMajor<'a>, Option<usize>)> {
    let mut data = Vec::with_capacity(variables.len());
    let mut batch: Option<(usize, &str)> = None;
    for (name, view) in variables {
        let variable = &program.variables[variable_index(program, name)?];
        let declared = dims(variable.shape);
        match variable.kind {
            Kind::Param => {
                if view.shape() != declared.as_slice() {
                    return Err(Error::Shape(format!(
                        "parameter `{name}` is declared {}, so its array has shape {}, not {}",
                        variable.shape,
                        show(&declared),
                        show(view.shape())
                    )));
                }
            }
            Kind::Input => {
                let Some((&b, _)) = view.shape().split_first().filter(|(_, r)| *r == declared)
                else {
                    return Err(Error::Shape(format!(
                        "input `{name}` is declared {}, so its array has shape {} with the batch first, not {}",
                        variable.shape,
                        show_batched(&declared),
                        show(view.shape())
                    )));
                };
                match batch {
                    Some((first, other)) if first != b => {
                        return Err(Error::Shape(format!(
                            "input `{name}` has {b} samples (its first dimension) but `{other}` has {first}"
                        )));
                    }
                    Some(_) => {}
                    None => batch = Some((b, name)),
                }
            }
        }
        data.push(row_major(view)?);
    }
    Ok((data, batch.map(|(b, _)| b)))
}

/// The slice API's `(name, values)` pairs over the flattened data.
fn pairs<'n, 'd>(
    variables: &[(&'n str, ArrayViewD<'_, f32>)],
    data: &'d [Cow<'_, [f32]>],
) -> Vec<(&'n str, &'d [f32])> {
    variables
        .iter()
        .zip(data)
        .map(|((name, _), values)| (*name, values.as_ref()))
        .collect()
}

/// The batch, which only inputs can give; without one the slice API's
/// message for an empty batch applies.
fn require_batch(batch: Option<usize>) -> Result<usize> {
    match batch {
        Some(b) if b > 0 => Ok(b),
        _ => Err(Error::InvalidArgument(
            "the batch is empty: give each input at least one sample".into(),
        )),
    }
}

/// Checks a JVP's tangents or a VJP's cotangents: (B, shape...).
fn check_seed(what: &str, seed: &ArrayViewD<'_, f32>, expected: &[usize]) -> Result<()> {
    if seed.shape() == expected {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{what} have shape {}, expected {}",
            show(seed.shape()),
            show(expected)
        )))
    }
}

impl Backend {
    /// Values and derivatives of `op` at every element of `xs`, any shape and
    /// layout; the results have the shape of `xs` in standard layout.
    pub fn unary_array<D: Dimension>(
        &self,
        op: UnaryOp,
        xs: ArrayView<'_, f32, D>,
    ) -> Result<UnaryArrays<D>> {
        let data = row_major(&xs)?;
        let out = self.unary(op, &data)?;
        let shaped = |values: Vec<f32>| {
            Array::from_shape_vec(xs.raw_dim(), values)
                .map_err(|e| Error::Shape(format!("{op:?} of an array: {e}")))
        };
        Ok(UnaryArrays {
            values: shaped(out.values)?,
            derivatives: shaped(out.derivatives)?,
        })
    }

    /// [`Backend::values`] with arrays: each input (B, shape...), each
    /// parameter its shape; the output's values come back (B, m...).
    pub fn values_array(
        &self,
        program: &Program,
        variables: &[(&str, ArrayViewD<'_, f32>)],
    ) -> Result<ArrayD<f32>> {
        program.check()?;
        let (data, batch) = flatten(program, variables)?;
        let batch = require_batch(batch)?;
        let values = self.values(program, &pairs(variables, &data))?;
        array(
            batched(batch, program.shapes[program.output]),
            values,
            "the values",
        )
    }

    /// [`Backend::jacobian`] with arrays: each input (B, shape...), each
    /// parameter its shape; the Jacobian comes back (B, m..., n...).
    pub fn jacobian_array(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, ArrayViewD<'_, f32>)],
    ) -> Result<JacobianArrays> {
        program.check()?;
        let wrt_shape = wrt_shape(program, wrt)?;
        let (data, _) = flatten(program, variables)?;
        let out = self.jacobian(program, wrt, &pairs(variables, &data))?;
        let out_shape = program.shapes[program.output];
        let mut shape = batched(out.batch, out_shape);
        shape.extend(dims(wrt_shape));
        let dense = out.jacobian.try_to_dense(out.batch)?;
        Ok(JacobianArrays {
            jacobian: array(shape, dense, "the Jacobian")?,
            values: array(batched(out.batch, out_shape), out.values, "the values")?,
            plan: out.plan,
            rows: out_shape.size(),
            cols: wrt_shape.size(),
        })
    }

    /// [`Backend::jvp`] with arrays: `tangents` (B, n...) in the shape of
    /// input `wrt`, the products J v (B, m...) in the output's.
    pub fn jvp_array<D: Dimension>(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, ArrayViewD<'_, f32>)],
        tangents: ArrayView<'_, f32, D>,
    ) -> Result<ArrayD<f32>> {
        program.check()?;
        let wrt_shape = wrt_shape(program, wrt)?;
        let out_shape = program.shapes[program.output];
        let (data, batch) = flatten(program, variables)?;
        let batch = require_batch(batch)?;
        let tangents = tangents.into_dyn();
        check_seed("the tangents", &tangents, &batched(batch, wrt_shape))?;
        let seed = row_major(&tangents)?;
        let rows = self.jvp(program, wrt, &pairs(variables, &data), &seed)?;
        array(batched(batch, out_shape), rows, "the JVP")
    }

    /// [`Backend::vjp`] with arrays: `cotangents` (B, m...) in the output's
    /// shape, the products u^T J (B, n...) in the shape of input `wrt`.
    pub fn vjp_array<D: Dimension>(
        &self,
        program: &Program,
        wrt: &str,
        variables: &[(&str, ArrayViewD<'_, f32>)],
        cotangents: ArrayView<'_, f32, D>,
    ) -> Result<ArrayD<f32>> {
        program.check()?;
        let wrt_shape = wrt_shape(program, wrt)?;
        let out_shape = program.shapes[program.output];
        let (data, batch) = flatten(program, variables)?;
        let batch = require_batch(batch)?;
        let cotangents = cotangents.into_dyn();
        check_seed("the cotangents", &cotangents, &batched(batch, out_shape))?;
        let seed = row_major(&cotangents)?;
        let rows = self.vjp(program, wrt, &pairs(variables, &data), &seed)?;
        array(batched(batch, wrt_shape), rows, "the VJP")
    }

    /// [`Backend::gradient`] with arrays: a parameter's gradient has its own
    /// shape under [`Reduction::Mean`] and (B, shape...) under
    /// [`Reduction::PerSample`]; an input's is always (B, shape...).
    pub fn gradient_array(
        &self,
        program: &Program,
        wrt: &[&str],
        variables: &[(&str, ArrayViewD<'_, f32>)],
        reduction: Reduction,
    ) -> Result<GradientArrays> {
        program.check()?;
        let (data, _) = flatten(program, variables)?;
        let out = self.gradient(program, wrt, &pairs(variables, &data), reduction)?;
        let gradients = out
            .gradients
            .into_iter()
            .map(|g| {
                let what = format!("the gradient of `{}`", g.name);
                Ok((g.name, array(g.shape, g.values, &what)?))
            })
            .collect::<Result<_>>()?;
        Ok(GradientArrays {
            values: Array1::from_vec(out.values),
            mean: out.mean,
            gradients,
        })
    }
}
