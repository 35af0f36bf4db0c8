//! Symbolic expressions for the explanations: just enough algebra to turn a
//! chain of local derivatives into a formula a person would write.
//!
//! There is no subtraction or division node: `a - b` is `a + (-1)*b` and
//! `a / b` is `a * b^-1`, so that the simplifier only has to collect sums,
//! products and powers; the printer turns them back into `-` and `/`.
//!
//! The smart constructors (`add`, `mul`, `pow`, `call`, `bracket`) expect
//! simplified operands and return a simplified result. Simplification is a
//! fixed set of local rewrites that only ever shrink or regroup, so it always
//! terminates; it aims at readable results, not at a normal form: sums are
//! not expanded and nothing is factored.

use std::cmp::Ordering;
use std::fmt;

use crate::ops::{BinaryOp, UnaryOp};

/// A symbolic expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A number.
    Num(f64),
    /// A constant known by name, such as `sqrt(2/pi)`, printed as its name.
    Named(&'static str, f64),
    /// A variable: an input or an intermediate.
    Var(String),
    /// A sum of two or more terms.
    Add(Vec<Expr>),
    /// A product of two or more factors; a numeric coefficient comes first.
    Mul(Vec<Expr>),
    /// A power.
    Pow(Box<Expr>, Box<Expr>),
    /// A function applied to arguments, by name.
    Call(&'static str, Vec<Expr>),
    /// An Iverson bracket: 1 when the relation holds, else 0.
    Bracket(Rel, Box<Expr>, Box<Expr>),
}

/// The relation inside an Iverson bracket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rel {
    Greater,
    AtLeast,
    Less,
    AtMost,
    Equal,
}

impl Rel {
    fn symbol(self) -> &'static str {
        match self {
            Rel::Greater => ">",
            Rel::AtLeast => ">=",
            Rel::Less => "<",
            Rel::AtMost => "<=",
            Rel::Equal => "=",
        }
    }

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Rel::Greater => a > b,
            Rel::AtLeast => a >= b,
            Rel::Less => a < b,
            Rel::AtMost => a <= b,
            Rel::Equal => a == b,
        }
    }
}

/// Re-flattening a product after merging can expose new merges; a few
/// rounds reach everything the rules can do, and the bound keeps it finite.
const MAX_PRODUCT_ROUNDS: usize = 4;

impl Expr {
    pub(crate) fn var(name: &str) -> Expr {
        Expr::Var(name.to_string())
    }

    pub(crate) fn neg(e: Expr) -> Expr {
        Expr::mul(vec![Expr::Num(-1.0), e])
    }

    pub(crate) fn sub(a: Expr, b: Expr) -> Expr {
        Expr::add(vec![a, Expr::neg(b)])
    }

    pub(crate) fn recip(e: Expr) -> Expr {
        Expr::pow(e, Expr::Num(-1.0))
    }

    /// An Iverson bracket, decided at once when both sides are numbers or
    /// the same expression.
    pub(crate) fn bracket(rel: Rel, a: Expr, b: Expr) -> Expr {
        match (&a, &b) {
            (Expr::Num(x), Expr::Num(y)) => Expr::Num(f64::from(u8::from(rel.holds(*x, *y)))),
            _ if a == b => {
                let reflexive = matches!(rel, Rel::AtLeast | Rel::AtMost | Rel::Equal);
                Expr::Num(f64::from(u8::from(reflexive)))
            }
            _ => Expr::Bracket(rel, Box::new(a), Box::new(b)),
        }
    }

    /// A function call; numeric arguments fold only into a whole number
    /// (`exp(0)` is 1), since `sin(2)` reads better than its decimals.
    pub(crate) fn call(name: &'static str, args: Vec<Expr>) -> Expr {
        let numbers: Option<Vec<f64>> = args
            .iter()
            .map(|a| match a {
                Expr::Num(v) => Some(*v),
                _ => None,
            })
            .collect();
        if let Some(value) = numbers.and_then(|n| call_value(name, &n)) {
            if value.is_finite() && value.fract() == 0.0 {
                return Expr::Num(value);
            }
        }
        Expr::Call(name, args)
    }

