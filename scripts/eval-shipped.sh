#!/usr/bin/env bash
# Measures the shipped family (alibi, sinusoidal, rotary, none at train_len L; sinusoidal-2x at 2L; L is
# read from the ALiBi model's config.json) with `eval` (the paper's non-overlapping protocol) at 8..16L
# tokens on the first 131,073 tokens
# (MAX_TOKENS) of the book test split and of WikiText-2 test (a text of another kind none of them saw),
# and writes assets/results/: one JSON per model and text, the figure, and three Markdown tables:
#   table.md     perplexity ± s.e. by length on books/test (docs/findings.md, the README figure);
#   targets.md   context use ppl@8/ppl@L, ppl@16L/ppl@L, ppl@4L/ppl@L and valid loss, per model and text;
#   headline.md  the paper's headline: ALiBi trained at L evaluated at 2L against sinusoidal trained
#                at 2L, with each one's training tokens/s and peak memory measured side by side by
#                scripts/bench-headline.sh (its report, HEADLINE_BENCH, default bench/headline-train.md).
# Usage: scripts/eval-shipped.sh [path/to/alibi-explorer] [MODEL...]
# With MODELs, measures only those (e.g. the headline pair while the others still train); the
# figure and tables are written once the JSON of all five is there.
# Environment: ALIBI_DATA (../shared/data), ALIBI_MODELS (assets/models; assets/models/next measures a
# family kept but not yet promoted), OUT (assets/results), THREADS_PER_MODEL (1), MAX_TOKENS, HEADLINE_BENCH, and
# SKIP_EVAL=1 to redraw the figure and tables from the JSON already in OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/alibi-explorer}
data=${ALIBI_DATA:-../shared/data}
models=${ALIBI_MODELS:-assets/models}
out=${OUT:-assets/results}
max=${MAX_TOKENS:-131073}
mkdir -p "$out"
family=(alibi sinusoidal rotary none sinusoidal-2x)
bench=${HEADLINE_BENCH:-bench/headline-train.md}
[ -f "$bench" ] || { echo "no $bench: run scripts/bench-headline.sh first (the headline's speed and memory)" >&2; exit 1; }
[ -f "$models/alibi/config.json" ] || { echo "no $models/alibi/config.json (train it: scripts/train-shipped.sh)" >&2; exit 1; }
L=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["train_len"])' "$models/alibi/config.json")
grep -q "^headline: train_len=$L " "$bench" || { echo "$bench is not for train_len $L: run ALIBI_TRAIN_LEN=$L scripts/bench-headline.sh" >&2; exit 1; }
todo=("${@:2}")
[ ${#todo[@]} -gt 0 ] || todo=("${family[@]}")
[ "${SKIP_EVAL:-0}" = 1 ] && todo=()
for m in "${todo[@]+"${todo[@]}"}"; do
  [ -f "$models/$m/model.safetensors" ] || { echo "no model in $models/$m (train it: scripts/train-shipped.sh)" >&2; exit 1; }
done
# One model at a time, both texts side by side (two cores).
for m in "${todo[@]+"${todo[@]}"}"; do
  pids=()
  for text in books wikitext; do
    src="$data/books/test"; [ "$text" = wikitext ] && src="$data/wikitext-2/test.txt"
    suffix=""; [ "$text" = wikitext ] && suffix="-wikitext"
    RAYON_NUM_THREADS=${THREADS_PER_MODEL:-1} "$bin" eval --model "$models/$m" --text "$src" \
      --lengths "8..$((16 * L))" --protocol nonoverlap --max-tokens "$max" --device cpu \
      --json "$out/$m$suffix.json" > "$out/$m$suffix.txt" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
done
for m in "${family[@]}"; do
  for suffix in "" -wikitext; do
    [ -f "$out/$m$suffix.json" ] || { echo "measured ${todo[*]-nothing}; no $out/$m$suffix.json yet, so no figure or tables" >&2; exit 0; }
  done
done
inputs=(--input "$out/alibi.json" --input "$out/sinusoidal.json" --input "$out/rotary.json" --input "$out/none.json"
  --label ALiBi --label Sinusoidal --label Rotary --label "No position")
for ext in svg png; do
  "$bin" plot "${inputs[@]}" --title "Shipped models on books/test (nonoverlap; trained at $L tokens)" \
    --out "$out/perplexity-vs-length.$ext"
done
python3 - "$out" "$models" "$bench" "$L" <<'PY'
import json, re, sys
out, models, bench, T = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
names = [("alibi", "ALiBi"), ("sinusoidal", "Sinusoidal"), ("rotary", "Rotary"), ("none", "No position"),
         ("sinusoidal-2x", "Sinusoidal at 2L")]
texts = (("", "books/test"), ("-wikitext", "WikiText-2 test"))
runs = {(k, s): json.load(open(f"{out}/{k}{s}.json")) for k, _ in names for s, _ in texts}
load = lambda k, s="": runs[(k, s)]
point = lambda run, n: next(p for p in run["points"] if p["length"] == n)

# table.md: the four twins at 64..16L on books/test (the figure's numbers).
four = names[:4]
lengths = [p["length"] for p in load("alibi")["points"] if p["length"] >= 64]
rows = ["| length | x train_len | " + " | ".join(n for _, n in four) + " |", "|---:|---:|" + "---:|" * len(four)]
for L in lengths:
    cells = [f"{point(load(k), L)['ppl']:.2f} ± {point(load(k), L)['ppl_stderr']:.2f}" for k, _ in four]
    rows.append(f"| {L} | {L / T:g} | " + " | ".join(cells) + " |")
toks = load("alibi")["stream_tokens"]
rows += ["", f"Token perplexity ± standard error on the first {toks:,} tokens of books/test (nonoverlap: every length scores the same predictions, minus the tail that does not fill a window).",
         f"Bits per byte at the training length ({T}): " + " · ".join(f"{n} {point(load(k), T)['bits_per_byte']:.3f}" for k, n in four) + "."]
open(f"{out}/table.md", "w").write("\n".join(rows) + "\n")

# targets.md: what issue #20 asked of the family, on both texts.
def training(k):
    md = open(f"{models}/{k}/TRAINING.md").read()
    row = re.search(r"\| \d+ \| \d+ \| \d+ \| [\d.]+ min \| [\d.]+ \| ([\d.]+) \|", md)
    return {"valid_loss": float(row[1])}
tr = {k: training(k) for k, _ in names}
rows = ["| model | text | train_len L | valid loss (ppl) | ppl@8 | ppl@L | ppl@2L | ppl@4L | ppl@16L | context use ppl@8/ppl@L | ppl@4L/ppl@L | ppl@16L/ppl@L |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for suffix, text in texts:
    for k, n in names:
        run = load(k, suffix)
        L = run["train_len"]
        have = {p["length"]: p["ppl"] for p in run["points"]}
        g = lambda n_: f"{have[n_]:.1f}" if n_ in have else "–"
        r = lambda n_: f"{have[n_] / have[L]:.2f}" if n_ in have else "–"
        vl = tr[k]["valid_loss"]
        rows.append(f"| {n} | {text} | {L} | {vl:.3f} ({2.718281828 ** vl:.1f}) | {g(8)} | {g(L)} | {g(2 * L)} | {g(4 * L)} | {g(16 * L)} | {have[8] / have[L]:.2f} | {r(4 * L)} | {r(16 * L)} |")
rows += ["", f"Token perplexity, nonoverlap, on the first {toks:,} tokens of each text; valid loss is the training run's final validation loss (nats). `–`: past {16 * T:,} tokens, not measured."]
# The family's targets (issue #20), each with its measured value on books/test and whether it is met.
import math, os
bk = {k: {p["length"]: p["ppl"] for p in load(k)["points"]} for k, _ in names}
mb = {k: os.path.getsize(f"{models}/{k}/model.safetensors") / 1e6 for k, _ in names}
checks = [
    ("ALiBi valid perplexity at train_len", "≤ 55", math.exp(tr["alibi"]["valid_loss"]), lambda v: v <= 55, "{:.1f}"),
    ("ALiBi context use ppl@8 / ppl@L", "≥ 1.6", bk["alibi"][8] / bk["alibi"][T], lambda v: v >= 1.6, "{:.3f}"),
    ("ALiBi ppl@16L / ppl@L", "≤ 1.0", bk["alibi"][16 * T] / bk["alibi"][T], lambda v: v <= 1.0, "{:.3f}"),
    ("Sinusoidal ppl@4L / ppl@L", "≥ 3", bk["sinusoidal"][4 * T] / bk["sinusoidal"][T], lambda v: v >= 3, "{:.2f}"),
    ("Largest model file (MB)", "≤ 12", max(mb.values()), lambda v: v <= 12, "{:.1f}"),
]
rows += ["", "| target (books/test) | asked | measured | met |", "|---|---:|---:|---|"]
for name, asked, v, ok, fmt in checks:
    rows.append(f"| {name} | {asked} | {fmt.format(v)} | {'yes' if ok(v) else '**no**'} |")
open(f"{out}/targets.md", "w").write("\n".join(rows) + "\n")

# headline.md: ALiBi@L at 2L against sinusoidal@2L at 2L; speed and memory from the side-by-side bench.
hb = dict(kv.split("=") for kv in re.search(r"^headline: (.*)$", open(bench).read(), re.M)[1].split())
cost = {"alibi": (hb["alibi_tps"], hb["alibi_rss"]), "sinusoidal-2x": (hb["sinusoidal_tps"], hb["sinusoidal_rss"])}
rows = ["| model | trained at | evaluated at | perplexity ± s.e. (books/test) | perplexity ± s.e. (WikiText-2) | training tokens/s | peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|"]
for k, n, L, E in (("alibi", "ALiBi", T, 2 * T), ("sinusoidal-2x", "Sinusoidal", 2 * T, 2 * T), ("alibi", "ALiBi", T, T), ("sinusoidal", "Sinusoidal", T, 2 * T)):
    b, w = point(load(k), E), point(load(k, "-wikitext"), E)
    tps, rss = cost.get(k, ("–", "–"))
    rows.append(f"| {n} | {L} | {E} | {b['ppl']:.2f} ± {b['ppl_stderr']:.2f} | {w['ppl']:.2f} ± {w['ppl_stderr']:.2f} | {tps} | {rss} |")
speed, mem = float(hb["speed_ratio"]), float(hb["memory_ratio"])
rows += ["", f"ALiBi at L trained {100 * (speed - 1):+.0f}% tokens/s and used {100 * (mem - 1):+.0f}% peak memory against sinusoidal at 2L, measured by `scripts/bench-headline.sh` ({bench}: both trainings side by side, one thread each, same machine, median of its rounds; peak memory is the whole training process's resident set). The paper: 11% faster, 11% less memory. `–`: not part of the cost comparison."]
open(f"{out}/headline.md", "w").write("\n".join(rows) + "\n")
for f in ("table", "targets", "headline"):
    print(open(f"{out}/{f}.md").read())
PY
