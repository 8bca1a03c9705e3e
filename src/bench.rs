//! `bench`: speed and memory measured in one run, written as a Markdown report. Ratios measured in
//! the same run (sweep vs non-overlapping windows, statistics vs plain forward) are what to compare
//! on shared machines.

use crate::eval::{Control, Protocol, evaluate, window_losses};
use crate::model::device::{device_name, dtype_name};
use crate::model::load::ModelSource;
use crate::model::memory::{peak_rss_mib, reset_peak_rss};
use crate::model::transformer::{ForwardOptions, Transformer};
use crate::text::{Input, Stream};
use crate::tui::app::{App, ModelInfo};
use candle_core::Tensor;
use color_eyre::eyre::{Result, bail, eyre};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod live;

fn stream_of(ids: &[u32], len: usize) -> Stream {
    // Repeat the text's tokens until `len + 1` are available.
    let mut v = Vec::with_capacity(len + 1);
    while v.len() < len + 1 {
        v.extend_from_slice(ids);
    }
    v.truncate(len + 1);
    Stream {
        ids: v,
        bytes: None,
    }
}

/// What `bench` measures, resolved from its arguments.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    /// The model.
    pub model: ModelSource,
    /// Tokens to run (repeated as needed).
    pub input: Input,
    /// Shortest forward length.
    pub min_length: usize,
    /// Longest forward length.
    pub max_length: usize,
    /// Timed repeats per length (median reported).
    pub repeats: usize,
    /// Sweep comparison: shortest length.
    pub sweep_min: usize,
    /// Sweep comparison: longest length (0 skips).
    pub sweep_max: usize,
    /// Sweep comparison: windows of the longest length.
    pub sweep_windows: usize,
    /// Long-input memory check length (0 skips).
    pub long_length: usize,
    /// Attention statistics: one window of this length with and without statistics (0 skips).
    pub stats_length: usize,
    /// Run only the attention-statistics section.
    pub only_stats: bool,
    /// Copy curve: spans a distance of the timed copy test (0 skips).
    pub copy_samples: usize,
    /// Run only the live-TUI section ([`live`]).
    pub live: bool,
    /// Live section: seconds to wait for one answer before giving up.
    pub live_timeout_s: u64,
    /// Also write the report here.
    pub out: Option<PathBuf>,
}

impl BenchSettings {
    /// Refuses numbers that would measure nothing (zero repeats, an empty length range), before
    /// any work.
    pub fn validate(&self) -> Result<(), String> {
        if self.repeats == 0 {
            return Err(
                "--repeats must be at least 1 (each length is timed that many times)".into(),
            );
        }
        if self.live && self.live_timeout_s == 0 {
            return Err("--live-timeout must be at least 1 second".into());
        }
        if !self.live && !self.only_stats {
            if self.min_length == 0 {
                return Err("--min-length must be at least 1".into());
            }
            if self.min_length > self.max_length {
                return Err(format!(
                    "--min-length {} is larger than --max-length {} (hint: give min <= max)",
                    self.min_length, self.max_length
                ));
            }
            if self.sweep_max > 0 {
                if self.sweep_min == 0 {
                    return Err("--sweep-min must be at least 1".into());
                }
                if self.sweep_min > self.sweep_max {
                    return Err(format!(
                        "--sweep-min {} is larger than --sweep-max {} (hint: give min <= max, or --sweep-max 0 to skip the comparison)",
                        self.sweep_min, self.sweep_max
                    ));
                }
                if self.sweep_windows == 0 {
                    return Err("--sweep-windows must be at least 1".into());
                }
            }
        }
        if self.copy_samples > 10_000 {
            return Err(format!(
                "--copy-samples {} is out of range (hint: use 1 to 10000, or 0 to skip the copy curve)",
                self.copy_samples
            ));
        }
        if self.only_stats && self.stats_length == 0 {
            return Err("--only-stats needs --stats-length of at least 1".into());
        }
        Ok(())
    }
}

