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

/// A two-operand reduction with a param on the other side (`dot(h, w)`, w
/// a param) has one row for the whole batch: its local Jacobian is Shared,
/// so the planner prices what the backends run (it priced a row per
/// sample). Jacobians and batch-mean gradients on the GPU's paths and the
/// CPU path against the f64 oracle, sample by sample.
#[test]
fn a_param_on_the_other_side_is_one_shared_row() {
    use chainrule::jacobian::Structure;
    use chainrule::program::Op;
    let mut rng = common::rng("a param on the other side");
    let batch = 5;
    let mut backends = vec![(Backend::Cpu(CpuBackend), "cpu")];
    if let Some(context) = common::gpu() {
        backends.push((Backend::Gpu(context), "gpu"));
    }
    for r in ReduceOp::catalogue().into_iter().filter(|r| r.arity() == 2) {
        for n in [7, 300, 1500] {
            let text = format!("input x[{n}]\nparam w[{n}]\nh = sin(x)\noutput {r}(h, w) * 1.5");
            let program = Program::parse(&text).expect("parses");
            let reduction = program
                .nodes
                .iter()
                .position(|op| matches!(op, Op::Reduce(..)))
                .expect("a reduction");
            let local = program.local_jacobian(reduction, 0).expect("local");
            assert_eq!(local.shape.structure, Structure::Shared, "{r}(h, w)");
            let (x, w) = inputs(&mut rng, batch, n);
            let w = &w[..n];
            let vars: [(&str, &[f32]); 2] = [("x", &x), ("w", w)];
            let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&e| f64::from(e)).collect() };
            let x_index = program.variable("x").expect("x");
            let w_index = program.variable("w").expect("w");
            let mut oracle = Vec::new();
            let mut mean_dw = vec![0.0; n];
            for b in 0..batch {
                let at = [wide(&x[b * n..(b + 1) * n]), wide(w)];
                let refs = [at[0].as_slice(), at[1].as_slice()];
                oracle.extend(program.jacobian_dense(&refs, x_index).expect("oracle"));
                let dw = program.jacobian_dense(&refs, w_index).expect("oracle");
                for (m, d) in mean_dw.iter_mut().zip(dw) {
                    *m += d / batch as f64;
                }
            }
            for (backend, path) in &backends {
                let label = format!("{r}(h, w), n = {n}, {path}");
                let got = backend.jacobian(&program, "x", &vars).expect("jacobian");
                let got = got.jacobian.try_to_dense(batch).expect("dense");
                let got: Vec<f32> = got.into_iter().map(|v| v as f32).collect();
                let want: Vec<f32> = oracle.iter().map(|&v| v as f32).collect();
                common::close_to_cpu(&format!("{label}: Jacobian"), &got, &want);
                let gradient = backend
                    .gradient(&program, &["w"], &vars, Reduction::Mean)
                    .expect("gradient");
                let want: Vec<f32> = mean_dw.iter().map(|&v| v as f32).collect();
                common::close_to_cpu(
                    &format!("{label}: d/dw"),
                    &gradient.gradients[0].values,
                    &want,
                );
            }
        }
    }
}
