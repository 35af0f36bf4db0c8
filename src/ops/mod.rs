//! The mathematics of each operation in one place: its name, its parameters,
//! its value and derivative in f64 (the reference every GPU result is checked
//! against) and the name of its WGSL mirror in `shaders/`.

mod binary;
#[cfg(test)]
mod trig_f32;
mod unary;

pub use binary::BinaryOp;
pub use unary::UnaryOp;
