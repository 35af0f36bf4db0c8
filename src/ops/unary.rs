//! Element-wise unary operations: value and derivative in f64.
//!
//! Each function here mirrors one in `shaders/activations.wgsl`: same name
//! (with `_vd` in WGSL), same stable formula, same policy for the edges:
//!
//! - NaN in gives NaN out, for the value and the derivative.
//! - +-Inf in gives the limit of f and of f' as x goes to +-Inf where it exists
//!   (sigmoid(+Inf) = 1 with derivative 0, exp(-Inf) = 0, ...), NaN where it
//!   does not (sin and cos at +-Inf, ln and sqrt of -Inf).
//! - A finite input whose true result is finite gives a finite output; a true
//!   result beyond the f32 range gives +-Inf (exp(100)).
//! - Outside a function's domain the result is NaN (ln(-1), sqrt(-1), a
//!   fractional power of a negative number); at a pole it is the signed
//!   infinity IEEE 754 gives (ln(0) = -Inf, 1/-0 = -Inf).
//! - At kinks the derivative follows JAX, except at abs: relu'(0) = 0,
//!   leaky_relu'(0) = 1, elu'(0) = alpha, and abs'(0) = 0 (JAX gives 1):
//!   the subgradient of least magnitude, odd like sign(x), and the tie rule
//!   of max(x, -x).

use std::fmt;
use std::str::FromStr;

use super::special;
use crate::error::{Error, Result};

/// An element-wise unary operation, with its parameter where it has one.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum UnaryOp {
    /// x, derivative 1.
    Identity,
    /// max(x, 0); derivative 1 for x > 0, else 0 (relu'(0) = 0).
    Relu,
    /// x for x >= 0, alpha x below; derivative 1 for x >= 0, alpha below.
    LeakyRelu {
        /// Slope for negative x (commonly 0.01).
        alpha: f32,
    },
    /// x for x > 0, alpha (e^x - 1) below; derivative 1 for x > 0, alpha e^x below.
    Elu {
        /// Scale of the negative branch (commonly 1).
        alpha: f32,
    },
    /// 1 / (1 + e^-x); derivative s (1 - s).
    Sigmoid,
    /// tanh x; derivative 1 - tanh^2 x.
    Tanh,
    /// ln(1 + e^x); derivative sigmoid(x).
    Softplus,
    /// x sigmoid(x); derivative s (1 + x (1 - s)).
    Silu,
    /// The tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    Gelu,
    /// e^x; derivative e^x.
    Exp,
    /// ln x; derivative 1/x.
    Ln,
    /// sin x; derivative cos x.
    Sin,
    /// cos x; derivative -sin x.
    Cos,
    /// tan x; derivative 1 / cos^2 x.
    Tan,
    /// sqrt x; derivative 1 / (2 sqrt x).
    Sqrt,
    /// |x|; derivative sign(x), abs'(0) = 0.
    Abs,
    /// x^2; derivative 2x.
    Square,
    /// 1/x; derivative -1/x^2.
    Reciprocal,
    /// x^p for a constant p; derivative p x^(p-1).
    Pow {
        /// The constant exponent.
        exponent: f32,
    },
    /// ln(1 + x) for x >= -1; derivative 1 / (1 + x).
    Log1p,
    /// e^x - 1; derivative e^x.
    Expm1,
    /// atan x; derivative 1 / (1 + x^2).
    Atan,
    /// asinh x; derivative 1 / sqrt(1 + x^2).
    Asinh,
    /// acosh x for x >= 1; derivative 1 / sqrt(x^2 - 1), +Inf at 1.
    Acosh,
    /// atanh x for |x| <= 1 (+-Inf at +-1); derivative 1 / (1 - x^2).
    Atanh,
    /// erf x; derivative (2 / sqrt(pi)) e^(-x^2).
    Erf,
    /// gelu's exact form x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2;
    /// derivative Phi(x) + x phi(x).
    GeluExact,
    /// x ln x for x >= 0 with 0 ln 0 = 0; derivative ln x + 1 (-Inf at 0).
    Xlogx,
    /// sinh x = (e^x - e^-x) / 2; derivative cosh x.
    Sinh,
    /// cosh x = (e^x + e^-x) / 2; derivative sinh x.
    Cosh,
}

/// sqrt(2 / pi), the scale inside gelu's tanh form.
const GELU_K: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of gelu's tanh form.
const GELU_C: f64 = 0.044_715;

