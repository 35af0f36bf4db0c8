//! Element-wise graph workloads: W4 (fan-out: every path's contribution
//! summed) and W1's chain ln(sin(x^3)^2). Each expression is timed through
//! the fused kernel and through the unfused op-by-op plan, so the table
//! shows what fusion buys, beside the CPU path and the floor.

use super::{CallTraffic, ErrorStats, Machine, Record, Settings, median_seconds, traffic_of};
use crate::backend::{Backend, EvalOutput};
use crate::error::{Error, Result};
use crate::graph::{Graph, InputOrder};
use crate::schedule::Fusion;

/// W4's expressions.
pub const W4: [&str; 3] = ["x + x^2", "x * x^2", "sin(x)*exp(x) + x^3/(1 + x^2)"];
/// W1's chain.
pub const W1_CHAIN: &str = "ln(sin(x^3)^2)";

/// Every figure of one expression, in samples per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The expression.
    pub case: String,
    /// Fused kernel, host to host.
    pub fused_end_to_end: Option<f64>,
    /// Fused kernel, device to device.
    pub fused_resident: Option<f64>,
    /// One kernel per operation, host to host.
    pub unfused_end_to_end: Option<f64>,
    /// One kernel per operation, device to device.
    pub unfused_resident: Option<f64>,
    /// The CPU path.
    pub cpu: f64,
    /// Copy bandwidth over the bytes each sample must move.
    pub floor: f64,
    /// The fused result against the f64 reference.
    pub errors: ErrorStats,
    /// ||gpu - reference|| / ||reference|| over values and derivatives.
    pub relative_norm_error: f64,
    /// Per GPU path (as in the records): what one call asks of the device.
    /// Empty on the CPU backend.
    pub traffic: Vec<(String, CallTraffic)>,
}

/// The result of a graph workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// "w4" or "w1".
    pub workload: String,
    /// Samples per call.
    pub samples: usize,
    /// One per expression.
    pub rows: Vec<Row>,
}

fn compare(graph: &Graph, columns: &[&[f32]], out: &EvalOutput) -> (ErrorStats, f64) {
    let k = graph.inputs().len();
    let mut stats = ErrorStats::default();
    let (mut diff, mut norm) = (0f64, 0f64);
    let mut point = vec![0.0; k];
    for i in 0..out.values.len() {
        for (j, column) in columns.iter().enumerate() {
            point[j] = f64::from(column[i]);
        }
        let (value, gradient) = graph.evaluate(&point);
        let pairs = std::iter::once((out.values[i], value))
            .chain((0..k).map(|j| (out.derivatives[i * k + j], gradient[j])));
        for (actual, expected) in pairs {
            stats.add(actual, expected);
            if actual.is_finite() && expected.is_finite() {
                diff += (f64::from(actual) - expected).powi(2);
                norm += expected * expected;
            }
        }
    }
    (stats, (diff / norm.max(f64::MIN_POSITIVE)).sqrt())
}

/// Runs `expressions` (scalar functions of x) over `samples` inputs
/// uniform in [-4, 4]. `copy_bandwidth` is the device's (or host's) measured
/// copy rate in bytes/s.
pub fn run(
    workload: &str,
    backend: &Backend,
    expressions: &[&str],
    samples: usize,
    copy_bandwidth: f64,
    settings: Settings,
    mut progress: impl FnMut(&str),
) -> Result<Report> {
    if samples == 0 {
        return Err(Error::InvalidArgument(format!(
            "{workload} needs at least one sample"
        )));
    }
    let xs = super::w1::inputs(samples);
    let columns: [&[f32]; 1] = [&xs];
    let repeats = settings.repeats;
    let per_second = |seconds: f64| samples as f64 / seconds;
    let mut rows = Vec::new();
    for text in expressions {
        progress(text);
        let graph = Graph::parse(text, InputOrder::FirstAppearance)?;
        let k = graph.inputs().len();
        let bytes_per_sample = 4.0 * (2 * k + 1) as f64;
        let cpu_backend = Backend::Cpu(crate::CpuBackend);
        let cpu = per_second(median_seconds(repeats, || {
            cpu_backend.evaluate(&graph, &columns, Fusion::Fused)
        })?);
        let mut row = Row {
            case: text.to_string(),
            fused_end_to_end: None,
            fused_resident: None,
            unfused_end_to_end: None,
            unfused_resident: None,
            cpu,
            floor: copy_bandwidth / bytes_per_sample,
            errors: ErrorStats::default(),
            relative_norm_error: 0.0,
            traffic: Vec::new(),
        };
        let min_bytes = bytes_per_sample * samples as f64;
        let checked = match backend {
            Backend::Gpu(context) => {
                let device_xs = context.upload(&xs)?;
                let mut fused = None;
                for fusion in [Fusion::Fused, Fusion::Unfused] {
                    let mut last = None;
                    let e2e = per_second(median_seconds(repeats, || {
                        last = Some(context.evaluate(&graph, &columns, fusion)?);
                        Ok(())
                    })?);
                    let resident = per_second(median_seconds(repeats, || {
                        let out = context.evaluate_resident(&graph, &[&device_xs], fusion)?;
                        context.synchronize()?;
                        drop(out);
                        Ok(())
                    })?);
                    let (_, e2e_traffic) =
                        traffic_of(context, || context.evaluate(&graph, &columns, fusion))?;
                    let (_, resident_traffic) = traffic_of(context, || {
                        context.evaluate_resident(&graph, &[&device_xs], fusion)
                    })?;
                    let suffix = match fusion {
                        Fusion::Fused => "",
                        Fusion::Unfused => "-unfused",
                    };
                    for (path, traffic) in [
                        ("gpu-end-to-end", e2e_traffic),
                        ("gpu-resident", resident_traffic),
                    ] {
                        row.traffic.push((
                            format!("{path}{suffix}"),
                            CallTraffic { traffic, min_bytes },
                        ));
                    }
                    match fusion {
                        Fusion::Fused => {
                            row.fused_end_to_end = Some(e2e);
                            row.fused_resident = Some(resident);
                            fused = last;
                        }
                        Fusion::Unfused => {
                            row.unfused_end_to_end = Some(e2e);
                            row.unfused_resident = Some(resident);
                        }
                    }
                }
                fused.ok_or_else(|| Error::Readback("no result was timed".into()))?
            }
            Backend::Cpu(_) => cpu_backend.evaluate(&graph, &columns, Fusion::Fused)?,
        };
        let (errors, relative) = compare(&graph, &columns, &checked);
        row.errors = errors;
        row.relative_norm_error = relative;
        rows.push(row);
    }
    Ok(Report {
        workload: workload.to_string(),
        samples,
        rows,
    })
}

