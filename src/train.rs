//! Training our own models: tokenizer training, corpus loading, the optimiser loop with
//! validation, checkpoints that resume exactly, and the final checkpoint folder plus a
//! `TRAINING.md` record of how it was made; [`fit`] fits only the slopes of a frozen model.

pub mod checkpoint;
mod copy;
pub mod corpus;
pub mod fast;
pub mod fit;
pub mod optim;
pub mod progress;
pub mod record;
pub mod settings;
pub mod tokenizer;
mod trainers;
mod warm_start;

use crate::alibi::SlopeSpec;
use crate::eval::reach::{CopyCase, CopyOptions, CopyScore, copy_cases, copy_test};
use crate::model::config::Position;
use crate::model::init::Rng;
use candle_core::{Device, Tensor};
use checkpoint::{
    CheckpointState, load_training_checkpoint, read_token_cache, save_training_checkpoint,
    write_token_cache,
};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
pub use copy::{
    COPY_SAMPLES, COPY_SEED, RepeatMix, apply_repeat, copy_spec, default_copy_span,
    default_repeat_span,
};
pub use optim::MIN_LR_RATIO;
use optim::lr_at;
use record::write_training_record;
pub use record::{CHECKPOINT_DIR, LOSS_LOG, LOSS_LOG_HEADER, reproduce_command};
pub use settings::{TrainSettings, TrainerKind};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;
pub use trainers::MAX_VALID_WINDOWS;
use trainers::{Trainer, validate};
use warm_start::{initial_params, with_init_slopes};

/// Cached token ids of the training data.
pub const TOKEN_CACHE: &str = "train-tokens.bin";
/// The files the token cache was made from (so a resumed run's record lists them).
pub const TOKEN_MANIFEST: &str = "train-manifest.json";

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
    /// One writer per output folder, for the whole run.
    _lock: crate::files::lock::FolderLock,
    train: Vec<u32>,
    valid: Vec<u32>,
    /// The copy test's cases, from the validation data (none when it is off).
    copy_cases: Option<Vec<CopyCase>>,
    manifest: Vec<corpus::FileStats>,
    valid_manifest: Vec<corpus::FileStats>,
}

fn load_data(s: &TrainSettings, tok: &tokenizers::Tokenizer) -> Result<Data> {
    let cache = s.out.join(TOKEN_CACHE);
    let manifest_file = s.out.join(TOKEN_MANIFEST);
    let train = match (read_token_cache(&cache), std::fs::read(&manifest_file)) {
        (Some(ids), Ok(m)) => {
            let manifest: Vec<corpus::FileStats> = serde_json::from_slice(&m).unwrap_or_default();
            (ids, manifest, false)
        }
        _ => {
            eprintln!("tokenizing {} ...", s.data.display());
            let c = corpus::load_corpus(&s.data, "--data", tok)?;
            (c.ids, c.files, true)
        }
    };
    let (train, manifest, fresh) = (train.0, train.1, train.2);
    let v = corpus::load_corpus(&s.valid, "--valid", tok)?;
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
    // The copy test's cases come from the validation data; refused here, before the output
    // folder exists, like every other input check.
    let spec = copy_spec(s);
    if s.copy_span > 0 && spec.case_len() > s.model.train_len + 1 {
        bail!(
            "--copy-span {}: two copies take {} tokens, more than --train-len {} (hint: use --copy-span {} or less)",
            s.copy_span,
            2 * s.copy_span,
            s.model.train_len,
            s.model.train_len.div_ceil(2)
        );
    }
    let copy_cases = (s.copy_span > 0)
        .then(|| copy_cases(&v.ids, &spec))
        .transpose()
        .map_err(|e| eyre!("--copy-span {}: {e}", s.copy_span))?;
    std::fs::create_dir_all(&s.out)
        .wrap_err_with(|| format!("cannot create '{}'", s.out.display()))?;
    let lock = crate::files::lock::lock_folder("--out", &s.out).map_err(|e| eyre!(e))?;
    if fresh {
        write_token_cache(&cache, &train)?;
        crate::files::write_bytes(&manifest_file, &serde_json::to_vec_pretty(&manifest)?)
            .map_err(|e| eyre!(e))?;
    }
    Ok(Data {
        _lock: lock,
        train,
        copy_cases,
        valid: v.ids,
        manifest,
        valid_manifest: v.files,
    })
}

