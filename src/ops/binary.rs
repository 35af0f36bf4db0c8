//! Element-wise binary operations: value and both partial derivatives in
//! f64, the reference for `shaders/binary.wgsl` (same names with `_vdd`,
//! same formulas, same edge policy as the unary operations).
//!
//! - NaN in either operand gives NaN for the value and both partials.
//! - Division by zero gives IEEE's signed infinity (NaN for 0/0).
//! - a^b for a < 0 needs an integer b (NaN otherwise); its partial with
//!   respect to b, a^b ln a, is NaN for a < 0 and 0 for a = 0 < b. An
//!   infinite exponent gives NaN.
//! - max and min split a tie half and half between the operands, as JAX does.
//! - `strong_mul` is a * b where a zero factor makes the product zero even
//!   against an infinite one (0 log 0 = 0, as in xlogy): the weighting of
//!   cross-entropy's terms, so that a target of 0 on a logit of -Inf adds
//!   nothing. NaN still gives NaN.

/// A binary operation of an element-wise graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
    /// a ^ b with a variable exponent (a constant one is the unary `pow`).
    Pow,
    /// min(a, b)
    Min,
    /// max(a, b)
    Max,
    /// a * b, except that a zero factor gives 0 even when the other is
    /// infinite (0 log 0 = 0, as in xlogy). Not in the text language:
    /// `cross_entropy` weights its terms with it.
    StrongMul,
}

impl BinaryOp {
    /// The operation's name in WGSL and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Min => "min",
            BinaryOp::Max => "max",
            BinaryOp::StrongMul => "strong_mul",
        }
    }

    /// (value, d/da, d/db) at (a, b), in f64.
    pub fn value_and_partials(self, a: f64, b: f64) -> (f64, f64, f64) {
        if a.is_nan() || b.is_nan() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        match self {
            BinaryOp::Add => (a + b, 1.0, 1.0),
            BinaryOp::Sub => (a - b, 1.0, -1.0),
            BinaryOp::Mul => (a * b, b, a),
            BinaryOp::Div => (a / b, 1.0 / b, -(a / b) / b),
            BinaryOp::Pow => pow(a, b),
            BinaryOp::Min => pick(a, b, a < b),
            BinaryOp::Max => pick(a, b, a > b),
            BinaryOp::StrongMul if a == 0.0 || b == 0.0 => (0.0, b, a),
            BinaryOp::StrongMul => (a * b, b, a),
        }
    }
}

/// For max and min: the winner's value, the partial going to whichever
/// operand won, or half to each on a tie (where the value is a's).
fn pick(a: f64, b: f64, a_wins: bool) -> (f64, f64, f64) {
    if a == b {
        (a, 0.5, 0.5)
    } else if a_wins {
        (a, 1.0, 0.0)
    } else {
        (b, 0.0, 1.0)
    }
}

fn pow(a: f64, b: f64) -> (f64, f64, f64) {
    let integer = b.fract() == 0.0;
    if b.is_infinite() || (a < 0.0 && !integer) {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let value = a.powf(b);
    let da = if b == 0.0 { 0.0 } else { b * a.powf(b - 1.0) };
    let db = if a > 0.0 {
        value * a.ln()
    } else if a == 0.0 && b > 0.0 {
        0.0
    } else {
        f64::NAN
    };
    (value, da, db)
}
