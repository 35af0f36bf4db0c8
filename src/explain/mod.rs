//! Explaining a derivative the way Parr & Howard teach the chain rule in
//! "The Matrix Calculus You Need For Deep Learning", in four steps:
//!
//! 1. introduce an intermediate variable for every operation of the graph
//!    (`u1 = x^3`, `u2 = sin(u1)`, ...);
//! 2. differentiate each one with respect to its own operands only;
//! 3. combine: multiply the local derivatives along every path from an
//!    input to the output and add up the paths (the total-derivative chain
//!    rule, which is where a shared subexpression shows up);
//! 4. write the result in the inputs alone, simplified.
//!
//! ```
//! use chainrule::explain::explain;
//! use chainrule::graph::{Graph, InputOrder};
//!
//! let graph = Graph::parse("x + x^2", InputOrder::FirstAppearance)?;
//! let explanation = explain(&graph);
//! assert_eq!(explanation.derivative(0), "1 + 2*x");
//! println!("{explanation}");
//! # Ok::<(), chainrule::Error>(())
//! ```
//!
//! Kinks follow the conventions of `ops` (JAX's, but abs'(0) = 0), written as Iverson
//! brackets: relu' is `[u > 0]`, and max splits a tie half and half, so
//! d max(a, b)/da is `[a > b] + [a = b]/2`. Formulas are bounded in size and
//! the paths listed are capped, so explaining any graph terminates quickly.

mod chain;
mod rules;
mod symbolic;

use rules::{binary_partials, binary_value, definition, unary_partial, unary_value};

pub use chain::{explain_plan, explain_variable};

use std::fmt;

use crate::graph::{Graph, NodeId};
use crate::program::Op;
use symbolic::Expr;

/// Paths can multiply at every shared node; beyond this many, only the
/// count is given.
const MAX_LISTED_PATHS: usize = 16;

/// Formulas larger than this many symbols are not written out: nobody reads
/// them, and building them for a deep graph could take exponential time.
const MAX_FORMULA_SIZE: usize = 1000;

/// A bound on all the node values together, so that a huge graph of
/// medium-sized formulas cannot exhaust memory either.
const MAX_TOTAL_SIZE: usize = 1_000_000;

/// The four steps of the chain rule for one graph, as text; `Display`
/// prints them in order.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The input names, in the graph's order.
    pub inputs: Vec<String>,
    /// The name given to the output: `y`, or `f` when an input is called `y`.
    pub output: String,
    /// Step 1: `u1 = x^3`, ..., then `y = u4`.
    pub intermediates: Vec<String>,
    /// Step 2: `du1/dx = 3*x^2`, ...
    pub local_derivatives: Vec<String>,
    /// Step 3: for each input, its paths to the output.
    pub paths: Vec<InputPaths>,
    /// Step 4: for each input, the derivative in the inputs alone (`1 + 2*x`).
    pub derivatives: Vec<String>,
    /// The step-4 formulas, for checking them numerically; `None` when too large.
    formulas: Vec<Option<Expr>>,
}

/// Step 3 for one input: how it reaches the output.
#[derive(Debug, Clone)]
pub struct InputPaths {
    /// The input's name.
    pub input: String,
    /// How many paths lead from the input to the output (saturating).
    pub count: u128,
    /// The first few paths, each with its product of local derivatives:
    /// `x -> u1 -> u2: du2/du1 * du1/dx = 1 * (2*x)`.
    pub listed: Vec<String>,
    /// The sum over the paths: `dy/dx = du2/dx + du2/du1 * du1/dx`.
    pub total: String,
}

impl Explanation {
    /// The step-4 derivative with respect to input `input`, such as
    /// `1 + 2*x`; empty when there is no such input.
    pub fn derivative(&self, input: usize) -> &str {
        self.derivatives.get(input).map_or("", String::as_str)
    }

