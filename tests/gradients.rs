//! Several gradients of one program in one call (`Backend::gradients`): each
//! request's gradient of its line against the f64 oracle
//! (`Program::jacobian_dense` of `Program::with_output`, itself checked
//! against central differences) and against the request run by itself, on
//! fresh random inputs with the seed printed; the batch-mean share of an
//! input, per-sample and summed destinations in one kernel, a variable the
//! line does not read, and bad requests (an Err, never a panic).

mod common;

use chainrule::program::{Kind, Program};
use chainrule::{
    Backend, ContextOptions, Error, GpuContext, GradientOutput, GradientRequest, Reduction,
};
use common::programs::{backends, bind, central, parse, random_values, relative_error, sample};
use common::{gpu, rng};

const NEURON: &str =
    "input x[16]\ninput t\nparam w[16] b\na = relu(dot(w, x) + b)\nloss = mse(a, t)\noutput loss\n";

const LAYER: &str = "input x[6]\ninput t[3]\nparam W[3,6] c[3]\nh = tanh(W @ x + c)\ns = sum(h * x[0:3])\nloss = mse(h, t) + 0.1 * s\noutput loss\n";

/// W3's requests: the batch-mean gradient of the loss, each sample's
/// gradient of the activation.
const W3: [GradientRequest<'static>; 2] = [
    GradientRequest {
        of: "loss",
        wrt: &["w", "b"],
        reduction: Reduction::Mean,
    },
    GradientRequest {
        of: "a",
        wrt: &["w"],
        reduction: Reduction::PerSample,
    },
];

/// Each request's gradients from the f64 oracle: per sample, the row of
/// the line's Jacobian with respect to each variable, reduced as asked (a
/// param's mean over the batch, an input's share of it: its row over B).
fn oracle(
    program: &Program,
    data: &[Vec<f32>],
    batch: usize,
    request: &GradientRequest<'_>,
) -> Vec<Vec<f64>> {
    let line = program.with_output(request.of).expect("a line");
    request
        .wrt
        .iter()
        .map(|name| {
            let v = line.variable(name).expect("a variable");
            let n = line.variables[v].shape.size();
            let mut rows = Vec::with_capacity(batch * n);
            for b in 0..batch {
                let at = sample(&line, data, b);
                let refs: Vec<&[f64]> = at.iter().map(Vec::as_slice).collect();
                rows.extend(line.jacobian_dense(&refs, v).expect("the oracle"));
            }
            match (request.reduction, line.variables[v].kind) {
                (Reduction::PerSample, _) => rows,
                (Reduction::Mean, Kind::Input) => rows.iter().map(|r| r / batch as f64).collect(),
                (Reduction::Mean, Kind::Param) => {
                    let mut mean = vec![0.0; n];
                    for row in rows.chunks(n) {
                        for (m, r) in mean.iter_mut().zip(row) {
                            *m += r / batch as f64;
                        }
                    }
                    mean
                }
            }
        })
        .collect()
}