/// Runs the benchmark and writes the report.
pub fn run(a: &BenchSettings) -> Result<()> {
    a.validate().map_err(|e| eyre!(e))?;
    let mut plan = crate::files::OutputPlan::new();
    plan.input(a.input.flag(), a.input.path())
        .output_opt("--out", a.out.as_deref());
    if let Ok(r) = crate::model::hub::resolve_model_path(&a.model.path) {
        plan.input("--model", &r.folder);
    }
    plan.check().map_err(|e| eyre!(e))?;
    if a.live {
        let report = live::run(&a.model, &a.input, a.live_timeout_s)?;
        return finish(a, &report);
    }
    let loaded = a.model.load()?;
    let model = &loaded.model;
    let base = a
        .input
        .read(
            loaded.tokenizer.as_ref(),
            model.config().vocab_size,
            &loaded.name,
            None,
        )?
        .ids;
    let input = match &a.input {
        Input::Text(p) => format!("Text `{}`", p.display()),
        Input::TokenIds(p) => format!("Token ids `{}`", p.display()),
    };
    if base.len() < 2 {
        bail!("the input has fewer than 2 tokens");
    }
    let mut report = String::new();
    let cfg = model.config();
    writeln!(report, "# alibi-explorer benchmark\n")?;
    writeln!(
        report,
        "Model `{}` ({}, {}, {}, d_model {}, vocab {}), {} on {}, {} CPU threads. {input}.\n",
        loaded.name,
        cfg.position,
        crate::text::count(cfg.n_layers, "layer"),
        crate::text::count(cfg.n_heads, "head"),
        cfg.d_model,
        cfg.vocab_size,
        dtype_name(model.dtype()),
        device_name(model.device()),
        candle_core::utils::get_num_threads(),
    )?;
    // 1. Forward throughput by length (one window, batch 1).
    if !a.only_stats {
        forward_section(model, &base, a, &mut report)?;
    }
    // 2. Sweep vs non-overlapping windows for every length.
    let sweep = if a.sweep_max > 0 && !a.only_stats {
        Some(sweep_section(model, &base, a, &mut report)?)
    } else {
        None
    };
    // 3. Attention statistics of every head vs a plain forward.
    if a.stats_length > 0 {
        stats_section(model, &base, a.stats_length, a.repeats, &mut report)?;
    }
    // 4. The copy curve `reach` draws.
    if a.copy_samples > 0 && !a.only_stats {
        copy_section(model, &base, a.copy_samples, &mut report)?;
    }
    // 5. Peak memory of a long input, in a fresh process so earlier work does not count.
    if a.long_length > 0 && !a.only_stats {
        let ids_file = std::env::temp_dir().join(format!("alibi-bench-{}.txt", std::process::id()));
        let long = stream_of(&base, a.long_length);
        std::fs::write(
            &ids_file,
            long.ids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        )?;
        let exe = std::env::current_exe()?;
        let t = Instant::now();
        let out = std::process::Command::new(exe)
            .args(["eval", "--model"])
            .arg(&a.model.path)
            .args([
                "--device",
                &device_name(model.device()),
                "--dtype",
                dtype_name(model.dtype()),
                "--token-ids",
            ])
            .arg(&ids_file)
            .args(["--lengths", &a.long_length.to_string(), "--report-peak-rss"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(wait_unless_stopped);
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&ids_file);
        let out = out?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let rss = stderr
            .lines()
            .find_map(|l| l.strip_prefix("peak_rss_mib: "))
            .map(str::to_string);
        if !out.status.success() {
            bail!("the long-input run failed: {}", stderr.trim());
        }
        writeln!(
            report,
            "## Long input\n\nOne window of {} tokens (`eval --lengths {}` in a fresh process, on {}): {secs:.1} s, **peak RSS {} MiB** (host memory; attention is computed in query blocks, so memory grows linearly with length).\n",
            a.long_length,
            a.long_length,
            device_name(model.device()),
            rss.unwrap_or_else(|| "unknown".to_string())
        )?;
    }
    // 6. TUI frame draw time.
    let info = ModelInfo {
        name: loaded.name.clone(),
        arch: cfg.arch.name().to_string(),
        position: cfg.position,
        train_len: cfg.train_len,
        n_layers: cfg.n_layers,
        n_heads: cfg.n_heads,
        device: device_name(model.device()),
        device_note: String::new(),
        dtype: dtype_name(model.dtype()).to_string(),
        slopes: Some(cfg.default_slopes()),
    };
    if let Some(sweep) = &sweep {
        let frame_ms = frame_time(info, &base, sweep, a.sweep_max)?;
        writeln!(
            report,
            "## TUI frame\n\nDrawing one full frame at 200x60 (all panels, attention map of {} tokens, {} curves): **{frame_ms:.2} ms** (median of 50).\n",
            a.sweep_max.min(crate::tui::app::MAX_ATTENTION_LEN),
            2
        )?;
    }
    finish(a, &report)
}

/// Waits for `child`, polling every 50 ms; a stop request ([`crate::files::stop`]) ends it
/// (SIGKILL: it writes nothing) and is returned as an error, so the benchmark stops too.
fn wait_unless_stopped(mut child: std::process::Child) -> std::io::Result<std::process::Output> {
    loop {
        if crate::files::stop::should_stop() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "stopped by a signal",
            ));
        }
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes the report to `--out` (if given) and standard output.
fn finish(a: &BenchSettings, report: &str) -> Result<()> {
    if let Some(p) = &a.out {
        write_report(p, report)?;
        eprintln!("wrote {}", p.display());
    }
    std::io::Write::write_all(&mut std::io::stdout(), report.as_bytes())?;
    Ok(())
}

