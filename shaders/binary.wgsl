// Value and both partials of every element-wise binary operation, as
// vec3(f, df/da, df/db). Each mirrors the function of the same name in
// src/ops/binary.rs. Needs common.wgsl and activations.wgsl (pow_magnitude).

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

fn pow_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b) || is_inf_f32(b)) {
        return nan_triple(a);
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

fn max_vdd(a: f32, b: f32) -> vec3<f32> {
    if (either_nan(a, b)) {
        return nan_triple(a);
    }
    if (a == b) {
        return vec3<f32>(a, 0.5, 0.5);
    }
    return select(vec3<f32>(b, 0.0, 1.0), vec3<f32>(a, 1.0, 0.0), a > b);
}
