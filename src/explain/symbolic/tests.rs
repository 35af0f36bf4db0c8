//! Unit tests of the parent module.

use super::*;
use rand::Rng;
use rand::rngs::StdRng;

fn x() -> Expr {
    Expr::var("x")
}

fn n(v: f64) -> Expr {
    Expr::Num(v)
}

fn sin(e: Expr) -> Expr {
    Expr::call("sin", vec![e])
}

#[test]
fn prints_like_math() {
    let u = Expr::pow(x(), n(3.0));
    let d = Expr::mul(vec![
        n(6.0),
        Expr::pow(x(), n(2.0)),
        Expr::call("cos", vec![u.clone()]),
        Expr::recip(sin(u)),
    ]);
    assert_eq!(d.to_string(), "6*x^2*cos(x^3)/sin(x^3)");
    assert_eq!(Expr::neg(x()).to_string(), "-x");
    assert_eq!(Expr::sub(x(), n(1.0)).to_string(), "x - 1");
    assert_eq!(Expr::sub(n(1.0), x()).to_string(), "1 - x");
    assert_eq!(Expr::mul(vec![n(0.5), x()]).to_string(), "x/2");
    assert_eq!(n(3.0).to_string(), "3");
    assert_eq!(n(f64::from(0.1f32)).to_string(), "0.1");
    let root = Expr::recip(Expr::mul(vec![n(2.0), Expr::call("sqrt", vec![x()])]));
    assert_eq!(root.to_string(), "1/(2*sqrt(x))");
    let raw = Expr::Mul(vec![
        x(),
        Expr::Pow(Box::new(Expr::Add(vec![x(), n(1.0)])), Box::new(n(-2.0))),
    ]);
    assert_eq!(raw.to_string(), "x/(x + 1)^2");
    let power = Expr::pow(x(), Expr::sub(Expr::var("b"), n(1.0)));
    assert_eq!(power.to_string(), "x^(b - 1)");
    assert_eq!(Expr::pow(n(-2.0), x()).to_string(), "(-2)^x");
    assert_eq!(
        Expr::neg(Expr::add(vec![x(), n(1.0)])).to_string(),
        "-(1 + x)"
    );
}

#[test]
fn simplification_rules() {
    let cube = Expr::mul(vec![x(), Expr::pow(x(), n(2.0))]);
    assert_eq!(cube.to_string(), "x^3");
    let s = sin(x());
    let merged = Expr::mul(vec![Expr::pow(s.clone(), n(-2.0)), s.clone()]);
    assert_eq!(merged.to_string(), "1/sin(x)");
    assert_eq!(Expr::add(vec![x(), x()]).to_string(), "2*x");
    let five = Expr::add(vec![
        Expr::mul(vec![n(2.0), x()]),
        Expr::mul(vec![n(3.0), x()]),
    ]);
    assert_eq!(five.to_string(), "5*x");
    assert_eq!(Expr::pow(Expr::pow(x(), n(2.0)), n(3.0)).to_string(), "x^6");
    // (x^2)^0.5 is |x|: kept as it is.
    assert_eq!(
        Expr::pow(Expr::pow(x(), n(2.0)), n(0.5)).to_string(),
        "(x^2)^0.5"
    );
    assert_eq!(Expr::add(vec![x(), n(0.0)]), x());
    assert_eq!(Expr::mul(vec![x(), n(1.0)]), x());
    assert_eq!(Expr::mul(vec![x(), n(0.0)]), n(0.0));
    assert_eq!(Expr::add(vec![n(2.0), n(3.5)]), n(5.5));
    assert_eq!(Expr::sub(x(), x()), n(0.0));
    assert_eq!(Expr::call("exp", vec![n(0.0)]), n(1.0));
    let y = Expr::var("y");
    assert_eq!(
        Expr::mul(vec![x(), y.clone()]),
        Expr::mul(vec![y.clone(), x()])
    );
    assert_eq!(Expr::add(vec![x(), y.clone()]), Expr::add(vec![y, x()]));
    assert_eq!(Expr::bracket(Rel::Greater, x(), x()), n(0.0));
    assert_eq!(Expr::bracket(Rel::Equal, x(), x()), n(1.0));
}

