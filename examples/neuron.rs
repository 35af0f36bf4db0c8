//! The seed's neuron, a = max(0, w.x + b), trained by gradient descent on
//! synthetic data with the mean squared error; the loss printed every few
//! steps falls as the weights approach the ones that made the data.
//!
//!     cargo run --release --example neuron [-- --cpu]

use chainrule::program::Program;
use chainrule::{Backend, ContextOptions, CpuBackend, Reduction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PROGRAM: &str = "input x[16]
input t
param w[16] b
a = relu(dot(w, x) + b)
loss = mse(a, t)
output loss
";

fn main() -> chainrule::Result<()> {
    let backend = if std::env::args().any(|a| a == "--cpu") {
        Backend::Cpu(CpuBackend)
    } else {
        let (backend, notice) = Backend::gpu_or_cpu(&ContextOptions::default())?;
        if let Some(notice) = notice {
            eprintln!("{notice}");
        }
        backend
    };
    println!("training on {}", backend.describe());
    let program = Program::parse(PROGRAM)?;
    let mut rng = StdRng::seed_from_u64(7);
    let batch = 4096;
    // The data come from a known neuron, plus a little noise.
    let true_w: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0..1.0)).collect();
    let true_b = 0.5f32;
    let x: Vec<f32> = (0..batch * 16)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let t: Vec<f32> = x
        .chunks(16)
        .map(|xi| {
            let z: f32 = xi.iter().zip(&true_w).map(|(a, b)| a * b).sum::<f32>() + true_b;
            z.max(0.0) + rng.random_range(-0.01..0.01)
        })
        .collect();
    let mut w: Vec<f32> = (0..16).map(|_| rng.random_range(-0.1..0.1)).collect();
    let mut b = [0.1f32];
    let rate = 0.5;
    let mut first = None;
    let mut last = 0.0;
    for step in 0..=200 {
        let out = backend.gradient(
            &program,
            &["w", "b"],
            &[("x", &x), ("t", &t), ("w", &w), ("b", &b)],
            Reduction::Mean,
        )?;
        first.get_or_insert(out.mean);
        last = out.mean;
        if step % 20 == 0 {
            println!("step {step:>3}: loss {:.6}", out.mean);
        }
        for (wi, gi) in w.iter_mut().zip(&out.gradients[0].values) {
            *wi -= rate * gi;
        }
        b[0] -= rate * out.gradients[1].values[0];
    }
    let error: f32 = w
        .iter()
        .zip(&true_w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    println!(
        "loss {:.6} -> {last:.6}; largest weight error {error:.4}, bias {:.4} (true {true_b})",
        first.unwrap_or(last),
        b[0]
    );
    Ok(())
}
