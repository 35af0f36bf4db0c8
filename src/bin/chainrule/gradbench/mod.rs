//! `chainrule gradbench`: chainrule as a tool of the GradBench benchmark
//! suite. The eval sends one JSON message a line on stdin and reads one
//! response a line on stdout, with the same "id": `start`, `define` (does
//! chainrule implement this module?), `evaluate` (run a function of a module
//! at an input, timed) and `analysis` (whether the last output was judged
//! valid), which, like any other kind, is answered with its id alone.
//!
//! Every function is computed by the library: the module builds a program in
//! chainrule's text language for the input's sizes, and each timed run is
//! one library call on the chosen backend.

mod ba;
mod hello;
mod llsq;
mod lse;

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use chainrule::{Backend, Reduction};
use serde_json::{Value, json};

use crate::backend;

/// The modules this tool implements, as GradBench names them.
pub(crate) const MODULES: &[&str] = &["hello", "lse", "llsq", "ba"];

/// What one run of a function produces. It becomes JSON after the clock
/// stops, so that encoding is not timed.
pub(crate) enum Output {
    /// One number.
    Number(f64),
    /// A vector (a gradient).
    Numbers(Vec<f32>),
    /// A structured reply already cut to its few printed numbers (`ba`).
    Json(Value),
}

impl Output {
    fn into_json(self) -> Value {
        match self {
            Output::Number(x) => json!(x),
            Output::Numbers(xs) => {
                Value::Array(xs.into_iter().map(|x| json!(f64::from(x))).collect())
            }
            Output::Json(value) => value,
        }
    }
}

/// A function made ready at one input: the input decoded and the program and
/// its parameters built. Each call is one timed run.
pub(crate) type Prepared<'a> = Box<dyn FnMut() -> chainrule::Result<Output> + 'a>;

/// How many times to run: at least `min_runs` times and until the runs
/// together take `min_seconds` (GradBench's `Runs`; an input without them,
/// like hello's bare number, is run once).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Runs {
    min_runs: u64,
    min_seconds: f64,
}

impl Runs {
    fn of(input: &Value) -> Result<Runs, String> {
        let min_runs = match input.get("min_runs") {
            None => 1,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("min_runs must be a whole number, not {v}"))?,
        };
        let min_seconds = match input.get("min_seconds") {
            None => 0.0,
            Some(v) => v
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("min_seconds must be a number of seconds, not {v}"))?,
        };
        // An output needs one run even when none is asked for.
        Ok(Runs {
            min_runs: min_runs.max(1),
            min_seconds,
        })
    }
}

/// Reads `reader` to its end, answering each message on `writer`.
pub(crate) fn serve(
    cpu: bool,
    reader: impl BufRead,
    mut writer: impl Write,
) -> chainrule::Result<()> {
    let mut session = Session { cpu, backend: None };
    let mut reader = reader;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io_error)?;
        if read == 0 {
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let response = session.answer(&line);
        serde_json::to_writer(&mut writer, &response)
            .map_err(|e| io_error(std::io::Error::other(e)))?;
        writer.write_all(b"\n").map_err(io_error)?;
        writer.flush().map_err(io_error)?;
    }
}

fn io_error(error: std::io::Error) -> chainrule::Error {
    chainrule::Error::File {
        path: "standard input/output".into(),
        message: error.to_string(),
    }
}

struct Session {
    cpu: bool,
    /// Opened at `start` (or at the first message that needs it), so that
    /// the adapter's setup is not charged to the first evaluation. Where it
    /// cannot be opened, the error is every evaluation's answer.
    backend: Option<Result<Backend, String>>,
}

impl Session {
    fn backend(&mut self) -> Result<&Backend, String> {
        let cpu = self.cpu;
        self.backend
            .get_or_insert_with(|| backend(cpu).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The response to one line. A line that is not a JSON object with an
    /// id is answered with `"id": null` and the reason, since there is no id
    /// to answer.
    fn answer(&mut self, line: &[u8]) -> Value {
        let message: Value = match serde_json::from_slice(line) {
            Ok(message) => message,
            Err(e) => return failure(Value::Null, format!("the line is not JSON: {e}")),
        };
        let Some(id) = message.get("id").filter(|id| id.is_number()).cloned() else {
            return failure(Value::Null, "the message has no numeric \"id\"".into());
        };
        match message.get("kind").and_then(Value::as_str) {
            Some("start") => {
                let device = match self.backend() {
                    Ok(backend) => backend.describe(),
                    Err(error) => format!("none ({error})"),
                };
                json!({"id": id, "tool": "chainrule", "config": {"device": device}})
            }
            Some("define") => match message.get("module").and_then(Value::as_str) {
                Some(module) if MODULES.contains(&module) => match self.backend() {
                    Ok(_) => json!({"id": id, "success": true}),
                    Err(error) => failure(id, error),
                },
                Some(module) => failure(
                    id,
                    format!(
                        "chainrule does not implement module `{module}` (it implements {})",
                        MODULES.join(", ")
                    ),
                ),
                None => failure(id, "the define message has no \"module\"".into()),
            },
            Some("evaluate") => match self.evaluate(&message) {
                Ok((output, timings)) => {
                    json!({"id": id, "success": true, "output": output, "timings": timings})
                }
                Err(error) => failure(id, error),
            },
            Some(_) => json!({"id": id}),
            None => failure(id, "the message has no \"kind\"".into()),
        }
    }

    fn evaluate(&mut self, message: &Value) -> Result<(Value, Vec<Value>), String> {
        let field = |name: &str| {
            message
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the evaluate message has no \"{name}\""))
        };
        let (module, function) = (field("module")?, field("function")?);
        let input = message
            .get("input")
            .ok_or("the evaluate message has no \"input\"")?;
        let runs = Runs::of(input)?;
        let backend = self.backend()?;
        // A panic is a bug, but the eval still deserves an answer, and the
        // session its remaining evaluations.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            evaluate(backend, module, function, input, runs)
        }));
        outcome.unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown cause");
            Err(format!("internal error (panic): {reason}"))
        })
    }
}

