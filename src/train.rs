//! Training our own models: tokenizer training, corpus loading, the optimiser loop with
//! validation, checkpoints that resume exactly, and the final checkpoint folder plus a
//! `TRAINING.md` record of how it was made; [`fit`] fits only the slopes of a frozen model.

pub mod checkpoint;
pub mod corpus;
pub mod fast;
pub mod fit;
pub mod optim;
pub mod settings;
pub mod tokenizer;

use crate::alibi::SlopeSpec;
use crate::model::config::{Config, Position};
use crate::model::init::{Rng, init_params};
use crate::model::transformer::{ForwardOptions, Transformer, slopes_tensor};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use checkpoint::{
    CheckpointState, load_training_checkpoint, read_token_cache, save_training_checkpoint,
    write_token_cache,
};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use optim::{AdamW, lr_at};
pub use settings::TrainSettings;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Name of the checkpoint folder inside the output folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The loss log inside the output folder.
pub const LOSS_LOG: &str = "loss.csv";
/// Cached token ids of the training data.
pub const TOKEN_CACHE: &str = "train-tokens.bin";
/// Validation windows are capped at this many, to keep validation quick.
pub const MAX_VALID_WINDOWS: usize = 64;
/// Fraction of the peak learning rate the cosine decays to.
pub const MIN_LR_RATIO: f64 = 0.1;

/// Offsets of the `batch` windows used at `step`: a pure function of the seed and the step, so
/// every position scheme sees the same data and a resumed run sees what it would have seen.
pub fn batch_offsets(
    seed: u64,
    step: usize,
    batch: usize,
    n_tokens: usize,
    window: usize,
) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDA7A);
    let span = (n_tokens - window) as u64;
    (0..batch).map(|_| rng.below(span) as usize).collect()
}

struct Data {
    train: Vec<u32>,
    valid: Vec<u32>,
    manifest: Vec<corpus::FileStats>,
    valid_manifest: Vec<corpus::FileStats>,
}

fn load_data(s: &TrainSettings, tok: &tokenizers::Tokenizer) -> Result<Data> {
    let cache = s.out.join(TOKEN_CACHE);
    let manifest_file = s.out.join("train-manifest.json");
    let (train, manifest) = match (read_token_cache(&cache), std::fs::read(&manifest_file)) {
        (Some(ids), Ok(m)) => {
            let manifest: Vec<corpus::FileStats> = serde_json::from_slice(&m).unwrap_or_default();
            (ids, manifest)
        }
        _ => {
            eprintln!("tokenizing {} ...", s.data.display());
            let c = corpus::load_corpus(&s.data, tok)?;
            write_token_cache(&cache, &c.ids)?;
            std::fs::write(&manifest_file, serde_json::to_vec_pretty(&c.files)?)?;
            (c.ids, c.files)
        }
    };
    let v = corpus::load_corpus(&s.valid, tok)?;
    let window = s.model.train_len + 1;
    if train.len() <= window {
        bail!(
            "training data has {}; --train-len {} needs more than {window}",
            crate::text::count(train.len(), "token"),
            s.model.train_len
        );
    }
    if v.ids.len() <= window {
        bail!(
            "validation data has {}; need more than {window}",
            crate::text::count(v.ids.len(), "token")
        );
    }
    Ok(Data {
        train,
        valid: v.ids,
        manifest,
        valid_manifest: v.files,
    })
}

/// The trainable state: parameters as `Var`s plus the optional slope variable.
struct State {
    vars: HashMap<String, Var>,
    slopes: Option<Var>,
}

impl State {
    fn new(
        params: HashMap<String, Tensor>,
        slopes: Option<Vec<f64>>,
        device: &Device,
    ) -> Result<Self> {
        let vars = params
            .into_iter()
            .map(|(k, t)| Ok((k, Var::from_tensor(&t)?)))
            .collect::<candle_core::Result<HashMap<_, _>>>()?;
        let slopes = match slopes {
            Some(s) => Some(Var::from_tensor(&slopes_tensor(&s, device)?)?),
            None => None,
        };
        Ok(Self { vars, slopes })
    }

