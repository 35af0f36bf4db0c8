//! Backends execute plans: `gpu` on a wgpu device, `cpu` in f64 as the
//! reference and as the fallback where no adapter exists. [`Backend`] lets a
//! caller hold either.

pub mod chain;
mod compiled;
pub mod cpu;
mod cpu_program;
pub mod gpu;
mod gradient;
mod selection;
mod vector;

pub use gradient::{Gradient, GradientOutput, GradientRequest, Reduction};

pub use vector::JacobianOutput;

use crate::error::{Error, Result};
use crate::ops::UnaryOp;

/// Values and derivatives of a bulk element-wise call, index for index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnaryOutput {
    /// f(x_i).
    pub values: Vec<f32>,
    /// f'(x_i).
    pub derivatives: Vec<f32>,
}

/// Values and derivatives of an element-wise graph for N samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalOutput {
    /// f(x_i), N of them.
    pub values: Vec<f32>,
    /// df/dx_ij, N x k row-major: row i holds sample i's partials, one
    /// column per input in the graph's input order.
    pub derivatives: Vec<f32>,
    /// k, the number of inputs (columns of `derivatives`).
    pub inputs: usize,
}

/// Either backend, chosen at run time.
#[derive(Debug)]
pub enum Backend {
    /// A GPU through wgpu.
    Gpu(std::sync::Arc<gpu::GpuContext>),
    /// The f64 reference on the host.
    Cpu(cpu::CpuBackend),
}

impl Backend {
    /// The GPU chosen by `options`, or the CPU backend when none can be opened.
    /// The second value is the one-line notice to show the user when the
    /// fallback was taken; errors in the options themselves (a misspelt
    /// WGPU_BACKEND, an adapter name that matches nothing) are returned, not
    /// papered over.
    pub fn gpu_or_cpu(options: &gpu::ContextOptions) -> Result<(Backend, Option<String>)> {
        // An adapter asked for by name that is not there is the caller's
        // mistake to hear about, not a reason to run somewhere else.
        let named = options.adapter_name.is_some()
            || std::env::var(gpu::ADAPTER_NAME_VARIABLE).is_ok_and(|v| !v.trim().is_empty());
        match gpu::GpuContext::new(options) {
            Ok(context) => Ok((Backend::Gpu(std::sync::Arc::new(context)), None)),
            Err(error @ crate::Error::BadEnvironment { .. }) => Err(error),
            Err(error @ crate::Error::NoAdapter { .. }) if named => Err(error),
            Err(error) => Ok((
                Backend::Cpu(cpu::CpuBackend),
                Some(format!(
                    "chainrule: no GPU ({error}); falling back to the CPU backend (f64 reference, much slower)"
                )),
            )),
        }
    }

    /// A short description: the adapter and its API, or "cpu".
    pub fn describe(&self) -> String {
        match self {
            Backend::Gpu(context) => {
                let adapter = context.adapter();
                format!("{} ({})", adapter.name, adapter.backend)
            }
            Backend::Cpu(_) => "cpu (f64 reference)".to_string(),
        }
    }

    /// Values and derivatives of `op` at every element of `xs`.
    pub fn unary(&self, op: UnaryOp, xs: &[f32]) -> Result<UnaryOutput> {
        match self {
            Backend::Gpu(context) => context.unary(op, xs),
            Backend::Cpu(cpu) => cpu.unary(op, xs),
        }
    }

    /// Values and every partial derivative of `graph` for N samples given as
    /// one column per input. The CPU backend ignores `fusion`.
    pub fn evaluate(
        &self,
        graph: &crate::graph::Graph,
        inputs: &[&[f32]],
        fusion: crate::schedule::Fusion,
    ) -> Result<EvalOutput> {
        match self {
            Backend::Gpu(context) => context.evaluate(graph, inputs, fusion),
            Backend::Cpu(_) => {
                let (values, derivatives) = graph.evaluate_columns(inputs)?;
                Ok(EvalOutput {
                    values,
                    derivatives,
                    inputs: graph.inputs().len(),
                })
            }
        }
    }
}

/// A zero-filled host vector, or an error (not an abort) when memory is short.
pub(crate) fn host_vec<T: Clone + Default>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = reserve_host(len, what)?;
    v.resize(len, T::default());
    Ok(v)
}

/// An empty host vector with room for `len` elements, or an error (not an
/// abort) when memory is short.
pub(crate) fn reserve_host<T>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::HostMemory {
        what: what.to_string(),
        needed: (len as u64).saturating_mul(std::mem::size_of::<T>() as u64),
    })?;
    Ok(v)
}
