// sin and cos for every finite f32 argument, within 8e-8 of the exact values (the CPU mirror's
// maximum over all finite f32; a GPU that fuses multiply-adds may differ in the last bit).
//
// Driver sin/cos are only trustworthy on roughly [-pi, pi], so the argument is reduced here:
// Cody-Waite for moderate arguments, Payne-Hanek (integer arithmetic on the bits of 2/pi)
// for large ones. Every step is mirrored in src/ops/trig_f32.rs, which is tested exhaustively
// on the CPU; change both files together.
//
// Library file: no entry points. Every item except sin_cos_accurate carries the `trig_` prefix
// because this file is concatenated with other shader sources.

// Below this magnitude k = round(|x| * 2/pi) stays under 2^12, which keeps k * trig_PIO2_1 and
// k * trig_PIO2_2 exact.
const trig_CODY_WAITE_LIMIT: f32 = 4096.0;

const trig_TWO_OVER_PI: f32 = 6.3661975e-1;

// pi/2 = trig_PIO2_1 + trig_PIO2_2 + trig_PIO2_3 (+ 1.7e-15). The first part holds bits
// 2^0..2^-11 of pi/2 and the second bits 2^-12..2^-23, so both products with k are exact and
// only the last subtraction rounds.
const trig_PIO2_1: f32 = 1.5703125;
const trig_PIO2_2: f32 = 4.837513e-4;
const trig_PIO2_3: f32 = 7.54979e-8;

// round(pi/2 * 2^31), for turning a fixed-point fraction of a quadrant into radians.
const trig_PIO2_FIXED: u32 = 0xc90fdaa2u;

// Word i (0..=7) of the bits of 2/pi after the binary point, 32 per word, most significant
// first. Word 0 is zero and stands for the integer part, so a bit window may start before the
// binary point. Chosen by selects rather than by indexing a constant array: a software driver
// stores such an array per invocation and reads it back one SIMD lane at a time.
fn trig_two_over_pi_bits(i: u32) -> u32 {
    var w = 0x00000000u;
    w = select(w, 0xa2f9836eu, i == 1u);
    w = select(w, 0x4e441529u, i == 2u);
    w = select(w, 0xfc2757d1u, i == 3u);
    w = select(w, 0xf534ddc0u, i == 4u);
    w = select(w, 0xdb629599u, i == 5u);
    w = select(w, 0x3c439041u, i == 6u);
    w = select(w, 0xfe5163abu, i == 7u);
    return w;
}

// Taylor coefficients; on [-pi/4, pi/4] the truncation error is below 2e-9 (sin) and 2e-10 (cos).
const trig_SIN_3: f32 = -1.6666667e-1;
const trig_SIN_5: f32 = 8.333334e-3;
const trig_SIN_7: f32 = -1.984127e-4;
const trig_SIN_9: f32 = 2.7557319e-6;
const trig_COS_4: f32 = 4.1666668e-2;
const trig_COS_6: f32 = -1.3888889e-3;
const trig_COS_8: f32 = 2.4801588e-5;
const trig_COS_10: f32 = -2.755732e-7;

// Full 64-bit product of two u32 as (low word, high word); WGSL has neither u64 nor mulhi.
fn trig_mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    // Three terms below 2^16 each: cannot overflow.
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let lo = (mid << 16u) | (ll & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(lo, hi);
}

// Top 32 bits of the 64-bit value (hi:lo) shifted left by `shift` (0..=31). The low word is
// shifted in two steps because a shift by 32 would be taken modulo 32.
fn trig_funnel_shl(hi: u32, lo: u32, shift: u32) -> u32 {
    return (hi << shift) | ((lo >> 1u) >> (31u - shift));
}

// ax = quadrant * pi/2 + r, with quadrant taken mod 4 and |r| <= pi/4 (up to rounding).
struct trig_Reduced {
    r: f32,
    quadrant: u32,
}

