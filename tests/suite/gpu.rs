//! GPU checks: run on a CUDA (or Metal) GPU when the binary is built with the feature and one is
//! present, and skip with a message otherwise. CPU vs GPU perplexity for the default model must
//! agree to 1e-3 (relative) in f32 and 5e-2 in bf16; the BLOOM/MPT golden fixtures must match
//! transformers' logits on the GPU as on the CPU.

#![allow(clippy::unwrap_used)]

use alibi_explorer::eval::{Control, Protocol, evaluate};
use alibi_explorer::model::device::{ChosenDevice, gpu_error_reason};
use alibi_explorer::model::load::load_model;
use alibi_explorer::text::tokenize;
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;

/// Relative tolerance of CPU vs GPU perplexity in f32.
const F32_REL_TOL: f64 = 1e-3;
/// Relative tolerance of bf16-on-GPU vs f32-on-CPU perplexity.
const BF16_REL_TOL: f64 = 5e-2;

/// The GPU, or `None` (the test skips) when there is none. With `ALIBI_EXPLORER_REQUIRE_GPU=1`
/// (scripts/gpu-check.sh sets it) a missing GPU fails the test instead of skipping it.
fn gpu() -> Option<Device> {
    let cuda = match Device::new_cuda(0) {
        Ok(d) => return Some(d),
        Err(e) => gpu_error_reason(&e),
    };
    let metal = match Device::new_metal(0) {
        Ok(d) => return Some(d),
        Err(e) => gpu_error_reason(&e),
    };
    let why = format!("no GPU (cuda: {cuda}; metal: {metal})");
    assert!(
        std::env::var_os("ALIBI_EXPLORER_REQUIRE_GPU").is_none_or(|v| v != "1"),
        "ALIBI_EXPLORER_REQUIRE_GPU=1 but {why}"
    );
    eprintln!("SKIPPED: {why} (build with --features cuda or metal on a machine with one)");
    None
}

fn chosen(device: Device) -> ChosenDevice {
    ChosenDevice {
        device,
        note: "test".into(),
    }
}

/// The repository root: `CARGO_MANIFEST_DIR` at run time when set (cargo sets it; scripts/gpu-check.sh
/// sets it when it runs this test binary on another machine), else where it was compiled.
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

#[test]
fn default_model_perplexity_agrees_between_cpu_and_gpu() {
    let Some(gpu) = gpu() else { return };
    let model_dir = root().join("assets/models/alibi");
    if !model_dir.join("model.safetensors").is_file() {
        eprintln!("SKIPPED: assets/models/alibi is not present");
        return;
    }
    let text = std::fs::read_to_string(root().join("assets/texts/default.txt")).unwrap();
    let cpu = load_model(&model_dir, chosen(Device::Cpu), DType::F32).unwrap();
    let stream = tokenize(cpu.tokenizer.as_ref().unwrap(), &text).unwrap();
    let lengths = [128, 512, 2048];
    let on_cpu = evaluate(
        &cpu.model,
        &stream,
        &lengths,
        Protocol::Sweep,
        None,
        &Control::default(),
    )
    .unwrap();
    for (dtype, tol) in [(DType::F32, F32_REL_TOL), (DType::BF16, BF16_REL_TOL)] {
        let g = load_model(&model_dir, chosen(gpu.clone()), dtype).unwrap();
        let on_gpu = evaluate(
            &g.model,
            &stream,
            &lengths,
            Protocol::Sweep,
            None,
            &Control::default(),
        )
        .unwrap();
        for (a, b) in on_cpu.points.iter().zip(&on_gpu.points) {
            let rel = (a.ppl - b.ppl).abs() / a.ppl;
            eprintln!(
                "{dtype:?} length {}: cpu {:.4} gpu {:.4} rel {rel:.2e}",
                a.length, a.ppl, b.ppl
            );
            assert!(
                rel <= tol,
                "{dtype:?} length {}: cpu {} vs gpu {}",
                a.length,
                a.ppl,
                b.ppl
            );
        }
    }
}

#[test]
fn golden_fixtures_match_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    let fixtures = root().join("tests/fixtures");
    let Ok(entries) = std::fs::read_dir(&fixtures) else {
        eprintln!("SKIPPED: no fixtures");
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let Ok(expected) = std::fs::read_to_string(dir.join("expected.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&expected).unwrap();
        let ids: Vec<u32> = v["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let want: Vec<Vec<f64>> = v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let m = load_model(&dir, chosen(gpu.clone()), DType::F32).unwrap();
        let x = Tensor::from_vec(ids.clone(), (1, ids.len()), &gpu).unwrap();
        let got = m
            .model
            .forward(&x)
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        let mut max = 0f64;
        for (g, w) in got[0].iter().zip(&want) {
            for (a, b) in g.iter().zip(w) {
                max = max.max((f64::from(*a) - b).abs());
            }
        }
        eprintln!("{}: max |logit diff| on GPU {max:.2e}", dir.display());
        assert!(max <= 1e-4, "{}: {max}", dir.display());
    }
}
