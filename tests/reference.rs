//! The f64 reference itself, with no GPU: its derivatives against central
//! finite differences, its closed forms at known points and at the kinks,
//! and the parsing of operation names.

mod common;

use chainrule::{CpuBackend, Error, UnaryOp};
use common::{rng, uniform};

/// Where the operation is smooth: away from its kinks and inside its domain.
fn smooth_at(op: UnaryOp, x: f64) -> bool {
    match op {
        UnaryOp::Relu | UnaryOp::LeakyRelu { .. } | UnaryOp::Elu { .. } | UnaryOp::Abs => {
            x.abs() > 1e-3
        }
        UnaryOp::Ln | UnaryOp::Sqrt => x > 1e-3,
        UnaryOp::Reciprocal => x.abs() > 1e-2,
        // Near its poles tan's third derivative swamps a central difference.
        UnaryOp::Tan => x.cos().abs() > 0.1,
        UnaryOp::Pow { exponent } if exponent.fract() != 0.0 => x > 1e-3,
        UnaryOp::Pow { exponent } if exponent < 0.0 => x.abs() > 1e-2,
        // Inside each domain, away from the edge where the derivative is infinite.
        UnaryOp::Log1p => x > -0.99,
        UnaryOp::Acosh => x > 1.01,
        UnaryOp::Atanh => x.abs() < 0.99,
        UnaryOp::Xlogx => x > 1e-3,
        _ => true,
    }
}

fn central_difference(op: UnaryOp, x: f64) -> f64 {
    // A step relative to |x| keeps the truncation error relative too, for
    // powers near 0 as much as for exp far out.
    let h = 1e-5 * x.abs().max(1e-3);
    let f = |x: f64| op.value_and_derivative(x).0;
    (f(x + h) - f(x - h)) / (2.0 * h)
}

#[test]
fn derivatives_match_central_differences() {
    let mut rng = rng("finite differences");
    let xs = uniform(&mut rng, 20_000, -20.0, 20.0);
    let ops = UnaryOp::catalogue().into_iter().chain([
        UnaryOp::LeakyRelu { alpha: 0.2 },
        UnaryOp::Elu { alpha: 0.5 },
        UnaryOp::Pow { exponent: -2.0 },
        UnaryOp::Pow { exponent: 2.5 },
    ]);
    for op in ops {
        let mut worst = 0f64;
        for &x in &xs {
            let x = f64::from(x);
            if !smooth_at(op, x) {
                continue;
            }
            let derivative = op.value_and_derivative(x).1;
            let fd = central_difference(op, x);
            let error = (derivative - fd).abs() / (1e-3 + fd.abs());
            assert!(
                (derivative - fd).abs() <= 1e-8 + 1e-5 * fd.abs(),
                "{op} at x = {x:e}: derivative {derivative:e}, central difference {fd:e}"
            );
            worst = worst.max(error);
        }
        println!("{op:<18} worst relative gap to central differences {worst:.2e}");
    }
}