impl UnaryOp {
    /// Every operation with its customary parameter, in the order tables list them.
    pub fn catalogue() -> Vec<UnaryOp> {
        use UnaryOp::*;
        vec![
            Identity,
            Relu,
            LeakyRelu { alpha: 0.01 },
            Elu { alpha: 1.0 },
            Sigmoid,
            Tanh,
            Softplus,
            Silu,
            Gelu,
            Exp,
            Ln,
            Sin,
            Cos,
            Tan,
            Sqrt,
            Abs,
            Square,
            Reciprocal,
            Pow { exponent: 3.0 },
            Log1p,
            Expm1,
            Atan,
            Asinh,
            Acosh,
            Atanh,
            Erf,
            GeluExact,
            Xlogx,
            Sinh,
            Cosh,
        ]
    }

    /// The operation's name in the text language, without its parameter.
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Identity => "identity",
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu { .. } => "leaky_relu",
            UnaryOp::Elu { .. } => "elu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Silu => "silu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Exp => "exp",
            UnaryOp::Ln => "ln",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tan => "tan",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Square => "square",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Pow { .. } => "pow",
            UnaryOp::Log1p => "log1p",
            UnaryOp::Expm1 => "expm1",
            UnaryOp::Atan => "atan",
            UnaryOp::Asinh => "asinh",
            UnaryOp::Acosh => "acosh",
            UnaryOp::Atanh => "atanh",
            UnaryOp::Erf => "erf",
            UnaryOp::GeluExact => "gelu_exact",
            UnaryOp::Xlogx => "xlogx",
            UnaryOp::Sinh => "sinh",
            UnaryOp::Cosh => "cosh",
        }
    }

    /// The parameter passed to the kernel (alpha or the exponent), if any.
    pub fn parameter(&self) -> Option<f32> {
        match *self {
            UnaryOp::LeakyRelu { alpha } | UnaryOp::Elu { alpha } => Some(alpha),
            UnaryOp::Pow { exponent } => Some(exponent),
            _ => None,
        }
    }

    /// The derivative as a formula, for tables and `--help`.
    pub fn derivative_formula(&self) -> &'static str {
        match self {
            UnaryOp::Identity => "1",
            UnaryOp::Relu => "1 if x > 0 else 0 (0 at x = 0)",
            UnaryOp::LeakyRelu { .. } => "1 if x >= 0 else alpha (1 at x = 0)",
            UnaryOp::Elu { .. } => "1 if x > 0 else alpha e^x (alpha at x = 0)",
            UnaryOp::Sigmoid => "s (1 - s), s = sigmoid(x)",
            UnaryOp::Tanh => "1 - tanh(x)^2",
            UnaryOp::Softplus => "sigmoid(x)",
            UnaryOp::Silu => "s (1 + x (1 - s)), s = sigmoid(x)",
            UnaryOp::Gelu => "s + 2 x s (1 - s) k (1 + 3c x^2), s = sigmoid(2k (x + c x^3))",
            UnaryOp::Exp => "e^x",
            UnaryOp::Ln => "1/x",
            UnaryOp::Sin => "cos x",
            UnaryOp::Cos => "-sin x",
            UnaryOp::Tan => "1 / cos^2 x",
            UnaryOp::Sqrt => "1 / (2 sqrt x)",
            UnaryOp::Abs => "sign(x) (0 at x = 0)",
            UnaryOp::Square => "2x",
            UnaryOp::Reciprocal => "-1/x^2",
            UnaryOp::Pow { .. } => "p x^(p-1)",
            UnaryOp::Log1p => "1 / (1 + x) (+Inf at x = -1)",
            UnaryOp::Expm1 => "e^x",
            UnaryOp::Atan => "1 / (1 + x^2)",
            UnaryOp::Asinh => "1 / sqrt(1 + x^2)",
            UnaryOp::Acosh => "1 / sqrt(x^2 - 1) (+Inf at x = 1)",
            UnaryOp::Atanh => "1 / (1 - x^2) (+Inf at x = +-1)",
            UnaryOp::Erf => "(2 / sqrt(pi)) e^(-x^2)",
            UnaryOp::GeluExact => {
                "Phi(x) + x e^(-x^2/2) / sqrt(2 pi), Phi(x) = (1 + erf(x / sqrt 2)) / 2"
            }
            UnaryOp::Xlogx => "ln x + 1 (-Inf at x = 0)",
            UnaryOp::Sinh => "cosh x",
            UnaryOp::Cosh => "sinh x",
        }
    }

    /// The derivative as an expression of the text language in `x` (with
    /// `alpha` and `p` standing for the parameter), from which the IR
    /// transformations build derivative nodes out of operations that have
    /// derivatives themselves, so that derivatives compose to any order.
    /// It agrees with [`UnaryOp::value_and_derivative`] in f64 (a test
    /// checks every operation on its domain and its edges); `where` keeps
    /// the kinks' conventions and NaN outside the domain, and `strong_mul`
    /// (a product whose zero factor wins, available to these expressions
    /// only) keeps the infinite limits. They are written so that their own
    /// derivatives (second derivatives) are right at poles and NaN too:
    /// outside the domain `x * (0 / 0)`, whose derivative is NaN, not the
    /// constant `0 / 0`, whose derivative is 0; `1 / x`, not `1 / abs(x)`,
    /// whose derivative abs'(0) = 0 would cancel the pole's -Inf by the
    /// zero-factor rule (so ln'(-0) is -Inf, as IEEE's 1/x and JAX give);
    /// `-(1 / x)^2`, not `-1 / x^2`, whose derivative meets 2x = 0 at the
    /// pole.
    pub fn derivative_expression(&self) -> &'static str {
        match self {
            UnaryOp::Identity => "1",
            UnaryOp::Relu => "x > 0",
            UnaryOp::LeakyRelu { .. } => "where(x >= 0, 1, alpha)",
            UnaryOp::Elu { .. } => "where(x > 0, 1, alpha * exp(x))",
            UnaryOp::Sigmoid => "sigmoid(x) * sigmoid(-x)",
            UnaryOp::Tanh => "4 * sigmoid(2 * x) * sigmoid(-2 * x)",
            UnaryOp::Softplus => "sigmoid(x)",
            UnaryOp::Silu => "strong_mul(sigmoid(x), 1 + strong_mul(x, sigmoid(-x)))",
            UnaryOp::Gelu => {
                "where(abs(x) > 12, x > 0, sigmoid(1.5957691216057308 * (x + 0.044715 * x^3)) \
                 + 1.5957691216057308 * x * (1 + 0.134145 * x^2) \
                 * sigmoid(1.5957691216057308 * (x + 0.044715 * x^3)) \
                 * sigmoid(-1.5957691216057308 * (x + 0.044715 * x^3)))"
            }
            UnaryOp::Exp | UnaryOp::Expm1 => "exp(x)",
            UnaryOp::Ln => "where(x >= 0, 1 / x, x * (0 / 0))",
            UnaryOp::Sin => "cos(x)",
            UnaryOp::Cos => "-sin(x)",
            UnaryOp::Tan => "1 / cos(x)^2",
            UnaryOp::Sqrt => "0.5 / sqrt(x)",
            UnaryOp::Abs => "(x > 0) - (x < 0)",
            UnaryOp::Square => "2 * x",
            UnaryOp::Reciprocal => "-(1 / x)^2",
            UnaryOp::Pow { exponent } if *exponent == 0.0 => "0",
            UnaryOp::Pow { .. } => "p * x^(p - 1)",
            UnaryOp::Log1p => "where(x >= -1, 1 / (1 + x), x * (0 / 0))",
            UnaryOp::Atan => "1 / (1 + x^2)",
            UnaryOp::Asinh => "where(abs(x) < 1e18, 1 / sqrt(1 + x^2), 1 / abs(x))",
            UnaryOp::Acosh => {
                "where(x >= 1, where(x < 1e18, 1 / sqrt((x - 1) * (x + 1)), 1 / x), x * (0 / 0))"
            }
            UnaryOp::Atanh => "where(abs(x) <= 1, 1 / ((1 - x) * (1 + x)), x * (0 / 0))",
            UnaryOp::Erf => "1.1283791670955126 * exp(-x^2)",
            UnaryOp::GeluExact => {
                "0.5 * (1 + erf(0.7071067811865476 * x)) \
                 + strong_mul(0.3989422804014327 * x, exp(-0.5 * x^2))"
            }
            UnaryOp::Xlogx => "ln(x) + 1",
            UnaryOp::Sinh => "cosh(x)",
            UnaryOp::Cosh => "sinh(x)",
        }
    }

    /// Checks the parameter: it must be finite.
    pub fn validate(&self) -> Result<()> {
        match self.parameter() {
            Some(p) if !p.is_finite() => Err(Error::InvalidArgument(format!(
                "the parameter of {} must be finite, got {p}",
                self.name()
            ))),
            _ => Ok(()),
        }
    }

    /// Value and derivative at `x`, in f64: the reference.
    pub fn value_and_derivative(&self, x: f64) -> (f64, f64) {
        if x.is_nan() {
            return (f64::NAN, f64::NAN);
        }
        match *self {
            UnaryOp::Identity => (x, 1.0),
            UnaryOp::Relu => relu(x),
            UnaryOp::LeakyRelu { alpha } => leaky_relu(x, f64::from(alpha)),
            UnaryOp::Elu { alpha } => elu(x, f64::from(alpha)),
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Tanh => tanh(x),
            UnaryOp::Softplus => softplus(x),
            UnaryOp::Silu => silu(x),
            UnaryOp::Gelu => gelu(x),
            UnaryOp::Exp => (x.exp(), x.exp()),
            UnaryOp::Ln => ln(x),
            UnaryOp::Sin => sin(x),
            UnaryOp::Cos => cos(x),
            UnaryOp::Tan => tan(x),
            UnaryOp::Sqrt => sqrt(x),
            UnaryOp::Abs => abs(x),
            UnaryOp::Square => (x * x, 2.0 * x),
            UnaryOp::Reciprocal => (1.0 / x, -1.0 / (x * x)),
            UnaryOp::Pow { exponent } => pow(x, f64::from(exponent)),
            UnaryOp::Log1p => special::log1p(x),
            UnaryOp::Expm1 => special::expm1(x),
            UnaryOp::Atan => special::atan(x),
            UnaryOp::Asinh => special::asinh(x),
            UnaryOp::Acosh => special::acosh(x),
            UnaryOp::Atanh => special::atanh(x),
            UnaryOp::Erf => special::erf(x),
            UnaryOp::GeluExact => special::gelu_exact(x),
            UnaryOp::Xlogx => special::xlogx(x),
            UnaryOp::Sinh => (x.sinh(), x.cosh()),
            UnaryOp::Cosh => (x.cosh(), x.sinh()),
        }
    }
}

