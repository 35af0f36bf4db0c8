// Value and derivative of every element-wise unary operation, as vec2(f, f').
// Each function mirrors the one of the same name in src/ops/unary.rs, with the
// same stable formula and the same edge policy: NaN in gives NaN out; +-Inf
// gives the limits of f and f'; at kinks the derivative follows JAX.
// Needs common.wgsl and trig.wgsl.

fn identity_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    return vec2<f32>(x, 1.0);
}

fn relu_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (x > 0.0) {
        return vec2<f32>(x, 1.0);
    }
    return vec2<f32>(0.0, 0.0);
}

fn leaky_relu_vd(x: f32, alpha: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (x >= 0.0) {
        return vec2<f32>(x, 1.0);
    }
    if (alpha == 0.0) {
        // 0 * -Inf would be NaN; the limit of 0 * x is 0.
        return vec2<f32>(0.0, 0.0);
    }
    return vec2<f32>(alpha * x, alpha);
}

fn elu_vd(x: f32, alpha: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (x > 0.0) {
        return vec2<f32>(x, 1.0);
    }
    return vec2<f32>(alpha * expm1_acc(x), alpha * exp_acc(x));
}

// From e = e^-|x|, which never overflows: s = 1/(1+e) or e/(1+e), s' = e/(1+e)^2.
fn sigmoid_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    let e = exp_acc(-abs(x));
    let s = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
    return vec2<f32>(s, e / ((1.0 + e) * (1.0 + e)));
}

// tanh |x| = m / (m + 2) with m = expm1(2|x|); saturated past |x| = 10, where
// tanh is 1 in f32, so that Inf / Inf never happens.
fn tanh_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    let a = abs(x);
    let e = exp_acc(-2.0 * a);
    let d = 4.0 * e / ((1.0 + e) * (1.0 + e));
    var t = 1.0;
    if (a <= 10.0) {
        let m = expm1_acc(2.0 * a);
        t = m / (m + 2.0);
    }
    return vec2<f32>(select(t, -t, x < 0.0), d);
}

// max(x, 0) + ln(1 + e^-|x|): never overflows.
fn softplus_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    let value = max(x, 0.0) + log1p_acc(exp_acc(-abs(x)));
    return vec2<f32>(value, sigmoid_vd(x).x);
}

// x s and s (1 + x (1 - s)), with 1 - s = sigmoid(-x) computed directly so it
// keeps its precision for large x.
fn silu_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (is_inf_f32(x)) {
        return select(vec2<f32>(0.0, 0.0), vec2<f32>(x, 1.0), x > 0.0);
    }
    let s = sigmoid_vd(x).x;
    let one_minus_s = sigmoid_vd(-x).x;
    return vec2<f32>(x * s, s * (1.0 + x * one_minus_s));
}

// The tanh form as x sigmoid(2u), u = k (x + c x^3): 0.5 (1 + tanh u) is
// sigmoid(2u). Past |x| = 10 it equals relu in f32, and x^3 could overflow.
fn gelu_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (abs(x) > 10.0) {
        return relu_vd(x);
    }
    let k = 0.7978845608;
    let c = 0.044715;
    let u = k * (x + c * x * x * x);
    let du = k * (1.0 + 3.0 * c * x * x);
    let sd = sigmoid_vd(2.0 * u);
    return vec2<f32>(x * sd.x, sd.x + x * sd.y * 2.0 * du);
}

fn exp_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    let e = exp_acc(x);
    return vec2<f32>(e, e);
}

fn ln_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x) || x < 0.0) {
        return nan_pair(x);
    }
    if (x == 0.0) {
        // 1/x at the pole, signed by the zero: -Inf at -0, as IEEE and JAX.
        return vec2<f32>(inf_like(x, true), inf_like(x, sign_bit_f32(x)));
    }
    if (is_inf_f32(x)) {
        return vec2<f32>(x, 0.0);
    }
    return vec2<f32>(ln_acc(x), 1.0 / x);
}

fn sin_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x) || is_inf_f32(x)) {
        return nan_pair(x);
    }
    return sin_cos_accurate(x);
}

fn cos_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x) || is_inf_f32(x)) {
        return nan_pair(x);
    }
    let sc = sin_cos_accurate(x);
    return vec2<f32>(sc.y, -sc.x);
}

// sin / cos from the accurately reduced pair; cos is never exactly 0 at an f32.
fn tan_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x) || is_inf_f32(x)) {
        return nan_pair(x);
    }
    let sc = sin_cos_accurate(x);
    return vec2<f32>(sc.x / sc.y, 1.0 / (sc.y * sc.y));
}

fn sqrt_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x) || x < 0.0) {
        return nan_pair(x);
    }
    if (x == 0.0) {
        // sqrt(-0) = -0, and 0.5 / sqrt(x) is -Inf there, as JAX's.
        return vec2<f32>(x, inf_like(x, sign_bit_f32(x)));
    }
    if (is_inf_f32(x)) {
        return vec2<f32>(x, 0.0);
    }
    let r = sqrt(x);
    return vec2<f32>(r, 0.5 / r);
}

