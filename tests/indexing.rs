//! Indexing `x[i]`, slicing `x[a:b]` and assembly `[a, b, c]`: values and
//! Jacobian, JVP, VJP and gradient on the GPU and the CPU path against the
//! f64 oracle (`Program::jacobian_dense`), the oracle against central
//! differences, bound and shape errors as messages naming the line, and a
//! bundle-adjustment residual (a pinhole camera with a Rodrigues rotation
//! and radial distortion) against central differences of an independent
//! f64 implementation.

mod common;

use chainrule::program::Program;
use chainrule::{Backend, CpuBackend};
use common::programs::{assert_close, backends, central, check, parse};
use common::{gpu, rng, uniform};

#[test]
fn an_index_is_a_scalar_of_the_vector() {
    let mut rng = rng("an_index_is_a_scalar_of_the_vector");
    check(
        "index",
        "input x[5]\ny = x[3] * x[0] + sin(x[4])\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "index of a computed vector",
        "input x[4]\nparam W[3,4]\nh = tanh(W @ x)\ny = h[2] / (1 + h[0]^2)\noutput y",
        &["x"],
        &mut rng,
    );
}

#[test]
fn a_slice_selects_elements() {
    let mut rng = rng("a_slice_selects_elements");
    check(
        "slice",
        "input x[6]\ny = tanh(x[1:4]) * x[5]\noutput y",
        &["x"],
        &mut rng,
    );
    // The selection alone: its Jacobian is the answer.
    check(
        "bare slice",
        "input x[6]\ny = x[2:5]\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "slice of a slice",
        "input x[7]\ny = x[1:6][2:4] * x[1:6][0]\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "gradient through slices",
        "input x[5]\ny = dot(x[0:3], x[2:5]) + sum(exp(x[1:3]))\noutput y",
        &["x"],
        &mut rng,
    );
}

#[test]
fn a_list_concatenates_scalars_and_vectors() {
    let mut rng = rng("a_list_concatenates_scalars_and_vectors");
    check(
        "assembly",
        "input x[3]\ninput s\ny = [x * s, s, x[0], sin(x[1:3])]\noutput y",
        &["x", "s"],
        &mut rng,
    );
    check(
        "a part read twice",
        "input x[2]\ny = [x, x]\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "one scalar",
        "input x[3]\ny = sum([x[1]] * x[0:1])\noutput y",
        &["x"],
        &mut rng,
    );
    check(
        "cross product",
        "input a[3]\ninput b[3]\n\
         c = [a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]]\n\
         output c",
        &["a", "b"],
        &mut rng,
    );
    check(
        "a loss of an assembled vector",
        "input x[4]\ny = mean([x[0:2] * 3, x[3]]^2)\noutput y",
        &["x"],
        &mut rng,
    );
}

/// The parse error of `text`, as displayed.
fn error(text: &str) -> String {
    match Program::parse(text) {
        Ok(_) => panic!("{text} parsed"),
        Err(e) => e.to_string(),
    }
}

fn assert_error(text: &str, expected: &[&str]) {
    let message = error(text);
    for part in expected {
        assert!(
            message.contains(part),
            "{text:?}: expected {part:?} in\n{message}"
        );
    }
}

#[test]
fn bounds_and_shapes_are_clear_errors() {
    assert_error(
        "input x[3]\ny = x[3]\noutput y",
        &[
            "index 3 is out of range for `x`, which has 3 elements",
            "line 2",
        ],
    );
    assert_error(
        "input x[3]\ny = x[2:2]\noutput y",
        &["the slice `[2:2]` is empty", "line 2"],
    );
    assert_error(
        "input x[3]\ny = x[2:1]\noutput y",
        &["the slice `[2:1]` is empty"],
    );
    assert_error(
        "input x[3]\ny = x[1:9]\noutput y",
        &["runs past the end of `x`, which has 3 elements", "line 2"],
    );
    assert_error(
        "input x[3]\ny = x[-1]\noutput y",
        &["an index cannot be negative"],
    );
    assert_error(
        "input x[3]\ny = x[1.5]\noutput y",
        &["`1.5` is not an index"],
    );
    assert_error("input x[3]\ny = x[i]\noutput y", &["expected an index"]);
    assert_error("input x[3]\ny = x[1:]\noutput y", &["expected an index"]);
    assert_error(
        "input x[3]\ny = x[1\noutput y",
        &["expected `:`, `,` or `]`"],
    );
    assert_error(
        "input s\ny = s[0]\noutput y",
        &["`s` is scalar; only a vector can be indexed", "line 2"],
    );
    assert_error(
        "input x[3]\ny = []\noutput y",
        &["`[]` assembles no elements"],
    );
    assert_error("input x[3]\ny = [x, 1\noutput y", &["unclosed `[`"]);
    assert_error("input x[3]\ny = [x, 1)\noutput y", &["expected `,` or `]`"]);
    assert_error(
        "input x[3]\nparam W[2,3]\ny = [x, W]\noutput y",
        &["`W` is a param matrix [2,3]"],
    );
    // Mixed shapes: a vector of 4 met by one of 3.
    assert_error("input x[3]\ninput s\ny = [x, s] + x\noutput y", &["line 3"]);
    // A bare expression's names are scalars.
    assert_error("x[0] + 1", &["`x` is scalar; only a vector can be indexed"]);
}

