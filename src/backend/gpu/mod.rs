//! The GPU backend: the only module that names wgpu types. One context
//! (instance, adapter, device, queue, limits), a kernel cache, device arrays,
//! one readback pattern, and the bulk kernels.

mod adapter;
mod array;
mod ceilings;
mod codegen;
mod context;
mod graph;
mod jacobian;
mod pool;
mod program;
mod unary;

pub use adapter::{ADAPTER_NAME_VARIABLE, BACKEND_VARIABLE};
pub use array::GpuArray;
pub use ceilings::Bandwidths;
pub(crate) use jacobian::Segments;
pub use jacobian::{BatchLayout, GpuJacobian};
pub(crate) use program::program_algebra;

/// Lazy products, for the plan executor.
pub(crate) mod jacobian_lazy {
    pub(crate) use super::jacobian::Lazy;
}
pub use context::{
    AdapterReport, ContextOptions, DeviceLimits, GpuContext, LimitsOverride, survey_adapters,
};
