//! Device-resident arrays of f32, and the one readback pattern (copy to a
//! MAP_READ buffer, map, poll, copy out, drop the view, unmap).

use std::sync::Arc;

use super::context::GpuContext;
use crate::backend::reserve_host;
use crate::error::{Error, Result};

/// An array of f32 living on the device, for callers that chain GPU work
/// without a round trip through host memory. Stored as one or more buffers of
/// at most one binding each, so any length the device memory holds is usable.
#[derive(Debug, Clone)]
pub struct GpuArray {
    pub(crate) context_id: u64,
    pub(crate) segments: Vec<Arc<wgpu::Buffer>>,
    /// Elements per segment; the last may hold fewer.
    pub(crate) segment_len: usize,
    pub(crate) len: usize,
}

impl GpuArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// (segment, its element count) in order.
    pub(crate) fn segment_lens(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.segments.len()).map(|i| {
            let start = i * self.segment_len;
            (self.len - start).min(self.segment_len)
        })
    }
}

pub(crate) const F32_BYTES: u64 = 4;

/// A byte count as u64, refusing sizes no device could hold.
pub(crate) fn bytes_of(elements: usize, what: &str) -> Result<u64> {
    (elements as u64)
        .checked_mul(F32_BYTES)
        .and_then(|bytes| bytes.checked_next_multiple_of(QUAD_BYTES))
        .ok_or_else(|| Error::TooLarge {
            what: what.to_string(),
            needed: u64::MAX,
            limit: u64::MAX,
        })
}

/// Every storage buffer is a whole number of `vec4<f32>`: kernels that read
/// and write four floats at a time (software drivers pay per access, not
/// per float) then cover a last, partial quad within the buffer, in
/// padding that no result includes.
pub(crate) const QUAD_BYTES: u64 = 16;

impl GpuContext {
    /// Elements in one segment of a device array: what one storage binding
    /// holds and one 2-D grid of 256-wide workgroups covers.
    pub(crate) fn segment_capacity(&self) -> usize {
        let bytes = self
            .limits
            .max_binding_bytes
            .min(self.limits.max_buffer_bytes);
        let max = u64::from(self.limits.max_workgroups_per_dimension);
        // Multiples of 64 elements keep segment starts on 256-byte boundaries.
        let elements = (bytes / F32_BYTES)
            .min(max * max * 256)
            .min(u64::from(u32::MAX))
            & !63;
        usize::try_from(elements).unwrap_or(usize::MAX)
    }

