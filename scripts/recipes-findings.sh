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
models=${ALIBI_MODELS:-assets/models}
[ -f "$models/alibi/config.json" ] || { echo "no $models/alibi/config.json (ALIBI_MODELS)" >&2; exit 1; }
L=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["train_len"])' "$models/alibi/config.json")
mkdir -p "$out"
# The windowed recipes keep the training length's worth of keys: L, or 4 sink tokens + L - 4.
for r in none interp:2 interp:dynamic ntk "window:$L" "sinks:4+$((L - 4))"; do
  extra=()
  [ "$r" != none ] && extra=(--recipe "$r" --kl)
  "$bin" eval --model "$models/alibi" --text "$data/books/test" --max-tokens 131073 \
    --lengths "$L..$((16 * L))" --protocol nonoverlap "${extra[@]}" --json "$out/shipped-${r//[:+]/_}.json"
done
