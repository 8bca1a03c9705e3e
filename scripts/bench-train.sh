#!/usr/bin/env bash
# Training speed and peak memory of `alibi-explorer train` (the fast CPU trainer, and the candle
# autograd path it replaced) next to PyTorch (scripts/train_torch.py), side by side in one run on
# one machine, same shapes, same steps, same batch, same token ids, f32. Writes a Markdown report.
#
# Usage: scripts/bench-train.sh [--out bench/train.md] [--steps 30] [--threads 2] [--pairs 2]
#                               [--no-candle]
# Environment: PY    python with torch (pip install -r scripts/requirements-train-bench.txt;
#                    default /work/.venv-torch/bin/python, else python3)
#              DATA  folder with train/ and valid/ .txt files (default /work/shared/data/books)
#
# How it measures. Each run is a fresh process under /usr/bin/time (whole-process wall time and
# peak RSS). tokens/s counts the steps after the first 10 (warm-up): for ours the loss log's
# tokens/s of its later 10-step windows (each measured before that step's validation), for
# PyTorch `--warm-steps 10` then the rest timed. Ours also validates once at the end and writes a
# checkpoint and the final weights (PyTorch does neither); both count in its wall time and RSS.
# The runs alternate (fast, PyTorch, then candle once, then --pairs - 1 more fast/PyTorch pairs) so a
# busy machine hurts both sides; the ratio column compares each fast run with the PyTorch run after it.
# A vocab-4,096 byte-level BPE tokenizer is trained on DATA/train first; PyTorch reads the token
# ids our first run cached (train-tokens.bin). Model FLOPs per token: 6*(linear and LM-head
# parameters) + 6*len*d_model*layers (causal attention), the same count for every trainer.
set -euo pipefail
cd "$(dirname "$0")/.."

out=bench/train.md
steps=30
threads=2
candle=1
pairs=2
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --no-candle) candle=0; shift ;;
    --pairs) pairs=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$steps" -le 10 ]; then echo "--steps must be more than 10 (10 warm-up steps)" >&2; exit 2; fi
DATA=${DATA:-/work/shared/data/books}
PY=${PY:-/work/.venv-torch/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -c 'import torch' 2>/dev/null || { echo "no torch in $PY (pip install -r scripts/requirements-train-bench.txt)" >&2; exit 1; }
export RAYON_NUM_THREADS=$threads
cargo build --release --quiet
cargo build --release --quiet --example train_step
BIN=target/release/alibi-explorer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$BIN" tokenizer train --data "$DATA/train" --vocab-size 4096 --out "$work/tok.json" >/dev/null
common=(--data "$DATA/train" --valid "$DATA/valid" --tokenizer "$work/tok.json" --position alibi
        --heads 8 --vocab-size 4096 --batch 16 --warmup 3 --valid-every 100000
        --checkpoint-every 100000)
# Tokenize once (cached ids are copied into every later run's folder).
"$BIN" train "${common[@]}" --d-model 64 --layers 1 --train-len 64 --steps 1 --out "$work/tokens" 2>/dev/null

rows=()
# run NAME D LAYERS LEN: one run, appends "name|tokens/s|wall s|peak MiB" to rows.
run() {
  local name=$1 d=$2 layers=$3 len=$4 dir="$work/run-$RANDOM"
  mkdir -p "$dir/out"
  # In the output folder, where `train` looks for its token cache.
  cp "$work/tokens/train-tokens.bin" "$work/tokens/train-manifest.json" "$dir/out/"
  local tps wall peak
  if [ "$name" = pytorch ]; then
    /usr/bin/time -f "%e %M" -o "$dir/time" "$PY" scripts/train_torch.py --tokens "$dir/out/train-tokens.bin" \
      --vocab-size 4096 --d-model "$d" --layers "$layers" --heads 8 --train-len "$len" --batch 16 \
      --steps $((steps - 10)) --warm-steps 10 --threads "$threads" > "$dir/out.json" 2>/dev/null
    tps=$("$PY" -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["tokens_per_s"]))' "$dir/out.json")
  else
    /usr/bin/time -f "%e %M" -o "$dir/time" "$BIN" train "${common[@]}" --trainer "$name" \
      --d-model "$d" --layers "$layers" --train-len "$len" --steps "$steps" --out "$dir/out" 2>/dev/null
    tps=$(awk -F, 'NR > 1 && $1 > 10 { s += $6; n++ } END { printf "%d", s / n }' "$dir/out/loss.csv")
  fi
  read -r wall peak < "$dir/time"
  rows+=("$name|$tps|$wall|$((peak / 1024))")
  echo "  $name: $tps tokens/s, $wall s, $((peak / 1024)) MiB" >&2
  rm -rf "$dir"
}
# flops_per_token D LAYERS LEN: model FLOPs per trained token (see the header).
flops_per_token() {
  awk -v d="$1" -v l="$2" -v t="$3" 'BEGIN { printf "%.0f", 6 * (l * (4 * d * d + 8 * d * d) + 4096 * d) + 6 * t * d * l }'
}

ceiling=$(target/release/examples/train_step gemm | awk '{ print $3 }' | sort -n | tail -1)
{
  echo "# Training speed and memory: alibi-explorer next to PyTorch"
  echo
  echo "Measured by \`scripts/bench-train.sh --steps $steps --threads $threads\` on $(date -u +%Y-%m-%d):"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $threads threads,"
  echo "$("$PY" -c 'import torch; print("PyTorch", torch.__version__)'). ALiBi, 8 heads, d_ff 4 x d_model,"
  echo "vocab 4,096, batch 16, AdamW, clip 1, f32. A 2048^3 product through \`gemm\` here: $ceiling GFLOP/s."
  echo
  echo "| shape | trainer | tokens/s | x PyTorch (next run) | model GFLOP/s | wall s | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|"
} > "$out.tmp"
for shape in "256 6 256" "128 4 128"; do
  read -r d layers len <<< "$shape"
  echo "d_model $d, $layers layers, train_len $len" >&2
  rows=()
  run fast "$d" "$layers" "$len"
  run pytorch "$d" "$layers" "$len"
  [ "$candle" = 1 ] && run candle "$d" "$layers" "$len"
  for _ in $(seq 2 "$pairs"); do
    run fast "$d" "$layers" "$len"
    run pytorch "$d" "$layers" "$len"
  done
  fpt=$(flops_per_token "$d" "$layers" "$len")
  for i in "${!rows[@]}"; do
    IFS='|' read -r name tps wall peak <<< "${rows[$i]}"
    ratio=""
    if [ "$name" = fast ] && [ $((i + 1)) -lt ${#rows[@]} ]; then
      IFS='|' read -r _ next _ _ <<< "${rows[$((i + 1))]}"
      ratio=$(awk -v a="$tps" -v b="$next" 'BEGIN { printf "%.2fx", a / b }')
    fi
    label=$name; [ "$name" = fast ] && label="alibi-explorer (fast)"; [ "$name" = candle ] && label="alibi-explorer (candle autograd)"
    gf=$(awk -v t="$tps" -v f="$fpt" 'BEGIN { printf "%.0f", t * f / 1e9 }')
    echo "| d$d x $layers, len $len | $label | $tps | $ratio | $gf | $wall | $peak |" >> "$out.tmp"
  done
done
mv "$out.tmp" "$out"
echo "wrote $out" >&2