/// The sweep-vs-nonoverlap section; returns the sweep (the TUI frame section draws its curve).
fn sweep_section(
    model: &crate::model::transformer::Transformer,
    base: &[u32],
    a: &BenchSettings,
    report: &mut String,
) -> Result<crate::eval::Evaluation> {
    let lengths: Vec<usize> = std::iter::successors(Some(a.sweep_min), |l| Some(l * 2))
        .take_while(|&l| l <= a.sweep_max)
        .collect();
    let s = stream_of(base, (base.len() - 1).max(a.sweep_max * a.sweep_windows));
    let t = Instant::now();
    let non = evaluate(
        model,
        &s,
        &lengths,
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )?;
    let t_non = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sweep = evaluate(
        model,
        &s,
        &lengths,
        Protocol::Sweep,
        None,
        &Control::default(),
    )?;
    let t_sweep = t.elapsed().as_secs_f64();
    writeln!(
        report,
        "\n## One-pass sweep vs non-overlapping windows\n\nLengths {}..{} (doubling) over {} tokens.\n\n| protocol | seconds | tokens scored at the largest length |\n|---|---:|---:|\n| nonoverlap (every length separately) | {t_non:.2} | {} |\n| sweep (one pass at the largest length) | {t_sweep:.2} | {} |\n\n**Sweep is {:.1}x faster** and yields every length up to the largest, plus the loss by position.\n",
        a.sweep_min,
        a.sweep_max,
        s.ids.len(),
        non.points.last().map_or(0, |p| p.tokens),
        sweep.points.last().map_or(0, |p| p.tokens),
        t_non / t_sweep.max(1e-9)
    )?;
    eprintln!("sweep {t_sweep:.2}s vs nonoverlap {t_non:.2}s");
    Ok(sweep)
}