impl fmt::Display for UnaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parameter() {
            Some(p) => write!(f, "{}({p})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl FromStr for UnaryOp {
    type Err = Error;

    /// Parses `sigmoid`, `leaky_relu(0.2)`, `pow(3)`; `leaky_relu` alone means
    /// alpha 0.01 and `elu` alone alpha 1, as in JAX.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let (name, argument) = match text.split_once('(') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(|| {
                    Error::InvalidArgument(format!("`{text}`: missing closing parenthesis"))
                })?;
                let value: f32 = inner.trim().parse().map_err(|_| {
                    Error::InvalidArgument(format!("`{text}`: `{inner}` is not a number"))
                })?;
                (name.trim(), Some(value))
            }
            None => (text, None),
        };
        let op = match (name, argument) {
            ("leaky_relu", a) => UnaryOp::LeakyRelu {
                alpha: a.unwrap_or(0.01),
            },
            ("elu", a) => UnaryOp::Elu {
                alpha: a.unwrap_or(1.0),
            },
            ("pow", Some(exponent)) => UnaryOp::Pow { exponent },
            ("pow", None) => {
                return Err(Error::InvalidArgument(
                    "pow needs its exponent, e.g. pow(3)".into(),
                ));
            }
            (name, None) => UnaryOp::catalogue()
                .into_iter()
                .find(|op| op.name() == name && op.parameter().is_none())
                .ok_or_else(|| {
                    let known: Vec<&str> = UnaryOp::catalogue().iter().map(UnaryOp::name).collect();
                    Error::InvalidArgument(format!(
                        "unknown operation `{name}`; known: {}",
                        known.join(", ")
                    ))
                })?,
            (name, Some(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "`{name}` takes no parameter"
                )));
            }
        };
        op.validate()?;
        Ok(op)
    }
}

