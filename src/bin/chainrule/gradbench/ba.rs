//! GradBench's `ba` (bundle adjustment, from ADBench): n cameras, m points
//! and p observations, observation i seeing point i mod m from camera
//! i mod n with weight w and measured feature feat. The input holds one
//! camera, one point, one weight and one feature; they are replicated into
//! the full problem, as the eval's reference does, and every observation is
//! computed.
//!
//! Each observation is one sample of a program: `obs` is its camera (11
//! values: Rodrigues rotation, centre, focal length, principal point, two
//! radial distortion coefficients), its point (3) and its weight (1);
//! `feat` its feature. The program's output is the observation's three
//! residuals, the weighted reprojection error (2) and the weight error
//! 1 - w^2, and its 3 x 15 Jacobian in `obs` holds every nonzero of the
//! observation's rows of the (3p) x (11n + 3m + p) sparse Jacobian.
//!
//! The rotation is the Rodrigues formula's main branch. The reference
//! switches to R = I + [r]x when theta^2 is exactly 0; the language has no
//! branch, and GradBench's data files all share one camera whose rotation is
//! far from 0 (|r| is about 1.6), so that branch is never taken there. A
//! camera with a zero rotation gives NaN here.
//!
//! On the GPU every derivative is computed in f32, and so is the one
//! derivative that is a primal value: d(w (proj - feat))/dw = proj - feat,
//! the weight column of the reprojection rows. That value is a difference
//! of two numbers near 270 that GradBench checks to 1e-4, about six f32
//! roundings at that size; rounding the inputs to f32 alone spends half of
//! that, and the projection's own roundings the rest (0.2431030 against
//! 0.2429988 on ba1). So on the GPU that column is recomputed on the host
//! in f64 from the f64 inputs, observation by observation (a projection
//! costs about 100 flops, a few percent of the call); every other entry,
//! and the objective, come from the device as they are.
//!
//! The replies are what the eval's C++ reference prints: `objective` the
//! first observation's residuals and how many there are, `jacobian` the
//! compressed-sparse-row matrix in the reference's order (every
//! reprojection row's 11 camera, 3 point and 1 weight columns, then one
//! weight row per observation), each list cut to its first 30 entries plus
//! its last.

use chainrule::Backend;
use chainrule::program::Program;
use serde_json::{Value, json};

use super::{Output, Prepared, field, unknown_function};

const FUNCTIONS: &[&str] = &["objective", "jacobian"];

/// One observation's residuals.
pub(crate) const PROGRAM: &str = "\
input obs[15]
input feat[2]
rot = obs[0:3]
centre = obs[3:6]
focal = obs[6]
principal = obs[7:9]
k = obs[9:11]
X = obs[11:14]
w = obs[14]
theta = sqrt(dot(rot, rot))
u = rot / theta
q = X - centre
uxq = [u[1]*q[2] - u[2]*q[1], u[2]*q[0] - u[0]*q[2], u[0]*q[1] - u[1]*q[0]]
Xcam = q * cos(theta) + uxq * sin(theta) + u * (dot(u, q) * (1 - cos(theta)))
pn = [Xcam[0] / Xcam[2], Xcam[1] / Xcam[2]]
rsq = dot(pn, pn)
L = 1 + k[0] * rsq + k[1] * rsq * rsq
proj = focal * L * pn + principal
res = [w * (proj - feat), 1 - w * w]
output res
";

/// Camera parameters, point coordinates, weight: one observation's inputs.
const CAMERA: usize = 11;
const SAMPLE: usize = CAMERA + 3 + 1;
/// Residuals per observation.
const RESIDUALS: usize = 3;
/// Observations per library call: bounds the device buffers (a 3 x 15
/// Jacobian per observation) and the host's dense copy, whatever p is.
const CHUNK: usize = 1 << 17;
/// The reference keeps the first 2 x 15 entries of each list and the last.
const KEPT: usize = 2 * SAMPLE;

/// The replicated problem.
struct Problem {
    n: usize,
    m: usize,
    p: usize,
    /// p x 15: camera i mod n, point i mod m, weight i.
    obs: Vec<f32>,
    /// p x 2.
    feat: Vec<f32>,
    /// The n cameras (n x 11), m points (m x 3) and p features (p x 2) in
    /// f64, for the weight column on the GPU.
    cams: Vec<f64>,
    points: Vec<f64>,
    features: Vec<f64>,
}