/// Checks `requests` on `text` on every backend: each gradient against
/// the oracle and the request by itself, each line's values, and the
/// oracle against central differences at the first sample.
fn check(label: &str, text: &str, requests: &[GradientRequest<'_>], data_seed: &str) {
    let program = parse(text);
    let mut rng = rng(data_seed);
    let batch = 301;
    let data = random_values(&program, batch, (-1.5, 1.5), &mut rng);
    let bound = bind(&program, &data);
    for request in requests {
        // The oracle's row at sample 0 against central differences.
        let line = program.with_output(request.of).expect("a line");
        for name in request.wrt {
            let v = line.variable(name).expect("a variable");
            let at = sample(&line, &data, 0);
            let refs: Vec<&[f64]> = at.iter().map(Vec::as_slice).collect();
            let exact = line.jacobian_dense(&refs, v).expect("the oracle");
            let differences = central(
                |x| {
                    let mut moved = at.clone();
                    moved[v] = x.to_vec();
                    let refs: Vec<&[f64]> = moved.iter().map(Vec::as_slice).collect();
                    line.forward(&refs).expect("forward")[line.output].clone()
                },
                &at[v],
            );
            let error = relative_error(&exact, &differences);
            assert!(
                error < 1e-5,
                "{label}: the oracle of d{}/d{name} against central differences: {error:e}",
                request.of
            );
        }
    }
    for (backend, name) in backends() {
        let outs = backend
            .gradients(&program, requests, &bound)
            .unwrap_or_else(|e| panic!("{label} on the {name}: {e}"));
        assert_eq!(
            outs.len(),
            requests.len(),
            "{label}: one output per request"
        );
        for (request, out) in requests.iter().zip(&outs) {
            let what = format!("{label} on the {name}, d{}", request.of);
            let expected = oracle(&program, &data, batch, request);
            let names: Vec<&str> = out.gradients.iter().map(|g| g.name.as_str()).collect();
            assert_eq!(names, request.wrt, "{what}: in the order asked");
            for (g, e) in out.gradients.iter().zip(&expected) {
                let actual: Vec<f64> = g.values.iter().map(|&v| f64::from(v)).collect();
                let error = relative_error(&actual, e);
                assert!(error < 2e-5, "{what}/d{}: relative error {error:e}", g.name);
            }
            // The request by itself gives the same numbers.
            let line = program.with_output(request.of).expect("a line");
            let alone: GradientOutput = backend
                .gradient(&line, request.wrt, &bound, request.reduction)
                .unwrap_or_else(|e| panic!("{what} alone: {e}"));
            for (g, a) in out.gradients.iter().zip(&alone.gradients) {
                assert_eq!(g.shape, a.shape, "{what}/d{}: shape", g.name);
                let ours: Vec<f64> = g.values.iter().map(|&v| f64::from(v)).collect();
                let theirs: Vec<f64> = a.values.iter().map(|&v| f64::from(v)).collect();
                let error = relative_error(&ours, &theirs);
                assert!(error < 2e-6, "{what}/d{}: against alone {error:e}", g.name);
            }
            // The line's values, sample by sample.
            assert_eq!(out.values.len(), batch, "{what}: a value per sample");
            for (b, &value) in out.values.iter().enumerate() {
                let at = sample(&line, &data, b);
                let refs: Vec<&[f64]> = at.iter().map(Vec::as_slice).collect();
                let expected = line.forward(&refs).expect("forward")[line.output][0];
                assert!(
                    (f64::from(value) - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                    "{what}: value {value} at sample {b}, expected {expected}"
                );
            }
        }
    }
}

#[test]
fn the_neuron_s_mean_loss_gradient_and_per_sample_activation_gradient_together() {
    check("W3", NEURON, &W3, "neuron");
}

#[test]
fn an_input_s_share_of_the_mean_beside_per_sample_gradients() {
    check(
        "shares",
        NEURON,
        &[
            GradientRequest {
                of: "loss",
                wrt: &["x", "w"],
                reduction: Reduction::Mean,
            },
            GradientRequest {
                of: "a",
                wrt: &["x", "b"],
                reduction: Reduction::PerSample,
            },
            GradientRequest {
                of: "loss",
                wrt: &["t"],
                reduction: Reduction::PerSample,
            },
        ],
        "shares",
    );
}

#[test]
fn a_layer_s_lines_with_a_matrix_param() {
    check(
        "layer",
        LAYER,
        &[
            GradientRequest {
                of: "loss",
                wrt: &["W", "c"],
                reduction: Reduction::Mean,
            },
            GradientRequest {
                of: "s",
                wrt: &["x", "W"],
                reduction: Reduction::PerSample,
            },
        ],
        "layer",
    );
}

#[test]
fn a_variable_the_line_does_not_read_has_zero_gradients() {
    let program = parse(NEURON);
    let mut rng = rng("unread");
    let batch = 9;
    let data = random_values(&program, batch, (-1.5, 1.5), &mut rng);
    let bound = bind(&program, &data);
    let requests = [
        GradientRequest {
            of: "a",
            wrt: &["t", "w"],
            reduction: Reduction::PerSample,
        },
        GradientRequest {
            of: "loss",
            wrt: &["t"],
            reduction: Reduction::Mean,
        },
    ];
    for (backend, name) in backends() {
        let outs = backend
            .gradients(&program, &requests, &bound)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = &outs[0].gradients[0];
        assert_eq!(t.shape, [batch], "{name}: da/dt's shape");
        assert!(t.values.iter().all(|&v| v == 0.0), "{name}: da/dt is zero");
        let expected = oracle(&program, &data, batch, &requests[0]);
        let w: Vec<f64> = outs[0].gradients[1]
            .values
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert!(relative_error(&w, &expected[1]) < 2e-5, "{name}: da/dw");
        let expected = oracle(&program, &data, batch, &requests[1]);
        let t: Vec<f64> = outs[1].gradients[0]
            .values
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert!(relative_error(&t, &expected[0]) < 2e-5, "{name}: dloss/dt");
    }
}

#[test]
fn bad_requests_are_errors() {
    let program = parse(NEURON);
    let mut rng = rng("bad requests");
    let data = random_values(&program, 4, (-1.0, 1.0), &mut rng);
    let bound = bind(&program, &data);
    let request = |of, wrt| GradientRequest {
        of,
        wrt,
        reduction: Reduction::Mean,
    };
    let vector = parse("input x[4]\nparam w[4]\nh = w * x\ny = sum(h)\noutput y\n");
    let vector_data = random_values(&vector, 4, (-1.0, 1.0), &mut rng);
    for (backend, name) in backends() {
        let none = backend.gradients(&program, &[], &bound);
        assert!(
            matches!(none, Err(Error::InvalidArgument(_))),
            "{name}: {none:?}"
        );
        let unknown = backend.gradients(&program, &[request("z", &["w"])], &bound);
        match unknown {
            Err(Error::InvalidArgument(why)) => {
                assert!(
                    why.contains("`z`") && why.contains("a and the output `loss`"),
                    "{name}: {why}"
                )
            }
            other => panic!("{name}: an unknown line gave {other:?}"),
        }
        let empty = backend.gradients(&program, &[request("loss", &[])], &bound);
        assert!(
            matches!(empty, Err(Error::InvalidArgument(_))),
            "{name}: {empty:?}"
        );
        let not_a_variable = backend.gradients(&program, &[request("loss", &["q"])], &bound);
        assert!(
            matches!(not_a_variable, Err(Error::InvalidArgument(_))),
            "{name}: {not_a_variable:?}"
        );
        let short = [bound[0], bound[1], bound[2]];
        let missing = backend.gradients(&program, &[request("loss", &["w"])], &short);
        assert!(
            missing.is_err(),
            "{name}: a missing variable gave {missing:?}"
        );
        let vector_bound = bind(&vector, &vector_data);
        let not_scalar = backend.gradients(&vector, &[request("h", &["w"])], &vector_bound);
        assert!(
            matches!(not_scalar, Err(Error::Shape(_))),
            "{name}: {not_scalar:?}"
        );
    }
}

#[test]
fn with_output_prunes_to_the_line() {
    let program = parse(LAYER);
    let s = program.with_output("s").expect("a line");
    assert_eq!(s.output_name, "s");
    assert_eq!(s.variables, program.variables);
    assert!(s.nodes.len() < program.nodes.len());
    assert!(
        s.variable_node(s.variable("t").expect("declared"))
            .is_none()
    );
    let same = program.with_output("loss").expect("the output");
    assert_eq!(same, program);
    assert!(program.with_output("nothing").is_err());
    // A program edited by hand gets an error, not a panic.
    let mut broken = program.clone();
    broken.shapes.truncate(3);
    assert!(broken.with_output("h").is_err());
    assert_eq!(program.line("loss"), Some(program.output));
    assert!(program.line("h").is_some());
}

#[test]
fn one_kernel_serves_every_request_on_the_gpu() {
    // Its own context, so that no other test's dispatches are counted.
    if gpu().is_none() {
        return;
    }
    let context = GpuContext::new(&ContextOptions::default()).expect("a second context");
    let backend = Backend::Gpu(std::sync::Arc::new(context));
    let Backend::Gpu(context) = &backend else {
        unreachable!("built as a GPU backend")
    };
    let program = parse(NEURON);
    let mut rng = rng("one kernel");
    let data = random_values(&program, 1000, (-1.0, 1.0), &mut rng);
    let bound = bind(&program, &data);
    let requests = W3;
    let before = context.traffic();
    backend
        .gradients(&program, &requests, &bound)
        .expect("gradients");
    let used = context.traffic() - before;
    // The fused kernel and the reduction of its partial sums.
    assert_eq!(used.dispatches, 2, "{used:?}");
}
