//! W2 (every sample's Jacobian of a two-layer network) and W5 (the order of
//! a Jacobian chain product), timed on the GPU and on the CPU path beside
//! the floor of the flops over the measured matrix-product rate; and the
//! report that W2, W3 and W5 share.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{CallTraffic, Ceilings, Machine, Record, Settings, median_seconds, traffic_of};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::jacobian::{JacShape, Jacobian};
use crate::program::Program;
use crate::schedule::chain::{ChainOrder, chain_order, forward_order, reverse_order};

/// W2's network.
pub const W2_PROGRAM: &str = "input x[64]
param W1[128,64] b1[128] W2[32,128] b2[32]
h = sigmoid(W1 @ x + b1)
y = tanh(W2 @ h + b2)
output y
";

/// W5's two chains: (n0 .. n6), J_i is n_i x n_(i-1).
pub const W5_SHAPES: [[usize; 7]; 2] = [
    [512, 8, 512, 8, 512, 8, 512],
    [16, 256, 256, 256, 256, 256, 1024],
];

/// One timed path.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// gpu-end-to-end, gpu-resident, cpu, floor, or an ordering's name.
    pub path: String,
    /// Seconds per call (median).
    pub seconds: f64,
    /// Flops the call performs.
    pub flops: f64,
    /// What one call asks of the device, for a path that runs on a GPU.
    pub traffic: Option<CallTraffic>,
}

/// A workload's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// "w2", "w3" or "w5".
    pub workload: String,
    /// (case, batch, timings, relative Frobenius error of the GPU result).
    pub cases: Vec<(String, usize, Vec<Timing>, Option<f64>)>,
}

