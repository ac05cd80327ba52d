//! Run-time backend selection: `flex` (default, pure Rust), `tch` / `tch:cuda:N` (LibTorch),
//! `cuda:N`, and burn's wgpu runtime as `vulkan[:N|:cpu]` (pinned to the Vulkan API) or
//! `wgpu[:N|:cpu]` (whichever API the machine has: Vulkan, Metal, DirectX 12). Without an index
//! the best adapter is taken; `N` is the N-th discrete GPU; `cpu` a software driver such as
//! Mesa's lavapipe. A backend whose cargo feature was not compiled in is a clear error.

use anyhow::{Result, bail};
use burn::tensor::Device;

fn index(spec: &str, rest: Option<&str>) -> Result<usize> {
    match rest {
        None => Ok(0),
        Some(n) => n
            .parse()
            .map_err(|_| anyhow::anyhow!("device '{spec}': '{n}' is not a device index")),
    }
}

fn missing(spec: &str, feature: &str) -> Result<Device> {
    bail!(
        "device '{spec}' needs lstmkd built with the '{feature}' feature: cargo build --release --features {feature}"
    )
}

/// Whether a device name runs on the host CPU (flex, or LibTorch on the CPU).
pub(crate) fn is_cpu(spec: &str) -> bool {
    matches!(spec, "flex" | "cpu" | "tch" | "tch:cpu")
}

/// Parses a device name as given to `--device` or `train.device`.
pub fn parse(spec: &str) -> Result<Device> {
    let (kind, rest) = match spec.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (spec, None),
    };
    match kind {
        "flex" | "cpu" if rest.is_none() => Ok(Device::flex()),
        "tch" => tch(spec, rest),
        "cuda" => {
            let i = index(spec, rest)?;
            #[cfg(feature = "cuda")]
            return probed(spec, Device::cuda(i));
            #[cfg(not(feature = "cuda"))]
            {
                let _ = i;
                missing(spec, "cuda")
            }
        }
        "vulkan" | "wgpu" => wgpu(spec, kind, rest),
        _ => bail!(
            "unknown device '{spec}': expected flex, tch, tch:cuda:N, cuda:N, vulkan, vulkan:N, \
             vulkan:cpu, wgpu, wgpu:N or wgpu:cpu"
        ),
    }
}

/// `vulkan` / `wgpu` devices. A wgpu runtime can be initialised once per process, so each
/// opened device is kept and handed out again.
fn wgpu(spec: &str, kind: &str, rest: Option<&str>) -> Result<Device> {
    #[cfg(any(feature = "vulkan", feature = "wgpu"))]
    {
        use burn::tensor::DeviceKind;
        use burn::tensor::wgpu::WgpuBackend;
        use std::sync::Mutex;
        static OPENED: Mutex<Vec<(String, Device)>> = Mutex::new(Vec::new());
        let adapter = match rest {
            None => DeviceKind::DefaultDevice,
            Some("cpu") => DeviceKind::Cpu,
            Some(_) => DeviceKind::DiscreteGpu(index(spec, rest)?),
        };
        let api = match kind {
            "vulkan" => WgpuBackend::Vulkan,
            _ => WgpuBackend::Auto,
        };
        #[cfg(not(feature = "vulkan"))]
        if kind == "vulkan" {
            return missing(spec, "vulkan");
        }
        let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, device)) = opened.iter().find(|(s, _)| s == spec) {
            return Ok(device.clone());
        }
        let device = Device::wgpu_options()
            .device_kind(adapter)
            .graphics_api(api)
            .init()
            .map_err(|e| {
                anyhow::anyhow!(
                    "device '{spec}' could not be opened: {e} (it needs a GPU's Vulkan driver, \
                     or a software one: on Debian, `apt-get install libvulkan1 \
                     mesa-vulkan-drivers` gives lavapipe, opened as `{kind}:cpu`)"
                )
            })?;
        if let Some(sum) = truncated_loops(&device) {
            eprintln!(
                "warning: device '{spec}': its driver stops long GPU loops early (a sum of \
                 {LOOP_PROBE} ones came out as {sum}), so reductions over long rows are wrong \
                 here, batch norm over large batches included. Mesa's lavapipe does this (it ends \
                 any loop after 65,535 iterations): use it to test the GPU code path on small \
                 shapes, not to train."
            );
        }
        opened.push((spec.to_string(), device.clone()));
        Ok(device)
    }
    #[cfg(not(any(feature = "vulkan", feature = "wgpu")))]
    {
        let _ = rest;
        missing(spec, kind)
    }
}

/// Elements of the sum that `truncated_loops` checks: exact in f32, and long enough that one
/// GPU invocation of burn's reduction loops over it more than 65,535 times.
#[cfg(any(feature = "vulkan", feature = "wgpu"))]
const LOOP_PROBE: usize = 1 << 20;

/// The sum of `LOOP_PROBE` ones when the device gets it wrong: drivers that cap loop
/// iterations (Mesa's llvmpipe, under lavapipe) silently return partial reductions.
#[cfg(any(feature = "vulkan", feature = "wgpu"))]
fn truncated_loops(device: &Device) -> Option<f32> {
    let sum = burn::tensor::Tensor::<2>::ones([1, LOOP_PROBE], device)
        .sum_dim(1)
        .into_scalar::<f32>();
    (sum != LOOP_PROBE as f32).then_some(sum)
}

#[allow(deprecated)] // burn marks LibTorch deprecated; it is still the fastest CPU option here.
fn tch(spec: &str, rest: Option<&str>) -> Result<Device> {
    #[cfg(feature = "tch")]
    {
        return match rest {
            None | Some("cpu") => Ok(Device::libtorch()),
            Some(r) => match r.strip_prefix("cuda") {
                Some(n) => probed(
                    spec,
                    Device::libtorch_cuda(index(
                        spec,
                        n.strip_prefix(':').filter(|s| !s.is_empty()),
                    )?),
                ),
                None => bail!("device '{spec}': expected tch, tch:cpu or tch:cuda:N"),
            },
        };
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = rest;
        missing(spec, "tch")
    }
}

/// GPU runtimes panic on first use when the device is missing (wgpu: "no adapter found on the
/// requested graphics API", on another thread); one tiny operation up front, with the panic
/// caught and its message held back, turns that into an error that names the device.
#[cfg(any(feature = "cuda", feature = "tch"))]
fn probed(spec: &str, device: Device) -> Result<Device> {
    use std::panic::{AssertUnwindSafe, catch_unwind, set_hook, take_hook};
    let hook = take_hook();
    set_hook(Box::new(|_| {}));
    let opened = catch_unwind(AssertUnwindSafe(|| {
        burn::tensor::Tensor::<1>::zeros([1], &device).into_data()
    }));
    set_hook(hook);
    match opened {
        Ok(_) => Ok(device),
        Err(_) => bail!(
            "device '{spec}': the GPU could not be opened (no such device, or its driver or \
             runtime library is missing)"
        ),
    }
}