    pub(crate) fn storage_buffer(&self, label: &str, elements: usize) -> Result<wgpu::Buffer> {
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes_of(elements, label)?,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// An uninitialised device array of `len` elements.
    pub(crate) async fn alloc_array(&self, label: &str, len: usize) -> Result<GpuArray> {
        self.alloc_array_segmented(label, len, self.segment_capacity())
            .await
    }

    /// An uninitialised device array of `len` elements in segments of
    /// `segment_len` (at most one binding each).
    pub(crate) async fn alloc_array_segmented(
        &self,
        label: &str,
        len: usize,
        segment_len: usize,
    ) -> Result<GpuArray> {
        let segment_len = segment_len.max(1);
        let count = len.div_ceil(segment_len);
        let segments = self
            .scoped(&format!("allocating {label} ({len} elements)"), || {
                (0..count)
                    .map(|i| {
                        let n = (len - i * segment_len).min(segment_len);
                        self.storage_buffer(label, n).map(Arc::new)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await??;
        Ok(GpuArray {
            context_id: self.id,
            segments,
            segment_len,
            len,
        })
    }

    /// Refuses an array created by another context.
    pub(crate) fn check_owned(&self, array: &GpuArray) -> Result<()> {
        if array.context_id == self.id {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "this GpuArray belongs to another GpuContext".into(),
            ))
        }
    }

    /// Copies host values to a new device array (blocking).
    pub fn upload(&self, values: &[f32]) -> Result<GpuArray> {
        pollster::block_on(self.upload_async(values))
    }

    /// Copies host values to a new device array.
    pub async fn upload_async(&self, values: &[f32]) -> Result<GpuArray> {
        let array = self.alloc_array("chainrule array", values.len()).await?;
        self.scoped("upload", || {
            for (segment, chunk) in array.segments.iter().zip(values.chunks(array.segment_len)) {
                self.queue
                    .write_buffer(segment, 0, bytemuck::cast_slice(chunk));
            }
        })
        .await?;
        Ok(array)
    }

    /// Copies a device array back to the host (blocking).
    pub fn download(&self, array: &GpuArray) -> Result<Vec<f32>> {
        pollster::block_on(self.download_async(array))
    }

    /// Copies a device array back to the host.
    pub async fn download_async(&self, array: &GpuArray) -> Result<Vec<f32>> {
        self.check_owned(array)?;
        let mut out = reserve_host(array.len, "download")?;
        for (segment, n) in array.segments.iter().zip(array.segment_lens()) {
            self.read_back(None, &[(segment.as_ref(), n)], "download", |_, floats| {
                out.extend_from_slice(floats)
            })
            .await?;
        }
        Ok(out)
    }

    /// The one readback pattern. Encodes copies of the first `elements`
    /// floats of each source (after `encoder`'s own work, if any) into pooled
    /// staging buffers, submits, maps, waits, and hands each source's floats
    /// to `sink(index, floats)` in order. Error scopes are popped before any
    /// byte is handed over, so a failed operation never returns stale memory.
    pub(crate) async fn read_back(
        &self,
        encoder: Option<wgpu::CommandEncoder>,
        reads: &[(&wgpu::Buffer, usize)],
        operation: &str,
        mut sink: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        if reads.iter().all(|&(_, elements)| elements == 0) {
            return Ok(());
        }
        let staged = self
            .scoped(operation, || {
                let mut encoder = encoder.unwrap_or_else(|| {
                    self.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("chainrule readback"),
                        })
                });
                // One staging buffer per source: each is at most one binding,
                // so it respects the buffer-size limit however many there are.
                let staging: Vec<wgpu::Buffer> = reads
                    .iter()
                    .map(|&(source, elements)| {
                        let bytes = elements as u64 * F32_BYTES;
                        let buffer = self.take_buffer(
                            bytes,
                            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        );
                        encoder.copy_buffer_to_buffer(source, 0, &buffer, 0, bytes);
                        buffer
                    })
                    .collect();
                self.queue.submit([encoder.finish()]);
                staging
                    .into_iter()
                    .map(|buffer| {
                        let (sender, receiver) = futures::channel::oneshot::channel();
                        buffer.map_async(wgpu::MapMode::Read, .., move |result| {
                            // The receiver is gone only if the caller was dropped.
                            let _ = sender.send(result);
                        });
                        (buffer, receiver)
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        self.wait(operation)?;
        for (index, (buffer, receiver)) in staged.into_iter().enumerate() {
            let mapped = receiver
                .await
                .map_err(|_| Error::Readback(format!("{operation}: the map callback never ran")))?;
            if let Err(error) = mapped {
                self.check_alive()?;
                return Err(Error::Readback(format!("{operation}: {error}")));
            }
            self.check_alive()?;
            {
                let view = buffer
                    .get_mapped_range(..)
                    .map_err(|e| Error::Readback(format!("{operation}: {e}")))?;
                let floats: &[f32] = bytemuck::try_cast_slice(&view)
                    .map_err(|e| Error::Readback(format!("{operation}: {e}")))?;
                // The staging buffer is whole quads; the source's values
                // are its first `elements` floats.
                let elements = reads.get(index).map_or(0, |&(_, n)| n);
                sink(index, floats.get(..elements).unwrap_or(floats));
            }
            buffer.unmap();
            self.recycle(buffer);
        }
        Ok(())
    }
}
