//! Splits source text into tokens with byte spans. The expression parser and
//! the program-form parser share it, so it also produces the tokens that only
//! programs use (`@ = [ ] :` and line breaks).

use super::ast::Span;
use super::error::ParseError;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// A finite number literal: `3`, `0.5`, `.5`, `1e-3`, `2.5E+4`.
    Number(f64),
    /// `[A-Za-z_][A-Za-z0-9_]*`
    Name(String),
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `^`
    Caret,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `@`
    At,
    /// `=`
    Equals,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `:`, between the bounds of a slice.
    Colon,
    /// `<`
    Less,
    /// `<=`
    LessEq,
    /// `>`
    Greater,
    /// `>=`
    GreaterEq,
    /// `\n`, which ends a statement in a program.
    Newline,
    /// The end of the input, always the last token.
    Eof,
}

impl TokenKind {
    /// The text of a punctuation token, `None` for the others.
    pub(crate) fn symbol(&self) -> Option<&'static str> {
        Some(match self {
            TokenKind::Plus => "+",
            TokenKind::Minus => "-",
            TokenKind::Star => "*",
            TokenKind::Slash => "/",
            TokenKind::Caret => "^",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::Comma => ",",
            TokenKind::At => "@",
            TokenKind::Equals => "=",
            TokenKind::LBracket => "[",
            TokenKind::RBracket => "]",
            TokenKind::Colon => ":",
            TokenKind::Less => "<",
            TokenKind::LessEq => "<=",
            TokenKind::Greater => ">",
            TokenKind::GreaterEq => ">=",
            TokenKind::Number(_) | TokenKind::Name(_) | TokenKind::Newline | TokenKind::Eof => {
                return None;
            }
        })
    }
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    /// What it is.
    pub(crate) kind: TokenKind,
    /// Its bytes in the source; empty for `Eof`.
    pub(crate) span: Span,
}

impl Token {
    /// How an error message names this token: "`)`", "name `x`",
    /// "number `2.5`", "line break", "end of input".
    pub(crate) fn describe(&self, source: &str) -> String {
        match &self.kind {
            TokenKind::Number(value) => match source.get(self.span.start..self.span.end) {
                Some(text) => format!("number `{text}`"),
                None => format!("number `{value}`"),
            },
            TokenKind::Name(name) => format!("name `{name}`"),
            TokenKind::Newline => "line break".to_owned(),
            TokenKind::Eof => "end of input".to_owned(),
            other => format!("`{}`", other.symbol().unwrap_or("?")),
        }
    }
}

/// The tokens of `source`, ending with `Eof`; whitespace other than `\n` and
/// `#` comments are dropped. Fails at the first character that starts no
/// token and at a number too large for f64.
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    while let Some(c) = source.get(pos..).and_then(|rest| rest.chars().next()) {
        let start = pos;
        let punctuation = match c {
            '+' => Some(TokenKind::Plus),
            '-' => Some(TokenKind::Minus),
            '*' => Some(TokenKind::Star),
            '/' => Some(TokenKind::Slash),
            '^' => Some(TokenKind::Caret),
            '(' => Some(TokenKind::LParen),
            ')' => Some(TokenKind::RParen),
            ',' => Some(TokenKind::Comma),
            '@' => Some(TokenKind::At),
            '=' => Some(TokenKind::Equals),
            '[' => Some(TokenKind::LBracket),
            ']' => Some(TokenKind::RBracket),
            ':' => Some(TokenKind::Colon),
            '\n' => Some(TokenKind::Newline),
            '<' | '>' => Some(match (c, bytes.get(pos + 1) == Some(&b'=')) {
                ('<', false) => TokenKind::Less,
                ('<', true) => TokenKind::LessEq,
                (_, false) => TokenKind::Greater,
                (_, true) => TokenKind::GreaterEq,
            }),
            _ => None,
        };
        if let Some(kind) = punctuation {
            pos += kind.symbol().map_or(1, str::len);
            tokens.push(Token {
                kind,
                span: Span::new(start, pos),
            });
        } else if c == '#' {
            // The line break stays: it still ends the statement.
            pos = source
                .get(pos..)
                .and_then(|rest| rest.find('\n'))
                .map_or(source.len(), |i| pos + i);
        } else if c.is_whitespace() {
            pos += c.len_utf8();
        } else if c.is_ascii_digit()
            || (c == '.' && bytes.get(pos + 1).is_some_and(u8::is_ascii_digit))
        {
            pos = scan_number(bytes, pos);
            let span = Span::new(start, pos);
            let text = source.get(start..pos).unwrap_or("");
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() => tokens.push(Token {
                    kind: TokenKind::Number(value),
                    span,
                }),
                _ => {
                    return Err(ParseError::new(source, span, "number is too large")
                        .with_help(format!("the largest finite number is about {:e}", f64::MAX)));
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            pos += 1;
            while bytes
                .get(pos)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                pos += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Name(source.get(start..pos).unwrap_or("").to_owned()),
                span: Span::new(start, pos),
            });
        } else {
            let span = Span::new(start, start + c.len_utf8());
            let error = ParseError::new(
                source,
                span,
                format!("unexpected character `{}`", c.escape_debug()),
            );
            return Err(if c.is_alphabetic() {
                error.with_help("names use ASCII letters, digits and `_`")
            } else if c == '.' {
                error.with_help("a number needs a digit next to its `.`, as in `0.5` or `.5`")
            } else {
                error
            });
        }
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        span: Span::new(source.len(), source.len()),
    });
    Ok(tokens)
}