    /// A sum: flattened, numbers folded, like terms merged (`2*x + 3*x` is
    /// `5*x`), terms in canonical order with the constant first.
    pub(crate) fn add(terms: Vec<Expr>) -> Expr {
        let mut constant = 0.0;
        let mut scaled: Vec<(f64, Expr)> = Vec::new();
        let mut stack = terms;
        while let Some(term) = stack.pop() {
            match term {
                Expr::Num(v) => constant += v,
                Expr::Add(inner) => stack.extend(inner),
                Expr::Mul(factors) => {
                    let (c, rest) = split_coefficient(factors);
                    match rest {
                        Some(rest) => scaled.push((c, rest)),
                        None => constant += c,
                    }
                }
                other => scaled.push((1.0, other)),
            }
        }
        scaled.sort_by(|a, b| cmp_expr(&a.1, &b.1));
        let mut merged: Vec<(f64, Expr)> = Vec::with_capacity(scaled.len());
        for (c, rest) in scaled {
            match merged.last_mut() {
                Some(last) if cmp_expr(&last.1, &rest) == Ordering::Equal => last.0 += c,
                _ => merged.push((c, rest)),
            }
        }
        let mut out: Vec<Expr> = Vec::with_capacity(merged.len() + 1);
        if constant != 0.0 {
            out.push(Expr::Num(constant));
        }
        out.extend(
            merged
                .into_iter()
                .filter(|(c, _)| *c != 0.0)
                .map(|(c, rest)| scale(c, rest)),
        );
        match out.len() {
            0 => Expr::Num(0.0),
            1 => out.pop().unwrap_or(Expr::Num(0.0)),
            _ => Expr::Add(out),
        }
    }

    /// A product: flattened, numbers folded into one leading coefficient,
    /// equal bases merged by adding exponents (`x*x^2` is `x^3`).
    pub(crate) fn mul(factors: Vec<Expr>) -> Expr {
        mul_rounds(factors, 0)
    }

    /// A power, with `x^0 = 1`, `x^1 = x`, numbers folded while finite,
    /// `(a^m)^n = a^(m*n)` where that holds for every real `a`, and an
    /// integer power of a product distributed over its factors.
    pub(crate) fn pow(base: Expr, exponent: Expr) -> Expr {
        let Expr::Num(n) = exponent else {
            return match base {
                Expr::Num(1.0) => Expr::Num(1.0),
                base => Expr::Pow(Box::new(base), Box::new(exponent)),
            };
        };
        if n == 0.0 {
            return Expr::Num(1.0);
        }
        if n == 1.0 {
            return base;
        }
        let integer = n.fract() == 0.0;
        match base {
            Expr::Num(b) if b.powf(n).is_finite() => Expr::Num(b.powf(n)),
            // (x^2)^0.5 is |x|, not x: an integer m with a fractional n
            // would lose the sign.
            Expr::Pow(inner, m) => match *m {
                Expr::Num(m) if integer || m.fract() != 0.0 => Expr::pow(*inner, Expr::Num(m * n)),
                m => Expr::Pow(
                    Box::new(Expr::Pow(inner, Box::new(m))),
                    Box::new(Expr::Num(n)),
                ),
            },
            Expr::Mul(factors) if integer => Expr::mul(
                factors
                    .into_iter()
                    .map(|f| Expr::pow(f, Expr::Num(n)))
                    .collect(),
            ),
            base => Expr::Pow(Box::new(base), Box::new(Expr::Num(n))),
        }
    }

    /// The same expression rebuilt through the simplifying constructors.
    #[cfg(test)]
    pub(crate) fn simplify(&self) -> Expr {
        match self {
            Expr::Num(_) | Expr::Named(..) | Expr::Var(_) => self.clone(),
            Expr::Add(terms) => Expr::add(terms.iter().map(Expr::simplify).collect()),
            Expr::Mul(factors) => Expr::mul(factors.iter().map(Expr::simplify).collect()),
            Expr::Pow(b, e) => Expr::pow(b.simplify(), e.simplify()),
            Expr::Call(name, args) => Expr::call(name, args.iter().map(Expr::simplify).collect()),
            Expr::Bracket(rel, a, b) => Expr::bracket(*rel, a.simplify(), b.simplify()),
        }
    }

    /// The number of nodes, to bound how large a formula may grow.
    pub(crate) fn size(&self) -> usize {
        1 + match self {
            Expr::Num(_) | Expr::Named(..) | Expr::Var(_) => 0,
            Expr::Add(items) | Expr::Mul(items) | Expr::Call(_, items) => {
                items.iter().map(Expr::size).sum()
            }
            Expr::Pow(a, b) | Expr::Bracket(_, a, b) => a.size() + b.size(),
        }
    }