/// The 2-vector residual of one observation, independently of the
/// library: camera rotation r (axis times angle), centre C, focal f,
/// principal point c, radial distortion k; point X; weight w.
fn residual(p: &[f64], feature: &[f64]) -> Vec<f64> {
    let (r, centre, f) = (&p[0..3], &p[3..6], p[6]);
    let (c, k, point, w) = (&p[7..9], &p[9..11], &p[11..14], p[14]);
    let theta = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
    let u = [r[0] / theta, r[1] / theta, r[2] / theta];
    let q = [
        point[0] - centre[0],
        point[1] - centre[1],
        point[2] - centre[2],
    ];
    // R = cos I + sin [u]x + (1 - cos) u u^T, applied to q.
    let (cos, sin) = (theta.cos(), theta.sin());
    let cross = [
        u[1] * q[2] - u[2] * q[1],
        u[2] * q[0] - u[0] * q[2],
        u[0] * q[1] - u[1] * q[0],
    ];
    let along = u[0] * q[0] + u[1] * q[1] + u[2] * q[2];
    let camera: Vec<f64> = (0..3)
        .map(|i| cos * q[i] + sin * cross[i] + (1.0 - cos) * along * u[i])
        .collect();
    let (x, y) = (camera[0] / camera[2], camera[1] / camera[2]);
    let r2 = x * x + y * y;
    let distortion = 1.0 + k[0] * r2 + k[1] * r2 * r2;
    vec![
        w * (f * distortion * x + c[0] - feature[0]),
        w * (f * distortion * y + c[1] - feature[1]),
    ]
}

const BUNDLE_ADJUSTMENT: &str = "
input p[15]
input feat[2]
r = p[0:3]
C = p[3:6]
focal = p[6]
pp = p[7:9]
k = p[9:11]
X = p[11:14]
w = p[14]
theta = sqrt(dot(r, r))
u = r / theta
q = X - C
uxq = [u[1]*q[2] - u[2]*q[1], u[2]*q[0] - u[0]*q[2], u[0]*q[1] - u[1]*q[0]]
Pc = q * cos(theta) + uxq * sin(theta) + u * (dot(u, q) * (1 - cos(theta)))
pn = [Pc[0] / Pc[2], Pc[1] / Pc[2]]
r2 = dot(pn, pn)
distortion = 1 + k[0] * r2 + k[1] * r2 * r2
proj = focal * distortion * pn + pp
res = w * (proj - feat)
output res
";

/// The same residual written with `norm`, `cross` and a rotation matrix
/// per sample: R = cos I + sin [u]x + (1 - cos) u u^T, with [u]x q = u x q,
/// applied as R @ q through `outer` and `@`.
const BUNDLE_ADJUSTMENT_WITH_FUNCTIONS: &str = "
input p[15]
input feat[2]
r = p[0:3]
theta = norm(r)
u = r / theta
q = p[11:14] - p[3:6]
turn = (1 - cos(theta)) * outer(u, u)
Pc = q * cos(theta) + cross(u, q) * sin(theta) + turn @ q
pn = Pc[0:2] / Pc[2]
r2 = pn @ pn
distortion = 1 + p[9] * r2 + p[10] * r2 * r2
res = p[14] * (p[6] * distortion * pn + p[7:9] - feat)
output res
";

#[test]
fn a_bundle_adjustment_residual_matches_central_differences() {
    check_bundle_adjustment(
        "a_bundle_adjustment_residual_matches_central_differences",
        BUNDLE_ADJUSTMENT,
    );
}