impl Report {
    /// Every figure as a record.
    pub fn records(&self, machine: &Machine) -> Vec<Record> {
        let mut records = Vec::new();
        for row in &self.rows {
            let mut push = |path: &str, metric: &str, value: f64, unit: &str| {
                records.push(machine.record(&self.workload, &row.case, path, metric, value, unit));
            };
            let paths = [
                ("gpu-end-to-end", row.fused_end_to_end),
                ("gpu-resident", row.fused_resident),
                ("gpu-end-to-end-unfused", row.unfused_end_to_end),
                ("gpu-resident-unfused", row.unfused_resident),
                ("cpu", Some(row.cpu)),
                ("floor", Some(row.floor)),
            ];
            for (path, value) in paths {
                if let Some(v) = value {
                    push(path, "elements_per_s", v, "elem/s");
                }
            }
            let checked = if row.fused_resident.is_some() {
                "gpu-end-to-end"
            } else {
                "cpu"
            };
            push(checked, "max_rel_error", row.errors.max_rel, "1");
            push(checked, "max_abs_error", row.errors.max_abs, "1");
            push(checked, "contract_ratio", row.errors.contract, "1");
            push(checked, "relative_norm_error", row.relative_norm_error, "1");
            push(
                checked,
                "special_value_mismatches",
                row.errors.special_mismatches as f64,
                "1",
            );
            for (path, traffic) in &row.traffic {
                records.extend(traffic.records(machine, &self.workload, &row.case, path));
            }
        }
        records
    }

    /// The on-screen table.
    pub fn table(&self) -> String {
        use super::si;
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let name = if self.workload == "w4" {
            "W4 total derivative"
        } else {
            "W1 chain"
        };
        let mut out = format!(
            "{name}, N = {} (samples/s; fused = one kernel, unfused = one kernel per operation)\n",
            self.samples
        );
        out.push_str(&format!(
            "{:<32} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9}\n",
            "case",
            "fused-res",
            "unf-res",
            "fused-e2e",
            "unf-e2e",
            "cpu",
            "floor",
            "fusion",
            "res/flr",
            "res/cpu",
            "rel-norm"
        ));
        for row in &self.rows {
            out.push_str(&format!(
                "{:<32} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9.1e}\n",
                row.case,
                row.fused_resident.map_or("-".into(), si),
                row.unfused_resident.map_or("-".into(), si),
                row.fused_end_to_end.map_or("-".into(), si),
                row.unfused_end_to_end.map_or("-".into(), si),
                si(row.cpu),
                si(row.floor),
                ratio(row.fused_resident, row.unfused_resident),
                ratio(row.fused_resident.or(Some(row.cpu)), Some(row.floor)),
                ratio(row.fused_resident, Some(row.cpu)),
                row.relative_norm_error,
            ));
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
                let paths = [
                    ("gpu-resident", row.fused_resident),
                    ("gpu-resident-unfused", row.unfused_resident),
                    ("gpu-end-to-end", row.fused_end_to_end),
                    ("gpu-end-to-end-unfused", row.unfused_end_to_end),
                    ("cpu", Some(row.cpu)),
                ];
                super::plot::PlotCase {
                    case: row.case.clone(),
                    paths: paths
                        .into_iter()
                        .filter_map(|(p, v)| v.map(|v| (p.to_string(), v)))
                        .collect(),
                    floor: Some(row.floor),
                }
            })
            .collect()
    }
}
