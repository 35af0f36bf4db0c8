//! The Rust builder makes the same program as the text, and reports shape
//! errors and bad names as values.

use chainrule::program::{Handle, Program, ProgramBuilder};
use chainrule::{Backend, CpuBackend, Error, Reduction};

fn w2_by_builder() -> Program {
    let mut b = ProgramBuilder::new();
    let x = b.input("x", &[64]).expect("x");
    let w1 = b.param("W1", &[128, 64]).expect("W1");
    let b1 = b.param("b1", &[128]).expect("b1");
    let w2 = b.param("W2", &[32, 128]).expect("W2");
    let b2 = b.param("b2", &[32]).expect("b2");
    let h = b.name("h", &(w1.matvec(&x) + &b1).sigmoid()).expect("h");
    let y = (w2.matvec(&h) + b2).tanh();
    b.build("y", &y).expect("builds")
}

#[test]
fn the_w2_network_built_both_ways_is_one_program() {
    let text = Program::parse(
        "input x[64]\nparam W1[128,64] b1[128] W2[32,128] b2[32]\nh = sigmoid(W1 @ x + b1)\ny = tanh(W2 @ h + b2)\noutput y",
    )
    .expect("parses");
    assert_eq!(w2_by_builder(), text);
}

#[test]
fn operators_and_scalars_on_either_side_match_the_text() {
    let mut b = ProgramBuilder::new();
    let x = b.input("x", &[]).expect("x");
    let y = b.input("y", &[]).expect("y");
    let f: Handle = 3.0 * &x * &x * &y - (x.clone() / 2.0).exp() + (1.0 - &y).powf(2.5)
        - (-&x).sin().ln().square()
        + x.max(&y) / (0.5 + y.abs())
        + x.atan2(&y) * y.erf().log1p()
        + x.xlogy(&(2.0 + &y))
        + x.gt(&y).select(&x.sqrt(), &(&y * 2.0));
    let built = b.build("f", &f).expect("builds");
    let text = Program::parse(
        "input x\ninput y\nf = 3*x*x*y - exp(x / 2) + (1 - y)^2.5 - ln(sin(-x))^2 + max(x, y) / (0.5 + abs(y)) + atan2(x, y) * log1p(erf(y)) + xlogy(x, 2 + y) + where(x > y, sqrt(x), y * 2)\noutput f",
    )
    .expect("parses");
    // The same function: equal values and gradients at a point.
    let point: [&[f32]; 2] = [&[-0.7], &[-0.4]];
    let vars = |p: &Program| -> Vec<(String, Vec<f32>)> {
        p.variables
            .iter()
            .zip(point)
            .map(|(v, x)| (v.name.clone(), x.to_vec()))
            .collect()
    };
    for p in [&built, &text] {
        assert_eq!(p.variables.len(), 2);
    }
    let grad = |p: &Program| {
        let owned = vars(p);
        let bound: Vec<(&str, &[f32])> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        Backend::Cpu(CpuBackend)
            .gradient(p, &["x", "y"], &bound, Reduction::PerSample)
            .expect("gradient")
    };
    let (a, c) = (grad(&built), grad(&text));
    assert!(a.values[0].is_finite(), "a point inside the domain");
    assert_eq!(a.values, c.values);
    for (g, h) in a.gradients.iter().zip(&c.gradients) {
        assert_eq!(g.values, h.values, "{}", g.name);
    }
}

#[test]
fn shape_errors_and_bad_names_are_values() {
    let mut b = ProgramBuilder::new();
    let x = b.input("x", &[3]).expect("x");
    let w = b.param("W", &[2, 4]).expect("W");
    let bad = w.matvec(&x);
    match b.build("y", &bad) {
        Err(Error::Parse(message)) => {
            let text = message.to_string();
            assert!(text.contains("W @ x"), "names the statement: {text}");
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert!(
        matches!(b.input("x", &[3]), Err(Error::InvalidArgument(_))),
        "a name twice"
    );
    assert!(
        matches!(b.input("2x", &[3]), Err(Error::InvalidArgument(_))),
        "not a name"
    );
    assert!(
        matches!(b.param("T", &[2, 2, 2]), Err(Error::Shape(_))),
        "three dimensions"
    );
    let unknown = x.apply("no_such_function").sum();
    assert!(matches!(b.build("y", &unknown), Err(Error::Parse(_))));
}
