//! The f64 reference of a program for one sample: its forward pass, and a
//! dense Jacobian by forward-mode dual numbers that shares nothing with the
//! Jacobian planner but the element-wise derivatives of `ops`, so that tests
//! can hold the planner against it.
//!
//! Programs have public fields, so everything here first checks the
//! invariants the parser guarantees and then reads through `get`, so that a
//! program built by hand gives an error, never a panic.

use super::{NodeId, Op, Program, Shape};
use crate::error::{Error, Result};
use crate::ops::{chain_mul, row_max};

/// The most elements a tangent may have in [`jacobian_dense`] (1 GiB of
/// f64): it is a test oracle, not a tool for workload sizes.
const MAX_TANGENT: usize = 1 << 27;

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

pub(super) fn check(program: &Program) -> Result<()> {
    let count = program.nodes.len();
    if program.shapes.len() != count || program.names.len() != count {
        return Err(invalid(format!(
            "the program has {count} nodes but {} shapes and {} names",
            program.shapes.len(),
            program.names.len()
        )));
    }
    for (i, variable) in program.variables.iter().enumerate() {
        if program.variables[..i]
            .iter()
            .any(|v| v.name == variable.name)
        {
            return Err(invalid(format!(
                "two variables are called `{}`",
                variable.name
            )));
        }
    }
    if program.output >= count {
        return Err(invalid(format!(
            "the output is node {} of a program of {count} nodes",
            program.output
        )));
    }
    for (id, (op, &shape)) in program.nodes.iter().zip(&program.shapes).enumerate() {
        if let Some(operand) = op.operands().find(|&operand| operand >= id) {
            return Err(invalid(format!(
                "node {id} reads node {operand}, which does not come before it"
            )));
        }
        let expected = shape_of(program, *op)?;
        if expected != shape {
            return Err(Error::Shape(format!(
                "node {id} is {expected} but is recorded as {shape}"
            )));
        }
    }
    for variable in &program.variables {
        if variable.shape.size() == 0 {
            return Err(Error::Shape(format!("`{}` has no elements", variable.name)));
        }
    }
    // One node per variable: planners find a variable by its node.
    let mut seen = vec![false; program.variables.len()];
    for op in &program.nodes {
        if let Op::Variable(v) = *op {
            match seen.get_mut(v) {
                Some(slot) if !*slot => *slot = true,
                Some(_) => {
                    return Err(invalid(format!("variable {v} is read by two nodes")));
                }
                None => {
                    return Err(invalid(format!(
                        "node reads variable {v}, which is not declared"
                    )));
                }
            }
        }
    }
    if let Some(Shape::Matrix(..)) = program.shapes.get(program.output) {
        return Err(Error::Shape(
            "the output must be a scalar or a vector, not a matrix".into(),
        ));
    }
    Ok(())
}