fn random_expr(rng: &mut StdRng, depth: u32) -> Expr {
    let leaf = depth == 0 || rng.random_bool(0.25);
    if leaf {
        return match rng.random_range(0..4) {
            0 => n(f64::from(rng.random_range(-3i8..=3))),
            1 => n(0.5),
            2 => x(),
            _ => Expr::var("y"),
        };
    }
    let kind = rng.random_range(0..6);
    let power = n(f64::from(rng.random_range(-3i8..=3)));
    let mut sub = || random_expr(rng, depth - 1);
    match kind {
        0 => Expr::Add(vec![sub(), sub(), sub()]),
        1 => Expr::Mul(vec![sub(), sub()]),
        2 => Expr::Pow(Box::new(sub()), Box::new(power)),
        3 => Expr::Call("sin", vec![sub()]),
        4 => Expr::Mul(vec![n(-1.0), sub()]),
        _ => Expr::Bracket(Rel::Greater, Box::new(sub()), Box::new(sub())),
    }
}

/// Whether every subexpression is moderate: at a pole the sign of a zero
/// decides and `0*x` is 0 by choice, and sin of a huge argument turns
/// rounding into noise, so such points are not compared.
fn moderate_throughout(e: &Expr, vars: &dyn Fn(&str) -> Option<f64>) -> bool {
    let children: Vec<&Expr> = match e {
        Expr::Add(items) | Expr::Mul(items) | Expr::Call(_, items) => items.iter().collect(),
        Expr::Pow(a, b) | Expr::Bracket(_, a, b) => vec![a, b],
        _ => Vec::new(),
    };
    // A near-tie in a bracket flips on rounding, which the simplifier
    // may remove (x*y*y against x*y^2).
    let clear_bracket = match e {
        Expr::Bracket(_, a, b) => match (a.evaluate(vars), b.evaluate(vars)) {
            (Some(a), Some(b)) => (a - b).abs() > 1e-9 * a.abs().max(1.0),
            _ => false,
        },
        _ => true,
    };
    clear_bracket
        && e.evaluate(vars).is_some_and(|v| v.abs() < 1e4)
        && children.into_iter().all(|c| moderate_throughout(c, vars))
}

/// Simplifying never changes a value (away from removable points, which
/// random points miss) and always finishes.
#[test]
fn simplification_keeps_values() {
    let mut rng = crate::testing::rng("simplification keeps values");
    let mut compared = 0;
    for _ in 0..2000 {
        let raw = random_expr(&mut rng, 5);
        let simple = raw.simplify();
        let again = simple.simplify();
        // Distributing a power over a product is the only growth.
        assert!(simple.size() <= 2 * raw.size(), "{raw} grew to {simple}");
        for _ in 0..5 {
            let (px, py): (f64, f64) = (rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0));
            let vars = |name: &str| match name {
                "x" => Some(px),
                "y" => Some(py),
                _ => None,
            };
            let (Some(want), Some(got), Some(got2)) = (
                raw.evaluate(&vars),
                simple.evaluate(&vars),
                again.evaluate(&vars),
            ) else {
                panic!("{raw} does not evaluate");
            };
            if !moderate_throughout(&raw, &vars) {
                continue;
            }
            compared += 1;
            let tolerance = 1e-9 * want.abs().max(1.0);
            assert!(
                (got - want).abs() <= tolerance,
                "{raw} = {want}, but {simple} = {got} at ({px}, {py})"
            );
            assert!(
                (got2 - want).abs() <= tolerance,
                "{simple} = {got}, but {again} = {got2}"
            );
        }
    }
    assert!(compared > 2000, "only {compared} points compared");
}