fn relu(x: f64) -> (f64, f64) {
    if x > 0.0 { (x, 1.0) } else { (0.0, 0.0) }
}

fn leaky_relu(x: f64, alpha: f64) -> (f64, f64) {
    if x >= 0.0 {
        (x, 1.0)
    } else if alpha == 0.0 {
        // 0 * -Inf would be NaN; the limit of 0 * x is 0.
        (0.0, 0.0)
    } else {
        (alpha * x, alpha)
    }
}

fn elu(x: f64, alpha: f64) -> (f64, f64) {
    if x > 0.0 {
        (x, 1.0)
    } else {
        (alpha * x.exp_m1(), alpha * x.exp())
    }
}

/// sigmoid and its derivative from e^-|x|, which never overflows.
fn sigmoid(x: f64) -> (f64, f64) {
    let e = (-x.abs()).exp();
    let s = if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (s, e / ((1.0 + e) * (1.0 + e)))
}

/// tanh from expm1(2|x|), saturated where tanh is 1 to working precision
/// so that Inf / Inf never happens.
fn tanh(x: f64) -> (f64, f64) {
    let a = x.abs();
    if a > 40.0 {
        return (x.signum(), 4.0 * (-2.0 * a).exp());
    }
    let m = (2.0 * a).exp_m1();
    let t = m / (m + 2.0);
    let e = (-2.0 * a).exp();
    (t.copysign(x), 4.0 * e / ((1.0 + e) * (1.0 + e)))
}

