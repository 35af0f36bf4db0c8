//! Element-wise binary operations: value and both partial derivatives in
//! f64, the reference for `shaders/binary.wgsl` (same names with `_vdd`,
//! same formulas, same edge policy as the unary operations).
//!
//! - NaN in either operand gives NaN for the value and both partials.
//! - Division by zero gives IEEE's signed infinity (NaN for 0/0).
//! - a^b for a < 0 needs an integer b (NaN otherwise); its partial with
//!   respect to b, a^b ln a, is NaN for a < 0 and 0 for a = 0 < b. An
//!   infinite exponent gives IEEE's limits (0.5^Inf = 0, 2^-Inf = 0,
//!   (-1)^Inf = 1), and the partials the same formulas give there, Inf
//!   times 0 being NaN, as in JAX.
//! - max and min split a tie half and half between the operands, as JAX does.
//! - `strong_mul` is a * b where a zero factor makes the product zero even
//!   against an infinite one (0 log 0 = 0, as in xlogy): the weighting of
//!   cross-entropy's terms, so that a target of 0 on a logit of -Inf adds
//!   nothing. NaN still gives NaN.
//! - atan2(y, x) is the angle of the point (x, y), in [-pi, pi], with IEEE's
//!   answers on the axes and at infinity (atan2(+-0, -0) = +-pi,
//!   atan2(+-Inf, +Inf) = +-pi/4). Its partials are x / (x^2 + y^2) in y and
//!   -y / (x^2 + y^2) in x, computed with both scaled by max(|x|, |y|) so that
//!   nothing overflows; at the origin, where they have no limit, both are 0
//!   (the subgradient of least magnitude, as abs'(0) = 0), and where either
//!   operand is infinite both are 0, their limit.
//! - xlogy(x, y) = x ln y, with 0 wherever x = 0 (0 ln 0 = 0, and 0 for
//!   every y < 0 or +Inf too, as scipy and JAX give), and 0 wherever ln y = 0
//!   (y = 1, even for an infinite x: the zero factor of `strong_mul`). The
//!   partial in x is ln y everywhere, x = 0 included: the function is x ln y,
//!   linear in x, on every line y = const > 0, so that is its derivative there
//!   (JAX's rule too; -Inf at y = 0, NaN for y < 0). The partial in y is x / y,
//!   and 0 wherever x = 0, since xlogy(0, y) = 0 for every y: JAX's x / y gives
//!   NaN at (0, 0), chainrule the partial along the line x = 0. For y < 0 and
//!   x != 0, outside the domain, everything is NaN.
//! - The comparisons `<`, `<=`, `>`, `>=` give 1 where they hold and 0
//!   elsewhere, with both partials 0 everywhere, at the switch included (as
//!   JAX). NaN compares false, as in IEEE: a comparison with NaN gives 0.
//! - `where(c, a, b)` is `where_a(c, a) + where_b(c, b)`: `where_a` is a
//!   where c != 0 and -0 elsewhere, `where_b` is b where c = 0 and -0
//!   elsewhere (x + -0 = x for every x, signed zeros included, so the sum is
//!   exactly the selected operand). The partial in the selected operand is
//!   1 and in every other operand exactly 0, so by the zero-factor rule of
//!   the chain-rule products an infinite or NaN value or derivative on the
//!   branch not taken never reaches the result. A NaN in the branch not
//!   taken does not make the value NaN either; a NaN condition counts as
//!   true (c != 0), as in NumPy.

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
    /// a * b, except that a zero factor gives 0 whatever the other is,
    /// infinite or NaN: the chain rule's product (`chain_mul`), with which
    /// the derived programs of `Program::jvp_program` and its kin multiply
    /// partials and tangents, so that a path through a zero partial adds
    /// nothing, as in the compiled kernels. Not in the text language.
    ChainMul,
    /// atan2(a, b): the angle of the point (b, a), so atan2(y, x) as in C.
    Atan2,
    /// a ln b, with 0 where a = 0 (0 ln 0 = 0), as scipy's xlogy.
    Xlogy,
    /// 1 where a < b, else 0.
    Lt,
    /// 1 where a <= b, else 0.
    Le,
    /// 1 where a > b, else 0.
    Gt,
    /// 1 where a >= b, else 0.
    Ge,
    /// b where a != 0, else -0: the first half of `where(a, b, _)`.
    WhereA,
    /// b where a = 0, else -0: the second half of `where(a, _, b)`.
    WhereB,
}

/// Every binary operation.
const ALL: [BinaryOp; 17] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Pow,
    BinaryOp::Min,
    BinaryOp::Max,
    BinaryOp::StrongMul,
    BinaryOp::ChainMul,
    BinaryOp::Atan2,
    BinaryOp::Xlogy,
    BinaryOp::Lt,
    BinaryOp::Le,
    BinaryOp::Gt,
    BinaryOp::Ge,
    BinaryOp::WhereA,
    BinaryOp::WhereB,
];