#[test]
fn closed_forms_at_known_points() {
    let cases: Vec<(UnaryOp, f64, f64, f64)> = vec![
        (UnaryOp::Sigmoid, 0.0, 0.5, 0.25),
        (UnaryOp::Tanh, 0.0, 0.0, 1.0),
        (UnaryOp::Softplus, 0.0, std::f64::consts::LN_2, 0.5),
        (UnaryOp::Silu, 0.0, 0.0, 0.5),
        (UnaryOp::Gelu, 0.0, 0.0, 0.5),
        (UnaryOp::Exp, 1.0, std::f64::consts::E, std::f64::consts::E),
        (
            UnaryOp::Ln,
            std::f64::consts::E,
            1.0,
            1.0 / std::f64::consts::E,
        ),
        (UnaryOp::Sqrt, 4.0, 2.0, 0.25),
        (UnaryOp::Reciprocal, 2.0, 0.5, -0.25),
        (UnaryOp::Pow { exponent: 3.0 }, -2.0, -8.0, 12.0),
        (UnaryOp::Pow { exponent: 2.0 }, -3.0, 9.0, -6.0),
        (UnaryOp::Square, -3.0, 9.0, -6.0),
        (UnaryOp::Sin, std::f64::consts::FRAC_PI_2, 1.0, 0.0),
        (UnaryOp::Cos, 0.0, 1.0, 0.0),
        // Kinks, as in JAX but for abs'(0) = 0 (JAX: 1), and at -0 alike.
        (UnaryOp::Relu, 0.0, 0.0, 0.0),
        (UnaryOp::Abs, 0.0, 0.0, 0.0),
        (UnaryOp::Abs, -0.0, 0.0, 0.0),
        (UnaryOp::LeakyRelu { alpha: 0.01 }, 0.0, 0.0, 1.0),
        (UnaryOp::Elu { alpha: 0.5 }, 0.0, 0.0, 0.5),
        // Saturation far out, where naive formulas overflow to NaN.
        (UnaryOp::Sigmoid, -1000.0, 0.0, 0.0),
        (UnaryOp::Tanh, 1000.0, 1.0, 0.0),
        (UnaryOp::Softplus, 1000.0, 1000.0, 1.0),
        (UnaryOp::Silu, -1000.0, 0.0, 0.0),
        (UnaryOp::Gelu, 1000.0, 1000.0, 1.0),
        // The special functions, against values of the C library's erf,
        // erfc, asinh, acosh, atanh and log1p.
        (UnaryOp::Log1p, -0.5, -std::f64::consts::LN_2, 2.0),
        (UnaryOp::Log1p, 0.0, 0.0, 1.0),
        (UnaryOp::Expm1, 0.0, 0.0, 1.0),
        (UnaryOp::Expm1, -1000.0, -1.0, 0.0),
        (UnaryOp::Atan, 1.0, std::f64::consts::FRAC_PI_4, 0.5),
        (UnaryOp::Atan, -1e300, -std::f64::consts::FRAC_PI_2, 0.0),
        (
            UnaryOp::Asinh,
            1e-3,
            0.000_999_999_833_333_408_3,
            1.0 / (1.0 + 1e-6f64).sqrt(),
        ),
        (
            UnaryOp::Asinh,
            1e10,
            23.718_998_110_500_4,
            1.0 / (1.0 + 1e20f64).sqrt(),
        ),
        (
            UnaryOp::Acosh,
            1.0 + 2f64.powi(-20),
            0.001_381_067_822_247_581_4,
            724.077_171_301_594_8,
        ),
        (UnaryOp::Atanh, 0.5, 0.549_306_144_334_054_8, 4.0 / 3.0),
        (
            UnaryOp::Erf,
            0.5,
            0.520_499_877_813_046_5,
            0.878_782_578_935_444_8,
        ),
        (
            UnaryOp::Erf,
            1.0,
            0.842_700_792_949_714_9,
            0.415_107_497_420_594_7,
        ),
        (
            UnaryOp::Erf,
            3.0,
            0.999_977_909_503_001_4,
            1.392_530_519_467_478_6e-4,
        ),
        (UnaryOp::GeluExact, 0.0, 0.0, 0.5),
        (
            UnaryOp::GeluExact,
            1.0,
            0.841_344_746_068_542_9,
            1.083_315_470_587_686_4,
        ),
        (
            UnaryOp::GeluExact,
            -3.0,
            -0.004_049_694_094_890_287,
            -0.011_945_647_204_183_927,
        ),
        (UnaryOp::Xlogx, 1.0, 0.0, 1.0),
        (
            UnaryOp::Xlogx,
            std::f64::consts::E,
            std::f64::consts::E,
            2.0,
        ),
    ];
    for (op, x, value, derivative) in cases {
        let (v, d) = op.value_and_derivative(x);
        assert!(
            (v - value).abs() <= 1e-12 * (1.0 + value.abs()),
            "{op}({x}) = {v}, expected {value}"
        );
        assert!(
            (d - derivative).abs() <= 1e-12 * (1.0 + derivative.abs()),
            "{op}'({x}) = {d}, expected {derivative}"
        );
    }
}

