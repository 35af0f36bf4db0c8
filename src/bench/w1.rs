//! W1 of the reference workloads: values and derivatives of every unary
//! operation for N = 2^24 inputs drawn uniformly from [-4, 4], timed end to
//! end, device-resident and on the CPU path, beside the floor of 12 bytes per
//! element over the measured copy bandwidth.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    CallTraffic, Ceilings, ErrorStats, Machine, Record, Settings, median_seconds, traffic_of,
};
use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, UnaryOutput};
use crate::error::{Error, Result};
use crate::ops::UnaryOp;

/// Bytes each element moves at least: x in, value and derivative out.
pub const BYTES_PER_ELEMENT: f64 = 12.0;
/// The seed of W1's inputs, so that every run times the same data.
pub const SEED: u64 = 0x5eed_0001;

/// Every figure of one operation, in elements per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The operation, e.g. "leaky_relu(0.01)".
    pub case: String,
    /// Host slices in, host vectors out; `None` on the CPU backend.
    pub end_to_end: Option<f64>,
    /// Device arrays in, device arrays out; `None` on the CPU backend.
    pub resident: Option<f64>,
    /// The project's own CPU path (f64 reference, all threads).
    pub cpu: f64,
    /// Copy bandwidth over 12 bytes per element, on the device (or the host).
    pub floor: f64,
    /// Upload and readback bandwidths over 4 + 8 bytes per element.
    pub end_to_end_floor: Option<f64>,
    /// The timed GPU result against the f64 reference.
    pub errors: ErrorStats,
    /// Per GPU path (gpu-end-to-end, gpu-resident): what one call asks of
    /// the device. Empty on the CPU backend.
    pub traffic: Vec<(String, CallTraffic)>,
}

/// W1's result: a row per operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Elements per call.
    pub elements: usize,
    /// One per operation.
    pub rows: Vec<Row>,
}

/// W1's inputs: uniform in [-4, 4] from a fixed seed.
pub fn inputs(elements: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..elements)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect()
}

