//! Parse errors that show where they are: the message, the offending source
//! line with a caret underneath, and an optional hint; plus the "did you
//! mean" suggestion that later stages attach to unknown names.

use std::fmt;

use super::ast::Span;

/// A syntax error, carrying the whole source so that it can render itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// What went wrong, e.g. "expected an expression after `+`".
    pub message: String,
    /// Where, as a byte range of `source_text` on char boundaries.
    pub span: Span,
    /// The whole source that was parsed.
    pub source_text: String,
    /// What to do about it, e.g. "did you mean `sigmoid`?".
    pub help: Option<String>,
}

impl ParseError {
    /// An error at `span` of `source`. A span past the end or inside a
    /// multi-byte character is moved to the nearest valid range, so that an
    /// error built from a stale span can still be displayed.
    pub fn new(source: &str, span: Span, message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
            span: clamp_span(source, span),
            source_text: source.to_owned(),
            help: None,
        }
    }

    /// The same error with a hint shown after the caret line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The 1-based line and column (counted in chars) where the span starts.
    pub fn line_column(&self) -> (usize, usize) {
        let located = Located::new(&self.source_text, self.span);
        (located.line_number, located.column + 1)
    }
}

/// The pieces of the source that the rendering needs, computed once.
struct Located<'a> {
    line: &'a str,
    line_number: usize,
    /// Chars of `line` before the span.
    column: usize,
    /// What precedes the span on its line, to copy its tabs into the caret
    /// line so that the caret lines up whatever the terminal's tab width.
    before: &'a str,
    /// Chars of the span on its line, at least 1 so that an empty span (the
    /// end of input) still shows a caret.
    width: usize,
}

impl<'a> Located<'a> {
    fn new(source: &'a str, span: Span) -> Self {
        let span = clamp_span(source, span);
        let head = source.get(..span.start).unwrap_or("");
        let line_start = head.rfind('\n').map_or(0, |i| i + 1);
        let line_end = source
            .get(span.start..)
            .and_then(|rest| rest.find('\n'))
            .map_or(source.len(), |i| span.start + i);
        let line = source.get(line_start..line_end).unwrap_or("");
        let before = source.get(line_start..span.start).unwrap_or("");
        // A span that runs onto later lines is underlined to the end of its
        // first line only.
        let underlined = source.get(span.start..span.end.min(line_end)).unwrap_or("");
        Located {
            line: line.strip_suffix('\r').unwrap_or(line),
            line_number: head.matches('\n').count() + 1,
            column: before.chars().count(),
            before,
            width: underlined.chars().count().max(1),
        }
    }
}