/// max(x, 0) + ln(1 + e^-|x|): never overflows.
fn softplus(x: f64) -> (f64, f64) {
    let value = x.max(0.0) + (-x.abs()).exp().ln_1p();
    (value, sigmoid(x).0)
}

fn silu(x: f64) -> (f64, f64) {
    if x == f64::NEG_INFINITY {
        return (0.0, 0.0);
    }
    let s = sigmoid(x).0;
    // 1 - s = sigmoid(-x), computed directly so it keeps its precision for large x.
    let one_minus_s = sigmoid(-x).0;
    if x == f64::INFINITY {
        return (x, 1.0);
    }
    (x * s, s * (1.0 + x * one_minus_s))
}

/// gelu(x) = x sigmoid(2u), u = k (x + c x^3), the tanh form rewritten so the
/// tails saturate without overflow; beyond |x| = 12 it equals relu to f64 precision.
fn gelu(x: f64) -> (f64, f64) {
    if x.abs() > 12.0 {
        return relu(x);
    }
    let u = GELU_K * (x + GELU_C * x * x * x);
    let du = GELU_K * (1.0 + 3.0 * GELU_C * x * x);
    let (s, ds) = sigmoid(2.0 * u);
    (x * s, s + x * ds * 2.0 * du)
}

fn ln(x: f64) -> (f64, f64) {
    if x < 0.0 {
        (f64::NAN, f64::NAN)
    } else if x == 0.0 {
        // 1/x at the pole: -Inf at -0, as IEEE and JAX.
        (f64::NEG_INFINITY, 1.0 / x)
    } else {
        (x.ln(), 1.0 / x)
    }
}

fn sin(x: f64) -> (f64, f64) {
    if x.is_infinite() {
        return (f64::NAN, f64::NAN);
    }
    (x.sin(), x.cos())
}

fn cos(x: f64) -> (f64, f64) {
    if x.is_infinite() {
        return (f64::NAN, f64::NAN);
    }
    (x.cos(), -x.sin())
}

fn tan(x: f64) -> (f64, f64) {
    if x.is_infinite() {
        return (f64::NAN, f64::NAN);
    }
    let c = x.cos();
    (x.sin() / c, 1.0 / (c * c))
}

fn sqrt(x: f64) -> (f64, f64) {
    if x < 0.0 {
        (f64::NAN, f64::NAN)
    } else {
        let r = x.sqrt();
        // sqrt(-0) is -0 in IEEE, so its derivative is -Inf there, as JAX's.
        (r, 0.5 / r)
    }
}

fn abs(x: f64) -> (f64, f64) {
    let d = if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    };
    (x.abs(), d)
}

/// x^p with the real-valued conventions: a negative base needs an integer
/// exponent (NaN otherwise); 0^p is 0, 1 or +Inf as p is positive, zero or negative.
fn pow(x: f64, p: f64) -> (f64, f64) {
    if p == 0.0 {
        return (1.0, 0.0);
    }
    if p == 1.0 {
        return (x, 1.0);
    }
    let integer = p.fract() == 0.0;
    if x < 0.0 && !integer {
        return (f64::NAN, f64::NAN);
    }
    (x.powf(p), p * x.powf(p - 1.0))
}
