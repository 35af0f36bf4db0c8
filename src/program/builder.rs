//! A Rust builder for programs, for callers who would rather not write the
//! text language. It writes the same text a user would write and parses it,
//! so there is one front end: one lowering, one set of shape rules, the same
//! shared subexpressions and pruning, and the same error messages (naming
//! the statement that went wrong).
//!
//! ```
//! use chainrule::program::{Program, ProgramBuilder};
//!
//! let mut b = ProgramBuilder::new();
//! let x = b.input("x", &[64])?;
//! let (w1, b1) = (b.param("W1", &[128, 64])?, b.param("b1", &[128])?);
//! let (w2, b2) = (b.param("W2", &[32, 128])?, b.param("b2", &[32])?);
//! let h = b.name("h", &(w1.matvec(&x) + &b1).sigmoid())?;
//! let y = (w2.matvec(&h) + &b2).tanh();
//! let program = b.build("y", &y)?;
//!
//! let text = Program::parse(
//!     "input x[64]
//!      param W1[128,64] b1[128] W2[32,128] b2[32]
//!      h = sigmoid(W1 @ x + b1)
//!      y = tanh(W2 @ h + b2)
//!      output y",
//! )?;
//! assert_eq!(program.nodes, text.nodes);
//! assert_eq!(program.shapes, text.shapes);
//! # Ok::<(), chainrule::Error>(())
//! ```
//!
//! Values are expressions, cheap to clone and combine with `+ - * /` (with
//! each other or with `f64` scalars, either side) and with methods; a shape
//! that does not fit is reported by [`ProgramBuilder::build`] as
//! [`Error::Parse`], naming the statement.

use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::rc::Rc;

use super::Program;
use crate::error::{Error, Result};

/// An expression of a program under construction: a variable, a named
/// intermediate, or an operation on them.
#[derive(Debug, Clone, PartialEq)]
pub struct Handle {
    text: Rc<str>,
}

impl Handle {
    fn new(text: String) -> Handle {
        Handle { text: text.into() }
    }

    fn call(&self, function: &str) -> Handle {
        Handle::new(format!("{function}({})", self.text))
    }

    fn call2(&self, function: &str, other: &Handle) -> Handle {
        Handle::new(format!("{function}({}, {})", self.text, other.text))
    }

    /// The expression in the text language.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Any element-wise or reducing function of the language by name, for
    /// functions without a method here (`x.apply("asinh")`).
    pub fn apply(&self, function: &str) -> Handle {
        self.call(function)
    }

    /// `W @ x`: this matrix times a vector.
    pub fn matvec(&self, vector: &Handle) -> Handle {
        Handle::new(format!("({} @ {})", self.text, vector.text))
    }

    /// `a @ b` of any operands `@` takes: matrix times vector, vector times
    /// matrix, matrix times matrix, or two vectors (their dot product).
    pub fn matmul(&self, other: &Handle) -> Handle {
        Handle::new(format!("({} @ {})", self.text, other.text))
    }

    /// `transpose(A)` of a per-sample matrix.
    pub fn transpose(&self) -> Handle {
        self.call("transpose")
    }

    /// `outer(a, b)`: the matrix a[i] b[j].
    pub fn outer(&self, other: &Handle) -> Handle {
        self.call2("outer", other)
    }

    /// `cross(a, b)` of two 3-vectors.
    pub fn cross(&self, other: &Handle) -> Handle {
        self.call2("cross", other)
    }

    /// `max(x)`: the largest element (a tie splits the gradient evenly).
    pub fn reduce_max(&self) -> Handle {
        self.call("max")
    }

    /// `min(x)`: the smallest element.
    pub fn reduce_min(&self) -> Handle {
        self.call("min")
    }

    /// `x[i]`: element i of a vector, or row i of a matrix.
    pub fn index(&self, i: usize) -> Handle {
        Handle::new(format!("{}[{i}]", self.indexable()))
    }

    /// `A[i, j]`: the element in row i, column j of a matrix.
    pub fn at(&self, i: usize, j: usize) -> Handle {
        Handle::new(format!("{}[{i}, {j}]", self.indexable()))
    }

    /// `x[start:end]`: elements (or rows) start to end - 1.
    pub fn slice(&self, start: usize, end: usize) -> Handle {
        Handle::new(format!("{}[{start}:{end}]", self.indexable()))
    }

    /// `[a, b, ...]`: scalars and vectors joined into one vector.
    pub fn concat(parts: &[&Handle]) -> Handle {
        let parts: Vec<&str> = parts.iter().map(|p| p.text()).collect();
        Handle::new(format!("[{}]", parts.join(", ")))
    }

