//! GradBench's `lse`: log(sum(exp(x))) of one long vector and its gradient,
//! softmax(x). The program is `logsumexp` of an input of the vector's
//! length, one sample; the library computes it from x - max(x), so it is
//! stable at any magnitude.

use chainrule::Backend;
use chainrule::program::Program;
use serde_json::Value;

use super::{Prepared, field, primal_or_gradient, unknown_function};

const FUNCTIONS: &[&str] = &["primal", "gradient"];

/// The program for a vector of `n` elements.
pub(crate) fn program_text(n: usize) -> String {
    format!("input x[{n}]\ny = logsumexp(x)\noutput y\n")
}

pub(crate) fn prepare<'a>(
    backend: &'a Backend,
    function: &str,
    input: &Value,
) -> Result<Prepared<'a>, String> {
    let want_gradient = match function {
        "primal" => false,
        "gradient" => true,
        _ => return Err(unknown_function("lse", function, FUNCTIONS)),
    };
    let x: Vec<f64> = field(input, "x")?;
    if x.is_empty() {
        return Err("lse needs at least one element in \"x\"".into());
    }
    let program = Program::parse(&program_text(x.len())).map_err(|e| e.to_string())?;
    let x: Vec<f32> = x.into_iter().map(|v| v as f32).collect();
    Ok(Box::new(move || {
        primal_or_gradient(backend, &program, &[("x", &x)], want_gradient)
    }))
}
