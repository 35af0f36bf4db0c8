//! CPU mirror of `shaders/trig.wgsl`, so the shader's sin/cos algorithm can be tested
//! exhaustively on the CPU.
//!
//! Each step uses the same f32 and u32 operations in the same order as the shader, with
//! wrapping integer arithmetic and masked shifts where WGSL wraps and masks. A GPU may still
//! differ in the last bit where its compiler fuses a multiply and an add; the tests leave room
//! for that. Change this file and the shader together.

use std::f32::consts::FRAC_2_PI;

/// Below this magnitude `k = round(|x| * 2/pi)` stays under 2^12, which keeps `k * PIO2_1` and
/// `k * PIO2_2` exact.
const CODY_WAITE_LIMIT: f32 = 4096.0;

/// pi/2 = PIO2_1 + PIO2_2 + PIO2_3 (+ 1.7e-15). The first part holds bits 2^0..2^-11 of pi/2
/// and the second bits 2^-12..2^-23, so both products with k are exact and only the last
/// subtraction rounds.
const PIO2_1: f32 = 1.570_312_5;
const PIO2_2: f32 = 4.837_513e-4;
const PIO2_3: f32 = 7.549_79e-8;

/// round(pi/2 * 2^31), for turning a fixed-point fraction of a quadrant into radians.
const PIO2_FIXED: u32 = 0xc90f_daa2;

/// Bits of 2/pi after the binary point, 32 per word, most significant first. The leading zero
/// word stands for the integer part, so a bit window may start before the binary point.
const TWO_OVER_PI_BITS: [u32; 8] = [
    0x0000_0000,
    0xa2f9_836e,
    0x4e44_1529,
    0xfc27_57d1,
    0xf534_ddc0,
    0xdb62_9599,
    0x3c43_9041,
    0xfe51_63ab,
];

// Taylor coefficients; on [-pi/4, pi/4] the truncation error is below 2e-9 (sin) and 2e-10 (cos).
const SIN_3: f32 = -1.666_666_7e-1;
const SIN_5: f32 = 8.333_334e-3;
const SIN_7: f32 = -1.984_127e-4;
const SIN_9: f32 = 2.755_731_9e-6;
const COS_4: f32 = 4.166_666_8e-2;
const COS_6: f32 = -1.388_888_9e-3;
const COS_8: f32 = 2.480_158_8e-5;
const COS_10: f32 = -2.755_732e-7;

/// Full 64-bit product of two u32 as (low word, high word), built from 16-bit halves because
/// WGSL has neither u64 nor mulhi.
fn mul_wide(a: u32, b: u32) -> (u32, u32) {
    let a_lo = a & 0xffff;
    let a_hi = a >> 16;
    let b_lo = b & 0xffff;
    let b_hi = b >> 16;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    // Three terms below 2^16 each: cannot overflow.
    let mid = (ll >> 16) + (lh & 0xffff) + (hl & 0xffff);
    let lo = (mid << 16) | (ll & 0xffff);
    let hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16);
    (lo, hi)
}

/// Top 32 bits of the 64-bit value (hi:lo) shifted left by `shift` (0..=31). The low word is
/// shifted in two steps because a shift by 32 would be taken modulo 32.
fn funnel_shl(hi: u32, lo: u32, shift: u32) -> u32 {
    hi.wrapping_shl(shift) | (lo >> 1).wrapping_shr(31u32.wrapping_sub(shift))
}

/// `ax = quadrant * pi/2 + r`, with quadrant taken mod 4 and |r| <= pi/4 (up to rounding).
struct Reduced {
    r: f32,
    quadrant: u32,
}

