//! Hugging Face checkpoints beyond the golden numbers: repo ids in a (fake) local cache, sharded
//! safetensors, names with and without the `transformer.` prefix, stored half precision, and
//! every refusal (pickles, non-ALiBi architectures, sizes that disagree, missing shards), both
//! through the library and through the binary (exit code 2, one line on stderr).

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::LoadError;
use alibi_explorer::model::device::ChosenDevice;
use alibi_explorer::model::hub::{ResolvedModel, find_in_cache, resolve_with_cache};
use alibi_explorer::model::load::{LoadedModel, load_model};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn load(dir: &Path) -> Result<LoadedModel, LoadError> {
    let cpu = ChosenDevice {
        device: Device::Cpu,
        note: String::new(),
    };
    load_model(dir, cpu, DType::F32)
}

fn err(dir: &Path) -> String {
    match load(dir) {
        Ok(_) => panic!("'{}' loaded but should not", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn token_ids(case: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(fixture(case).join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn logits(m: &LoadedModel, ids: &[u32]) -> Vec<f32> {
    let x = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    m.model
        .forward(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn tensors(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn save(map: &HashMap<String, Tensor>, file: &Path) {
    candle_core::safetensors::save(map, file).unwrap();
}

/// Splits a fixture's tensors into two shards plus an index, as `save_pretrained` does for big
/// models, in `to`.
fn shard_fixture(case: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(fixture(case).join("config.json"), to.join("config.json")).unwrap();
    let all = tensors(&fixture(case));
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (part, file) in [
        (a, "model-00001-of-00002.safetensors"),
        (b, "model-00002-of-00002.safetensors"),
    ] {
        let shard: HashMap<String, Tensor> =
            part.iter().map(|&n| (n.clone(), all[n].clone())).collect();
        save(&shard, &to.join(file));
        for n in part {
            weight_map.insert((*n).clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(to.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// A fake Hugging Face cache under `root` holding `repo` at commit `hash`, laid out as
/// huggingface_hub does it: files in `blobs/`, linked from `snapshots/<hash>/`.
fn fake_cache(root: &Path, repo: &str, case: &str, hash: &str) -> PathBuf {
    let repo_dir = root.join(format!("models--{}", repo.replace('/', "--")));
    let snap = repo_dir.join("snapshots").join(hash);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    for name in ["config.json", "model.safetensors"] {
        let blob = repo_dir.join("blobs").join(format!("{hash}-{name}"));
        std::fs::copy(fixture(case).join(name), &blob).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&blob, snap.join(name)).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&blob, snap.join(name)).unwrap();
    }
    std::fs::write(repo_dir.join("refs/main"), hash).unwrap();
    snap
}

#[test]
fn repo_ids_resolve_in_the_cache_and_only_there() {
    let cache = tempfile::tempdir().unwrap();
    let root = cache.path();
    let snap = fake_cache(root, "acme/tiny-bloom", "bloom-h4", "abc123");
    // An older snapshot that refs/main does not name.
    fake_cache(root, "acme/tiny-bloom", "bloom-h4", "old999");
    std::fs::write(root.join("models--acme--tiny-bloom/refs/main"), "abc123\n").unwrap();
    let got = resolve_with_cache(Path::new("acme/tiny-bloom"), Some(root)).unwrap();
    assert_eq!(
        got,
        ResolvedModel {
            folder: snap.clone(),
            repo_id: Some("acme/tiny-bloom".into()),
        }
    );
    // Without refs/main the newest snapshot is used.
    std::fs::remove_file(root.join("models--acme--tiny-bloom/refs/main")).unwrap();
    let newest = find_in_cache(root, "acme/tiny-bloom").unwrap();
    assert!(newest.starts_with(root.join("models--acme--tiny-bloom/snapshots")));
    // Not cached: a one-line hint to download it.
    let e = resolve_with_cache(Path::new("acme/other"), Some(root))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'acme/other' is not a folder"), "{e}");
    assert!(e.contains(&root.display().to_string()), "{e}");
    assert!(e.contains("huggingface-cli download acme/other"), "{e}");
    assert_eq!(e.lines().count(), 1);
    // Something that is not a repo id keeps the plain message.
    let e = resolve_with_cache(Path::new("/no/such/folder/x"), Some(root))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    // An existing folder wins over the cache.
    let here = resolve_with_cache(&fixture("mpt-h4"), Some(root)).unwrap();
    assert_eq!(here.folder, fixture("mpt-h4"));
    assert_eq!(here.repo_id, None);
}

#[test]
fn sharded_checkpoints_equal_single_files() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["bloom-h6", "mpt-h6"] {
        let sharded = dir.path().join(case);
        shard_fixture(case, &sharded);
        let ids = token_ids(case);
        let want = logits(&load(&fixture(case)).unwrap(), &ids);
        let got = logits(&load(&sharded).unwrap(), &ids);
        assert_eq!(want, got, "{case}");
    }
    // A shard listed in the index but absent.
    let sharded = dir.path().join("bloom-h6");
    let gone = sharded.join("model-00002-of-00002.safetensors");
    std::fs::rename(&gone, sharded.join("elsewhere")).unwrap();
    let e = err(&sharded);
    assert!(e.contains("model-00002-of-00002.safetensors"), "{e}");
    assert!(e.contains("model.safetensors.index.json"), "{e}");
    assert!(e.contains("not found"), "{e}");
    // An index that puts a tensor in the wrong shard.
    std::fs::rename(sharded.join("elsewhere"), &gone).unwrap();
    let index = sharded.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["weight_map"]["transformer.ln_f.weight"] = "model-00001-of-00002.safetensors".into();
    std::fs::write(&index, v.to_string()).unwrap();
    let e = err(&sharded);
    assert!(
        e.contains("transformer.ln_f.weight") && e.contains("does not hold"),
        "{e}"
    );
    // An index without a weight_map.
    std::fs::write(&index, "{}").unwrap();
    assert!(err(&sharded).contains("weight_map"));
}

#[test]
fn names_without_prefix_and_half_precision_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let ids = token_ids("bloom-h4");
    let want = logits(&load(&fixture("bloom-h4")).unwrap(), &ids);
    // bigscience/bloom-560m stores `h.0...` without `transformer.`, and a redundant lm_head.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(fixture("bloom-h4/config.json"), bare.join("config.json")).unwrap();
    let mut map: HashMap<String, Tensor> = tensors(&fixture("bloom-h4"))
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v))
        .collect();
    map.insert(
        "lm_head.weight".into(),
        map["word_embeddings.weight"].clone(),
    );
    save(&map, &bare.join("model.safetensors"));
    assert_eq!(logits(&load(&bare).unwrap(), &ids), want);
    // Weights stored in f16 are converted at load.
    let half = dir.path().join("half");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::copy(fixture("bloom-h4/config.json"), half.join("config.json")).unwrap();
    let map: HashMap<String, Tensor> = tensors(&fixture("bloom-h4"))
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
        .collect();
    save(&map, &half.join("model.safetensors"));
    let m = load(&half).unwrap();
    assert_eq!(m.model.config().saved_dtype.as_deref(), Some("f16"));
    assert_eq!(m.model.dtype(), DType::F32);
    let got = logits(&m, &ids);
    let d = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 0.05, "{d}");
}

#[test]
fn refusals_name_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let folder = |name: &str, case: &str| {
        let p = dir.path().join(name);
        copy_dir(&fixture(case), &p);
        p
    };
    let set_config = |p: &Path, edit: &dyn Fn(&mut serde_json::Value)| {
        let text = std::fs::read_to_string(p.join("config.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        edit(&mut v);
        std::fs::write(p.join("config.json"), v.to_string()).unwrap();
    };

    // PyTorch pickles only.
    let pickle = folder("pickle", "bloom-h4");
    std::fs::remove_file(pickle.join("model.safetensors")).unwrap();
    std::fs::write(pickle.join("pytorch_model.bin"), b"PK\x03\x04 not really").unwrap();
    let e = err(&pickle);
    assert!(
        e.contains("pytorch_model.bin") && e.contains("never unpickles"),
        "{e}"
    );
    assert!(e.contains("safe_serialization=True"), "{e}");
    assert_eq!(e.lines().count(), 1);

    // Non-ALiBi architectures.
    for (model_type, extra, needle) in [
        ("llama", serde_json::json!({}), "rotary"),
        ("gpt2", serde_json::json!({}), "learned absolute"),
        ("t5", serde_json::json!({}), "unknown model_type 't5'"),
    ] {
        let p = folder(&format!("arch-{model_type}-{needle}"), "bloom-h4");
        set_config(&p, &|v| {
            v["model_type"] = model_type.into();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
        });
        let e = err(&p);
        assert!(e.contains(needle), "{model_type}: {e}");
        assert!(e.contains("bloom, mpt and Falcon-RW"), "{model_type}: {e}");
        assert!(e.contains("config.json"), "{model_type}: {e}");
    }

    // Falcon other than Falcon-RW: rotary, multi-query, parallel attention, falcon-40b's layout.
    for (key, value, needle) in [
        ("alibi", false, "rotary position embeddings (alibi: false)"),
        ("multi_query", true, "multi_query: true"),
        ("parallel_attn", true, "parallel_attn: true"),
        (
            "new_decoder_architecture",
            true,
            "new_decoder_architecture: true",
        ),
    ] {
        let p = folder(&format!("falcon-{key}"), "falcon-h4");
        set_config(&p, &|v| v[key] = value.into());
        let e = err(&p);
        assert!(e.contains(needle), "{key}: {e}");
        assert!(e.contains("config.json"), "{key}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    // The RefinedWeb name of the same Falcon-RW config loads; bias: false finds the biases.
    let p = folder("falcon-refinedweb", "falcon-h4");
    set_config(&p, &|v| v["model_type"] = "RefinedWebModel".into());
    assert!(load(&p).is_ok());
    let p = folder("falcon-no-bias", "falcon-h4");
    set_config(&p, &|v| v["bias"] = false.into());
    let e = err(&p);
    assert!(
        e.contains("unexpected tensor") && e.contains("bias: false"),
        "{e}"
    );

    // MPT with learned positions instead of ALiBi.
    let p = folder("mpt-learned", "mpt-h4");
    set_config(&p, &|v| v["attn_config"]["alibi"] = false.into());
    assert!(err(&p).contains("learned absolute"));

    // Sizes that disagree with the tensors.
    let p = folder("wrong-hidden", "bloom-h4");
    set_config(&p, &|v| v["hidden_size"] = 128.into());
    let e = err(&p);
    assert!(
        e.contains("model.safetensors") && e.contains("shape"),
        "{e}"
    );
    assert!(e.contains("[96, 64]") && e.contains("[96, 128]"), "{e}");
    let p = folder("wrong-layers", "mpt-h4");
    set_config(&p, &|v| v["n_layers"] = 3.into());
    let e = err(&p);
    assert!(e.contains("missing tensor 'transformer.blocks.2."), "{e}");
    let p = folder("wrong-bias", "mpt-h4");
    set_config(&p, &|v| v["no_bias"] = false.into());
    assert!(err(&p).contains("missing tensor"));

    // A tensor the config does not account for.
    let p = folder("extra", "mpt-h4");
    let mut map = tensors(&p);
    map.insert(
        "transformer.wpe.weight".into(),
        Tensor::zeros((64, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    save(&map, &p.join("model.safetensors"));
    let e = err(&p);
    assert!(
        e.contains("transformer.wpe.weight") && e.contains("learned position"),
        "{e}"
    );

    // No weights at all.
    let p = folder("empty", "bloom-h4");
    std::fs::remove_file(p.join("model.safetensors")).unwrap();
    assert!(err(&p).contains("model.safetensors.index.json"));
}

// ---- the binary -------------------------------------------------------------------------------

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alibi-explorer"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A bad-input run: exit 2, one line on stderr that contains `needle`, no panic.
fn fails_with(o: &Output, needle: &str) {
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {e}");
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
}

#[test]
fn cli_inspects_and_evaluates_hf_folders_and_cached_repo_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mpt = fixture("mpt-h6");
    let o = run(bin().args([
        "inspect",
        "--model",
        mpt.to_str().unwrap(),
        "--json",
        "--device",
        "cpu",
    ]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert_eq!(v["architecture"], "mpt");
    assert_eq!(v["heads"], 6);
    assert_eq!(v["position"], "alibi");
    assert_eq!(v["train_len"], 64);
    assert_eq!(v["tokenizer"], false);
    assert_eq!(v["slopes"][4]["slope"], 0.5);

    // eval with --token-ids and --per-token on a BLOOM folder: the per-token losses of the first
    // window are transformers' losses.
    let ids = token_ids("bloom-h4");
    let ids_file = dir.path().join("ids.txt");
    let words: Vec<String> = ids.iter().map(ToString::to_string).collect();
    std::fs::write(&ids_file, words.join(" ")).unwrap();
    let per_token = dir.path().join("per-token.jsonl");
    let bloom = fixture("bloom-h4");
    let o = run(bin().args([
        "eval",
        "--model",
        bloom.to_str().unwrap(),
        "--token-ids",
        ids_file.to_str().unwrap(),
        "--lengths",
        "4,8,16",
        "--per-token",
        per_token.to_str().unwrap(),
        "--device",
        "cpu",
    ]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("bloom-h4") && out.contains("16"), "{out}");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bloom.join("expected.json")).unwrap())
            .unwrap();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&per_token)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first: Vec<&serde_json::Value> = rows.iter().filter(|r| r["window"] == 0).collect();
    assert_eq!(first.len(), 16);
    for r in first {
        let p = r["position"].as_u64().unwrap() as usize;
        assert_eq!(r["token"].as_u64().unwrap(), u64::from(ids[p + 1]));
        let want = expected["losses"][p].as_f64().unwrap();
        let got = r["nll"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-4, "position {p}: {got} vs {want}");
    }

    // A repo id from a cache given by HF_HUB_CACHE (set for the child process only).
    let cache = dir.path().join("hub");
    fake_cache(&cache, "acme/tiny-mpt", "mpt-h4", "0123abcd");
    let o = run(bin().env("HF_HUB_CACHE", &cache).args([
        "inspect",
        "--model",
        "acme/tiny-mpt",
        "--json",
        "--device",
        "cpu",
    ]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert_eq!(v["model"], "acme/tiny-mpt");
    assert_eq!(v["architecture"], "mpt");
    // HF_HOME/hub is the fallback.
    let o = run(bin()
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env("HF_HOME", dir.path())
        .args(["inspect", "--model", "acme/tiny-mpt", "--device", "cpu"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("acme/tiny-mpt"));

    // Bad input: exit 2 and one line.
    fails_with(
        &run(bin()
            .env("HF_HUB_CACHE", &cache)
            .args(["inspect", "--model", "acme/not-downloaded"])),
        "huggingface-cli download acme/not-downloaded",
    );
    let llama = dir.path().join("llama");
    copy_dir(&fixture("bloom-h4"), &llama);
    std::fs::write(
        llama.join("config.json"),
        r#"{"model_type": "llama", "hidden_size": 64}"#,
    )
    .unwrap();
    fails_with(
        &run(bin().args(["inspect", "--model", llama.to_str().unwrap()])),
        "rotary",
    );
    let sharded = dir.path().join("sharded");
    shard_fixture("mpt-h4", &sharded);
    std::fs::remove_file(sharded.join("model-00001-of-00002.safetensors")).unwrap();
    fails_with(
        &run(bin().args([
            "eval",
            "--model",
            sharded.to_str().unwrap(),
            "--token-ids",
            ids_file.to_str().unwrap(),
            "--lengths",
            "8",
        ])),
        "model-00001-of-00002.safetensors",
    );
}
