//! What a finished run leaves beside its weights: `TRAINING.md` (the command that reproduces it,
//! the result, the machine, the data manifest, how to resume) and the loss log's format.

use super::checkpoint::CheckpointState;
use super::copy::{COPY_SAMPLES, default_copy_span};
use super::corpus::FileStats;
use super::optim::MIN_LR_RATIO;
use super::settings::TrainSettings;
use super::trainers::MAX_VALID_WINDOWS;
use crate::model::config::Config;
use color_eyre::eyre::{Result, eyre};

/// Name of the checkpoint folder inside the output folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The loss log inside the output folder.
pub const LOSS_LOG: &str = "loss.csv";
/// The loss log's columns; `copy_gain` (nats) and `induction` (the best head's induction score)
/// are written at every validation of a run with a copy test, like `valid_loss`; `tokens` is the
/// training tokens seen so far.
pub const LOSS_LOG_HEADER: &str =
    "step,lr,train_loss,valid_loss,grad_norm,tokens_per_s,elapsed_s,copy_gain,induction,tokens";

/// The CPU's model name, its logical cores and the threads training used.
fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!(
        "{cpu}, {cores} logical cores, {} training threads ({})",
        rayon::current_num_threads(),
        std::env::consts::OS
    )
}

pub(super) fn write_training_record(
    s: &TrainSettings,
    ck: &CheckpointState,
    (train_tokens, manifest, valid_manifest): (usize, &[FileStats], &[FileStats]),
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
    if let Some(c) = &ck.last_copy {
        md.push_str(&format!(
            "Copy test at the last validation ({} spans of {} validation tokens, each repeated right after itself): copy gain **{:.3} ± {:.3} nats** (first occurrence's mean NLL minus the second's); the best induction head is layer {} head {}, score {:.3} (its mean attention on the token after the earlier occurrence). `loss.csv` has both at every validation.\n\n",
            s.copy_samples, s.copy_span, c.gain, c.gain_stderr, c.induction_head.0, c.induction_head.1, c.induction
        ));
    }
    if s.repeat_frac > 0.0 {
        md.push_str(&format!(
            "Copy mix: in {:.0}% of the training windows a span of {}–{} tokens ({}) recurs later in the window, written over the text there (`--repeat-frac`, `--repeat-span`, `--repeat-kind`; docs/training.md).\n\n",
            100.0 * s.repeat_frac,
            s.repeat_span.0,
            s.repeat_span.1,
            if s.repeat_kind == crate::eval::reach::SpanKind::Random {
                "random tokens of the window"
            } else {
                "of the text"
            }
        ));
    }
    if let Some(init) = &s.init {
        md.push_str(&format!(
            "Started from the weights of `{}` (`--init`; its own TRAINING.md says how they were trained) with a fresh optimiser; the steps and tokens above are this run's only.\n\n",
            init.display()
        ));
    }
    md.push_str(&format!(
        "Machine (the last process): {}. Throughput over the whole run: {:.0} tokens/s; {} process{} (1 + resumes); peak resident memory of any of them: {}.\n\n",
        machine_line(),
        ck.tokens_seen as f64 / ck.elapsed_s.max(1e-9),
        ck.processes,
        if ck.processes == 1 { "" } else { "es" },
        if ck.peak_rss_mib > 0.0 {
            format!("{:.0} MiB", ck.peak_rss_mib)
        } else {
            "not measured".to_string()
        }
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
    md.push_str(&format!("## Data\n\nTraining: `{}` ({} tokens in total)\n\n| file | bytes | tokens |\n|---|---:|---:|\n", s.data.display(), train_tokens));
    for f in manifest {
        md.push_str(&format!("| {} | {} | {} |\n", f.file, f.bytes, f.tokens));
    }
    md.push_str(&format!(
        "\nValidation: `{}`\n\n| file | bytes | tokens |\n|---|---:|---:|\n",
        s.valid.display()
    ));
    for f in valid_manifest {
        md.push_str(&format!("| {} | {} | {} |\n", f.file, f.bytes, f.tokens));
    }
    md.push_str(&format!(
        "\n## Resuming\n\nA stopped run (Ctrl-C, SIGTERM, a closed session) saved a checkpoint in `{}/{CHECKPOINT_DIR}/` (the weights, AdamW's moments and the step, data order and schedule: about 3 x 4 bytes per parameter, {:.0} MB here). Run the command above again with `--resume` (or `scripts/train-shipped.sh start`): it continues with the same data order, learning-rate schedule and optimiser state, on this machine or a fresh one that has the checkpoint folder, the data and the tokenizer. Keep the folder until the run has finished.\n",
        s.out.display(),
        (crate::model::init::param_count(cfg) * 12) as f64 / 1e6
    ));
    crate::files::write_bytes(&s.out.join("TRAINING.md"), md.as_bytes()).map_err(|e| eyre!(e))?;
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
    if s.repeat_frac > 0.0 {
        cmd.push_str(&format!(
            " \\\n  --repeat-frac {} --repeat-span {}..{} --repeat-kind {}",
            s.repeat_frac, s.repeat_span.0, s.repeat_span.1, s.repeat_kind
        ));
    }
    if let Some(init) = &s.init {
        cmd.push_str(&format!(" \\\n  --init {}", init.display()));
    }
    if s.copy_span != default_copy_span(m.train_len) || s.copy_samples != COPY_SAMPLES {
        cmd.push_str(&format!(
            " --copy-span {} --copy-samples {}",
            s.copy_span, s.copy_samples
        ));
    }
    cmd
}
