//! The program form's statements: which text is a program, and the lines
//! of one, read into declarations, assignments and the output.
//!
//! Parsing goes in two passes: the first reads every line (declarations
//! take effect at once, so a variable may be declared below its first use),
//! the second lowers the assignments in order and then the output. A name
//! assigned on a later line is therefore an error of its own, "used before
//! it is assigned", rather than an unknown name.

use super::lower::{Declaration, KEYWORDS, Lowering, Parsed, line_of};
use super::{InputOrder, Kind, MAX_ELEMENTS, Op, Program, Shape};
use crate::lang::{
    Expr, ExprKind, ParseError, Span, Token, TokenKind, parse_expression, parse_expression_at,
    suggest, tokenize,
};

/// Parses `text` as a program, or as a bare expression when no line looks
/// like a statement of one.
pub(super) fn parse(text: &str) -> Parsed<Program> {
    let tokens = tokenize(text)?;
    let starts = statement_starts(&tokens);
    if !starts.iter().any(|&start| opens_statement(&tokens, start)) {
        return parse_expression_in(text, &InputOrder::FirstAppearance);
    }
    program(text, &tokens, &starts)
}

/// Parses `text` as one expression of scalar inputs, in `order`.
pub(super) fn parse_expression_in(text: &str, order: &InputOrder) -> Parsed<Program> {
    let expr = parse_expression(text)?;
    let mut lowering = match order {
        InputOrder::FirstAppearance => Lowering::new(text, true),
        InputOrder::Given(names) => Lowering::with_inputs(text, names),
    };
    let value = lowering.lower(&expr)?;
    let output = lowering.flat(value, &expr)?;
    Ok(lowering.finish(output, "y".to_owned()))
}

/// The index of the first token of every non-blank line.
fn statement_starts(tokens: &[Token]) -> Vec<usize> {
    let mut previous_ends_line = true;
    let mut starts = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let ends_line = matches!(token.kind, TokenKind::Newline | TokenKind::Eof);
        if previous_ends_line && !ends_line {
            starts.push(i);
        }
        previous_ends_line = ends_line;
    }
    starts
}

/// Whether the line at `start` can only be a program's statement: `NAME =`,
/// or a keyword not followed by an operator (`input + 1` is an expression
/// in a variable called `input`).
fn opens_statement(tokens: &[Token], start: usize) -> bool {
    let kind = |i: usize| tokens.get(i).map(|t| &t.kind);
    let Some(TokenKind::Name(first)) = kind(start) else {
        return false;
    };
    let next = kind(start + 1);
    if next == Some(&TokenKind::Equals) {
        return true;
    }
    let continues_expression = matches!(
        next,
        Some(
            TokenKind::Plus
                | TokenKind::Minus
                | TokenKind::Star
                | TokenKind::Slash
                | TokenKind::Caret
                | TokenKind::At
                | TokenKind::LParen
                | TokenKind::RParen
                | TokenKind::Comma
        )
    );
    KEYWORDS.contains(&first.as_str()) && !continues_expression
}

/// An assignment, read in the first pass and lowered in the second.
struct Assignment {
    name: String,
    name_span: Span,
    expr: Expr,
}