pub(super) fn uniform(rng: &mut StdRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

pub(super) fn relative_frobenius(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// W2: B = 4096 (256 when quick) Jacobians of the two-layer network.
pub fn run_w2(
    backend: &Backend,
    settings: Settings,
    ceilings: Ceilings,
    mut progress: impl FnMut(&str),
) -> Result<Report> {
    let batch = if settings.quick { 256 } else { 4096 };
    let program = Program::parse(W2_PROGRAM)?;
    let mut rng = StdRng::seed_from_u64(super::w1::SEED + 2);
    let x = uniform(&mut rng, batch * 64, 4.0);
    let w1 = uniform(&mut rng, 128 * 64, 1.0 / 8.0);
    let b1 = uniform(&mut rng, 128, 1.0 / 8.0);
    let w2 = uniform(&mut rng, 32 * 128, 1.0 / 128f32.sqrt());
    let b2 = uniform(&mut rng, 32, 1.0 / 128f32.sqrt());
    let variables: [(&str, &[f32]); 5] = [
        ("x", &x),
        ("W1", &w1),
        ("b1", &b1),
        ("W2", &w2),
        ("b2", &b2),
    ];
    progress("W2 cpu");
    let cpu_backend = Backend::Cpu(crate::CpuBackend);
    let mut reference = None;
    let cpu = median_seconds(settings.repeats, || {
        reference = Some(cpu_backend.jacobian(&program, "x", &variables)?);
        Ok(())
    })?;
    let reference = reference.ok_or_else(|| Error::Readback("no reference".into()))?;
    let flops = reference.plan.cost.flops;
    let mut timings = vec![
        Timing {
            path: "cpu".into(),
            seconds: cpu,
            flops,
            traffic: None,
        },
        Timing {
            path: "floor".into(),
            seconds: flops / ceilings.matmul,
            flops,
            traffic: None,
        },
    ];
    let mut error = None;
    if let Backend::Gpu(context) = backend {
        progress("W2 gpu");
        // Resident: inputs uploaded (1 MiB), the Jacobians left on the device.
        let resident = median_seconds(settings.repeats, || {
            let (jacobian, _) = context.jacobian_on_device(&program, "x", &variables)?;
            context.synchronize()?;
            drop(jacobian);
            Ok(())
        })?;
        // x in, every Jacobian out, the weights once.
        let min_bytes =
            4.0 * (batch * (64 + 32 * 64) + w1.len() + b1.len() + w2.len() + b2.len()) as f64;
        let (_, resident_traffic) = traffic_of(context, || {
            context.jacobian_on_device(&program, "x", &variables)
        })?;
        timings.push(Timing {
            path: "gpu-resident".into(),
            seconds: resident,
            flops,
            traffic: Some(CallTraffic {
                traffic: resident_traffic,
                min_bytes,
            }),
        });
        let mut last = None;
        let e2e = median_seconds(settings.repeats, || {
            last = Some(backend.jacobian(&program, "x", &variables)?);
            Ok(())
        })?;
        let (_, e2e_traffic) = traffic_of(context, || backend.jacobian(&program, "x", &variables))?;
        timings.push(Timing {
            path: "gpu-end-to-end".into(),
            seconds: e2e,
            flops,
            traffic: Some(CallTraffic {
                traffic: e2e_traffic,
                min_bytes,
            }),
        });
        if let Some(out) = last {
            error = Some(relative_frobenius(
                &out.jacobian.to_dense(batch),
                &reference.jacobian.to_dense(batch),
            ));
        }
    }
    Ok(Report {
        workload: "w2".into(),
        cases: vec![("mlp_jacobian".into(), batch, timings, error)],
    })
}

fn random_dense(rng: &mut StdRng, batch: usize, rows: usize, cols: usize) -> Jacobian {
    let bound = 1.0 / (cols as f64).sqrt();
    Jacobian::Dense {
        batch,
        rows,
        cols,
        data: (0..batch * rows * cols)
            .map(|_| rng.random_range(-bound..bound))
            .collect(),
    }
}

/// W5: B = 256 (16 when quick) chains J6 ... J1 of each shape, multiplied in
/// the scheduler's order, pure forward and pure reverse.
pub fn run_w5(
    backend: &Backend,
    settings: Settings,
    ceilings: Ceilings,
    mut progress: impl FnMut(&str),
) -> Result<Report> {
    let batch = if settings.quick { 16 } else { 256 };
    let mut rng = StdRng::seed_from_u64(super::w1::SEED + 5);
    let mut cases = Vec::new();
    for dims in W5_SHAPES {
        let case = format!("{dims:?}");
        progress(&format!("W5 {case}"));
        // factors[0] is J6 (leftmost).
        let factors: Vec<Jacobian> = (1..7)
            .rev()
            .map(|i| random_dense(&mut rng, batch, dims[i], dims[i - 1]))
            .collect();
        let shapes: Vec<JacShape> = factors.iter().map(Jacobian::shape).collect();
        let orders: [(&str, ChainOrder); 3] = [
            ("optimal", chain_order(&shapes, batch)?),
            ("forward", forward_order(&shapes, batch)?),
            ("reverse", reverse_order(&shapes, batch)?),
        ];
        let mut timings = Vec::new();
        let (optimal_flops, optimal_tree) =
            (orders[0].1.cost.flops, orders[0].1.bracketing.clone());
        let start = Instant::now();
        let reference = optimal_tree.evaluate(&factors, batch)?;
        timings.push(Timing {
            path: "cpu".into(),
            seconds: start.elapsed().as_secs_f64(),
            flops: optimal_flops,
            traffic: None,
        });
        timings.push(Timing {
            path: "floor".into(),
            seconds: optimal_flops / ceilings.matmul,
            flops: optimal_flops,
            traffic: None,
        });
        let mut error = None;
        if let Backend::Gpu(context) = backend {
            let largest = shapes
                .iter()
                .map(|s| s.rows * s.cols)
                .chain([dims[6] * dims[0], dims[6] * dims[2], dims[4] * dims[0]])
                .max()
                .unwrap_or(1)
                .max(dims.iter().max().copied().unwrap_or(1).pow(2));
            let layout = context.batch_layout(batch, largest)?;
            let on_device: Vec<_> = factors
                .iter()
                .map(|f| context.upload_jacobian(f, layout))
                .collect::<Result<_>>()?;
            // The chain's matrices in, its product out.
            let min_bytes = 4.0
                * batch as f64
                * (shapes.iter().map(|s| s.rows * s.cols).sum::<usize>() + dims[6] * dims[0])
                    as f64;
            for (name, order) in &orders {
                progress(&format!("W5 {case} {name}"));
                let mut last = None;
                let seconds = median_seconds(settings.repeats, || {
                    let product = context.chain_product(&on_device, &order.bracketing, layout)?;
                    context.synchronize()?;
                    last = Some(product);
                    Ok(())
                })?;
                if *name == "optimal" {
                    if let Some(product) = &last {
                        let result = context.download_jacobian(product, layout)?;
                        error = Some(relative_frobenius(
                            &result.to_dense(batch),
                            &reference.to_dense(batch),
                        ));
                    }
                }
                let (_, traffic) = traffic_of(context, || {
                    context.chain_product(&on_device, &order.bracketing, layout)
                })?;
                timings.push(Timing {
                    path: (*name).to_string(),
                    seconds,
                    flops: order.cost.flops,
                    traffic: Some(CallTraffic { traffic, min_bytes }),
                });
            }
        }
        cases.push((case, batch, timings, error));
    }
    Ok(Report {
        workload: "w5".into(),
        cases,
    })
}

impl Report {
    /// Every figure as a record.
    pub fn records(&self, machine: &Machine) -> Vec<Record> {
        let mut records = Vec::new();
        let metric = match self.workload.as_str() {
            "w2" => "jacobians_per_s",
            "w3" => "samples_per_s",
            _ => "chains_per_s",
        };
        for (case, batch, timings, error) in &self.cases {
            for t in timings {
                let path = t.path.clone();
                records.push(machine.record(
                    &self.workload,
                    case,
                    &path,
                    metric,
                    *batch as f64 / t.seconds,
                    "1/s",
                ));
                records.push(machine.record(
                    &self.workload,
                    case,
                    &path,
                    "gflop_per_s",
                    t.flops / t.seconds / 1e9,
                    "GFLOP/s",
                ));
                records.push(machine.record(&self.workload, case, &path, "flops", t.flops, "flop"));
                if let Some(traffic) = &t.traffic {
                    records.extend(traffic.records(machine, &self.workload, case, &path));
                }
            }
            if let Some(e) = error {
                let path = if self.workload == "w5" {
                    "optimal"
                } else {
                    "gpu-end-to-end"
                };
                records.push(machine.record(
                    &self.workload,
                    case,
                    path,
                    "relative_frobenius_error",
                    *e,
                    "1",
                ));
            }
        }
        records
    }

    /// The on-screen table.
    pub fn table(&self) -> String {
        use super::si;
        let (title, unit) = match self.workload.as_str() {
            "w2" => (
                "W2 mlp_jacobian: every sample's 32x64 Jacobian (floor = flops / measured matmul rate)",
                "jac/s",
            ),
            "w3" => (
                "W3 neuron_grad: d loss/dw, d loss/db of the batch mean and each sample's d a/dw (floor = 132 bytes a sample / copy bandwidth)",
                "samples/s",
            ),
            _ => (
                "W5 chain_bracketing: J6...J1 per sample (floor = the optimal order's flops / measured matmul rate)",
                "chains/s",
            ),
        };
        let mut out = format!("{title}\n{}\n", super::TRAFFIC_LEGEND);
        out.push_str(&format!(
            "{:<40} {:<15} {:>10} {:>11} {:>10} {:>9} {:>9} {}\n",
            "case",
            "path",
            "flops",
            unit,
            "GFLOP/s",
            "vs floor",
            "vs cpu",
            CallTraffic::headings()
        ));
        for (case, batch, timings, error) in &self.cases {
            let floor = timings
                .iter()
                .find(|t| t.path == "floor")
                .map(|t| t.seconds);
            let cpu = timings.iter().find(|t| t.path == "cpu").map(|t| t.seconds);
            for t in timings {
                let ratio = |reference: Option<f64>| {
                    reference.map_or("-".to_string(), |r| format!("{:.3}", r / t.seconds))
                };
                out.push_str(&format!(
                    "{:<40} {:<15} {:>10.3e} {:>11} {:>10.2} {:>9} {:>9} {}\n",
                    case,
                    t.path,
                    t.flops,
                    si(*batch as f64 / t.seconds),
                    t.flops / t.seconds / 1e9,
                    ratio(floor),
                    ratio(cpu),
                    CallTraffic::cells(t.traffic.as_ref()),
                ));
            }
            if let Some(e) = error {
                out.push_str(&format!(
                    "{:<40} relative Frobenius error of the GPU result vs f64: {e:.2e}\n",
                    case
                ));
            }
        }
        out
    }
}
