//! GradBench's `hello`: `square` is x * x and `double` its derivative, 2x,
//! both from one evaluation of the expression `x * x` (its value and its
//! derivative), the protocol's smoke test.

use chainrule::Backend;
use chainrule::graph::{Graph, InputOrder};
use chainrule::schedule::Fusion;
use serde_json::Value;

use super::{Output, Prepared, unknown_function};

const FUNCTIONS: &[&str] = &["square", "double"];

pub(crate) fn prepare<'a>(
    backend: &'a Backend,
    function: &str,
    input: &Value,
) -> Result<Prepared<'a>, String> {
    let derivative = match function {
        "square" => false,
        "double" => true,
        _ => return Err(unknown_function("hello", function, FUNCTIONS)),
    };
    let x = input
        .as_f64()
        .ok_or_else(|| format!("hello's input is a number, not {input}"))?;
    let graph = Graph::parse("x * x", InputOrder::FirstAppearance).map_err(|e| e.to_string())?;
    let column = [x as f32];
    Ok(Box::new(move || {
        let out = backend.evaluate(&graph, &[&column], Fusion::Fused)?;
        let picked = if derivative {
            out.derivatives[0]
        } else {
            out.values[0]
        };
        Ok(Output::Number(f64::from(picked)))
    }))
}
