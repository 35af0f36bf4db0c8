//! The `chainrule` command line: evaluate functions and their derivatives
//! over .npy arrays, explain a derivation step by step, inspect the adapters,
//! list the operations.

mod eval;
mod grad;
mod gradbench;
mod info;
mod jacobian;

use std::path::PathBuf;
use std::process::ExitCode;

use chainrule::graph::{Graph, InputOrder};
use chainrule::{Backend, ContextOptions};
use clap::{Parser, Subcommand};

/// The GPU backend, or the CPU one when asked for or when no adapter exists
/// (announced in one line on stderr).
pub(crate) fn backend(cpu: bool) -> chainrule::Result<Backend> {
    if cpu {
        return Ok(Backend::Cpu(chainrule::CpuBackend));
    }
    let (backend, notice) = Backend::gpu_or_cpu(&ContextOptions::default())?;
    if let Some(notice) = notice {
        eprintln!("{notice}");
    }
    Ok(backend)
}

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
        /// The expression, e.g. 'sin(x)*exp(y)'; it may begin with `-`.
        #[arg(allow_hyphen_values = true)]
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
    /// The batched Jacobian of a program's output with respect to one input.
    #[command(
        after_help = "Example: chainrule jacobian @mlp.txt --input x=X.npy --param W1=w1.npy --param b1=b1.npy \\\n    \
        --param W2=w2.npy --param b2=b2.npy --out J.npy --values Y.npy\n\
        J has shape (B, m, n): batch, then the output's shape, then the input's (a scalar's is empty).\n\
        Inputs are (B, n) arrays ((B,) for a scalar input); parameters have their declared shape."
    )]
    Jacobian {
        /// The program, or @FILE to read it from a file.
        #[arg(allow_hyphen_values = true)]
        program: String,
        /// NAME=FILE.npy for each input.
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// NAME=FILE.npy for each parameter.
        #[arg(long = "param", value_name = "NAME=FILE")]
        params: Vec<String>,
        /// The input to differentiate with respect to (default: the only or first input).
        #[arg(long)]
        wrt: Option<String>,
        /// Where to write the Jacobian.
        #[arg(long, value_name = "FILE.npy")]
        out: PathBuf,
        /// Where to write the output's values, (B, m).
        #[arg(long, value_name = "FILE.npy")]
        values: Option<PathBuf>,
        /// Compute on the CPU (the f64 reference) instead of the GPU.
        #[arg(long)]
        cpu: bool,
    },
    /// Gradients of a program's scalar output (a loss) with respect to
    /// inputs and parameters: the batch mean, or one per sample.
    #[command(
        after_help = "Example: chainrule grad @neuron.txt --input x=X.npy --input t=T.npy --param w=w.npy \\\n    \
        --param b=b.npy --wrt w,b --out-dir grads\n\
        Writes DIR/NAME.npy per variable: a parameter's gradient of the batch mean has its own shape;\n\
        with --per-sample, and for inputs, the batch comes first."
    )]
    Grad {
        /// The program, or @FILE to read it from a file.
        #[arg(allow_hyphen_values = true)]
        program: String,
        /// NAME=FILE.npy for each input.
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// NAME=FILE.npy for each parameter.
        #[arg(long = "param", value_name = "NAME=FILE")]
        params: Vec<String>,
        /// The variables to differentiate, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        wrt: Vec<String>,
        /// One gradient per sample instead of the gradient of the batch mean.
        #[arg(long)]
        per_sample: bool,
        /// The scalar line to differentiate instead of the output, e.g.
        /// `--of a` for a neuron's activation.
        #[arg(long, value_name = "LINE")]
        of: Option<String>,
        /// Where to write the .npy files.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Compute on the CPU (the f64 reference) instead of the GPU.
        #[arg(long)]
        cpu: bool,
    },
    /// The derivation step by step. For an expression: intermediate
    /// variables, local derivatives, paths, and the derivative. For a
    /// program (or @FILE): each chain of local Jacobians, the order chosen
    /// and its cost beside pure forward and pure reverse.
    Explain {
        /// The expression, e.g. 'ln(sin(x^3)^2)', or a program, or @FILE;
        /// it may begin with `-`.
        #[arg(allow_hyphen_values = true)]
        expression: String,
        /// Batch size the chain costs are computed for (programs only).
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        /// The input to differentiate with respect to (programs only).
        #[arg(long)]
        wrt: Option<String>,
    },
    /// Serve GradBench's JSON-lines protocol on stdin and stdout, as a tool
    /// for its evals (modules hello, lse, llsq and ba).
    #[command(
        after_help = "Example: gradbench run --eval \"$ python3 python/gradbench/gradbench/evals/lse/run.py\" \\\n    \
        --tool \"$ chainrule gradbench\"\n\
        Each evaluate runs the function min_runs times and until min_seconds have passed,\n\
        with one \"evaluate\" timing per run (the library call alone, not the JSON)."
    )]
    Gradbench {
        /// Compute on the CPU (the f64 reference) instead of the GPU.
        #[arg(long)]
        cpu: bool,
    },
    /// Every adapter seen, the one chosen, its backend, driver, limits and features.
    Info,
    /// The element-wise operations with their derivatives and kink conventions, and the reductions with their local Jacobian rows.
    Ops,
}

