//! Explaining a Jacobian plan: each chain of local Jacobians with its
//! structure, the order the dynamic programme chose, and its cost beside
//! pure forward and pure reverse accumulation.

use std::fmt::Write;

use crate::error::{Error, Result};
use crate::jacobian::Cost;
use crate::program::{Op, Program, Shape};
use crate::schedule::vector::{Factor, JacobianPlan, Request, Step, local_shape, plan, plan_node};

/// A node's name: the variable's or the assigned one, else its expression
/// written out to a few levels (deeper parts as t<id>).
fn node_name(program: &Program, id: usize) -> String {
    label(program, id, 3)
}

fn label(program: &Program, id: usize, depth: usize) -> String {
    let Some(op) = program.nodes.get(id) else {
        return format!("t{id}");
    };
    if let Op::Variable(v) = *op {
        return program
            .variables
            .get(v)
            .map_or_else(|| format!("t{id}"), |v| v.name.clone());
    }
    if let Some(Some(name)) = program.names.get(id) {
        return name.clone();
    }
    if depth == 0 {
        return format!("t{id}");
    }
    let sub = |n: usize| {
        let text = label(program, n, depth - 1);
        if text.contains(' ') {
            format!("({text})")
        } else {
            text
        }
    };
    match *op {
        // f32, as programs hold constants; past 1e15 or below 1e-5 in
        // scientific notation (f32's largest reads 3.4028235e38, not 39
        // digits).
        Op::Constant(c) => {
            let (c, a) = (c as f32, c.abs());
            if a != 0.0 && !(1e-5..1e15).contains(&a) {
                format!("{c:e}")
            } else {
                format!("{c}")
            }
        }
        Op::Unary(f, a) => match f.parameter() {
            Some(p) => format!("{}({}, {p})", f.name(), label(program, a, depth - 1)),
            None => format!("{}({})", f.name(), label(program, a, depth - 1)),
        },
        Op::Binary(f, a, b) => {
            let symbol = match f {
                crate::ops::BinaryOp::Add => "+",
                crate::ops::BinaryOp::Sub => "-",
                crate::ops::BinaryOp::Mul
                | crate::ops::BinaryOp::StrongMul
                | crate::ops::BinaryOp::ChainMul => "*",
                crate::ops::BinaryOp::Div => "/",
                crate::ops::BinaryOp::Pow => "^",
                crate::ops::BinaryOp::Lt => "<",
                crate::ops::BinaryOp::Le => "<=",
                crate::ops::BinaryOp::Gt => ">",
                crate::ops::BinaryOp::Ge => ">=",
                crate::ops::BinaryOp::Min
                | crate::ops::BinaryOp::Max
                | crate::ops::BinaryOp::Atan2
                | crate::ops::BinaryOp::Xlogy
                | crate::ops::BinaryOp::WhereA
                | crate::ops::BinaryOp::WhereB => {
                    return format!("{}({}, {})", f.name(), sub(a), sub(b));
                }
            };
            format!("{} {symbol} {}", sub(a), sub(b))
        }
        Op::MatVec(w, v) => format!("{} @ {}", sub(w), sub(v)),
        Op::VecMat(w, v) => format!("{} @ {}", sub(v), sub(w)),
        Op::Reduce(r, ..) => {
            let operands: Vec<String> = op
                .operands()
                .map(|o| label(program, o, depth - 1))
                .collect();
            format!("{r}({})", operands.join(", "))
        }
        Op::ShiftMax(a) => format!("{} - max({})", sub(a), label(program, a, depth - 1)),
        Op::Slice(a, start, shape) => match shape {
            Shape::Scalar => format!("{}[{start}]", sub(a)),
            _ => format!("{}[{start}:{}]", sub(a), start + shape.size()),
        },
        Op::Concat(..) => {
            // `[a, b, c]` is nested concatenations: list the leaves.
            let mut parts = Vec::new();
            let mut stack = vec![id];
            while let Some(n) = stack.pop() {
                match program.nodes.get(n) {
                    Some(&Op::Concat(a, b)) if n == id || program.names[n].is_none() => {
                        stack.push(b);
                        stack.push(a);
                    }
                    _ => parts.push(label(program, n, depth - 1)),
                }
            }
            format!("[{}]", parts.join(", "))
        }
        Op::Variable(_) => format!("t{id}"),
    }
}

