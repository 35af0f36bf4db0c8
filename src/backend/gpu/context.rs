//! The GPU context: instance, adapter, device, queue and limits, created once
//! and shared (it is `Send + Sync`; wrap it in an `Arc` to share it between
//! threads). Every operation runs inside error scopes; uncaptured errors and a
//! lost device are recorded by callbacks that never panic and are checked on
//! every call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::adapter;
use crate::error::{Error, Result};

/// Smaller limits than the adapter's, so that tests (and cautious callers) can
/// force the chunked paths on any device. `None` keeps the adapter's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsOverride {
    /// Largest storage binding in bytes.
    pub max_binding_bytes: Option<u64>,
    /// Largest buffer in bytes.
    pub max_buffer_bytes: Option<u64>,
    /// Most workgroups in one dimension of a dispatch.
    pub max_workgroups_per_dimension: Option<u32>,
}

/// How to choose and open the device. `Default` reads WGPU_BACKEND and
/// WGPU_ADAPTER_NAME from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextOptions {
    /// Backends as in WGPU_BACKEND (e.g. "vulkan"); `None` reads the variable.
    pub backend: Option<String>,
    /// Part of the adapter's name, as in WGPU_ADAPTER_NAME; `None` reads the variable.
    pub adapter_name: Option<String>,
    /// Limits smaller than the adapter's.
    pub limits: LimitsOverride,
}

/// The limits chainrule plans its dispatches with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Largest storage binding in bytes.
    pub max_binding_bytes: u64,
    /// Largest buffer in bytes.
    pub max_buffer_bytes: u64,
    /// Most workgroups in one dimension of a dispatch.
    pub max_workgroups_per_dimension: u32,
}

/// What `chainrule info` prints about one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterReport {
    /// The adapter's name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Vulkan, Gl, Metal, Dx12.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// The driver's name.
    pub driver: String,
    /// The driver's version and details.
    pub driver_info: String,
    /// Every limit, one `name: value` line each.
    pub limits: Vec<(String, String)>,
    /// Every feature the adapter offers.
    pub features: Vec<String>,
}

impl AdapterReport {
    fn new(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = format!("{:#?}", adapter.limits());
        AdapterReport {
            name: info.name,
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            limits: limits
                .lines()
                .filter_map(|line| line.trim().trim_end_matches(',').split_once(": "))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            features: adapter
                .features()
                .iter_names()
                .map(|(name, _)| name.to_string())
                .collect(),
        }
    }
}

/// A compiled compute pipeline with its bind-group layout.
pub(crate) struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// Identifies contexts so that an array from one is refused by another.
static NEXT_CONTEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A GPU device ready for chainrule's kernels.
pub struct GpuContext {
    pub(crate) id: u64,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: DeviceLimits,
    report: AdapterReport,
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    pub(crate) pool: super::pool::BufferPool,
    /// A tiny storage buffer bound where a kernel's optional input is unused.
    pub(crate) dummy: Arc<wgpu::Buffer>,
    lost: Arc<AtomicBool>,
    lost_reason: Arc<Mutex<String>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Kernel dispatches recorded so far.
    dispatches: AtomicU64,
    /// Bytes of storage bound by those dispatches.
    bytes_bound: AtomicU64,
}

/// Work recorded on a context: what a plan costs on any GPU, whatever its
/// speed. Take [`GpuContext::traffic`] before and after a call and subtract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Kernel dispatches.
    pub dispatches: u64,
    /// Bytes of storage buffers bound by those dispatches: what the kernels
    /// may read or write (an upper bound on the bytes they move; exact for
    /// kernels that touch every bound element once).
    pub bytes: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;

    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            dispatches: self.dispatches.saturating_sub(earlier.dispatches),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.report.name)
            .field("backend", &self.report.backend)
            .field("limits", &self.limits)
            .finish()
    }
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = backends;
    // Validation layers are a debugging aid that most machines lack; without
    // this they print warnings on every start.
    descriptor.flags = wgpu::InstanceFlags::empty();
    wgpu::Instance::new(descriptor)
}

/// The backends asked for, or `None` when neither the options nor the
/// environment restrict them.
fn resolve_backends(options: &ContextOptions) -> Result<Option<wgpu::Backends>> {
    match &options.backend {
        Some(value) => adapter::parse_backends(value).map(Some),
        None => match adapter::env_value(adapter::BACKEND_VARIABLE)? {
            Some(value) => adapter::parse_backends(&value).map(Some),
            None => Ok(None),
        },
    }
}

