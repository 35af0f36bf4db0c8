//! chainrule computes derivatives in bulk on the GPU: values and derivatives
//! of element-wise functions for millions of inputs at once, checked against
//! an f64 reference on the CPU.
//!
//! ```no_run
//! use chainrule::{Backend, ContextOptions, UnaryOp};
//!
//! let (backend, notice) = Backend::gpu_or_cpu(&ContextOptions::default())?;
//! if let Some(notice) = notice {
//!     eprintln!("{notice}");
//! }
//! let xs: Vec<f32> = (0..1_000_000).map(|i| i as f32 * 1e-5 - 5.0).collect();
//! let out = backend.unary(UnaryOp::Sigmoid, &xs)?;
//! assert_eq!(out.derivatives.len(), xs.len());
//! # Ok::<(), chainrule::Error>(())
//! ```
//!
//! Layers, each in its own module: `ops` (the mathematics, with the f64
//! reference), `shaders` (the WGSL registry), `backend` (`gpu` through wgpu,
//! `cpu` in f64).

pub mod backend;
pub mod bench;
pub mod compile;
pub mod error;
pub mod explain;
pub mod graph;
pub mod jacobian;
pub mod lang;
#[cfg(feature = "ndarray")]
pub mod ndarray_interop;
pub mod npy;
pub mod ops;
pub mod program;
pub mod schedule;
pub mod shaders;
#[cfg(test)]
mod testing;

pub use backend::cpu::CpuBackend;
pub use backend::gpu::{
    AdapterReport, ContextOptions, DeviceLimits, GpuArray, GpuContext, LimitsOverride,
};
pub use backend::{
    Backend, EvalOutput, Gradient, GradientOutput, GradientRequest, JacobianOutput, Reduction,
    UnaryOutput,
};
pub use error::{Error, Result};
/// The ndarray the `*_array` methods take and return, so that callers can
/// name the same version.
#[cfg(feature = "ndarray")]
pub use ndarray;
#[cfg(feature = "ndarray")]
pub use ndarray_interop::{GradientArrays, JacobianArrays, UnaryArrays};
pub use ops::UnaryOp;

/// The README's examples compile as doc tests (one of them uses ndarray).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "ndarray"))]
pub struct ReadmeDoctests;