    /// The value with `vars` giving each variable's; `None` for an unknown
    /// variable or function.
    pub(crate) fn evaluate(&self, vars: &dyn Fn(&str) -> Option<f64>) -> Option<f64> {
        Some(match self {
            Expr::Num(v) | Expr::Named(_, v) => *v,
            Expr::Var(name) => vars(name)?,
            Expr::Add(terms) => terms
                .iter()
                .try_fold(0.0, |s, t| Some(s + t.evaluate(vars)?))?,
            Expr::Mul(factors) => factors
                .iter()
                .try_fold(1.0, |p, f| Some(p * f.evaluate(vars)?))?,
            Expr::Pow(b, e) => b.evaluate(vars)?.powf(e.evaluate(vars)?),
            Expr::Call(name, args) => {
                let values: Option<Vec<f64>> = args.iter().map(|a| a.evaluate(vars)).collect();
                call_value(name, &values?)?
            }
            Expr::Bracket(rel, a, b) => {
                f64::from(u8::from(rel.holds(a.evaluate(vars)?, b.evaluate(vars)?)))
            }
        })
    }
}

/// The numeric value of a function the explanations use, with the f64
/// reference's conventions (the same code, where `ops` has it).
fn call_value(name: &str, args: &[f64]) -> Option<f64> {
    let unary = |op: UnaryOp, x: f64| op.value_and_derivative(x).0;
    match (name, args) {
        ("sign", [x]) => Some(if *x > 0.0 {
            1.0
        } else if *x < 0.0 {
            -1.0
        } else {
            x * 0.0
        }),
        ("where", [c, a, b]) => Some(if *c != 0.0 { *a } else { *b }),
        ("min", [a, b]) => Some(a.min(*b)),
        ("max", [a, b]) => Some(a.max(*b)),
        (name, [a, b]) if BinaryOp::from_name(name).is_some() => {
            BinaryOp::from_name(name).map(|op| op.value_and_partials(*a, *b).0)
        }
        ("leaky_relu", [x, alpha]) => Some(unary(
            UnaryOp::LeakyRelu {
                alpha: *alpha as f32,
            },
            *x,
        )),
        ("elu", [x, alpha]) => Some(unary(
            UnaryOp::Elu {
                alpha: *alpha as f32,
            },
            *x,
        )),
        (name, [x]) => UnaryOp::catalogue()
            .into_iter()
            .find(|op| op.name() == name && op.parameter().is_none())
            .map(|op| unary(op, *x)),
        _ => None,
    }
}

/// Splits a product into its numeric coefficient and the rest (`None` when
/// nothing but numbers is left).
fn split_coefficient(factors: Vec<Expr>) -> (f64, Option<Expr>) {
    let mut coefficient = 1.0;
    let mut rest: Vec<Expr> = Vec::with_capacity(factors.len());
    for f in factors {
        match f {
            Expr::Num(v) => coefficient *= v,
            other => rest.push(other),
        }
    }
    let rest = match rest.len() {
        0 => None,
        1 => rest.pop(),
        _ => Some(Expr::Mul(rest)),
    };
    (coefficient, rest)
}

/// `c * rest` for a canonical `rest` without a coefficient.
fn scale(c: f64, rest: Expr) -> Expr {
    if c == 1.0 {
        return rest;
    }
    match rest {
        Expr::Mul(mut factors) => {
            factors.insert(0, Expr::Num(c));
            Expr::Mul(factors)
        }
        other => Expr::Mul(vec![Expr::Num(c), other]),
    }
}

fn mul_rounds(factors: Vec<Expr>, round: usize) -> Expr {
    let mut coefficient = 1.0;
    let mut powers: Vec<(Expr, Expr)> = Vec::with_capacity(factors.len());
    let mut stack = factors;
    while let Some(f) = stack.pop() {
        match f {
            Expr::Num(v) => coefficient *= v,
            Expr::Mul(inner) => stack.extend(inner),
            Expr::Pow(b, e) => powers.push((*b, *e)),
            other => powers.push((other, Expr::Num(1.0))),
        }
    }
    // Readability over IEEE: 0 * anything is 0 here.
    if coefficient == 0.0 {
        return Expr::Num(0.0);
    }
    powers.sort_by(|a, b| cmp_atom(&a.0, &b.0));
    let mut merged: Vec<(Expr, Vec<Expr>)> = Vec::with_capacity(powers.len());
    for (base, exponent) in powers {
        match merged.last_mut() {
            Some(last) if cmp_atom(&last.0, &base) == Ordering::Equal => last.1.push(exponent),
            _ => merged.push((base, vec![exponent])),
        }
    }
    let mut out: Vec<Expr> = Vec::with_capacity(merged.len() + 1);
    let mut again = false;
    for (base, exponents) in merged {
        let exponent = match exponents.len() {
            1 => exponents.into_iter().next().unwrap_or(Expr::Num(1.0)),
            _ => Expr::add(exponents),
        };
        match Expr::pow(base, exponent) {
            Expr::Num(v) => coefficient *= v,
            f @ Expr::Mul(_) => {
                again = true;
                out.push(f);
            }
            f => out.push(f),
        }
    }
    if again && round < MAX_PRODUCT_ROUNDS {
        out.push(Expr::Num(coefficient));
        return mul_rounds(out, round + 1);
    }
    if coefficient == 0.0 {
        return Expr::Num(0.0);
    }
    out.sort_by(cmp_factor);
    if coefficient != 1.0 {
        out.insert(0, Expr::Num(coefficient));
    }
    match out.len() {
        0 => Expr::Num(coefficient),
        1 => out.pop().unwrap_or(Expr::Num(coefficient)),
        _ => Expr::Mul(out),
    }
}

