#!/usr/bin/env bash
# The long-context recipes on the shipped ALiBi model to 16 x train_len (docs/findings.md):
# books test split, first 131,073 tokens, nonoverlap, KL divergence against the plain model.
# Writes assets/results/recipes/shipped-RECIPE.json. About 10 minutes on 2 idle cores.
# Usage: scripts/recipes-findings.sh [path/to/alibi-explorer]   (ALIBI_DATA overrides ../shared/data,
# ALIBI_MODELS assets/models, OUT assets/results/recipes)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/alibi-explorer}
data=${ALIBI_DATA:-../shared/data}
out=${OUT:-assets/results/recipes}
mkdir -p "$out"
for r in none interp:2 interp:dynamic ntk window:128 sinks:4+124; do
  extra=()
  [ "$r" != none ] && extra=(--recipe "$r" --kl)
  "$bin" eval --model "${ALIBI_MODELS:-assets/models}/alibi" --text "$data/books/test" --max-tokens 131073 \
    --lengths 128..2048 --protocol nonoverlap "${extra[@]}" --json "$out/shipped-${r//[:+]/_}.json"
done
