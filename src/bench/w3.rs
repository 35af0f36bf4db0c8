//! W3 of the reference workloads: the batch-mean gradient of a neuron's
//! squared loss and each sample's gradient of its activation, timed end to
//! end, resident and on the CPU path beside the floor of 132 bytes a sample
//! over the measured copy bandwidth.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::jacobians::{Report, Timing, relative_frobenius, uniform};
use super::{CallTraffic, Ceilings, Settings, median_seconds, traffic_of};
use crate::backend::Backend;
use crate::backend::gpu::{FusedResident, GpuArray, GpuContext};
use crate::compile::{self, Destination, FusedGradient, NotFused, Sweep};
use crate::error::{Error, Result};
use crate::program::Program;
use crate::{GradientRequest, Reduction};

/// W3's neuron, its activation `a` and its loss.
pub const LOSS: &str = "input x[16]
input t
param w[16] b
a = relu(dot(w, x) + b)
loss = mse(a, t)
output loss
";

/// W3: B = 2^20 samples (2^16 when quick): d loss/dw and d loss/db of the
/// batch mean, and each sample's d a/dw, two requests of one program,
/// timed end to end (host slices in and out) and resident (x, t and the
/// params uploaded once, the program compiler's one kernel for both
/// leaving its results on the device). The floor moves
/// x, t in and the per-sample gradient out: 33 floats a sample over the
/// copy bandwidth. The error is the worse of the two GPU paths'.
pub fn run(
    backend: &Backend,
    settings: Settings,
    ceilings: Ceilings,
    mut progress: impl FnMut(&str),
) -> Result<Report> {
    let batch = if settings.quick { 1 << 16 } else { 1 << 20 };
    let program = Program::parse(LOSS)?;
    let mut rng = StdRng::seed_from_u64(super::w1::SEED + 3);
    let x = uniform(&mut rng, batch * 16, 4.0);
    let t = uniform(&mut rng, batch, 4.0);
    let w = uniform(&mut rng, 16, 0.25);
    let b = uniform(&mut rng, 1, 0.25);
    let values: [(&str, &[f32]); 4] = [("x", &x), ("t", &t), ("w", &w), ("b", &b)];
    let requests = [
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
    let run = |backend: &Backend| -> Result<(Vec<f32>, Vec<f32>)> {
        let outs = backend.gradients(&program, &requests, &values)?;
        let [mean, per_sample] = outs.as_slice() else {
            return Err(Error::Readback("expected two gradients".into()));
        };
        let mut means = mean.gradients[0].values.clone();
        means.extend(&mean.gradients[1].values);
        Ok((means, per_sample.gradients[0].values.clone()))
    };
    progress("W3 cpu");
    let cpu_backend = Backend::Cpu(crate::CpuBackend);
    let mut reference = None;
    let cpu = median_seconds(settings.repeats, || {
        reference = Some(run(&cpu_backend)?);
        Ok(())
    })?;
    let (reference_means, reference_per_sample) =
        reference.ok_or_else(|| Error::Readback("no reference".into()))?;
    let bytes = 33.0 * 4.0 * batch as f64;
    let mut timings = vec![
        Timing {
            path: "cpu".into(),
            seconds: cpu,
            flops: 0.0,
            traffic: None,
        },
        Timing {
            path: "floor".into(),
            seconds: bytes / ceilings.copy,
            flops: 0.0,
            traffic: None,
        },
    ];
    let mut error = None;
    if let Backend::Gpu(context) = backend {
        progress("W3 gpu-end-to-end");
        let mut last = None;
        let seconds = median_seconds(settings.repeats, || {
            last = Some(run(backend)?);
            Ok(())
        })?;
        let (_, traffic) = traffic_of(context, || run(backend))?;
        timings.push(Timing {
            path: "gpu-end-to-end".into(),
            seconds,
            flops: 0.0,
            traffic: Some(CallTraffic {
                traffic,
                min_bytes: bytes,
            }),
        });
        let errors = |(means, per_sample): &(Vec<f32>, Vec<f32>)| {
            let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
            relative_frobenius(&f64s(means), &f64s(&reference_means)).max(relative_frobenius(
                &f64s(per_sample),
                &f64s(&reference_per_sample),
            ))
        };
        let e2e_error = last
            .as_ref()
            .map(errors)
            .ok_or_else(|| Error::Readback("no result was timed".into()))?;

        progress("W3 gpu-resident");
        let resident = W3Resident::new(context, &program, &values, batch)?;
        let mut last = None;
        let seconds = median_seconds(settings.repeats, || {
            last = Some(resident.run()?);
            context.synchronize()
        })?;
        let (_, traffic) = traffic_of(context, || resident.run())?;
        timings.push(Timing {
            path: "gpu-resident".into(),
            seconds,
            flops: 0.0,
            traffic: Some(CallTraffic {
                traffic,
                min_bytes: bytes,
            }),
        });
        let out = last.ok_or_else(|| Error::Readback("no result was timed".into()))?;
        // The resident result must be the same numbers, not just fast.
        error = Some(e2e_error.max(errors(&resident.download(&out)?)));
    }
    Ok(Report {
        workload: "w3".into(),
        cases: vec![("neuron_grad".into(), batch, timings, error)],
    })
}

/// W3 on arrays already on the device: the loss's batch-summed gradient
/// and the activation's per-sample gradient, two sweeps of one fused
/// kernel from the program compiler (and its reduction), results left on
/// the device.
struct W3Resident<'a> {
    context: &'a GpuContext,
    batch: usize,
    plan: FusedGradient,
    inputs: Vec<GpuArray>,
    params: Option<GpuArray>,
}

