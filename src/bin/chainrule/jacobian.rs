//! `chainrule jacobian`: a program's batched Jacobian from .npy files.

use std::path::{Path, PathBuf};

use chainrule::program::{Kind, Program, Shape};
use chainrule::{Error, npy};

use crate::backend;
use crate::eval::parse_input;

/// The program's text: the argument itself, or the file after `@`.
pub(crate) fn program_text(text: &str) -> chainrule::Result<String> {
    match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.to_string(),
            message: e.to_string(),
        }),
        None => Ok(text.to_string()),
    }
}

/// Whether the text declares variables (a program) rather than being a bare expression.
pub(crate) fn is_program(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("input ") || line.starts_with("param ") || line.starts_with("output ")
    })
}

/// The input to differentiate with respect to: the named one, else the first.
pub(crate) fn choose_wrt(program: &Program, wrt: Option<&str>) -> chainrule::Result<usize> {
    match wrt {
        Some(name) => program
            .variable(name)
            .filter(|&v| program.variables[v].kind == Kind::Input)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("--wrt {name}: not an input of the program"))
            }),
        None => program
            .inputs()
            .first()
            .copied()
            .ok_or_else(|| Error::InvalidArgument("the program has no input".into())),
    }
}

/// The array shape a variable's file must have (`None` for the batch).
fn expected_dims(kind: Kind, shape: Shape) -> Vec<Option<usize>> {
    let mut dims = match kind {
        Kind::Input => vec![None],
        Kind::Param => vec![],
    };
    match shape {
        Shape::Scalar => {}
        Shape::Vector(n) => dims.push(Some(n)),
        Shape::Matrix(m, n) => {
            dims.push(Some(m));
            dims.push(Some(n));
        }
    }
    dims
}

fn render(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or_else(|| "B".to_string(), |n| n.to_string()))
        .collect();
    format!("({})", parts.join(", "))
}

/// Reads every --input and --param file, checking each against its
/// declaration and the inputs against each other's batch size.
pub(crate) fn load_variables(
    program: &Program,
    inputs: &[String],
    params: &[String],
) -> chainrule::Result<Vec<(String, Vec<f32>)>> {
    let mut arrays: Vec<(String, Vec<f32>)> = Vec::new();
    let mut batch: Option<usize> = None;
    for (flag, list, kind) in [
        ("--input", inputs, Kind::Input),
        ("--param", params, Kind::Param),
    ] {
        for item in list {
            let (name, path): (String, PathBuf) = parse_input(item)?;
            let index = program.variable(&name).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{flag} {name}: the program has no variable `{name}`"
                ))
            })?;
            let variable = &program.variables[index];
            if variable.kind != kind {
                let right = if variable.kind == Kind::Input {
                    "--input"
                } else {
                    "--param"
                };
                return Err(Error::InvalidArgument(format!(
                    "{flag} {name}: `{name}` is declared as {}; pass it with {right}",
                    if variable.kind == Kind::Input {
                        "an input"
                    } else {
                        "a parameter"
                    }
                )));
            }
            let array = npy::read(&path)?;
            let expected = expected_dims(kind, variable.shape);
            let dims = array.shape.clone();
            // A scalar parameter may also come as a 1-element vector.
            let scalar_as_vector = expected.is_empty() && dims == [1];
            let fits = scalar_as_vector
                || (dims.len() == expected.len()
                    && dims
                        .iter()
                        .zip(&expected)
                        .all(|(d, e)| e.is_none_or(|e| e == *d)));
            if !fits {
                return Err(Error::Shape(format!(
                    "{flag} {name}={}: expected shape {} for `{name}` declared {}, got {dims:?}",
                    path.display(),
                    render(&expected),
                    variable.shape
                )));
            }
            if kind == Kind::Input {
                let b = dims.first().copied().unwrap_or(0);
                if let Some(first) = batch.filter(|&f| f != b) {
                    return Err(Error::Shape(format!(
                        "{flag} {name} has {b} samples but an earlier input has {first}"
                    )));
                }
                batch = Some(b);
            }
            if arrays.iter().any(|(n, _)| *n == name) {
                return Err(Error::InvalidArgument(format!("`{name}` is given twice")));
            }
            arrays.push((name, array.data));
        }
    }
    Ok(arrays)
}

pub(crate) fn run(
    text: &str,
    inputs: &[String],
    params: &[String],
    wrt: Option<&str>,
    out: &Path,
    values_path: Option<&Path>,
    cpu: bool,
) -> chainrule::Result<()> {
    let outputs: Vec<&Path> = std::iter::once(out).chain(values_path).collect();
    npy::check_outputs(&outputs)?;
    let text = program_text(text)?;
    let program = Program::parse(&text)?;
    let wrt = choose_wrt(&program, wrt)?;
    let arrays = load_variables(&program, inputs, params)?;
    let variables: Vec<(&str, &[f32])> = arrays
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let backend = backend(cpu)?;
    let wrt_name = program.variables[wrt].name.clone();
    let result = backend.jacobian(&program, &wrt_name, &variables)?;
    let batch = result.batch;
    let output_shape = program.shapes[program.output];
    let input_shape = program.variables[wrt].shape;
    let mut dims = vec![batch];
    for shape in [output_shape, input_shape] {
        match shape {
            Shape::Scalar => {}
            Shape::Vector(n) => dims.push(n),
            Shape::Matrix(m, n) => dims.extend([m, n]),
        }
    }
    let dense: Vec<f32> = result
        .jacobian
        .try_to_dense(batch)?
        .into_iter()
        .map(|x| x as f32)
        .collect();
    let mut value_dims = vec![batch];
    if let Shape::Vector(m) = output_shape {
        value_dims.push(m);
    }
    let mut files: Vec<npy::Output<'_>> = vec![(out, &dims, &dense)];
    if let Some(path) = values_path {
        files.push((path, &value_dims, &result.values));
    }
    npy::write_all(&files)?;
    eprintln!(
        "d{}/d{wrt_name}: {} for {batch} samples on {} ({:.3e} flops in the chosen order; pure forward {:.3e}, pure reverse {:.3e})",
        program.output_name,
        result.jacobian.shape(),
        backend.describe(),
        result.plan.cost.flops,
        result.plan.forward_cost.flops,
        result.plan.reverse_cost.flops
    );
    Ok(())
}