    fn model(&self, cfg: &Config, device: &Device) -> Result<Transformer> {
        let ts: HashMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        Ok(Transformer::new(
            cfg,
            VarBuilder::from_tensors(ts, DType::F32, device),
        )?)
    }

    fn named(&self) -> Vec<(String, Var)> {
        let mut v: Vec<(String, Var)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(s) = &self.slopes {
            v.push(("alibi.slopes".to_string(), s.clone()));
        }
        v
    }

    fn slope_values(&self) -> Result<Option<Vec<f64>>> {
        Ok(match &self.slopes {
            Some(s) => Some(
                s.as_tensor()
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            ),
            None => None,
        })
    }
}

/// Mean NLL over up to [`MAX_VALID_WINDOWS`] non-overlapping validation windows.
fn validate(
    model: &Transformer,
    valid: &[u32],
    train_len: usize,
    slopes: Option<&Tensor>,
) -> Result<f64> {
    let n = ((valid.len() - 1) / train_len).min(MAX_VALID_WINDOWS);
    let mut inputs = Vec::with_capacity(n * train_len);
    let mut targets = Vec::with_capacity(n * train_len);
    for w in 0..n {
        inputs.extend_from_slice(&valid[w * train_len..(w + 1) * train_len]);
        targets.extend_from_slice(&valid[w * train_len + 1..(w + 1) * train_len + 1]);
    }
    let dev = model.device();
    let x = Tensor::from_vec(inputs, (n, train_len), dev)?;
    let y = Tensor::from_vec(targets, (n, train_len), dev)?;
    let opts = ForwardOptions {
        slopes: slopes.cloned(),
        ..Default::default()
    };
    let out = model.forward_hidden(&x, &opts)?;
    Ok(f64::from(
        model.nll(&out.hidden, &y)?.mean_all()?.to_scalar::<f32>()?,
    ))
}

/// Runs (or resumes) a training run and writes the final checkpoint folder.
pub fn run(settings: &TrainSettings, resume: bool, device: &Device) -> Result<()> {
    run_until(settings, resume, device, None)
}

