//! The mathematics of each operation in one place: its name, its parameters,
//! its value and derivative in f64 (the reference every GPU result is checked
//! against) and the name of its WGSL mirror in `shaders/`.

mod binary;
mod reduce;
mod special;
#[cfg(test)]
mod trig_f32;
mod unary;

pub use binary::BinaryOp;
pub(crate) use reduce::row_max;
pub use reduce::{ReduceOp, RowPartial};
pub use unary::UnaryOp;

/// Every element-wise function of the text language, for suggestions and
/// help: read from the op tables (each unary operation by name, and the
/// binary ones written as calls), so a new operation needs no entry here.
pub fn functions() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = UnaryOp::catalogue()
        .into_iter()
        .map(|op| op.name())
        .collect();
    names.extend(BinaryOp::call_names());
    names.push("where");
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(*name));
    names
}

/// A product of the chain rule: a partial times a tangent, a cotangent
/// times a partial, one Jacobian's entry times another's. A factor that is
/// exactly zero makes the product zero even when the other is infinite or
/// NaN, so a path through a zero partial (the losing side of max, min, relu,
/// abs or any other selection) contributes nothing, whatever happened along
/// it. The f64 mirror of `chain_mul` in shaders/common.wgsl.
pub fn chain_mul(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 { 0.0 } else { a * b }
}