/// The shape `op` gives, from the recorded shapes of its operands.
fn shape_of(program: &Program, op: Op) -> Result<Shape> {
    let shape = |id: NodeId| program.shapes.get(id).copied().unwrap_or(Shape::Scalar);
    let mismatch =
        |what: &str, a: Shape, b: Shape| Err(Error::Shape(format!("{what} of {a} and {b}")));
    match op {
        Op::Variable(v) => program
            .variables
            .get(v)
            .map(|variable| variable.node_shape())
            .ok_or_else(|| invalid(format!("there is no variable {v}"))),
        Op::Constant(_) => Ok(Shape::Scalar),
        Op::Unary(_, a) => match shape(a) {
            Shape::Matrix(..) => mismatch("an element-wise operation", shape(a), Shape::Scalar),
            other => Ok(other),
        },
        Op::Binary(_, a, b) => match (shape(a), shape(b)) {
            (Shape::Matrix(..), _) | (_, Shape::Matrix(..)) => {
                mismatch("an element-wise operation", shape(a), shape(b))
            }
            (Shape::Scalar, other) | (other, Shape::Scalar) => Ok(other),
            (sa, sb) if sa == sb => Ok(sa),
            (sa, sb) => mismatch("an element-wise operation", sa, sb),
        },
        Op::MatVec(w, x) => {
            let is_variable = matches!(program.nodes.get(w), Some(Op::Variable(_)));
            match (shape(w), shape(x)) {
                (Shape::Matrix(m, n), Shape::Vector(k)) if n == k && is_variable => {
                    Ok(Shape::Vector(m))
                }
                (sw, sx) => mismatch("a product of a matrix variable and a vector", sw, sx),
            }
        }
        Op::VecMat(w, x) => {
            let is_variable = matches!(program.nodes.get(w), Some(Op::Variable(_)));
            match (shape(x), shape(w)) {
                (Shape::Vector(k), Shape::Matrix(m, n)) if m == k && is_variable => {
                    Ok(Shape::Vector(n))
                }
                (sx, sw) => mismatch("a product of a vector and a matrix variable", sx, sw),
            }
        }
        Op::ShiftMax(a) => match shape(a) {
            Shape::Vector(n) => Ok(Shape::Vector(n)),
            other => mismatch("a shift by the maximum", other, Shape::Scalar),
        },
        Op::Slice(a, start, result) => {
            let fits = match (shape(a), result) {
                (Shape::Vector(n), Shape::Scalar | Shape::Vector(_)) => {
                    start.checked_add(result.size()).is_some_and(|end| end <= n)
                }
                (Shape::Scalar, Shape::Vector(1)) => start == 0,
                _ => false,
            };
            if fits && result.size() > 0 {
                Ok(result)
            } else {
                Err(Error::Shape(format!(
                    "elements {start}..{} of {} as {result}",
                    start.saturating_add(result.size()),
                    shape(a)
                )))
            }
        }
        Op::Concat(a, b) => match (shape(a), shape(b)) {
            (Shape::Matrix(..), _) | (_, Shape::Matrix(..)) => {
                mismatch("a concatenation", shape(a), shape(b))
            }
            (sa, sb) => Ok(Shape::Vector(sa.size() + sb.size())),
        },
        Op::Reduce(r, a, b) => match (r.arity(), shape(a), b.map(shape)) {
            (1, Shape::Vector(_), None) => Ok(Shape::Scalar),
            (2, Shape::Vector(m), Some(Shape::Vector(n))) if m == n => Ok(Shape::Scalar),
            (arity, sa, sb) => Err(Error::Shape(format!(
                "`{r}` reduces {}, not {sa}{}",
                if arity == 1 {
                    "one vector"
                } else {
                    "two vectors of one length"
                },
                sb.map_or_else(String::new, |sb| format!(" and {sb}"))
            ))),
        },
    }
}

/// Checks that `values` holds one slice of the right length per variable.
fn check_values(program: &Program, values: &[&[f64]]) -> Result<()> {
    if values.len() != program.variables.len() {
        let names: Vec<&str> = program.variables.iter().map(|v| v.name.as_str()).collect();
        return Err(Error::Shape(format!(
            "the program needs values for {} variables ({}), got {}",
            names.len(),
            names.join(", "),
            values.len()
        )));
    }
    for (variable, value) in program.variables.iter().zip(values) {
        let size = variable.shape.size();
        if value.len() != size {
            return Err(Error::Shape(format!(
                "{} `{}` is {} and needs {size} values, got {}",
                variable.kind,
                variable.name,
                variable.shape,
                value.len()
            )));
        }
    }
    Ok(())
}

/// The value of node `id`, empty where there is none.
fn at(values: &[Vec<f64>], id: NodeId) -> &[f64] {
    values.get(id).map_or(&[], Vec::as_slice)
}

/// Element `i` of an operand, a scalar operand meeting every element.
fn element(value: &[f64], i: usize) -> f64 {
    let i = if value.len() == 1 { 0 } else { i };
    value.get(i).copied().unwrap_or(f64::NAN)
}