/// The arguments with the one after `--` moved to the end. Every command
/// takes exactly one positional argument (an expression or a program), and
/// `--` is the usual way to pass one that begins with `-`; but clap reads
/// everything after `--` as positional, so `eval -- '-x^2' --input x=x.npy`
/// would reject `--input`. Moving the positional past the options keeps
/// `--` meaning "this is the expression" wherever the options are written.
fn positional_last(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    match args.iter().position(|a| a == "--") {
        Some(at) if at + 2 < args.len() => {
            let moved: Vec<_> = args.drain(at..at + 2).collect();
            args.extend(moved);
            args
        }
        _ => args,
    }
}

/// A reader that stops reading (`chainrule ops | head -5`) closes the pipe;
/// printing then fails, and the command ends quietly, as `cat` does,
/// instead of reporting a panic.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse_from(positional_last(std::env::args_os().collect()));
    let result = match cli.command {
        Command::Eval {
            expression,
            inputs,
            values,
            derivatives,
            cpu,
            unfused,
        } => eval::eval(&expression, &inputs, values, derivatives, cpu, unfused),
        Command::Jacobian {
            program,
            inputs,
            params,
            wrt,
            out,
            values,
            cpu,
        } => jacobian::run(
            &program,
            &inputs,
            &params,
            wrt.as_deref(),
            &out,
            values.as_deref(),
            cpu,
        ),
        Command::Grad {
            program,
            inputs,
            params,
            wrt,
            per_sample,
            of,
            out_dir,
            cpu,
        } => grad::run(
            &program,
            (&inputs, &params),
            grad::Request {
                wrt: &wrt,
                of: of.as_deref(),
                per_sample,
            },
            &out_dir,
            cpu,
        ),
        Command::Explain {
            expression,
            batch,
            wrt,
        } => explain(&expression, batch, wrt.as_deref()),
        Command::Gradbench { cpu } => {
            gradbench::serve(cpu, std::io::stdin().lock(), std::io::stdout().lock())
        }
        Command::Info => info::info(),
        Command::Ops => {
            info::ops();
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

/// A bare expression gets the four-step derivation; a program its chain plan.
fn explain(text: &str, batch: usize, wrt: Option<&str>) -> chainrule::Result<()> {
    let text = jacobian::program_text(text)?;
    if !jacobian::is_program(&text) {
        let graph = Graph::parse(&text, InputOrder::FirstAppearance)?;
        // The four steps give every input's partial; --wrt may only name
        // one of them.
        if let Some(name) = wrt.filter(|name| !graph.inputs().iter().any(|i| i == name)) {
            return Err(chainrule::Error::InvalidArgument(format!(
                "--wrt {name}: not a variable of the expression (it has {}); its explanation \
                 gives every input's partial",
                graph.inputs().join(", ")
            )));
        }
        println!("{}", chainrule::explain::explain(&graph));
        return Ok(());
    }
    let program = chainrule::program::Program::parse(&text)?;
    // Any variable: a param's Jacobian is explained as an input's, a
    // matrix param's through its products.
    let wrt = match wrt {
        Some(name) => program.variable(name).ok_or_else(|| {
            chainrule::Error::InvalidArgument(format!(
                "--wrt {name}: not a variable of the program"
            ))
        })?,
        // The first input, or for a program of params alone the first
        // param.
        None => program
            .inputs()
            .first()
            .copied()
            .or((!program.variables.is_empty()).then_some(0))
            .ok_or_else(|| {
                chainrule::Error::InvalidArgument("the program has no variable".into())
            })?,
    };
    print!(
        "{}",
        chainrule::explain::explain_variable(&program, wrt, batch.max(1))?
    );
    Ok(())
}