fn abs_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    var d = 0.0;
    if (x > 0.0) {
        d = 1.0;
    } else if (x < 0.0) {
        d = -1.0;
    }
    return vec2<f32>(abs(x), d);
}

fn square_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    return vec2<f32>(x * x, 2.0 * x);
}

fn reciprocal_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (x == 0.0) {
        return vec2<f32>(inf_like(x, sign_bit_f32(x)), inf_like(x, true));
    }
    if (is_inf_f32(x)) {
        let zero = select(0.0, -0.0, sign_bit_f32(x));
        return vec2<f32>(zero, -0.0);
    }
    let r = 1.0 / x;
    return vec2<f32>(r, -(r * r));
}

// |x|^p for x >= 0 (+-0 and +Inf included): repeated squaring for small
// integer p, which keeps a few ulp where exp(p ln x) would amplify ln's error.
fn pow_magnitude(a: f32, p: f32) -> f32 {
    if (p == 0.0) {
        return 1.0;
    }
    if (a == 0.0) {
        return select(inf_like(a, false), 0.0, p > 0.0);
    }
    if (is_inf_f32(a)) {
        return select(0.0, a, p > 0.0);
    }
    let n = abs(p);
    if (fract(n) == 0.0 && n < 16.0) {
        var bits = u32(n);
        var base = a;
        var result = 1.0;
        for (var i = 0u; i < 4u; i = i + 1u) {
            if ((bits & 1u) != 0u) {
                result = result * base;
            }
            base = base * base;
            bits = bits >> 1u;
        }
        return select(1.0 / result, result, p > 0.0);
    }
    return exp_acc(p * ln_acc(a));
}

// x^p for a constant p. A negative base needs an integer p (NaN otherwise);
// the sign of the result follows the parity of p; 0^p is 0 or +-Inf.
fn pow_vd(x: f32, p: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (p == 0.0) {
        return vec2<f32>(1.0, 0.0);
    }
    if (p == 1.0) {
        return vec2<f32>(x, 1.0);
    }
    let integer = fract(p) == 0.0;
    if (x < 0.0 && !integer) {
        return nan_pair(x);
    }
    let odd = integer && fract(p * 0.5) != 0.0;
    let negative = sign_bit_f32(x);
    let a = abs(x);
    let value = pow_magnitude(a, p);
    let slope = pow_magnitude(a, p - 1.0);
    return vec2<f32>(
        select(value, -value, negative && odd),
        p * select(slope, -slope, negative && integer && !odd),
    );
}

// ln(1 + x) for x >= -1: -Inf at -1 with derivative +Inf; 1 + x is exact
// wherever 1 / (1 + x) is large.
fn log1p_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x) || x < -1.0) {
        return nan_pair(x);
    }
    if (x == -1.0) {
        return vec2<f32>(inf_like(x, true), inf_like(x, false));
    }
    if (is_inf_f32(x)) {
        return vec2<f32>(x, 0.0);
    }
    return vec2<f32>(log1p_acc(x), 1.0 / (1.0 + x));
}

fn expm1_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    return vec2<f32>(expm1_acc(x), exp_acc(x));
}

// 1 / (1 + x^2) as r^2 / (1 + r^2), r = 1/x, past |x| = 1, so that x^2
// never overflows.
fn atan_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    var d = 1.0 / (1.0 + x * x);
    if (abs(x) > 1.0) {
        let r = 1.0 / x;
        d = r * r / (1.0 + r * r);
    }
    return vec2<f32>(atan_acc(x), d);
}

// 1 / sqrt(1 + a^2) for a >= 0 without overflow.
fn inverse_hypot_one(a: f32) -> f32 {
    if (a > 1.0) {
        let r = 1.0 / a;
        return r / sqrt(1.0 + r * r);
    }
    return 1.0 / sqrt(1.0 + a * a);
}

// sign(x) ln(|x| + sqrt(x^2 + 1)): log1p(a + a^2 / (1 + sqrt(1 + a^2))) up
// to a = 2, ln(2a + 1 / (sqrt(a^2 + 1) + a)) beyond, and ln a + ln 2 past
// 4096, where sqrt(a^2 + 1) is a in f32 and a^2 would soon overflow.
fn asinh_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (is_inf_f32(x)) {
        return vec2<f32>(x, 0.0);
    }
    let a = abs(x);
    var m: f32;
    if (a > 4096.0) {
        m = ln_acc(a) + 0.6931472;
    } else if (a > 2.0) {
        m = ln_acc(2.0 * a + 1.0 / (sqrt(a * a + 1.0) + a));
    } else {
        m = log1p_acc(a + a * a / (1.0 + sqrt(1.0 + a * a)));
    }
    return vec2<f32>(select(m, -m, sign_bit_f32(x)), inverse_hypot_one(a));
}