fn program(text: &str, tokens: &[Token], starts: &[usize]) -> Parsed<Program> {
    let mut lowering = Lowering::new(text, false);
    let mut assignments: Vec<Assignment> = Vec::new();
    let mut output: Option<(Span, Expr)> = None;
    for &start in starts {
        let mut cursor = Cursor {
            source: text,
            tokens,
            pos: start,
            eof: Token {
                kind: TokenKind::Eof,
                span: Span::new(text.len(), text.len()),
            },
        };
        let first = cursor.peek().clone();
        let word = match &first.kind {
            TokenKind::Name(name) => name.as_str(),
            _ => "",
        };
        let assigns = tokens.get(start + 1).map(|t| &t.kind) == Some(&TokenKind::Equals);
        match word {
            "input" | "param" if !assigns => {
                cursor.bump();
                let kind = if word == "input" {
                    Kind::Input
                } else {
                    Kind::Param
                };
                for declaration in cursor.declarations(word)? {
                    lowering.declare(kind, declaration)?;
                }
            }
            "output" if !assigns => {
                cursor.bump();
                if cursor.at_line_end() {
                    return Err(cursor
                        .error(
                            first.span,
                            "expected a name or an expression after `output`",
                        )
                        .with_help("name the result: `output y`"));
                }
                let expr = cursor.expression()?;
                if let Some((earlier, _)) = &output {
                    return Err(cursor
                        .error(first.span, "a program has exactly one `output`")
                        .with_help(format!("the first is on line {}", line_of(text, *earlier))));
                }
                output = Some((first.span, expr));
            }
            _ if assigns && !word.is_empty() => {
                let name = word.to_owned();
                cursor.bump();
                cursor.bump();
                let expr = cursor.expression()?;
                lowering.check_new_name(&name, first.span)?;
                if let Some(earlier) = assignments.iter().find(|a| a.name == name) {
                    return Err(cursor
                        .error(first.span, format!("`{name}` is assigned twice"))
                        .with_help(format!(
                            "it is first assigned on line {}; each name is assigned once",
                            line_of(text, earlier.name_span)
                        )));
                }
                assignments.push(Assignment {
                    name,
                    name_span: first.span,
                    expr,
                });
            }
            _ => return Err(not_a_statement(text, &first)),
        }
    }

    for assignment in &assignments {
        lowering
            .later
            .insert(assignment.name.clone(), assignment.name_span);
    }
    for Assignment {
        name,
        name_span,
        expr,
    } in assignments
    {
        if let Some(&index) = lowering.by_name.get(&name) {
            return Err(lowering.already_declared(&name, index, name_span));
        }
        // Still in `later` while its own line is lowered: `h = h + 1` uses
        // `h` before it is assigned.
        let value = lowering.lower(&expr)?;
        let id = lowering.flat(value, &expr)?;
        lowering.later.remove(&name);
        // A variable keeps its own name; a node named twice keeps the first.
        let is_variable = matches!(lowering.nodes.get(id), Some(Op::Variable(_)));
        if let Some(slot @ None) = lowering.names.get_mut(id) {
            if !is_variable {
                *slot = Some(name.clone());
            }
        }
        lowering.values.insert(name, value);
    }

    let Some((_, expr)) = output else {
        return Err(ParseError::new(
            text,
            Span::new(text.len(), text.len()),
            "the program has no `output`",
        )
        .with_help("add a line `output NAME` naming the result"));
    };
    let value = lowering.lower(&expr)?;
    let id = lowering.flat(value, &expr)?;
    let output_name = match &expr.kind {
        ExprKind::Name(name) if name != "pi" => name.clone(),
        _ if lowering.is_taken("y") => "output".to_owned(),
        _ => "y".to_owned(),
    };
    Ok(lowering.finish(id, output_name))
}

/// The error for a line that begins no statement.
fn not_a_statement(text: &str, first: &Token) -> ParseError {
    let error = ParseError::new(
        text,
        first.span,
        format!(
            "expected `input`, `param`, `output` or `name = expression`, found {}",
            first.describe(text)
        ),
    );
    match &first.kind {
        TokenKind::Name(name) if suggest(name, &KEYWORDS).is_some() => {
            let near = suggest(name, &KEYWORDS).unwrap_or_default();
            error.with_help(format!("did you mean `{near}`?"))
        }
        _ => error.with_help(
            "each line declares (`input x[3]`), assigns (`h = ...`) or names the result (`output h`)",
        ),
    }
}

/// Reads the tokens of one statement.
struct Cursor<'a> {
    source: &'a str,
    tokens: &'a [Token],
    pos: usize,
    eof: Token,
}

