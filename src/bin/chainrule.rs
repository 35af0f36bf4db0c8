//! The `chainrule` command line: evaluate functions and their derivatives
//! over .npy arrays, explain a derivation step by step, inspect the adapters,
//! list the operations.

use std::path::PathBuf;
use std::process::ExitCode;

use chainrule::backend::gpu::{self, ADAPTER_NAME_VARIABLE, BACKEND_VARIABLE};
use chainrule::graph::{Graph, InputOrder, Node};
use chainrule::schedule::Fusion;
use chainrule::{Backend, ContextOptions, Error, UnaryOp, npy};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chainrule", version, about = "Derivatives in bulk on the GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Values and every partial derivative of an expression over .npy inputs.
    #[command(
        after_help = "Example: chainrule eval 'ln(sin(x^3)^2)' --input x=x.npy --values y.npy --derivatives d.npy\n\
        Derivatives have shape (N,) for one input and (N, k) for k, columns in the order of --input.\n\
        Inputs may be float32 or float64 (computed in float32 on the GPU); outputs are float32."
    )]
    Eval {
        /// The expression, e.g. 'sin(x)*exp(y)'.
        expression: String,
        /// NAME=FILE.npy, one per variable, a 1-D array of N samples each.
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Where to write the values, shape (N,).
        #[arg(long, value_name = "FILE.npy")]
        values: Option<PathBuf>,
        /// Where to write the derivatives, shape (N,) or (N, k).
        #[arg(long, value_name = "FILE.npy")]
        derivatives: Option<PathBuf>,
        /// Compute on the CPU (the f64 reference) instead of the GPU.
        #[arg(long)]
        cpu: bool,
        /// One kernel per operation instead of one fused kernel (for comparison).
        #[arg(long)]
        unfused: bool,
    },
    /// The derivation step by step: intermediate variables, local
    /// derivatives, paths, and the derivative.
    Explain {
        /// The expression, e.g. 'ln(sin(x^3)^2)'.
        expression: String,
    },
    /// Every adapter seen, the one chosen, its backend, driver, limits and features.
    Info,
    /// The element-wise operations with their derivatives and kink conventions.
    Ops,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval {
            expression,
            inputs,
            values,
            derivatives,
            cpu,
            unfused,
        } => eval(&expression, &inputs, values, derivatives, cpu, unfused),
        Command::Explain { expression } => Graph::parse(&expression, InputOrder::FirstAppearance)
            .map(|graph| {
                println!("{}", chainrule::explain::explain(&graph));
            }),
        Command::Info => info(),
        Command::Ops => {
            ops();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chainrule: {error}");
            ExitCode::FAILURE
        }
    }
}

fn info() -> chainrule::Result<()> {
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

fn ops() {
    println!("{:<18} derivative", "operation");
    for op in UnaryOp::catalogue() {
        println!("{:<18} {}", op.to_string(), op.derivative_formula());
    }
}

/// Splits NAME=FILE.
fn parse_input(text: &str) -> chainrule::Result<(String, PathBuf)> {
    match text.split_once('=') {
        Some((name, path)) if !name.trim().is_empty() && !path.is_empty() => {
            Ok((name.trim().to_string(), PathBuf::from(path)))
        }
        _ => Err(Error::InvalidArgument(format!(
            "--input {text}: expected NAME=FILE.npy, e.g. --input x=x.npy"
        ))),
    }
}

fn eval(
    expression: &str,
    inputs: &[String],
    values_path: Option<PathBuf>,
    derivatives_path: Option<PathBuf>,
    cpu: bool,
    unfused: bool,
) -> chainrule::Result<()> {
    let inputs: Vec<(String, PathBuf)> = inputs
        .iter()
        .map(|text| parse_input(text))
        .collect::<chainrule::Result<_>>()?;
    let names: Vec<String> = inputs.iter().map(|(name, _)| name.clone()).collect();
    if let Some(name) = names
        .iter()
        .enumerate()
        .find_map(|(i, n)| names[..i].contains(n).then_some(n))
    {
        return Err(Error::InvalidArgument(format!(
            "--input {name} is given twice"
        )));
    }
    let graph = Graph::parse(expression, InputOrder::Given(names.clone()))?;
    for (j, name) in names.iter().enumerate() {
        if !graph.nodes().contains(&Node::Input(j)) {
            return Err(Error::InvalidArgument(format!(
                "--input {name} is given but `{name}` does not appear in the expression"
            )));
        }
    }
    let mut columns = Vec::with_capacity(inputs.len());
    for (name, path) in &inputs {
        let array = npy::read(path)?;
        if array.shape.len() != 1 {
            return Err(Error::Shape(format!(
                "--input {name}={}: expected a 1-D array of samples, got shape {:?}",
                path.display(),
                array.shape
            )));
        }
        if let Some((first, first_path, first_len)) = columns
            .first()
            .map(|(n, p, a): &(String, PathBuf, npy::Array)| (n, p, a.data.len()))
        {
            if first_len != array.data.len() {
                return Err(Error::Shape(format!(
                    "--input {name}={} has {} samples but --input {first}={} has {first_len}",
                    path.display(),
                    array.data.len(),
                    first_path.display()
                )));
            }
        }
        columns.push((name.clone(), path.clone(), array));
    }
    let backend = if cpu {
        Backend::Cpu(chainrule::CpuBackend)
    } else {
        let (backend, notice) = Backend::gpu_or_cpu(&ContextOptions::default())?;
        if let Some(notice) = notice {
            eprintln!("{notice}");
        }
        backend
    };
    let refs: Vec<&[f32]> = columns.iter().map(|(_, _, a)| a.data.as_slice()).collect();
    let fusion = if unfused {
        Fusion::Unfused
    } else {
        Fusion::Fused
    };
    let out = backend.evaluate(&graph, &refs, fusion)?;
    let n = out.values.len();
    let k = out.inputs;
    if let Some(path) = &values_path {
        npy::write(path, &[n], &out.values)?;
    }
    if let Some(path) = &derivatives_path {
        let shape: Vec<usize> = if k == 1 { vec![n] } else { vec![n, k] };
        npy::write(path, &shape, &out.derivatives)?;
    }
    if values_path.is_none() && derivatives_path.is_none() {
        // Nothing to write: show the first rows so the call is not wasted.
        let header: Vec<String> = names.iter().map(|name| format!("d/d{name}")).collect();
        println!(
            "{:>6} {:>14} {}",
            "sample",
            "value",
            header
                .iter()
                .map(|h| format!("{h:>14}"))
                .collect::<String>()
        );
        for i in 0..n.min(10) {
            let row: String = (0..k)
                .map(|j| format!("{:>14.7e}", out.derivatives[i * k + j]))
                .collect();
            println!("{i:>6} {:>14.7e} {row}", out.values[i]);
        }
        if n > 10 {
            println!(
                "... {} more; --values and --derivatives write them all",
                n - 10
            );
        }
    }
    eprintln!("evaluated {n} samples on {}", backend.describe());
    Ok(())
}
