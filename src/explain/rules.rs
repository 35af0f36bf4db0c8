//! The mathematics `explain` writes out: each node's definition in terms
//! of its operands, and each local derivative as a symbolic expression,
//! following the conventions of `ops` at kinks (JAX's, but abs'(0) = 0).

use super::symbolic::{Expr, Rel};
use crate::graph::NodeId;
use crate::lang::{self, BinOp, ExprKind};
use crate::ops::{BinaryOp, UnaryOp};
use crate::program::Op;

/// Step 1's definition of an operation node, as written (not simplified).
pub(super) fn definition(node: Op, operand: &dyn Fn(NodeId) -> Option<Expr>) -> Option<Expr> {
    Some(match node {
        Op::Unary(op, a) => {
            let a = operand(a)?;
            match op {
                UnaryOp::Pow { exponent } => {
                    Expr::Pow(Box::new(a), Box::new(Expr::Num(f64::from(exponent))))
                }
                UnaryOp::LeakyRelu { alpha } | UnaryOp::Elu { alpha } => {
                    Expr::Call(op.name(), vec![a, Expr::Num(f64::from(alpha))])
                }
                _ => Expr::Call(op.name(), vec![a]),
            }
        }
        Op::Binary(op, a, b) => {
            let (a, b) = (operand(a)?, operand(b)?);
            let minus_one = || Box::new(Expr::Num(-1.0));
            match op {
                BinaryOp::Add => Expr::Add(vec![a, b]),
                BinaryOp::Sub => Expr::Add(vec![a, Expr::Mul(vec![*minus_one(), b])]),
                BinaryOp::Mul | BinaryOp::StrongMul | BinaryOp::ChainMul => Expr::Mul(vec![a, b]),
                BinaryOp::Div => Expr::Mul(vec![a, Expr::Pow(Box::new(b), minus_one())]),
                BinaryOp::Pow => Expr::Pow(Box::new(a), Box::new(b)),
                BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                    Expr::Bracket(relation(op), Box::new(a), Box::new(b))
                }
                // Every other operation is written as its call.
                _ => Expr::Call(op.name(), vec![a, b]),
            }
        }
        // Variables and constants have no definition; a graph has no other node.
        _ => return None,
    })
}

/// An operation's value from its operands' values, simplified.
pub(super) fn unary_value(op: UnaryOp, a: Expr) -> Expr {
    match op {
        UnaryOp::Identity => a,
        UnaryOp::Square => Expr::pow(a, Expr::Num(2.0)),
        UnaryOp::Reciprocal => Expr::recip(a),
        UnaryOp::Pow { exponent } => Expr::pow(a, Expr::Num(f64::from(exponent))),
        UnaryOp::LeakyRelu { alpha } | UnaryOp::Elu { alpha } => {
            Expr::call(op.name(), vec![a, Expr::Num(f64::from(alpha))])
        }
        _ => Expr::call(op.name(), vec![a]),
    }
}

pub(super) fn binary_value(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    match op {
        BinaryOp::Add => Expr::add(vec![a, b]),
        BinaryOp::Sub => Expr::sub(a, b),
        BinaryOp::Mul | BinaryOp::StrongMul | BinaryOp::ChainMul => Expr::mul(vec![a, b]),
        BinaryOp::Div => Expr::mul(vec![a, Expr::recip(b)]),
        BinaryOp::Pow => Expr::pow(a, b),
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            Expr::bracket(relation(op), a, b)
        }
        _ => Expr::call(op.name(), vec![a, b]),
    }
}

/// The Iverson bracket's relation for a comparison (`Equal` for the others,
/// which do not ask).
fn relation(op: BinaryOp) -> Rel {
    match op {
        BinaryOp::Lt => Rel::Less,
        BinaryOp::Le => Rel::AtMost,
        BinaryOp::Gt => Rel::Greater,
        BinaryOp::Ge => Rel::AtLeast,
        _ => Rel::Equal,
    }
}

