//! The special functions of the op table in f64: log1p, expm1, the inverse
//! circular and hyperbolic functions, the error function and the functions
//! built on it, and x ln x. Each returns (value, derivative) and mirrors the
//! `_vd` function of the same name in `shaders/activations.wgsl` in its
//! stable form and its edges (the NaN rule is applied by the caller):
//!
//! - log1p: -1 gives (-Inf, +Inf), below -1 NaN.
//! - acosh: 1 gives (0, +Inf), below 1 NaN.
//! - atanh: +-1 give (+-Inf, +Inf), beyond NaN.
//! - xlogx: 0 log 0 = 0 with derivative ln 0 + 1 = -Inf; below 0 NaN.
//! - erf and gelu_exact take their limits at +-Inf.
//!
//! Rust has no f64 erf, so the reference computes it here to about 1e-13
//! relative: a series with positive terms below |x| = 2.5 and Laplace's
//! continued fraction for erfc above. The f32 kernels use a shorter
//! approximation; the reference only has to be far more accurate than they are.

use std::f64::consts::{FRAC_1_SQRT_2, LN_2, PI};

/// 2 / sqrt(pi), the scale of erf's derivative.
const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

/// Above this magnitude sqrt(x^2 +- 1) is |x| to f64 precision.
const HUGE: f64 = 268_435_456.0; // 2^28

pub(super) fn log1p(x: f64) -> (f64, f64) {
    if x < -1.0 {
        (f64::NAN, f64::NAN)
    } else if x == -1.0 {
        (f64::NEG_INFINITY, f64::INFINITY)
    } else {
        (x.ln_1p(), 1.0 / (1.0 + x))
    }
}

pub(super) fn expm1(x: f64) -> (f64, f64) {
    (x.exp_m1(), x.exp())
}

/// atan x; derivative 1 / (1 + x^2), written as r^2 / (1 + r^2) with
/// r = 1/x for |x| > 1 so that x^2 never overflows.
pub(super) fn atan(x: f64) -> (f64, f64) {
    let derivative = if x.abs() > 1.0 {
        let r = 1.0 / x;
        r * r / (1.0 + r * r)
    } else {
        1.0 / (1.0 + x * x)
    };
    (x.atan(), derivative)
}

/// asinh x = sign(x) ln(|x| + sqrt(x^2 + 1)), in the form that keeps its
/// precision: log1p near 0, ln(2|x|) where the square root is |x|.
pub(super) fn asinh(x: f64) -> (f64, f64) {
    let a = x.abs();
    let magnitude = if a > HUGE {
        a.ln() + LN_2
    } else if a > 2.0 {
        (2.0 * a + 1.0 / ((a * a + 1.0).sqrt() + a)).ln()
    } else {
        (a + a * a / (1.0 + (1.0 + a * a).sqrt())).ln_1p()
    };
    (magnitude.copysign(x), inverse_hypot_one(a))
}

/// 1 / sqrt(1 + a^2) for a >= 0 without overflow.
fn inverse_hypot_one(a: f64) -> f64 {
    if a > 1.0 {
        let r = 1.0 / a;
        r / (1.0 + r * r).sqrt()
    } else {
        1.0 / (1.0 + a * a).sqrt()
    }
}

/// acosh x for x >= 1; near 1 from t = x - 1 (exact there), as
/// log1p(t + sqrt(2t + t^2)); derivative 1 / sqrt((x - 1)(x + 1)).
pub(super) fn acosh(x: f64) -> (f64, f64) {
    if x < 1.0 {
        return (f64::NAN, f64::NAN);
    }
    if x == f64::INFINITY {
        return (x, 0.0);
    }
    let t = x - 1.0;
    let value = if x > HUGE {
        x.ln() + LN_2
    } else if x > 2.0 {
        (2.0 * x - 1.0 / (x + (x * x - 1.0).sqrt())).ln()
    } else {
        (t + (2.0 * t + t * t).sqrt()).ln_1p()
    };
    let derivative = if x > 2.0 {
        let r = 1.0 / x;
        r / ((1.0 - r) * (1.0 + r)).sqrt()
    } else {
        1.0 / (t * (x + 1.0)).sqrt()
    };
    (value, derivative)
}

/// atanh x = sign(x) log1p(2|x| / (1 - |x|)) / 2 for |x| < 1; derivative
/// 1 / ((1 - x)(1 + x)), which keeps its precision near +-1.
pub(super) fn atanh(x: f64) -> (f64, f64) {
    let a = x.abs();
    if a > 1.0 {
        return (f64::NAN, f64::NAN);
    }
    if a == 1.0 {
        return (f64::INFINITY.copysign(x), f64::INFINITY);
    }
    let magnitude = if a < 0.5 {
        0.5 * (2.0 * a + 2.0 * a * a / (1.0 - a)).ln_1p()
    } else {
        0.5 * (2.0 * a / (1.0 - a)).ln_1p()
    };
    (magnitude.copysign(x), 1.0 / ((1.0 - a) * (1.0 + a)))
}

/// erf x; derivative (2 / sqrt(pi)) e^(-x^2).
pub(super) fn erf(x: f64) -> (f64, f64) {
    (erf_value(x), TWO_OVER_SQRT_PI * (-x * x).exp())
}

/// The exact (erf) form of gelu: x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2;
/// derivative Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi). Phi comes
/// from erfc, so the left tail keeps its relative precision.
pub(super) fn gelu_exact(x: f64) -> (f64, f64) {
    if x == f64::INFINITY {
        return (x, 1.0);
    }
    if x == f64::NEG_INFINITY {
        return (0.0, 0.0);
    }
    let phi_big = 0.5 * erfc_value(-x * FRAC_1_SQRT_2);
    let phi = (-0.5 * x * x).exp() / (2.0 * PI).sqrt();
    (x * phi_big, phi_big + x * phi)
}

/// x ln x with 0 ln 0 = 0 (its limit); derivative ln x + 1, -Inf at 0.
pub(super) fn xlogx(x: f64) -> (f64, f64) {
    if x < 0.0 {
        (f64::NAN, f64::NAN)
    } else if x == 0.0 {
        (0.0, f64::NEG_INFINITY)
    } else {
        (x * x.ln(), x.ln() + 1.0)
    }
}

/// Where erf switches from the series to the continued fraction.
const SERIES_LIMIT: f64 = 2.5;

pub(crate) fn erf_value(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a < SERIES_LIMIT {
        erf_series(x)
    } else {
        (1.0 - erfc_tail(a)).copysign(x)
    }
}

/// erfc x = 1 - erf x, from the tail where 1 - erf would cancel.
pub(crate) fn erfc_value(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x >= SERIES_LIMIT {
        erfc_tail(x)
    } else if x <= -SERIES_LIMIT {
        2.0 - erfc_tail(-x)
    } else {
        1.0 - erf_series(x)
    }
}

/// erf x = (2 / sqrt(pi)) e^(-x^2) sum_n 2^n x^(2n+1) / (1 3 5 ... (2n+1)):
/// every term has the sign of x, so nothing cancels.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 0.0;
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
    }
    TWO_OVER_SQRT_PI * (-x2).exp() * sum
}

/// erfc a for a >= 2.5 by Laplace's continued fraction
/// e^(-a^2) / sqrt(pi) / (a + (1/2) / (a + 1 / (a + (3/2) / (a + ...)))),
/// evaluated from the 60th level up (converged to f64 precision there).
fn erfc_tail(a: f64) -> f64 {
    let mut t = a;
    for k in (1..=60).rev() {
        t = a + 0.5 * f64::from(k) / t;
    }
    (-a * a).exp() / PI.sqrt() / t
}
