//! The one error type of chainrule: every failure a caller can meet, each with a
//! message that says what to do about it. Nothing in the public API panics.

use thiserror::Error;

/// Everything that can go wrong in a chainrule call.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// No GPU adapter matched the request; the CPU backend still works.
    #[error(
        "no GPU adapter found{detail}; install a Vulkan driver (on Debian: apt-get install mesa-vulkan-drivers), check WGPU_BACKEND / WGPU_ADAPTER_NAME, or use the CPU backend"
    )]
    NoAdapter {
        /// What was asked for, e.g. " for WGPU_ADAPTER_NAME=foo (seen: llvmpipe)".
        detail: String,
    },

    /// An environment variable that chooses the adapter holds a value we do not understand.
    #[error("{variable}={value:?} is not understood: expected {expected}")]
    BadEnvironment {
        /// The variable's name.
        variable: &'static str,
        /// What it held.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },

    /// The adapter refused to open a device with the limits we asked for.
    #[error("the adapter refused to open a device: {0}")]
    DeviceRequest(String),

    /// The device was lost (driver reset, GPU removed); create a new context.
    #[error("the GPU device was lost ({0}); create a new context to continue")]
    DeviceLost(String),

    /// The device ran out of memory for this call now; smaller chunks or fewer
    /// concurrent calls may succeed.
    #[error("the GPU ran out of memory during {operation}; retry with a smaller batch")]
    OutOfMemory {
        /// What was running.
        operation: String,
    },

    /// The request can never fit on this device or in host memory, whatever else is running.
    #[error("{what} needs {needed} bytes but at most {limit} are possible here")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes allowed.
        limit: u64,
    },

    /// Host memory for a result could not be allocated (a dense Jacobian
    /// of a long vector, say); nothing was computed.
    #[error(
        "{what} needs {needed} bytes of host memory, which could not be allocated; ask for less (a smaller batch, or a JVP or VJP instead of the whole Jacobian)"
    )]
    HostMemory {
        /// What was to be allocated.
        what: String,
        /// Bytes needed.
        needed: u64,
    },

    /// A kernel would need a loop longer than software drivers execute
    /// (they stop a loop after 65,535 iterations without an error, so
    /// chainrule refuses up front rather than return a wrong result).
    #[error(
        "{what} needs a loop of {iterations} iterations but software drivers stop loops at {limit}; split the work into smaller calls"
    )]
    LoopTooLong {
        /// What would loop.
        what: String,
        /// Iterations needed.
        iterations: u64,
        /// Iterations a driver executes.
        limit: u64,
    },

    /// A WGSL kernel failed to compile: a bug in chainrule or in the driver.
    #[error("kernel `{kernel}` failed to compile: {message}")]
    ShaderCompile {
        /// The kernel's label.
        kernel: String,
        /// The compiler's message.
        message: String,
    },

    /// wgpu reported a validation or internal error during an operation: a bug
    /// in chainrule or in the driver; please report it with `chainrule info`.
    #[error("the GPU rejected {operation}: {message}")]
    Gpu {
        /// What was running.
        operation: String,
        /// wgpu's message.
        message: String,
    },

    /// Reading results back from the device failed.
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),

    /// Text in the language that does not parse or does not make sense; the
    /// message shows the line with a caret under the problem.
    #[error("{0}")]
    Parse(crate::lang::ParseError),

    /// A file that cannot be read or written, or holds the wrong kind of data.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },

    /// Arrays whose lengths or shapes disagree.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// An operation or parameter that is not valid (e.g. a NaN parameter, an unknown name).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result with chainrule's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