/// The canonical order: a product compares as the list of its factors and
/// anything else as a one-factor list, each factor by its base and then its
/// exponent. So like terms sit next to each other, `x` < `x^2` < `y`, and
/// numbers come first.
fn cmp_expr(a: &Expr, b: &Expr) -> Ordering {
    fn factors(e: &Expr) -> (&[Expr], bool) {
        match e {
            Expr::Mul(fs) => (fs, true),
            other => (std::slice::from_ref(other), false),
        }
    }
    let (fa, ma) = factors(a);
    let (fb, mb) = factors(b);
    cmp_list(fa, fb, cmp_factor).then(ma.cmp(&mb))
}

fn cmp_list(a: &[Expr], b: &[Expr], cmp: fn(&Expr, &Expr) -> Ordering) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| cmp(x, y))
        .find(|o| *o != Ordering::Equal)
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

fn cmp_factor(a: &Expr, b: &Expr) -> Ordering {
    fn split(e: &Expr) -> (&Expr, Option<&Expr>) {
        match e {
            Expr::Pow(b, e) => (b, Some(e)),
            other => (other, None),
        }
    }
    let (ba, ea) = split(a);
    let (bb, eb) = split(b);
    cmp_atom(ba, bb).then_with(|| match (ea, eb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp_expr(x, y),
    })
}

fn rank(e: &Expr) -> u8 {
    match e {
        Expr::Num(_) => 0,
        Expr::Named(..) => 1,
        Expr::Var(_) => 2,
        Expr::Call(..) => 3,
        Expr::Bracket(..) => 4,
        Expr::Add(_) => 5,
        Expr::Mul(_) => 6,
        Expr::Pow(..) => 7,
    }
}

fn cmp_atom(a: &Expr, b: &Expr) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Expr::Num(x), Expr::Num(y)) => x.total_cmp(y),
        (Expr::Named(x, _), Expr::Named(y, _)) => x.cmp(y),
        (Expr::Var(x), Expr::Var(y)) => x.cmp(y),
        (Expr::Call(n, xs), Expr::Call(m, ys)) => n.cmp(m).then_with(|| cmp_list(xs, ys, cmp_expr)),
        (Expr::Bracket(r, a1, a2), Expr::Bracket(s, b1, b2)) => r
            .cmp(s)
            .then_with(|| cmp_expr(a1, b1))
            .then_with(|| cmp_expr(a2, b2)),
        (Expr::Add(xs), Expr::Add(ys)) => cmp_list(xs, ys, cmp_expr),
        (Expr::Mul(_), Expr::Mul(_)) => cmp_expr(a, b),
        (Expr::Pow(..), Expr::Pow(..)) => cmp_factor(a, b),
        _ => Ordering::Equal,
    })
}

/// Binding strength of printed text, weakest first; a context that needs
/// more wraps the text in parentheses.
const SUM: u8 = 1;
const NEGATED: u8 = 2;
const PRODUCT: u8 = 3;
const POWER: u8 = 4;
const ATOM: u8 = 5;

/// Integers without `.0`; anything else to f32 precision, the precision the
/// graph's constants and the GPU have, so that `0.5 - 0.1` reads `0.4`.
fn number(v: f64) -> String {
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e15 {
        format!("{}", v as i64)
    } else if a != 0.0 && a.is_finite() && !(1e-5..1e15).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{}", v as f32)
    }
}

fn wrap((text, strength): (String, u8), needed: u8) -> String {
    if strength < needed {
        format!("({text})")
    } else {
        text
    }
}