/// The binary operations written as calls, `f(a, b)`, in the text language.
const CALLS: [BinaryOp; 5] = [
    BinaryOp::Min,
    BinaryOp::Max,
    BinaryOp::Pow,
    BinaryOp::Atan2,
    BinaryOp::Xlogy,
];

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
            BinaryOp::ChainMul => "chain_mul",
            BinaryOp::Atan2 => "atan2",
            BinaryOp::Xlogy => "xlogy",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::WhereA => "where_a",
            BinaryOp::WhereB => "where_b",
        }
    }

    /// The operation written `name(a, b)` in the text language, if any.
    pub fn from_call(name: &str) -> Option<BinaryOp> {
        CALLS.into_iter().find(|op| op.name() == name)
    }

    /// The operation of this name (`name()`), calls and operators alike.
    pub fn from_name(name: &str) -> Option<BinaryOp> {
        ALL.into_iter().find(|op| op.name() == name)
    }

    /// How the text language writes each operation it has (`a + b`,
    /// `atan2(a, b)`; forms of one operation separated by `; `), in order;
    /// the internal ones are left out.
    pub fn written() -> impl Iterator<Item = (BinaryOp, &'static str)> {
        ALL.into_iter().filter_map(|op| {
            let text = match op {
                BinaryOp::Add => "a + b",
                BinaryOp::Sub => "a - b",
                BinaryOp::Mul => "a * b",
                BinaryOp::Div => "a / b",
                BinaryOp::Pow => "a ^ b; pow(a, b)",
                BinaryOp::Min => "min(a, b)",
                BinaryOp::Max => "max(a, b)",
                BinaryOp::Atan2 => "atan2(a, b)",
                BinaryOp::Xlogy => "xlogy(a, b)",
                BinaryOp::Lt => "a < b",
                BinaryOp::Le => "a <= b",
                BinaryOp::Gt => "a > b",
                BinaryOp::Ge => "a >= b",
                BinaryOp::StrongMul | BinaryOp::ChainMul | BinaryOp::WhereA | BinaryOp::WhereB => {
                    return None;
                }
            };
            Some((op, text))
        })
    }

    /// The partial derivatives in a and in b as formulas, for tables and
    /// `chainrule ops` (the README gives the edges).
    pub fn partial_formulas(self) -> [&'static str; 2] {
        match self {
            BinaryOp::Add => ["1", "1"],
            BinaryOp::Sub => ["1", "-1"],
            BinaryOp::Mul | BinaryOp::StrongMul | BinaryOp::ChainMul => ["b", "a"],
            BinaryOp::Div => ["1 / b", "-a / b^2"],
            BinaryOp::Pow => ["b a^(b-1)", "a^b ln a"],
            BinaryOp::Min => [
                "1 where a < b (1/2 at a tie)",
                "1 where b < a (1/2 at a tie)",
            ],
            BinaryOp::Max => [
                "1 where a > b (1/2 at a tie)",
                "1 where b > a (1/2 at a tie)",
            ],
            BinaryOp::Atan2 => ["b / (a^2 + b^2)", "-a / (a^2 + b^2)"],
            BinaryOp::Xlogy => ["ln b", "a / b"],
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => ["0", "0"],
            BinaryOp::WhereA => ["0", "1 where a != 0"],
            BinaryOp::WhereB => ["0", "1 where a = 0"],
        }
    }

    /// The names of the operations written as calls.
    pub fn call_names() -> impl Iterator<Item = &'static str> {
        CALLS.into_iter().map(BinaryOp::name)
    }

    /// The partial derivatives with respect to the first and the second
    /// operand, as expressions of the text language in `x` (the first) and
    /// `y` (the second): the binary half of
    /// [`UnaryOp::derivative_expression`](super::UnaryOp::derivative_expression),
    /// with the same contract, except where the value itself is NaN (a NaN
    /// operand, a negative base with a fractional exponent) or the
    /// exponent infinite: there the reference's partials may differ from
    /// these. A test checks them against [`BinaryOp::value_and_partials`].
    pub fn partial_expressions(self) -> [&'static str; 2] {
        match self {
            BinaryOp::Add => ["1", "1"],
            BinaryOp::Sub => ["1", "-1"],
            BinaryOp::Mul | BinaryOp::StrongMul | BinaryOp::ChainMul => ["y", "x"],
            BinaryOp::Div => ["1 / y", "-(x / y) / y"],
            BinaryOp::Pow => [
                "where(y, y * x^(y - 1), 0)",
                "where(x > 0, x^y * ln(x), where(x, 0 / 0, where(y > 0, 0, 0 / 0)))",
            ],
            BinaryOp::Min => [
                "(x < y) + 0.5 * (x <= y) * (x >= y)",
                "(y < x) + 0.5 * (x <= y) * (x >= y)",
            ],
            BinaryOp::Max => [
                "(x > y) + 0.5 * (x <= y) * (x >= y)",
                "(y > x) + 0.5 * (x <= y) * (x >= y)",
            ],
            BinaryOp::Atan2 => [
                // From the point scaled by m = max(|x|, |y|), so that the
                // squares neither overflow nor underflow; 0 at the origin
                // and at infinity, as the reference.
                "where((max(abs(x), abs(y)) > 0) * (max(abs(x), abs(y)) < 1 / 0), \
                 y / max(abs(x), abs(y)) / ((x / max(abs(x), abs(y)))^2 \
                 + (y / max(abs(x), abs(y)))^2) / max(abs(x), abs(y)), 0)",
                "where((max(abs(x), abs(y)) > 0) * (max(abs(x), abs(y)) < 1 / 0), \
                 -x / max(abs(x), abs(y)) / ((x / max(abs(x), abs(y)))^2 \
                 + (y / max(abs(x), abs(y)))^2) / max(abs(x), abs(y)), 0)",
            ],
            BinaryOp::Xlogy => ["ln(y)", "where(x, where(y >= 0, x / y, 0 / 0), 0)"],
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => ["0", "0"],
            BinaryOp::WhereA => ["0", "where(x, 1, 0)"],
            BinaryOp::WhereB => ["0", "where(x, 0, 1)"],
        }
    }

    /// (value, d/da, d/db) at (a, b), in f64.
    pub fn value_and_partials(self, a: f64, b: f64) -> (f64, f64, f64) {
        let indicator = |holds: bool| (f64::from(u8::from(holds)), 0.0, 0.0);
        let select = |taken: bool| {
            if taken {
                (b, 0.0, 1.0)
            } else {
                (-0.0, 0.0, 0.0)
            }
        };
        match self {
            BinaryOp::Lt => indicator(a < b),
            BinaryOp::Le => indicator(a <= b),
            BinaryOp::Gt => indicator(a > b),
            BinaryOp::Ge => indicator(a >= b),
            BinaryOp::WhereA => select(a != 0.0),
            BinaryOp::WhereB => select(a == 0.0),
            BinaryOp::ChainMul => (super::chain_mul(a, b), b, a),
            _ if a.is_nan() || b.is_nan() => (f64::NAN, f64::NAN, f64::NAN),
            BinaryOp::Add => (a + b, 1.0, 1.0),
            BinaryOp::Sub => (a - b, 1.0, -1.0),
            BinaryOp::Mul => (a * b, b, a),
            BinaryOp::Div => (a / b, 1.0 / b, -(a / b) / b),
            BinaryOp::Pow => pow(a, b),
            BinaryOp::Min => pick(a, b, a < b),
            BinaryOp::Max => pick(a, b, a > b),
            BinaryOp::StrongMul if a == 0.0 || b == 0.0 => (0.0, b, a),
            BinaryOp::StrongMul => (a * b, b, a),
            BinaryOp::Atan2 => atan2(a, b),
            BinaryOp::Xlogy => xlogy(a, b),
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
    // An infinite exponent counts as an even integer: IEEE's limits
    // (0.5^Inf = 0, (-2)^Inf = Inf, (-1)^Inf = 1), and through the same
    // formulas the partials JAX gives there (Inf times 0 is NaN).
    let integer = b.fract() == 0.0 || b.is_infinite();
    if a < 0.0 && !integer {
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

/// atan2(y, x) and its partials x / r^2 and -y / r^2, r^2 = x^2 + y^2, from
/// the point scaled by m = max(|x|, |y|) so that r^2 cannot overflow or
/// underflow: x / r^2 = (x/m) / ((x/m)^2 + (y/m)^2) / m.
fn atan2(y: f64, x: f64) -> (f64, f64, f64) {
    let value = y.atan2(x);
    let m = x.abs().max(y.abs());
    if m == 0.0 || m.is_infinite() {
        return (value, 0.0, 0.0);
    }
    let (xs, ys) = (x / m, y / m);
    let s = xs * xs + ys * ys;
    (value, xs / s / m, -ys / s / m)
}

/// x ln y with 0 where x = 0 or ln y = 0; partials ln y and x / y (0 where x = 0).
fn xlogy(x: f64, y: f64) -> (f64, f64, f64) {
    let ln_y = y.ln();
    if x == 0.0 {
        return (0.0, ln_y, 0.0);
    }
    if y < 0.0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let value = if ln_y == 0.0 { 0.0 } else { x * ln_y };
    (value, ln_y, x / y)
}
