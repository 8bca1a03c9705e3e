#!/usr/bin/env bash
# "Why does it extrapolate?": the measurements behind the section of that name in docs/findings.md,
# on the four shipped twins (train_len L, read from the ALiBi model's config.json) and the book test split. Writes small JSON/CSV/figures to
# assets/results/why/. Usage: scripts/why-extrapolates.sh [path/to/alibi-explorer] [eval|loss|stats|tables|all]
#
#  eval:  nonoverlap, sweep and sliding (stride $STRIDE) at L..16L on the first $EVAL_TOKENS
#         tokens (sliding costs about (tokens / stride) x length per length: 8,193 tokens keep it to
#         minutes on two cores; every protocol scores the same 8,192 predictions).
#  loss:  the loss by position in 16L-token windows on the first $LOSS_TOKENS tokens (sweep).
#  stats: attention statistics at L..16L on the first $STATS_TOKENS tokens, figures, and one
#         attention heatmap at 2L per twin.
# Environment: ALIBI_DATA (../shared/data), ALIBI_MODELS (assets/models), OUT (assets/results/why),
# WHY_MODELS (default "alibi sinusoidal rotary none": measure only those, e.g. the twins already trained
# while the last one trains; the figures are drawn once the stats of all four are in OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/alibi-explorer}
what=${2:-all}
data=${ALIBI_DATA:-../shared/data}
text="$data/books/test"
out=${OUT:-assets/results/why}
models_dir=${ALIBI_MODELS:-assets/models}
EVAL_TOKENS=${EVAL_TOKENS:-8193}
STATS_TOKENS=${STATS_TOKENS:-32769}
STRIDE=${STRIDE:-64}
LOSS_TOKENS=${LOSS_TOKENS:-131073}
mkdir -p "$out"
twins=(alibi sinusoidal rotary none)
read -r -a models <<< "${WHY_MODELS:-${twins[*]}}"
for m in "${models[@]}"; do
  case " ${twins[*]} " in *" $m "*) ;; *) echo "WHY_MODELS: unknown model '$m' (${twins[*]})" >&2; exit 2 ;; esac
done
[ -f "$models_dir/alibi/config.json" ] || { echo "no $models_dir/alibi/config.json (ALIBI_MODELS)" >&2; exit 1; }
L=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["train_len"])' "$models_dir/alibi/config.json")
long=$((16 * L))

if [[ $what == eval || $what == all ]]; then
  for pos in "${models[@]}"; do
    common=(--model "$models_dir/$pos" --text "$text" --max-tokens "$EVAL_TOKENS" --device cpu --lengths "$L..$long")
    "$bin" eval "${common[@]}" --protocol nonoverlap --json "$out/eval-nonoverlap-$pos.json" > "$out/eval-nonoverlap-$pos.txt"
    "$bin" eval "${common[@]}" --protocol sweep --json "$out/eval-sweep-$pos.json" > "$out/eval-sweep-$pos.txt"
    "$bin" eval "${common[@]}" --protocol sliding --stride "$STRIDE" --json "$out/eval-sliding$STRIDE-$pos.json" > "$out/eval-sliding$STRIDE-$pos.txt"
  done
fi

if [[ $what == eval || $what == loss || $what == all ]]; then
  # Loss by position: windows of 16L tokens (the first $LOSS_TOKENS tokens), one pass each.
  for pos in "${models[@]}"; do
    "$bin" eval --model "$models_dir/$pos" --text "$text" --max-tokens "$LOSS_TOKENS" --device cpu \
      --lengths "$long" --protocol sweep --json "$out/eval-sweep$long-$pos.json" > "$out/eval-sweep$long-$pos.txt"
  done
fi

if [[ $what == stats || $what == all ]]; then
  for pos in "${models[@]}"; do
    "$bin" stats --model "$models_dir/$pos" --text "$text" --max-tokens "$STATS_TOKENS" --device cpu \
      --lengths "$L..$long" --json "$out/stats-$pos.json" --csv "$out/stats-$pos.csv" \
      --plot "$out/stats-$pos.png" > "$out/stats-$pos.txt"
    "$bin" attention --model "$models_dir/$pos" --text "$text" --length $((2 * L)) --layer 3 --head 0 \
      --device cpu --png "$out/attention-$pos-l3h0.png" > "$out/attention-$pos-l3h0.txt"
  done
  # The figures of docs/findings.md, drawn from the reports with the library's figure writers.
  have_all=1
  for m in "${twins[@]}"; do [ -f "$out/stats-$m.json" ] || have_all=0; done
  if [ $have_all = 1 ]; then
    cargo run --release --quiet --example why_figures -- "$out"
  else
    echo "no figures yet: not every twin has $out/stats-*.json"
  fi
fi

if [[ $what == tables || $what == all ]]; then
  STRIDE=$STRIDE python3 - "$out" "$L" > "$out/tables.md" <<'PY'
