//! Choosing the device (CPU, CUDA, Metal; `auto` falls back with a note) and the dtype, with GPU
//! errors said in one line.

use super::error::LoadError;
use candle_core::{DType, Device};
use std::str::FromStr;

/// Why a GPU could not be used, in one line: candle's error without the backtrace it carries, with
/// the common CUDA driver errors said in words (the code stays in parentheses).
pub fn gpu_error_reason(e: &candle_core::Error) -> String {
    let mut e = e;
    while let candle_core::Error::WithBacktrace { inner, .. } = e {
        e = inner;
    }
    describe_gpu_error(&e.to_string())
}

/// Puts the common CUDA driver error codes found in `msg` into words; other messages are returned
/// on one line.
pub fn describe_gpu_error(msg: &str) -> String {
    const KNOWN: [(&str, &str); 6] = [
        (
            "CUDA_ERROR_STUB_LIBRARY",
            "no NVIDIA driver: only a stub libcuda was found",
        ),
        ("CUDA_ERROR_NO_DEVICE", "no CUDA device is visible"),
        (
            "CUDA_ERROR_INVALID_DEVICE",
            "there is no CUDA device with that number",
        ),
        (
            "CUDA_ERROR_INSUFFICIENT_DRIVER",
            "the NVIDIA driver is older than the CUDA version this binary was built with",
        ),
        (
            "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
            "the NVIDIA driver is older than the nvcc that compiled the kernels (build with an nvcc no newer than the CUDA version nvidia-smi shows)",
        ),
        ("CUDA_ERROR_OUT_OF_MEMORY", "the GPU is out of memory"),
    ];
    let first = msg
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error");
    // candle appends a backtrace after the error on the same line ("... 0: candle_core::...").
    let first = first.split(" 0: ").next().unwrap_or(first).trim();
    KNOWN
        .iter()
        .find(|(code, _)| first.contains(code))
        .map_or_else(
            || first.to_string(),
            |(code, words)| format!("{words} ({code})"),
        )
}

/// Which device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// A GPU when the binary has the feature and one is present, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU by ordinal.
    Cuda(usize),
    /// Apple's Metal.
    Metal,
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            "metal" | "metal:0" => Ok(Self::Metal),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    format!("unknown device '{s}' (expected auto, cpu, cuda, cuda:N or metal)")
                }),
        }
    }
}

/// A short name for a device: `cpu`, `cuda:0`, `metal`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The chosen device plus a note saying why (shown by `inspect` and the status bar).
#[derive(Debug, Clone)]
pub struct ChosenDevice {
    /// The device.
    pub device: Device,
    /// Why it was chosen, e.g. "auto: no GPU support in this build".
    pub note: String,
}

/// Resolves a [`DeviceSpec`]. `auto` tries CUDA, then Metal, then falls back to the CPU with a note;
/// an explicit GPU request that cannot be met is an error.
pub fn choose_device(spec: DeviceSpec) -> Result<ChosenDevice, LoadError> {
    let cpu = |note: &str| ChosenDevice {
        device: Device::Cpu,
        note: note.to_string(),
    };
    match spec {
        DeviceSpec::Cpu => Ok(cpu("requested")),
        DeviceSpec::Cuda(n) => Device::new_cuda(n)
            .map(|device| ChosenDevice {
                device,
                note: "requested".to_string(),
            })
            .map_err(|e| {
                LoadError::Device(format!(
                    "cannot use cuda:{n}: {} (hint: {}, or use --device cpu)",
                    gpu_error_reason(&e),
                    if cfg!(feature = "cuda") {
                        "check nvidia-smi, and that the CUDA libraries are on LD_LIBRARY_PATH (docs/gpu.md)"
                    } else {
                        "this binary was built without CUDA: build with --features cuda"
                    }
                ))
            }),
        DeviceSpec::Metal => Device::new_metal(0)
            .map(|device| ChosenDevice {
                device,
                note: "requested".to_string(),
            })
            .map_err(|e| {
                LoadError::Device(format!(
                    "cannot use metal: {} (hint: {}, or use --device cpu)",
                    gpu_error_reason(&e),
                    if cfg!(feature = "metal") {
                        "Metal needs Apple silicon or a Mac GPU"
                    } else {
                        "this binary was built without Metal: build with --features metal on macOS"
                    }
                ))
            }),
        DeviceSpec::Auto => {
            if cfg!(feature = "cuda") {
                match Device::new_cuda(0) {
                    Ok(device) => {
                        return Ok(ChosenDevice {
                            device,
                            note: "auto: CUDA GPU found".to_string(),
                        });
                    }
                    Err(e) => {
                        return Ok(cpu(&format!(
                            "auto: CUDA unavailable ({}), using CPU",
                            gpu_error_reason(&e)
                        )));
                    }
                }
            }
            if cfg!(feature = "metal") {
                match Device::new_metal(0) {
                    Ok(device) => {
                        return Ok(ChosenDevice {
                            device,
                            note: "auto: Metal GPU found".to_string(),
                        });
                    }
                    Err(e) => {
                        return Ok(cpu(&format!(
                            "auto: Metal unavailable ({}), using CPU",
                            gpu_error_reason(&e)
                        )));
                    }
                }
            }
            Ok(cpu("auto: built without GPU support"))
        }
    }
}

/// Parses `f32`, `f16` or `bf16`.
pub fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        _ => Err(format!("unknown dtype '{s}' (expected f32, f16 or bf16)")),
    }
}

/// The name of a dtype as the CLI spells it.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "f32",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_errors_are_one_line_words_without_the_backtrace() {
        // What candle 0.11 printed here for a cuda build whose libcuda is a stub.
        let seen = "DriverError(CUDA_ERROR_STUB_LIBRARY, \"<Failure when calling cuGetErrorString()>\") 0: candle_core::error::Error::bt 1: <core::result::Result<O,E> as candle_core::cuda_backend::error::WrapErr<O>>::w";
        assert_eq!(
            describe_gpu_error(seen),
            "no NVIDIA driver: only a stub libcuda was found (CUDA_ERROR_STUB_LIBRARY)"
        );
        assert_eq!(
            describe_gpu_error(
                "DriverError(CUDA_ERROR_NO_DEVICE, \"no CUDA-capable device is detected\")\n   0: bt"
            ),
            "no CUDA device is visible (CUDA_ERROR_NO_DEVICE)"
        );
        assert_eq!(
            describe_gpu_error("Metal error no metal device\nmore"),
            "Metal error no metal device"
        );
        assert_eq!(describe_gpu_error(""), "unknown error");
        let wrapped = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg(
                "DriverError(CUDA_ERROR_UNSUPPORTED_PTX_VERSION, \"x\")".into(),
            )),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        let reason = gpu_error_reason(&wrapped);
        assert!(
            reason.starts_with("the NVIDIA driver is older than the nvcc"),
            "{reason}"
        );
        assert!(
            !reason.contains('\n') && !reason.contains("backtrace"),
            "{reason}"
        );
    }
}