/// Like [`run`], but stops after `stop_at` steps with a checkpoint and no final weights (what an
/// interrupted run leaves behind; used by tests and by Ctrl-C).
pub fn run_until(
    settings: &TrainSettings,
    resume: bool,
    device: &Device,
    stop_at: Option<usize>,
) -> Result<()> {
    let s = settings;
    s.model
        .validate()
        .map_err(|e| eyre!("invalid model settings: {e}"))?;
    if s.steps == 0 || s.batch == 0 {
        bail!("--steps and --batch must be at least 1");
    }
    let m = &s.model;
    let need = crate::model::memory::train_step_bytes(
        s.batch,
        m.train_len,
        m.n_layers,
        m.n_heads,
        m.d_model,
        m.d_ff,
        m.vocab_size,
    );
    crate::model::memory::check(
        need,
        &format!(
            "a training step at --train-len {} with --batch {}",
            m.train_len, s.batch
        ),
        "lower --train-len or --batch",
    )
    .map_err(|e| eyre!(e))?;
    let tok = crate::model::folder::load_tokenizer(&s.tokenizer)?;
    let tok_vocab = tok.get_vocab_size(true);
    if tok_vocab > s.model.vocab_size {
        bail!(
            "tokenizer '{}' has {tok_vocab} tokens but --vocab-size is {} (hint: use --vocab-size {tok_vocab} or more)",
            s.tokenizer.display(),
            s.model.vocab_size
        );
    }
    std::fs::create_dir_all(&s.out)
        .wrap_err_with(|| format!("cannot create '{}'", s.out.display()))?;
    let ck_dir = s.out.join(CHECKPOINT_DIR);
    if !resume && ck_dir.exists() {
        bail!(
            "'{}' already has a checkpoint (hint: add --resume to continue it, or choose another --out)",
            s.out.display()
        );
    }
    let data = load_data(s, &tok)?;
    let learned = s.model.position == crate::model::Position::Alibi;
    let initial_slopes = if learned {
        Some(s.model.default_slopes())
    } else {
        None
    };
    let params = init_params(&s.model, s.seed, device)?;
    let state = State::new(
        params,
        if s.learn_slopes {
            initial_slopes.clone()
        } else {
            None
        },
        device,
    )?;
    let mut opt = AdamW::new(state.named(), s.adamw)?;
    let mut ck = CheckpointState {
        settings: s.clone(),
        step: 0,
        elapsed_s: 0.0,
        tokens_seen: 0,
        last_train_loss: None,
        last_valid_loss: None,
    };
    if resume {
        if !ck_dir.exists() {
            bail!(
                "--resume: no checkpoint in '{}' (hint: drop --resume to start)",
                s.out.display()
            );
        }
        let loaded = load_training_checkpoint(&ck_dir, &mut opt)?;
        if loaded.settings.model != s.model
            || loaded.settings.seed != s.seed
            || loaded.settings.batch != s.batch
        {
            bail!(
                "--resume: the checkpoint in '{}' was made with other model/seed/batch settings",
                s.out.display()
            );
        }
        ck = CheckpointState {
            settings: s.clone(),
            ..loaded
        };
        eprintln!("resuming from step {}", ck.step);
    }
    let stop = crate::eval::console::interrupt_flag();
    let log_path = s.out.join(LOSS_LOG);
    let new_log = !log_path.exists() || !resume;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(resume)
        .write(true)
        .truncate(!resume)
        .open(&log_path)
        .wrap_err_with(|| format!("cannot write '{}'", log_path.display()))?;
    if new_log {
        writeln!(
            log,
            "step,lr,train_loss,valid_loss,grad_norm,tokens_per_s,elapsed_s"
        )?;
    }
    let l = s.model.train_len;
    let fixed_slopes = match (&initial_slopes, s.learn_slopes) {
        (Some(sl), false) => Some(slopes_tensor(sl, device)?),
        _ => None,
    };
    // The model and the slopes share storage with the `Var`s, which the optimiser updates in
    // place, so one model serves every step and every validation.
    let model = state.model(&s.model, device)?;
    let slopes = state
        .slopes
        .as_ref()
        .map(|v| v.as_tensor().clone())
        .or(fixed_slopes);
    let started = Instant::now();
    let base_elapsed = ck.elapsed_s;
    let mut window_tokens = 0usize;
    let mut window_start = Instant::now();
    let mut loss_sum = 0.0;
    let mut loss_n = 0usize;
    while ck.step < s.steps {
        if stop.load(Ordering::SeqCst) {
            eprintln!("\ninterrupted: saving a checkpoint at step {}", ck.step);
            save_training_checkpoint(&ck_dir, &opt, &ck)?;
            bail!(
                "training interrupted at step {} (resume with --resume)",
                ck.step
            );
        }
        let step = ck.step;
        let offsets = batch_offsets(s.seed, step, s.batch, data.train.len(), l + 1);
        let mut inputs = Vec::with_capacity(s.batch * l);
        let mut targets = Vec::with_capacity(s.batch * l);
        for &o in &offsets {
            inputs.extend_from_slice(&data.train[o..o + l]);
            targets.extend_from_slice(&data.train[o + 1..o + l + 1]);
        }
        let x = Tensor::from_vec(inputs, (s.batch, l), device)?;
        let y = Tensor::from_vec(targets, (s.batch, l), device)?;
        let opts = ForwardOptions {
            slopes: slopes.clone(),
            train: true,
            ..Default::default()
        };
        let out = model.forward_hidden(&x, &opts)?;
        let loss = model.nll(&out.hidden, &y)?.mean_all()?;
        let grads = loss.backward()?;
        let loss_v = f64::from(loss.to_scalar::<f32>()?);
        if !loss_v.is_finite() {
            bail!("the loss became {loss_v} at step {step} (hint: lower --lr)");
        }
        let norm = opt.grad_norm(&grads)?;
        let scale = if s.clip > 0.0 && norm > s.clip {
            s.clip / norm
        } else {
            1.0
        };
        let lr = lr_at(step, s.steps, s.warmup, s.adamw.lr, MIN_LR_RATIO);
        opt.step(&grads, lr, scale)?;
        ck.step += 1;
        ck.tokens_seen += s.batch * l;
        window_tokens += s.batch * l;
        loss_sum += loss_v;
        loss_n += 1;
        ck.last_train_loss = Some(loss_v);
        let elapsed = base_elapsed + started.elapsed().as_secs_f64();
        ck.elapsed_s = elapsed;
        let tps = window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
        let done = ck.step == s.steps;
        let mut valid_loss = None;
        if ck.step.is_multiple_of(s.valid_every) || done {
            let v = validate(&model, &data.valid, l, slopes.as_ref())?;
            ck.last_valid_loss = Some(v);
            valid_loss = Some(v);
        }
        if ck.step.is_multiple_of(10) || valid_loss.is_some() {
            let mean = loss_sum / loss_n as f64;
            writeln!(
                log,
                "{},{lr:.6e},{mean:.5},{},{norm:.4},{tps:.0},{elapsed:.1}",
                ck.step,
                valid_loss.map_or(String::new(), |v| format!("{v:.5}"))
            )?;
            log.flush()?;
            let eta = (s.steps - ck.step) as f64 * s.batch as f64 * l as f64 / tps.max(1e-9);
            eprint!(
                "\rstep {}/{} loss {mean:.4} valid {} lr {lr:.2e} {tps:.0} tok/s elapsed {:.0}s ETA {:.0}s   ",
                ck.step,
                s.steps,
                ck.last_valid_loss
                    .map_or("-".to_string(), |v| format!("{v:.4}")),
                elapsed,
                eta
            );
            loss_sum = 0.0;
            loss_n = 0;
            window_tokens = 0;
            window_start = Instant::now();
        }
        let pause = stop_at.is_some_and(|n| ck.step >= n) && !done;
        if ck.step.is_multiple_of(s.checkpoint_every) || done || pause {
            save_training_checkpoint(&ck_dir, &opt, &ck)?;
        }
        if pause {
            eprintln!();
            return Ok(());
        }
    }
    eprintln!();
    finish(s, &state, &ck, &data)
}

