// Shared pieces of every chainrule kernel: IEEE classification by bit tests
// and accurate exp, expm1, ln, log1p, atan, erf and erfc in f32.
//
// Why bit tests: WGSL lets a compiler assume there is no NaN or Inf, and on
// some drivers `x != x` is false for NaN (lavapipe's Vulkan backend), so
// nothing here compares a float with itself.
// Why our own exp and ln: WGSL allows exp an error of 3 + 2|x| ulp (179 ulp at
// x = 88, beyond our 1e-5 relative contract) and ln an absolute error of 2^-21
// near 1; these versions reduce the argument exactly and stay within a few ulp.
// Their f64 mirrors are Rust's own exp, exp_m1, ln, ln_1p and atan
// (src/ops/unary.rs, src/ops/special.rs) and the reference erf and erfc of
// src/ops/special.rs.

fn is_nan_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn is_inf_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}

// +0 or -0; by bits like the others, so that no driver's reading of a
// comparison decides it.
fn is_zero_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0u;
}

// A product of the chain rule: a partial times a tangent, a cotangent times
// a partial, one Jacobian's entry times another's. A factor that is exactly
// zero makes the product zero even when the other is infinite or NaN, so a
// path through a zero partial (the losing side of max, min, relu, abs or any
// other selection) contributes nothing, whatever happened along it. Mirrored
// by `chain_mul` in src/ops/mod.rs.
fn chain_mul(a: f32, b: f32) -> f32 {
    return select(a * b, 0.0, is_zero_f32(a) || is_zero_f32(b));
}

// One factor of a compensated product (Graillat's CompProd): `acc` holds a
// running product as acc.x plus the rounding error accumulated so far,
// acc.y. Each rounding's error is exact (`product_error`), so a product of n
// factors is about as accurate as in twice the precision instead of
// drifting by up to n ulp (a 32,768-element prod's gradient was 1.6e-5 off
// without it). The error is dropped once the product is infinite or NaN
// (it would be Inf - Inf), and a zero factor zeroes it (chain_mul).
// Mirrored by the f64 products of `products_of_others` in src/ops/reduce.rs.
fn product_step(acc: vec2<f32>, x: f32) -> vec2<f32> {
    let p = acc.x * x;
    var e = chain_mul(acc.y, x);
    if (!is_nan_f32(p) && !is_inf_f32(p)) {
        e = e + product_error(acc.x, x, p);
    }
    return vec2<f32>(p, e);
}

// A running product kept as (m.x + m.y) * 2^e: m a compensated product
// (product_step) brought back into [0.5, 1) after every factor, e the
// powers of two taken out, so that no intermediate product overflows or
// underflows f32 where the result would not: the products of the others
// of [1e30, 1e30, 1e-30, 1e-30] are 1e-30 and 1e30, not Inf and 0, in any
// order. Mirrored by `ScaledProduct` in src/ops/reduce.rs.
struct ScaledProduct {
    m: vec2<f32>,
    e: i32,
}

fn scaled_one() -> ScaledProduct {
    return ScaledProduct(vec2<f32>(1.0, 0.0), 0);
}

fn scaled_step(s: ScaledProduct, x: f32) -> ScaledProduct {
    var m = product_step(s.m, x);
    var e = s.e;
    if (!is_zero_f32(m.x) && !is_nan_f32(m.x) && !is_inf_f32(m.x)) {
        let k = exponent_of(m.x);
        m = vec2<f32>(times_power_of_two(m.x, -k), times_power_of_two(m.y, -k));
        // Held within 2^29 (a product beyond 2^(2^29) is +-Inf or 0 in any
        // float), so that two exponents add without overflow.
        e = clamp(e + k, -536870912, 536870912);
    }
    return ScaledProduct(m, e);
}

// The compensated mantissa as one float, keeping the sign of a zero product.
fn scaled_mantissa(s: ScaledProduct) -> f32 {
    return select(s.m.x + s.m.y, s.m.x, is_zero_f32(s.m.y));
}

fn scaled_value(s: ScaledProduct) -> f32 {
    return times_power_of_two(scaled_mantissa(s), s.e);
}

// e with x = f * 2^e and |f| in [0.5, 1), for a finite nonzero x
// (subnormals too), from the bits.
fn exponent_of(x: f32) -> i32 {
    var bits = bitcast<u32>(x) & 0x7fffffffu;
    var bias = 126;
    if (bits < 0x00800000u) {
        // Subnormal: 2^64 x is normal, exactly.
        bits = bitcast<u32>(x * 18446744073709551616.0) & 0x7fffffffu;
        bias = 190;
    }
    return i32(bits >> 23u) - bias;
}