/// Payne-Hanek reduction for finite `ax >= CODY_WAITE_LIMIT`.
fn reduce_large(ax: f32) -> Reduced {
    let bits = ax.to_bits();
    // ax = m * 2^(e - 150) with a 24-bit integer m.
    let e = bits >> 23;
    let m = (bits & 0x007f_ffff) | 0x0080_0000;

    // Bits of 2/pi worth more than 2^(2 - (e - 150)) only add multiples of 4 quadrants to the
    // product and are skipped. The 96-bit window that follows leaves an error below 2^-70
    // quadrants. The window starts at bit e - 120 of the table (e >= 139 here, so it is never
    // negative, and e <= 254 keeps the last word read in range).
    let start = e - 120;
    let word = (start >> 5) as usize;
    let shift = start & 31;
    let t0 = TWO_OVER_PI_BITS[word];
    let t1 = TWO_OVER_PI_BITS[word + 1];
    let t2 = TWO_OVER_PI_BITS[word + 2];
    let t3 = TWO_OVER_PI_BITS[word + 3];
    let w0 = funnel_shl(t0, t1, shift);
    let w1 = funnel_shl(t1, t2, shift);
    let w2 = funnel_shl(t2, t3, shift);

    // m * (w0:w1:w2) scaled by 2^-94: bits 94 and 95 are the quadrant, bits below are the
    // fraction. Product bits at 96 and above are whole turns and are never formed.
    let p2 = mul_wide(m, w2);
    let p1 = mul_wide(m, w1);
    let p0_lo = m.wrapping_mul(w0);
    let s0 = p2.0;
    let s1 = p2.1.wrapping_add(p1.0);
    let carry1 = u32::from(s1 < p1.0);
    let s2 = p1.1.wrapping_add(p0_lo).wrapping_add(carry1);

    let mut quadrant = s2 >> 30;
    let mut frac_hi = (s2 << 2) | (s1 >> 30);
    let mut frac_lo = (s1 << 2) | (s0 >> 30);

    // A fraction of half a quadrant or more is taken as a negative remainder of the next
    // quadrant, so |r| <= pi/4.
    let mut sign = 0;
    if (frac_hi & 0x8000_0000) != 0 {
        quadrant += 1;
        sign = 0x8000_0000;
        let borrow = u32::from(frac_lo != 0);
        frac_lo = 0u32.wrapping_sub(frac_lo);
        frac_hi = 0u32.wrapping_sub(frac_hi).wrapping_sub(borrow);
    }

    // Normalize the 64-bit fraction (value (frac_hi:frac_lo) * 2^-64) to 32 significant bits.
    let mut zeros = 0;
    if frac_hi == 0 {
        frac_hi = frac_lo;
        frac_lo = 0;
        zeros = 32;
    }
    let lz = frac_hi.leading_zeros();
    let norm = funnel_shl(frac_hi, frac_lo, lz);
    zeros += lz;

    // Multiply by pi/2 in fixed point and round once to 24 bits, building the float by hand so
    // the result does not depend on how the driver rounds integer-to-float conversions.
    let prod = mul_wide(norm, PIO2_FIXED);
    let top = prod.1.leading_zeros();
    let mant32 = funnel_shl(prod.1, prod.0, top);
    let mant = (mant32 >> 8) + ((mant32 >> 7) & 1);
    // mant includes the implicit bit, so adding it bumps the exponent field by one (and by two
    // when rounding carried out to 2^24, which is then exactly right).
    let r_bits = ((126 - zeros - top) << 23) + mant;
    // norm is 0 only if all 64 fraction bits are: then r is 0 too (and r_bits is junk).
    let r = if norm == 0 {
        0.0
    } else {
        f32::from_bits(r_bits | sign)
    };
    Reduced {
        r,
        quadrant: quadrant & 3,
    }
}

