//! Criterion benches of the bulk unary call, for statistics across runs;
//! `jacobench` is where figures beside the floor come from.
//! CHAINRULE_BENCH_QUICK=1 shrinks the sizes so CI can run it as a smoke test.

use std::time::{Duration, Instant};

use chainrule::{ContextOptions, CpuBackend, GpuContext, UnaryOp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn unary(c: &mut Criterion) {
    let quick = std::env::var("CHAINRULE_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n = if quick { 1 << 14 } else { 1 << 22 };
    let xs = chainrule::bench::w1::inputs(n);
    let gpu = match GpuContext::new(&ContextOptions::default()) {
        Ok(context) => Some(context),
        Err(error) => {
            eprintln!("no GPU ({error}); benching the CPU path only");
            None
        }
    };
    let mut group = c.benchmark_group("unary");
    group.throughput(Throughput::Elements(n as u64));
    if quick {
        group.sample_size(10);
        group.measurement_time(Duration::from_millis(500));
        group.warm_up_time(Duration::from_millis(100));
    }
    for op in [UnaryOp::Sigmoid, UnaryOp::Gelu, UnaryOp::Sin] {
        group.bench_function(format!("{op}/cpu"), |b| {
            b.iter(|| CpuBackend.unary(op, &xs).expect("cpu unary"))
        });
        let Some(context) = &gpu else { continue };
        group.bench_function(format!("{op}/gpu-end-to-end"), |b| {
            b.iter(|| context.unary(op, &xs).expect("gpu unary"))
        });
        let device_xs = context.upload(&xs).expect("upload");
        group.bench_function(format!("{op}/gpu-resident"), |b| {
            b.iter_custom(|iterations| {
                let start = Instant::now();
                for _ in 0..iterations {
                    let out = context.unary_resident(op, &device_xs).expect("resident");
                    context.synchronize().expect("synchronize");
                    drop(out);
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, unary);
criterion_main!(benches);