/// Checks a run's settings and output folder before any work (the numbers, `--out`, and a
/// checkpoint exactly when resuming); [`run`] checks them again.
pub fn check(s: &TrainSettings, resume: bool) -> Result<()> {
    check_numbers(s).map_err(|e| eyre!(e))?;
    check_out_dir(s, resume)
}

/// Refuses optimiser numbers that would train nothing or NaN (the CLI checks them too; this
/// guards callers of the library).
fn check_numbers(s: &TrainSettings) -> std::result::Result<(), String> {
    let a = &s.adamw;
    let checks = [
        ("--lr", a.lr, a.lr > 0.0),
        ("--clip", s.clip, s.clip >= 0.0),
        ("--weight-decay", a.weight_decay, a.weight_decay >= 0.0),
        ("beta1", a.beta1, (0.0..1.0).contains(&a.beta1)),
        ("beta2", a.beta2, (0.0..1.0).contains(&a.beta2)),
        ("eps", a.eps, a.eps > 0.0),
    ];
    for (name, v, ok) in checks {
        if !v.is_finite() || !ok {
            return Err(format!(
                "{name} {v} is out of range (hint: see `train --help`)"
            ));
        }
    }
    Ok(())
}

/// Checks the output folder before any work: a folder (or a name whose parent exists), not one
/// of the data folders, with a checkpoint exactly when resuming.
fn check_out_dir(s: &TrainSettings, resume: bool) -> Result<()> {
    crate::files::check_output_dir("--out", &s.out).map_err(|e| eyre!(e))?;
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    for (flag, input) in [("--data", &s.data), ("--valid", &s.valid)] {
        if same(&s.out, input) {
            bail!(
                "--out '{}' is the {flag} folder (hint: write the model to a folder of its own)",
                s.out.display()
            );
        }
    }
    crate::files::lock::check_unlocked("--out", &s.out).map_err(|e| eyre!(e))?;
    let ck_dir = s.out.join(CHECKPOINT_DIR);
    if resume && !ck_dir.exists() {
        bail!(
            "--resume: no checkpoint in '{}' (hint: drop --resume to start)",
            s.out.display()
        );
    }
    if !resume && ck_dir.exists() {
        bail!(
            "'{}' already has a checkpoint (hint: add --resume to continue it, or choose another --out)",
            s.out.display()
        );
    }
    if !resume && let Ok(entries) = std::fs::read_dir(&s.out) {
        // A folder that holds anything but what a run wrote before its first checkpoint (the
        // token cache and the loss log) holds someone's work: a model, its record, other files.
        let run_files = [
            TOKEN_CACHE,
            TOKEN_MANIFEST,
            LOSS_LOG,
            crate::files::lock::LOCK_FILE,
        ];
        let mut other: Vec<String> = entries
            .filter_map(std::result::Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !run_files.contains(&n.as_str()))
            .collect();
        other.sort();
        if let Some(first) = other.first() {
            bail!(
                "--out '{}' already holds {} ('{first}'{}) (hint: choose a new or empty folder; only --resume writes into a run's own folder)",
                s.out.display(),
                crate::text::count(other.len(), "file"),
                if other.len() > 1 { ", ..." } else { "" }
            );
        }
    }
    Ok(())
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
    let adopted = with_init_slopes(settings)?;
    let s = &adopted;
    s.model
        .validate()
        .map_err(|e| eyre!("invalid model settings: {e}"))?;
    if s.steps == 0 || s.batch == 0 {
        bail!("--steps and --batch must be at least 1");
    }
    check_numbers(s).map_err(|e| eyre!(e))?;
    check_out_dir(s, resume)?;
    let m = &s.model;
    // The fast trainer keeps no (len x len) tensors: its own estimate, so a run that fits is not
    // refused on the candle path's numbers.
    let need = if uses_fast_trainer(s, device)? {
        crate::model::memory::fast_train_step_bytes(
            s.batch,
            m.train_len,
            m.n_layers,
            m.n_heads,
            m.d_model,
            m.d_ff,
            m.vocab_size,
            crate::model::init::param_count(m),
            rayon::current_num_threads(),
        )
    } else {
        crate::model::memory::train_step_bytes(
            s.batch,
            m.train_len,
            m.n_layers,
            m.n_heads,
            m.d_model,
            m.d_ff,
            m.vocab_size,
        )
    };
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
    let ck_dir = s.out.join(CHECKPOINT_DIR);
    // Everything that can fail on the inputs fails before the output folder is created, so a
    // refused run leaves nothing behind.
    let data = load_data(s, &tok)?;
    // Said once every input passed its checks, so a refused run prints its error alone.
    eprintln!("training on {}", crate::model::device::device_name(device));
    let initial_slopes =
        (s.model.position == crate::model::Position::Alibi).then(|| s.model.default_slopes());
    let mut trainer = make_trainer(s, initial_slopes, device)?;
    let mut ck = CheckpointState {
        settings: s.clone(),
        step: 0,
        elapsed_s: 0.0,
        tokens_seen: 0,
        last_train_loss: None,
        last_valid_loss: None,
        last_copy: None,
        window_loss_sum: 0.0,
        window_steps: 0,
        processes: 0,
        peak_rss_mib: 0.0,
    };
    if resume {
        if !ck_dir.exists() {
            bail!(
                "--resume: no checkpoint in '{}' (hint: drop --resume to start)",
                s.out.display()
            );
        }
        let loaded = load_training_checkpoint(&ck_dir)?;
        let old = &loaded.state.settings;
        let differs: Vec<&str> = [
            ("the model", old.model != s.model),
            ("--seed", old.seed != s.seed),
            ("--batch", old.batch != s.batch),
            ("--repeat-frac", old.repeat_frac != s.repeat_frac),
            (
                "--repeat-kind",
                old.repeat_frac > 0.0 && old.repeat_kind != s.repeat_kind,
            ),
            (
                "--repeat-span",
                old.repeat_frac > 0.0 && old.repeat_span != s.repeat_span,
            ),
            ("--init", old.init != s.init),
            ("--steps", old.steps != s.steps),
            ("--lr/--weight-decay", old.adamw != s.adamw),
            ("--warmup", old.warmup != s.warmup),
            ("--clip", old.clip != s.clip),
            ("--learn-slopes", old.learn_slopes != s.learn_slopes),
        ]
        .into_iter()
        .filter_map(|(name, d)| d.then_some(name))
        .collect();
        if !differs.is_empty() {
            bail!(
                "--resume: the checkpoint in '{}' was made with another {} (hint: resume with the command that started it)",
                s.out.display(),
                differs.join(", ")
            );
        }
        trainer.restore(&loaded)?;
        ck = CheckpointState {
            settings: s.clone(),
            ..loaded.state
        };
        eprintln!("resuming from step {}", ck.step);
    }
    let stop = crate::eval::console::interrupt_flag();
    let log_path = s.out.join(LOSS_LOG);
    if resume {
        truncate_log(&log_path, ck.step)?;
    }
    let new_log = !log_path.exists() || !resume;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(resume)
        .write(true)
        .truncate(!resume)
        .open(&log_path)
        .wrap_err_with(|| format!("cannot write '{}'", log_path.display()))?;
    if new_log {
        writeln!(log, "{LOSS_LOG_HEADER}")?;
    }
    let l = s.model.train_len;
    ck.processes += 1;
    let started = Instant::now();
    let base_elapsed = ck.elapsed_s;
    let mut window_tokens = 0usize;
    let mut window_start = Instant::now();
    let mut inputs = Vec::with_capacity(s.batch * l);
    let mut targets = Vec::with_capacity(s.batch * l);
    let mut window = Vec::with_capacity(l + 1);
    let mix = RepeatMix::of(s);
    let progress = progress::Progress::new(s.steps, ck.step);
    while ck.step < s.steps {
        if stop.load(Ordering::SeqCst) {
            progress.finish();
            eprintln!("interrupted: saving a checkpoint at step {}", ck.step);
            note_peak_rss(&mut ck);
            save_training_checkpoint(&ck_dir, &trainer.checkpoint()?, &ck)?;
            return Err(crate::files::stop::Stopped {
                left: format!(
                    "a checkpoint at step {} in '{}' (resume with --resume)",
                    ck.step,
                    ck_dir.display()
                ),
            }
            .into());
        }
        let step = ck.step;
        let offsets = batch_offsets(s.seed, step, s.batch, data.train.len(), l + 1);
        inputs.clear();
        targets.clear();
        for (w, &o) in offsets.iter().enumerate() {
            window.clear();
            window.extend_from_slice(&data.train[o..=o + l]);
            apply_repeat(&mut window, s.seed, step, w, &mix);
            inputs.extend_from_slice(&window[..l]);
            targets.extend_from_slice(&window[1..]);
        }
        let lr = lr_at(step, s.steps, s.warmup, s.adamw.lr, MIN_LR_RATIO);
        let (loss_v, norm) = trainer.step(&inputs, &targets, lr, s.clip)?;
        if !loss_v.is_finite() {
            bail!("the loss became {loss_v} at step {step} (hint: lower --lr)");
        }
        ck.step += 1;
        ck.tokens_seen += s.batch * l;
        window_tokens += s.batch * l;
        ck.window_loss_sum += loss_v;
        ck.window_steps += 1;
        ck.last_train_loss = Some(loss_v);
        let elapsed = base_elapsed + started.elapsed().as_secs_f64();
        ck.elapsed_s = elapsed;
        let tps = window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
        let done = ck.step == s.steps;
        let mut valid_loss = None;
        let mut copy = None;
        // A step taken is validated before a stop takes effect, so its row of loss.csv is whole.
        if ck.step.is_multiple_of(s.valid_every) || done {
            let _shield = crate::files::stop::Shield::new();
            let (model, slopes) = trainer.inference()?;
            let v = validate(&model, &data.valid, slopes.as_ref())?;
            ck.last_valid_loss = Some(v);
            valid_loss = Some(v);
            if let Some(cases) = &data.copy_cases {
                let opts = CopyOptions {
                    heads: true,
                    ..CopyOptions::default()
                };
                let c = copy_test(&model, slopes.as_ref(), cases, &opts)?;
                ck.last_copy = Some(CopyScore::of(&c));
                copy = ck.last_copy;
            }
        }
        if ck.step.is_multiple_of(10) || valid_loss.is_some() {
            let mean = ck.window_loss_sum / ck.window_steps.max(1) as f64;
            let (gain, induction) = copy.map_or((String::new(), String::new()), |c| {
                (format!("{:.4}", c.gain), format!("{:.4}", c.induction))
            });
            writeln!(
                log,
                "{},{lr:.6e},{mean:.5},{},{norm:.4},{tps:.0},{elapsed:.1},{gain},{induction},{}",
                ck.step,
                valid_loss.map_or(String::new(), |v| format!("{v:.5}")),
                ck.tokens_seen
            )?;
            log.flush()?;
            let eta = (s.steps - ck.step) as f64 * s.batch as f64 * l as f64 / tps.max(1e-9);
            progress.logged(ck.step, mean, valid_loss, copy, lr, tps, elapsed, eta);
            ck.window_loss_sum = 0.0;
            ck.window_steps = 0;
            window_tokens = 0;
            window_start = Instant::now();
        }
        progress.step(ck.step, loss_v, tps, ck.last_valid_loss, ck.last_copy);
        let pause = stop_at.is_some_and(|n| ck.step >= n) && !done;
        if ck.step.is_multiple_of(s.checkpoint_every) || done || pause {
            note_peak_rss(&mut ck);
            save_training_checkpoint(&ck_dir, &trainer.checkpoint()?, &ck)?;
        }
        if pause {
            progress.finish();
            return Ok(());
        }
    }
    progress.finish();
    let (params, slopes) = trainer.weights()?;
    finish(s, params, slopes, &ck, &data)
}

