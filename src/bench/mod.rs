//! Support for the benchmark binary `jacobench`: records in the format of
//! the reference workloads, timing, error statistics against the f64
//! reference, the measured ceilings, and the SVG plot. Speed is only ever
//! measured here, never asserted in a test.

pub mod graphs;
pub mod jacobians;
pub mod plot;
pub mod w1;
pub mod w3;

#[cfg(test)]
mod tests;

use std::time::Instant;

use serde::Serialize;

use crate::backend::Backend;
use crate::backend::gpu::{GpuContext, Traffic};
use crate::error::Result;

/// One figure, as `jacobench --json` writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// w1 .. w5, or "ceilings".
    pub workload: String,
    /// e.g. "sigmoid".
    pub case: String,
    /// gpu-end-to-end, gpu-resident, cpu or floor.
    pub path: String,
    /// e.g. "elements_per_s", "max_rel_error", "copy_bandwidth".
    pub metric: String,
    /// The figure.
    pub value: f64,
    /// Its unit: "elem/s", "B/s", "1".
    pub unit: String,
    /// The adapter's name, or "cpu".
    pub adapter: String,
    /// The adapter's API, or "cpu".
    pub backend: String,
}

/// Where figures were measured, stamped on every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The adapter's name, or "cpu".
    pub adapter: String,
    /// The adapter's API, or "cpu".
    pub backend: String,
}

impl Machine {
    /// Describes `backend`.
    pub fn of(backend: &Backend) -> Self {
        match backend {
            Backend::Gpu(context) => Machine {
                adapter: context.adapter().name.clone(),
                backend: context.adapter().backend.clone(),
            },
            Backend::Cpu(_) => Machine {
                adapter: "cpu".into(),
                backend: "cpu".into(),
            },
        }
    }

    /// A record stamped with this machine.
    pub fn record(
        &self,
        workload: &str,
        case: &str,
        path: &str,
        metric: &str,
        value: f64,
        unit: &str,
    ) -> Record {
        Record {
            workload: workload.into(),
            case: case.into(),
            path: path.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            adapter: self.adapter.clone(),
            backend: self.backend.clone(),
        }
    }
}

/// How hard to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Shrink every size 16-fold.
    pub quick: bool,
    /// Timed repeats per figure; the median is reported.
    pub repeats: usize,
    /// Elements for W1 instead of the workload's 2^24 (2^20 when quick).
    pub elements: Option<usize>,
}

impl Settings {
    /// Elements (samples) per call for W1 and W4: 2^24, or 2^20 when quick.
    pub fn elements(&self) -> usize {
        self.elements
            .unwrap_or(if self.quick { 1 << 20 } else { 1 << 24 })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            quick: false,
            repeats: 3,
            elements: None,
        }
    }
}

/// The measured ceilings a run quotes its floors against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceilings {
    /// Copy bandwidth in bytes/s (read plus write): the device's, or the
    /// host's on the CPU backend.
    pub copy: f64,
    /// Host-to-device bytes/s, GPU only.
    pub upload: Option<f64>,
    /// Device-to-host bytes/s, GPU only.
    pub download: Option<f64>,
    /// Matrix-product rate in flops/s: the device's with chainrule's own
    /// tiled kernel, or the host's with the f64 reference product.
    pub matmul: f64,
}

impl Ceilings {
    /// Measures them on `backend` with arrays of `elements` f32 (at least
    /// 2^20) and square products of `matmul_size`.
    pub fn measure(
        backend: &Backend,
        elements: usize,
        matmul_size: usize,
        repeats: usize,
    ) -> Result<Ceilings> {
        let elements = elements.max(1 << 20);
        Ok(match backend {
            Backend::Gpu(context) => {
                let b = context.measure_bandwidths(elements, repeats)?;
                Ceilings {
                    copy: b.copy,
                    upload: Some(b.upload),
                    download: Some(b.download),
                    matmul: context.measure_matmul_rate(matmul_size, repeats)?,
                }
            }
            Backend::Cpu(_) => Ceilings {
                copy: host_copy_bandwidth(elements, repeats),
                upload: None,
                download: None,
                matmul: host_matmul_rate(matmul_size, repeats)?,
            },
        })
    }