// 2^k for k in [-126, 127], from the bits.
fn power_of_two(k: i32) -> f32 {
    return bitcast<f32>(u32(k + 127) << 23u);
}

// x * 2^k for any k: exact unless the result leaves f32's range, where it
// is the IEEE result (+-Inf, or a rounded subnormal or 0). Three steps of
// one sign, so no step overflows or underflows unless the result does.
fn times_power_of_two(x: f32, k: i32) -> f32 {
    let c = clamp(k, -378, 378);
    let a = c / 3;
    let b = (c - a) / 2;
    return x * power_of_two(a) * power_of_two(b) * power_of_two(c - a - b);
}

// a * b - p exactly for p = a * b rounded (Dekker's TwoProduct): each
// factor split into halves of 12 bits, whose products are exact. fma would
// give it in one step, but WGSL does not promise a fused fma (lavapipe's is
// not). Factors beyond 2^115 would overflow the split: their error is left
// out (their product is near the edge of f32 anyway).
fn product_error(a: f32, b: f32, p: f32) -> f32 {
    if (abs(a) > 4e34 || abs(b) > 4e34) {
        return 0.0;
    }
    let ca = 4097.0 * a;
    let ah = ca - (ca - a);
    let al = a - ah;
    let cb = 4097.0 * b;
    let bh = cb - (cb - b);
    let bl = b - bh;
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

fn sign_bit_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x80000000u) != 0u;
}

// A quiet NaN. The bits are built from `x` so that no constant NaN exists for
// a shader compiler to reject or fold away.
fn nan_like(x: f32) -> f32 {
    return bitcast<f32>((bitcast<u32>(x) & 0u) | 0x7fc00000u);
}

// +Inf, or -Inf when `negative`; built from `x` for the same reason as nan_like.
fn inf_like(x: f32, negative: bool) -> f32 {
    let sign = select(0u, 0x80000000u, negative);
    return bitcast<f32>((bitcast<u32>(x) & 0u) | 0x7f800000u | sign);
}

fn nan_pair(x: f32) -> vec2<f32> {
    let n = nan_like(x);
    return vec2<f32>(n, n);
}

// e^x: x = k ln2 + r with ln2 split in two so that k * LN2_HI is exact, then
// the hardware exp2 on |r| <= ln2 / 2, where it is accurate, and an exact
// scaling by 2^k in two steps so that no step leaves the normal range early.
fn exp_acc(x: f32) -> f32 {
    if (x > 88.72284) {
        return inf_like(x, false);
    }
    if (x < -103.97208) {
        return 0.0;
    }
    let k = round(x * 1.442695);
    let r = (x - k * 0.693145752) - k * 1.42860677e-6;
    let ki = i32(k);
    let half = ki / 2;
    return ldexp(ldexp(exp2(r * 1.442695), half), ki - half);
}

// e^x - 1 without the cancellation near 0: a Taylor polynomial for |x| < 1/4.
fn expm1_acc(x: f32) -> f32 {
    if (abs(x) < 0.25) {
        let p = 1.0 / 5040.0;
        var q = p * x + 1.0 / 720.0;
        q = q * x + 1.0 / 120.0;
        q = q * x + 1.0 / 24.0;
        q = q * x + 1.0 / 6.0;
        q = q * x + 0.5;
        return x + x * x * q;
    }
    return exp_acc(x) - 1.0;
}

// 2 atanh(s) = 2 (s + s^3/3 + ...), accurate for |s| <= 0.18.
fn atanh2_series(s: f32) -> f32 {
    let s2 = s * s;
    var q = s2 * (1.0 / 13.0) + 1.0 / 11.0;
    q = q * s2 + 1.0 / 9.0;
    q = q * s2 + 1.0 / 7.0;
    q = q * s2 + 1.0 / 5.0;
    q = q * s2 + 1.0 / 3.0;
    return 2.0 * (s + s * s2 * q);
}

// ln x for finite x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), then
// ln m = 2 atanh((m - 1) / (m + 1)).
fn ln_acc(x: f32) -> f32 {
    let parts = frexp(x);
    var m = parts.fract;
    var e = f32(parts.exp);
    if (m < 0.70710678) {
        m = m * 2.0;
        e = e - 1.0;
    }
    let s = (m - 1.0) / (m + 1.0);
    return e * 0.693145752 + (atanh2_series(s) + e * 1.42860677e-6);
}

