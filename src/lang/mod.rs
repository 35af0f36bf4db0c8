//! The text language in which users write the functions to differentiate.
//!
//! This module holds its front end: a lexer, the expression parser and the
//! syntax tree it builds, and errors that point at the offending text.
//!
//! ```
//! use chainrule::lang::{BinOp, ExprKind, parse_expression};
//!
//! let expr = parse_expression("-x^2 + 3sin(x)")?;
//! assert!(matches!(expr.kind, ExprKind::Binary { op: BinOp::Add, .. }));
//!
//! let error = parse_expression("2 * (x + 1").unwrap_err();
//! assert_eq!(error.message, "unclosed `(`");
//! # Ok::<(), chainrule::lang::ParseError>(())
//! ```

pub mod ast;
mod error;
mod lexer;
mod parser;

pub use ast::{BinOp, Expr, ExprKind, Span};
pub use error::{ParseError, suggest};
pub use parser::parse_expression;

// For the program-form parser, which shares the lexer and embeds expressions.
pub(crate) use lexer::{Token, TokenKind, tokenize};
#[allow(unused_imports)]
pub(crate) use parser::{MAX_DEPTH, parse_expression_at};
