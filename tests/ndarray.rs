//! The ndarray interop (`Backend::unary_array`, `jacobian_array`,
//! `jvp_array`, `vjp_array`, `gradient_array`) on the GPU and the CPU
//! backend: the same numbers as the slice API, in the documented shapes
//! (batch, then the output's shape, then the input's), checked element by
//! element against the forward-mode f64 oracle at explicit indices, the same
//! results from transposed, strided and reversed views as from contiguous
//! ones, and every wrong shape an `Error`, never a panic.
#![cfg(feature = "ndarray")]

mod common;

use chainrule::{Error, Reduction, UnaryOp};
use common::programs::{backends, parse};
use common::{ATOL, RTOL, rng, uniform};
use ndarray::{Array, Array1, Array2, ArrayViewD, Axis, IxDyn, arr0, s};
use rand::rngs::StdRng;

const LAYER: &str = "input x[3]\nparam W[2,3] b[2]\ny = tanh(W @ x + b)\noutput y\n";

const NEURON: &str =
    "input x[16]\ninput t\nparam w[16] b\na = relu(dot(w, x) + b)\nloss = mse(a, t)\noutput loss\n";

/// A batch that is not a multiple of any workgroup or tile size.
const BATCH: usize = 37;

fn random(rng: &mut StdRng, shape: &[usize]) -> Array<f32, IxDyn> {
    let len = shape.iter().product();
    Array::from_shape_vec(IxDyn(shape), uniform(rng, len, -1.5, 1.5)).expect("shape and length")
}

/// Bit-for-bit equality (NaN matching NaN): the ndarray methods call the
/// slice API on the same data, so nothing may differ, not even rounding.
fn same<T: Copy + Into<f64>>(label: &str, actual: &[T], expected: &[T]) {
    assert_eq!(actual.len(), expected.len(), "{label}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let (a, e): (f64, f64) = (a.into(), e.into());
        assert!(
            a.to_bits() == e.to_bits() || (a.is_nan() && e.is_nan()),
            "{label}: [{i}] ndarray gave {a:e}, the slice API {e:e}"
        );
    }
}

fn contiguous<T: Clone, D: ndarray::Dimension>(a: &Array<T, D>) -> Vec<T> {
    a.iter().cloned().collect()
}

#[test]
fn unary_keeps_the_shape_and_reads_any_layout() {
    let mut rng = rng("unary_keeps_the_shape_and_reads_any_layout");
    let matrix = random(&mut rng, &[13, 7])
        .into_dimensionality::<ndarray::Ix2>()
        .expect("two dimensions");
    for (backend, name) in backends() {
        for op in [UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Softplus] {
            let label = format!("{name} {op:?}");
            let run = |xs: Vec<f32>| backend.unary(op, &xs).expect("slice API");

            // An ArrayView1 in, an Array1 out.
            let row = matrix.row(3);
            let out = backend.unary_array(op, row).expect("a row");
            assert_eq!(out.values.shape(), &[7]);
            let expected = run(row.to_vec());
            same(&label, out.values.as_slice().unwrap(), &expected.values);
            same(
                &label,
                out.derivatives.as_slice().unwrap(),
                &expected.derivatives,
            );

            // Contiguous, transposed, strided and reversed views: each result
            // has the view's shape and, element for element, f of the
            // element at the same index.
            let views = [
                ("contiguous", matrix.view()),
                ("transposed", matrix.t()),
                ("strided", matrix.slice(s![.., ..;3])),
                ("reversed", matrix.slice(s![..;-2, ..])),
            ];
            for (layout, view) in views {
                let out = backend
                    .unary_array(op, view.into_dyn())
                    .unwrap_or_else(|e| panic!("{label} {layout}: {e}"));
                assert_eq!(out.values.shape(), view.shape(), "{label} {layout}");
                assert_eq!(out.derivatives.shape(), view.shape(), "{label} {layout}");
                let expected = run(view.iter().copied().collect());
                same(
                    &format!("{label} {layout}"),
                    &contiguous(&out.values),
                    &expected.values,
                );
                same(
                    &format!("{label} {layout}"),
                    &contiguous(&out.derivatives),
                    &expected.derivatives,
                );
                let (i, j) = (view.nrows() - 1, 1);
                let single = run(vec![view[[i, j]]]);
                assert_eq!(
                    out.values[[i, j]].to_bits(),
                    single.values[0].to_bits(),
                    "{label} {layout}: [{i}, {j}]"
                );
            }

            let empty = Array2::<f32>::zeros((0, 4));
            let out = backend.unary_array(op, empty.view()).expect("empty");
            assert_eq!(out.values.shape(), &[0, 4]);
        }
    }
}

