// Value and both partials of every element-wise binary operation, as
// vec3(f, df/da, df/db). Each mirrors the function of the same name in
// src/ops/binary.rs. Needs common.wgsl (atan_acc) and activations.wgsl
// (pow_magnitude, ln_vd).

fn nan_triple(x: f32) -> vec3<f32> {
    let n = nan_like(x);
    return vec3<f32>(n, n, n);
}

fn either_nan(a: f32, b: f32) -> bool {
    return is_nan_f32(a) || is_nan_f32(b);
}

fn add_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    return vec3<f32>(a + b, 1.0, 1.0);
}

fn sub_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    return vec3<f32>(a - b, 1.0, -1.0);
}

fn mul_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    return vec3<f32>(a * b, b, a);
}

// a / b with IEEE's answers for a zero divisor spelt out, since WGSL leaves
// division by zero undefined.
fn quotient_f32(a: f32, b: f32) -> f32 {
    if (b == 0.0) {
        if (a == 0.0 || is_nan_f32(a)) {
            return nan_like(a);
        }
        return inf_like(a, sign_bit_f32(a) != sign_bit_f32(b));
    }
    return a / b;
}

fn div_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    let q = quotient_f32(a, b);
    return vec3<f32>(q, quotient_f32(1.0, b), -quotient_f32(q, b));
}

// a^b with a variable exponent: the sign follows the parity of an integer b.
fn signed_power(a: f32, b: f32) -> f32 {
    let integer = fract(b) == 0.0;
    if (a < 0.0 && !integer) {
        return nan_like(a);
    }
    let odd = integer && fract(b * 0.5) != 0.0;
    let m = pow_magnitude(abs(a), b);
    return select(m, -m, sign_bit_f32(a) && odd);
}

// An infinite exponent: IEEE's limits for the value (|a| < 1 gives 0 for
// +Inf and Inf for -Inf, |a| > 1 the reverse, |a| = 1 gives 1), and the
// formulas b a^(b-1) and a^b ln a at those limits, Inf times 0 giving NaN
// (spelt out: WGSL leaves arithmetic on infinities to the driver). The f64
// reference and JAX give the same.
fn pow_infinite_exponent(a: f32, b: f32) -> vec3<f32> {
    let m = abs(a);
    let up = b > 0.0;
    let inf = inf_like(a, false);
    var value = select(0.0, inf, (m > 1.0) == up);
    if (m == 1.0) {
        value = 1.0;
    }
    // b a^(b-1): a^(b-1) has the value's limit.
    let da = select(inf_like(a, !up), nan_like(a), value == 0.0);
    var db = nan_like(a);
    if (a > 0.0) {
        if (value == 0.0) {
            db = select(0.0, nan_like(a), is_inf_f32(a));
        } else if (m == 1.0) {
            db = 0.0;
        } else {
            db = inf_like(a, a < 1.0);
        }
    } else if (a == 0.0 && up) {
        db = 0.0;
    }
    return vec3<f32>(value, da, db);
}

fn pow_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    if (is_inf_f32(b)) {
        return pow_infinite_exponent(a, b);
    }
    if (a < 0.0 && fract(b) != 0.0) {
        return nan_triple(a);
    }
    let value = select(signed_power(a, b), 1.0, b == 0.0);
    let da = select(b * signed_power(a, b - 1.0), 0.0, b == 0.0);
    var db = nan_like(a);
    if (a > 0.0) {
        db = value * select(ln_acc(a), a, is_inf_f32(a));
    } else if (a == 0.0 && b > 0.0) {
        db = 0.0;
    }
    return vec3<f32>(value, da, db);
}

fn min_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    if (a == b) {
        return vec3<f32>(a, 0.5, 0.5);
    }
    return select(vec3<f32>(b, 0.0, 1.0), vec3<f32>(a, 1.0, 0.0), a < b);
}

// a * b with a zero factor giving 0 even against an infinite one (0 log 0 =
// 0, as in xlogy).
fn strong_mul_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    let value = select(a * b, 0.0, is_zero_f32(a) || is_zero_f32(b));
    return vec3<f32>(value, b, a);
}

// The chain rule's product: a zero factor gives 0 whatever the other is,
// NaN included (chain_mul, from common.wgsl).
fn chain_mul_vdd(a: f32, b: f32) -> vec3<f32> {
    return vec3<f32>(chain_mul(a, b), b, a);
}

