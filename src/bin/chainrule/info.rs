//! `chainrule info` and `chainrule ops`.

use chainrule::ContextOptions;
use chainrule::UnaryOp;
use chainrule::backend::gpu::{self, ADAPTER_NAME_VARIABLE, BACKEND_VARIABLE};
use chainrule::ops::{BinaryOp, ReduceOp};
use chainrule::program::VECTOR_FUNCTIONS;

pub(crate) fn info() -> chainrule::Result<()> {
    let options = ContextOptions::default();
    let (adapters, chosen) = pollster::block_on(gpu::survey_adapters(&options))?;
    for variable in [BACKEND_VARIABLE, ADAPTER_NAME_VARIABLE] {
        match std::env::var(variable) {
            Ok(value) => println!("{variable}={value}"),
            Err(_) => println!("{variable} unset"),
        }
    }
    println!("adapters seen: {}", adapters.len());
    for (i, adapter) in adapters.iter().enumerate() {
        let mark = if chosen.as_ref().ok() == Some(&i) {
            "*"
        } else {
            " "
        };
        println!(
            "{mark} [{i}] {} ({}, {}, driver {} {})",
            adapter.name, adapter.backend, adapter.device_type, adapter.driver, adapter.driver_info
        );
    }
    let index = chosen?;
    let adapter = &adapters[index];
    println!(
        "\nchosen: [{index}] {} on {}",
        adapter.name, adapter.backend
    );
    let context = chainrule::GpuContext::new(&options)?;
    let limits = context.limits();
    println!(
        "planning limits: binding {} B, buffer {} B, {} workgroups per dimension",
        limits.max_binding_bytes, limits.max_buffer_bytes, limits.max_workgroups_per_dimension
    );
    println!("\nlimits:");
    for (name, value) in &adapter.limits {
        println!("  {name}: {value}");
    }
    println!("\nfeatures:");
    if adapter.features.is_empty() {
        println!("  (none)");
    }
    for feature in &adapter.features {
        println!("  {feature}");
    }
    Ok(())
}

pub(crate) fn ops() {
    println!("{:<22} derivative", "operation");
    for op in UnaryOp::catalogue() {
        // As the language writes it: a parameter with a default may be
        // left out (`leaky_relu(x)`); pow's may not.
        let call = match op.parameter() {
            Some(p) if op.name().parse::<UnaryOp>().is_ok() => format!("{}(x[, {p}])", op.name()),
            Some(_) => format!("{}(x, p)", op.name()),
            None => op.name().to_string(),
        };
        println!("{call:<22} {}", op.derivative_formula());
    }
    println!("\n{:<22} d/da, d/db", "two arguments");
    for (op, written) in BinaryOp::written() {
        let [da, db] = op.partial_formulas();
        println!("{written:<22} {da}, {db}");
    }
    println!(
        "{:<22} 1 where c != 0, 1 where c = 0 (0 in c)",
        "where(c, a, b)"
    );
    println!(
        "\n{:<22} local Jacobian row, of a vector of length n (Parr and Howard 4.6)",
        "reduction"
    );
    for r in ReduceOp::catalogue() {
        let names: &[&str] = if r.arity() == 2 { &["a", "b"] } else { &["x"] };
        let rows: Vec<String> = (0..r.arity())
            .map(|slot| {
                let row = r.symbolic_partial(names, slot, None);
                if r.arity() == 2 {
                    format!("{row} in {}", names[slot])
                } else {
                    row
                }
            })
            .collect();
        let call = format!("{r}({})", names.join(", "));
        println!("{call:<22} {}", rows.join(", "));
    }
    println!(
        "\n{:<22} derivative (lowered to the reductions and selections)",
        "vector function"
    );
    for (call, derivative) in VECTOR_FUNCTIONS {
        println!("{call:<22} {derivative}");
    }
}
