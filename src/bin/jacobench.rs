//! `jacobench`: the reference workloads of chainrule, timed on the default
//! adapter (or the CPU backend where none exists), each figure beside the
//! floor and the CPU path measured in the same run.

use std::path::PathBuf;
use std::process::ExitCode;

use chainrule::bench::{self, Machine, Settings, plot, w1};
use chainrule::{Backend, ContextOptions, UnaryOp};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// Workloads that exist so far, and what the others wait for.
const WORKLOADS: [(&str, Option<&str>); 5] = [
    ("w1", None),
    ("w2", Some("batched Jacobians of vector functions")),
    ("w3", Some("gradients of scalar losses")),
    ("w4", Some("element-wise function graphs")),
    ("w5", Some("the Jacobian chain scheduler")),
];

#[derive(Parser)]
#[command(
    name = "jacobench",
    version,
    about = "Benchmarks chainrule's reference workloads on the default adapter",
    after_help = "Environment: WGPU_BACKEND (vulkan, gl, ...) and WGPU_ADAPTER_NAME choose the adapter."
)]
struct Args {
    /// Every workload available (the default when no --workload is given).
    #[arg(long)]
    all: bool,
    /// Comma-separated workloads, e.g. w1.
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Shrink every size 16-fold so a run takes seconds.
    #[arg(long)]
    quick: bool,
    /// Timed repeats per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Elements per W1 call instead of 2^24.
    #[arg(long)]
    elements: Option<usize>,
    /// W1 operations, e.g. sigmoid,leaky_relu(0.2); default: all.
    #[arg(long, value_delimiter = ';')]
    ops: Vec<String>,
    /// Use the CPU backend even where a GPU exists.
    #[arg(long)]
    cpu: bool,
    /// Write every figure as a JSON array of records.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw each case's throughput beside the floor as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("jacobench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let wanted: Vec<String> = if args.all || args.workload.is_empty() {
        WORKLOADS.iter().map(|(name, _)| name.to_string()).collect()
    } else {
        args.workload
            .iter()
            .map(|w| w.trim().to_lowercase())
            .collect()
    };
    let mut run_w1 = false;
    for name in &wanted {
        match WORKLOADS.iter().find(|(known, _)| known == name) {
            Some((_, None)) => run_w1 = true,
            Some((_, Some(waits_for))) if args.all || args.workload.is_empty() => {
                println!("{name}: not measured yet; it arrives with {waits_for}");
            }
            Some((_, Some(waits_for))) => {
                return Err(format!(
                    "{name} is not available yet; it arrives with {waits_for}"
                ));
            }
            None => return Err(format!("unknown workload `{name}`; known: w1 .. w5")),
        }
    }
    let ops: Vec<UnaryOp> = if args.ops.is_empty() {
        UnaryOp::catalogue()
    } else {
        args.ops
            .iter()
            .map(|text| text.parse().map_err(|e: chainrule::Error| e.to_string()))
            .collect::<Result<_, _>>()?
    };

    let backend = if args.cpu {
        Backend::Cpu(chainrule::CpuBackend)
    } else {
        let (backend, notice) =
            Backend::gpu_or_cpu(&ContextOptions::default()).map_err(|e| e.to_string())?;
        if let Some(notice) = notice {
            eprintln!("{notice}");
        }
        backend
    };
    let machine = Machine::of(&backend);
    let date = bench::today();
    println!("jacobench on {} ({date})", backend.describe());
    if machine.adapter.to_lowercase().contains("llvmpipe") {
        println!(
            "note: llvmpipe is a software rasteriser on the CPU; its figures say little about GPU speed"
        );
    }
    let settings = Settings {
        quick: args.quick,
        repeats: args.repeats,
        elements: args.elements,
    };

    let mut records = Vec::new();
    if run_w1 {
        let bar = ProgressBar::new(ops.len() as u64 + 1);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} W1 {msg} [{elapsed}]")
                .map_err(|e| e.to_string())?,
        );
        let report = w1::run(&backend, &ops, settings, |step| {
            bar.set_message(step.to_string());
            bar.inc(1);
        })
        .map_err(|e| e.to_string())?;
        bar.finish_and_clear();
        print!("{}", report.table());
        records.extend(report.records(&machine));
        if let Some(path) = &args.plot {
            let svg = plot::throughput_svg(
                &format!("W1: value and derivative, N = {}", report.elements),
                &format!("{} ({}), {date}", machine.adapter, machine.backend),
                "elem/s",
                &report.plot_cases(),
            );
            std::fs::write(path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
            println!("plot written to {}", path.display());
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("{} records written to {}", records.len(), path.display());
    }
    Ok(())
}