    /// The step-4 derivative with respect to input `input` evaluated at
    /// `point` (one value per input), to check the formula against the f64
    /// reference; `None` when there is no such input or the formula was too
    /// large to write out.
    pub fn evaluate_derivative(&self, input: usize, point: &[f64]) -> Option<f64> {
        let formula = self.formulas.get(input)?.as_ref()?;
        let lookup = |name: &str| {
            let i = self.inputs.iter().position(|n| n == name)?;
            point.get(i).copied()
        };
        formula.evaluate(&lookup)
    }
}

/// One edge from a node down to an operand, with the local partial along
/// it. An operand used in both slots (`x*x`) is one edge whose partial is
/// the sum of both slots' partials.
#[derive(Debug, Clone)]
struct Edge {
    operand: NodeId,
    partial: Expr,
    both_slots: bool,
}

/// A tangent during forward accumulation of the step-4 formulas.
#[derive(Debug, Clone)]
enum Tangent {
    Zero,
    Known(Expr),
    TooLarge,
}

/// Explains how the derivatives of `graph`'s output follow from the chain rule.
pub fn explain(graph: &Graph) -> Explanation {
    let nodes = graph.nodes();
    let inputs = graph.inputs().to_vec();
    let output = graph.output();
    let output_name = output_name(&inputs);
    let prefix = intermediate_prefix(&inputs);

    let mut names: Vec<String> = Vec::with_capacity(nodes.len());
    let mut operations = 0;
    for node in nodes {
        names.push(match *node {
            Op::Variable(i) => inputs.get(i).cloned().unwrap_or_else(|| format!("x{i}")),
            Op::Constant(c) => Expr::Num(c).to_string(),
            // Operations; a graph has only unary and binary ones.
            _ => {
                operations += 1;
                format!("{prefix}{operations}")
            }
        });
    }
    let name = |id: NodeId| names.get(id).map_or("?", String::as_str);
    let symbol = |id: NodeId| match nodes.get(id) {
        Some(Op::Constant(c)) => Some(Expr::Num(*c)),
        _ => Some(Expr::var(name(id))),
    };

    // Steps 1 and 2, in the intermediate variables.
    let mut intermediates = Vec::new();
    let mut local_derivatives = Vec::new();
    let mut symbolic_edges: Vec<Vec<Edge>> = Vec::with_capacity(nodes.len());
    for (id, node) in nodes.iter().enumerate() {
        if let Some(definition) = definition(*node, &symbol) {
            intermediates.push(format!("{} = {definition}", name(id)));
        }
        let edges = edges(*node, &symbol).unwrap_or_default();
        for edge in &edges {
            if matches!(nodes.get(edge.operand), Some(Op::Constant(_))) {
                continue;
            }
            let (u, a) = (name(id), name(edge.operand));
            let note = if edge.both_slots {
                format!("  ({a} is both operands of {u}: the two partials add up)")
            } else {
                String::new()
            };
            local_derivatives.push(format!("d{u}/d{a} = {}{note}", edge.partial));
        }
        symbolic_edges.push(edges);
    }
    intermediates.push(format!("{output_name} = {}", name(output)));

    let paths = inputs
        .iter()
        .enumerate()
        .map(|(j, input)| step_three(graph, &symbolic_edges, &names, j, input, &output_name))
        .collect();
    let formulas = step_four(graph);
    let derivatives = formulas
        .iter()
        .map(|f| match f {
            Some(f) => f.to_string(),
            None => format!("(too large to write out: over {MAX_FORMULA_SIZE} symbols)"),
        })
        .collect();

    Explanation {
        inputs,
        output: output_name,
        intermediates,
        local_derivatives,
        paths,
        derivatives,
        formulas,
    }
}

