//! Measured ceilings of the device, the floors every benchmark figure is
//! quoted against: device-to-device copy bandwidth, and the host-to-device and
//! device-to-host transfer rates that bound an end-to-end call.

use std::time::Instant;

use super::array::F32_BYTES;
use super::context::GpuContext;
use crate::backend::host_vec;
use crate::error::Result;

/// Transfer rates in bytes per second, best of several repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidths {
    /// Device-to-device copy, counting bytes read plus bytes written.
    pub copy: f64,
    /// Host to device (upload).
    pub upload: f64,
    /// Device to host (readback).
    pub download: f64,
}

impl GpuContext {
    /// Measures the three transfer rates with arrays of `elements` f32 (capped
    /// to one binding), best of `repeats` after one warm-up.
    pub fn measure_bandwidths(&self, elements: usize, repeats: usize) -> Result<Bandwidths> {
        let n = elements.min(self.segment_capacity()).max(1);
        let bytes = n as u64 * F32_BYTES;
        let host: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let source = self.upload(&host)?;
        let target = self.storage_buffer("copy target", n)?;
        let mut out = host_vec(n, "bandwidth readback")?;
        let (mut copy, mut upload, mut download) = (0f64, 0f64, 0f64);
        for round in 0..=repeats.max(1) {
            let start = Instant::now();
            pollster::block_on(self.scoped("copy bandwidth", || {
                let mut encoder =
                    self.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("copy bandwidth"),
                        });
                encoder.copy_buffer_to_buffer(&source.segments[0], 0, &target, 0, bytes);
                self.queue.submit([encoder.finish()]);
            }))?;
            self.wait("copy bandwidth")?;
            let copy_rate = 2.0 * bytes as f64 / start.elapsed().as_secs_f64();

            let start = Instant::now();
            pollster::block_on(self.scoped("upload bandwidth", || {
                self.queue
                    .write_buffer(&target, 0, bytemuck::cast_slice(&host));
                self.queue.submit([]);
            }))?;
            self.wait("upload bandwidth")?;
            let upload_rate = bytes as f64 / start.elapsed().as_secs_f64();

            let start = Instant::now();
            pollster::block_on(
                self.read_back(None, &[(&target, n)], "download", |_, floats| {
                    out.copy_from_slice(floats)
                }),
            )?;
            let download_rate = bytes as f64 / start.elapsed().as_secs_f64();

            // Round 0 warms caches and allocators; it is not counted.
            if round > 0 {
                copy = copy.max(copy_rate);
                upload = upload.max(upload_rate);
                download = download.max(download_rate);
            }
        }
        Ok(Bandwidths {
            copy,
            upload,
            download,
        })
    }
}

impl GpuContext {
    /// The matrix-product rate in flops/s of chainrule's own tiled kernel on
    /// two shared `size` x `size` matrices, best of `repeats` after a warm-up:
    /// the ceiling Jacobian products are quoted against.
    pub fn measure_matmul_rate(&self, size: usize, repeats: usize) -> Result<f64> {
        use super::jacobian::{BatchLayout, GpuJacobian};
        let values: Vec<f32> = (0..size * size)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.1)
            .collect();
        let a = GpuJacobian::Shared {
            rows: size,
            cols: size,
            buffer: self.upload_shared(&values),
        };
        let one = BatchLayout {
            batch: 1,
            per_segment: 1,
        };
        let flops = 2.0 * (size as f64).powi(3);
        let mut best = 0f64;
        for round in 0..=repeats.max(1) {
            let start = Instant::now();
            let product = self.matmul(None, &a, None, &a, None, false, one)?;
            self.synchronize()?;
            drop(product);
            if round > 0 {
                best = best.max(flops / start.elapsed().as_secs_f64());
            }
        }
        Ok(best)
    }
}
