//! Reductions: one sample's vector, or two of one length, to one number.
//!
//! Each reduction is defined here once: its name in the text language, its
//! arity, its f64 value and local partials (the reference the GPU is checked
//! against), the structure of its local Jacobian (a row, Parr and Howard
//! section 4.6) and that row written symbolically for `explain`. The program
//! layers (lowering, the Jacobian planner, the JVP and VJP transformations,
//! the kernel generators and both backends) read a reduction through
//! [`ReduceOp::partial`], never by its name.

use std::fmt;

/// A reduction of a vector (or two, of one length) to a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReduceOp {
    /// sum_i a_i.
    Sum,
    /// (1/n) sum_i a_i.
    Mean,
    /// sum_i a_i b_i, of two vectors of one length.
    Dot,
    /// ln(sum_i exp(z_i)), computed with the maximum subtracted so that it
    /// never overflows; its gradient is softmax(z). With an infinite
    /// maximum it takes the limit: +Inf for any +Inf element, -Inf when all
    /// are -Inf, and softmax is one-hot where one element is the maximum
    /// (NaN where several infinite elements tie, which has no limit).
    LogSumExp,
    /// prod_i a_i, its gradient the product of the other elements.
    Prod,
}

/// The structure of a reduction's local Jacobian with respect to one
/// operand: a row of the operand's length, per sample. The layers after
/// the table act on this, so a new reduction with one of these structures
/// is one entry in [`ReduceOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPartial {
    /// Every entry [`ReduceOp::weight`] of the operand's length, the same
    /// for every sample (sum: 1, mean: 1/n). The reduction is linear, so
    /// its value is `weight` times the sum of the elements and its tangent
    /// is the same reduction of the tangent.
    Uniform,
    /// The other operand's elements (dot: d(a.b)/da = b^T). The reduction
    /// is bilinear: its value is `weight` times the sum of the operands'
    /// products, and its tangent is the sum of the reductions with each
    /// operand replaced by its tangent.
    Other,
    /// softmax(z) of the operand, computed with the value and kept per
    /// sample (logsumexp).
    Softmax,
    /// The product of the operand's other elements, prod_{j != i} a_j,
    /// computed with the value and kept per sample (prod): the products of
    /// the elements before and after each, so that it is exact where
    /// elements are zero (a / a_i is not).
    Others,
}

impl RowPartial {
    /// Whether the row is computed with the value and kept per sample (a
    /// vector of the operand's length), rather than read from the
    /// operands or a constant.
    pub fn kept(self) -> bool {
        matches!(self, RowPartial::Softmax | RowPartial::Others)
    }
}

impl ReduceOp {
    /// Every reduction, in the order tables list them.
    pub fn catalogue() -> [ReduceOp; 5] {
        [
            ReduceOp::Sum,
            ReduceOp::Mean,
            ReduceOp::Dot,
            ReduceOp::LogSumExp,
            ReduceOp::Prod,
        ]
    }