impl Cursor<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.eof)
    }

    fn bump(&mut self) -> Span {
        let span = self.peek().span;
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        span
    }

    fn at_line_end(&self) -> bool {
        matches!(self.peek().kind, TokenKind::Newline | TokenKind::Eof)
    }

    fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError::new(self.source, span, message)
    }

    fn found(&self) -> String {
        self.peek().describe(self.source)
    }

    /// An expression that runs to the end of the line.
    fn expression(&mut self) -> Parsed<Expr> {
        let (expr, next) = parse_expression_at(self.source, self.tokens, self.pos)?;
        self.pos = next;
        if self.at_line_end() {
            return Ok(expr);
        }
        let token = self.peek();
        let error = self.error(token.span, format!("unexpected {}", self.found()));
        Err(match token.kind {
            TokenKind::Number(_) | TokenKind::Name(_) | TokenKind::LParen => {
                error.with_help("write `*` to multiply")
            }
            TokenKind::RParen => error.with_help("this `)` has no matching `(`"),
            TokenKind::Comma => error.with_help("`,` separates the arguments of a call"),
            TokenKind::LBracket | TokenKind::RBracket => {
                error.with_help("sizes in brackets belong in `input` and `param` lines")
            }
            _ => error.with_help("each line holds one statement"),
        })
    }

    /// The names after `input` or `param`, each with an optional `[n]` or
    /// `[m,n]`, separated by spaces or commas.
    fn declarations(&mut self, keyword: &str) -> Parsed<Vec<Declaration>> {
        let mut declarations = Vec::new();
        loop {
            let token = self.peek().clone();
            let TokenKind::Name(name) = token.kind else {
                let error = if declarations.is_empty() && self.at_line_end() {
                    self.error(token.span, format!("expected a name after `{keyword}`"))
                } else {
                    self.error(
                        token.span,
                        format!("expected a name to declare, found {}", self.found()),
                    )
                };
                return Err(error.with_help(format!(
                    "declare like `{keyword} x[64]`, `{keyword} W[128,64]`, or `{keyword} t` for a scalar"
                )));
            };
            self.bump();
            let shape = if self.peek().kind == TokenKind::LBracket {
                self.bump();
                self.sizes()?
            } else {
                Shape::Scalar
            };
            let end = self
                .pos
                .checked_sub(1)
                .and_then(|i| self.tokens.get(i))
                .map_or(token.span.end, |t| t.span.end);
            declarations.push(Declaration {
                name,
                name_span: token.span,
                span: Span::new(token.span.start, end),
                shape,
            });
            if self.peek().kind == TokenKind::Comma {
                self.bump();
                continue;
            }
            if self.at_line_end() {
                return Ok(declarations);
            }
            if !matches!(self.peek().kind, TokenKind::Name(_)) {
                let error = self.error(
                    self.peek().span,
                    format!(
                        "expected `[`, another name or the end of the line, found {}",
                        self.found()
                    ),
                );
                return Err(error.with_help("sizes go in square brackets: `x[3]`, `W[2,3]`"));
            }
        }
    }

    /// `n]` or `m,n]`, after the `[`.
    fn sizes(&mut self) -> Parsed<Shape> {
        let rows = self.size()?;
        let shape = match self.peek().kind {
            TokenKind::Comma => {
                self.bump();
                Shape::Matrix(rows, self.size()?)
            }
            _ => Shape::Vector(rows),
        };
        if self.peek().kind != TokenKind::RBracket {
            let expected = match shape {
                Shape::Vector(_) => "`,` or `]`",
                _ => "`]`",
            };
            return Err(self
                .error(
                    self.peek().span,
                    format!("expected {expected}, found {}", self.found()),
                )
                .with_help("a vector is `x[n]`, a matrix `W[m,n]`"));
        }
        self.bump();
        Ok(shape)
    }

    fn size(&mut self) -> Parsed<usize> {
        let token = self.peek().clone();
        let TokenKind::Number(value) = token.kind else {
            return Err(self.error(
                token.span,
                format!("expected a size, found {}", self.found()),
            ));
        };
        // Exact for every whole number up to MAX_ELEMENTS.
        if value.fract() != 0.0 || !(1.0..=MAX_ELEMENTS as f64).contains(&value) {
            return Err(self.error(
                token.span,
                format!("a size must be a whole number from 1 to {MAX_ELEMENTS}"),
            ));
        }
        self.bump();
        Ok(value as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_program(text: &str) -> bool {
        let tokens = tokenize(text).unwrap_or_default();
        statement_starts(&tokens)
            .iter()
            .any(|&start| opens_statement(&tokens, start))
    }

    #[test]
    fn programs_are_told_from_bare_expressions() {
        for text in [
            "input x",
            "param W[2,2]",
            "output y",
            "y = x",
            "\n\n  h = 1\n",
        ] {
            assert!(is_program(text), "{text:?}");
        }
        for text in [
            "x",
            "input + 1",
            "output(x)",
            "sin(x) * y",
            "",
            "# input x\n",
        ] {
            assert!(!is_program(text), "{text:?}");
        }
    }

    #[test]
    fn statements_start_after_line_breaks() {
        let tokens = tokenize("a\n\n b c\n").unwrap_or_default();
        assert_eq!(statement_starts(&tokens), vec![0, 3]);
    }
}
