// Shared pieces of every chainrule kernel: IEEE classification by bit tests
// and accurate exp, expm1, ln and log1p in f32.
//
// Why bit tests: WGSL lets a compiler assume there is no NaN or Inf, and on
// some drivers `x != x` is false for NaN (lavapipe's Vulkan backend), so
// nothing here compares a float with itself.
// Why our own exp and ln: WGSL allows exp an error of 3 + 2|x| ulp (179 ulp at
// x = 88, beyond our 1e-5 relative contract) and ln an absolute error of 2^-21
// near 1; these versions reduce the argument exactly and stay within a few ulp.
// Their f64 mirrors are Rust's own exp, exp_m1, ln and ln_1p (src/ops/unary.rs).

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

// ln(1 + u) for u >= 0 without losing u when it is small.
fn log1p_acc(u: f32) -> f32 {
    if (u < 0.4) {
        return atanh2_series(u / (2.0 + u));
    }
    return ln_acc(1.0 + u);
}
