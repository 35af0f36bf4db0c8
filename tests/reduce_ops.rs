//! Every reduction of the op table (`ReduceOp::catalogue()`, so a new entry
//! is tested without a new test), composed with element-wise operations, on
//! each GPU path: the fused kernels (a vector of 7), the op-by-op path's
//! per-sample loops (300) and its row kernels (1500, past one loop's
//! length). Values, Jacobians, JVPs, VJPs and per-sample gradients against
//! the CPU path (f64), and the gradients against central differences of the
//! f64 oracle, on fresh random inputs with the seed printed.

mod common;

use chainrule::ops::ReduceOp;
use chainrule::program::Program;
use chainrule::{Backend, CpuBackend, Reduction};
use rand::rngs::StdRng;

/// `r` of a vector computed from x and w (and, for two operands, of x
/// itself), so that the reduction meets an element-wise region and every
/// operand depends on x.
fn program_for(r: ReduceOp, n: usize) -> String {
    let operands = if r.arity() == 2 { "h, x" } else { "h" };
    format!("input x[{n}]\ninput w[{n}]\nh = sin(x) * w\noutput {r}({operands}) * 1.5")
}

fn inputs(rng: &mut StdRng, batch: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    (
        common::uniform(rng, batch * n, 0.1, 1.4),
        common::uniform(rng, batch * n, 0.5, 1.2),
    )
}

#[test]
fn every_reduction_on_every_gpu_path_matches_the_cpu_path() {
    let Some(context) = common::gpu() else {
        return;
    };
    let gpu = Backend::Gpu(context);
    let cpu = Backend::Cpu(CpuBackend);
    let mut rng = common::rng("every reduction");
    let batch = 19;
    for r in ReduceOp::catalogue() {
        for n in [7, 300, 1500] {
            let text = program_for(r, n);
            let program = Program::parse(&text).expect("parses");
            let (x, w) = inputs(&mut rng, batch, n);
            let vars: [(&str, &[f32]); 2] = [("x", &x), ("w", &w)];
            let label = format!("{r}, n = {n}");

            let (g, c) = (
                gpu.jacobian(&program, "x", &vars).expect("gpu jacobian"),
                cpu.jacobian(&program, "x", &vars).expect("cpu jacobian"),
            );
            common::close_to_cpu(&format!("{label}: values"), &g.values, &c.values);
            let dense = |j: &chainrule::JacobianOutput| -> Vec<f32> {
                let d = j.jacobian.try_to_dense(batch).expect("dense");
                d.into_iter().map(|v| v as f32).collect()
            };
            common::close_to_cpu(&format!("{label}: Jacobian"), &dense(&g), &dense(&c));

            let tangents = common::uniform(&mut rng, batch * n, -1.0, 1.0);
            common::close_to_cpu(
                &format!("{label}: JVP"),
                &gpu.jvp(&program, "x", &vars, &tangents).expect("gpu jvp"),
                &cpu.jvp(&program, "x", &vars, &tangents).expect("cpu jvp"),
            );
            let cotangents = common::uniform(&mut rng, batch, -1.0, 1.0);
            common::close_to_cpu(
                &format!("{label}: VJP"),
                &gpu.vjp(&program, "x", &vars, &cotangents).expect("gpu vjp"),
                &cpu.vjp(&program, "x", &vars, &cotangents).expect("cpu vjp"),
            );

            let names = ["x", "w"];
            let (g, c) = (
                gpu.gradient(&program, &names, &vars, Reduction::PerSample)
                    .expect("gpu gradient"),
                cpu.gradient(&program, &names, &vars, Reduction::PerSample)
                    .expect("cpu gradient"),
            );
            for (a, b) in g.gradients.iter().zip(&c.gradients) {
                common::close_to_cpu(&format!("{label}: d/d{}", a.name), &a.values, &b.values);
            }

            // Sample 0's gradients against central differences of the oracle.
            let point = [
                x[..n].iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                w[..n].iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            ];
            let value = |p: &[Vec<f64>; 2]| -> f64 {
                let values = program.forward(&[&p[0], &p[1]]).expect("forward");
                values[program.output][0]
            };
            for (v, gradient) in g.gradients.iter().enumerate() {
                for e in [0, n / 2, n - 1] {
                    let h = 1e-5;
                    let (mut up, mut down) = (point.clone(), point.clone());
                    up[v][e] += h;
                    down[v][e] -= h;
                    let expected = (value(&up) - value(&down)) / (2.0 * h);
                    let got = f64::from(gradient.values[e]);
                    assert!(
                        (got - expected).abs() <= 1e-3 * expected.abs().max(1e-2),
                        "{label}: d/d{}[{e}] gpu {got} vs central difference {expected}",
                        gradient.name
                    );
                }
            }
        }
    }
}