    /// The text with brackets applying to all of it.
    fn indexable(&self) -> String {
        let simple = self.text.chars().all(|c| c.is_alphanumeric() || c == '_');
        if simple {
            self.text.to_string()
        } else {
            format!("({})", self.text)
        }
    }

    /// `x ^ p` for a constant exponent.
    pub fn powf(&self, exponent: f64) -> Handle {
        Handle::new(format!("({} ^ {})", self.text, number(exponent)))
    }

    /// `x ^ y` with a variable exponent.
    pub fn pow(&self, exponent: &Handle) -> Handle {
        Handle::new(format!("({} ^ {})", self.text, exponent.text))
    }

    /// `leaky_relu(x, alpha)`.
    pub fn leaky_relu(&self, alpha: f64) -> Handle {
        Handle::new(format!("leaky_relu({}, {})", self.text, number(alpha)))
    }

    /// `elu(x, alpha)`.
    pub fn elu(&self, alpha: f64) -> Handle {
        Handle::new(format!("elu({}, {})", self.text, number(alpha)))
    }

    /// `dot(x, y)` of two vectors of one length.
    pub fn dot(&self, other: &Handle) -> Handle {
        self.call2("dot", other)
    }

    /// `min(x, y)`, element by element.
    pub fn min(&self, other: &Handle) -> Handle {
        self.call2("min", other)
    }

    /// `max(x, y)`, element by element.
    pub fn max(&self, other: &Handle) -> Handle {
        self.call2("max", other)
    }

    /// `x < y`: 1 where true, 0 elsewhere (derivative 0).
    pub fn lt(&self, other: &Handle) -> Handle {
        Handle::new(format!("({} < {})", self.text, other.text))
    }

    /// `x <= y`.
    pub fn le(&self, other: &Handle) -> Handle {
        Handle::new(format!("({} <= {})", self.text, other.text))
    }

    /// `x > y`.
    pub fn gt(&self, other: &Handle) -> Handle {
        Handle::new(format!("({} > {})", self.text, other.text))
    }

    /// `x >= y`.
    pub fn ge(&self, other: &Handle) -> Handle {
        Handle::new(format!("({} >= {})", self.text, other.text))
    }

    /// `where(c, a, b)` with this as the condition c: a where c is not 0,
    /// b elsewhere; the branch not taken reaches neither value nor
    /// derivative.
    pub fn select(&self, a: &Handle, b: &Handle) -> Handle {
        Handle::new(format!("where({}, {}, {})", self.text, a.text, b.text))
    }

    /// `atan2(y, x)` with this as y.
    pub fn atan2(&self, x: &Handle) -> Handle {
        self.call2("atan2", x)
    }

    /// `xlogy(x, y)` with this as x: x ln y, 0 where x = 0.
    pub fn xlogy(&self, y: &Handle) -> Handle {
        self.call2("xlogy", y)
    }

    /// `mse(y, t)`: the mean over elements of (y - t)^2.
    pub fn mse(&self, target: &Handle) -> Handle {
        self.call2("mse", target)
    }

    /// `cross_entropy(z, t)`: -sum(t * log_softmax(z)), t probabilities.
    pub fn cross_entropy(&self, target: &Handle) -> Handle {
        self.call2("cross_entropy", target)
    }
}

macro_rules! functions {
    ($($name:ident),* $(,)?) => {
        impl Handle {
            $(
                #[doc = concat!("`", stringify!($name), "(x)`, as in the text language.")]
                pub fn $name(&self) -> Handle {
                    self.call(stringify!($name))
                }
            )*
        }
    };
}

functions!(
    exp,
    ln,
    sqrt,
    sin,
    cos,
    tan,
    abs,
    sigmoid,
    tanh,
    relu,
    softplus,
    silu,
    gelu,
    square,
    reciprocal,
    sum,
    mean,
    logsumexp,
    softmax,
    log_softmax,
    log1p,
    expm1,
    atan,
    asinh,
    acosh,
    atanh,
    erf,
    gelu_exact,
    xlogx,
    norm,
    prod,
);