/// Step 3 for input `j`: its paths to the output, listed up to a cap and
/// counted.
fn step_three(
    graph: &Graph,
    edges: &[Vec<Edge>],
    names: &[String],
    j: usize,
    input: &str,
    y: &str,
) -> InputPaths {
    let start = graph
        .nodes()
        .iter()
        .position(|n| matches!(n, Op::Variable(i) if *i == j));
    let count = start.map_or(0, |s| count_paths(edges, s, graph.output()));
    let found = match start {
        Some(s) if count > 0 => list_paths(graph, edges, s, j),
        _ => Vec::new(),
    };
    let mut listed = Vec::new();
    let mut chains = Vec::new();
    for path in &found {
        let (chain, product) = path_product(path, edges, names);
        let route: Vec<&str> = path
            .iter()
            .map(|&id| names.get(id).map_or("?", String::as_str))
            .collect();
        listed.push(if path.len() < 2 {
            format!("{input}: {y} is {input} itself, the empty product 1")
        } else {
            format!("{}: {chain} = {product}", route.join(" -> "))
        });
        chains.push(chain);
    }
    let d = format!("d{y}/d{input}");
    let total = if count == 0 {
        format!("{d} = 0")
    } else if count > found.len() as u128 {
        format!("{d} = the sum of all {} path products", count_text(count))
    } else {
        format!("{d} = {}", chains.join(" + "))
    };
    InputPaths {
        input: input.to_string(),
        count,
        listed,
        total,
    }
}

/// Step 4: every node's value in the inputs alone, then forward
/// accumulation of symbolic tangents, one input at a time; `None` for a
/// formula that grew too large.
fn step_four(graph: &Graph) -> Vec<Option<Expr>> {
    let nodes = graph.nodes();
    let mut values: Vec<Option<Expr>> = Vec::with_capacity(nodes.len());
    let mut total_size = 0usize;
    for node in nodes {
        let value_of = |id: NodeId| values.get(id).cloned().flatten();
        let value = match *node {
            Op::Variable(i) => graph.inputs().get(i).map(|n| Expr::var(n)),
            Op::Constant(c) => Some(Expr::Num(c)),
            Op::Unary(op, a) => value_of(a).map(|a| unary_value(op, a)),
            Op::Binary(op, a, b) => match (value_of(a), value_of(b)) {
                (Some(a), Some(b)) => Some(binary_value(op, a, b)),
                _ => None,
            },
            _ => None,
        };
        let value = value.filter(|v| v.size() <= MAX_FORMULA_SIZE);
        total_size += value.as_ref().map_or(0, Expr::size);
        values.push(value.filter(|_| total_size <= MAX_TOTAL_SIZE));
    }
    let value_of = |id: NodeId| values.get(id).cloned().flatten();
    let value_edges: Vec<Option<Vec<Edge>>> = nodes.iter().map(|n| edges(*n, &value_of)).collect();
    (0..graph.inputs().len())
        .map(|j| match tangent(graph, &value_edges, j) {
            Tangent::Zero => Some(Expr::Num(0.0)),
            Tangent::Known(e) => Some(e),
            Tangent::TooLarge => None,
        })
        .collect()
}

/// `y`, unless an input already has that name.
fn output_name(inputs: &[String]) -> String {
    let taken = |n: &str| inputs.iter().any(|i| i == n);
    if let Some(name) = ["y", "f", "g", "h"].into_iter().find(|n| !taken(n)) {
        return name.to_string();
    }
    let mut name = "out".to_string();
    while taken(&name) {
        name.push('_');
    }
    name
}

