//! The GPU backend: the only module that names wgpu types. One context
//! (instance, adapter, device, queue, limits), a kernel cache, device arrays,
//! one readback pattern, and the bulk kernels.

mod adapter;
mod algebra;
mod array;
mod ceilings;
mod context;
mod fused;
mod fused_forward;
mod graph;
mod jacobian;
mod lazy;
mod pool;
mod products;
mod program;
mod rows;
mod unary;

pub use adapter::{ADAPTER_NAME_VARIABLE, BACKEND_VARIABLE};
pub(crate) use algebra::program_algebra;
pub use array::GpuArray;
pub use ceilings::Bandwidths;
pub use fused::FusedResident;
pub(crate) use jacobian::Segments;
pub use jacobian::{BatchLayout, GpuJacobian};
pub(crate) use program::Forward;

/// Lazy products, for the plan executor.
pub(crate) mod jacobian_lazy {
    pub(crate) use super::lazy::Lazy;
}
pub use context::{
    AdapterReport, ContextOptions, DeviceLimits, GpuContext, LimitsOverride, Traffic,
    survey_adapters,
};
