#!/usr/bin/env bash
# The GPU proof, as one prepared script for a machine with an NVIDIA GPU (e.g. an H100/H200):
# builds with --features cuda for compute capability 9.0, runs the GPU tests and benchmarks, and
# writes everything under ${OUT:-bench/gpu}. Needs Rust, crates.io, and the CUDA toolkit's nvcc
# (the PyPI nvidia-cuda-nvcc-cu12 wheels ship ptxas and headers but not nvcc itself).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/gpu}
mkdir -p "$out"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
  [ -x "$d/nvcc" ] && PATH="$d:$PATH"
done
command -v nvcc >/dev/null 2>&1 || { echo "nvcc not found: install the CUDA toolkit (see README, GPU)" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
cargo build --release --features cuda 2>&1 | tail -3
cargo test --release --features cuda --test gpu -- --nocapture 2>&1 | tee "$out/gpu-tests.log"
bin=target/release/alibi-explorer
$bin inspect --model assets/models/alibi --device cuda | tee "$out/inspect.txt"
for dtype in f32 bf16; do
  $bin bench --model assets/models/alibi --device cuda --dtype "$dtype" --text assets/texts/default.txt \
    --max-length 8192 --long-length 16384 --out "$out/bench-default-$dtype.md"
done
$bin eval --model assets/models/alibi --device cuda --text assets/texts/default.txt --lengths 8..2048 \
  --protocol sweep --json "$out/sweep-default.json" | tee "$out/sweep-default.txt"
if python3 -c 'import transformers, torch' 2>/dev/null; then
  tmp=$(mktemp -d)
  python3 scripts/make_fixtures.py --shape bloom-560m --out "$tmp/bloom-560m"
  python3 -c 'import random; random.seed(0); print(" ".join(str(random.randrange(250880)) for _ in range(8193)))' > "$tmp/ids.txt"
  for dtype in f32 bf16; do
    for len in 2048 8192; do
      /usr/bin/time -v $bin eval --model "$tmp/bloom-560m" --device cuda --dtype "$dtype" --token-ids "$tmp/ids.txt" \
        --lengths "$len" --batch 1 2>&1 | tee "$out/bloom560m-$dtype-$len.txt"
    done
  done
fi
echo "results in $out"