impl<'a> W3Resident<'a> {
    /// Compiles both gradients into one kernel and uploads what it reads
    /// from `values`, in the plan's order.
    fn new(
        context: &'a GpuContext,
        program: &Program,
        values: &[(&str, &[f32])],
        batch: usize,
    ) -> Result<Self> {
        let index = |name: &str| {
            program
                .variable(name)
                .ok_or_else(|| Error::InvalidArgument(format!("W3's program has no `{name}`")))
        };
        let line = |name: &str| {
            program
                .line(name)
                .ok_or_else(|| Error::InvalidArgument(format!("W3's program has no `{name}`")))
        };
        let value = |variable: usize| {
            let name = &program.variables[variable].name;
            values
                .iter()
                .find(|(n, _)| n == name)
                .map(|&(_, v)| v)
                .ok_or_else(|| Error::InvalidArgument(format!("W3 has no values for `{name}`")))
        };
        let sweeps = [
            Sweep {
                of: line("loss")?,
                wrt: vec![
                    (index("w")?, Destination::Summed),
                    (index("b")?, Destination::Summed),
                ],
            },
            Sweep {
                of: line("a")?,
                wrt: vec![(index("w")?, Destination::PerSample)],
            },
        ];
        let plan = compile::gradients(program, &sweeps, false).map_err(|NotFused(why)| {
            Error::InvalidArgument(format!("W3 does not compile to a fused kernel: {why}"))
        })?;
        let inputs = plan
            .inputs
            .iter()
            .map(|&v| context.upload(value(v)?))
            .collect::<Result<_>>()?;
        let params = if plan.params.is_empty() {
            None
        } else {
            let mut packed = vec![0f32; plan.param_floats];
            for &(v, offset) in &plan.params {
                let v = value(v)?;
                packed[offset..offset + v.len()].copy_from_slice(v);
            }
            Some(context.upload(&packed)?)
        };
        Ok(W3Resident {
            context,
            batch,
            plan,
            inputs,
            params,
        })
    }

    /// One call: both gradients, left on the device.
    fn run(&self) -> Result<FusedResident> {
        let inputs: Vec<&GpuArray> = self.inputs.iter().collect();
        self.context.fused_gradient_resident(
            &self.plan,
            &inputs,
            self.params.as_ref(),
            self.batch,
            1.0,
        )
    }

    /// Reads a call's results back as (the batch means of d loss/dw and
    /// d loss/db, each sample's d a/dw), the layout of the end-to-end path.
    fn download(&self, out: &FusedResident) -> Result<(Vec<f32>, Vec<f32>)> {
        let missing = || Error::Readback("the fused kernel left no result".into());
        let sums = self
            .context
            .download(out.summed.as_ref().ok_or_else(missing)?)?;
        let scale = 1.0 / self.batch as f64;
        let means = sums
            .iter()
            .map(|&s| (f64::from(s) * scale) as f32)
            .collect();
        let per_sample = out.per_sample.iter().flatten().next().ok_or_else(missing)?;
        Ok((means, self.context.download(per_sample)?))
    }
}