/// Prepares `module.function` at `input` (timed as "prepare") and runs it
/// as `runs` asks, one "evaluate" timing per run.
fn evaluate(
    backend: &Backend,
    module: &str,
    function: &str,
    input: &Value,
    runs: Runs,
) -> Result<(Value, Vec<Value>), String> {
    let start = Instant::now();
    let mut run = match module {
        "hello" => hello::prepare(backend, function, input),
        "lse" => lse::prepare(backend, function, input),
        "llsq" => llsq::prepare(backend, function, input),
        "ba" => ba::prepare(backend, function, input),
        _ => Err(format!(
            "chainrule does not implement module `{module}` (it implements {})",
            MODULES.join(", ")
        )),
    }?;
    let mut timings = vec![timing("prepare", start.elapsed())];
    let mut total = Duration::ZERO;
    let mut count = 0u64;
    let mut output;
    loop {
        let start = Instant::now();
        output = run().map_err(|e| e.to_string())?;
        let took = start.elapsed();
        timings.push(timing("evaluate", took));
        total += took;
        count += 1;
        if count >= runs.min_runs && total.as_secs_f64() >= runs.min_seconds {
            break;
        }
    }
    Ok((output.into_json(), timings))
}

fn timing(name: &str, took: Duration) -> Value {
    json!({"name": name, "nanoseconds": took.as_nanos() as u64})
}

fn failure(id: Value, error: String) -> Value {
    json!({"id": id, "success": false, "error": error})
}

/// The error for a function a module does not have.
pub(crate) fn unknown_function(module: &str, function: &str, known: &[&str]) -> String {
    format!(
        "module `{module}` has no function `{function}` (it has {})",
        known.join(", ")
    )
}

/// For the scalar programs of `primal` and `gradient` (one sample): the
/// value alone (`Backend::values`), or the gradient with respect to the
/// input `x` (`Backend::gradient`), each one library call.
pub(crate) fn primal_or_gradient(
    backend: &Backend,
    program: &chainrule::program::Program,
    variables: &[(&str, &[f32])],
    want_gradient: bool,
) -> chainrule::Result<Output> {
    if want_gradient {
        let out = backend.gradient(program, &["x"], variables, Reduction::PerSample)?;
        return match out.gradients.into_iter().next() {
            Some(gradient) => Ok(Output::Numbers(gradient.values)),
            None => Err(chainrule::Error::Shape(
                "the gradient of one sample came back empty".into(),
            )),
        };
    }
    match backend.values(program, variables)?.first() {
        Some(&value) => Ok(Output::Number(f64::from(value))),
        None => Err(chainrule::Error::Shape(
            "the program's value came back empty".into(),
        )),
    }
}

/// Decodes an input field, naming it in the error.
pub(crate) fn field<T: serde::de::DeserializeOwned>(
    input: &Value,
    name: &str,
) -> Result<T, String> {
    let value = input
        .get(name)
        .ok_or_else(|| format!("the input has no \"{name}\""))?;
    T::deserialize(value).map_err(|e| format!("input \"{name}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_default_to_one_run_and_never_to_none() {
        assert_eq!(
            Runs::of(&json!(3.0)),
            Ok(Runs {
                min_runs: 1,
                min_seconds: 0.0
            })
        );
        let zero = Runs::of(&json!({"min_runs": 0, "min_seconds": 0.5}));
        assert_eq!(
            zero,
            Ok(Runs {
                min_runs: 1,
                min_seconds: 0.5
            })
        );
        assert!(Runs::of(&json!({"min_runs": -1})).is_err());
        assert!(Runs::of(&json!({"min_seconds": "1"})).is_err());
    }
}
