//! The benchmark's records and tables, on figures made up by hand (no
//! device needed): every GPU path carries its traffic, nothing else does.

use super::jacobians::{Report, Timing};
use super::{CallTraffic, Machine, traffic_table};
use crate::backend::gpu::Traffic;

fn machine() -> Machine {
    Machine {
        adapter: "test adapter".into(),
        backend: "vulkan".into(),
    }
}

fn traffic(dispatches: u64, bytes: u64, min_bytes: f64) -> CallTraffic {
    CallTraffic {
        traffic: Traffic { dispatches, bytes },
        min_bytes,
    }
}

#[test]
fn traffic_records_carry_dispatches_bytes_and_the_least_bytes() {
    let records = traffic(3, 1_200, 800.0).records(&machine(), "w3", "neuron_grad", "gpu-resident");
    let found: Vec<(&str, f64, &str)> = records
        .iter()
        .map(|r| (r.metric.as_str(), r.value, r.unit.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("dispatches_per_call", 3.0, "1"),
            ("bytes_per_call", 1_200.0, "B"),
            ("min_bytes_per_call", 800.0, "B"),
        ]
    );
    assert!(records.iter().all(|r| r.workload == "w3"
        && r.case == "neuron_grad"
        && r.path == "gpu-resident"
        && r.adapter == "test adapter"));
    assert_eq!(traffic(3, 1_200, 800.0).over_min(), 1.5);
}

#[test]
fn a_jacobian_report_gives_traffic_for_its_gpu_paths_only() {
    let timing = |path: &str, traffic: Option<CallTraffic>| Timing {
        path: path.into(),
        seconds: 0.5,
        flops: 0.0,
        traffic,
    };
    let report = Report {
        workload: "w3".into(),
        cases: vec![(
            "neuron_grad".into(),
            1024,
            vec![
                timing("cpu", None),
                timing("gpu-resident", Some(traffic(3, 270_336, 135_168.0))),
            ],
            Some(1e-7),
        )],
    };
    let records = report.records(&machine());
    let value = |path: &str, metric: &str| {
        records
            .iter()
            .find(|r| r.path == path && r.metric == metric)
            .map(|r| r.value)
    };
    assert_eq!(value("gpu-resident", "dispatches_per_call"), Some(3.0));
    assert_eq!(value("gpu-resident", "bytes_per_call"), Some(270_336.0));
    assert_eq!(value("gpu-resident", "min_bytes_per_call"), Some(135_168.0));
    assert_eq!(value("cpu", "dispatches_per_call"), None);
    assert_eq!(value("cpu", "samples_per_s"), Some(2048.0));
    let table = report.table();
    assert!(table.contains("disp/call"), "{table}");
    let resident = table
        .lines()
        .find(|l| l.contains("gpu-resident"))
        .unwrap_or_default();
    assert!(
        resident.trim_end().ends_with("3     0.270    2.00"),
        "{table}"
    );
}

#[test]
fn paths_that_asked_the_same_share_a_row_of_the_traffic_table() {
    let paths = vec![
        ("gpu-end-to-end".to_string(), traffic(1, 12_000, 12_000.0)),
        ("gpu-resident".to_string(), traffic(1, 12_000, 12_000.0)),
        (
            "gpu-end-to-end-unfused".to_string(),
            traffic(4, 60_000, 12_000.0),
        ),
    ];
    let table = traffic_table([("ln(sin(x^3)^2)", paths.as_slice())]);
    let rows: Vec<&str> = table.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].contains("end-to-end, resident "), "{table}");
    assert!(rows[0].contains(" 1.00 "), "{table}");
    assert!(rows[1].contains("end-to-end-unfused "), "{table}");
    assert!(rows[1].contains(" 5.00 "), "{table}");
    assert_eq!(traffic_table([("x", &[][..])]), "");
}