#[test]
fn jacobian_is_batch_then_output_then_input() {
    let mut rng = rng("jacobian_is_batch_then_output_then_input");
    let program = parse(LAYER);
    let x = random(&mut rng, &[BATCH, 3]);
    let w = random(&mut rng, &[2, 3]);
    let b = random(&mut rng, &[2]);
    for (backend, name) in backends() {
        let out = backend
            .jacobian_array(
                &program,
                "x",
                &[("x", x.view()), ("W", w.view()), ("b", b.view())],
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.jacobian.shape(), &[BATCH, 2, 3], "{name}");
        assert_eq!(out.values.shape(), &[BATCH, 2], "{name}");
        assert_eq!(out.matrices().expect("B x m x n").shape(), &[BATCH, 2, 3]);

        let slices = backend
            .jacobian(
                &program,
                "x",
                &[
                    ("x", &contiguous(&x)),
                    ("W", &contiguous(&w)),
                    ("b", &contiguous(&b)),
                ],
            )
            .expect("slice API");
        same(
            name,
            &contiguous(&out.jacobian),
            &slices.jacobian.to_dense(BATCH),
        );
        same(name, &contiguous(&out.values), &slices.values);

        // J[s, i, j] = d y_i / d x_j of sample s, from the f64 oracle.
        let f64s = |a: ArrayViewD<'_, f32>| a.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        let (wv, bv) = (f64s(w.view()), f64s(b.view()));
        for sample in [0, BATCH / 2, BATCH - 1] {
            let xv = f64s(x.index_axis(Axis(0), sample));
            let oracle = program.jacobian_dense(&[&xv, &wv, &bv], 0).expect("oracle");
            for i in 0..2 {
                for j in 0..3 {
                    let (actual, expected) = (out.jacobian[[sample, i, j]], oracle[i * 3 + j]);
                    // f32 on the GPU, f64 rounded once on the CPU.
                    let tolerance = if name == "gpu" { 1e-5 } else { ATOL } + RTOL * expected.abs();
                    assert!(
                        (actual - expected).abs() <= tolerance,
                        "{name}: J[{sample}, {i}, {j}] = {actual:e}, oracle {expected:e}"
                    );
                }
            }
        }

        // The same numbers from views in other layouts: x stored (3, B) and
        // read through its transpose, W stored (3, 2) likewise.
        let x_columns = x.t().as_standard_layout().into_owned();
        assert!(
            !x_columns.t().is_standard_layout(),
            "the test needs a non-contiguous view"
        );
        let w_columns = w.t().as_standard_layout().into_owned();
        let transposed = backend
            .jacobian_array(
                &program,
                "x",
                &[("x", x_columns.t()), ("W", w_columns.t()), ("b", b.view())],
            )
            .unwrap_or_else(|e| panic!("{name} transposed: {e}"));
        same(
            name,
            &contiguous(&transposed.jacobian),
            &contiguous(&out.jacobian),
        );
        same(
            name,
            &contiguous(&transposed.values),
            &contiguous(&out.values),
        );
    }
}

#[test]
fn scalar_inputs_and_outputs_have_empty_shapes() {
    let mut rng = rng("scalar_inputs_and_outputs_have_empty_shapes");
    // A scalar output: J is (B, n), the values (B,).
    let dot = parse("input x[4]\nparam w[4] c\ny = tanh(dot(w, x) * c)\noutput y\n");
    // A scalar input: given as (B,); J is (B, m).
    let scale = parse("input t\nparam v[3]\ny = sigmoid(v * t)\noutput y\n");
    let x = random(&mut rng, &[BATCH, 4]);
    let w = random(&mut rng, &[4]);
    let c = arr0(0.75f32).into_dyn();
    let t = random(&mut rng, &[BATCH]);
    let v = random(&mut rng, &[3]);
    for (backend, name) in backends() {
        let out = backend
            .jacobian_array(
                &dot,
                "x",
                &[("x", x.view()), ("w", w.view()), ("c", c.view())],
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.jacobian.shape(), &[BATCH, 4], "{name}");
        assert_eq!(out.values.shape(), &[BATCH], "{name}");
        assert_eq!(out.matrices().expect("B x 1 x n").shape(), &[BATCH, 1, 4]);

        let out = backend
            .jacobian_array(&scale, "t", &[("t", t.view()), ("v", v.view())])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.jacobian.shape(), &[BATCH, 3], "{name}");
        let slices = backend
            .jacobian(
                &scale,
                "t",
                &[("t", &contiguous(&t)), ("v", &contiguous(&v))],
            )
            .expect("slice API");
        same(
            name,
            &contiguous(&out.jacobian),
            &slices.jacobian.to_dense(BATCH),
        );
    }
}