fn finish(s: &TrainSettings, state: &State, ck: &CheckpointState, data: &Data) -> Result<()> {
    let mut cfg = s.model.clone();
    if let Some(sl) = state.slope_values()? {
        cfg.slopes = Some(sl);
    }
    let params: HashMap<String, Tensor> = state
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let dtype = crate::model::device::parse_dtype(&s.save_dtype).map_err(|e| eyre!(e))?;
    crate::model::weights::save_checkpoint(&s.out, &cfg, &params, dtype, Some(&s.tokenizer))?;
    write_training_record(s, ck, data, &cfg)?;
    eprintln!(
        "saved {} ({}, {} steps, train loss {:.4}, valid loss {:.4})",
        s.out.display(),
        cfg.position,
        ck.step,
        ck.last_train_loss.unwrap_or(f64::NAN),
        ck.last_valid_loss.unwrap_or(f64::NAN)
    );
    Ok(())
}

fn write_training_record(
    s: &TrainSettings,
    ck: &CheckpointState,
    data: &Data,
    cfg: &Config,
) -> Result<()> {
    let mut md = String::new();
    md.push_str(&format!(
        "# How this model was trained\n\nPosition scheme: **{}**, training length {} tokens.\n\n",
        cfg.position, cfg.train_len
    ));
    md.push_str("## Command\n\n```\n");
    md.push_str(&reproduce_command(s));
    md.push_str("\n```\n\n## Result\n\n");
    md.push_str(&format!(
        "| steps | batch | tokens seen | wall time | final train loss | final valid loss |\n|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {:.1} min | {:.4} | {:.4} |\n\n",
        ck.step,
        s.batch,
        ck.tokens_seen,
        ck.elapsed_s / 60.0,
        ck.last_train_loss.unwrap_or(f64::NAN),
        ck.last_valid_loss.unwrap_or(f64::NAN)
    ));
    md.push_str(&format!(
        "Train loss is the loss of the final step's batch (the logged means are in the loss log); valid loss is the mean next-token NLL (nats) over up to {MAX_VALID_WINDOWS} non-overlapping {}-token windows of the validation data. The full curve is in `{LOSS_LOG}` of the training output folder.\n\n",
        cfg.train_len
    ));
    md.push_str(&format!(
        "## Model\n\nd_model {}, {} layers, {} heads, d_ff {}, vocab {}, {} parameters; weights saved as {}.\n\n",
        cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.vocab_size, crate::model::init::param_count(cfg), s.save_dtype
    ));
    md.push_str(&format!(
        "AdamW lr {} (warm-up {} steps, cosine to {}x), betas ({}, {}), weight decay {}, clip {}, seed {}.\n\n",
        s.adamw.lr, s.warmup, MIN_LR_RATIO, s.adamw.beta1, s.adamw.beta2, s.adamw.weight_decay, s.clip, s.seed
    ));
    md.push_str(&format!("## Data\n\nTraining: `{}` ({} tokens in total)\n\n| file | bytes | tokens |\n|---|---:|---:|\n", s.data.display(), data.train.len()));
    for f in &data.manifest {
        md.push_str(&format!("| {} | {} | {} |\n", f.file, f.bytes, f.tokens));
    }
    md.push_str(&format!(
        "\nValidation: `{}`\n\n| file | bytes | tokens |\n|---|---:|---:|\n",
        s.valid.display()
    ));
    for f in &data.valid_manifest {
        md.push_str(&format!("| {} | {} | {} |\n", f.file, f.bytes, f.tokens));
    }
    std::fs::write(s.out.join("TRAINING.md"), md)?;
    Ok(())
}

