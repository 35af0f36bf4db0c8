//! The CPU backend: the f64 reference executor. Tests compare every GPU result
//! with it, and it runs the same calls where no adapter exists. It computes in
//! f64 and rounds to f32 once, at the end; large inputs are split across the
//! machine's threads.

use crate::backend::UnaryOutput;
use crate::error::Result;
use crate::ops::UnaryOp;

/// The reference executor; it has no state.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

/// Below this many elements one thread is faster than spawning more.
const PARALLEL_THRESHOLD: usize = 1 << 16;

impl CpuBackend {
    /// Values and derivatives of `op` at every element of `xs`, in f64, rounded to f32.
    pub fn unary(&self, op: UnaryOp, xs: &[f32]) -> Result<UnaryOutput> {
        op.validate()?;
        let mut values = crate::backend::host_vec(xs.len(), "values")?;
        let mut derivatives = crate::backend::host_vec(xs.len(), "derivatives")?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = if xs.len() < PARALLEL_THRESHOLD {
            xs.len().max(1)
        } else {
            xs.len().div_ceil(threads)
        };
        std::thread::scope(|scope| {
            for ((x, v), d) in xs
                .chunks(chunk)
                .zip(values.chunks_mut(chunk))
                .zip(derivatives.chunks_mut(chunk))
            {
                scope.spawn(move || {
                    for ((x, v), d) in x.iter().zip(v).zip(d) {
                        let (value, derivative) = op.value_and_derivative(f64::from(*x));
                        *v = value as f32;
                        *d = derivative as f32;
                    }
                });
            }
        });
        Ok(UnaryOutput {
            values,
            derivatives,
        })
    }
}