/// Recognises simple fractions so that 0.5 prints as a division by 2.
fn fraction(c: f64) -> (f64, f64) {
    (1..=16u32)
        .map(f64::from)
        .find(|q| (c * q).fract() == 0.0 && c * q < 1e15)
        .map_or((c, 1.0), |q| (c * q, q))
}

fn render(e: &Expr) -> (String, u8) {
    match e {
        Expr::Num(v) => (number(*v), if *v < 0.0 { NEGATED } else { ATOM }),
        Expr::Named(name, _) => (name.to_string(), ATOM),
        Expr::Var(name) => (name.clone(), ATOM),
        Expr::Call(name, args) => {
            let args: Vec<String> = args.iter().map(|a| render(a).0).collect();
            (format!("{name}({})", args.join(", ")), ATOM)
        }
        Expr::Bracket(rel, a, b) => (
            format!("[{} {} {}]", render(a).0, rel.symbol(), render(b).0),
            ATOM,
        ),
        Expr::Add(terms) => render_sum(terms),
        Expr::Mul(factors) => render_product(factors),
        Expr::Pow(_, exponent) if matches!(**exponent, Expr::Num(n) if n < 0.0) => {
            render_product(std::slice::from_ref(e))
        }
        Expr::Pow(b, e) => {
            let exponent = match **e {
                Expr::Num(n) if n >= 0.0 => number(n),
                _ => wrap(render(e), ATOM),
            };
            (format!("{}^{exponent}", wrap(render(b), ATOM)), POWER)
        }
    }
}

fn render_sum(terms: &[Expr]) -> (String, u8) {
    let mut texts: Vec<String> = terms.iter().map(|t| render(t).0).collect();
    // `b - 1` reads better than `-1 + b`.
    if texts.first().is_some_and(|t| t.starts_with('-')) {
        if let Some(i) = texts.iter().position(|t| !t.starts_with('-')) {
            let positive = texts.remove(i);
            texts.insert(0, positive);
        }
    }
    let mut out = String::new();
    for (i, text) in texts.iter().enumerate() {
        match (i, text.strip_prefix('-')) {
            (0, _) => out.push_str(text),
            (_, Some(negated)) => {
                out.push_str(" - ");
                out.push_str(negated);
            }
            (_, None) => {
                out.push_str(" + ");
                out.push_str(text);
            }
        }
    }
    (out, SUM)
}

fn render_product(factors: &[Expr]) -> (String, u8) {
    let mut coefficient = 1.0;
    let mut numerator: Vec<String> = Vec::new();
    let mut denominator: Vec<String> = Vec::new();
    for f in factors {
        match f {
            Expr::Num(v) => coefficient *= v,
            Expr::Pow(b, e) => match **e {
                Expr::Num(n) if n < 0.0 => {
                    let shown = if n == -1.0 {
                        wrap(render(b), POWER)
                    } else {
                        format!("{}^{}", wrap(render(b), ATOM), number(-n))
                    };
                    denominator.push(shown);
                }
                _ => numerator.push(wrap(render(f), PRODUCT)),
            },
            other => numerator.push(wrap(render(other), PRODUCT)),
        }
    }
    let negative = coefficient < 0.0;
    let (p, q) = fraction(coefficient.abs());
    if p != 1.0 || numerator.is_empty() {
        numerator.insert(0, number(p));
    }
    if q != 1.0 {
        denominator.insert(0, number(q));
    }
    let single = numerator.len() == 1 && denominator.is_empty();
    let mut text = numerator.join("*");
    match denominator.len() {
        0 => {}
        1 => {
            text.push('/');
            text.push_str(&denominator.join(""));
        }
        _ => text.push_str(&format!("/({})", denominator.join("*"))),
    }
    match (negative, single) {
        (true, _) => (format!("-{text}"), NEGATED),
        // A lone factor keeps its own strength (it was wrapped to PRODUCT).
        (false, true) => {
            let strength = factors
                .iter()
                .find(|f| !matches!(f, Expr::Num(_)))
                .map_or(ATOM, |f| match render(f).1 {
                    s if s < PRODUCT => ATOM,
                    s => s,
                });
            (text, strength)
        }
        (false, false) => (text, PRODUCT),
    }
}

impl Expr {
    /// The text as one factor of a written-out product: parenthesized
    /// unless it is a name, a number, a call or a power.
    pub(crate) fn as_factor(&self) -> String {
        wrap(render(self), POWER)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(self).0)
    }
}

#[cfg(test)]
mod tests;
