#!/usr/bin/env bash
# Trains the four shipped models (assets/models/{alibi,sinusoidal,rotary,none}) with identical
# data, data order, size and steps; only the position scheme differs. Runs them side by side,
# one thread each, in the background; re-running the script resumes from the checkpoints.
# Usage: scripts/train-shipped.sh [path/to/alibi-explorer]   (default: target/release/alibi-explorer)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/alibi-explorer}
data=${ALIBI_DATA:-../shared/data}
for pos in alibi sinusoidal rotary none; do
  out=assets/models/$pos
  resume=()
  [ -d "$out/checkpoint" ] && resume=(--resume)
  mkdir -p "$out"
  RAYON_NUM_THREADS=1 nohup "$bin" train --data "$data/books/train" --valid "$data/books/valid" \
    --tokenizer assets/tokenizer/tokenizer.json --position "$pos" --train-len 128 \
    --d-model 128 --layers 4 --heads 8 --d-ff 512 \
    --steps 1500 --batch 16 --lr 0.0015 --warmup 100 --clip 1.0 --weight-decay 0.1 --seed 1234 \
    --valid-every 100 --checkpoint-every 50 --save-dtype f16 --out "$out" "${resume[@]}" \
    > "$out.train.log" 2>&1 &
  echo "started $pos (pid $!), log $out.train.log"
done