/// The adapters to choose from. Unrestricted, the native APIs are tried
/// first and GL only where they offer nothing: GL is the slower path, and
/// probing it wakes display code that complains on headless machines.
async fn candidate_adapters(options: &ContextOptions) -> Result<Vec<wgpu::Adapter>> {
    let backends = resolve_backends(options)?;
    let first = backends.unwrap_or(wgpu::Backends::PRIMARY);
    let adapters = new_instance(first)
        .enumerate_adapters(wgpu::Backends::all())
        .await;
    if adapters.is_empty() && backends.is_none() {
        return Ok(new_instance(wgpu::Backends::SECONDARY)
            .enumerate_adapters(wgpu::Backends::all())
            .await);
    }
    Ok(adapters)
}

fn resolve_adapter_name(options: &ContextOptions) -> Result<Option<String>> {
    match &options.adapter_name {
        Some(name) => Ok(Some(name.clone())),
        None => adapter::env_value(adapter::ADAPTER_NAME_VARIABLE),
    }
}

/// Every adapter visible with these options (for `chainrule info`; GL
/// included), and the index of the one a context would choose, or why none would be.
pub async fn survey_adapters(
    options: &ContextOptions,
) -> Result<(Vec<AdapterReport>, Result<usize>)> {
    let name = resolve_adapter_name(options)?;
    let chosen = candidate_adapters(options)
        .await?
        .iter()
        .map(wgpu::Adapter::get_info)
        .collect::<Vec<_>>();
    let backends = resolve_backends(options)?.unwrap_or(wgpu::Backends::all());
    let adapters = new_instance(backends)
        .enumerate_adapters(wgpu::Backends::all())
        .await;
    let reports: Vec<AdapterReport> = adapters.iter().map(AdapterReport::new).collect();
    // Report the choice as an index into everything seen.
    let index = adapter::choose_info(&chosen, name.as_deref()).and_then(|i| {
        let info = &chosen[i];
        adapters
            .iter()
            .position(|a| {
                let seen = a.get_info();
                seen.name == info.name && seen.backend == info.backend
            })
            .ok_or_else(|| Error::NoAdapter {
                detail: " (the chosen adapter vanished)".into(),
            })
    });
    Ok((reports, index))
}

fn min_some<T: Ord + Copy>(value: T, limit: Option<T>) -> T {
    limit.map_or(value, |l| value.min(l))
}

impl GpuContext {
    /// Opens the device chosen by `options` (blocking).
    pub fn new(options: &ContextOptions) -> Result<Self> {
        pollster::block_on(Self::new_async(options))
    }