    /// The name in the text language.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Dot => "dot",
            ReduceOp::LogSumExp => "logsumexp",
            ReduceOp::Prod => "prod",
        }
    }

    /// The reduction called `name` in the text language.
    pub fn from_name(name: &str) -> Option<ReduceOp> {
        ReduceOp::catalogue().into_iter().find(|r| r.name() == name)
    }

    /// How many vectors it reads: 1, or 2 of one length.
    pub fn arity(self) -> usize {
        match self {
            ReduceOp::Dot => 2,
            _ => 1,
        }
    }

    /// The structure of its local Jacobian with respect to each operand.
    pub fn partial(self) -> RowPartial {
        match self {
            ReduceOp::Sum | ReduceOp::Mean => RowPartial::Uniform,
            ReduceOp::Dot => RowPartial::Other,
            ReduceOp::LogSumExp => RowPartial::Softmax,
            ReduceOp::Prod => RowPartial::Others,
        }
    }

    /// The factor on the (products') sum for operands of `n` elements:
    /// 1/n for the mean, 1 for the others.
    pub fn weight(self, n: usize) -> f64 {
        match self {
            ReduceOp::Mean => 1.0 / n.max(1) as f64,
            _ => 1.0,
        }
    }

    /// The value in f64 at one sample; `operands` holds `arity` slices of
    /// one length.
    pub fn value(self, operands: &[&[f64]]) -> f64 {
        let a = operands.first().copied().unwrap_or(&[]);
        match self {
            ReduceOp::Sum => a.iter().sum(),
            ReduceOp::Mean => a.iter().sum::<f64>() / a.len() as f64,
            ReduceOp::Dot => {
                let b = operands.get(1).copied().unwrap_or(&[]);
                a.iter().zip(b).map(|(a, b)| a * b).sum()
            }
            ReduceOp::LogSumExp => log_sum_exp(a),
            ReduceOp::Prod => a
                .iter()
                .fold(ScaledProduct::ONE, |p, &x| p.times(x))
                .value(),
        }
    }

    /// The local partials in f64 at one sample: the derivative of the
    /// value with respect to each element of operand `slot`.
    pub fn partials(self, operands: &[&[f64]], slot: usize) -> Vec<f64> {
        let a = operands.first().copied().unwrap_or(&[]);
        match self {
            ReduceOp::Sum | ReduceOp::Mean => vec![self.weight(a.len()); a.len()],
            ReduceOp::Dot => {
                let other = if slot == 0 { 1 } else { 0 };
                operands.get(other).copied().unwrap_or(&[]).to_vec()
            }
            ReduceOp::LogSumExp => softmax(a),
            ReduceOp::Prod => products_of_others(a),
        }
    }

    /// The row of partials with respect to operand `slot`, written with the
    /// operands' names and their length (`n` where `None`), for
    /// explanations and `chainrule ops`: `1^T`, `(1/n) 1^T`, `b^T`,
    /// `softmax(z)^T`.
    pub fn symbolic_partial(self, names: &[&str], slot: usize, n: Option<usize>) -> String {
        let name = |k: usize| names.get(k).copied().unwrap_or("?");
        match self.partial() {
            RowPartial::Uniform => match self.weight(n.unwrap_or(2)) {
                1.0 => "1^T".to_string(),
                _ => format!(
                    "(1/{}) 1^T",
                    n.map_or_else(|| "n".to_string(), |n| n.to_string())
                ),
            },
            RowPartial::Other => {
                let other = name(1 - slot.min(1));
                if other.contains(' ') {
                    format!("({other})^T")
                } else {
                    format!("{other}^T")
                }
            }
            RowPartial::Softmax => format!("softmax({})^T", name(0)),
            RowPartial::Others => format!("(prod_(j != i) {}_j)^T", name(0)),
        }
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// prod_{j != i} a_j for each i: the product of the elements before i
/// times that of the elements after it (no division, so exact at zeros:
/// the gradient of prod at [2, 0, 3] is [0, 6, 0]), each kept as a
/// [`ScaledProduct`] so that no intermediate product overflows.
pub(crate) fn products_of_others(a: &[f64]) -> Vec<f64> {
    let mut before = Vec::with_capacity(a.len());
    let mut running = ScaledProduct::ONE;
    for &x in a {
        before.push(running);
        running = running.times(x);
    }
    let mut out = vec![0.0; a.len()];
    let mut after = ScaledProduct::ONE;
    for (i, &x) in a.iter().enumerate().rev() {
        out[i] = times_power_of_two(before[i].m * after.m, before[i].e + after.e);
        after = after.times(x);
    }
    out
}

/// A running product kept as m 2^e, m brought back into [0.5, 1) after
/// every factor (while finite and nonzero), so that no intermediate
/// product leaves the float's range where the result would not: the
/// products of the others of [1e300, 1e300, 1e-300, 1e-300] are exact.
/// The mirror of `ScaledProduct` in shaders/common.wgsl.
#[derive(Debug, Clone, Copy)]
struct ScaledProduct {
    m: f64,
    e: i32,
}

impl ScaledProduct {
    const ONE: ScaledProduct = ScaledProduct { m: 1.0, e: 0 };

    fn times(self, x: f64) -> ScaledProduct {
        let m = self.m * x;
        if m == 0.0 || !m.is_finite() {
            return ScaledProduct { m, e: self.e };
        }
        let k = exponent_of(m);
        ScaledProduct {
            m: times_power_of_two(m, -k),
            // Held within 2^29, as the kernels hold theirs.
            e: (self.e + k).clamp(-(1 << 29), 1 << 29),
        }
    }

    fn value(self) -> f64 {
        times_power_of_two(self.m, self.e)
    }
}

/// e with x = f 2^e and |f| in [0.5, 1), for a finite nonzero x.
fn exponent_of(x: f64) -> i32 {
    let field = ((x.to_bits() >> 52) & 0x7ff) as i32;
    if field == 0 {
        // Subnormal: 2^64 x is normal, exactly.
        return exponent_of(x * 2f64.powi(64)) - 64;
    }
    field - 1022
}

/// x 2^k, exact unless the result leaves f64's range.
fn times_power_of_two(x: f64, k: i32) -> f64 {
    let mut x = x;
    let mut k = k.clamp(-3000, 3000);
    while k != 0 {
        let step = k.clamp(-1000, 1000);
        x *= 2f64.powi(step);
        k -= step;
    }
    x
}

/// The maximum of a vector (NaN elements aside), how many elements equal
/// it, and whether any is NaN.
pub(crate) struct RowMax {
    pub max: f64,
    pub ties: usize,
    pub nan: bool,
}

pub(crate) fn row_max(z: &[f64]) -> RowMax {
    let mut row = RowMax {
        max: f64::NEG_INFINITY,
        ties: 0,
        nan: false,
    };
    for &v in z {
        if v.is_nan() {
            row.nan = true;
        } else if v > row.max {
            row.max = v;
            row.ties = 1;
        } else if v == row.max {
            row.ties += 1;
        }
    }
    row
}

/// ln(sum(exp(z))) with the maximum subtracted; at an infinite maximum,
/// that infinity; NaN anywhere gives NaN.
fn log_sum_exp(z: &[f64]) -> f64 {
    let row = row_max(z);
    if row.nan {
        return f64::NAN;
    }
    if row.max.is_infinite() {
        return row.max;
    }
    row.max + z.iter().map(|&v| (v - row.max).exp()).sum::<f64>().ln()
}

/// softmax(z) = exp(z - max) / sum(exp(z - max)), the gradient of
/// logsumexp. An infinite maximum held by one element gives the one-hot
/// limit; held by several (or all -Inf, with more than one element), NaN.
pub(crate) fn softmax(z: &[f64]) -> Vec<f64> {
    let row = row_max(z);
    if row.nan || (row.max.is_infinite() && row.ties > 1) {
        return vec![f64::NAN; z.len()];
    }
    if row.max.is_infinite() {
        return z
            .iter()
            .map(|&v| if v == row.max { 1.0 } else { 0.0 })
            .collect();
    }
    let exps: Vec<f64> = z.iter().map(|&v| (v - row.max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reduction's partials against central differences of its value,
    /// and against what its structure says they are.
    #[test]
    fn partials_match_differences_and_structure() {
        let a = [0.3, -1.2, 2.5, 0.7];
        let b = [1.1, 0.4, -0.6, 2.0];
        for r in ReduceOp::catalogue() {
            let operands: Vec<&[f64]> = [&a[..], &b[..]][..r.arity()].to_vec();
            for slot in 0..r.arity() {
                let partials = r.partials(&operands, slot);
                for i in 0..a.len() {
                    let h = 1e-6;
                    let mut moved: Vec<Vec<f64>> = operands.iter().map(|o| o.to_vec()).collect();
                    moved[slot][i] += h;
                    let up = r.value(&moved.iter().map(Vec::as_slice).collect::<Vec<_>>());
                    moved[slot][i] -= 2.0 * h;
                    let down = r.value(&moved.iter().map(Vec::as_slice).collect::<Vec<_>>());
                    let difference = (up - down) / (2.0 * h);
                    assert!(
                        (partials[i] - difference).abs() < 1e-6,
                        "{r} slot {slot} element {i}: {} vs {difference}",
                        partials[i]
                    );
                }
                let expected = match r.partial() {
                    RowPartial::Uniform => vec![r.weight(a.len()); a.len()],
                    RowPartial::Other => operands[1 - slot].to_vec(),
                    RowPartial::Softmax => softmax(operands[0]),
                    RowPartial::Others => products_of_others(operands[0]),
                };
                assert_eq!(partials, expected, "{r} slot {slot}");
            }
            // Linear and bilinear reductions are `weight` times the sum of
            // the operands' products, which the kernels compute.
            if !r.partial().kept() {
                let products: f64 = (0..a.len())
                    .map(|i| operands.iter().map(|o| o[i]).product::<f64>())
                    .sum();
                let value = r.value(&operands);
                assert!((value - r.weight(a.len()) * products).abs() < 1e-12, "{r}");
            }
            assert_eq!(ReduceOp::from_name(r.name()), Some(r));
        }
    }

    #[test]
    fn products_of_others_are_exact_at_zeros() {
        assert_eq!(products_of_others(&[2.0, 0.0, 3.0]), vec![0.0, 6.0, 0.0]);
        assert_eq!(products_of_others(&[0.0, 5.0, 0.0]), vec![0.0; 3]);
        assert_eq!(products_of_others(&[4.0]), vec![1.0]);
        assert!(products_of_others(&[]).is_empty());
        let others = products_of_others(&[0.0, f64::INFINITY]);
        assert_eq!(others, vec![f64::INFINITY, 0.0]);
        assert_eq!(ReduceOp::Prod.value(&[&[2.0, -3.0, 0.5]]), -3.0);
        // No intermediate product overflows or underflows.
        let a = [1e300, 1e300, 1e-300, 1e-300, 4.0];
        assert!((ReduceOp::Prod.value(&[&a]) - 4.0).abs() < 1e-14);
        let others = products_of_others(&a);
        for (o, want) in others.iter().zip([4e-300, 4e-300, 4e300, 4e300, 1.0]) {
            assert!((o - want).abs() <= 1e-15 * want, "{others:?}");
        }
        assert_eq!(ReduceOp::Prod.value(&[&[1e300, 1e300]]), f64::INFINITY);
        assert_eq!(ReduceOp::Prod.value(&[&[1e-300, 1e-300]]), 0.0);
        // Exactly 0, where the plain product overflows first: Inf * 0 = NaN.
        assert_eq!(ReduceOp::Prod.value(&[&[1e300, 1e300, 0.0]]), 0.0);
        assert_eq!(products_of_others(&[5e-324, 3.0]), vec![3.0, 5e-324]);
    }

    #[test]
    fn log_sum_exp_limits() {
        assert_eq!(log_sum_exp(&[1.0, f64::INFINITY]), f64::INFINITY);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY; 2]), f64::NEG_INFINITY);
        assert!(log_sum_exp(&[1.0, f64::NAN]).is_nan());
        assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert_eq!(softmax(&[0.0, f64::INFINITY]), vec![0.0, 1.0]);
        assert!(softmax(&[f64::INFINITY, f64::INFINITY])[0].is_nan());
    }
}