#[test]
fn domain_edges_give_the_ieee_answers() {
    let nan = |(v, d): (f64, f64)| v.is_nan() && d.is_nan();
    assert!(nan(UnaryOp::Ln.value_and_derivative(-1.0)));
    assert!(nan(UnaryOp::Sqrt.value_and_derivative(-1.0)));
    assert!(nan(
        UnaryOp::Pow { exponent: 0.5 }.value_and_derivative(-4.0)
    ));
    assert!(nan(UnaryOp::Sin.value_and_derivative(f64::INFINITY)));
    assert_eq!(
        UnaryOp::Ln.value_and_derivative(0.0),
        (f64::NEG_INFINITY, f64::INFINITY)
    );
    assert_eq!(
        UnaryOp::Sqrt.value_and_derivative(0.0),
        (0.0, f64::INFINITY)
    );
    assert_eq!(
        UnaryOp::Reciprocal.value_and_derivative(-0.0).0,
        f64::NEG_INFINITY
    );
    assert_eq!(
        UnaryOp::Exp.value_and_derivative(f64::NEG_INFINITY),
        (0.0, 0.0)
    );
    for op in UnaryOp::catalogue() {
        assert!(
            nan(op.value_and_derivative(f64::NAN)),
            "{op}: NaN in, NaN out"
        );
    }
}

#[test]
fn special_functions_take_their_limits_and_poles() {
    let nan = |(v, d): (f64, f64)| v.is_nan() && d.is_nan();
    let (inf, pi_2) = (f64::INFINITY, std::f64::consts::FRAC_PI_2);
    let exact = [
        (UnaryOp::Log1p, -1.0, (-inf, inf)),
        (UnaryOp::Log1p, inf, (inf, 0.0)),
        (UnaryOp::Expm1, -inf, (-1.0, 0.0)),
        (UnaryOp::Expm1, inf, (inf, inf)),
        (UnaryOp::Atan, inf, (pi_2, 0.0)),
        (UnaryOp::Atan, -inf, (-pi_2, 0.0)),
        (UnaryOp::Asinh, -inf, (-inf, 0.0)),
        (UnaryOp::Acosh, 1.0, (0.0, inf)),
        (UnaryOp::Acosh, inf, (inf, 0.0)),
        (UnaryOp::Atanh, 1.0, (inf, inf)),
        (UnaryOp::Atanh, -1.0, (-inf, inf)),
        (UnaryOp::Erf, inf, (1.0, 0.0)),
        (UnaryOp::Erf, -inf, (-1.0, 0.0)),
        (UnaryOp::GeluExact, inf, (inf, 1.0)),
        (UnaryOp::GeluExact, -inf, (0.0, 0.0)),
        (UnaryOp::Xlogx, 0.0, (0.0, -inf)),
        (UnaryOp::Xlogx, -0.0, (0.0, -inf)),
        (UnaryOp::Xlogx, inf, (inf, inf)),
    ];
    for (op, x, expected) in exact {
        assert_eq!(op.value_and_derivative(x), expected, "{op} at {x}");
    }
    for (op, x) in [
        (UnaryOp::Log1p, -1.5),
        (UnaryOp::Log1p, -inf),
        (UnaryOp::Acosh, 0.5),
        (UnaryOp::Acosh, -inf),
        (UnaryOp::Atanh, 1.5),
        (UnaryOp::Atanh, -inf),
        (UnaryOp::Xlogx, -1e-30),
    ] {
        assert!(
            nan(op.value_and_derivative(x)),
            "{op} at {x}: outside the domain"
        );
    }
    // Odd functions keep the sign of zero.
    for op in [UnaryOp::Atan, UnaryOp::Asinh, UnaryOp::Atanh, UnaryOp::Erf] {
        let (v, _) = op.value_and_derivative(-0.0);
        assert!(v == 0.0 && v.is_sign_negative(), "{op}(-0) = {v}");
    }
}

