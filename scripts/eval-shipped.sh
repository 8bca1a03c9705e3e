#!/usr/bin/env bash
# Measures the four shipped models on the book test split at 64..2048 tokens (the paper's
# non-overlapping protocol) on the first 131,073 test tokens (MAX_TOKENS; 64 windows of 2,048) and writes assets/results/: one JSON per model, the figure, and a
# Markdown table. Usage: scripts/eval-shipped.sh [path/to/alibi-explorer]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/alibi-explorer}
data=${ALIBI_DATA:-../shared/data}
out=assets/results
mkdir -p "$out"
pids=()
for pos in alibi sinusoidal rotary none; do
  RAYON_NUM_THREADS=${THREADS_PER_MODEL:-1} "$bin" eval --model "assets/models/$pos" --text "$data/books/test" \
    --lengths 64..2048 --protocol nonoverlap --max-tokens "${MAX_TOKENS:-131073}" --device cpu \
    --json "$out/$pos.json" > "$out/$pos.txt" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$bin" plot --input "$out/alibi.json" --input "$out/sinusoidal.json" --input "$out/rotary.json" --input "$out/none.json" \
  --label ALiBi --label Sinusoidal --label Rotary --label "No position" \
  --title "Shipped models on books/test (nonoverlap; trained at 128 tokens)" --out "$out/perplexity-vs-length.svg"
"$bin" plot --input "$out/alibi.json" --input "$out/sinusoidal.json" --input "$out/rotary.json" --input "$out/none.json" \
  --label ALiBi --label Sinusoidal --label Rotary --label "No position" \
  --title "Shipped models on books/test (nonoverlap; trained at 128 tokens)" --out "$out/perplexity-vs-length.png"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
names = [("alibi", "ALiBi"), ("sinusoidal", "Sinusoidal"), ("rotary", "Rotary"), ("none", "No position")]
runs = {k: json.load(open(f"{out}/{k}.json")) for k, _ in names}
lengths = [p["length"] for p in runs["alibi"]["points"]]
rows = ["| length | x train_len | " + " | ".join(n for _, n in names) + " |", "|---:|---:|" + "---:|" * len(names)]
for i, L in enumerate(lengths):
    cells = []
    for k, _ in names:
        p = runs[k]["points"][i]
        cells.append(f"{p['ppl']:.2f} ± {p['ppl_stderr']:.2f}")
    rows.append(f"| {L} | {L / 128:g} | " + " | ".join(cells) + " |")
toks = runs["alibi"]["stream_tokens"]
rows.append("")
rows.append(f"Token perplexity ± standard error on the first {toks:,} tokens of books/test (nonoverlap: every length scores the same {toks - 1:,} predictions, minus the tail that does not fill a window).")
bpb = " · ".join(f"{n} {runs[k]['points'][lengths.index(128)]['bits_per_byte']:.3f}" for k, n in names)
rows.append(f"Bits per byte at the training length (128): {bpb}.")
open(f"{out}/table.md", "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