/// The derivative of a unary operation at `a`: in the form the paper and
/// `UnaryOp::derivative_formula` give it where that differs from the op
/// table's derivative expression, else the table's expression itself, so
/// that a new operation needs no rule here.
pub(super) fn unary_partial(op: UnaryOp, a: &Expr) -> Expr {
    let zero = || Expr::Num(0.0);
    let call = |name: &'static str, x: &Expr| Expr::call(name, vec![x.clone()]);
    let one_minus = |e: Expr| Expr::sub(Expr::Num(1.0), e);
    match op {
        UnaryOp::Relu => Expr::bracket(Rel::Greater, a.clone(), zero()),
        UnaryOp::LeakyRelu { alpha } => Expr::add(vec![
            Expr::bracket(Rel::AtLeast, a.clone(), zero()),
            Expr::mul(vec![
                Expr::Num(f64::from(alpha)),
                Expr::bracket(Rel::Less, a.clone(), zero()),
            ]),
        ]),
        UnaryOp::Elu { alpha } => Expr::add(vec![
            Expr::bracket(Rel::Greater, a.clone(), zero()),
            Expr::mul(vec![
                Expr::Num(f64::from(alpha)),
                call("exp", a),
                Expr::bracket(Rel::AtMost, a.clone(), zero()),
            ]),
        ]),
        UnaryOp::Sigmoid => {
            let s = call("sigmoid", a);
            Expr::mul(vec![s.clone(), one_minus(s)])
        }
        UnaryOp::Tanh => one_minus(Expr::pow(call("tanh", a), Expr::Num(2.0))),
        UnaryOp::Silu => {
            let s = call("sigmoid", a);
            let inner = Expr::add(vec![
                Expr::Num(1.0),
                Expr::mul(vec![a.clone(), one_minus(s.clone())]),
            ]);
            Expr::mul(vec![s, inner])
        }
        UnaryOp::Gelu => gelu_partial(a),
        UnaryOp::Ln => Expr::recip(a.clone()),
        UnaryOp::Tan => Expr::pow(call("cos", a), Expr::Num(-2.0)),
        UnaryOp::Sqrt => Expr::recip(Expr::mul(vec![Expr::Num(2.0), call("sqrt", a)])),
        UnaryOp::Abs => call("sign", a),
        UnaryOp::Reciprocal => Expr::neg(Expr::pow(a.clone(), Expr::Num(-2.0))),
        UnaryOp::Pow { exponent } => {
            let p = f64::from(exponent);
            Expr::mul(vec![Expr::Num(p), Expr::pow(a.clone(), Expr::Num(p - 1.0))])
        }
        UnaryOp::Log1p => Expr::recip(Expr::add(vec![Expr::Num(1.0), a.clone()])),
        UnaryOp::Asinh => Expr::pow(Expr::add(vec![Expr::Num(1.0), square(a)]), Expr::Num(-0.5)),
        UnaryOp::Acosh => Expr::pow(Expr::sub(square(a), Expr::Num(1.0)), Expr::Num(-0.5)),
        UnaryOp::Atanh => Expr::recip(one_minus(square(a))),
        UnaryOp::Erf => Expr::mul(vec![
            Expr::Named("2/sqrt(pi)", std::f64::consts::FRAC_2_SQRT_PI),
            Expr::call("exp", vec![Expr::neg(square(a))]),
        ]),
        UnaryOp::GeluExact => gelu_exact_partial(a),
        _ => table_partial(op, a),
    }
}

/// The op table's derivative expression of `op` with `x` standing for
/// `a` and the parameter for `alpha` and `p`.
fn table_partial(op: UnaryOp, a: &Expr) -> Expr {
    let parameter = f64::from(op.parameter().unwrap_or(0.0));
    lang::parse_expression(op.derivative_expression())
        .ok()
        .and_then(|ast| formula(&ast, &[("x", a)], parameter))
        .unwrap_or_else(|| Expr::call("derivative_unavailable", vec![a.clone()]))
}

