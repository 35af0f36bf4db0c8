//! The syntax tree of the text language's expressions, with the byte span of
//! every node so that later errors can point at the text.

/// A half-open byte range `start..end` in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The range `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Binary operators, in the text language's notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*` (also an implicit product: `3x`, `2(x + 1)`)
    Mul,
    /// `/`
    Div,
    /// `^`, right-associative, binding tighter than unary minus.
    Pow,
    /// `@`, the matrix-vector product, with the precedence and left
    /// associativity of `*` as in NumPy: `W @ x + b` is `(W @ x) + b`, and
    /// `-W @ x` is `(-W) @ x`.
    MatMul,
    /// `<`, giving 1 or 0 per element; comparisons bind more loosely than
    /// `+` and `-` and do not chain.
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl BinOp {
    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::MatMul => "@",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }

    /// Whether this is one of the comparisons `<`, `<=`, `>`, `>=`.
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

/// One node of an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is in the source.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A literal such as `3`, `0.5`, `1e-3`.
    Number(f64),
    /// A variable's name.
    Name(String),
    /// Unary minus.
    Neg(Box<Expr>),
    /// `lhs op rhs`.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `name(args, ...)`.
    Call {
        /// The function's name.
        name: String,
        /// Where the name is, for "unknown function" errors.
        name_span: Span,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `base[i]` (a scalar, `end` is `None`) or `base[start:end]` (a slice,
    /// `end` exclusive), with non-negative integer literals.
    Index {
        /// The indexed expression.
        base: Box<Expr>,
        /// The index, or the slice's first element.
        start: usize,
        /// One past the slice's last element; `None` for a single index.
        end: Option<usize>,
        /// The brackets and what is between them, for bound errors.
        brackets: Span,
    },
    /// `[a, b, ...]`: the elements (scalars or vectors) concatenated into
    /// one vector.
    List(Vec<Expr>),
}