/// A node's name, parenthesised when it is an expression.
fn wrapped(program: &Program, id: usize) -> String {
    let name = node_name(program, id);
    if name.contains(' ') || name.contains('(') {
        format!("({name})")
    } else {
        name
    }
}

fn factor_name(program: &Program, factor: Factor, wrt: &str) -> String {
    match factor {
        Factor::Local { node, slot } => {
            let operand = program.nodes[node].operands().nth(slot).unwrap_or(node);
            let shape = local_shape(program, node, slot)
                .map_or_else(|_| "?".to_string(), |s| s.to_string());
            // A reduction's row, written from the op table; an
            // element-wise function's diagonal; the matrix of a product.
            let row = match program.nodes[node] {
                Op::Unary(f, a) => format!(
                    " = diag({}'({})), {}'(x) = {}",
                    f.name(),
                    node_name(program, a),
                    f.name(),
                    f.derivative_formula()
                ),
                Op::MatVec(w, _) if slot == 1 => format!(" = {}", node_name(program, w)),
                Op::VecMat(w, _) if slot == 1 => format!(" = {}^T", node_name(program, w)),
                Op::Reduce(r, a, _) => {
                    let names: Vec<String> = program.nodes[node]
                        .operands()
                        .map(|o| node_name(program, o))
                        .collect();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    let n = program.shapes[a].size();
                    format!(" = {}", r.symbolic_partial(&names, slot, Some(n)))
                }
                _ => String::new(),
            };
            format!(
                "d{}/d{} [{shape}]{row}",
                wrapped(program, node),
                wrapped(program, operand)
            )
        }
        Factor::Shared(node) => format!("d{}/d{wrt} [computed above]", wrapped(program, node)),
        Factor::Seed => "seed".to_string(),
    }
}

fn flops(cost: Cost) -> String {
    format!("{:.4e} flops, {:.4e} bytes", cost.flops, cost.bytes)
}

fn write_step(out: &mut String, program: &Program, step: &Step, wrt: &str) {
    let target = wrapped(program, step.node);
    let _ = writeln!(
        out,
        "d{target}/d{wrt} [{}] = sum of {} path product(s):",
        step.shape,
        step.terms.len()
    );
    for (index, term) in step.terms.iter().enumerate() {
        if step.terms.len() > 1 {
            let _ = writeln!(out, "  path {}:", index + 1);
        }
        let names: Vec<String> = term
            .factors
            .iter()
            .map(|&f| factor_name(program, f, wrt))
            .collect();
        if names.is_empty() {
            let _ = writeln!(out, "  identity (the node itself)");
            continue;
        }
        let short: Vec<String> = (1..=names.len()).map(|i| format!("J{i}")).collect();
        for (label, name) in short.iter().zip(&names) {
            let _ = writeln!(out, "  {label} = {name}");
        }
        if let (Some(order), Some(forward), Some(reverse)) =
            (&term.order, &term.forward, &term.reverse)
        {
            let _ = writeln!(
                out,
                "  chosen order   {}: {}",
                order.bracketing.render(&short),
                flops(order.cost)
            );
            let _ = writeln!(
                out,
                "  pure forward   {}: {}",
                forward.bracketing.render(&short),
                flops(forward.cost)
            );
            let _ = writeln!(
                out,
                "  pure reverse   {}: {}",
                reverse.bracketing.render(&short),
                flops(reverse.cost)
            );
        }
    }
}

/// The plan as text.
pub fn explain_plan(program: &Program, plan: &JacobianPlan) -> String {
    let wrt = program
        .variables
        .get(plan.wrt)
        .map_or_else(|| "x".to_string(), |v| v.name.clone());
    plan_text(program, plan, &wrt)
}