    /// The ceilings as records.
    pub fn records(&self, machine: &Machine) -> Vec<Record> {
        let mut records = vec![machine.record(
            "ceilings",
            "copy",
            "floor",
            "copy_bandwidth",
            self.copy,
            "B/s",
        )];
        records.push(machine.record(
            "ceilings",
            "matmul",
            "floor",
            "matmul_rate",
            self.matmul,
            "flop/s",
        ));
        if let (Some(up), Some(down)) = (self.upload, self.download) {
            records.push(machine.record(
                "ceilings",
                "upload",
                "floor",
                "upload_bandwidth",
                up,
                "B/s",
            ));
            records.push(machine.record(
                "ceilings",
                "download",
                "floor",
                "download_bandwidth",
                down,
                "B/s",
            ));
        }
        records
    }
}

/// The median wall time in seconds of `repeats` runs of `work`, after one
/// untimed warm-up run (which compiles kernels and fills caches). A call
/// whose warm-up took over a second is timed once: its figure is stable
/// enough, and repeating it would make a full run needlessly long.
pub fn median_seconds<T>(repeats: usize, mut work: impl FnMut() -> Result<T>) -> Result<f64> {
    let start = Instant::now();
    work()?;
    let repeats = if start.elapsed().as_secs_f64() > 1.0 {
        1
    } else {
        repeats.max(1)
    };
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        work()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// What the traffic columns of a table mean.
pub const TRAFFIC_LEGEND: &str = "per call: kernel dispatches, MB of storage they bind (an upper bound on bytes read and written), and that over the least (inputs once + outputs once, f32)";

/// What one call of a GPU path asked of the device, beside the least that
/// its workload must move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallTraffic {
    /// Kernel dispatches and the bytes of storage they bound, in one call:
    /// an upper bound on the bytes the kernels read and write (host
    /// transfers are not counted).
    pub traffic: Traffic,
    /// The workload's inputs once plus its outputs once, as f32, in bytes.
    pub min_bytes: f64,
}

impl CallTraffic {
    /// How many times the least bytes the call's kernels may move.
    pub fn over_min(&self) -> f64 {
        self.traffic.bytes as f64 / self.min_bytes
    }

    /// Dispatches, bytes and the least bytes as records of `path`.
    pub fn records(
        &self,
        machine: &Machine,
        workload: &str,
        case: &str,
        path: &str,
    ) -> Vec<Record> {
        vec![
            machine.record(
                workload,
                case,
                path,
                "dispatches_per_call",
                self.traffic.dispatches as f64,
                "1",
            ),
            machine.record(
                workload,
                case,
                path,
                "bytes_per_call",
                self.traffic.bytes as f64,
                "B",
            ),
            machine.record(
                workload,
                case,
                path,
                "min_bytes_per_call",
                self.min_bytes,
                "B",
            ),
        ]
    }

    /// The `disp/call`, `MB/call` and `x min` cells of a table row.
    pub fn cells(traffic: Option<&CallTraffic>) -> String {
        match traffic {
            Some(t) => format!(
                "{:>9} {:>9.3} {:>7.2}",
                t.traffic.dispatches,
                t.traffic.bytes as f64 / 1e6,
                t.over_min()
            ),
            None => format!("{:>9} {:>9} {:>7}", "-", "-", "-"),
        }
    }

    /// The headings of [`CallTraffic::cells`].
    pub fn headings() -> String {
        format!("{:>9} {:>9} {:>7}", "disp/call", "MB/call", "x min")
    }
}

/// Runs `work` once on `context` and returns its result with the kernel
/// dispatches and bytes it recorded. Kept apart from the timed calls, so
/// that counting never weighs on a figure.
pub fn traffic_of<T>(
    context: &GpuContext,
    work: impl FnOnce() -> Result<T>,
) -> Result<(T, Traffic)> {
    let before = context.traffic();
    let out = work()?;
    Ok((out, context.traffic() - before))
}

