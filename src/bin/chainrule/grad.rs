//! `chainrule grad`: gradients of a program's scalar output (a loss), or of
//! another scalar line (`--of`), with respect to named inputs and
//! parameters, one .npy file per variable.

use std::path::{Path, PathBuf};

use chainrule::program::Program;
use chainrule::{Error, Reduction, npy};

use crate::backend;
use crate::jacobian::{load_variables, program_text};

/// What to differentiate: the variables (comma-separated lists), the line
/// (the output when `None`), and whether per sample.
pub(crate) struct Request<'a> {
    pub(crate) wrt: &'a [String],
    pub(crate) of: Option<&'a str>,
    pub(crate) per_sample: bool,
}

pub(crate) fn run(
    text: &str,
    (inputs, params): (&[String], &[String]),
    Request {
        wrt,
        of,
        per_sample,
    }: Request<'_>,
    out_dir: &Path,
    cpu: bool,
) -> chainrule::Result<()> {
    let text = program_text(text)?;
    let program = Program::parse(&text)?;
    // A line's own program keeps every declared variable, so the same
    // --input and --param files bind it.
    let program = match of {
        Some(line) => program.with_output(line)?,
        None => program,
    };
    let names: Vec<&str> = wrt
        .iter()
        .flat_map(|w| w.split(','))
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    if names.is_empty() {
        return Err(Error::InvalidArgument(
            "--wrt names the variables to differentiate, e.g. --wrt w,b".into(),
        ));
    }
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(Error::File {
            path: out_dir.display().to_string(),
            message: "--out-dir names a file; give a directory (created if missing)".into(),
        });
    }
    // Each gradient is written to a file named after its variable.
    if let Some(name) = crate::eval::repeated(&names) {
        return Err(Error::InvalidArgument(format!(
            "--wrt names `{name}` twice; name each variable once"
        )));
    }
    let arrays = load_variables(&program, inputs, params)?;
    let variables: Vec<(&str, &[f32])> = arrays
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let backend = backend(cpu)?;
    let reduction = if per_sample {
        Reduction::PerSample
    } else {
        Reduction::Mean
    };
    let out = backend.gradient(&program, &names, &variables, reduction)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::File {
        path: out_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let paths: Vec<PathBuf> = out
        .gradients
        .iter()
        .map(|gradient| out_dir.join(format!("{}.npy", gradient.name)))
        .collect();
    let files: Vec<npy::Output<'_>> = out
        .gradients
        .iter()
        .zip(&paths)
        .map(|(gradient, path)| (path.as_path(), &gradient.shape[..], &gradient.values[..]))
        .collect();
    npy::write_all(&files)?;
    for (gradient, path) in out.gradients.iter().zip(&paths) {
        println!(
            "{} {:?} -> {}",
            gradient.name,
            gradient.shape,
            path.display()
        );
    }
    println!(
        "{} = {:.9e} (mean over {} samples) on {}",
        program.output_name,
        out.mean,
        out.values.len(),
        backend.describe()
    );
    Ok(())
}
