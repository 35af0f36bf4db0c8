//! Layers too wide for the fused kernels (`act(W @ x + b)` with 300
//! outputs) run their forward pass as one tiled product with the bias and
//! the activation in its epilogue: values, Jacobians and gradients against
//! the CPU path (f64) for every shape of layer the epilogue takes (bias on
//! either side, `x @ W`, an activation with a parameter, no bias, no
//! activation) and for layers it must leave to the nodes (a sum read twice,
//! a per-sample bias); and the dispatch count that shows one kernel ran.

mod common;

use std::sync::Arc;

use chainrule::program::{Kind, Program};
use chainrule::{Backend, ContextOptions, CpuBackend, GpuContext, Reduction};

/// Programs of one layer of 300 outputs from 40 inputs, with how many
/// dispatches their values take on the GPU in one segment: 1 where the
/// epilogue takes the layer, more where it must not.
const LAYERS: [(&str, u64); 8] = [
    ("h = tanh(W @ x + b)", 1),
    ("h = sigmoid(b + W @ x)", 1),
    ("h = leaky_relu(x @ V + b, 0.1)", 1),
    ("h = gelu(W @ x)", 1),
    ("h = W @ x + b", 1),
    // Two layers, the second's input the first's activation.
    ("g = softplus(W @ x + b)\nh = tanh(U @ g + c)", 2),
    // The sum is read twice: the epilogue adds the bias, and the
    // activation and the sum run one by one.
    ("s = W @ x + b\nh = tanh(s) + s", 3),
    // The bias varies by sample: not a layer's bias.
    ("h = tanh(W @ x + t)", 3),
];

const DECLARATIONS: &str =
    "input x[40]  t[300]\nparam W[300,40]  V[40,300]  b[300]  U[300,300]  c[300]\n";

fn variables(
    program: &Program,
    batch: usize,
    rng: &mut rand::rngs::StdRng,
) -> Vec<(String, Vec<f32>)> {
    program
        .variables
        .iter()
        .map(|v| {
            let n = v.shape.size();
            let count = if v.kind == Kind::Input { batch * n } else { n };
            // Weights scaled so that pre-activations stay near one.
            let bound = if v.kind == Kind::Param { 0.15 } else { 1.0 };
            (v.name.clone(), common::uniform(rng, count, -bound, bound))
        })
        .collect()
}

#[test]
fn layers_match_the_cpu_path_in_one_dispatch_each() {
    if common::gpu().is_none() {
        return;
    }
    // A context of the test's own, so that only its dispatches are counted.
    let context = Arc::new(GpuContext::new(&ContextOptions::default()).expect("context"));
    let gpu = Backend::Gpu(Arc::clone(&context));
    let cpu = Backend::Cpu(CpuBackend);
    let mut rng = common::rng("layers");
    for (body, dispatches) in LAYERS {
        let program = Program::parse(&format!("{DECLARATIONS}{body}\noutput h")).expect("parses");
        let loss =
            Program::parse(&format!("{DECLARATIONS}{body}\noutput mean(h * h)")).expect("parses");
        let names: Vec<&str> = (0..loss.variables.len())
            .filter(|&v| loss.variable_node(v).is_some())
            .map(|v| loss.variables[v].name.as_str())
            .collect();
        for batch in [1usize, 130] {
            let vars = variables(&program, batch, &mut rng);
            let bound: Vec<(&str, &[f32])> = vars
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            let label = format!("{body:?}, batch {batch}");

            let before = context.traffic();
            let values = gpu.values(&program, &bound).expect("gpu values");
            let traffic = context.traffic() - before;
            assert_eq!(traffic.dispatches, dispatches, "{label}: dispatches");
            common::close_to_cpu(
                &format!("{label}: values"),
                &values,
                &cpu.values(&program, &bound).expect("cpu values"),
            );

            let (g, c) = (
                gpu.jacobian(&program, "x", &bound).expect("gpu jacobian"),
                cpu.jacobian(&program, "x", &bound).expect("cpu jacobian"),
            );
            let dense = |j: &chainrule::JacobianOutput| -> Vec<f32> {
                let d = j.jacobian.try_to_dense(batch).expect("dense");
                d.into_iter().map(|v| v as f32).collect()
            };
            common::close_to_cpu(&format!("{label}: Jacobian"), &dense(&g), &dense(&c));

            for reduction in [Reduction::Mean, Reduction::PerSample] {
                let (g, c) = (
                    gpu.gradient(&loss, &names, &bound, reduction)
                        .expect("gpu gradient"),
                    cpu.gradient(&loss, &names, &bound, reduction)
                        .expect("cpu gradient"),
                );
                common::close_to_cpu(&format!("{label}: loss"), &g.values, &c.values);
                for (a, b) in g.gradients.iter().zip(&c.gradients) {
                    common::close_to_cpu(
                        &format!("{label}: d/d{} {reduction:?}", a.name),
                        &a.values,
                        &b.values,
                    );
                }
            }
        }
    }
}