    /// Opens the device chosen by `options`.
    pub async fn new_async(options: &ContextOptions) -> Result<Self> {
        let mut adapters = candidate_adapters(options).await?;
        let name = resolve_adapter_name(options)?;
        let index = adapter::choose(&adapters, name.as_deref())?;
        let adapter = adapters.swap_remove(index);
        let report = AdapterReport::new(&adapter);

        let mut required = adapter.limits();
        let o = options.limits;
        required.max_storage_buffer_binding_size = min_some(
            required.max_storage_buffer_binding_size,
            o.max_binding_bytes,
        );
        required.max_buffer_size = min_some(required.max_buffer_size, o.max_buffer_bytes);
        required.max_compute_workgroups_per_dimension = min_some(
            required.max_compute_workgroups_per_dimension,
            o.max_workgroups_per_dimension,
        );
        let limits = DeviceLimits {
            max_binding_bytes: required.max_storage_buffer_binding_size,
            max_buffer_bytes: required.max_buffer_size,
            max_workgroups_per_dimension: required.max_compute_workgroups_per_dimension,
        };
        if limits.max_binding_bytes < 1024 || limits.max_workgroups_per_dimension < 1 {
            return Err(Error::InvalidArgument(format!(
                "limits too small to run anything: {limits:?}"
            )));
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("chainrule"),
                required_features: wgpu::Features::empty(),
                required_limits: required,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::DeviceRequest(e.to_string()))?;

        let lost = Arc::new(AtomicBool::new(false));
        let lost_reason = Arc::new(Mutex::new(String::new()));
        {
            let lost = Arc::clone(&lost);
            let lost_reason = Arc::clone(&lost_reason);
            device.set_device_lost_callback(move |reason, message| {
                lost.store(true, Ordering::SeqCst);
                let mut slot = lost_reason.lock().unwrap_or_else(PoisonError::into_inner);
                *slot = format!("{reason:?}: {message}");
            });
        }
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        {
            let uncaptured = Arc::clone(&uncaptured);
            device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
                let mut slot = uncaptured.lock().unwrap_or_else(PoisonError::into_inner);
                slot.push(error.to_string());
            }));
        }

        let dummy = Arc::new(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("chainrule unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        }));
        Ok(GpuContext {
            dummy,
            id: NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed),
            device,
            queue,
            limits,
            report,
            kernels: Mutex::new(HashMap::new()),
            pool: super::pool::BufferPool::default(),
            lost,
            lost_reason,
            uncaptured,
            dispatches: AtomicU64::new(0),
            bytes_bound: AtomicU64::new(0),
        })
    }

    /// Dispatches and bytes bound since the context was made.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            dispatches: self.dispatches.load(Ordering::Relaxed),
            bytes: self.bytes_bound.load(Ordering::Relaxed),
        }
    }

    /// Records one dispatch that binds `bytes` of storage.
    pub(crate) fn record_dispatch(&self, bytes: u64) {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        self.bytes_bound.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterReport {
        &self.report
    }

    /// The limits dispatches are planned with (the adapter's, or the override's).
    pub fn limits(&self) -> DeviceLimits {
        self.limits
    }

    /// Releases the device at once. Every later call returns
    /// [`Error::DeviceLost`], as after a driver reset.
    pub fn destroy(&self) {
        self.mark_lost("destroyed by the caller");
        self.pool.clear();
        self.device.destroy();
    }

    fn mark_lost(&self, reason: &str) {
        self.lost.store(true, Ordering::SeqCst);
        let mut slot = self
            .lost_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_empty() {
            *slot = reason.to_string();
        }
    }

    /// Fails if the device is gone or an uncaptured error is pending.
    pub(crate) fn check_alive(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            let reason = self
                .lost_reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            return Err(Error::DeviceLost(reason));
        }
        let pending: Vec<String> = std::mem::take(
            &mut *self
                .uncaptured
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if !pending.is_empty() {
            return Err(Error::Gpu {
                operation: "an earlier operation".into(),
                message: pending.join("; "),
            });
        }
        Ok(())
    }

    /// Runs `work` inside out-of-memory, validation and internal error scopes
    /// and turns the first error caught into an [`Error`] naming `operation`.
    pub(crate) async fn scoped<T>(&self, operation: &str, work: impl FnOnce() -> T) -> Result<T> {
        self.check_alive()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = work();
        let internal = internal.pop().await;
        let validation = validation.pop().await;
        let oom = oom.pop().await;
        if let Some(error) = oom {
            let _ = error;
            return Err(Error::OutOfMemory {
                operation: operation.to_string(),
            });
        }
        if let Some(error) = validation.or(internal) {
            self.check_alive()?;
            return Err(Error::Gpu {
                operation: operation.to_string(),
                message: error.to_string(),
            });
        }
        self.check_alive()?;
        Ok(value)
    }

    /// Waits until every submitted command has finished.
    pub(crate) fn wait(&self, operation: &str) -> Result<()> {
        match self.device.poll(wgpu::PollType::wait_indefinitely()) {
            Ok(_) => self.check_alive(),
            Err(error) => {
                self.check_alive()?;
                Err(Error::Gpu {
                    operation: operation.to_string(),
                    message: error.to_string(),
                })
            }
        }
    }

    /// Blocks until the device is idle: for timing device-resident work.
    pub fn synchronize(&self) -> Result<()> {
        self.check_alive()?;
        self.wait("synchronize")
    }

    /// The compiled kernel named `label`, compiling `source()` the first time.
    /// Compilation runs in an error scope, so a bad shader is an error naming
    /// the kernel, never a panic.
    pub(crate) async fn kernel(
        &self,
        label: &str,
        source: impl FnOnce() -> String,
    ) -> Result<Arc<Kernel>> {
        if let Some(kernel) = self
            .kernels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(label)
        {
            return Ok(Arc::clone(kernel));
        }
        let source = source();
        let compiled = self
            .scoped(label, || {
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(label),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    });
                let pipeline =
                    self.device
                        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(label),
                            layout: None,
                            module: &module,
                            entry_point: Some("main"),
                            compilation_options: wgpu::PipelineCompilationOptions::default(),
                            cache: None,
                        });
                let layout = pipeline.get_bind_group_layout(0);
                Kernel { pipeline, layout }
            })
            .await
            .map_err(|error| match error {
                Error::Gpu { message, .. } => Error::ShaderCompile {
                    kernel: label.to_string(),
                    message,
                },
                other => other,
            })?;
        let kernel = Arc::new(compiled);
        self.kernels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(label.to_string(), Arc::clone(&kernel));
        Ok(kernel)
    }
}