/// Moves `span` inside `source` and onto char boundaries, widening rather than
/// narrowing so that it still covers what it pointed at.
fn clamp_span(source: &str, span: Span) -> Span {
    let mut start = span.start.min(source.len());
    // 0 and len are always boundaries, so both loops stop inside the string.
    while start > 0 && !source.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, source.len());
    while end < source.len() && !source.is_char_boundary(end) {
        end += 1;
    }
    Span::new(start, end)
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let located = Located::new(&self.source_text, self.span);
        // A lone line needs no number; in a program the number is what lets
        // the reader find it.
        let gutter = if self.source_text.lines().count() > 1 || located.line_number > 1 {
            format!("line {} ", located.line_number)
        } else {
            "  ".to_owned()
        };
        let blank_gutter = " ".repeat(gutter.chars().count());
        let padding: String = located
            .before
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();

        write!(f, "{}\n{gutter}|", self.message)?;
        if !located.line.is_empty() {
            write!(f, " {}", located.line)?;
        }
        write!(
            f,
            "\n{blank_gutter}| {padding}{}",
            "^".repeat(located.width)
        )?;
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// The candidate nearest to `name` by edit distance, if it is near enough to
/// be a plausible typo: at most a third of `name`'s length (and at least 1)
/// edits away. Ties go to the earlier candidate; an exact match is returned
/// as is.
pub fn suggest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|&candidate| (levenshtein(name, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Insertions, deletions and substitutions of chars needed to turn `a` into
/// `b`, keeping one row of the table at a time.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        // `diagonal` is the previous row's value one column to the left.
        let mut diagonal = i;
        let mut left = i + 1;
        for (cell, &cb) in row.iter_mut().skip(1).zip(&b) {
            let above = *cell;
            let substitution = diagonal + usize::from(ca != cb);
            let value = substitution.min(above + 1).min(left + 1);
            diagonal = above;
            *cell = value;
            left = value;
        }
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_message_line_and_caret() {
        let error = ParseError::new(
            "x + * 2",
            Span::new(4, 5),
            "expected an expression after `+`",
        );
        assert_eq!(
            error.to_string(),
            "expected an expression after `+`\n  | x + * 2\n  |     ^"
        );
    }

    #[test]
    fn renders_line_number_and_help_in_multi_line_sources() {
        let source = "a = 1\nb = sigmod(a)\n";
        let error = ParseError::new(source, Span::new(10, 16), "unknown function `sigmod`")
            .with_help("did you mean `sigmoid`?");
        assert_eq!(
            error.to_string(),
            "unknown function `sigmod`\nline 2 | b = sigmod(a)\n       |     ^^^^^^\nhelp: did you mean `sigmoid`?"
        );
        assert_eq!(error.line_column(), (2, 5));
    }

    #[test]
    fn caret_counts_chars_not_bytes() {
        // "é" and "π" are two bytes each but one column.
        let source = "é + π + $";
        let at = source.find('$').unwrap_or(0);
        let error = ParseError::new(source, Span::new(at, at + 1), "unexpected character `$`");
        assert_eq!(
            error.to_string(),
            "unexpected character `$`\n  | é + π + $\n  |         ^"
        );
    }

    #[test]
    fn empty_span_at_the_end_still_shows_a_caret() {
        let error = ParseError::new("x +", Span::new(3, 3), "m");
        assert_eq!(error.to_string(), "m\n  | x +\n  |    ^");
    }

    #[test]
    fn tabs_are_copied_into_the_caret_line() {
        let error = ParseError::new("\tx )", Span::new(3, 4), "unexpected `)`");
        assert_eq!(error.to_string(), "unexpected `)`\n  | \tx )\n  | \t  ^");
    }

    #[test]
    fn a_span_over_several_lines_is_underlined_on_its_first() {
        let error = ParseError::new("ab\ncd", Span::new(1, 5), "m");
        assert_eq!(error.to_string(), "m\nline 1 | ab\n       |  ^");
    }

    #[test]
    fn bad_spans_are_clamped_onto_char_boundaries() {
        let error = ParseError::new("aé", Span::new(2, 99), "m");
        assert_eq!(error.span, Span::new(1, 3));
        let error = ParseError::new("", Span::new(5, 2), "m");
        assert_eq!(error.span, Span::new(0, 0));
        assert_eq!(error.to_string(), "m\n  |\n  | ^");
        // Fields are public, so Display must cope with a span set by hand.
        let mut error = ParseError::new("é", Span::new(0, 2), "m");
        error.span = Span::new(1, 1000);
        assert_eq!(error.to_string(), "m\n  | é\n  | ^");
    }

    #[test]
    fn crlf_line_endings_are_not_printed() {
        let error = ParseError::new("x\r\ny )", Span::new(5, 6), "m");
        assert_eq!(error.to_string(), "m\nline 2 | y )\n       |   ^");
    }

    #[test]
    fn levenshtein_distances() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("sigmod", "sigmoid"), 1);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
        assert_eq!(levenshtein("héllo", "hello"), 1);
    }

    #[test]
    fn suggestions_are_near_or_nothing() {
        let functions = ["sin", "sinh", "sigmoid", "exp", "tanh"];
        assert_eq!(suggest("sigmod", &functions), Some("sigmoid"));
        assert_eq!(suggest("tanhh", &functions), Some("tanh"));
        // A transposition is two edits, too many for a short name.
        assert_eq!(suggest("tahn", &functions), None);
        // Ties go to the first candidate.
        assert_eq!(suggest("sinx", &functions), Some("sin"));
        assert_eq!(suggest("ex", &functions), Some("exp"));
        assert_eq!(suggest("relu", &functions), None);
        assert_eq!(suggest("x", &[]), None);
        // Long names tolerate more edits: 9 chars allow 3.
        assert_eq!(suggest("sgmdxxxxx", &["sigmoidxx"]), None);
        assert_eq!(suggest("sgmoidxxx", &["sigmoidxx"]), Some("sigmoidxx"));
    }
}