fn max_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    if (a == b) {
        return vec3<f32>(a, 0.5, 0.5);
    }
    return select(vec3<f32>(b, 0.0, 1.0), vec3<f32>(a, 1.0, 0.0), a > b);
}

// atan2(y, x), the angle of (x, y), from atan of min(|x|, |y|) / max(|x|, |y|)
// in [0, 1] placed in its octant by bit tests on the signs, so the axes,
// signed zeros and infinities give IEEE's answers (atan2(+-0, -0) = +-pi,
// atan2(+-Inf, +-Inf) = +-pi/4 or +-3pi/4). The partials x / (x^2 + y^2) and
// -y / (x^2 + y^2) come from the point scaled by m = max(|x|, |y|), so that
// the squares neither overflow nor underflow; at the origin and wherever an
// operand is infinite both are 0.
fn atan2_vdd(y: f32, x: f32) -> vec3<f32> {
    if (either_nan(y, x)) {
        return nan_triple(y);
    }
    let ax = abs(x);
    let ay = abs(y);
    let m = max(ax, ay);
    var r = 0.0;
    if (is_inf_f32(m)) {
        r = select(0.0, 0.7853982, is_inf_f32(min(ax, ay)));
    } else if (!is_zero_f32(m)) {
        r = atan_acc(min(ax, ay) / m);
    }
    if (ay > ax) {
        r = 1.5707964 - r;
    }
    if (sign_bit_f32(x)) {
        r = 3.1415927 - r;
    }
    r = select(r, -r, sign_bit_f32(y));
    var dy = 0.0;
    var dx = 0.0;
    if (!is_inf_f32(m) && !is_zero_f32(m)) {
        let xs = x / m;
        let ys = y / m;
        let s = xs * xs + ys * ys;
        dy = xs / s / m;
        dx = -ys / s / m;
    }
    return vec3<f32>(r, dy, dx);
}

// x ln y with 0 where x = 0 (0 ln 0 = 0, as scipy's xlogy) or ln y = 0; the
// partial in x is ln y everywhere, the partial in y is x / y, 0 where x = 0.
// For y < 0 and x != 0, outside the domain, all three are NaN.
fn xlogy_vdd(x: f32, y: f32) -> vec3<f32> {
    if (either_nan(x, y)) {
        return nan_triple(x);
    }
    let ln_y = ln_vd(y).x;
    if (is_zero_f32(x)) {
        return vec3<f32>(0.0, ln_y, 0.0);
    }
    if (y < 0.0) {
        return nan_triple(x);
    }
    let value = select(x * ln_y, 0.0, is_zero_f32(ln_y));
    return vec3<f32>(value, ln_y, quotient_f32(x, y));
}

// Comparisons: 1 where the relation holds, else 0, with both partials 0.
// NaN compares false, tested by bits since a compiler may assume no NaN.
fn compared(holds: bool, a: f32, b: f32) -> vec3<f32> {
    let value = select(0.0, 1.0, holds && !either_nan(a, b));
    return vec3<f32>(value, 0.0, 0.0);
}

fn lt_vdd(a: f32, b: f32) -> vec3<f32> {
    return compared(a < b, a, b);
}

fn le_vdd(a: f32, b: f32) -> vec3<f32> {
    return compared(a <= b, a, b);
}

fn gt_vdd(a: f32, b: f32) -> vec3<f32> {
    return compared(a > b, a, b);
}

fn ge_vdd(a: f32, b: f32) -> vec3<f32> {
    return compared(a >= b, a, b);
}

// The halves of where(c, a, b) = where_a(c, a) + where_b(c, b): the operand
// where it is selected (partial 1), else -0 (partial 0), whatever the
// operand is, NaN and infinities included. c != 0 is read by bits, so a NaN
// condition is true as in the f64 reference.
fn unselected() -> vec3<f32> {
    return vec3<f32>(bitcast<f32>(0x80000000u), 0.0, 0.0);
}

fn where_a_vdd(c: f32, a: f32) -> vec3<f32> {
    if (is_zero_f32(c)) {
        return unselected();
    }
    return vec3<f32>(a, 0.0, 1.0);
}

fn where_b_vdd(c: f32, b: f32) -> vec3<f32> {
    if (is_zero_f32(c)) {
        return vec3<f32>(b, 0.0, 1.0);
    }
    return unselected();
}
