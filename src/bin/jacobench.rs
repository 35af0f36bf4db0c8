//! `jacobench`: the reference workloads of chainrule, timed on the default
//! adapter (or the CPU backend where none exists), each figure beside the
//! floor and the CPU path measured in the same run.

use std::path::PathBuf;
use std::process::ExitCode;

use chainrule::bench::{self, Ceilings, Machine, Settings, graphs, jacobians, plot, w1, w3};
use chainrule::{Backend, ContextOptions, UnaryOp};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// Workloads that exist so far, and what the others wait for.
const WORKLOADS: [(&str, Option<&str>); 5] = [
    ("w1", None),
    ("w2", None),
    ("w3", None),
    ("w4", None),
    ("w5", None),
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
    /// W1 operations separated by `;`, e.g. 'sigmoid;leaky_relu(0.2)'; default: all.
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
    let mut run = Vec::new();
    for name in &wanted {
        match WORKLOADS.iter().find(|(known, _)| known == name) {
            Some((_, None)) => run.push(name.as_str()),
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

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .map_err(|e| e.to_string())?,
    );
    bar.set_message("measuring the ceilings");
    let matmul_size = if settings.quick { 256 } else { 512 };
    let ceilings = Ceilings::measure(&backend, settings.elements(), matmul_size, settings.repeats)
        .map_err(|e| e.to_string())?;
    let mut records = ceilings.records(&machine);
    let mut svg_cases = Vec::new();
    let step = |bar: &ProgressBar, name: &str, what: &str| {
        bar.set_message(format!("{name} {what}"));
        bar.inc(1);
    };
    for name in run {
        let (report_text, cases) = match name {
            "w1" => {
                bar.set_length(ops.len() as u64 + 1);
                bar.set_position(0);
                let report = w1::run(&backend, &ops, settings, ceilings, |what| {
                    step(&bar, "W1", what)
                })
                .map_err(|e| e.to_string())?;
                let chain = graphs::run(
                    "w1",
                    &backend,
                    &[graphs::W1_CHAIN],
                    settings.elements(),
                    ceilings.copy,
                    settings,
                    |what| step(&bar, "W1", what),
                )
                .map_err(|e| e.to_string())?;
                records.extend(report.records(&machine));
                records.extend(chain.records(&machine));
                let mut cases = report.plot_cases();
                cases.extend(chain.plot_cases());
                (format!("{}\n{}", report.table(), chain.table()), cases)
            }
            "w2" | "w3" | "w5" => {
                bar.set_length(match name {
                    "w5" => 8,
                    "w3" => 3,
                    _ => 2,
                });
                bar.set_position(0);
                let report = match name {
                    "w2" => {
                        jacobians::run_w2(&backend, settings, ceilings, |what| step(&bar, "", what))
                    }
                    "w3" => w3::run(&backend, settings, ceilings, |what| step(&bar, "", what)),
                    _ => {
                        jacobians::run_w5(&backend, settings, ceilings, |what| step(&bar, "", what))
                    }
                }
                .map_err(|e| e.to_string())?;
                records.extend(report.records(&machine));
                (report.table(), Vec::new())
            }
            _ => {
                bar.set_length(graphs::W4.len() as u64);
                bar.set_position(0);
                let report = graphs::run(
                    "w4",
                    &backend,
                    &graphs::W4,
                    settings.elements(),
                    ceilings.copy,
                    settings,
                    |what| step(&bar, "W4", what),
                )
                .map_err(|e| e.to_string())?;
                records.extend(report.records(&machine));
                (report.table(), report.plot_cases())
            }
        };
        bar.suspend(|| println!("{report_text}"));
        svg_cases.extend(cases);
    }
    bar.finish_and_clear();
    println!(
        "ceilings: copy {}B/s{}{}",
        bench::si(ceilings.copy),
        ceilings
            .upload
            .map_or(String::new(), |b| format!(", upload {}B/s", bench::si(b))),
        ceilings
            .download
            .map_or(String::new(), |b| format!(", download {}B/s", bench::si(b))),
    );
    println!(
        "         matmul {}flop/s ({matmul_size}^3, chainrule's own kernel)",
        bench::si(ceilings.matmul)
    );
    if let Some(path) = &args.plot {
        let svg = plot::throughput_svg(
            &format!(
                "jacobench: value and derivative, N = {}",
                settings.elements()
            ),
            &format!("{} ({}), {date}", machine.adapter, machine.backend),
            "elem/s",
            &svg_cases,
        );
        std::fs::write(path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("plot written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("{} records written to {}", records.len(), path.display());
    }
    Ok(())
}