pub(super) fn forward(program: &Program, values: &[&[f64]]) -> Result<Vec<Vec<f64>>> {
    check(program)?;
    check_values(program, values)?;
    let mut out: Vec<Vec<f64>> = Vec::with_capacity(program.nodes.len());
    for (&op, shape) in program.nodes.iter().zip(&program.shapes) {
        let size = shape.size();
        let value = match op {
            Op::Variable(v) => values.get(v).map_or_else(Vec::new, |v| v.to_vec()),
            Op::Constant(c) => vec![c],
            Op::Unary(f, a) => at(&out, a)
                .iter()
                .map(|&x| f.value_and_derivative(x).0)
                .collect(),
            Op::Binary(f, a, b) => {
                let (a, b) = (at(&out, a), at(&out, b));
                (0..size)
                    .map(|i| f.value_and_partials(element(a, i), element(b, i)).0)
                    .collect()
            }
            Op::MatVec(w, x) => {
                let x = at(&out, x);
                (0..size)
                    .map(|i| {
                        let row = at(&out, w).iter().skip(i * x.len()).take(x.len());
                        row.zip(x).map(|(w, x)| w * x).sum()
                    })
                    .collect()
            }
            Op::VecMat(w, x) => {
                let (x, w) = (at(&out, x), at(&out, w));
                (0..size)
                    .map(|j| {
                        let column = w.iter().skip(j).step_by(size.max(1));
                        column.zip(x).map(|(w, x)| w * x).sum()
                    })
                    .collect()
            }
            Op::Reduce(r, ..) => {
                let operands: Vec<&[f64]> = op.operands().map(|o| at(&out, o)).collect();
                vec![r.value(&operands)]
            }
            Op::ShiftMax(a) => shift_max(at(&out, a)),
            Op::Slice(a, start, _) => at(&out, a).iter().skip(start).take(size).copied().collect(),
            Op::Concat(a, b) => [at(&out, a), at(&out, b)].concat(),
        };
        out.push(value);
    }
    Ok(out)
}

/// Row `i` of a tangent with `cols` columns, empty where there is none.
fn row(tangent: &[f64], i: usize, cols: usize) -> &[f64] {
    let start = i.saturating_mul(cols);
    tangent
        .get(start..start.saturating_add(cols))
        .unwrap_or(&[])
}

/// `dst += a * src`, each product a product of the chain rule (a zero
/// factor gives zero, whatever the other).
fn axpy(dst: &mut [f64], a: f64, src: &[f64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += chain_mul(a, *s);
    }
}

