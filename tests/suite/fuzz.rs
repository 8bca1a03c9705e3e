//! Generated-input tests (proptest) for every parser of outside input: config.json (ours, BLOOM,
//! MPT), safetensors files and the shard index, token-id files, slopes files and `--slopes` specs,
//! `--lengths`, `--device` and tokenizer.json. Each property asserts that nothing panics, that an
//! error is one line, and, for valid generated inputs, that they parse to the expected value.
//!
//! `ALIBI_FUZZ_CASES` sets the inputs per property (default [`DEFAULT_CASES`]), `ALIBI_FUZZ_SEED`
//! the RNG seed (fixed by default so a failure reproduces). Each property prints how many inputs
//! it ran and how long it took (`-- --nocapture` shows them).
//! Regressions found by fuzzing are plain `#[test]`s at the end.

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi::file::{parse_slopes_json, resolve_slopes};
use alibi_explorer::eval::parse_lengths;
use alibi_explorer::model::config::{Arch, Config, MAX_HEADS, Position};
use alibi_explorer::model::device::DeviceSpec;
use alibi_explorer::model::folder::{
    CONFIG_FILE, INDEX_FILE, load_tokenizer, read_checkpoint_config, read_index, weight_files,
};
use alibi_explorer::model::weights::Checkpoint;
use alibi_explorer::model::{bloom, falcon, mpt};
use alibi_explorer::text::files::read_token_ids;
use alibi_explorer::text::tokenize;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngSeed, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Inputs per property when `ALIBI_FUZZ_CASES` is not set: the whole file runs in a few seconds.
const DEFAULT_CASES: u32 = 2048;
/// The RNG seed when `ALIBI_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x00A1_1B1E;

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

/// Runs `test` on `ALIBI_FUZZ_CASES` inputs from `strategy`; a panic or a failed property fails
/// the test with the (shrunk) input.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let cases = env_number("ALIBI_FUZZ_CASES").map_or(DEFAULT_CASES, |n| n as u32);
    let seed = env_number("ALIBI_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 4096,
        ..RunnerConfig::default()
    });
    let count = AtomicU64::new(0);
    let start = Instant::now();
    let result = runner.run(&strategy, |v| {
        count.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    eprintln!(
        "fuzz {name}: {} inputs in {:.2}s",
        count.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("fuzz {name} failed: {e}");
    }
}

/// An error message for the status bar or the terminal: one line.
fn one_line(msg: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !msg.contains('\n') && !msg.trim().is_empty(),
        "not a one-line message: {msg:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON generators

/// Raw number literals that a `serde_json::Value` cannot hold; spliced into JSON text by
/// [`to_text`] (written as the string `"@@literal@@"` in a value).
const RAW_NUMBERS: &[&str] = &[
    "1e999",
    "-1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "340282366920938463463374607431768211456",
    "-0",
    "0.0",
    "1.5",
    "4.0",
    "1e3",
    "-1",
    "1E-400",
    "0e0",
];

/// Strings that mean something to one of the parsers.
const WORDS: &[&str] = &[
    "",
    "alibi",
    "rotary",
    "sinusoidal",
    "none",
    "learned",
    "alibi-explorer",
    "ours",
    "bloom",
    "mpt",
    "llama",
    "falcon",
    "RefinedWeb",
    "gelu_tanh",
    "gelu_erf",
    "float32",
    "bfloat16",
    "float16",
    "layernorm",
    "low_precision_layernorm",
    "rmsnorm",
    "multihead_attention",
    "multiquery_attention",
    "mptmlp",
    "te_ln_mlp",
    "model.safetensors",
    "../model.safetensors",
    "/etc/passwd",
    "8",
    "NaN",
    "inf",
];

fn interesting_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            4.0,
            8.0,
            1e-5,
            1e308,
            -1e308,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            9.007_199_254_740_993e15,
        ]),
    ]
}

/// Numbers a size field may plausibly get (small, powers of two, extremes, negative).
fn number_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0u64..=72).prop_map(Value::from),
        2 => (0u32..64).prop_map(|k| Value::from(1u64 << k)),
        1 => prop::sample::select(vec![u64::MAX, u64::from(u32::MAX), (1 << 16) + 1]).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => interesting_f64().prop_map(|x| json!(x)),
        1 => prop::sample::select(RAW_NUMBERS).prop_map(|r| Value::String(format!("@@{r}@@"))),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number_value(),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(String::from),
        "[a-z_]{0,10}",
        ".{0,6}",
    ]
}

/// A value for a config field: mostly numbers and leaves, sometimes anything.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![3 => number_value(), 2 => json_leaf(), 1 => json_value()]
}

/// Edits of an object: `(key, None)` removes the key, `(key, Some(v))` sets it.
fn edits(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, Option<Value>)>> {
    prop::collection::vec(
        (
            prop_oneof![
                8 => prop::sample::select(keys).prop_map(String::from),
                1 => json_key(),
            ],
            prop::option::weighted(0.8, field_value()),
        ),
        0..5,
    )
}

fn apply_edits(v: &mut Value, edits: Vec<(String, Option<Value>)>) {
    if let Value::Object(map) = v {
        for (k, val) in edits {
            match val {
                Some(val) => map.insert(k, val),
                None => map.remove(&k),
            };
        }
    }
}

/// JSON text of `v`, with the raw number literals spliced in.
fn to_text(v: &Value) -> String {
    v.to_string().replace("\"@@", "").replace("@@\"", "")
}

/// How to damage JSON text after writing it.
#[derive(Debug, Clone)]
enum TextDamage {
    None,
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, String),
}

