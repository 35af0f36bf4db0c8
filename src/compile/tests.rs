//! The generated WGSL is valid for every shape of request, checked by naga
//! without an adapter.

use super::*;

fn validate(source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{}\n{source}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{e:?}\n{source}"));
}

fn compile(text: &str, wrt: &[(&str, Destination)]) -> FusedGradient {
    let program = Program::parse(text).expect("parses");
    let wrt: Vec<(usize, Destination)> = wrt
        .iter()
        .map(|&(name, d)| (program.variable(name).expect("declared"), d))
        .collect();
    gradient(&program, &wrt, true).expect("compiles")
}

#[test]
fn neuron_loss_compiles_to_valid_wgsl() {
    let plan = compile(
        "input x[16]\ninput t\nparam w[16] b\na = relu(dot(w, x) + b)\nloss = mse(a, t)\noutput loss",
        &[
            ("w", Destination::Summed),
            ("b", Destination::Summed),
            ("x", Destination::PerSample),
        ],
    );
    assert_eq!(plan.summed_width, 17);
    assert_eq!(plan.inputs.len(), 2);
    validate(&plan.source);
}

#[test]
fn every_operation_compiles_to_valid_wgsl() {
    let plan = compile(
        "input x[5]\ninput t[3]\nparam W[3,5] b[3] c\n\
         h = softplus(W @ x + b) * c - max(W @ x, 0)\n\
         loss = cross_entropy(h, t) + mean(h) + sum(exp(-h)) / c + logsumexp(h) + dot(h, t)^2\n\
         output loss",
        &[
            ("W", Destination::Summed),
            ("c", Destination::PerSample),
            ("x", Destination::PerSample),
        ],
    );
    validate(&plan.source);
}

#[test]
fn a_program_too_large_for_registers_is_not_fused() {
    let program =
        Program::parse("input x[4096]\nparam W[4096,4096]\ny = sum(tanh(W @ x))\noutput y")
            .expect("parses");
    let w = program.variable("W").expect("declared");
    assert!(gradient(&program, &[(w, Destination::Summed)], true).is_err());
}

#[test]
#[ignore = "prints the neuron's kernel for reading"]
fn print_neuron_kernel() {
    let plan = compile(
        "input x[16]\ninput t\nparam w[16] b\na = relu(dot(w, x) + b)\nloss = mse(a, t)\noutput loss",
        &[("w", Destination::Summed), ("b", Destination::Summed)],
    );
    let body = &plan.source[plan.source.find("struct FusedParams").unwrap_or(0)..];
    println!("{body}");
}

#[test]
fn a_variable_out_of_range_or_a_broken_program_is_a_reason_not_a_panic() {
    let program = Program::parse("input x[3]\ny = sum(x)\noutput y").expect("parses");
    assert!(gradient(&program, &[(7, Destination::Summed)], true).is_err());
    assert!(jacobian(&program, 7, true).is_err());
    assert!(forward(&program, &[7]).is_err());
    let mut broken = program.clone();
    broken.output = 99;
    assert!(gradient(&broken, &[(0, Destination::PerSample)], true).is_err());
    assert!(jvp(&broken, 0, true).is_err());
}

#[test]
fn sweeps_of_several_lines_share_one_valid_kernel() {
    let program = Program::parse(
        "input x[6]\ninput t[3]\nparam W[3,6] c[3]\nh = tanh(W @ x + c)\ns = sum(h * x[0:3])\nloss = mse(h, t) + 0.1 * s\noutput loss",
    )
    .expect("parses");
    let var = |name: &str| program.variable(name).expect("declared");
    let line = |name: &str| program.line(name).expect("a line");
    let sweeps = [
        Sweep {
            of: line("loss"),
            wrt: vec![
                (var("W"), Destination::Summed),
                (var("c"), Destination::Summed),
            ],
        },
        Sweep {
            of: line("s"),
            wrt: vec![
                (var("x"), Destination::Share),
                (var("W"), Destination::PerSample),
            ],
        },
    ];
    let plan = gradients(&program, &sweeps, true).expect("compiles");
    assert_eq!(plan.summed_width, 21);
    assert_eq!(plan.value_sizes, [1, 1]);
    assert_eq!(plan.gradients.len(), 4);
    assert_eq!(plan.gradients[2].of, line("s"));
    // Inputs, params, two values, two per-sample gradients, the partials.
    assert_eq!(plan.storage_bindings(), 2 + 1 + 2 + 2 + 1);
    validate(&plan.source);

    // A sweep of a vector node, of a node that does not exist, or of a
    // variable its node does not read, is refused.
    let h = Sweep {
        of: line("h"),
        wrt: vec![(var("c"), Destination::Summed)],
    };
    assert!(gradients(&program, &[h], true).is_err());
    let missing = Sweep {
        of: program.nodes.len(),
        wrt: vec![(var("c"), Destination::Summed)],
    };
    assert!(gradients(&program, &[missing], true).is_err());
    let unread = Sweep {
        of: line("s"),
        wrt: vec![(var("t"), Destination::PerSample)],
    };
    assert!(gradients(&program, &[unread], true).is_err());
    assert!(gradients(&program, &[], true).is_err());
}