pub(super) fn jacobian_dense(program: &Program, values: &[&[f64]], wrt: usize) -> Result<Vec<f64>> {
    let forward = forward(program, values)?;
    let Some(variable) = program.variables.get(wrt) else {
        return Err(invalid(format!(
            "there is no variable {wrt}; the program has {}",
            program.variables.len()
        )));
    };
    let cols = variable.shape.size();
    let largest = program.shapes.iter().map(Shape::size).max().unwrap_or(1);
    let elements = largest.saturating_mul(cols);
    if elements > MAX_TANGENT {
        let bytes = |n: usize| (n as u64).saturating_mul(8);
        return Err(Error::TooLarge {
            what: format!(
                "the dense Jacobian oracle with respect to `{}`",
                variable.name
            ),
            needed: bytes(elements),
            limit: bytes(MAX_TANGENT),
        });
    }
    let rows = program.shapes.get(program.output).map_or(1, Shape::size);
    if cols == 0 {
        return Ok(Vec::new());
    }

    // The tangent of each node: d node / d wrt, row-major, `None` where it
    // is zero because the node does not depend on `wrt`.
    let mut tangents: Vec<Option<Vec<f64>>> = Vec::with_capacity(program.nodes.len());
    for (&op, shape) in program.nodes.iter().zip(&program.shapes) {
        let size = shape.size();
        let value = |id: NodeId| at(&forward, id);
        let tangent = |id: NodeId| tangents.get(id).and_then(Option::as_deref);
        let mut out = vec![0.0; size * cols];
        let mut any = false;
        match op {
            Op::Variable(v) => {
                if v == wrt {
                    for (i, r) in out.chunks_exact_mut(cols).enumerate() {
                        if let Some(one) = r.get_mut(i) {
                            *one = 1.0;
                        }
                    }
                    any = true;
                }
            }
            Op::Constant(_) => {}
            Op::Unary(f, a) => {
                if let Some(ta) = tangent(a) {
                    for (i, (r, &x)) in out.chunks_exact_mut(cols).zip(value(a)).enumerate() {
                        axpy(r, f.value_and_derivative(x).1, row(ta, i, cols));
                    }
                    any = true;
                }
            }
            Op::Binary(f, a, b) => {
                let (va, vb) = (value(a), value(b));
                // A scalar operand's tangent is its only row, met by every
                // element: scalar expansion.
                let index = |v: &[f64], i: usize| if v.len() == 1 { 0 } else { i };
                for (i, r) in out.chunks_exact_mut(cols).enumerate() {
                    let (_, da, db) = f.value_and_partials(element(va, i), element(vb, i));
                    if let Some(ta) = tangent(a) {
                        axpy(r, da, row(ta, index(va, i), cols));
                    }
                    if let Some(tb) = tangent(b) {
                        axpy(r, db, row(tb, index(vb, i), cols));
                    }
                }
                any = tangent(a).is_some() || tangent(b).is_some();
            }
            Op::MatVec(w, x) => {
                let (vw, vx) = (value(w), value(x));
                let n = vx.len();
                for (i, r) in out.chunks_exact_mut(cols).enumerate() {
                    for (j, &xj) in vx.iter().enumerate() {
                        let wij = vw.get(i * n + j).copied().unwrap_or(f64::NAN);
                        if let Some(tx) = tangent(x) {
                            axpy(r, wij, row(tx, j, cols));
                        }
                        if let Some(tw) = tangent(w) {
                            axpy(r, xj, row(tw, i * n + j, cols));
                        }
                    }
                }
                any = tangent(w).is_some() || tangent(x).is_some();
            }
            Op::VecMat(w, x) => {
                // y_j = sum_i x_i W[i, j], W of vx.len() rows and `n` columns.
                let (vw, vx) = (value(w), value(x));
                let n = out.len() / cols.max(1);
                for (j, r) in out.chunks_exact_mut(cols).enumerate() {
                    for (i, &xi) in vx.iter().enumerate() {
                        let wij = vw.get(i * n + j).copied().unwrap_or(f64::NAN);
                        if let Some(tx) = tangent(x) {
                            axpy(r, wij, row(tx, i, cols));
                        }
                        if let Some(tw) = tangent(w) {
                            axpy(r, xi, row(tw, i * n + j, cols));
                        }
                    }
                }
                any = tangent(w).is_some() || tangent(x).is_some();
            }
            Op::Reduce(r, ..) => {
                // The sum over operands and elements of partial times the
                // element's tangent row, the partials from the op table.
                let operands: Vec<NodeId> = op.operands().collect();
                let values: Vec<&[f64]> = operands.iter().map(|&o| value(o)).collect();
                for (slot, &operand) in operands.iter().enumerate() {
                    if let Some(t) = tangent(operand) {
                        for (i, p) in r.partials(&values, slot).into_iter().enumerate() {
                            axpy(&mut out, p, row(t, i, cols));
                        }
                        any = true;
                    }
                }
            }
            Op::ShiftMax(a) => {
                // The maximum is held constant: the tangent passes unchanged.
                if let Some(ta) = tangent(a) {
                    out.copy_from_slice(ta);
                    any = true;
                }
            }
            Op::Slice(a, start, _) => {
                // Rows `start..start + size` of the operand's tangent.
                if let Some(ta) = tangent(a) {
                    for (i, r) in out.chunks_exact_mut(cols).enumerate() {
                        for (d, &t) in r.iter_mut().zip(row(ta, start + i, cols)) {
                            *d = t;
                        }
                    }
                    any = true;
                }
            }
            Op::Concat(a, b) => {
                // The operands' tangents stacked, a zero block where one
                // does not depend on `wrt`.
                let split = (value(a).len() * cols).min(out.len());
                let (top, bottom) = out.split_at_mut(split);
                for (part, t) in [(top, tangent(a)), (bottom, tangent(b))] {
                    for (d, &t) in part.iter_mut().zip(t.unwrap_or(&[])) {
                        *d = t;
                    }
                }
                any = tangent(a).is_some() || tangent(b).is_some();
            }
        }
        tangents.push(any.then_some(out));
    }
    Ok(tangents
        .get(program.output)
        .cloned()
        .flatten()
        .unwrap_or_else(|| vec![0.0; rows * cols]))
}

/// z - max(z), [`Op::ShiftMax`]; the f64 mirror of the `shift_max` kernel.
/// An infinite maximum held by one element gives 0 there and -Inf elsewhere
/// (the limit as that element grows); held by several, or all -Inf, NaN
/// (no limit); NaN anywhere, NaN everywhere.
pub(crate) fn shift_max(z: &[f64]) -> Vec<f64> {
    let row = row_max(z);
    z.iter()
        .map(|&v| {
            if row.nan || (row.max.is_infinite() && row.ties > 1) {
                f64::NAN
            } else if row.max.is_finite() {
                v - row.max
            } else if v == row.max {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}