/// Drops the lines of the loss log after `step`: a run killed without saving (SIGKILL, power loss)
/// logged steps past its last checkpoint, which the resumed run logs again.
fn truncate_log(path: &std::path::Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, line)| {
            *i == 0
                || line
                    .split(',')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_some_and(|s| s <= step)
        })
        .map(|(_, line)| line)
        .collect();
    if kept.len() < text.lines().count() {
        let mut out = kept.join("\n");
        out.push('\n');
        std::fs::write(path, out).wrap_err_with(|| format!("cannot write '{}'", path.display()))?;
    }
    Ok(())
}

/// The trainer `s.trainer` asks for on `device`.
/// Whether the run uses the fast CPU trainer: `--trainer auto` where it applies, `fast` always
/// (an error naming why it cannot), `candle` never.
fn uses_fast_trainer(s: &TrainSettings, device: &Device) -> Result<bool> {
    let fast_ok = if device.is_cpu() {
        fast::supports(&s.model)
    } else {
        Err("the fast trainer runs on the CPU only".to_string())
    };
    Ok(match s.trainer {
        TrainerKind::Candle => false,
        TrainerKind::Auto => fast_ok.is_ok(),
        TrainerKind::Fast => {
            fast_ok.map_err(|e| eyre!("--trainer fast: {e} (hint: use --trainer candle)"))?;
            true
        }
    })
}