// Payne-Hanek reduction for finite ax >= trig_CODY_WAITE_LIMIT.
fn trig_reduce_large(ax: f32) -> trig_Reduced {
    let bits = bitcast<u32>(ax);
    // ax = m * 2^(e - 150) with a 24-bit integer m.
    let e = bits >> 23u;
    let m = (bits & 0x7fffffu) | 0x800000u;

    // Bits of 2/pi worth more than 2^(2 - (e - 150)) only add multiples of 4 quadrants to the
    // product and are skipped. The 96-bit window that follows leaves an error below 2^-70
    // quadrants. The window starts at bit e - 120 of the table (e >= 139 here, so it is never
    // negative, and e <= 254 keeps the last word read in range).
    let start = e - 120u;
    let word = start >> 5u;
    let shift = start & 31u;
    let t0 = trig_two_over_pi_bits(word);
    let t1 = trig_two_over_pi_bits(word + 1u);
    let t2 = trig_two_over_pi_bits(word + 2u);
    let t3 = trig_two_over_pi_bits(word + 3u);
    let w0 = trig_funnel_shl(t0, t1, shift);
    let w1 = trig_funnel_shl(t1, t2, shift);
    let w2 = trig_funnel_shl(t2, t3, shift);

    // m * (w0:w1:w2) scaled by 2^-94: bits 94 and 95 are the quadrant, bits below are the
    // fraction. Product bits at 96 and above are whole turns and are never formed.
    let p2 = trig_mul_wide(m, w2);
    let p1 = trig_mul_wide(m, w1);
    let p0_lo = m * w0;
    let s0 = p2.x;
    let s1 = p2.y + p1.x;
    let carry1 = select(0u, 1u, s1 < p1.x);
    let s2 = p1.y + p0_lo + carry1;

    var quadrant = s2 >> 30u;
    var frac_hi = (s2 << 2u) | (s1 >> 30u);
    var frac_lo = (s1 << 2u) | (s0 >> 30u);

    // A fraction of half a quadrant or more is taken as a negative remainder of the next
    // quadrant, so |r| <= pi/4.
    var sign = 0u;
    if (frac_hi & 0x80000000u) != 0u {
        quadrant = quadrant + 1u;
        sign = 0x80000000u;
        let borrow = select(0u, 1u, frac_lo != 0u);
        frac_lo = 0u - frac_lo;
        frac_hi = 0u - frac_hi - borrow;
    }

    // Normalize the 64-bit fraction (value (frac_hi:frac_lo) * 2^-64) to 32 significant bits.
    var zeros = 0u;
    if frac_hi == 0u {
        frac_hi = frac_lo;
        frac_lo = 0u;
        zeros = 32u;
    }
    let lz = countLeadingZeros(frac_hi);
    let norm = trig_funnel_shl(frac_hi, frac_lo, lz);
    zeros = zeros + lz;

    // Multiply by pi/2 in fixed point and round once to 24 bits, building the float by hand so
    // the result does not depend on how the driver rounds integer-to-float conversions.
    let prod = trig_mul_wide(norm, trig_PIO2_FIXED);
    let top = countLeadingZeros(prod.y);
    let mant32 = trig_funnel_shl(prod.y, prod.x, top);
    let mant = (mant32 >> 8u) + ((mant32 >> 7u) & 1u);
    // mant includes the implicit bit, so adding it bumps the exponent field by one (and by two
    // when rounding carried out to 2^24, which is then exactly right).
    let r_bits = ((126u - zeros - top) << 23u) + mant;
    // norm is 0 only if all 64 fraction bits are: then r is 0 too (and r_bits is junk).
    let r = select(bitcast<f32>(r_bits | sign), 0.0, norm == 0u);
    return trig_Reduced(r, quadrant & 3u);
}

// vec2(sin(x), cos(x)) for finite x; NaN and infinities are the caller's to handle. A GPU that
// flushes subnormal inputs to zero returns (+-0, 1) for them, which is still within 1.2e-38.
fn sin_cos_accurate(x: f32) -> vec2<f32> {
    let x_bits = bitcast<u32>(x);
    let ax = bitcast<f32>(x_bits & 0x7fffffffu);

    var r: f32;
    var quadrant: u32;
    if ax < trig_CODY_WAITE_LIMIT {
        let k = round(ax * trig_TWO_OVER_PI);
        r = ((ax - k * trig_PIO2_1) - k * trig_PIO2_2) - k * trig_PIO2_3;
        quadrant = u32(k) & 3u;
    } else {
        let reduced = trig_reduce_large(ax);
        r = reduced.r;
        quadrant = reduced.quadrant;
    }

    let w = r * r;
    let sin_tail = trig_SIN_3 + w * (trig_SIN_5 + w * (trig_SIN_7 + w * trig_SIN_9));
    let cos_tail = trig_COS_4 + w * (trig_COS_6 + w * (trig_COS_8 + w * trig_COS_10));
    let s = r + r * w * sin_tail;
    // The small terms are summed first, so the one large rounding is the final step from 1.
    let c = 1.0 - (0.5 * w - w * w * cos_tail);

    // sin(r + q*pi/2) and cos(r + q*pi/2) for q = 0..3 are (s, c), (c, -s), (-s, -c), (-c, s).
    var sc = vec2<f32>(s, c);
    if (quadrant & 1u) != 0u {
        sc = vec2<f32>(c, -s);
    }
    if (quadrant & 2u) != 0u {
        sc = -sc;
    }
    // sin is odd and cos even; flipping the sign bit keeps sin(-0) = -0.
    let sin_x = bitcast<f32>(bitcast<u32>(sc.x) ^ (x_bits & 0x80000000u));
    return vec2<f32>(sin_x, sc.y);
}