/// An expression of the language as a formula, its names bound by
/// `bindings` (`alpha` and `p` to `parameter`); `None` for what formulas do
/// not write (vectors, unknown names).
fn formula(e: &lang::Expr, bindings: &[(&str, &Expr)], parameter: f64) -> Option<Expr> {
    let go = |e: &lang::Expr| formula(e, bindings, parameter);
    Some(match &e.kind {
        ExprKind::Number(v) => Expr::Num(*v),
        ExprKind::Name(name) => match name.as_str() {
            "alpha" | "p" => Expr::Num(parameter),
            "pi" => Expr::Named("pi", std::f64::consts::PI),
            name => bindings
                .iter()
                .find(|(bound, _)| *bound == name)
                .map(|(_, e)| (*e).clone())?,
        },
        ExprKind::Neg(inner) => Expr::neg(go(inner)?),
        ExprKind::Binary { op, lhs, rhs } => {
            let (l, r) = (go(lhs)?, go(rhs)?);
            match op {
                BinOp::Add => Expr::add(vec![l, r]),
                BinOp::Sub => Expr::sub(l, r),
                BinOp::Mul => Expr::mul(vec![l, r]),
                BinOp::Div => Expr::mul(vec![l, Expr::recip(r)]),
                BinOp::Pow => Expr::pow(l, r),
                BinOp::Lt => Expr::bracket(Rel::Less, l, r),
                BinOp::Le => Expr::bracket(Rel::AtMost, l, r),
                BinOp::Gt => Expr::bracket(Rel::Greater, l, r),
                BinOp::Ge => Expr::bracket(Rel::AtLeast, l, r),
                BinOp::MatMul => return None,
            }
        }
        ExprKind::Call { name, args, .. } => {
            let args = args.iter().map(go).collect::<Option<Vec<Expr>>>()?;
            match (name.as_str(), args.as_slice()) {
                ("strong_mul", _) => Expr::mul(args),
                ("where", [_, _, _]) => Expr::call("where", args),
                (name, _) => {
                    let unary = UnaryOp::catalogue()
                        .into_iter()
                        .find(|op| op.name() == name);
                    let known = unary
                        .map(|op| op.name())
                        .or_else(|| BinaryOp::from_call(name).map(BinaryOp::name))?;
                    Expr::call(known, args)
                }
            }
        }
        ExprKind::Index { .. } | ExprKind::List(_) => return None,
    })
}

fn square(a: &Expr) -> Expr {
    Expr::pow(a.clone(), Expr::Num(2.0))
}

/// gelu's exact form is x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2: its
/// derivative is Phi(x) + x e^(-x^2/2) / sqrt(2 pi).
fn gelu_exact_partial(a: &Expr) -> Expr {
    let root_half = Expr::Named("1/sqrt(2)", std::f64::consts::FRAC_1_SQRT_2);
    let phi_big = Expr::mul(vec![
        Expr::Num(0.5),
        Expr::add(vec![
            Expr::Num(1.0),
            Expr::call("erf", vec![Expr::mul(vec![root_half, a.clone()])]),
        ]),
    ]);
    let density = Expr::mul(vec![
        Expr::Named("1/sqrt(2 pi)", 1.0 / (2.0 * std::f64::consts::PI).sqrt()),
        a.clone(),
        Expr::call("exp", vec![Expr::mul(vec![Expr::Num(-0.5), square(a)])]),
    ]);
    Expr::add(vec![phi_big, density])
}

