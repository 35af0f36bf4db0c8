//! Arrays in and out as NumPy .npy files: f32 or f64 in (computed in f32),
//! f32 out, C order, any shape checked by the caller.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

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
