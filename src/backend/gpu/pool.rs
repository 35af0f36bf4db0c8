//! A small pool of device buffers, so that repeated calls of the same size
//! reuse memory instead of allocating (and having wgpu zero) fresh buffers
//! every time. Buffers are keyed by exact size and usage.

use std::sync::{Mutex, PoisonError};

use super::context::GpuContext;

/// Most bytes the pool keeps idle; beyond it the oldest buffers are freed.
const IDLE_BYTES: u64 = 1 << 30;

/// Idle buffers, oldest first.
#[derive(Default)]
pub(crate) struct BufferPool {
    idle: Mutex<Vec<wgpu::Buffer>>,
}

impl BufferPool {
    fn take(&self, size: u64, usage: wgpu::BufferUsages) -> Option<wgpu::Buffer> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let index = idle
            .iter()
            .rposition(|b| b.size() == size && b.usage() == usage)?;
        Some(idle.remove(index))
    }

    fn give(&self, buffer: wgpu::Buffer) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.push(buffer);
        let mut total: u64 = idle.iter().map(wgpu::Buffer::size).sum();
        while total > IDLE_BYTES && !idle.is_empty() {
            total -= idle.remove(0).size();
        }
    }

    pub(crate) fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl GpuContext {
    /// A buffer of `size` bytes rounded up to whole quads (see
    /// [`super::array::QUAD_BYTES`]) and `usage`, from the pool or new. Its
    /// contents are whatever the last user left; callers overwrite it.
    pub(crate) fn take_buffer(&self, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let size = size.next_multiple_of(super::array::QUAD_BYTES);
        self.pool.take(size, usage).unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("chainrule pooled buffer"),
                size,
                usage,
                mapped_at_creation: false,
            })
        })
    }

    /// Returns a buffer taken with [`GpuContext::take_buffer`] for reuse.
    pub(crate) fn recycle(&self, buffer: wgpu::Buffer) {
        self.pool.give(buffer);
    }
}