fn make_trainer(
    s: &TrainSettings,
    initial_slopes: Option<Vec<f64>>,
    device: &Device,
) -> Result<Box<dyn Trainer>> {
    let use_fast = uses_fast_trainer(s, device)?;
    let slopes_learned = s.learn_slopes && initial_slopes.is_some();
    if use_fast {
        let params = initial_params(s, &Device::Cpu)?;
        Ok(Box::new(trainers::Fast::new(
            &s.model,
            &params,
            initial_slopes,
            slopes_learned,
            s.adamw,
            s.batch,
        )?))
    } else {
        let params = initial_params(s, device)?;
        Ok(Box::new(trainers::Autograd::new(
            &s.model,
            params,
            initial_slopes,
            slopes_learned,
            s.adamw,
            s.batch,
            device,
        )?))
    }
}

fn finish(
    s: &TrainSettings,
    params: HashMap<String, Tensor>,
    slopes: Option<Vec<f64>>,
    ck: &CheckpointState,
    data: &Data,
) -> Result<()> {
    let mut cfg = s.model.clone();
    if let Some(sl) = slopes {
        cfg.slopes = Some(sl);
    }
    let dtype = crate::model::device::parse_dtype(&s.save_dtype).map_err(|e| eyre!(e))?;
    crate::model::weights::save_checkpoint(&s.out, &cfg, &params, dtype, Some(&s.tokenizer))?;
    write_training_record(
        s,
        ck,
        (data.train.len(), &data.manifest, &data.valid_manifest),
        &cfg,
    )?;
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

/// Keeps the largest peak memory any of the run's processes reached.
fn note_peak_rss(ck: &mut CheckpointState) {
    if let Some(mib) = crate::model::memory::peak_rss_mib() {
        ck.peak_rss_mib = ck.peak_rss_mib.max(mib);
    }
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