import json, os, sys, statistics as st
out, T = sys.argv[1], int(sys.argv[2]); stride = os.environ["STRIDE"]
names = [("alibi", "ALiBi"), ("sinusoidal", "Sinusoidal"), ("rotary", "Rotary"), ("none", "No position")]
load = lambda f: json.load(open(f"{out}/{f}.json"))
print(f"### Perplexity: non-overlapping vs sliding windows (stride {stride})\n")
print("| length | " + " | ".join(f"{n} nonoverlap | {n} sliding" for _, n in names) + " |")
print("|---:|" + "---:|---:|" * len(names))
ev = {k: (load(f"eval-nonoverlap-{k}"), load(f"eval-sliding{stride}-{k}")) for k, _ in names}
for i, p in enumerate(ev["alibi"][0]["points"]):
    cells = [f"{ev[k][0]['points'][i]['ppl']:.2f} | {ev[k][1]['points'][i]['ppl']:.2f}" for k, _ in names]
    print(f"| {p['length']} | " + " | ".join(cells) + " |")
se = max(p["ppl_stderr"] / p["ppl"] for k, _ in names for p in ev[k][0]["points"])
print(f"\nToken perplexity on the first {ev['alibi'][0]['stream_tokens']:,} tokens of books/test; every cell scores the same "
      f"{ev['alibi'][0]['points'][0]['tokens']:,} predictions (standard errors up to {se:.1%} of the value, but every cell scores the same tokens, so differences within a column are much more precise).\n")
stats = {k: load(f"stats-{k}") for k, _ in names}
def pt(h, L): return next(p for p in h["points"] if p["length"] == L)
lo, hi = stats["alibi"]["lengths"][0], stats["alibi"]["lengths"][-1]
print(f"### Attention statistics at L = {lo} and {hi}, over all heads\n")
print(f"| model | mean distance, median (max) @{lo} | @{hi} | mass90, median (max) @{lo} | @{hi} | sink mass, mean @{lo} | @{hi} |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k, n in names:
    hs = stats[k]["heads"]
    def agg(key, L, f="med"):
        v = [pt(h, L)[key] for h in hs]
        return f"{st.median(v):.1f} ({max(v):.1f})" if f == "med" else f"{st.mean(v):.3f}"
    print(f"| {n} | {agg('mean_distance', lo)} | {agg('mean_distance', hi)} | {agg('mass90_distance', lo)} | {agg('mass90_distance', hi)} | {agg('sink_mass', lo, 'mean')} | {agg('sink_mass', hi, 'mean')} |")
a = stats["alibi"]
print(f"\n### ALiBi, every head: measured vs the prior (bias alone)\n")
print(f"| layer | head | slope | mean dist @{lo} (prior) | mean dist @{hi} (prior) | mass90 @{hi} (prior) | sink @{hi} |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for h in a["heads"]:
    p0, p1 = pt(h, lo), pt(h, hi)
    print(f"| {h['layer']} | {h['head']} | {h['slope']:.4f} | {p0['mean_distance']:.1f} ({p0['prior']['mean_distance']:.1f}) | "
          f"{p1['mean_distance']:.1f} ({p1['prior']['mean_distance']:.1f}) | {p1['mass90_distance']:.0f} ({p1['prior']['mass90_distance']:.0f}) | {p1['sink_mass']:.3f} |")
rel = [abs(pt(h, hi)["mean_distance"] / pt(h, hi)["prior"]["mean_distance"] - 1) for h in a["heads"]]
print(f"\nMedian |measured / prior − 1| of the mean distance at {hi}: {st.median(rel):.1%} (max {max(rel):.1%}).\n")
sw = {k: load(f"eval-sweep{16 * T}-{k}") for k, _ in names}
L = len(sw["alibi"]["position_nll"]); windows = sw["alibi"]["points"][0]["tokens"] // L
edges = [(0, 16), (16, 64), (64, T)] + [(T * 2 ** i, T * 2 ** (i + 1)) for i in range(4)]
print(f"### Loss by position in {L}-token windows (nats per token; position p has p + 1 tokens of context)\n")
print("| model | " + " | ".join(f"{a}–{b - 1}" for a, b in edges) + f" | 64–{T - 1} → {8 * T}–{16 * T - 1} |")
print("|---|" + "---:|" * (len(edges) + 1))
for k, n in names:
    pn = sw[k]["position_nll"]
    m = [sum(pn[a:b]) / (b - a) for a, b in edges]
    print(f"| {n} | " + " | ".join(f"{x:.3f}" for x in m) + f" | {m[-1] - m[2]:+.3f} |")
print(f"\n{windows} windows of {L} tokens (the first {sw['alibi']['stream_tokens']:,} tokens of books/test, `eval --protocol sweep`); "
      f"each cell averages its positions over the same {windows} windows.")
PY
  echo "wrote $out/tables.md"
fi