#[test]
fn a_bundle_adjustment_residual_with_norm_cross_and_matrices() {
    check_bundle_adjustment(
        "a_bundle_adjustment_residual_with_norm_cross_and_matrices",
        BUNDLE_ADJUSTMENT_WITH_FUNCTIONS,
    );
}

fn check_bundle_adjustment(name: &str, text: &str) {
    let mut rng = rng(name);
    let program = parse(text);
    let batch = 33;
    let mut p = Vec::with_capacity(batch * 15);
    let mut feat = Vec::with_capacity(batch * 2);
    for _ in 0..batch {
        // Small rotations and a point in front of the camera, so that the
        // depth stays well away from zero.
        p.extend(uniform(&mut rng, 3, -0.3, 0.3));
        p.extend(uniform(&mut rng, 3, -0.5, 0.5));
        p.extend(uniform(&mut rng, 1, 400.0, 600.0));
        p.extend(uniform(&mut rng, 2, 200.0, 300.0));
        p.extend(uniform(&mut rng, 2, -0.1, 0.1));
        p.extend(uniform(&mut rng, 2, -1.0, 1.0));
        p.extend(uniform(&mut rng, 1, 4.0, 6.0));
        p.extend(uniform(&mut rng, 1, 0.5, 2.0));
        feat.extend(uniform(&mut rng, 2, 150.0, 350.0));
    }
    let mut expected = Vec::new();
    let mut values = Vec::new();
    let mut oracle = Vec::new();
    for b in 0..batch {
        let pb: Vec<f64> = p[b * 15..(b + 1) * 15]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let fb: Vec<f64> = feat[b * 2..(b + 1) * 2]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        values.extend(residual(&pb, &fb));
        expected.extend(central(|x| residual(x, &fb), &pb));
        let jacobian = program.jacobian_dense(&[&pb, &fb], 0).expect("the oracle");
        oracle.extend(jacobian);
    }
    assert_close("oracle vs central differences", &oracle, &expected, 1e-6);
    let bound: [(&str, &[f32]); 2] = [("p", &p), ("feat", &feat)];
    for (backend, path) in backends() {
        let out = backend
            .jacobian(&program, "p", &bound)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let got: Vec<f64> = out.values.iter().map(|&x| f64::from(x)).collect();
        assert_close(&format!("{path}: residuals"), &got, &values, 1e-5);
        let dense = out.jacobian.to_dense(batch);
        assert_eq!(dense.len(), batch * 2 * 15);
        assert_close(
            &format!("{path}: 2 x 15 Jacobians"),
            &dense,
            &expected,
            1e-5,
        );
        // The VJP with the residual itself is the Gauss-Newton gradient.
        let cotangents: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let got = backend
            .vjp(&program, "p", &bound, &cotangents)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut gradient = vec![0.0; batch * 15];
        for b in 0..batch {
            for i in 0..2 {
                for j in 0..15 {
                    gradient[b * 15 + j] += expected[(b * 2 + i) * 15 + j] * values[b * 2 + i];
                }
            }
        }
        let got: Vec<f64> = got.iter().map(|&x| f64::from(x)).collect();
        assert_close(&format!("{path}: J^T r"), &got, &gradient, 1e-5);
    }
}

#[test]
fn explain_names_the_selections() {
    let program = parse("input x[4]\ny = [x[0:2] * 3, x[3]]\noutput y");
    let plan = chainrule::schedule::vector::plan(
        &program,
        0,
        chainrule::schedule::vector::Request::Jacobian,
        8,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = chainrule::explain::explain_plan(&program, &plan);
    assert!(text.contains("Selection"), "{text}");
    assert!(text.contains("x[0:2]"), "{text}");
}

#[test]
fn a_selection_too_large_for_the_fused_kernel_runs_op_by_op_on_the_gpu() {
    // 2 x 1200 floats of state per sample exceed the fused kernel's
    // registers, so the op-by-op device path runs it: the slice's values by
    // a gather kernel, the products with its local Jacobian as gathers.
    // Against the CPU path, which gathers, and the closed form.
    let program = parse("input x[1200]\ny = sin(x[0:1199]) * 2\noutput y");
    let mut rng = common::rng("large slice");
    let batch = 3;
    let x = common::uniform(&mut rng, batch * 1200, -2.0, 2.0);
    let bound: [(&str, &[f32]); 1] = [("x", &x)];
    let cotangents = common::uniform(&mut rng, batch * 1199, -1.0, 1.0);
    let cpu = Backend::Cpu(CpuBackend)
        .vjp(&program, "x", &bound, &cotangents)
        .unwrap_or_else(|e| panic!("{e}"));
    for b in 0..batch {
        for i in [0, 1, 600, 1198] {
            let expected =
                2.0 * f64::from(x[b * 1200 + i]).cos() * f64::from(cotangents[b * 1199 + i]);
            assert!(
                (f64::from(cpu[b * 1200 + i]) - expected).abs() < 1e-5,
                "cpu {b} {i}"
            );
        }
        assert_eq!(cpu[b * 1200 + 1199], 0.0);
    }
    let Some(context) = gpu() else { return };
    let backend = Backend::Gpu(context);
    let got = backend
        .vjp(&program, "x", &bound, &cotangents)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), cpu.len());
    for (i, (g, c)) in got.iter().zip(&cpu).enumerate() {
        assert!(
            (g - c).abs() <= 1e-5 * (1.0 + c.abs()),
            "element {i}: {g} against {c}"
        );
    }
    let values = backend
        .values(&program, &bound)
        .unwrap_or_else(|e| panic!("{e}"));
    for b in 0..batch {
        for i in [0, 1198] {
            let expected = 2.0 * f64::from(x[b * 1200 + i]).sin();
            assert!((f64::from(values[b * 1199 + i]) - expected).abs() < 1e-5);
        }
    }
}