// ln(1 + u) for finite u > -1 without losing u when it is small: the series
// in s = u / (2 + u) for -0.3 < u < 0.4 (|s| < 0.18), else ln(w) for
// w = 1 + u with w's rounding error corrected to first order, (u - (w - 1)) / w.
fn log1p_acc(u: f32) -> f32 {
    if (u > -0.3 && u < 0.4) {
        return atanh2_series(u / (2.0 + u));
    }
    let w = 1.0 + u;
    return ln_acc(w) + (u - (w - 1.0)) / w;
}

// e^(-c x^2) for finite x and c = 1 or 1/2 (a power of two, so c h^2 is
// exact): x = h + (x - h) with h's low 12 bits cleared makes h^2 exact, and
// x^2 = h^2 + (x - h)(x + h) keeps the square's rounding out of an exponent
// that reaches -100 while the result is still a normal f32.
fn exp_neg_scaled_square(x: f32, c: f32) -> f32 {
    let h = bitcast<f32>(bitcast<u32>(x) & 0xfffff000u);
    return exp_acc(-c * h * h) * exp_acc(-c * (x - h) * (x + h));
}

// atan x for every x but NaN (+-pi/2 at +-Inf), within 1.2e-7 relative: the
// argument is reduced to |r| <= tan(pi/8) by atan a = pi/2 + atan(-1/a) above
// tan(3pi/8) and pi/4 + atan((a - 1)/(a + 1)) above tan(pi/8), then an odd
// polynomial of degree 9 (the coefficients of Cephes' atanf).
fn atan_acc(x: f32) -> f32 {
    let a = abs(x);
    var base = 0.0;
    var r = a;
    if (a > 2.4142135) {
        base = 1.5707964;
        r = -1.0 / a;
    } else if (a > 0.41421356) {
        base = 0.7853982;
        r = (a - 1.0) / (a + 1.0);
    }
    let z = r * r;
    var p = 0.0805374449538 * z - 0.138776856032;
    p = p * z + 0.199777106478;
    p = p * z - 0.333329491539;
    let y = base + (p * z * r + r);
    return select(y, -y, sign_bit_f32(x));
}

// erf x for |x| < 0.5 by its Taylor series to x^13 (the next term is below
// 1e-9 relative there).
fn erf_series_acc(x: f32) -> f32 {
    let x2 = x * x;
    var q = x2 * (1.0 / 9360.0) - 1.0 / 1320.0;
    q = q * x2 + 1.0 / 216.0;
    q = q * x2 - 1.0 / 42.0;
    q = q * x2 + 0.1;
    q = q * x2 - 1.0 / 3.0;
    return 1.1283791671 * (x + x * x2 * q);
}

// erfc z for finite z >= 0 by the Chebyshev-fitted form of Numerical Recipes
// (Press et al., section 6.2), t e^(-z^2 + P(t)) with t = 1 / (1 + z/2) and
// P of degree 9, whose relative error is below 1.2e-7 for every z >= 0: the
// tail keeps its relative precision where 1 - erf z would cancel.
fn erfc_tail_acc(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    var p = 0.17087277;
    p = p * t - 0.82215223;
    p = p * t + 1.48851587;
    p = p * t - 1.13520398;
    p = p * t + 0.27886807;
    p = p * t - 0.18628806;
    p = p * t + 0.09678418;
    p = p * t + 0.37409196;
    p = p * t + 1.00002368;
    p = p * t - 1.26551223;
    return t * exp_neg_scaled_square(z, 1.0) * exp_acc(p);
}

// erf x for every x but NaN: the series near 0, 1 - erfc |x| beyond, and
// +-1 past |x| = 4, where erfc is below half an ulp of 1.
fn erf_acc(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.5) {
        return erf_series_acc(x);
    }
    var e = 1.0;
    if (a < 4.0) {
        e = 1.0 - erfc_tail_acc(a);
    }
    return select(e, -e, sign_bit_f32(x));
}

// erfc z = 1 - erf z for every z but NaN, from the tail wherever that
// subtraction would cancel: 0 past z = 10.5 (below the f32 range), 2 below
// z = -4.
fn erfc_acc(z: f32) -> f32 {
    if (abs(z) < 0.5) {
        return 1.0 - erf_series_acc(z);
    }
    if (z > 10.5) {
        return 0.0;
    }
    if (z > 0.0) {
        return erfc_tail_acc(z);
    }
    if (z < -4.0) {
        return 2.0;
    }
    return 2.0 - erfc_tail_acc(-z);
}
