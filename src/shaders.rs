//! The registry of WGSL sources: every file in `shaders/` is loaded here and
//! nowhere else, and kernels are composed from them as text.

use crate::ops::UnaryOp;

/// Bit-level classification and accurate exp, expm1, ln, log1p.
pub const COMMON: &str = include_str!("../shaders/common.wgsl");
/// sin and cos with exact range reduction for every finite f32.
pub const TRIG: &str = include_str!("../shaders/trig.wgsl");
/// Value and derivative of every unary operation.
pub const ACTIVATIONS: &str = include_str!("../shaders/activations.wgsl");
/// Value and partials of every binary operation.
pub const BINARY: &str = include_str!("../shaders/binary.wgsl");
/// The batched, scaled matrix product of structured Jacobians (after `COMMON`).
pub const MATMUL: &str = include_str!("../shaders/matmul.wgsl");
/// The face-splitting product of two shared matrices, which turns a batch
/// of products that differ only in diagonal scalings into one product
/// (after `COMMON`).
pub const FACE_SPLIT: &str = include_str!("../shaders/face_split.wgsl");
/// The same product for many small matrices, one invocation per element (after `COMMON`).
pub const MATMUL_SMALL: &str = include_str!("../shaders/matmul_small.wgsl");
/// Scaling, sums and Hadamard products of structured Jacobians (after `COMMON`).
pub const JACOBIAN: &str = include_str!("../shaders/jacobian.wgsl");
/// Column sums of partial sums by a fixed tree (standalone).
pub const REDUCE: &str = include_str!("../shaders/reduce.wgsl");
/// One stage of a tree reduction along rows: sums, dots, sums of exp and
/// maxima (after `COMMON`).
pub const ROWS: &str = include_str!("../shaders/rows.wgsl");
/// The element-wise ends of logsumexp and the shift by the maximum over
/// long rows (after `COMMON`).
pub const ROWS_FINISH: &str = include_str!("../shaders/rows_finish.wgsl");
/// The values of an index, slice or assembly on the op-by-op path (standalone).
pub const SELECT: &str = include_str!("../shaders/select.wgsl");
/// Products with a selection as gathers (`src/backend/gpu/lazy.rs`).
pub const GATHER: &str = include_str!("../shaders/gather.wgsl");
/// The bulk unary kernel's entry point.
pub const UNARY_KERNEL: &str = include_str!("../shaders/unary.wgsl");

/// Every file with its name. The first four form the element-wise library,
/// in the order a kernel concatenates them; `unary.wgsl` is appended to it;
/// the rest are complete kernels, validated after `common.wgsl`
/// ([`with_common`]), which `reduce.wgsl`, `select.wgsl` and `gather.wgsl` do
/// not need.
pub const FILES: [(&str, &str); 14] = [
    ("common.wgsl", COMMON),
    ("trig.wgsl", TRIG),
    ("activations.wgsl", ACTIVATIONS),
    ("binary.wgsl", BINARY),
    ("unary.wgsl", UNARY_KERNEL),
    ("matmul.wgsl", MATMUL),
    ("matmul_small.wgsl", MATMUL_SMALL),
    ("face_split.wgsl", FACE_SPLIT),
    ("jacobian.wgsl", JACOBIAN),
    ("reduce.wgsl", REDUCE),
    ("rows.wgsl", ROWS),
    ("rows_finish.wgsl", ROWS_FINISH),
    ("select.wgsl", SELECT),
    ("gather.wgsl", GATHER),
];

/// The WGSL call that evaluates `op` at `x`, with `p` its parameter.
pub fn unary_call(op: UnaryOp) -> String {
    match op.parameter() {
        Some(_) => format!("{}_vd(x, p)", op.name()),
        None => format!("{}_vd(x)", op.name()),
    }
}

/// A Jacobian or reduction kernel (`matmul.wgsl`, `matmul_small.wgsl`,
/// `face_split.wgsl`, `jacobian.wgsl`, `rows.wgsl`, `rows_finish.wgsl`)
/// after `common.wgsl`, whose bit tests and chain-rule product it uses.
pub fn with_common(kernel: &str) -> String {
    format!("{COMMON}\n{kernel}")
}

/// The library every element-wise kernel starts with.
pub fn library() -> String {
    [COMMON, TRIG, ACTIVATIONS, BINARY].join("\n")
}

/// The full source of the bulk kernel for `op`. Parameters are passed at run
/// time, so one kernel serves every alpha or exponent.
pub fn unary_kernel(op: UnaryOp) -> String {
    format!(
        "{}\nfn unary_vd(x: f32, p: f32) -> vec2<f32> {{\n    return {};\n}}\n{UNARY_KERNEL}",
        library(),
        unary_call(op)
    )
}