/// `u`, unless an input looks like an intermediate (`u1`), which would make
/// the steps ambiguous.
fn intermediate_prefix(inputs: &[String]) -> String {
    let clashes = |prefix: &str| {
        inputs.iter().any(|i| {
            i.strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    if let Some(p) = ["u", "v", "w", "t"].into_iter().find(|p| !clashes(p)) {
        return p.to_string();
    }
    let mut prefix = "u_".to_string();
    while clashes(&prefix) {
        prefix.push('_');
    }
    prefix
}

fn count_text(count: u128) -> String {
    if count == u128::MAX {
        "more than 10^38".to_string()
    } else {
        count.to_string()
    }
}

/// A node's edges to its operands, with `operand` giving each operand's
/// expression (a name for steps 2 and 3, a value for step 4); `None` when
/// an operand has none.
fn edges(node: Op, operand: &dyn Fn(NodeId) -> Option<Expr>) -> Option<Vec<Edge>> {
    Some(match node {
        Op::Unary(op, a) => vec![Edge {
            operand: a,
            partial: unary_partial(op, &operand(a)?),
            both_slots: false,
        }],
        Op::Binary(op, a, b) => {
            let (pa, pb) = binary_partials(op, &operand(a)?, &operand(b)?);
            if a == b {
                vec![Edge {
                    operand: a,
                    partial: Expr::add(vec![pa, pb]),
                    both_slots: true,
                }]
            } else {
                vec![
                    Edge {
                        operand: a,
                        partial: pa,
                        both_slots: false,
                    },
                    Edge {
                        operand: b,
                        partial: pb,
                        both_slots: false,
                    },
                ]
            }
        }
        // Variables and constants; a graph has no other node.
        _ => Vec::new(),
    })
}

/// How many paths lead from `start` to `end`: operands come before users,
/// so one pass in node order counts them all.
fn count_paths(edges: &[Vec<Edge>], start: NodeId, end: NodeId) -> u128 {
    let mut counts: Vec<u128> = Vec::with_capacity(edges.len());
    for (id, node_edges) in edges.iter().enumerate() {
        let count = if id == start {
            1
        } else {
            node_edges.iter().fold(0u128, |sum, e| {
                sum.saturating_add(counts.get(e.operand).copied().unwrap_or(0))
            })
        };
        counts.push(count);
    }
    counts.get(end).copied().unwrap_or(0)
}

/// The first paths from input node `start` (input `j`) to the output, each
/// listed from the input up. Depth-first from the output with an explicit
/// stack, so a deep graph cannot overflow the call stack; every node lies on
/// a path to the output, so each branch followed ends in a path.
fn list_paths(graph: &Graph, edges: &[Vec<Edge>], start: NodeId, j: usize) -> Vec<Vec<NodeId>> {
    let depends = |id: NodeId| graph.deps(id).binary_search(&j).is_ok();
    let mut found = Vec::new();
    let mut stack: Vec<(NodeId, usize)> = vec![(graph.output(), 0)];
    while found.len() < MAX_LISTED_PATHS {
        let Some(&(node, next)) = stack.last() else {
            break;
        };
        if node == start {
            found.push(stack.iter().rev().map(|&(id, _)| id).collect());
            stack.pop();
            continue;
        }
        let child = edges
            .get(node)
            .and_then(|es| es.iter().filter(|e| depends(e.operand)).nth(next))
            .map(|e| e.operand);
        if let Some(top) = stack.last_mut() {
            top.1 += 1;
        }
        match child {
            Some(c) => stack.push((c, 0)),
            None => {
                stack.pop();
            }
        }
    }
    found
}

/// A path's chain of partials (`du2/du1 * du1/dx`) and its product of local
/// derivatives (`1 * (2*x)`), output end first as the chain rule writes it.
fn path_product(path: &[NodeId], edges: &[Vec<Edge>], names: &[String]) -> (String, String) {
    let name = |id: NodeId| names.get(id).map_or("?", String::as_str);
    if path.len() < 2 {
        // The output is the input itself: the empty product.
        return ("1".to_string(), "1".to_string());
    }
    let mut chain = Vec::new();
    let mut product = Vec::new();
    for pair in path.windows(2).rev() {
        let [a, u] = pair else { continue };
        chain.push(format!("d{}/d{}", name(*u), name(*a)));
        let partial = edges
            .get(*u)
            .and_then(|es| es.iter().find(|e| e.operand == *a))
            .map_or(Expr::var("?"), |e| e.partial.clone());
        product.push(partial);
    }
    let product = match product.as_slice() {
        [single] => single.to_string(),
        factors => {
            let texts: Vec<String> = factors.iter().map(Expr::as_factor).collect();
            texts.join(" * ")
        }
    };
    (chain.join(" * "), product)
}

/// The derivative of the output with respect to input `j`: each node's
/// tangent is the sum over its edges of local partial times the operand's
/// tangent (forward mode, as the GPU computes it, but in symbols).
fn tangent(graph: &Graph, value_edges: &[Option<Vec<Edge>>], j: usize) -> Tangent {
    let mut tangents: Vec<Tangent> = Vec::with_capacity(graph.nodes().len());
    for (id, node) in graph.nodes().iter().enumerate() {
        let t = match node {
            Op::Variable(i) if *i == j => Tangent::Known(Expr::Num(1.0)),
            _ if graph.deps(id).binary_search(&j).is_err() => Tangent::Zero,
            _ => match value_edges.get(id) {
                Some(Some(edges)) => accumulate(edges, &tangents),
                _ => Tangent::TooLarge,
            },
        };
        tangents.push(t);
    }
    tangents
        .get(graph.output())
        .cloned()
        .unwrap_or(Tangent::Zero)
}

fn accumulate(edges: &[Edge], tangents: &[Tangent]) -> Tangent {
    let mut terms = Vec::with_capacity(edges.len());
    for edge in edges {
        match tangents.get(edge.operand) {
            Some(Tangent::Known(t)) => {
                terms.push(Expr::mul(vec![edge.partial.clone(), t.clone()]));
            }
            Some(Tangent::TooLarge) => return Tangent::TooLarge,
            Some(Tangent::Zero) | None => {}
        }
    }
    let sum = Expr::add(terms);
    if sum.size() > MAX_FORMULA_SIZE {
        Tangent::TooLarge
    } else {
        Tangent::Known(sum)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let y = &self.output;
        writeln!(f, "Step 1. Introduce intermediate variables")?;
        for line in &self.intermediates {
            writeln!(f, "    {line}")?;
        }
        writeln!(f)?;
        writeln!(f, "Step 2. Local derivatives")?;
        if self.local_derivatives.is_empty() {
            writeln!(f, "    (no operations)")?;
        }
        for line in &self.local_derivatives {
            writeln!(f, "    {line}")?;
        }
        if self.local_derivatives.iter().any(|l| l.contains('[')) {
            writeln!(
                f,
                "    ([p] is 1 where p holds and 0 elsewhere; at a kink this follows JAX: \
                 relu'(0) = 0, and max and min split a tie half and half)"
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "Step 3. Combine: products along each path, sums across paths"
        )?;
        for p in &self.paths {
            let x = &p.input;
            match p.count {
                0 => writeln!(f, "    {y} does not depend on {x}")?,
                1 => writeln!(
                    f,
                    "    {x} reaches {y} along 1 path: multiply the local derivatives along it"
                )?,
                n => writeln!(
                    f,
                    "    {x} reaches {y} along {} paths; their contributions are summed \
                     (total-derivative chain rule)",
                    count_text(n)
                )?,
            }
            for line in &p.listed {
                writeln!(f, "        {line}")?;
            }
            let omitted = p.count.saturating_sub(p.listed.len() as u128);
            if omitted > 0 {
                writeln!(f, "        ... and {} more not listed", count_text(omitted))?;
            }
            writeln!(f, "    {}", p.total)?;
        }
        if self.paths.is_empty() {
            writeln!(f, "    (no inputs)")?;
        }
        writeln!(f)?;
        writeln!(f, "Step 4. The derivative")?;
        if self.inputs.is_empty() {
            writeln!(
                f,
                "    {y} is a constant with no inputs: its derivative is 0"
            )?;
        }
        for (x, d) in self.inputs.iter().zip(&self.derivatives) {
            writeln!(f, "    d{y}/d{x} = {d}")?;
        }
        Ok(())
    }
}
