//! `chainrule info` and `chainrule ops`.

use chainrule::ContextOptions;
use chainrule::UnaryOp;
use chainrule::backend::gpu::{self, ADAPTER_NAME_VARIABLE, BACKEND_VARIABLE};
use chainrule::ops::ReduceOp;

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
    println!("{:<18} derivative", "operation");
    for op in UnaryOp::catalogue() {
        println!("{:<18} {}", op.to_string(), op.derivative_formula());
    }
    println!(
        "\n{:<18} local Jacobian row, of a vector of length n (Parr and Howard 4.6)",
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
        println!("{call:<18} {}", rows.join(", "));
    }
}