/// `(sin(x), cos(x))` for finite `x`, as `sin_cos_accurate` in the shader computes them.
pub(crate) fn sin_cos_f32(x: f32) -> (f32, f32) {
    let x_bits = x.to_bits();
    let ax = f32::from_bits(x_bits & 0x7fff_ffff);

    let (r, quadrant) = if ax < CODY_WAITE_LIMIT {
        // WGSL's round() breaks ties to even.
        let k = (ax * FRAC_2_PI).round_ties_even();
        let r = ((ax - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
        (r, (k as u32) & 3)
    } else {
        let reduced = reduce_large(ax);
        (reduced.r, reduced.quadrant)
    };

    let w = r * r;
    let sin_tail = SIN_3 + w * (SIN_5 + w * (SIN_7 + w * SIN_9));
    let cos_tail = COS_4 + w * (COS_6 + w * (COS_8 + w * COS_10));
    let s = r + r * w * sin_tail;
    // The small terms are summed first, so the one large rounding is the final step from 1.
    let c = 1.0 - (0.5 * w - w * w * cos_tail);

    // sin(r + q*pi/2) and cos(r + q*pi/2) for q = 0..3 are (s, c), (c, -s), (-s, -c), (-c, s).
    let mut sc = (s, c);
    if (quadrant & 1) != 0 {
        sc = (c, -s);
    }
    if (quadrant & 2) != 0 {
        sc = (-sc.0, -sc.1);
    }
    // sin is odd and cos even; flipping the sign bit keeps sin(-0) = -0.
    let sin_x = f32::from_bits(sc.0.to_bits() ^ (x_bits & 0x8000_0000));
    (sin_x, sc.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHADER: &str = include_str!("../../shaders/trig.wgsl");

    /// Largest error measured against f64 and the first few failures of one sample set.
    struct Report {
        name: &'static str,
        count: usize,
        max_sin: f64,
        max_sin_x: f32,
        max_cos: f64,
        max_cos_x: f32,
        failures: Vec<String>,
        failure_count: usize,
    }

    impl Report {
        fn new(name: &'static str) -> Self {
            Report {
                name,
                count: 0,
                max_sin: 0.0,
                max_sin_x: 0.0,
                max_cos: 0.0,
                max_cos_x: 0.0,
                failures: Vec::new(),
                failure_count: 0,
            }
        }

        fn check(&mut self, index: usize, x: f32) {
            let (sin, cos) = sin_cos_f32(x);
            let xd = f64::from(x);
            self.count += 1;
            for (what, actual, expected) in [("sin", sin, xd.sin()), ("cos", cos, xd.cos())] {
                let error = (f64::from(actual) - expected).abs();
                let tolerance = 1e-6 + 1e-5 * expected.abs();
                if error.is_nan() || error > tolerance {
                    self.failure_count += 1;
                    if self.failures.len() < 20 {
                        self.failures.push(format!(
                            "{what}: index {index}, x = {x:e} (bits {:#010x}), actual {actual:e}, \
                             expected {expected:e}, error {error:e}, tolerance {tolerance:e}",
                            x.to_bits()
                        ));
                    }
                }
                let (max, max_x) = if what == "sin" {
                    (&mut self.max_sin, &mut self.max_sin_x)
                } else {
                    (&mut self.max_cos, &mut self.max_cos_x)
                };
                if error > *max || error.is_nan() {
                    *max = error;
                    *max_x = x;
                }
            }
        }

        fn finish(self) {
            println!(
                "{}: {} values, max abs error sin {:.3e} (x = {:e}), cos {:.3e} (x = {:e})",
                self.name, self.count, self.max_sin, self.max_sin_x, self.max_cos, self.max_cos_x
            );
            assert!(
                self.failures.is_empty(),
                "{}: {} comparisons out of tolerance, first ones:\n{}",
                self.name,
                self.failure_count,
                self.failures.join("\n")
            );
        }
    }

    fn splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn check_uniform(name: &'static str, lo: f64, hi: f64, count: usize) {
        let mut report = Report::new(name);
        for i in 0..count {
            let t = i as f64 / (count - 1) as f64;
            report.check(i, (lo + (hi - lo) * t) as f32);
        }
        report.finish();
    }

    #[test]
    fn random_bit_patterns() {
        // A new seed each run widens coverage over time; set TRIG_F32_SEED to replay a failure.
        let seed = match std::env::var("TRIG_F32_SEED") {
            Ok(text) => text.parse().expect("TRIG_F32_SEED must be a u64"),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock before 1970")
                .as_nanos() as u64,
        };
        println!("random_bit_patterns: seed {seed} (rerun with TRIG_F32_SEED={seed})");
        let mut state = seed;
        let mut report = Report::new("random bit patterns");
        let mut index = 0;
        while report.count < 2_100_000 {
            let draw = splitmix64(&mut state);
            for bits in [draw as u32, (draw >> 32) as u32] {
                let x = f32::from_bits(bits);
                if x.is_finite() {
                    report.check(index, x);
                }
                index += 1;
            }
        }
        report.finish();
    }

    #[test]
    fn dense_small_range() {
        check_uniform("uniform [-20, 20]", -20.0, 20.0, 2_000_001);
    }

    #[test]
    fn dense_wide_range() {
        check_uniform("uniform [-1e5, 1e5]", -1e5, 1e5, 2_000_001);
    }

    #[test]
    fn edge_values() {
        let mut values = vec![
            0.0,
            1e-8,
            1e-4,
            9.0,
            20.0,
            44.0,
            88.7,
            89.0,
            100.0,
            1e30,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            CODY_WAITE_LIMIT,
            CODY_WAITE_LIMIT.next_down(),
            CODY_WAITE_LIMIT.next_up(),
        ];
        values.extend((-30..=127).map(|k| 2f32.powi(k)));
        let mut report = Report::new("edge values");
        for (index, &x) in values.iter().enumerate() {
            report.check(2 * index, x);
            report.check(2 * index + 1, -x);
        }
        report.finish();
    }

    #[test]
    fn near_multiples_of_half_pi() {
        // Where sin or cos has a zero, all accuracy must come from the range reduction.
        let mut report = Report::new("nearest f32 to k*pi/2 up to 1e6");
        let mut index = 0;
        for k in 1u32.. {
            let x = (f64::from(k) * std::f64::consts::FRAC_PI_2) as f32;
            if x > 1e6 {
                break;
            }
            for x in [x, -x] {
                report.check(index, x);
                index += 1;
            }
        }
        report.finish();
    }

    #[test]
    #[ignore = "exhaustive over all 2^32 patterns: minutes, run with --release"]
    fn all_finite_values() {
        let positive_finite = f32::INFINITY.to_bits();
        std::thread::scope(|scope| {
            for half in 0..2u32 {
                scope.spawn(move || {
                    let name = ["all finite f32, first half", "all finite f32, second half"];
                    let mut report = Report::new(name[half as usize]);
                    let (lo, hi) = (half * positive_finite / 2, (half + 1) * positive_finite / 2);
                    for bits in lo..hi {
                        let x = f32::from_bits(bits);
                        report.check(bits as usize, x);
                        report.check(bits as usize, -x);
                    }
                    report.finish();
                });
            }
        });
    }

    #[test]
    fn exact_special_values() {
        assert_eq!(sin_cos_f32(0.0), (0.0, 1.0));
        let (sin, cos) = sin_cos_f32(-0.0);
        assert!(sin == 0.0 && sin.is_sign_negative(), "sin(-0) = {sin:e}");
        assert_eq!(cos, 1.0);
        let tiny = f32::MIN_POSITIVE;
        assert_eq!(sin_cos_f32(tiny), (tiny, 1.0));
        assert_eq!(sin_cos_f32(-tiny), (-tiny, 1.0));
    }

    #[test]
    fn multiply_matches_u64() {
        let mut state = 1;
        for _ in 0..100_000 {
            let draw = splitmix64(&mut state);
            let (a, b) = (draw as u32, (draw >> 32) as u32);
            let (lo, hi) = mul_wide(a, b);
            assert_eq!(
                u64::from(a) * u64::from(b),
                (u64::from(hi) << 32) | u64::from(lo),
                "{a:#x} * {b:#x}"
            );
        }
        let (lo, hi) = mul_wide(u32::MAX, u32::MAX);
        assert_eq!((lo, hi), (1, u32::MAX - 1));
    }

    /// The literal after `const NAME` (and an optional type) in the shader, up to the `;`.
    fn shader_literal(name: &str) -> &'static str {
        let start = SHADER
            .find(&format!("const {name}"))
            .unwrap_or_else(|| panic!("{name} missing from trig.wgsl"));
        let rest = &SHADER[start..];
        let value = &rest[rest.find('=').unwrap() + 1..rest.find(';').unwrap()];
        value.trim()
    }

    #[test]
    fn constants_match_shader() {
        let floats = [
            ("trig_CODY_WAITE_LIMIT", CODY_WAITE_LIMIT),
            ("trig_TWO_OVER_PI", FRAC_2_PI),
            ("trig_PIO2_1", PIO2_1),
            ("trig_PIO2_2", PIO2_2),
            ("trig_PIO2_3", PIO2_3),
            ("trig_SIN_3", SIN_3),
            ("trig_SIN_5", SIN_5),
            ("trig_SIN_7", SIN_7),
            ("trig_SIN_9", SIN_9),
            ("trig_COS_4", COS_4),
            ("trig_COS_6", COS_6),
            ("trig_COS_8", COS_8),
            ("trig_COS_10", COS_10),
        ];
        for (name, value) in floats {
            let literal = shader_literal(name);
            let parsed: f32 = literal
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {literal}"));
            assert_eq!(
                parsed.to_bits(),
                value.to_bits(),
                "{name}: {literal} vs {value:e}"
            );
        }

        let words = |literal: &str| -> Vec<u32> {
            literal
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter_map(|token| token.strip_prefix("0x")?.strip_suffix('u'))
                .map(|hex| u32::from_str_radix(hex, 16).unwrap())
                .collect()
        };
        assert_eq!(words(shader_literal("trig_PIO2_FIXED")), [PIO2_FIXED]);
        // The shader picks word i by selects in `trig_two_over_pi_bits`,
        // word 0 first and each later word under `i == <its index>u`.
        let start = SHADER
            .find("fn trig_two_over_pi_bits")
            .expect("trig_two_over_pi_bits in trig.wgsl");
        let body = &SHADER[start..start + SHADER[start..].find("return w;").expect("its end")];
        assert_eq!(words(body), TWO_OVER_PI_BITS);
        for i in 1..TWO_OVER_PI_BITS.len() {
            assert!(body.contains(&format!("i == {i}u")), "word {i} in {body}");
        }
    }

    #[test]
    fn pi_constants_are_consistent() {
        // The split parts must add up to pi/2 and the table must hold 2/pi; this catches a
        // mistyped digit that the error tests could only blame on the whole algorithm.
        let split = f64::from(PIO2_1) + f64::from(PIO2_2) + f64::from(PIO2_3);
        assert!((split - std::f64::consts::FRAC_PI_2).abs() < 1e-14);
        let scaled_1 = f64::from(PIO2_1) * 2f64.powi(11);
        assert_eq!(scaled_1.fract(), 0.0, "PIO2_1 has bits below 2^-11");
        assert!(scaled_1 < 2f64.powi(12), "PIO2_1 has bits above 2^0");
        let scaled_2 = f64::from(PIO2_2) * 2f64.powi(23);
        assert_eq!(scaled_2.fract(), 0.0, "PIO2_2 has bits below 2^-23");
        assert!(scaled_2 < 2f64.powi(12), "PIO2_2 has bits above 2^-12");
        let fixed = f64::from(PIO2_FIXED) / 2f64.powi(31);
        assert!((fixed - std::f64::consts::FRAC_PI_2).abs() < 2f64.powi(-32));
        let table = TWO_OVER_PI_BITS
            .iter()
            .enumerate()
            .map(|(i, &w)| f64::from(w) * 2f64.powi(-32 * i as i32))
            .sum::<f64>();
        assert!((table - std::f64::consts::FRAC_2_PI).abs() < 2e-16);
    }
}
