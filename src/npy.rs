//! Arrays in and out as NumPy .npy files: f32 or f64 in (computed in f32),
//! f32 out, C order, any shape checked by the caller.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

use crate::error::{Error, Result};

/// An array read from a .npy file, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The shape, outermost first.
    pub shape: Vec<usize>,
    /// The elements in C order.
    pub data: Vec<f32>,
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Reads a float array; f64 is rounded to f32. Other dtypes, Fortran order
/// with more than one dimension, and unreadable files are errors.
pub fn read(path: &Path) -> Result<Array> {
    let file = File::open(path).map_err(|e| file_error(path, e))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .map_err(|e| file_error(path, format!("not a .npy file ({e})")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if shape.len() > 1 && npy.order() == npyz::Order::Fortran {
        return Err(file_error(
            path,
            "the array is in Fortran order; save it in C order (numpy.ascontiguousarray)",
        ));
    }
    let descr = npy.dtype().descr();
    let data = match descr.trim_matches('\'') {
        "<f4" | ">f4" => npy.into_vec::<f32>(),
        "<f8" | ">f8" => npy
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        other => {
            return Err(file_error(
                path,
                format!("dtype {other} is not supported; use float32 or float64"),
            ));
        }
    }
    .map_err(|e| file_error(path, e))?;
    Ok(Array { shape, data })
}

/// Writes f32 `data` with `shape` (C order).
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(Error::Shape(format!(
            "{} values do not fill shape {shape:?}",
            data.len()
        )));
    }
    let file = File::create(path).map_err(|e| file_error(path, e))?;
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(|e| file_error(path, e))?;
    writer
        .extend(data.iter().copied())
        .map_err(|e| file_error(path, e))?;
    writer.finish().map_err(|e| file_error(path, e))
}

/// One array to write: where, its shape and its data.
pub type Output<'a> = (&'a Path, &'a [usize], &'a [f32]);

/// Checks, before any work is done, that each of `paths` can be written:
/// no two the same file, each in a directory that exists. A command calls
/// this first, so that a mistyped output path costs nothing.
pub fn check_outputs(paths: &[&Path]) -> Result<()> {
    for (i, path) in paths.iter().enumerate() {
        if paths[..i].iter().any(|p| same_file(p, path)) {
            return Err(file_error(
                path,
                "given for two outputs; each output needs a file of its own",
            ));
        }
        let parent = directory_of(path);
        if !parent.is_dir() {
            return Err(file_error(
                path,
                format!("the directory {} does not exist", parent.display()),
            ));
        }
        if path.is_dir() {
            return Err(file_error(path, "is a directory, not a file"));
        }
    }
    Ok(())
}

/// The directory a file path names its file in (`.` for a bare name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether two output paths name one file: the same name in the same
/// directory, however each was written (`v.npy`, `./v.npy`, a linked
/// directory), or one existing file reached through a link.
fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(a), Ok(b)) = (a.canonicalize(), b.canonicalize()) {
        return a == b;
    }
    let place = |p: &Path| {
        (
            directory_of(p).canonicalize().ok(),
            p.file_name().map(|n| n.to_owned()),
        )
    };
    a == b || {
        let (pa, pb) = (place(a), place(b));
        pa.0.is_some() && pa == pb
    }
}

/// Writes every array or none: each goes to a temporary file beside its
/// path first, and only when all are written are they renamed into place
/// (through a symbolic link, onto the file it names); on an error the
/// temporaries are removed and files already at those paths are left as
/// they were.
pub fn write_all(outputs: &[Output<'_>]) -> Result<()> {
    let paths: Vec<&Path> = outputs.iter().map(|&(path, ..)| path).collect();
    check_outputs(&paths)?;
    let targets: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
        .collect();
    let temporary = |path: &Path| -> PathBuf {
        let name = path
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        path.with_file_name(format!(".{name}.partial"))
    };
    let mut written: Vec<PathBuf> = Vec::with_capacity(outputs.len());
    let result = outputs
        .iter()
        .zip(&targets)
        .try_for_each(|(&(path, shape, data), target)| {
            let staged = temporary(target);
            written.push(staged.clone());
            // An error names the file asked for, not the temporary.
            write(&staged, shape, data).map_err(|e| match e {
                Error::File { message, .. } => file_error(path, message),
                other => other,
            })
        });
    let result = result.and_then(|()| {
        paths
            .iter()
            .zip(&targets)
            .zip(&written)
            .try_for_each(|((path, target), staged)| {
                std::fs::rename(staged, target).map_err(|e| file_error(path, e))
            })
    });
    if result.is_err() {
        for staged in &written {
            let _ = std::fs::remove_file(staged);
        }
    }
    result
}
