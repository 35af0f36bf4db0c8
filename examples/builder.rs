//! W2's two-layer network built in Rust rather than in the text language,
//! and each sample's Jacobian of it on the GPU (or the CPU path where no
//! adapter exists).

use chainrule::program::ProgramBuilder;
use chainrule::{Backend, ContextOptions};

fn main() -> chainrule::Result<()> {
    let mut b = ProgramBuilder::new();
    let x = b.input("x", &[64])?;
    let (w1, b1) = (b.param("W1", &[128, 64])?, b.param("b1", &[128])?);
    let (w2, b2) = (b.param("W2", &[32, 128])?, b.param("b2", &[32])?);
    let h = b.name("h", &(w1.matvec(&x) + &b1).sigmoid())?;
    let y = (w2.matvec(&h) + &b2).tanh();
    let program = b.build("y", &y)?;
    println!("{}\n", b.text("y", &y));

    let (backend, notice) = Backend::gpu_or_cpu(&ContextOptions::default())?;
    if let Some(notice) = notice {
        eprintln!("{notice}");
    }
    let batch = 8;
    let xs: Vec<f32> = (0..batch * 64)
        .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
        .collect();
    let weights = |n: usize, fan_in: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i % 13) as f32 - 6.0) / (6.0 * (fan_in as f32).sqrt()))
            .collect()
    };
    let (w1v, b1v, w2v, b2v) = (
        weights(128 * 64, 64),
        vec![0.1; 128],
        weights(32 * 128, 128),
        vec![0.0; 32],
    );
    let out = backend.jacobian(
        &program,
        "x",
        &[
            ("x", &xs),
            ("W1", &w1v),
            ("b1", &b1v),
            ("W2", &w2v),
            ("b2", &b2v),
        ],
    )?;
    let dense = out.jacobian.to_dense(out.batch);
    println!(
        "{} Jacobians of 32 x 64 on {}; dy0/dx0 of the first sample = {:.6}",
        out.batch,
        backend.describe(),
        dense[0]
    );
    Ok(())
}