/// The Jacobian of the output with respect to variable `wrt`, an input or
/// a param, for a batch of `batch`, as text: its plan; or, for a matrix
/// param, which enters only through products `W @ v` (or `v @ W`), the
/// plan of the Jacobian with respect to each product, and how W's
/// Jacobian follows from it (the outer product with v: Parr and Howard's
/// neuron gradient, one row of W at a time).
///
/// Errors: no such variable; any error of the planner.
pub fn explain_variable(program: &Program, wrt: usize, batch: usize) -> Result<String> {
    let variable = program
        .variables
        .get(wrt)
        .ok_or_else(|| Error::InvalidArgument(format!("there is no variable {wrt}")))?;
    let matrix = matches!(variable.node_shape(), Shape::Matrix(..));
    let node = program.variable_node(wrt);
    let (Some(node), true) = (node, matrix) else {
        let plan = plan(program, wrt, Request::Jacobian, batch)?;
        return Ok(explain_plan(program, &plan));
    };
    let name = &variable.name;
    let y = &program.output_name;
    let mut out = String::new();
    let mut sums = Vec::new();
    for (id, op) in program.nodes.iter().enumerate() {
        let Some((_, v, transposed)) = op.matrix_product().filter(|&(w, ..)| w == node) else {
            continue;
        };
        let product = wrapped(program, id);
        let v = wrapped(program, v);
        let step = plan_node(program, id, Request::Jacobian, batch)?;
        out.push_str(&plan_text(program, &step, &product));
        let _ = writeln!(
            out,
            "\n{name} enters {product}: d{y}_k/d{name}[i, j] = {}",
            if transposed {
                format!("{v}_i (d{y}/d{product})[k, j]")
            } else {
                format!("(d{y}/d{product})[k, i] {v}_j")
            }
        );
        sums.push(if transposed {
            format!("{v} (d{y}/d{product})")
        } else {
            format!("(d{y}/d{product})^T {v}^T")
        });
        out.push('\n');
    }
    if sums.len() > 1 {
        let _ = writeln!(
            out,
            "d{y}_k/d{name}[i, j] is the sum of these {} terms, one for each product.",
            sums.len()
        );
    }
    if program.shapes[program.output] == Shape::Scalar {
        let _ = writeln!(
            out,
            "Per sample, d{y}/d{name} = {}: the outer product of the cotangent and the \
             vector (the batch-mean gradient sums these over the batch, one matrix product).",
            sums.join(" + ")
        );
    }
    Ok(out)
}

fn plan_text(program: &Program, plan: &JacobianPlan, wrt: &str) -> String {
    let mut out = format!(
        "Jacobian of {} with respect to {wrt}, costs for a batch of {}\n\n",
        program.output_name, plan.batch
    );
    for step in &plan.shared {
        out.push_str("Shared by several paths, computed once:\n");
        write_step(&mut out, program, step, wrt);
        out.push('\n');
    }
    write_step(&mut out, program, &plan.output, wrt);
    let _ = writeln!(
        out,
        "\nTotal: chosen {} ; pure forward {} ; pure reverse {}",
        flops(plan.cost),
        flops(plan.forward_cost),
        flops(plan.reverse_cost)
    );
    let ratio = |c: Cost| {
        if plan.cost.flops > 0.0 {
            c.flops / plan.cost.flops
        } else {
            1.0
        }
    };
    // "1.00x fewer" where the orders tie reads as a saving: say so plainly.
    let versus = |c: Cost, order: &str| {
        let r = ratio(c);
        if (r - 1.0).abs() < 5e-3 {
            format!("as many flops as pure {order}")
        } else {
            format!("{r:.2}x fewer flops than pure {order}")
        }
    };
    let _ = writeln!(
        out,
        "The chosen order needs {} and {}.",
        versus(plan.forward_cost, "forward"),
        versus(plan.reverse_cost, "reverse")
    );
    out
}