fn frame_time(
    info: ModelInfo,
    ids: &[u32],
    sweep: &crate::eval::Evaluation,
    lmax: usize,
) -> Result<f64> {
    use ratatui::{Terminal, backend::TestBackend};
    let s = stream_of(ids, lmax * 2);
    let text = vec!["tok".to_string(); s.ids.len()];
    let mut app = App::new(
        info,
        vec!["compare".to_string()],
        vec![s.clone(), s],
        text,
        lmax,
        "slopes.json".into(),
    );
    for curve in 0..2 {
        for w in 0..2 {
            let nll: Vec<f32> = sweep
                .position_nll
                .iter()
                .map(|&x| x as f32)
                .chain(std::iter::repeat(4.0))
                .take(lmax)
                .collect();
            app.on_worker(crate::tui::worker::WorkerMsg::Window {
                generation: 0,
                curve,
                start: w * lmax,
                nll,
                done: w + 1,
                total: 2,
                refine: false,
            });
        }
    }
    app.update(crate::tui::keymap::Action::LengthEnd(true));
    let n = app.attention_len();
    let probs: Vec<f32> = (0..n * n)
        .map(|i| {
            if i % n <= i / n {
                1.0 / (i / n + 1) as f32
            } else {
                0.0
            }
        })
        .collect();
    let generation = app.attn_gen;
    app.on_worker(crate::tui::worker::WorkerMsg::Attention {
        generation,
        map: crate::tui::worker::AttentionMap {
            len: n,
            layer: 0,
            head: 0,
            probs,
        },
    });
    let mut term = Terminal::new(TestBackend::new(200, 60))?;
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        term.draw(|f| f.render_widget(&app, f.area()))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn write_report(path: &Path, report: &str) -> Result<()> {
    crate::files::write_bytes(path, report.as_bytes()).map_err(|e| eyre!(e))
}

/// Plain forward vs forward with the statistics of every head, one window of `len` tokens (batch
/// 1): the two are interleaved `repeats` times (medians), then run once each after a peak-RSS reset.
fn stats_section(
    model: &Transformer,
    base: &[u32],
    len: usize,
    repeats: usize,
    report: &mut String,
) -> Result<()> {
    let s = stream_of(base, len);
    let dev = model.device();
    let x = Tensor::from_vec(s.ids[..len].to_vec(), (1, len), dev)?;
    let y = Tensor::from_vec(s.ids[1..=len].to_vec(), (1, len), dev)?;
    let once = |stats: bool| -> Result<f64> {
        let opts = ForwardOptions {
            stats,
            ..Default::default()
        };
        let t = Instant::now();
        let out = model.forward_hidden(&x, &opts)?;
        model.nll(&out.hidden, &y)?.to_vec2::<f32>()?;
        Ok(t.elapsed().as_secs_f64())
    };
    once(false)?;
    once(true)?;
    let (mut plain, mut with) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        plain.push(once(false)?);
        with.push(once(true)?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (t_plain, t_with) = (median(&mut plain), median(&mut with));
    let rss = |stats: bool| -> Result<String> {
        let reset = reset_peak_rss();
        once(stats)?;
        Ok(match (reset, peak_rss_mib()) {
            (true, Some(mib)) => format!("{mib:.0}"),
            _ => "unknown".to_string(),
        })
    };
    let (rss_plain, rss_with) = (rss(false)?, rss(true)?);
    let cfg = model.config();
    writeln!(
        report,
        "## Attention statistics\n\nOne window of {len} tokens (forward + loss), statistics of all {} heads ({} layers x {}) accumulated inside blocked attention; median of {} interleaved runs. Peak RSS of one run each (process high-water mark reset before it).\n\n| forward | seconds | peak RSS MiB |\n|---|---:|---:|\n| plain | {t_plain:.3} | {rss_plain} |\n| with statistics | {t_with:.3} | {rss_with} |\n\n**Statistics cost {:.2}x a plain forward.**\n",
        cfg.n_layers * cfg.n_heads,
        cfg.n_layers,
        cfg.n_heads,
        repeats.max(1),
        t_with / t_plain.max(1e-9)
    )?;
    eprintln!(
        "stats {len}: {t_with:.3}s vs plain {t_plain:.3}s ({:.2}x)",
        t_with / t_plain.max(1e-9)
    );
    Ok(())
}

/// Forward throughput by length.
fn forward_section(
    model: &Transformer,
    base: &[u32],
    a: &BenchSettings,
    report: &mut String,
) -> Result<()> {
    writeln!(
        report,
        "## Forward throughput (one window per forward pass)\n\n| length | seconds | tokens/s |\n|---:|---:|---:|"
    )?;
    let mut len = a.min_length;
    while len <= a.max_length {
        let s = stream_of(base, len);
        let ctl = Control {
            batch: Some(1),
            ..Default::default()
        };
        // Warm-up once, then time the median of `repeats`.
        window_losses(model, &s, &[0], len, None, &ctl, |_, _| {})?;
        let mut times = Vec::new();
        for _ in 0..a.repeats {
            let t = Instant::now();
            window_losses(model, &s, &[0], len, None, &ctl, |_, _| {})?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let t = times[times.len() / 2];
        writeln!(report, "| {len} | {t:.3} | {:.0} |", len as f64 / t)?;
        eprintln!("forward {len}: {:.0} tokens/s", len as f64 / t);
        len *= 2;
    }
    Ok(())
}

/// Times `reach`'s copy curve: the copy test at doubling distances from the default span to
/// 16 x train_len (`eval::reach`'s defaults), `samples` spans of the input a distance (no
/// per-head scores), and reports each distance's time and gain, the first point's and the whole
/// curve's.
fn copy_section(
    model: &Transformer,
    base: &[u32],
    samples: usize,
    report: &mut String,
) -> Result<()> {
    use crate::eval::reach::{
        CopyOptions, CopySpec, DEFAULT_REACH_FACTOR, DEFAULT_SPAN as COPY_SPAN, SpanKind,
        copy_cases, copy_test,
    };
    let longest = (DEFAULT_REACH_FACTOR * model.config().train_len).max(COPY_SPAN);
    // The same doubling range `reach --distances` reads.
    let distances = crate::eval::parse_lengths(&format!("{COPY_SPAN}..{longest}"))
        .map_err(|e| eyre!("copy curve: {e}"))?;
    let mut rows = String::new();
    let (mut total, mut first) = (0.0, None);
    for &d in &distances {
        let spec = CopySpec {
            span: COPY_SPAN,
            gap: d - COPY_SPAN,
            samples,
            seed: 1,
            kind: SpanKind::Text,
        };
        let t = Instant::now();
        let cases =
            copy_cases(base, &spec).map_err(|e| eyre!("copy curve at distance {d}: {e}"))?;
        let r = copy_test(model, None, &cases, &CopyOptions::default())
            .map_err(|e| eyre!("copy curve at distance {d}: {e}"))?;
        let secs = t.elapsed().as_secs_f64();
        total += secs;
        first.get_or_insert(secs);
        writeln!(
            rows,
            "| {d} | {secs:.2} | {:.3} ± {:.3} |",
            r.copy_gain.mean, r.copy_gain.stderr
        )?;
    }
    writeln!(
        report,
        "## Copy curve

`reach`'s copy test ({samples} spans of {COPY_SPAN} tokens a distance, no head scores) at {} distances to 16 x train_len ({longest}): **{total:.1} s** for the whole curve, {:.2} s for the first point.

| distance | seconds | copy gain (nats) |
|---:|---:|---:|
{rows}",
        distances.len(),
        first.unwrap_or(0.0)
    )?;
    Ok(())
}