fn text_damage() -> impl Strategy<Value = TextDamage> {
    prop_oneof![
        6 => Just(TextDamage::None),
        1 => any::<prop::sample::Index>().prop_map(TextDamage::Truncate),
        1 => (any::<prop::sample::Index>(), prop_oneof![Just("\"".to_string()), Just("}".to_string()), Just("\u{0}".to_string()), ".{1,3}".prop_map(String::from)])
            .prop_map(|(i, s)| TextDamage::Insert(i, s)),
    ]
}

fn damage(text: String, d: &TextDamage) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    match d {
        TextDamage::None => {}
        TextDamage::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        TextDamage::Insert(i, s) => {
            let at = i.index(bytes.len() + 1);
            bytes.splice(at..at, s.bytes());
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// config.json: ours, BLOOM, MPT

const OUR_KEYS: &[&str] = &[
    "format",
    "arch",
    "vocab_size",
    "d_model",
    "n_layers",
    "n_heads",
    "d_ff",
    "position",
    "train_len",
    "max_len",
    "layer_norm_eps",
    "linear_bias",
    "norm_bias",
    "embed_norm",
    "embed_scale",
    "tie_embeddings",
    "activation",
    "slopes",
    "clip_qkv",
    "qk_norm",
    "rotary_base",
    "saved_dtype",
];

const BLOOM_KEYS: &[&str] = &[
    "model_type",
    "vocab_size",
    "hidden_size",
    "n_embed",
    "n_layer",
    "num_hidden_layers",
    "n_head",
    "num_attention_heads",
    "layer_norm_epsilon",
    "apply_residual_connection_post_layernorm",
    "tie_word_embeddings",
    "seq_length",
    "dtype",
    "torch_dtype",
];

const MPT_KEYS: &[&str] = &[
    "model_type",
    "d_model",
    "n_heads",
    "n_layers",
    "vocab_size",
    "expansion_ratio",
    "max_seq_len",
    "attn_config",
    "no_bias",
    "norm_type",
    "layer_norm_epsilon",
    "logit_scale",
    "tie_word_embeddings",
    "ffn_config",
    "dtype",
    "torch_dtype",
];

const MPT_ATTN_KEYS: &[&str] = &[
    "alibi",
    "alibi_bias_max",
    "clip_qkv",
    "qk_ln",
    "qk_gn",
    "softmax_scale",
    "attn_type",
    "prefix_lm",
    "rope",
];

fn our_base() -> Value {
    let mut cfg = Config::ours(96, 64, 2, 4, 256, Position::Alibi, 64);
    cfg.slopes = Some(alibi_explorer::alibi::paper_slopes(4));
    serde_json::to_value(cfg).unwrap()
}

fn bloom_base() -> Value {
    json!({"model_type": "bloom", "vocab_size": 96, "hidden_size": 64, "n_layer": 2, "n_head": 4,
           "layer_norm_epsilon": 1e-5, "apply_residual_connection_post_layernorm": false,
           "tie_word_embeddings": true, "torch_dtype": "float32"})
}

fn mpt_base() -> Value {
    json!({"model_type": "mpt", "d_model": 64, "n_heads": 4, "n_layers": 2, "vocab_size": 96,
           "expansion_ratio": 4, "max_seq_len": 64, "no_bias": true,
           "norm_type": "low_precision_layernorm", "logit_scale": null,
           "attn_config": {"alibi": true, "alibi_bias_max": 8, "attn_type": "multihead_attention",
                           "clip_qkv": null, "qk_ln": false, "prefix_lm": false, "softmax_scale": null}})
}

fn falcon_base() -> Value {
    json!({"model_type": "falcon", "vocab_size": 96, "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_kv_heads": 4, "alibi": true, "multi_query": false,
           "parallel_attn": false, "new_decoder_architecture": false, "bias": true,
           "activation": "gelu", "ffn_hidden_size": 256, "layer_norm_epsilon": 1e-5,
           "max_position_embeddings": 2048, "tie_word_embeddings": true, "dtype": "float32"})
}

/// The Falcon config fields the converter reads (and their old RefinedWeb names).
const FALCON_KEYS: &[&str] = &[
    "model_type",
    "vocab_size",
    "hidden_size",
    "n_embed",
    "num_hidden_layers",
    "n_layer",
    "num_attention_heads",
    "n_head",
    "num_kv_heads",
    "n_head_kv",
    "alibi",
    "multi_query",
    "parallel_attn",
    "new_decoder_architecture",
    "bias",
    "activation",
    "ffn_hidden_size",
    "layer_norm_epsilon",
    "apply_residual_connection_post_layernorm",
    "max_position_embeddings",
    "tie_word_embeddings",
    "dtype",
    "torch_dtype",
];

fn falcon_config_value() -> impl Strategy<Value = Value> {
    edits(FALCON_KEYS).prop_map(|e| {
        let mut v = falcon_base();
        apply_edits(&mut v, e);
        v
    })
}

fn our_config_value() -> impl Strategy<Value = Value> {
    edits(OUR_KEYS).prop_map(|e| {
        let mut v = our_base();
        apply_edits(&mut v, e);
        v
    })
}

fn bloom_config_value() -> impl Strategy<Value = Value> {
    edits(BLOOM_KEYS).prop_map(|e| {
        let mut v = bloom_base();
        apply_edits(&mut v, e);
        v
    })
}

fn mpt_config_value() -> impl Strategy<Value = Value> {
    (edits(MPT_KEYS), edits(MPT_ATTN_KEYS)).prop_map(|(e, a)| {
        let mut v = mpt_base();
        apply_edits(&mut v, e);
        if let Some(attn) = v.get_mut("attn_config") {
            apply_edits(attn, a);
        }
        v
    })
}

/// What a valid normalised config must satisfy.
fn check_config(cfg: &Config) -> Result<(), TestCaseError> {
    prop_assert_eq!(cfg.validate(), Ok(()));
    prop_assert!(cfg.n_heads >= 1 && cfg.n_heads <= MAX_HEADS);
    prop_assert_eq!(cfg.d_model % cfg.n_heads, 0);
    if let Some(s) = &cfg.slopes {
        prop_assert_eq!(s.len(), cfg.n_heads);
        prop_assert!(s.iter().all(|m| m.is_finite()));
    }
    Ok(())
}

#[test]
fn fuzz_our_config_json() {
    fuzz(
        "our config.json (serde + validate)",
        our_config_value(),
        |v| {
            match serde_json::from_str::<Config>(&to_text(&v)) {
                Ok(cfg) => match cfg.validate() {
                    Ok(()) => {
                        check_config(&cfg)?;
                        // Valid configs round-trip exactly.
                        let back: Config =
                            serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
                        prop_assert_eq!(back, cfg);
                    }
                    Err(e) => one_line(&e)?,
                },
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_bloom_config_json() {
    fuzz(
        "BLOOM config.json (RawBloomConfig + to_config)",
        bloom_config_value(),
        |v| {
            match serde_json::from_str::<bloom::RawBloomConfig>(&to_text(&v)) {
                Ok(raw) => match bloom::to_config(&raw) {
                    Ok(cfg) => {
                        check_config(&cfg)?;
                        prop_assert_eq!(cfg.arch, Arch::Bloom);
                        prop_assert_eq!(cfg.d_ff, 4 * cfg.d_model);
                        prop_assert!(cfg.slopes.is_some());
                    }
                    Err(e) => one_line(&e)?,
                },
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_mpt_config_json() {
    fuzz(
        "MPT config.json (RawMptConfig + to_config)",
        mpt_config_value(),
        |v| {
            match serde_json::from_str::<mpt::RawMptConfig>(&to_text(&v)) {
                Ok(raw) => match mpt::to_config(&raw) {
                    Ok(cfg) => {
                        check_config(&cfg)?;
                        prop_assert_eq!(cfg.arch, Arch::Mpt);
                        prop_assert!(cfg.slopes.is_some());
                    }
                    Err(e) => one_line(&e)?,
                },
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_falcon_config_json() {
    fuzz(
        "Falcon config.json (RawFalconConfig + to_config)",
        falcon_config_value(),
        |v| {
            match serde_json::from_str::<falcon::RawFalconConfig>(&to_text(&v)) {
                Ok(raw) => match falcon::to_config(&raw) {
                    Ok(cfg) => {
                        check_config(&cfg)?;
                        prop_assert_eq!(cfg.arch, Arch::Falcon);
                        prop_assert_eq!(cfg.position, Position::Alibi);
                        // Only Falcon-RW's layout is accepted.
                        prop_assert!(raw.alibi && !raw.multi_query && !raw.parallel_attn);
                        prop_assert!(!raw.new_decoder_architecture);
                        prop_assert!(cfg.slopes.is_some());
                    }
                    Err(e) => one_line(&e)?,
                },
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        },
    );
}

/// A `config.json` as written to a folder: one of the four families (with `format` and
/// `model_type` fuzzed too), any JSON, or any bytes; then maybe damaged.
fn config_file() -> impl Strategy<Value = Vec<u8>> {
    let family = prop_oneof![
        our_config_value(),
        bloom_config_value(),
        mpt_config_value(),
        falcon_config_value()
    ];
    let tagged =
        (family, edits(&["format", "model_type"]), any::<bool>()).prop_map(|(mut v, e, tag)| {
            if tag {
                apply_edits(&mut v, e);
            }
            v
        });
    prop_oneof![
        6 => (tagged, text_damage()).prop_map(|(v, d)| damage(to_text(&v), &d)),
        1 => json_value().prop_map(|v| to_text(&v).into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

#[test]
fn fuzz_read_checkpoint_config() {
    let dir = tempfile::tempdir().unwrap();
    fuzz(
        "read_checkpoint_config (config.json files)",
        config_file(),
        |bytes| {
            std::fs::write(dir.path().join(CONFIG_FILE), &bytes).unwrap();
            match read_checkpoint_config(dir.path()) {
                Ok(c) => {
                    check_config(&c.config)?;
                    prop_assert_eq!(c.family.is_some(), c.config.arch != Arch::Ours);
                }
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// safetensors files and the shard index

const DTYPES: &[safetensors::Dtype] = &[
    safetensors::Dtype::F32,
    safetensors::Dtype::F16,
    safetensors::Dtype::BF16,
    safetensors::Dtype::F64,
    safetensors::Dtype::U8,
    safetensors::Dtype::U32,
    safetensors::Dtype::I64,
    safetensors::Dtype::I32,
    safetensors::Dtype::BOOL,
];

/// The dtypes weights load from (integers and booleans are refused, naming the tensor).
const LOADABLE: &[safetensors::Dtype] = &[
    safetensors::Dtype::F32,
    safetensors::Dtype::F16,
    safetensors::Dtype::BF16,
    safetensors::Dtype::F64,
];

/// One generated tensor: dtype, shape and its bytes' fill.
#[derive(Debug, Clone)]
struct GenTensor {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    fill: u8,
}

fn gen_tensors() -> impl Strategy<Value = BTreeMap<String, GenTensor>> {
    let tensor = (
        prop::sample::select(DTYPES),
        prop::collection::vec(0usize..5, 0..4),
        any::<u8>(),
    )
        .prop_map(|(dtype, shape, fill)| GenTensor { dtype, shape, fill });
    let name = prop_oneof![
        prop::sample::select(vec![
            "tok_emb.weight",
            "blocks.0.ln1.weight",
            "transformer.h.0.input_layernorm.bias",
            "",
        ])
        .prop_map(String::from),
        "[a-z0-9._]{1,12}",
        ".{1,6}",
    ];
    prop::collection::btree_map(name, tensor, 0..5)
}

fn safetensors_bytes(tensors: &BTreeMap<String, GenTensor>) -> Vec<u8> {
    let data: Vec<(&String, &GenTensor, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let len = t.shape.iter().product::<usize>() * t.dtype.bitsize() / 8;
            (n, t, vec![t.fill; len])
        })
        .collect();
    let views = data.iter().map(|(n, t, bytes)| {
        (
            n.as_str(),
            safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), bytes).unwrap(),
        )
    });
    safetensors::tensor::serialize(views, None).unwrap_or_default()
}

/// How to damage a valid safetensors file.
#[derive(Debug, Clone)]
enum StDamage {
    None,
    Truncate(prop::sample::Index),
    Flip(Vec<(prop::sample::Index, u8)>),
    /// Replace the 8-byte header length.
    Prefix(u64),
    /// Replace one field of one tensor entry in the header (re-encoded with a right prefix).
    Field(prop::sample::Index, &'static str, Value),
    /// Replace the whole header (re-encoded with a right prefix).
    Header(Value),
    Append(Vec<u8>),
}

fn st_damage() -> impl Strategy<Value = StDamage> {
    let offsets = prop_oneof![
        prop::collection::vec(any::<u64>(), 0..4).prop_map(|v| json!(v)),
        prop::collection::vec(0u64..64, 0..4).prop_map(|v| json!(v)),
        json_leaf(),
    ];
    let field = prop_oneof![
        3 => offsets.prop_map(|v| ("data_offsets", v)),
        2 => prop_oneof![
            prop::collection::vec(0u64..8, 0..4).prop_map(|v| json!(v)),
            prop::collection::vec(any::<u64>(), 0..4).prop_map(|v| json!(v)),
            json_leaf(),
        ].prop_map(|v| ("shape", v)),
        1 => prop_oneof![
            prop::sample::select(vec!["F32", "F16", "BF16", "U8", "I64", "F8_E4M3", "F4", "C64", "X"]).prop_map(Value::from),
            json_leaf(),
        ].prop_map(|v| ("dtype", v)),
    ];
    prop_oneof![
        3 => Just(StDamage::None),
        2 => any::<prop::sample::Index>().prop_map(StDamage::Truncate),
        2 => prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4).prop_map(StDamage::Flip),
        2 => prop_oneof![any::<u64>(), 0u64..512, Just(u64::MAX), Just(100_000_001)].prop_map(StDamage::Prefix),
        4 => (any::<prop::sample::Index>(), field).prop_map(|(i, (k, v))| StDamage::Field(i, k, v)),
        1 => json_value().prop_map(StDamage::Header),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(StDamage::Append),
    ]
}

fn reencode(header: &Value, data: &[u8]) -> Vec<u8> {
    let text = to_text(header);
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

fn damage_safetensors(mut bytes: Vec<u8>, d: &StDamage) -> Vec<u8> {
    let split = |bytes: &[u8]| -> Option<(Value, Vec<u8>)> {
        let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
        let header = serde_json::from_slice(bytes.get(8..8 + n)?).ok()?;
        Some((header, bytes[8 + n..].to_vec()))
    };
    match d {
        StDamage::None => bytes,
        StDamage::Truncate(i) => {
            bytes.truncate(i.index(bytes.len()));
            bytes
        }
        StDamage::Flip(flips) => {
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] ^= b | 1;
            }
            bytes
        }
        StDamage::Prefix(n) => {
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            bytes
        }
        StDamage::Field(i, key, value) => {
            let Some((mut header, data)) = split(&bytes) else {
                return bytes;
            };
            let names: Vec<String> = header
                .as_object()
                .map(|m| m.keys().filter(|k| *k != "__metadata__").cloned().collect())
                .unwrap_or_default();
            if names.is_empty() {
                return bytes;
            }
            let name = &names[i.index(names.len())];
            header[name][*key] = value.clone();
            reencode(&header, &data)
        }
        StDamage::Header(h) => {
            let data = split(&bytes).map(|(_, d)| d).unwrap_or_default();
            reencode(h, &data)
        }
        StDamage::Append(extra) => {
            bytes.extend_from_slice(extra);
            bytes
        }
    }
}

/// Opens `files` as a checkpoint and reads every tensor; valid files must load exactly.
fn open_and_load(
    files: &[PathBuf],
    expect: Option<&BTreeMap<String, GenTensor>>,
) -> Result<(), TestCaseError> {
    match Checkpoint::open(files) {
        Ok(ckpt) => {
            let names: Vec<String> = ckpt.names().into_iter().map(String::from).collect();
            for name in &names {
                let info = ckpt.info(name);
                match ckpt.load(name) {
                    Ok(t) => {
                        prop_assert_eq!(Some(t.dims().to_vec()), info.map(|i| i.0));
                        prop_assert!(
                            t.dtype().is_float(),
                            "tensor '{name}' loaded as {:?}",
                            t.dtype()
                        );
                    }
                    Err(e) => {
                        one_line(&e.to_string())?;
                        if let Some(expect) = expect
                            && !LOADABLE.contains(&expect[name].dtype)
                        {
                            prop_assert!(
                                e.to_string().contains(name.as_str()),
                                "integer tensor refused without its name: {e}"
                            );
                        }
                        // Every float dtype must load from a valid file.
                        if let Some(expect) = expect {
                            let dtype = expect[name].dtype;
                            prop_assert!(
                                !LOADABLE.contains(&dtype),
                                "valid {dtype:?} tensor '{name}' failed to load: {e}"
                            );
                        }
                    }
                }
            }
            if let Some(expect) = expect {
                prop_assert_eq!(names, expect.keys().cloned().collect::<Vec<_>>());
                for (name, t) in expect {
                    let (shape, _) = ckpt.info(name).unwrap();
                    prop_assert_eq!(&shape, &t.shape);
                }
            }
        }
        Err(e) => {
            one_line(&e.to_string())?;
            prop_assert!(
                expect.is_none() || files.len() > 1,
                "valid file refused: {e}"
            );
        }
    }
    Ok(())
}

#[test]
fn fuzz_safetensors_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    let strategy = (
        gen_tensors(),
        st_damage(),
        prop::option::weighted(0.2, gen_tensors()),
    );
    fuzz(
        "Checkpoint::open + load (safetensors files)",
        strategy,
        |(tensors, d, second)| {
            let valid = matches!(d, StDamage::None);
            std::fs::write(&a, damage_safetensors(safetensors_bytes(&tensors), &d)).unwrap();
            let mut files = vec![a.clone()];
            if let Some(t) = &second {
                std::fs::write(&b, safetensors_bytes(t)).unwrap();
                files.push(b.clone());
            }
            open_and_load(&files, (valid && second.is_none()).then_some(&tensors))
        },
    );
}

#[test]
fn fuzz_safetensors_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        // A plausible 8-byte length prefix before garbage.
        ((0u64..256), prop::collection::vec(any::<u8>(), 0..128)).prop_map(|(n, rest)| {
            let mut v = n.to_le_bytes().to_vec();
            v.extend(rest);
            v
        }),
        (json_value(), prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(h, data)| reencode(&h, &data)),
    ];
    fuzz("Checkpoint::open (random bytes)", bytes, |bytes| {
        std::fs::write(&file, &bytes).unwrap();
        open_and_load(std::slice::from_ref(&file), None)
    });
}

/// A shard index: mostly `{"weight_map": {..}}` with odd shard names.
fn index_file() -> impl Strategy<Value = Vec<u8>> {
    let shard = prop_oneof![
        prop::sample::select(vec![
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "",
            ".",
            "..",
            "../x.safetensors",
            "/etc/passwd",
            "a/../../b",
            "sub/shard.safetensors",
            "C:\\x",
            "\u{0}",
        ])
        .prop_map(Value::from),
        "[a-z./]{0,12}".prop_map(Value::from),
        json_leaf(),
    ];
    let map = prop::collection::btree_map(json_key(), shard, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()));
    let index = (map, json_value(), any::<bool>()).prop_map(|(map, other, extra)| {
        let mut v = json!({"metadata": {"total_size": 16}, "weight_map": map});
        if extra {
            v["weight_map_extra"] = other;
        }
        v
    });
    prop_oneof![
        6 => (index, text_damage()).prop_map(|(v, d)| damage(to_text(&v), &d)),
        1 => json_value().prop_map(|v| to_text(&v).into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..48),
    ]
}

#[test]
fn fuzz_shard_index() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model-00001-of-00002.safetensors"), b"x").unwrap();
    let index = dir.path().join(INDEX_FILE);
    fuzz(
        "read_index + weight_files (shard index)",
        index_file(),
        |bytes| {
            std::fs::write(&index, &bytes).unwrap();
            match read_index(&index) {
                Ok(pairs) => {
                    prop_assert!(!pairs.is_empty());
                    for (_, f) in &pairs {
                        prop_assert!(
                            Path::new(f)
                                .components()
                                .all(|c| matches!(c, std::path::Component::Normal(_))),
                            "shard '{f}' escapes the folder"
                        );
                    }
                }
                Err(e) => one_line(&e.to_string())?,
            }
            match weight_files(dir.path()) {
                Ok(files) => {
                    for f in files {
                        prop_assert!(f.is_file() && f.starts_with(dir.path()));
                    }
                }
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// token-id files

/// Unicode and ASCII whitespace (what `split_whitespace` splits on) and look-alikes that are not.
const SEPARATORS: &[&str] = &[
    " ", "\n", "\t", "\r\n", "\r", "\u{b}", "\u{c}", "\u{a0}", "\u{85}", "\u{1680}", "\u{2000}",
    "\u{2028}", "\u{2029}", "\u{202f}", "\u{3000}", "\u{200b}", "\u{feff}", "", "  \n\n ",
];

/// The separators `split_whitespace` splits on.
const WHITESPACE: &[&str] = &[
    " ", "\n", "\t", "\r\n", "\r", "\u{b}", "\u{c}", "\u{a0}", "\u{85}", "\u{1680}", "\u{2000}",
    "\u{2028}", "\u{2029}", "\u{202f}", "\u{3000}",
];

fn token_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..100).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "4294967295", "4294967296", "18446744073709551616", "-0", "+7", "0x10", "1e3", "1.0",
            "٣", "１２", "七", "0\u{0}", "NaN",
        ])
        .prop_map(String::from),
        1 => "\\PC{1,6}",
    ]
}

fn vocab() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..=200,
        1 => prop::sample::select(vec![usize::MAX, u32::MAX as usize, u32::MAX as usize + 1, 1]),
    ]
}

#[test]
fn fuzz_token_id_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ids.txt");
    let text = prop_oneof![
        6 => prop::collection::vec((token_piece(), prop::sample::select(SEPARATORS)), 0..24)
            .prop_map(|v| v.into_iter().flat_map(|(a, b)| [a, b.to_string()]).collect::<String>().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    fuzz(
        "read_token_ids (random text)",
        (text, vocab()),
        |(bytes, vocab)| {
            std::fs::write(&file, &bytes).unwrap();
            match read_token_ids(&file, vocab) {
                Ok(ids) => {
                    prop_assert!(!ids.is_empty());
                    prop_assert!(ids.iter().all(|&id| (id as usize) < vocab));
                }
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_token_id_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ids.txt");
    let strategy = (1usize..100_000).prop_flat_map(|vocab| {
        (
            Just(vocab),
            prop::collection::vec((0..vocab as u32, prop::sample::select(WHITESPACE)), 1..40),
            prop::sample::select(WHITESPACE),
        )
    });
    fuzz(
        "read_token_ids (valid files round-trip)",
        strategy,
        |(vocab, ids, lead)| {
            let text: String = std::iter::once(lead.to_string())
                .chain(ids.iter().map(|(id, sep)| format!("{id}{sep}")))
                .collect();
            std::fs::write(&file, text).unwrap();
            let got =
                read_token_ids(&file, vocab).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, ids.iter().map(|(id, _)| *id).collect::<Vec<_>>());
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// slopes files and --slopes specs

fn slopes_text() -> impl Strategy<Value = String> {
    let slope = prop_oneof![3 => interesting_f64().prop_map(|x| json!(x)), 1 => json_leaf()];
    let file = (
        prop::collection::vec(slope, 0..10),
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(slopes, other, extra)| {
            let mut v = json!({"heads": slopes.len(), "preset": "custom", "slopes": slopes});
            if extra {
                v["slopes"] = other;
            }
            v
        });
    prop_oneof![
        6 => (file, text_damage()).prop_map(|(v, d)| String::from_utf8_lossy(&damage(to_text(&v), &d)).into_owned()),
        1 => json_value().prop_map(|v| to_text(&v)),
        1 => ".{0,40}",
    ]
}

#[test]
fn fuzz_slopes_json() {
    fuzz("parse_slopes_json (random text)", slopes_text(), |text| {
        match parse_slopes_json("slopes.json", &text) {
            Ok(s) => prop_assert!(s.iter().all(|m| m.is_finite())),
            Err(e) => one_line(&e)?,
        }
        Ok(())
    });
}

#[test]
fn fuzz_slopes_json_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slopes.json");
    let slopes = prop::collection::vec(
        interesting_f64().prop_filter("finite", |x| x.is_finite()),
        0..70,
    );
    fuzz(
        "write_slopes + read_slopes (round-trip)",
        slopes,
        |slopes| {
            alibi_explorer::alibi::file::write_slopes(&file, &slopes).unwrap();
            let got =
                alibi_explorer::alibi::file::read_slopes(&file).map_err(TestCaseError::fail)?;
            prop_assert_eq!(got.len(), slopes.len());
            for (a, b) in got.iter().zip(&slopes) {
                // serde_json's default float parsing is best-effort (off by an ulp at times, more
                // for subnormals): equal up to a few ulps.
                let tol = 4.0 * f64::EPSILON * b.abs().max(f64::MIN_POSITIVE);
                prop_assert!((a - b).abs() <= tol, "{a} != {b}");
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_resolve_slopes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slopes.json");
    let spec = prop_oneof![
        3 => prop::sample::select(vec![
            "geometric", "GEOMETRIC", "Paper", "alibi", "equal", "all-equal", "linear", "reversed",
            "reverse", "zero", "none", "", " ", "geometric ", ".", "/", "..",
        ]).prop_map(|s| (s.to_string(), None)),
        1 => "\\PC{0,12}".prop_map(|s| (s, None)),
        3 => slopes_text().prop_map(|t| (String::new(), Some(t))),
    ];
    let heads = prop_oneof![8 => 0usize..=300, 1 => Just(MAX_HEADS)];
    fuzz(
        "resolve_slopes (--slopes specs and files)",
        (spec, heads),
        |((spec, text), heads)| {
            let spec = match text {
                Some(t) => {
                    std::fs::write(&file, t).unwrap();
                    file.display().to_string()
                }
                None => spec,
            };
            match resolve_slopes(&spec, heads) {
                Ok(s) => {
                    prop_assert_eq!(s.len(), heads);
                    prop_assert!(s.iter().all(|m| m.is_finite()));
                }
                Err(e) => one_line(&e)?,
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// --lengths, --device

fn lengths_spec() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        4 => (0u64..5000).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "18446744073709551615", "18446744073709551616", "9223372036854775808", "1e19", "-1",
            "0", "1.5", "+8", " 64 ", "", "0x40",
        ]).prop_map(String::from),
        1 => "\\PC{0,4}",
    ];
    let sep = prop::sample::select(vec![",", "..", ", ", " ..", "...", ",,", " ", ".."]);
    prop_oneof![
        6 => prop::collection::vec((number, sep), 1..6)
            .prop_map(|v| v.into_iter().flat_map(|(a, b)| [a, b.to_string()]).collect::<String>()),
        // Ranges up to the largest usize (the doubling must stop, not wrap around).
        3 => (1u64..=u64::MAX, any::<u64>(), any::<bool>())
            .prop_map(|(a, b, big)| format!("{a}..{}", if big { u64::MAX } else { b })),
        1 => prop::collection::vec(any::<u64>(), 1..2000)
            .prop_map(|v| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")),
        1 => ".{0,24}",
    ]
}

#[test]
fn fuzz_lengths() {
    fuzz("parse_lengths (random specs)", lengths_spec(), |spec| {
        match parse_lengths(&spec) {
            Ok(v) => {
                prop_assert!(!v.is_empty() && v[0] >= 1);
                prop_assert!(v.windows(2).all(|w| w[0] < w[1]));
                // No absurd allocation: a range doubles at most 64 times, a list has one value per
                // comma-separated item.
                prop_assert!(v.len() <= spec.split(',').count().max(64));
            }
            Err(e) => one_line(&e)?,
        }
        Ok(())
    });
}

#[test]
fn fuzz_lengths_valid() {
    let list = prop::collection::vec(1usize..1_000_000, 1..50);
    let range = (1usize..1_000_000, 0u32..64);
    fuzz(
        "parse_lengths (valid lists and ranges)",
        (list, range, any::<bool>()),
        |(list, (a, k), spaced)| {
            let sep = if spaced { ", " } else { "," };
            let spec = list
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(sep);
            let mut want = list.clone();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(parse_lengths(&spec), Ok(want));
            let b = a.saturating_mul(1usize << k.min(40));
            let got = parse_lengths(&format!("{a}..{b}")).map_err(TestCaseError::fail)?;
            let want: Vec<usize> = (0..64)
                .map_while(|i| {
                    a.checked_mul(1usize.checked_shl(i)?)
                        .filter(|&l| l <= b && (l >> i) == a)
                })
                .collect();
            prop_assert_eq!(got, want);
            Ok(())
        },
    );
}

#[test]
fn fuzz_device() {
    let spec = prop_oneof![
        2 => prop::sample::select(vec![
            "auto", "cpu", "cuda", "metal", "metal:0", "cuda:0", "cuda:", "CPU", "cuda:-1",
            "cuda:18446744073709551616", "cuda: 1", "cuda:+1", "metal:1", "", " cpu", "cuda:1:2",
        ]).prop_map(|s| (s.to_string(), None)),
        2 => any::<usize>().prop_map(|n| (format!("cuda:{n}"), Some(n))),
        1 => "cuda:[0-9]{0,25}".prop_map(|s| (s, None)),
        2 => "\\PC{0,12}".prop_map(|s| (s, None)),
    ];
    fuzz("DeviceSpec::from_str (--device)", spec, |(s, ordinal)| {
        match s.parse::<DeviceSpec>() {
            Ok(d) => {
                if let Some(n) = ordinal {
                    prop_assert_eq!(d, DeviceSpec::Cuda(n));
                }
                prop_assert!(
                    matches!(s.as_str(), "auto" | "cpu" | "cuda" | "metal" | "metal:0")
                        || s.starts_with("cuda:")
                );
            }
            Err(e) => {
                prop_assert!(ordinal.is_none(), "cuda:N refused: {e}");
                one_line(&e)?;
                prop_assert!(e.contains("unknown device"));
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

fn tokenizer_base() -> Value {
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": {"<|endoftext|>": 0, "h": 1, "e": 2, "l": 3, "o": 4, "Ġ": 5, "he": 6, "ll": 7, "hell": 8},
                  "merges": [["h", "e"], ["l", "l"], ["he", "ll"]]}
    })
}

const TOKENIZER_KEYS: &[&str] = &[
    "version",
    "truncation",
    "padding",
    "added_tokens",
    "normalizer",
    "pre_tokenizer",
    "post_processor",
    "decoder",
    "model",
];

const TOKENIZER_MODEL_KEYS: &[&str] = &[
    "type",
    "dropout",
    "unk_token",
    "continuing_subword_prefix",
    "end_of_word_suffix",
    "fuse_unk",
    "byte_fallback",
    "ignore_merges",
    "vocab",
    "merges",
    "unk_id",
    "max_input_chars_per_word",
];

/// Tokenizer components: real shapes with fuzzed contents.
fn tokenizer_component() -> impl Strategy<Value = Value> {
    let s = || {
        prop_oneof![
            ".{0,4}".prop_map(String::from),
            prop::sample::select(vec![
                "h", "e", "ll", "Ġ", "<unk>", "(", "[", "\\", "(?<=a)b", "a{99999}"
            ])
            .prop_map(String::from)
        ]
    };
    let n = || prop_oneof![(0i64..12), any::<i64>()];
    prop_oneof![
        Just(json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})),
        (s(), any::<bool>()).prop_map(|(p, inv)| json!({"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": inv})),
        (s(), s()).prop_map(|(p, c)| json!({"type": "Replace", "pattern": {"String": p}, "content": c})),
        (s(), s()).prop_map(|(p, c)| json!({"type": "Replace", "pattern": {"Regex": p}, "content": c})),
        Just(json!({"type": "NFKC"})),
        json_leaf().prop_map(|m| json!({"type": "Precompiled", "precompiled_charsmap": m})),
        Just(json!({"type": "Whitespace"})),
        Just(json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true})),
        (s(), n()).prop_map(|(t, id)| json!({"type": "WordLevel", "vocab": {t.clone(): id, "h": 1}, "unk_token": t})),
        (s(), n()).prop_map(|(t, id)| json!({"type": "WordPiece", "vocab": {t.clone(): id}, "unk_token": t, "continuing_subword_prefix": "##", "max_input_chars_per_word": 100})),
        (s(), n(), interesting_f64()).prop_map(|(t, id, score)| json!({"type": "Unigram", "unk_id": id, "vocab": [[t, score], ["h", -1.0]], "byte_fallback": false})),
        (s(), n()).prop_map(|(t, id)| json!({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": t.clone(), "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "pair": [], "special_tokens": {t.clone(): {"id": t, "ids": [id], "tokens": ["h"]}}})),
        prop::collection::vec(n(), 0..4).prop_map(|ids| json!([{"id": ids.first().copied().unwrap_or(0), "content": "x", "special": true}])),
        Just(json!({"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, {"type": "Digits", "individual_digits": true}]})),
    ]
}

fn tokenizer_file() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![3 => tokenizer_component(), 2 => field_value()];
    let top = prop::collection::vec(
        (
            prop::sample::select(TOKENIZER_KEYS),
            prop::option::weighted(0.85, value.clone()),
        ),
        0..3,
    );
    let model = prop::collection::vec(
        (
            prop::sample::select(TOKENIZER_MODEL_KEYS),
            prop::option::weighted(0.85, value),
        ),
        0..3,
    );
    let doc = (top, model).prop_map(|(top, model)| {
        let mut v = tokenizer_base();
        apply_edits(
            &mut v["model"],
            model.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        apply_edits(
            &mut v,
            top.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        v
    });
    prop_oneof![
        8 => (doc, text_damage()).prop_map(|(v, d)| damage(to_text(&v), &d)),
        1 => json_value().prop_map(|v| to_text(&v).into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..48),
    ]
}

#[test]
fn fuzz_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokenizer.json");
    let text = prop_oneof![
        Just("hello hell <|endoftext|> oh".to_string()),
        "\\PC{0,16}".prop_map(String::from)
    ];
    fuzz(
        "load_tokenizer + tokenize (tokenizer.json)",
        (tokenizer_file(), text),
        |(bytes, text)| {
            std::fs::write(&file, &bytes).unwrap();
            match load_tokenizer(&file) {
                Ok(tok) => match tokenize(&tok, &text) {
                    Ok(stream) => {
                        prop_assert_eq!(
                            stream.bytes.as_ref().map(Vec::len),
                            Some(stream.ids.len())
                        );
                    }
                    Err(e) => one_line(&e)?,
                },
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the properties above

/// `a..b` with `b` near `usize::MAX`: the doubling overflowed, wrapped to 0 in release builds
/// and pushed zeros forever.
#[test]
fn lengths_range_to_usize_max_stops_doubling() {
    let v = parse_lengths("1..18446744073709551615").unwrap();
    assert_eq!(v.len(), 64);
    assert_eq!(v[63], 1 << 63);
    assert_eq!(
        parse_lengths("9223372036854775809..18446744073709551615")
            .unwrap()
            .len(),
        1
    );
    assert!(
        parse_lengths("1..1e19")
            .unwrap_err()
            .contains("end is not a whole number")
    );
    assert!(parse_lengths("0..0").unwrap_err().contains("at least 1"));
}

/// A config with absurdly many heads is refused before a slope per head is allocated
/// (`bloom::to_config` built the slopes before validating; `mpt::to_config` validated only the
/// divisibility).
#[test]
fn configs_with_absurd_head_counts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let huge = 1u64 << 40;
    for cfg in [
        json!({"model_type": "bloom", "hidden_size": huge, "n_head": huge}),
        json!({"model_type": "mpt", "d_model": huge, "n_heads": huge, "expansion_ratio": 1}),
        json!({"model_type": "bloom", "hidden_size": u64::MAX, "n_head": 1}),
    ] {
        std::fs::write(dir.path().join(CONFIG_FILE), cfg.to_string()).unwrap();
        let err = read_checkpoint_config(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("n_heads") || err.contains("too large"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }
    let mut ours = Config::ours(96, 2 * MAX_HEADS, 1, 2 * MAX_HEADS, 4, Position::Alibi, 16);
    assert!(ours.validate().unwrap_err().contains("n_heads"));
    ours.n_heads = MAX_HEADS;
    ours.d_model = MAX_HEADS;
    assert_eq!(ours.validate(), Ok(()));
}

/// tokenizers panicked (`expect("Helper")`) on a tokenizer.json cut short inside `decoder`, as a
/// truncated download is.
#[test]
fn truncated_tokenizer_json_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokenizer.json");
    let text = to_text(&tokenizer_base());
    let cut = text.find("\"decoder\"").unwrap() + 30;
    std::fs::write(&file, &text[..cut]).unwrap();
    let err = load_tokenizer(&file).unwrap_err().to_string();
    assert!(
        err.contains("not valid JSON") && err.contains("truncated"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    std::fs::write(&file, &text).unwrap();
    assert!(load_tokenizer(&file).is_ok());
}

/// tokenizers panicked (`expect("Precompiled")`) on a `Precompiled` normalizer whose charsmap is
/// not valid: syntactically valid JSON, so only catching the panic helps.
#[test]
fn bad_precompiled_normalizer_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokenizer.json");
    let mut v = tokenizer_base();
    v["normalizer"] = json!({"type": "Precompiled", "precompiled_charsmap": "not base64!"});
    std::fs::write(&file, to_text(&v)).unwrap();
    let err = load_tokenizer(&file).unwrap_err().to_string();
    assert!(err.contains("panicked"), "{err}");
    assert!(!err.contains('\n'));
}

/// A tokenizer.json that loads but panics in tokenizers while encoding (a `Replace` normalizer
/// with an empty regex indexed past its alignments): `tokenize` returns an error.
#[test]
fn tokenizer_that_panics_while_encoding_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokenizer.json");
    let mut v = tokenizer_base();
    v["normalizer"] = json!({"type": "Replace", "pattern": {"Regex": ""}, "content": "a"});
    std::fs::write(&file, to_text(&v)).unwrap();
    let tok = load_tokenizer(&file).unwrap();
    let err = tokenize(&tok, "hello hell <|endoftext|> oh").unwrap_err();
    assert!(err.contains("panicked"), "{err}");
    assert!(!err.contains('\n'));
}