#[test]
fn jvp_and_vjp_take_and_give_the_variables_shapes() {
    let mut rng = rng("jvp_and_vjp_take_and_give_the_variables_shapes");
    let program = parse(LAYER);
    let x = random(&mut rng, &[BATCH, 3]);
    let w = random(&mut rng, &[2, 3]);
    let b = random(&mut rng, &[2]);
    let tangents = random(&mut rng, &[BATCH, 3]);
    let cotangents = random(&mut rng, &[BATCH, 2]);
    // The same tangents, stored (3, B).
    let tangent_columns = tangents.t().as_standard_layout().into_owned();
    for (backend, name) in backends() {
        let vars = [("x", x.view()), ("W", w.view()), ("b", b.view())];
        let slice_vars = [
            ("x", contiguous(&x)),
            ("W", contiguous(&w)),
            ("b", contiguous(&b)),
        ];
        let slice_vars: Vec<(&str, &[f32])> =
            slice_vars.iter().map(|(n, v)| (*n, v.as_slice())).collect();

        let jvp = backend
            .jvp_array(&program, "x", &vars, tangents.view())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(jvp.shape(), &[BATCH, 2], "{name}");
        let expected = backend
            .jvp(&program, "x", &slice_vars, &contiguous(&tangents))
            .expect("slice API");
        same(name, &contiguous(&jvp), &expected);
        let from_transpose = backend
            .jvp_array(&program, "x", &vars, tangent_columns.t())
            .expect("transposed tangents");
        same(name, &contiguous(&from_transpose), &expected);

        let vjp = backend
            .vjp_array(&program, "x", &vars, cotangents.view())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(vjp.shape(), &[BATCH, 3], "{name}");
        let expected = backend
            .vjp(&program, "x", &slice_vars, &contiguous(&cotangents))
            .expect("slice API");
        same(name, &contiguous(&vjp), &expected);
    }
}

#[test]
fn gradients_have_the_documented_shapes() {
    let mut rng = rng("gradients_have_the_documented_shapes");
    let program = parse(NEURON);
    let x = random(&mut rng, &[BATCH, 16]);
    let t = random(&mut rng, &[BATCH]);
    let w = random(&mut rng, &[16]);
    let b = arr0(0.1f32).into_dyn();
    for (backend, name) in backends() {
        let vars = [
            ("x", x.view()),
            ("t", t.view()),
            ("w", w.view()),
            ("b", b.view()),
        ];
        let slice_vars = [
            ("x", contiguous(&x)),
            ("t", contiguous(&t)),
            ("w", contiguous(&w)),
            ("b", contiguous(&b)),
        ];
        let slice_vars: Vec<(&str, &[f32])> =
            slice_vars.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        for (reduction, shapes) in [
            (Reduction::Mean, [vec![16], vec![], vec![BATCH, 16]]),
            (
                Reduction::PerSample,
                [vec![BATCH, 16], vec![BATCH], vec![BATCH, 16]],
            ),
        ] {
            let label = format!("{name} {reduction:?}");
            let out = backend
                .gradient_array(&program, &["w", "b", "x"], &vars, reduction)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let expected = backend
                .gradient(&program, &["w", "b", "x"], &slice_vars, reduction)
                .expect("slice API");
            assert_eq!(out.values.shape(), &[BATCH], "{label}");
            same(&label, out.values.as_slice().unwrap(), &expected.values);
            assert_eq!(out.mean.to_bits(), expected.mean.to_bits(), "{label}");
            for ((variable, shape), gradient) in
                ["w", "b", "x"].iter().zip(&shapes).zip(&expected.gradients)
            {
                let array = out.get(variable).expect("asked for");
                assert_eq!(array.shape(), shape.as_slice(), "{label} {variable}");
                assert_eq!(&gradient.shape, shape, "{label} {variable}: slice API");
                same(&label, &contiguous(array), &gradient.values);
            }
        }
    }
}

fn shape_error(result: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match result {
        Err(Error::Shape(message)) => assert!(
            message.contains(needle),
            "the message {message:?} does not mention {needle:?}"
        ),
        other => panic!("expected a shape error mentioning {needle:?}, got {other:?}"),
    }
}

