//! GradBench's `llsq`: the linear least-squares objective
//! 0.5 sum_i (s_i - sum_j x_j t_i^j)^2 with t_i = -1 + 2i/(n-1) and
//! s_i = sign(t_i), and its gradient in x. As a program the powers of t
//! form a parameter matrix T (n x m, T_ij = t_i^j) and s a parameter
//! vector, so the objective is a residual and its squared norm.

use chainrule::Backend;
use chainrule::program::Program;
use serde_json::Value;

use super::{Prepared, field, primal_or_gradient, unknown_function};

const FUNCTIONS: &[&str] = &["primal", "gradient"];

/// The program for `m` coefficients and `n` points.
pub(crate) fn program_text(n: usize, m: usize) -> String {
    format!(
        "input x[{m}]\nparam T[{n},{m}]  s[{n}]\nr = s - T @ x\nloss = 0.5 * dot(r, r)\noutput loss\n"
    )
}

/// T (row-major, n x m) and s. The powers are formed in f64 by repeated
/// products, as the eval's reference forms them, and rounded once.
/// Memory that cannot be had is an error, not an abort.
pub(crate) fn parameters(n: usize, m: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
    let (mut powers, mut signs) = (Vec::new(), Vec::new());
    let size = n
        .checked_mul(m)
        .ok_or_else(|| format!("T would have {n} x {m} elements"))?;
    powers
        .try_reserve_exact(size)
        .and_then(|()| signs.try_reserve_exact(n))
        .map_err(|_| format!("no host memory for T ({n} x {m})"))?;
    for i in 0..n {
        let t = -1.0 + i as f64 * 2.0 / (n as f64 - 1.0);
        let mut power = 1.0f64;
        for _ in 0..m {
            powers.push(power as f32);
            power *= t;
        }
        // sign(0) is 0, as the reference's (0 < t) - (t < 0).
        signs.push(if t > 0.0 {
            1.0
        } else if t < 0.0 {
            -1.0
        } else {
            0.0
        });
    }
    Ok((powers, signs))
}

pub(crate) fn prepare<'a>(
    backend: &'a Backend,
    function: &str,
    input: &Value,
) -> Result<Prepared<'a>, String> {
    let want_gradient = match function {
        "primal" => false,
        "gradient" => true,
        _ => return Err(unknown_function("llsq", function, FUNCTIONS)),
    };
    let x: Vec<f64> = field(input, "x")?;
    let n: usize = field(input, "n")?;
    if x.is_empty() {
        return Err("llsq needs at least one coefficient in \"x\"".into());
    }
    if n < 2 {
        // t_i divides by n - 1.
        return Err(format!("llsq needs n >= 2 points, not {n}"));
    }
    let m = x.len();
    let program = Program::parse(&program_text(n, m)).map_err(|e| e.to_string())?;
    let (powers, signs) = parameters(n, m)?;
    let x: Vec<f32> = x.into_iter().map(|v| v as f32).collect();
    Ok(Box::new(move || {
        let variables = [("x", &x[..]), ("T", &powers[..]), ("s", &signs[..])];
        primal_or_gradient(backend, &program, &variables, want_gradient)
    }))
}
