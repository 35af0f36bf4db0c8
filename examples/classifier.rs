//! A small two-layer classifier trained with cross-entropy by gradient
//! descent on synthetic data (four Gaussian clusters in 8 dimensions); the
//! loss falls and the accuracy rises.
//!
//!     cargo run --release --example classifier [-- --cpu]

use chainrule::program::Program;
use chainrule::{Backend, ContextOptions, CpuBackend, Reduction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PROGRAM: &str = "input x[8]
input t[4]
param W1[16,8] b1[16] W2[4,16] b2[4]
h = tanh(W1 @ x + b1)
z = W2 @ h + b2
loss = cross_entropy(z, t)
output loss
";

const LOGITS: &str = "input x[8]
param W1[16,8] b1[16] W2[4,16] b2[4]
z = W2 @ tanh(W1 @ x + b1) + b2
output z
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
    let logits = Program::parse(LOGITS)?;
    let mut rng = StdRng::seed_from_u64(11);
    let (batch, classes) = (2048, 4);
    let centres: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..8).map(|_| rng.random_range(-2.0..2.0)).collect())
        .collect();
    let mut x = Vec::with_capacity(batch * 8);
    let mut t = vec![0f32; batch * classes];
    let mut labels = Vec::with_capacity(batch);
    for i in 0..batch {
        let class = i % classes;
        labels.push(class);
        t[i * classes + class] = 1.0;
        x.extend(
            centres[class]
                .iter()
                .map(|c| c + rng.random_range(-1.0..1.0)),
        );
    }
    let mut init = |n: usize, fan_in: usize| -> Vec<f32> {
        let bound = 1.0 / (fan_in as f32).sqrt();
        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
    };
    let mut params = [init(16 * 8, 8), init(16, 8), init(4 * 16, 16), init(4, 16)];
    let names = ["W1", "b1", "W2", "b2"];
    let rate = 0.5;
    for step in 0..=100 {
        let mut variables: Vec<(&str, &[f32])> = vec![("x", &x), ("t", &t)];
        variables.extend(names.iter().zip(&params).map(|(n, p)| (*n, p.as_slice())));
        let out = backend.gradient(&program, &names, &variables, Reduction::Mean)?;
        if step % 10 == 0 {
            let z = backend.jacobian(
                &logits,
                "x",
                &variables[..1]
                    .iter()
                    .chain(&variables[2..])
                    .copied()
                    .collect::<Vec<_>>(),
            )?;
            let correct = z
                .values
                .chunks(classes)
                .zip(&labels)
                .filter(|(row, label)| {
                    let best = row
                        .iter()
                        .enumerate()
                        .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
                    best.0 == **label
                })
                .count();
            println!(
                "step {step:>3}: loss {:.5}, accuracy {:.1}%",
                out.mean,
                100.0 * correct as f64 / batch as f64
            );
        }
        for (param, gradient) in params.iter_mut().zip(&out.gradients) {
            for (p, g) in param.iter_mut().zip(&gradient.values) {
                *p -= rate * g;
            }
        }
    }
    Ok(())
}