// acosh x for x >= 1, from t = x - 1 (exact below 2) as log1p(t + sqrt(2t +
// t^2)) up to 2, then as asinh; derivative 1 / sqrt((x - 1)(x + 1)), +Inf at 1.
fn acosh_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x) || x < 1.0) {
        return nan_pair(x);
    }
    if (x == 1.0) {
        return vec2<f32>(0.0, inf_like(x, false));
    }
    if (is_inf_f32(x)) {
        return vec2<f32>(x, 0.0);
    }
    let t = x - 1.0;
    var value: f32;
    if (x > 4096.0) {
        value = ln_acc(x) + 0.6931472;
    } else if (x > 2.0) {
        value = ln_acc(2.0 * x - 1.0 / (x + sqrt(x * x - 1.0)));
    } else {
        value = log1p_acc(t + sqrt(2.0 * t + t * t));
    }
    var d: f32;
    if (x > 2.0) {
        let r = 1.0 / x;
        d = r / sqrt((1.0 - r) * (1.0 + r));
    } else {
        d = 1.0 / sqrt(t * (x + 1.0));
    }
    return vec2<f32>(value, d);
}

// sign(x) log1p(2a / (1 - a)) / 2 for a = |x| < 1 (1 - a is exact from a =
// 1/2 on), with 2a + 2a^2 / (1 - a) below 1/2; +-Inf at +-1 with derivative
// +Inf, NaN beyond.
fn atanh_vd(x: f32) -> vec2<f32> {
    let a = abs(x);
    if (is_nan_f32(x) || a > 1.0) {
        return nan_pair(x);
    }
    if (a == 1.0) {
        return vec2<f32>(inf_like(x, sign_bit_f32(x)), inf_like(x, false));
    }
    var m: f32;
    if (a < 0.5) {
        m = 0.5 * log1p_acc(2.0 * a + 2.0 * a * a / (1.0 - a));
    } else {
        m = 0.5 * log1p_acc(2.0 * a / (1.0 - a));
    }
    return vec2<f32>(select(m, -m, sign_bit_f32(x)), 1.0 / ((1.0 - a) * (1.0 + a)));
}

// erf x and (2 / sqrt(pi)) e^(-x^2); +-1 and 0 at +-Inf.
fn erf_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (is_inf_f32(x)) {
        return vec2<f32>(select(1.0, -1.0, x < 0.0), 0.0);
    }
    return vec2<f32>(erf_acc(x), 1.1283791671 * exp_neg_scaled_square(x, 1.0));
}

// gelu's exact form x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (so the left
// tail keeps its relative precision), derivative Phi(x) + x phi(x) with
// phi(x) = e^(-x^2/2) / sqrt(2 pi); the limits (+Inf, 1) and (0, 0) at +-Inf.
fn gelu_exact_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    if (is_inf_f32(x)) {
        return select(vec2<f32>(0.0, 0.0), vec2<f32>(x, 1.0), x > 0.0);
    }
    let big_phi = 0.5 * erfc_acc(-0.70710678 * x);
    let phi = 0.39894228 * exp_neg_scaled_square(x, 0.5);
    return vec2<f32>(x * big_phi, big_phi + x * phi);
}

// x ln x with 0 ln 0 = 0 (its limit) and derivative ln x + 1, -Inf at 0.
fn xlogx_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x) || x < 0.0) {
        return nan_pair(x);
    }
    if (x == 0.0) {
        return vec2<f32>(0.0, inf_like(x, true));
    }
    if (is_inf_f32(x)) {
        return vec2<f32>(x, x);
    }
    let l = ln_acc(x);
    return vec2<f32>(x * l, l + 1.0);
}

// (sinh a, cosh a) for a >= 0 from m = expm1(a): sinh a = (m + m / (m + 1)) / 2
// keeps its precision near 0. Past a = 88, where e^a overflows f32 before
// the halving does, e^a / 2 is e^(a/2) (e^(a/2) / 2).
fn sinh_cosh_abs(a: f32) -> vec2<f32> {
    if (a > 88.0) {
        let e = exp_acc(0.5 * a);
        let h = e * (0.5 * e);
        return vec2<f32>(h, h);
    }
    let m = expm1_acc(a);
    return vec2<f32>(0.5 * (m + m / (m + 1.0)), 0.5 * (m + 1.0 + 1.0 / (m + 1.0)));
}

fn sinh_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    let sc = sinh_cosh_abs(abs(x));
    return vec2<f32>(select(sc.x, -sc.x, sign_bit_f32(x)), sc.y);
}

fn cosh_vd(x: f32) -> vec2<f32> {
    if (is_nan_f32(x)) {
        return nan_pair(x);
    }
    let sc = sinh_cosh_abs(abs(x));
    return vec2<f32>(sc.y, select(sc.x, -sc.x, sign_bit_f32(x)));
}