/// Compares `out` with the f64 reference of `op` at every element, on all threads.
pub fn reference_errors(op: UnaryOp, xs: &[f32], out: &UnaryOutput) -> ErrorStats {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = xs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = xs
            .chunks(chunk)
            .zip(out.values.chunks(chunk))
            .zip(out.derivatives.chunks(chunk))
            .map(|((x, v), d)| {
                scope.spawn(move || {
                    let mut stats = ErrorStats::default();
                    for ((&x, &v), &d) in x.iter().zip(v).zip(d) {
                        let (value, derivative) = op.value_and_derivative(f64::from(x));
                        stats.add(v, value);
                        stats.add(d, derivative);
                    }
                    stats
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .fold(ErrorStats::default(), ErrorStats::merge)
    })
}

/// Runs W1 for `ops` on `backend`. `progress` is called before each operation.
pub fn run(
    backend: &Backend,
    ops: &[UnaryOp],
    settings: Settings,
    ceilings: Ceilings,
    mut progress: impl FnMut(&str),
) -> Result<Report> {
    let elements = settings.elements();
    if elements == 0 {
        return Err(Error::InvalidArgument(
            "W1 needs at least one element".into(),
        ));
    }
    let xs = inputs(elements);
    let repeats = settings.repeats;
    let Ceilings {
        copy,
        upload,
        download,
        ..
    } = ceilings;
    let end_to_end_floor = match (upload, download) {
        (Some(up), Some(down)) => Some(1.0 / (4.0 / up + 8.0 / down)),
        _ => None,
    };
    let per_second = |seconds: f64| elements as f64 / seconds;
    let min_bytes = BYTES_PER_ELEMENT * elements as f64;
    let mut rows = Vec::with_capacity(ops.len());
    for &op in ops {
        progress(&op.to_string());
        let cpu = per_second(median_seconds(repeats, || CpuBackend.unary(op, &xs))?);
        let mut traffic = Vec::new();
        let (end_to_end, resident, errors) = match backend {
            Backend::Gpu(context) => {
                let mut last = None;
                let e2e = median_seconds(repeats, || {
                    last = Some(context.unary(op, &xs)?);
                    Ok(())
                })?;
                let out = last.ok_or_else(|| Error::Readback("no result was timed".into()))?;
                let device_xs = context.upload(&xs)?;
                let mut device_out = None;
                let resident = median_seconds(repeats, || {
                    device_out = Some(context.unary_resident(op, &device_xs)?);
                    context.synchronize()
                })?;
                let mut errors = reference_errors(op, &xs, &out);
                // The resident result must be the same numbers, not just fast.
                if let Some((values, derivatives)) = device_out {
                    let resident_out = UnaryOutput {
                        values: context.download(&values)?,
                        derivatives: context.download(&derivatives)?,
                    };
                    errors = errors.merge(reference_errors(op, &xs, &resident_out));
                }
                let (_, e2e_traffic) = traffic_of(context, || context.unary(op, &xs))?;
                let (_, resident_traffic) =
                    traffic_of(context, || context.unary_resident(op, &device_xs))?;
                for (path, t) in [
                    ("gpu-end-to-end", e2e_traffic),
                    ("gpu-resident", resident_traffic),
                ] {
                    traffic.push((
                        path.to_string(),
                        CallTraffic {
                            traffic: t,
                            min_bytes,
                        },
                    ));
                }
                (Some(per_second(e2e)), Some(per_second(resident)), errors)
            }
            Backend::Cpu(cpu_backend) => {
                let out = cpu_backend.unary(op, &xs)?;
                (None, None, reference_errors(op, &xs, &out))
            }
        };
        rows.push(Row {
            case: op.to_string(),
            end_to_end,
            resident,
            cpu,
            floor: copy / BYTES_PER_ELEMENT,
            end_to_end_floor,
            errors,
            traffic,
        });
    }
    Ok(Report { elements, rows })
}

impl Report {
    /// Every figure as a record for `--json`.
    pub fn records(&self, machine: &Machine) -> Vec<Record> {
        let mut records = Vec::new();
        for row in &self.rows {
            let mut push = |path: &str, metric: &str, value: f64, unit: &str| {
                records.push(machine.record("w1", &row.case, path, metric, value, unit));
            };
            if let Some(v) = row.end_to_end {
                push("gpu-end-to-end", "elements_per_s", v, "elem/s");
            }
            if let Some(v) = row.resident {
                push("gpu-resident", "elements_per_s", v, "elem/s");
            }
            push("cpu", "elements_per_s", row.cpu, "elem/s");
            push("floor", "elements_per_s", row.floor, "elem/s");
            if let Some(v) = row.end_to_end_floor {
                push("floor", "elements_per_s_end_to_end", v, "elem/s");
            }
            let path = if row.resident.is_some() {
                "gpu-end-to-end"
            } else {
                "cpu"
            };
            push(path, "max_rel_error", row.errors.max_rel, "1");
            push(path, "max_abs_error", row.errors.max_abs, "1");
            push(path, "contract_ratio", row.errors.contract, "1");
            push(
                path,
                "special_value_mismatches",
                row.errors.special_mismatches as f64,
                "1",
            );
            for (path, traffic) in &row.traffic {
                records.extend(traffic.records(machine, "w1", &row.case, path));
            }
        }
        records
    }

    /// The on-screen table.
    pub fn table(&self) -> String {
        use super::si;
        let mut out = format!(
            "W1 activations, N = {} (elements/s; floor = copy bandwidth / 12 B; contract = worst error / (1e-6 + 1e-5 |ref|), <= 1 passes)\n",
            self.elements
        );
        out.push_str(&format!(
            "{:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
            "case",
            "gpu-e2e",
            "e2e-floor",
            "gpu-res",
            "floor",
            "res/floor",
            "e2e/flr",
            "res/cpu",
            "e2e/cpu",
            "cpu",
            "abs-err",
            "contract"
        ));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "-".into(),
        };
        for row in &self.rows {
            out.push_str(&format!(
                "{:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8.1e} {:>8.3}\n",
                row.case,
                row.end_to_end.map_or("-".into(), si),
                row.end_to_end_floor.map_or("-".into(), si),
                row.resident.map_or("-".into(), si),
                si(row.floor),
                ratio(row.resident.or(Some(row.cpu)), Some(row.floor)),
                ratio(row.end_to_end, row.end_to_end_floor),
                ratio(row.resident, Some(row.cpu)),
                ratio(row.end_to_end, Some(row.cpu)),
                si(row.cpu),
                row.errors.max_abs,
                row.errors.contract,
            ));
            if row.errors.special_mismatches > 0 {
                out.push_str(&format!(
                    "  {}: {} NaN/Inf results disagree with the reference\n",
                    row.case, row.errors.special_mismatches
                ));
            }
        }
        out.push_str(&super::traffic_table(
            self.rows
                .iter()
                .map(|row| (row.case.as_str(), row.traffic.as_slice())),
        ));
        out
    }

    /// The cases for the SVG plot.
    pub fn plot_cases(&self) -> Vec<super::plot::PlotCase> {
        self.rows
            .iter()
            .map(|row| {
                let mut paths = Vec::new();
                if let Some(v) = row.resident {
                    paths.push(("gpu-resident".to_string(), v));
                }
                if let Some(v) = row.end_to_end {
                    paths.push(("gpu-end-to-end".to_string(), v));
                }
                paths.push(("cpu".to_string(), row.cpu));
                super::plot::PlotCase {
                    case: row.case.clone(),
                    paths,
                    floor: Some(row.floor),
                }
            })
            .collect()
    }
}