/// The end of the number starting at `start`: digits, an optional fraction,
/// and an exponent only when a digit follows the `e` (so that `2e` and
/// `3exp(x)` read as a number times a name). Only ASCII is consumed, so the
/// result is a char boundary.
fn scan_number(bytes: &[u8], start: usize) -> usize {
    let digits_from = |mut pos: usize| {
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        pos
    };
    let mut pos = digits_from(start);
    if bytes.get(pos) == Some(&b'.') {
        pos = digits_from(pos + 1);
    }
    if matches!(bytes.get(pos), Some(b'e' | b'E')) {
        let mantissa_from = if matches!(bytes.get(pos + 1), Some(b'+' | b'-')) {
            pos + 2
        } else {
            pos + 1
        };
        if bytes.get(mantissa_from).is_some_and(u8::is_ascii_digit) {
            pos = digits_from(mantissa_from);
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        match tokenize(source) {
            Ok(tokens) => tokens.into_iter().map(|t| t.kind).collect(),
            Err(e) => panic!("{source:?} failed to tokenize:\n{e}"),
        }
    }

    fn name(n: &str) -> TokenKind {
        TokenKind::Name(n.to_owned())
    }

    #[test]
    fn number_formats() {
        use TokenKind::{Eof, Number};
        for (text, value) in [
            ("3", 3.0),
            ("0.5", 0.5),
            (".5", 0.5),
            ("1e-3", 1e-3),
            ("2.5E+4", 2.5e4),
            ("7.", 7.0),
            ("1e3", 1000.0),
            ("00012", 12.0),
            ("1e-400", 0.0),
        ] {
            assert_eq!(kinds(text), vec![Number(value), Eof], "{text}");
        }
    }

    #[test]
    fn an_e_without_digits_is_a_name() {
        use TokenKind::{Eof, LParen, Minus, Number, RParen};
        assert_eq!(kinds("2e"), vec![Number(2.0), name("e"), Eof]);
        assert_eq!(
            kinds("2e-x"),
            vec![Number(2.0), name("e"), Minus, name("x"), Eof]
        );
        assert_eq!(
            kinds("3exp(x)"),
            vec![Number(3.0), name("exp"), LParen, name("x"), RParen, Eof]
        );
    }

    #[test]
    fn names_and_punctuation() {
        use TokenKind::*;
        assert_eq!(
            kinds("_a1 B_2+-*/^(),@=[]\n"),
            vec![
                name("_a1"),
                name("B_2"),
                Plus,
                Minus,
                Star,
                Slash,
                Caret,
                LParen,
                RParen,
                Comma,
                At,
                Equals,
                LBracket,
                RBracket,
                Newline,
                Eof
            ]
        );
    }

    #[test]
    fn spans_are_byte_ranges() {
        let tokens = tokenize("  ab + 1.5e2\t# c\n x").unwrap_or_default();
        let spans: Vec<(usize, usize)> =
            tokens.iter().map(|t| (t.span.start, t.span.end)).collect();
        assert_eq!(
            spans,
            vec![(2, 4), (5, 6), (7, 12), (16, 17), (18, 19), (19, 19)]
        );
    }

    #[test]
    fn comments_run_to_the_end_of_the_line() {
        use TokenKind::{Eof, Newline};
        assert_eq!(kinds("# only a comment"), vec![Eof]);
        assert_eq!(
            kinds("x # é ( $\ny"),
            vec![name("x"), Newline, name("y"), Eof]
        );
    }

    #[test]
    fn unicode_whitespace_is_skipped() {
        assert_eq!(kinds("\u{a0}x\u{2003}"), vec![name("x"), TokenKind::Eof]);
    }

    fn error(source: &str) -> ParseError {
        match tokenize(source) {
            Ok(tokens) => panic!("{source:?} tokenized as {tokens:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn unexpected_characters_are_pointed_at() {
        let e = error("x + $");
        assert_eq!(e.message, "unexpected character `$`");
        assert_eq!(e.span, Span::new(4, 5));
        assert_eq!(
            e.to_string(),
            "unexpected character `$`\n  | x + $\n  |     ^"
        );

        let e = error("αβ");
        assert_eq!(e.message, "unexpected character `α`");
        assert_eq!(e.span, Span::new(0, 2));
        assert!(e.help.is_some());

        let e = error("1 + .");
        assert_eq!(e.span, Span::new(4, 5));
        assert_eq!(e.message, "unexpected character `.`");

        let e = error("\u{7}");
        assert_eq!(e.message, "unexpected character `\\u{7}`");
    }

    #[test]
    fn numbers_beyond_f64_are_errors() {
        let e = error("x + 1e309");
        assert_eq!(e.message, "number is too large");
        assert_eq!(e.span, Span::new(4, 9));
        let huge = format!("1{}", "0".repeat(400));
        assert_eq!(error(&huge).span, Span::new(0, 401));
        assert_eq!(kinds("1.7976931348623157e308").len(), 2);
    }
}