fn problem(input: &Value) -> Result<Problem, String> {
    let n: usize = field(input, "n")?;
    let m: usize = field(input, "m")?;
    let p: usize = field(input, "p")?;
    let cam: Vec<f64> = field(input, "cam")?;
    let x: Vec<f64> = field(input, "x")?;
    let w: f64 = field(input, "w")?;
    let feat: Vec<f64> = field(input, "feat")?;
    if cam.len() != CAMERA || x.len() != 3 || feat.len() != 2 {
        return Err(format!(
            "ba needs 11 camera values, 3 point coordinates and 2 feature coordinates, not {}, {} and {}",
            cam.len(),
            x.len(),
            feat.len()
        ));
    }
    if n == 0 || m == 0 || p == 0 {
        return Err(format!(
            "ba needs cameras, points and observations, not n = {n}, m = {m}, p = {p}"
        ));
    }
    // Every index must fit the reference's int columns.
    let columns = CAMERA * n + 3 * m + p;
    let entries = (2 * SAMPLE + 1) * p;
    if i32::try_from(columns.max(entries)).is_err() {
        return Err(format!(
            "ba with n = {n}, m = {m}, p = {p} has more columns or entries than 32-bit indices hold"
        ));
    }
    let cams: Vec<f32> = (0..n).flat_map(|_| cam.iter().map(|&v| v as f32)).collect();
    let points: Vec<f32> = (0..m).flat_map(|_| x.iter().map(|&v| v as f32)).collect();
    let mut obs = Vec::new();
    let mut feats = Vec::new();
    obs.try_reserve_exact(p * SAMPLE)
        .and_then(|()| feats.try_reserve_exact(p * 2))
        .map_err(|_| format!("no host memory for {p} observations"))?;
    for i in 0..p {
        let (c, j) = (i % n, i % m);
        obs.extend_from_slice(&cams[c * CAMERA..(c + 1) * CAMERA]);
        obs.extend_from_slice(&points[j * 3..(j + 1) * 3]);
        obs.push(w as f32);
        feats.extend(feat.iter().map(|&v| v as f32));
    }
    Ok(Problem {
        n,
        m,
        p,
        obs,
        feat: feats,
        cams: (0..n).flat_map(|_| cam.iter().copied()).collect(),
        points: (0..m).flat_map(|_| x.iter().copied()).collect(),
        features: (0..p).flat_map(|_| feat.iter().copied()).collect(),
    })
}

/// proj - feat of one observation in f64, by the program's formula (the
/// Rodrigues rotation's main branch, the division by depth, the radial
/// distortion, the focal length and the principal point).
fn reprojection_f64(cam: &[f64], x: &[f64], feat: &[f64]) -> [f64; 2] {
    let (rot, centre) = (&cam[0..3], &cam[3..6]);
    let (focal, principal, k) = (cam[6], &cam[7..9], &cam[9..11]);
    let theta = (rot[0] * rot[0] + rot[1] * rot[1] + rot[2] * rot[2]).sqrt();
    let u = [rot[0] / theta, rot[1] / theta, rot[2] / theta];
    let q = [x[0] - centre[0], x[1] - centre[1], x[2] - centre[2]];
    let uxq = [
        u[1] * q[2] - u[2] * q[1],
        u[2] * q[0] - u[0] * q[2],
        u[0] * q[1] - u[1] * q[0],
    ];
    let (c, s) = (theta.cos(), theta.sin());
    let along = (u[0] * q[0] + u[1] * q[1] + u[2] * q[2]) * (1.0 - c);
    let camera: [f64; 3] = std::array::from_fn(|i| q[i] * c + uxq[i] * s + u[i] * along);
    let pn = [camera[0] / camera[2], camera[1] / camera[2]];
    let rsq = pn[0] * pn[0] + pn[1] * pn[1];
    let distortion = 1.0 + k[0] * rsq + k[1] * rsq * rsq;
    [
        focal * distortion * pn[0] + principal[0] - feat[0],
        focal * distortion * pn[1] + principal[1] - feat[1],
    ]
}

impl Problem {
    /// Observations `start..end`, bound by name.
    fn chunk(&self, start: usize, end: usize) -> [(&str, &[f32]); 2] {
        [
            ("obs", &self.obs[start * SAMPLE..end * SAMPLE]),
            ("feat", &self.feat[start * 2..end * 2]),
        ]
    }

