//! The position-encoding family (issue 22, item 4) against hand-computed values: each formula at
//! a few distances, T5's causal buckets against the published formula worked out by hand,
//! rotary's bound at 0 and for a two-frequency head, and the priors (NoPE uniform, ALiBi's the
//! same as `alibi::prior`).

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi::family::{Family, Scheme, rotary_bound, t5_bucket};
use alibi_explorer::alibi::{prior_query, softmax};
use std::f64::consts::E;

fn near(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-12 * b.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn alibi_and_kerple_biases_by_hand() {
    let f = Family::default();
    near(f.value(Scheme::Alibi, 0), 0.0, "alibi d=0");
    near(f.value(Scheme::Alibi, 16), -1.0, "alibi m=1/16 d=16");
    // KERPLE log: -p ln(1 + a d). 0 at d = 0; with a = e - 1, p = 1, d = 1: -ln(e) = -1.
    let mut k = Family {
        kerple_log_p: 1.0,
        kerple_log_a: E - 1.0,
        ..Family::default()
    };
    near(k.value(Scheme::KerpleLog, 0), 0.0, "kerple log d=0");
    near(k.value(Scheme::KerpleLog, 1), -1.0, "kerple log d=e-1");
    k.kerple_log_p = 2.0;
    near(k.value(Scheme::KerpleLog, 1), -2.0, "kerple log p=2");
    k.kerple_log_a = 1.0;
    near(
        k.value(Scheme::KerpleLog, 3),
        -2.0 * 4f64.ln(),
        "kerple log d=3",
    );
    // KERPLE power: -a d^p. Default a = 1, p = 1/2: -sqrt(d).
    near(f.value(Scheme::KerplePower, 16), -4.0, "power sqrt");
    let p = Family {
        kerple_power_a: 0.5,
        kerple_power_p: 2.0,
        ..Family::default()
    };
    near(p.value(Scheme::KerplePower, 3), -4.5, "power p=2");
    // p = 1 is ALiBi with slope a.
    let lin = Family {
        kerple_power_a: 0.25,
        kerple_power_p: 1.0,
        alibi_slope: 0.25,
        ..Family::default()
    };
    for d in [0, 1, 7, 100] {
        near(
            lin.value(Scheme::KerplePower, d),
            lin.value(Scheme::Alibi, d),
            "power p=1 is alibi",
        );
    }
    near(f.value(Scheme::NoPe, 1000), 0.0, "nope");
    assert_eq!(
        f.bias(Scheme::T5, 3),
        None,
        "T5's bucket biases are learned"
    );
    assert_eq!(f.bias(Scheme::Rotary, 3), None, "rotary adds no bias");
}

#[test]
fn t5_buckets_are_exact_then_log_spaced_then_capped() {
    for d in 0..16 {
        assert_eq!(t5_bucket(d, 32, 128), d, "exact bucket for d = {d}");
    }
    for d in [128, 129, 1000, 1 << 20] {
        assert_eq!(t5_bucket(d, 32, 128), 31, "d = {d}");
    }
    // Worked by hand from 16 + floor(ln(d/16) / ln(128/16) * 16) = 16 + floor(16/3 log2(d/16)):
    // bucket 16 + k starts at d >= 16 * 2^(3k/16).
    for (d, want) in [
        (16, 16),
        (18, 16),
        (19, 17),
        (20, 17),
        (21, 18),
        (32, 21),
        (46, 24),
        (45, 23),
        (64, 26),
        (100, 30),
        (112, 30),
        (113, 31),
        (127, 31),
    ] {
        assert_eq!(t5_bucket(d, 32, 128), want, "d = {d}");
    }
    // The formula computed independently (log base 2 instead of natural logs).
    for d in 16..128usize {
        let k = (16.0 / 3.0 * (d as f64 / 16.0).log2()).floor() as usize;
        assert_eq!(t5_bucket(d, 32, 128), (16 + k).min(31), "d = {d}");
    }
    // Buckets never decrease with distance, and the default family uses 32 / 128.
    let f = Family::default();
    let b: Vec<f64> = (0..300).map(|d| f.value(Scheme::T5, d)).collect();
    assert!(b.windows(2).all(|w| w[0] <= w[1]));
    assert!(f.prior(Scheme::T5, 64).is_none());
}

#[test]
fn rotary_bound_by_hand() {
    // r = 0: |S_j| = j, so the bound is the mean of 1..D/2 = (D/2 + 1) / 2.
    for dim in [2, 4, 64, 128] {
        near(
            rotary_bound(0, dim, 10_000.0),
            f64::midpoint(dim as f64 / 2.0, 1.0),
            "r = 0",
        );
    }
    // D = 2: one frequency, |S_1| = 1 at every distance.
    near(rotary_bound(37, 2, 10_000.0), 1.0, "D = 2");
    // D = 4, base 10000: θ = 1 and 0.01; |S_2| = |e^{ir} + e^{0.01ir}| = 2|cos(0.495 r)|.
    for r in [1usize, 2, 10] {
        let want = f64::midpoint(1.0, 2.0 * (0.495 * r as f64).cos().abs());
        near(rotary_bound(r, 4, 10_000.0), want, "D = 4");
    }
    // It decays: far keys have a much smaller bound than near ones (RoFormer's Figure 2; with
    // D = 64 about 0.46 of the bound at 0 at r = 16, 0.23 at r = 256; not monotonically: it
    // rises again to about 0.32 at r = 4096, where the lowest frequencies come round).
    let f = Family::default();
    let at = |r| f.value(Scheme::Rotary, r) / f.value(Scheme::Rotary, 0);
    assert!((at(16) - 0.4636).abs() < 1e-3, "{}", at(16));
    assert!((at(256) - 0.2329).abs() < 1e-3, "{}", at(256));
    assert!(at(4096) > at(1024));
    assert!(f.prior(Scheme::Rotary, 64).is_none());
    near(f.shade(Scheme::Rotary, 0), 1.0, "shade at 0");
}

#[test]
fn priors_nope_uniform_alibi_as_alibi_prior() {
    let f = Family::default();
    let len = 300;
    let p = f.prior(Scheme::NoPe, len).unwrap();
    assert!(p.iter().all(|&x| (x - 1.0 / len as f64).abs() < 1e-15));
    near(
        f.prior_mean_distance(Scheme::NoPe, len).unwrap(),
        (len - 1) as f64 / 2.0,
        "uniform mean",
    );
    for m in [1.0 / 256.0, 1.0 / 16.0, 0.5] {
        let g = Family {
            alibi_slope: m,
            ..Family::default()
        };
        let i = len - 1;
        near(
            g.prior_mean_distance(Scheme::Alibi, len).unwrap(),
            prior_query(m, i).mean_distance,
            "alibi mean distance",
        );
        // The same row as softmax_j(-m (i - j)), read by distance.
        let row = softmax(&(0..=i).map(|j| -m * (i - j) as f64).collect::<Vec<_>>());
        let p = g.prior(Scheme::Alibi, len).unwrap();
        for d in [0, 1, 10, 299] {
            near(p[d], row[i - d], "alibi prior");
        }
    }
    // KERPLE log with p = 1, a = 1: p(d) ∝ 1/(1 + d).
    let p = f.prior(Scheme::KerpleLog, 10).unwrap();
    let h: f64 = (1..=10).map(|k| 1.0 / f64::from(k)).sum();
    near(p[0], 1.0 / h, "harmonic prior d = 0");
    near(p[9], 0.1 / h, "harmonic prior d = 9");
    // The profile of a prior holds its per-bin mean and sums back to 1 over the bins' widths.
    let prof = f.profile(Scheme::Alibi, 1024);
    assert_eq!(prof.len(), 11);
    let total: f64 = prof
        .iter()
        .enumerate()
        .map(|(b, v)| {
            v * if b == 0 {
                1.0
            } else {
                (1u64 << (b - 1)) as f64
            }
        })
        .sum();
    near(total, 1.0, "profile mass");
}

#[test]
fn bad_parameters_are_refused_with_the_option_name() {
    let bad = [
        (
            Family {
                kerple_power_p: 2.5,
                ..Family::default()
            },
            "--kerple-power-p",
        ),
        (
            Family {
                kerple_log_a: 0.0,
                ..Family::default()
            },
            "--kerple-log-a",
        ),
        (
            Family {
                t5_buckets: 31,
                ..Family::default()
            },
            "--t5-buckets",
        ),
        (
            Family {
                t5_max_distance: 16,
                ..Family::default()
            },
            "--t5-max-distance",
        ),
        (
            Family {
                rotary_dim: 63,
                ..Family::default()
            },
            "--rotary-dim",
        ),
        (
            Family {
                alibi_slope: f64::NAN,
                ..Family::default()
            },
            "--slope",
        ),
    ];
    for (f, what) in bad {
        let e = f.validate().unwrap_err();
        assert!(e.contains(what), "{e}");
    }
    Family::default().validate().unwrap();
}

fn bin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_alibi-explorer"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A bad-input run: exit 2, one line on stderr containing `needle`, nothing on stdout.
fn fails_with(o: &std::process::Output, needle: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {e}");
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn the_family_command_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("family.json");
    let o = bin(&[
        "family",
        "--length",
        "300",
        "--slope",
        "0.5",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    for s in Scheme::ALL {
        assert!(
            text.contains(s.title()) && text.contains(s.source()),
            "{text}"
        );
    }
    assert!(text.contains("m = 0.5") && text.contains("last query of 300 tokens"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["length"], 300);
    assert_eq!(v["distances"], serde_json::json!([1, 4, 16, 64, 256, 1024]));
    let schemes = v["schemes"].as_array().unwrap();
    assert_eq!(schemes.len(), Scheme::ALL.len());
    let alibi = &schemes[0];
    assert_eq!(alibi["name"], "alibi");
    assert_eq!(alibi["parameters"]["m"], 0.5);
    assert_eq!(alibi["values"][1], -2.0);
    let mean = alibi["prior_mean_distance"].as_f64().unwrap();
    near(mean, prior_query(0.5, 299).mean_distance, "json alibi mean");
    let t5 = schemes.iter().find(|s| s["name"] == "t5").unwrap();
    assert_eq!(
        t5["values"],
        serde_json::json!([1.0, 4.0, 16.0, 26.0, 31.0, 31.0])
    );
    assert!(t5["prior_mean_distance"].is_null() && t5["no_prior"].is_string());
    let nope = schemes.iter().find(|s| s["name"] == "nope").unwrap();
    near(
        nope["prior_mean_distance"].as_f64().unwrap(),
        149.5,
        "nope mean",
    );
    // --json /dev/stdout writes into the stream, after the table.
    let o = bin(&["family", "--json", "/dev/stdout"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"schemes\""));
}

#[test]
fn bad_family_input_is_a_one_line_error_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(&bin(&["family", "--kerple-power-p", "2.5"]), "at most 2");
    fails_with(&bin(&["family", "--kerple-log-a", "-1"]), "--kerple-log-a");
    fails_with(&bin(&["family", "--slope", "nan"]), "not a finite number");
    fails_with(&bin(&["family", "--t5-buckets", "7"]), "--t5-buckets");
    fails_with(
        &bin(&["family", "--t5-max-distance", "8"]),
        "--t5-max-distance",
    );
    fails_with(&bin(&["family", "--rotary-dim", "0"]), "--rotary-dim");
    fails_with(&bin(&["family", "--rotary-base", "1"]), "--rotary-base");
    fails_with(&bin(&["family", "--length", "0"]), "--length");
    fails_with(&bin(&["family", "--length", "x"]), "--length");
    let missing = dir.path().join("no/such/folder/f.json");
    fails_with(
        &bin(&["family", "--json", missing.to_str().unwrap()]),
        "does not exist",
    );
    fails_with(
        &bin(&["family", "--json", dir.path().to_str().unwrap()]),
        "--json",
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "leftovers"
    );
}
