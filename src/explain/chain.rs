//! Explaining a Jacobian plan: each chain of local Jacobians with its
//! structure, the order the dynamic programme chose, and its cost beside
//! pure forward and pure reverse accumulation.

use std::fmt::Write;

use crate::jacobian::Cost;
use crate::program::{Op, Program};
use crate::schedule::vector::{Factor, JacobianPlan, Step, local_shape, operands};

fn node_name(program: &Program, id: usize) -> String {
    if let Op::Variable(v) = program.nodes[id] {
        return program.variables[v].name.clone();
    }
    program
        .names
        .get(id)
        .cloned()
        .flatten()
        .unwrap_or_else(|| format!("t{id}"))
}

fn factor_name(program: &Program, factor: Factor, wrt: &str) -> String {
    match factor {
        Factor::Local { node, slot } => {
            let operand = operands(&program.nodes[node])
                .get(slot)
                .copied()
                .unwrap_or(node);
            let shape = local_shape(program, node, slot)
                .map_or_else(|_| "?".to_string(), |s| s.to_string());
            format!(
                "d{}/d{} [{shape}]",
                node_name(program, node),
                node_name(program, operand)
            )
        }
        Factor::Shared(node) => format!("d{}/d{wrt} [computed above]", node_name(program, node)),
        Factor::Seed => "seed".to_string(),
    }
}

fn flops(cost: Cost) -> String {
    format!("{:.4e} flops, {:.4e} bytes", cost.flops, cost.bytes)
}

fn write_step(out: &mut String, program: &Program, step: &Step, wrt: &str) {
    let target = node_name(program, step.node);
    let _ = writeln!(
        out,
        "d{target}/d{wrt} [{}] = sum of {} path product(s):",
        step.shape,
        step.terms.len()
    );
    for term in &step.terms {
        let names: Vec<String> = term
            .factors
            .iter()
            .map(|&f| factor_name(program, f, wrt))
            .collect();
        if names.is_empty() {
            let _ = writeln!(out, "  identity (the input itself)");
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
    let mut out = format!(
        "Jacobian of {} with respect to {wrt}, costs for a batch of {}\n\n",
        program.output_name, plan.batch
    );
    for step in &plan.shared {
        out.push_str("Shared by several paths, computed once:\n");
        write_step(&mut out, program, step, &wrt);
        out.push('\n');
    }
    write_step(&mut out, program, &plan.output, &wrt);
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
    let _ = writeln!(
        out,
        "The chosen order needs {:.2}x fewer flops than pure forward and {:.2}x fewer than pure reverse.",
        ratio(plan.forward_cost),
        ratio(plan.reverse_cost)
    );
    out
}