/// A number as the lexer reads it back exactly. The language has no
/// literals for NaN and the infinities; they are written as 0 / 0 and
/// +-1 / 0, which keep their IEEE values (a division by zero is not folded
/// away).
fn number(value: f64) -> String {
    if value.is_nan() {
        return "(0 / 0)".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "(1 / 0)" } else { "(-1 / 0)" }.into();
    }
    let text = format!("{value:?}");
    if value < 0.0 {
        format!("({text})")
    } else {
        text
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

macro_rules! operator {
    ($trait:ident, $method:ident, $symbol:literal) => {
        impl $trait<&Handle> for &Handle {
            type Output = Handle;
            fn $method(self, rhs: &Handle) -> Handle {
                Handle::new(format!(
                    concat!("({} ", $symbol, " {})"),
                    self.text, rhs.text
                ))
            }
        }
        impl $trait<Handle> for Handle {
            type Output = Handle;
            fn $method(self, rhs: Handle) -> Handle {
                (&self).$method(&rhs)
            }
        }
        impl $trait<&Handle> for Handle {
            type Output = Handle;
            fn $method(self, rhs: &Handle) -> Handle {
                (&self).$method(rhs)
            }
        }
        impl $trait<Handle> for &Handle {
            type Output = Handle;
            fn $method(self, rhs: Handle) -> Handle {
                self.$method(&rhs)
            }
        }
        impl $trait<f64> for &Handle {
            type Output = Handle;
            fn $method(self, rhs: f64) -> Handle {
                Handle::new(format!(
                    concat!("({} ", $symbol, " {})"),
                    self.text,
                    number(rhs)
                ))
            }
        }
        impl $trait<f64> for Handle {
            type Output = Handle;
            fn $method(self, rhs: f64) -> Handle {
                (&self).$method(rhs)
            }
        }
        impl $trait<&Handle> for f64 {
            type Output = Handle;
            fn $method(self, rhs: &Handle) -> Handle {
                Handle::new(format!(
                    concat!("({} ", $symbol, " {})"),
                    number(self),
                    rhs.text
                ))
            }
        }
        impl $trait<Handle> for f64 {
            type Output = Handle;
            fn $method(self, rhs: Handle) -> Handle {
                self.$method(&rhs)
            }
        }
    };
}

operator!(Add, add, "+");
operator!(Sub, sub, "-");
operator!(Mul, mul, "*");
operator!(Div, div, "/");

impl Neg for &Handle {
    type Output = Handle;
    fn neg(self) -> Handle {
        Handle::new(format!("(-{})", self.text))
    }
}

impl Neg for Handle {
    type Output = Handle;
    fn neg(self) -> Handle {
        -&self
    }
}

/// Builds a [`Program`] statement by statement.
#[derive(Debug, Clone, Default)]
pub struct ProgramBuilder {
    lines: Vec<String>,
    names: Vec<String>,
}

impl ProgramBuilder {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_name(&self, name: &str) -> Result<()> {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "`{name}` is not a name: use letters, digits and _, starting with a letter"
            )));
        }
        if self.names.iter().any(|n| n == name) {
            return Err(Error::InvalidArgument(format!(
                "`{name}` is already defined"
            )));
        }
        Ok(())
    }

    fn declare(&mut self, kind: &str, name: &str, dims: &[usize]) -> Result<Handle> {
        self.check_name(name)?;
        let shape = match dims {
            [] => String::new(),
            [n] => format!("[{n}]"),
            [m, n] => format!("[{m},{n}]"),
            _ => {
                return Err(Error::Shape(format!(
                    "`{name}`: a variable is a scalar ([]), a vector ([n]) or a matrix ([m, n]), not {dims:?}"
                )));
            }
        };
        self.lines.push(format!("{kind} {name}{shape}"));
        self.names.push(name.to_string());
        Ok(Handle::new(name.to_string()))
    }

    /// Declares an input (a value per sample) of shape `dims`: `[]` for a
    /// scalar, `[n]` for a vector, `[m, n]` for a matrix per sample.
    pub fn input(&mut self, name: &str, dims: &[usize]) -> Result<Handle> {
        self.declare("input", name, dims)
    }

    /// Declares a parameter (shared by the batch): `[]`, `[n]` or `[m, n]`.
    pub fn param(&mut self, name: &str, dims: &[usize]) -> Result<Handle> {
        self.declare("param", name, dims)
    }

    /// Names an intermediate value (`name = value`), as a line of the text
    /// would; explanations then use the name.
    pub fn name(&mut self, name: &str, value: &Handle) -> Result<Handle> {
        self.check_name(name)?;
        self.lines.push(format!("{name} = {}", value.text));
        self.names.push(name.to_string());
        Ok(Handle::new(name.to_string()))
    }

    /// The program's text so far, with `output` as its result called `name`.
    pub fn text(&self, name: &str, output: &Handle) -> String {
        let mut lines = self.lines.clone();
        if output.text() != name {
            lines.push(format!("{name} = {}", output.text));
        }
        lines.push(format!("output {name}"));
        lines.join("\n")
    }

    /// The program whose result is `output`, called `name`. Shape errors and
    /// unknown functions are reported here, naming the statement.
    pub fn build(&self, name: &str, output: &Handle) -> Result<Program> {
        if output.text() != name {
            self.check_name(name)?;
        }
        Program::parse(&self.text(name, output))
    }
}