    /// Every observation's residuals: 2p reprojection errors and p weight
    /// errors, by the library's values-only call.
    fn objective(&self, backend: &Backend, program: &Program) -> chainrule::Result<Value> {
        let mut reproj = Vec::with_capacity(2 * self.p);
        let mut w_err = Vec::with_capacity(self.p);
        for start in (0..self.p).step_by(CHUNK) {
            let end = (start + CHUNK).min(self.p);
            let values = backend.values(program, &self.chunk(start, end))?;
            for residuals in values.chunks_exact(RESIDUALS) {
                reproj.extend_from_slice(&residuals[..2]);
                w_err.push(residuals[2]);
            }
        }
        Ok(json!({
            "reproj_error": {
                "elements": [f64::from(reproj[0]), f64::from(reproj[1])],
                "repeated": reproj.len() / 2,
            },
            "w_err": {"element": f64::from(w_err[0]), "repeated": w_err.len()},
        }))
    }

    /// Observation i's proj - feat in f64 from camera `camera` and point
    /// `point` of the replicated problem.
    fn weight_derivatives(&self, i: usize, camera: usize, point: usize) -> [f64; 2] {
        reprojection_f64(
            &self.cams[camera * CAMERA..(camera + 1) * CAMERA],
            &self.points[point * 3..(point + 1) * 3],
            &self.features[i * 2..(i + 1) * 2],
        )
    }

    /// The sparse Jacobian in the reference's compressed-sparse-row order,
    /// built whole, then cut as the reference prints it.
    fn jacobian(&self, backend: &Backend, program: &Program) -> chainrule::Result<Value> {
        let (n, m, p) = (self.n, self.m, self.p);
        let weight_column = CAMERA * n + 3 * m;
        let entries = (2 * SAMPLE + 1) * p;
        let mut rows: Vec<u32> = Vec::with_capacity(RESIDUALS * p + 1);
        let mut cols: Vec<u32> = Vec::with_capacity(entries);
        let mut vals: Vec<f64> = Vec::with_capacity(entries);
        let mut weight_derivatives = Vec::with_capacity(p);
        rows.push(0);
        let mut filled = 0u32;
        for start in (0..p).step_by(CHUNK) {
            let end = (start + CHUNK).min(p);
            let out = backend.jacobian(program, "obs", &self.chunk(start, end))?;
            let dense = out.jacobian.try_to_dense(out.batch)?;
            for (i, block) in (start..end).zip(dense.chunks_exact(RESIDUALS * SAMPLE)) {
                let (camera, point) = (i % n, i % m);
                let weight = match backend {
                    Backend::Gpu(_) => Some(self.weight_derivatives(i, camera, point)),
                    Backend::Cpu(_) => None,
                };
                for (r, row) in block.chunks_exact(SAMPLE).take(2).enumerate() {
                    filled += SAMPLE as u32;
                    rows.push(filled);
                    cols.extend((0..CAMERA).map(|j| (CAMERA * camera + j) as u32));
                    cols.extend((0..3).map(|j| (CAMERA * n + 3 * point + j) as u32));
                    cols.push((weight_column + i) as u32);
                    vals.extend_from_slice(&row[..SAMPLE - 1]);
                    vals.push(weight.map_or(row[SAMPLE - 1], |w| w[r]));
                }
                // d(1 - w^2)/dw: the weight error row's one entry.
                weight_derivatives.push(block[2 * SAMPLE + SAMPLE - 1]);
            }
        }
        for (i, &derivative) in weight_derivatives.iter().enumerate() {
            filled += 1;
            rows.push(filled);
            cols.push((weight_column + i) as u32);
            vals.push(derivative);
        }
        fn cut<T: Copy>(list: &[T]) -> Vec<T> {
            let mut kept: Vec<T> = list[..KEPT.min(list.len())].to_vec();
            kept.extend(list.last());
            kept
        }
        Ok(json!({"rows": cut(&rows), "cols": cut(&cols), "vals": cut(&vals)}))
    }
}

pub(crate) fn prepare<'a>(
    backend: &'a Backend,
    function: &str,
    input: &Value,
) -> Result<Prepared<'a>, String> {
    let want_jacobian = match function {
        "objective" => false,
        "jacobian" => true,
        _ => return Err(unknown_function("ba", function, FUNCTIONS)),
    };
    let problem = problem(input)?;
    let program = Program::parse(PROGRAM).map_err(|e| e.to_string())?;
    Ok(Box::new(move || {
        let value = if want_jacobian {
            problem.jacobian(backend, &program)?
        } else {
            problem.objective(backend, &program)?
        };
        Ok(Output::Json(value))
    }))
}