/// The `train` command line that reproduces `s`.
pub fn reproduce_command(s: &TrainSettings) -> String {
    let m = &s.model;
    let mut cmd = format!(
        "alibi-explorer train --data {} --valid {} --tokenizer {} --position {} --train-len {} \\\n  --d-model {} --layers {} --heads {} --d-ff {} --vocab-size {} \\\n  --steps {} --batch {} --lr {} --warmup {} --clip {} --weight-decay {} --seed {} \\\n  --valid-every {} --checkpoint-every {} --save-dtype {} --out {}",
        s.data.display(),
        s.valid.display(),
        s.tokenizer.display(),
        m.position,
        m.train_len,
        m.d_model,
        m.n_layers,
        m.n_heads,
        m.d_ff,
        m.vocab_size,
        s.steps,
        s.batch,
        s.adamw.lr,
        s.warmup,
        s.clip,
        s.adamw.weight_decay,
        s.seed,
        s.valid_every,
        s.checkpoint_every,
        s.save_dtype,
        s.out.display()
    );
    if s.learn_slopes {
        cmd.push_str(" --learn-slopes");
    }
    cmd
}

/// The initial slopes of a training run from a preset (ALiBi models only).
pub fn preset_slopes(
    position: Position,
    heads: usize,
    preset: Option<&SlopeSpec>,
) -> Result<Option<Vec<f64>>> {
    match (position, preset) {
        (Position::Alibi, Some(spec)) => Ok(Some(spec.slopes(heads)?)),
        (_, Some(_)) => bail!("--slopes only applies to --position alibi"),
        _ => Ok(None),
    }
}