/// Rust has no f64 erf; the reference's own is checked against the C
/// library's erf and erfc (through gelu_exact's Phi in the far tail).
#[test]
fn the_reference_erf_matches_the_c_library() {
    let erf = [
        (1e-10, 1.128_379_167_095_512_6e-10),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (2.5, 0.999_593_047_982_555),
        (3.0, 0.999_977_909_503_001_4),
        (6.0, 1.0),
    ];
    for (x, want) in erf {
        for (x, want) in [(x, want), (-x, -want)] {
            let got = UnaryOp::Erf.value_and_derivative(x).0;
            assert!(
                (got - want).abs() <= 1e-14 * want.abs(),
                "erf({x}) = {got}, C gives {want}"
            );
        }
    }
    // gelu_exact(x) = x erfc(-x / sqrt 2) / 2: relative accuracy in the tail.
    let tail = [
        (-3.0, -0.004_049_694_094_890_287),
        (-10.0, -7.619_853_024_160_593e-23),
    ];
    for (x, want) in tail {
        let got = UnaryOp::GeluExact.value_and_derivative(x).0;
        assert!(
            (got - want).abs() <= 1e-12 * want.abs(),
            "gelu_exact({x}) = {got}, C gives {want}"
        );
    }
}

#[test]
fn the_cpu_backend_rounds_the_reference_once() {
    let mut rng = rng("cpu backend");
    let xs = uniform(&mut rng, 100_000, -20.0, 20.0);
    for op in UnaryOp::catalogue() {
        let out = CpuBackend.unary(op, &xs).expect("cpu unary");
        for (i, &x) in xs.iter().enumerate() {
            let (v, d) = op.value_and_derivative(f64::from(x));
            assert_eq!(
                out.values[i].to_bits(),
                (v as f32).to_bits(),
                "{op} value at {x}"
            );
            assert_eq!(
                out.derivatives[i].to_bits(),
                (d as f32).to_bits(),
                "{op}' at {x}"
            );
        }
    }
    let empty = CpuBackend.unary(UnaryOp::Exp, &[]).expect("empty");
    assert!(empty.values.is_empty() && empty.derivatives.is_empty());
}

#[test]
fn operation_names_parse_and_bad_ones_say_why() {
    assert_eq!("sigmoid".parse::<UnaryOp>().ok(), Some(UnaryOp::Sigmoid));
    assert_eq!(
        " leaky_relu( 0.2 ) ".parse::<UnaryOp>().ok(),
        Some(UnaryOp::LeakyRelu { alpha: 0.2 })
    );
    assert_eq!(
        "leaky_relu".parse::<UnaryOp>().ok(),
        Some(UnaryOp::LeakyRelu { alpha: 0.01 })
    );
    assert_eq!(
        "elu".parse::<UnaryOp>().ok(),
        Some(UnaryOp::Elu { alpha: 1.0 })
    );
    assert_eq!(
        "pow(3)".parse::<UnaryOp>().ok(),
        Some(UnaryOp::Pow { exponent: 3.0 })
    );
    for op in UnaryOp::catalogue() {
        assert_eq!(
            op.to_string().parse::<UnaryOp>().ok(),
            Some(op),
            "{op} round-trips"
        );
    }
    let message = |text: &str| match text.parse::<UnaryOp>() {
        Err(Error::InvalidArgument(message)) => message,
        other => panic!("{text}: expected an error, got {other:?}"),
    };
    assert!(message("sigmod").contains("known: identity"));
    assert!(message("pow").contains("exponent"));
    assert!(message("relu(2)").contains("takes no parameter"));
    assert!(message("pow(x)").contains("not a number"));
    assert!(message("pow(3").contains("parenthesis"));
    assert!(message("leaky_relu(nan)").contains("finite"));
    assert!(message("elu(inf)").contains("finite"));
}