/// gelu's tanh form is x s with s = sigmoid(2k (x + c x^3)), k = sqrt(2/pi):
/// its derivative is s + 2 x s (1 - s) k (1 + 3c x^2), as `ops` computes it.
pub(super) fn gelu_partial(a: &Expr) -> Expr {
    let k = Expr::Named("sqrt(2/pi)", (2.0 / std::f64::consts::PI).sqrt());
    let c = Expr::Num(0.044_715);
    let z = Expr::mul(vec![
        Expr::Num(2.0),
        k.clone(),
        Expr::add(vec![
            a.clone(),
            Expr::mul(vec![c.clone(), Expr::pow(a.clone(), Expr::Num(3.0))]),
        ]),
    ]);
    let s = Expr::call("sigmoid", vec![z]);
    let slope = Expr::add(vec![
        Expr::Num(1.0),
        Expr::mul(vec![
            Expr::Num(3.0),
            c,
            Expr::pow(a.clone(), Expr::Num(2.0)),
        ]),
    ]);
    Expr::add(vec![
        s.clone(),
        Expr::mul(vec![
            Expr::Num(2.0),
            a.clone(),
            s.clone(),
            Expr::sub(Expr::Num(1.0), s),
            k,
            slope,
        ]),
    ])
}

/// Both partials of a binary operation at (a, b).
pub(super) fn binary_partials(op: BinaryOp, a: &Expr, b: &Expr) -> (Expr, Expr) {
    let one = || Expr::Num(1.0);
    let zero = || Expr::Num(0.0);
    // A tie gives half to each side, as in `ops` and JAX.
    let wins = |rel: Rel| {
        Expr::add(vec![
            Expr::bracket(rel, a.clone(), b.clone()),
            Expr::mul(vec![
                Expr::Num(0.5),
                Expr::bracket(Rel::Equal, a.clone(), b.clone()),
            ]),
        ])
    };
    match op {
        BinaryOp::Add => (one(), one()),
        BinaryOp::Sub => (one(), Expr::Num(-1.0)),
        BinaryOp::Mul | BinaryOp::StrongMul | BinaryOp::ChainMul => (b.clone(), a.clone()),
        BinaryOp::Div => (
            Expr::recip(b.clone()),
            Expr::neg(Expr::mul(vec![
                a.clone(),
                Expr::pow(b.clone(), Expr::Num(-2.0)),
            ])),
        ),
        BinaryOp::Pow => (
            Expr::mul(vec![
                b.clone(),
                Expr::pow(a.clone(), Expr::sub(b.clone(), one())),
            ]),
            Expr::mul(vec![
                Expr::pow(a.clone(), b.clone()),
                Expr::call("ln", vec![a.clone()]),
            ]),
        ),
        BinaryOp::Max => (wins(Rel::Greater), wins(Rel::Less)),
        BinaryOp::Min => (wins(Rel::Less), wins(Rel::Greater)),
        // atan2(y, x): x / (x^2 + y^2) and -y / (x^2 + y^2), 0 at the origin
        // (see `ops`).
        BinaryOp::Atan2 => {
            let r2 = || Expr::recip(Expr::add(vec![square(a), square(b)]));
            (
                Expr::mul(vec![b.clone(), r2()]),
                Expr::neg(Expr::mul(vec![a.clone(), r2()])),
            )
        }
        // xlogy(x, y): ln y and x / y; `ops` takes the second as 0 where x = 0.
        BinaryOp::Xlogy => (
            Expr::call("ln", vec![b.clone()]),
            Expr::mul(vec![a.clone(), Expr::recip(b.clone())]),
        ),
        // where's halves: 1 for the selected operand, 0 for the condition.
        BinaryOp::WhereA => (
            zero(),
            Expr::sub(one(), Expr::bracket(Rel::Equal, a.clone(), zero())),
        ),
        BinaryOp::WhereB => (zero(), Expr::bracket(Rel::Equal, a.clone(), zero())),
        // The op table's expressions (a comparison's are 0: it is flat
        // wherever it is defined, and the jump is not differentiated, as JAX).
        _ => {
            let partial = |slot: usize| {
                lang::parse_expression(op.partial_expressions()[slot])
                    .ok()
                    .and_then(|ast| formula(&ast, &[("x", a), ("y", b)], 0.0))
                    .unwrap_or_else(|| {
                        Expr::call("derivative_unavailable", vec![a.clone(), b.clone()])
                    })
            };
            (partial(0), partial(1))
        }
    }
}