/// Slices, indices and assemblies of vectors longer than the fused kernels
/// keep in registers (so the GPU runs them op by op): values, Jacobian,
/// JVP and VJP on both paths against the f64 oracle, and the oracle against
/// central differences.
#[test]
fn selections_of_long_vectors_on_every_path() {
    let mut rng = rng("long selections");
    check(
        "long selections",
        "input x[300] y[300]\nparam w[300]\ns = x[10:290] * y[0:280]\nc = [s, x[0], sum(y)]\n\
         z = [prod(x[0:5]), dot(w, y), c[3] * c[281], sum(sin(c))]\noutput z",
        &["x", "y"],
        &mut rng,
    );
}

/// Selections whose 0/1 matrices would be large (4000 x 5000, and an
/// assembly of two 2000-element halves, which took minutes on lavapipe as
/// matrix products) run on the GPU's op-by-op path as gathers: JVP and VJP
/// against the CPU path, which gathers too, and the closed form.
#[test]
fn large_selections_run_as_gathers_on_the_gpu() {
    let mut rng = rng("large selections");
    for text in [
        "input x[5000]\ny = sin(x[0:4000])\noutput y",
        "input x[4000]\ny = [sin(x[2000:4000]), x[0:2000] * 2]\noutput y",
    ] {
        let program = parse(text);
        let n = program.variables[0].shape.size();
        let m = program.shapes[program.output].size();
        let batch = 2;
        let x = common::uniform(&mut rng, batch * n, -2.0, 2.0);
        let bound: [(&str, &[f32]); 1] = [("x", &x)];
        let cotangents = common::uniform(&mut rng, batch * m, -1.0, 1.0);
        let tangents = common::uniform(&mut rng, batch * n, -1.0, 1.0);
        let cpu = Backend::Cpu(CpuBackend);
        let cpu_vjp = cpu
            .vjp(&program, "x", &bound, &cotangents)
            .unwrap_or_else(|e| panic!("{e}"));
        let cpu_jvp = cpu
            .jvp(&program, "x", &bound, &tangents)
            .unwrap_or_else(|e| panic!("{e}"));
        if n == 5000 {
            // d sin(x_i) / dx_i = cos(x_i) for i < 4000; nothing past it.
            assert!(
                (f64::from(cpu_vjp[3999]) - f64::from(x[3999]).cos() * f64::from(cotangents[3999]))
                    .abs()
                    < 1e-5
            );
            assert_eq!(cpu_vjp[4000], 0.0);
        }
        let Some(context) = gpu() else { return };
        let gpu = Backend::Gpu(context);
        for (what, got, expected) in [
            ("VJP", gpu.vjp(&program, "x", &bound, &cotangents), &cpu_vjp),
            ("JVP", gpu.jvp(&program, "x", &bound, &tangents), &cpu_jvp),
        ] {
            let got = got.unwrap_or_else(|e| panic!("{text}: {what}: {e}"));
            assert_eq!(got.len(), expected.len(), "{text}: {what}");
            for (i, (g, c)) in got.iter().zip(expected).enumerate() {
                assert!(
                    (g - c).abs() <= 1e-5 * (1.0 + c.abs()),
                    "{text}: {what} element {i}: {g} against {c}"
                );
            }
        }
    }
}