fn invalid_argument(result: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => assert!(
            message.contains(needle),
            "the message {message:?} does not mention {needle:?}"
        ),
        other => panic!("expected an invalid argument mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn wrong_shapes_are_errors_that_say_what_was_expected() {
    let mut rng = rng("wrong_shapes_are_errors_that_say_what_was_expected");
    let program = parse(LAYER);
    let two_inputs = parse("input x[3]\ninput u[3]\ny = x * u\noutput y\n");
    let x = random(&mut rng, &[BATCH, 3]);
    let w = random(&mut rng, &[2, 3]);
    let b = random(&mut rng, &[2]);
    let flat = Array1::from_iter(x.iter().copied()).into_dyn();
    for (backend, name) in backends() {
        println!("{name}");
        let with_x = |x: ArrayViewD<'_, f32>| {
            backend.jacobian_array(&program, "x", &[("x", x), ("W", w.view()), ("b", b.view())])
        };
        // The input flattened, transposed or a column short.
        shape_error(with_x(flat.view()), "(B, 3)");
        shape_error(with_x(x.t()), "(3, 37)");
        shape_error(with_x(x.slice(s![.., ..2]).into_dyn()), "(37, 2)");
        // A parameter transposed, or flattened.
        let w_t = w.t();
        shape_error(
            backend.jacobian_array(
                &program,
                "x",
                &[("x", x.view()), ("W", w_t), ("b", b.view())],
            ),
            "(2, 3)",
        );
        let w_flat = Array1::from_iter(w.iter().copied()).into_dyn();
        shape_error(
            backend.jacobian_array(
                &program,
                "x",
                &[("x", x.view()), ("W", w_flat.view()), ("b", b.view())],
            ),
            "not (6,)",
        );
        // A scalar parameter given as a one-element vector.
        let neuron = parse(NEURON);
        let one = Array1::from_vec(vec![0.5f32]).into_dyn();
        let (xs, ts, ws) = (
            random(&mut rng, &[4, 16]),
            random(&mut rng, &[4]),
            random(&mut rng, &[16]),
        );
        shape_error(
            backend.gradient_array(
                &neuron,
                &["w"],
                &[
                    ("x", xs.view()),
                    ("t", ts.view()),
                    ("w", ws.view()),
                    ("b", one.view()),
                ],
                Reduction::Mean,
            ),
            "shape ()",
        );
        // Inputs that disagree on the batch.
        let short = random(&mut rng, &[BATCH - 1, 3]);
        shape_error(
            backend.jacobian_array(&two_inputs, "x", &[("x", x.view()), ("u", short.view())]),
            "samples",
        );
        // Tangents and cotangents of the wrong shape.
        let vars = [("x", x.view()), ("W", w.view()), ("b", b.view())];
        let wrong = random(&mut rng, &[BATCH, 2]);
        shape_error(
            backend.jvp_array(&program, "x", &vars, wrong.view()),
            "expected (37, 3)",
        );
        let wrong = random(&mut rng, &[BATCH, 3]);
        shape_error(
            backend.vjp_array(&program, "x", &vars, wrong.view()),
            "expected (37, 2)",
        );
        // Names: unknown, a parameter as `wrt`, an empty batch.
        invalid_argument(
            backend.jacobian_array(&program, "z", &vars),
            "`z` is not a variable",
        );
        invalid_argument(
            backend.jvp_array(&program, "W", &vars, w.view()),
            "is a parameter",
        );
        let empty = Array2::<f32>::zeros((0, 3)).into_dyn();
        invalid_argument(
            backend.jacobian_array(
                &program,
                "x",
                &[("x", empty.view()), ("W", w.view()), ("b", b.view())],
            ),
            "empty",
        );
        invalid_argument(
            backend.vjp_array(
                &program,
                "x",
                &[("x", empty.view()), ("W", w.view()), ("b", b.view())],
                Array2::<f32>::zeros((0, 2)).view(),
            ),
            "empty",
        );
    }
}

/// `values_array` with a per-sample matrix input: (B, 3, 3) in, the
/// output's (B, m...) out, equal to the slice call; a matrix output is its
/// elements row-major.
#[test]
fn values_array_takes_matrix_inputs() {
    let mut rng = rng("values_array_takes_matrix_inputs");
    let program = parse("input A[3,3] x[3]\ny = tanh(A @ x)\noutput y");
    let a = random(&mut rng, &[4, 3, 3]);
    let x = random(&mut rng, &[4, 3]);
    for (backend, path) in backends() {
        let out = backend
            .values_array(&program, &[("A", a.view()), ("x", x.view())])
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(out.shape(), &[4, 3], "{path}");
        let flat = backend
            .values(
                &program,
                &[("A", &contiguous(&a)[..]), ("x", &contiguous(&x)[..])],
            )
            .expect("the slice call");
        same(path, &contiguous(&out), &flat);
        let wrong = random(&mut rng, &[4, 9]);
        assert!(
            backend
                .values_array(&program, &[("A", wrong.view()), ("x", x.view())])
                .is_err(),
            "{path}: A given as (4, 9)"
        );
    }
}