/// A table of what each case's GPU paths asked of the device per call, or
/// nothing when no path ran on a GPU. Paths of a case that asked the same
/// share a row (end to end and resident usually do: host transfers are not
/// kernels).
pub fn traffic_table<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a [(String, CallTraffic)])>,
) -> String {
    let mut lines: Vec<(&str, String, CallTraffic)> = Vec::new();
    for (case, paths) in rows {
        let mut groups: Vec<(String, CallTraffic)> = Vec::new();
        for (path, traffic) in paths {
            let path = path.strip_prefix("gpu-").unwrap_or(path);
            match groups.iter_mut().find(|(_, t)| t == traffic) {
                Some((label, _)) => {
                    label.push_str(", ");
                    label.push_str(path);
                }
                None => groups.push((path.to_string(), *traffic)),
            }
        }
        lines.extend(groups.into_iter().map(|(label, t)| (case, label, t)));
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "  {TRAFFIC_LEGEND}\n  {:<32} {:<36} {} {:>9}\n",
        "case",
        "path",
        CallTraffic::headings(),
        "min MB"
    );
    for (case, label, traffic) in lines {
        out.push_str(&format!(
            "  {:<32} {:<36} {} {:>9.3}\n",
            case,
            label,
            CallTraffic::cells(Some(&traffic)),
            traffic.min_bytes / 1e6
        ));
    }
    out
}

/// Host memory copy bandwidth in bytes per second (read plus write), the
/// floor of the CPU path; best of `repeats` copies of `elements` f32.
pub fn host_copy_bandwidth(elements: usize, repeats: usize) -> f64 {
    let source: Vec<f32> = (0..elements).map(|i| i as f32).collect();
    let mut target = vec![0f32; elements];
    let mut best = 0f64;
    for _ in 0..=repeats.max(1) {
        let start = Instant::now();
        target.copy_from_slice(&source);
        std::hint::black_box(&mut target);
        let seconds = start.elapsed().as_secs_f64().max(1e-9);
        best = best.max(2.0 * 4.0 * elements as f64 / seconds);
    }
    best
}

/// The f64 reference product's rate in flops/s on two shared square
/// matrices, best of `repeats`.
pub fn host_matmul_rate(size: usize, repeats: usize) -> Result<f64> {
    let a = crate::jacobian::Jacobian::Shared {
        rows: size,
        cols: size,
        data: (0..size * size)
            .map(|i| ((i % 7) as f64 - 3.0) * 0.1)
            .collect(),
    };
    let flops = 2.0 * (size as f64).powi(3);
    let mut best = 0f64;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let product = a.product(&a, 1)?;
        std::hint::black_box(&product);
        best = best.max(flops / start.elapsed().as_secs_f64().max(1e-9));
    }
    Ok(best)
}

/// Largest errors of a result against the f64 reference.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ErrorStats {
    /// Largest |actual - reference| over finite pairs.
    pub max_abs: f64,
    /// Largest |actual - reference| / |reference| where |reference| >= 1e-6.
    pub max_rel: f64,
    /// Largest |actual - reference| / (1e-6 + 1e-5 |reference|): at most 1
    /// when every element meets the accuracy contract.
    pub contract: f64,
    /// Elements whose NaN or infinity disagrees with the reference's.
    pub special_mismatches: usize,
}

impl ErrorStats {
    /// Adds one element.
    pub fn add(&mut self, actual: f32, reference: f64) {
        let rounded = reference as f32;
        if reference.is_nan() || rounded.is_infinite() || !actual.is_finite() {
            let agrees = if reference.is_nan() {
                actual.is_nan()
            } else {
                actual == rounded
            };
            if !agrees {
                self.special_mismatches += 1;
            }
            return;
        }
        let error = (f64::from(actual) - reference).abs();
        self.max_abs = self.max_abs.max(error);
        if reference.abs() >= 1e-6 {
            self.max_rel = self.max_rel.max(error / reference.abs());
        }
        self.contract = self.contract.max(error / (1e-6 + 1e-5 * reference.abs()));
    }

    /// The worse of two.
    pub fn merge(self, other: ErrorStats) -> ErrorStats {
        ErrorStats {
            max_abs: self.max_abs.max(other.max_abs),
            max_rel: self.max_rel.max(other.max_rel),
            contract: self.contract.max(other.contract),
            special_mismatches: self.special_mismatches + other.special_mismatches,
        }
    }
}

/// Today's date (UTC) as YYYY-MM-DD, for the plot and the records.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil-from-days algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A number with three significant digits and an SI prefix: 1.23G.
pub fn si(value: f64) -> String {
    if !value.is_finite() || value <= 0.0 {
        return "-".into();
    }
    let prefixes = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, prefix) in prefixes {
        if value >= scale {
            return format!("{:.3}{prefix}", value / scale);
        }
    }
    format!("{value:.3}")
}
