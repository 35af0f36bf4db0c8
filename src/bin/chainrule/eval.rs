//! `chainrule eval`: an expression's values and partial derivatives over .npy inputs.

use std::path::{Path, PathBuf};

use chainrule::graph::{Graph, InputOrder};
use chainrule::schedule::Fusion;
use chainrule::{Backend, Error, npy};

use crate::backend;

/// Splits NAME=FILE.
pub(crate) fn parse_input(text: &str) -> chainrule::Result<(String, PathBuf)> {
    match text.split_once('=') {
        Some((name, path)) if !name.trim().is_empty() && !path.is_empty() => {
            Ok((name.trim().to_string(), PathBuf::from(path)))
        }
        _ => Err(Error::InvalidArgument(format!(
            "--input {text}: expected NAME=FILE.npy, e.g. --input x=x.npy"
        ))),
    }
}

/// The first name given twice, if any.
pub(crate) fn repeated<T: PartialEq>(names: &[T]) -> Option<&T> {
    names
        .iter()
        .enumerate()
        .find_map(|(i, n)| names[..i].contains(n).then_some(n))
}

pub(crate) fn eval(
    expression: &str,
    inputs: &[String],
    values_path: Option<PathBuf>,
    derivatives_path: Option<PathBuf>,
    cpu: bool,
    unfused: bool,
) -> chainrule::Result<()> {
    let inputs: Vec<(String, PathBuf)> = inputs
        .iter()
        .map(|text| parse_input(text))
        .collect::<chainrule::Result<_>>()?;
    let names: Vec<String> = inputs.iter().map(|(name, _)| name.clone()).collect();
    if let Some(name) = repeated(&names) {
        return Err(Error::InvalidArgument(format!(
            "--input {name} is given twice"
        )));
    }
    let outputs: Vec<&Path> = [&values_path, &derivatives_path]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect();
    npy::check_outputs(&outputs)?;
    let graph = Graph::parse(expression, InputOrder::Given(names.clone()))?;
    if graph.inputs().is_empty() {
        // No variable, so no samples: say what it is rather than
        // evaluating zero of them.
        let program = graph.program();
        let value = program
            .forward(&[])
            .ok()
            .and_then(|values| values.get(program.output)?.first().copied());
        let value = value.map_or(String::new(), |v| format!(" (its value is {})", v as f32));
        return Err(Error::InvalidArgument(format!(
            "`{expression}` has no variables, so there are no samples to evaluate{value}; \
             write it in terms of an input given with --input"
        )));
    }
    for (j, name) in names.iter().enumerate() {
        if !graph.reads_input(j) {
            return Err(Error::InvalidArgument(format!(
                "--input {name} is given but `{name}` does not appear in the expression"
            )));
        }
    }
    let mut columns = Vec::with_capacity(inputs.len());
    for (name, path) in &inputs {
        let array = npy::read(path)?;
        if array.shape.len() != 1 {
            return Err(Error::Shape(format!(
                "--input {name}={}: expected a 1-D array of samples, got shape {:?}",
                path.display(),
                array.shape
            )));
        }
        if let Some((first, first_path, first_len)) = columns
            .first()
            .map(|(n, p, a): &(String, PathBuf, npy::Array)| (n, p, a.data.len()))
        {
            if first_len != array.data.len() {
                return Err(Error::Shape(format!(
                    "--input {name}={} has {} samples but --input {first}={} has {first_len}",
                    path.display(),
                    array.data.len(),
                    first_path.display()
                )));
            }
        }
        columns.push((name.clone(), path.clone(), array));
    }
    let backend: Backend = backend(cpu)?;
    let refs: Vec<&[f32]> = columns.iter().map(|(_, _, a)| a.data.as_slice()).collect();
    let fusion = if unfused {
        Fusion::Unfused
    } else {
        Fusion::Fused
    };
    let out = backend.evaluate(&graph, &refs, fusion)?;
    let n = out.values.len();
    let k = out.inputs;
    let value_shape = [n];
    let derivative_shape: Vec<usize> = if k == 1 { vec![n] } else { vec![n, k] };
    let mut files: Vec<npy::Output<'_>> = Vec::new();
    if let Some(path) = &values_path {
        files.push((path, &value_shape, &out.values));
    }
    if let Some(path) = &derivatives_path {
        files.push((path, &derivative_shape, &out.derivatives));
    }
    npy::write_all(&files)?;
    if values_path.is_none() && derivatives_path.is_none() {
        // Nothing to write: show the first rows so the call is not wasted.
        let header: Vec<String> = names.iter().map(|name| format!("d/d{name}")).collect();
        println!(
            "{:>6} {:>14} {}",
            "sample",
            "value",
            header
                .iter()
                .map(|h| format!("{h:>14}"))
                .collect::<String>()
        );
        for i in 0..n.min(10) {
            let row: String = (0..k)
                .map(|j| format!("{:>14.7e}", out.derivatives[i * k + j]))
                .collect();
            println!("{i:>6} {:>14.7e} {row}", out.values[i]);
        }
        if n > 10 {
            println!(
                "... {} more; --values and --derivatives write them all",
                n - 10
            );
        }
    }
    eprintln!("evaluated {n} samples on {}", backend.describe());
    Ok(())
}
