//! Choosing an adapter: WGPU_BACKEND and WGPU_ADAPTER_NAME as in wgpu's own
//! tools, parsed strictly so that a misspelt value is an error, not ignored.

use crate::error::{Error, Result};

/// The variable that restricts the backends, e.g. `vulkan` or `vulkan,gl`.
pub const BACKEND_VARIABLE: &str = "WGPU_BACKEND";
/// The variable that picks an adapter by a case-insensitive part of its name.
pub const ADAPTER_NAME_VARIABLE: &str = "WGPU_ADAPTER_NAME";

const BACKEND_NAMES: &str = "a comma-separated list of vulkan, gl, metal, dx12 (or all, primary)";

/// Parses a WGPU_BACKEND value. An empty value means every backend.
pub(crate) fn parse_backends(value: &str) -> Result<wgpu::Backends> {
    let mut backends = wgpu::Backends::empty();
    for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        backends |= match token.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "primary" => wgpu::Backends::PRIMARY,
            "all" => wgpu::Backends::all(),
            _ => {
                return Err(Error::BadEnvironment {
                    variable: BACKEND_VARIABLE,
                    value: value.to_string(),
                    expected: BACKEND_NAMES,
                });
            }
        };
    }
    Ok(if backends.is_empty() {
        wgpu::Backends::all()
    } else {
        backends
    })
}

/// Reads an environment variable; unset and empty are the same, and a value
/// that is not Unicode is an error rather than silently unset.
pub(crate) fn env_value(variable: &'static str) -> Result<Option<String>> {
    match std::env::var(variable) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => Err(Error::BadEnvironment {
            variable,
            value: raw.to_string_lossy().into_owned(),
            expected: "a UTF-8 value",
        }),
    }
}

/// Lower is preferred: real GPUs before software ones, and native APIs before GL.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Gl => 1,
        _ => 0,
    };
    (kind, api)
}

/// Picks the adapter to use from those seen: the first whose name contains
/// `name` (case-insensitive) when one is given, else the most capable.
pub(crate) fn choose(adapters: &[wgpu::Adapter], name: Option<&str>) -> Result<usize> {
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(wgpu::Adapter::get_info).collect();
    choose_info(&infos, name)
}

/// [`choose`] over adapter descriptions.
pub(crate) fn choose_info(infos: &[wgpu::AdapterInfo], name: Option<&str>) -> Result<usize> {
    let seen = || {
        if infos.is_empty() {
            "none".to_string()
        } else {
            infos
                .iter()
                .map(|i| format!("{} on {}", i.name, i.backend))
                .collect::<Vec<_>>()
                .join("; ")
        }
    };
    let candidates: Vec<usize> = match name {
        Some(wanted) => {
            let wanted = wanted.to_lowercase();
            (0..infos.len())
                .filter(|&i| infos[i].name.to_lowercase().contains(&wanted))
                .collect()
        }
        None => (0..infos.len()).collect(),
    };
    candidates
        .into_iter()
        .min_by_key(|&i| preference(&infos[i]))
        .ok_or_else(|| Error::NoAdapter {
            detail: match name {
                Some(wanted) => {
                    format!(
                        " whose name contains {wanted:?} (adapters seen: {})",
                        seen()
                    )
                }
                None => " (adapters seen: none)".to_string(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_backend_is_named() {
        assert_eq!(parse_backends("metal").ok(), Some(wgpu::Backends::METAL));
        assert_eq!(parse_backends("mtl").ok(), Some(wgpu::Backends::METAL));
        assert_eq!(parse_backends("dx12").ok(), Some(wgpu::Backends::DX12));
        assert_eq!(parse_backends("D3D12").ok(), Some(wgpu::Backends::DX12));
        assert_eq!(
            parse_backends("vulkan, gl,metal,dx12").ok(),
            Some(
                wgpu::Backends::VULKAN
                    | wgpu::Backends::GL
                    | wgpu::Backends::METAL
                    | wgpu::Backends::DX12
            )
        );
        assert_eq!(parse_backends(" ").ok(), Some(wgpu::Backends::all()));
    }

    #[test]
    fn a_misspelt_backend_is_an_error() {
        for value in ["metl", "dx11", "vulkan,directx"] {
            assert!(
                matches!(
                    parse_backends(value),
                    Err(Error::BadEnvironment {
                        variable: BACKEND_VARIABLE,
                        ..
                    })
                ),
                "{value:?} was accepted"
            );
        }
    }
}
