#!/usr/bin/env bash
# The GPU proof, run ON a machine with an NVIDIA GPU (made for an H100/H200), with the binaries that
# scripts/cuda-build-check.sh built beforehand on any Linux machine (no GPU needed there):
#
#   scripts/cuda-build-check.sh   # here: builds target/cuda/gpu-bundle/{alibi-explorer,gpu-tests} (+ .tar.xz, 17 MB)
#   (copy the repository and target/cuda/gpu-bundle.tar.xz to the GPU machine)
#   scripts/gpu-check.sh          # there: unpacks the bundle, writes everything under ${OUT:-bench/gpu}
#
# With this workplace's device tool: run(command="bash scripts/gpu-check.sh", carry=["target/cuda/gpu-bundle.tar.xz"],
# timeout_s=540); the tool sets OUT, and its files (at most 8) come back.
#
# The GPU machine needs the NVIDIA driver (CUDA 13.0 or newer, for the PTX built by nvcc 13.0) and the
# CUDA 13 libraries libcublas, libcublasLt, libcurand and libnvrtc: a CUDA toolkit in /usr/local/cuda,
# or PyTorch's nvidia-* wheels (found through python3's sys.path). No Rust and no network are needed.
# For the bloom-560m-shaped benchmark it also needs python3 with torch and transformers (skipped
# otherwise), which also gives the transformers reference numbers on the same GPU.
#
# What it runs: nvidia-smi; `inspect --device cuda`; the GPU tests (golden BLOOM/MPT fixtures on the
# GPU, CPU-vs-GPU perplexity of the default model in f32 and bf16); `bench` of the default model on
# the GPU in f32 and bf16 (forward 128..8192, sweep vs nonoverlap, one 16,384-token window); the
# default model's full sweep 8..2048 (16x its training length); forward tokens/s of a random
# bloom-560m-shaped model at 2048 and 8192 tokens, f32 and bf16, ours and transformers'.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/gpu}
bundle=${GPU_BUNDLE:-target/cuda/gpu-bundle}
bin=$bundle/alibi-explorer
mkdir -p "$out"
log=$out/gpu-check.log
exec > >(tee -a "$log") 2>&1
status=0
step() { printf '\n== %s\n' "$*"; }
run() { "$@" || { echo "FAILED ($?): $*"; status=1; }; }

if [ ! -x "$bin" ] && [ -f "$bundle.tar.xz" ]; then
  mkdir -p "$bundle" && tar -xJf "$bundle.tar.xz" -C "$bundle"
fi
[ -x "$bin" ] || { echo "$bin is missing: run scripts/cuda-build-check.sh first and copy $bundle(.tar.xz) here"; exit 2; }
libdirs=$(python3 - 2>/dev/null <<'EOF'
import glob, os, sys
dirs = {os.path.dirname(f) for p in sys.path if p for f in glob.glob(os.path.join(p, "nvidia", "*", "lib", "lib*.so*"))}
print(":".join(sorted(dirs)))
EOF
)
export LD_LIBRARY_PATH=${libdirs:+$libdirs:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CARGO_MANIFEST_DIR=$PWD

step "GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
ldd "$bin" | grep -E 'cuda|cublas|curand|nvrtc'
run "$bin" inspect --model assets/models/alibi --device cuda

step "GPU tests"
run env ALIBI_EXPLORER_REQUIRE_GPU=1 "$bundle/gpu-tests" --nocapture --test-threads 1

for dtype in f32 bf16; do
  step "bench, default model, $dtype"
  run "$bin" bench --model assets/models/alibi --device cuda --dtype "$dtype" --text assets/texts/default.txt \
    --max-length 8192 --long-length 16384 --out "$out/bench-default-$dtype.md"
done

step "sweep 8..2048 (16x train_len), default model"
run "$bin" eval --model assets/models/alibi --device cuda --text assets/texts/default.txt --lengths 8..2048 \
  --protocol sweep --json "$out/sweep-default.json"

step "bloom-560m shape"
if python3 -c 'import transformers, torch' 2>/dev/null; then
  tmp=$(mktemp -d)
  run python3 scripts/make_fixtures.py --shape bloom-560m --out "$tmp/bloom-560m"
  python3 -c 'import random; r=random.Random(0); print(" ".join(str(r.randrange(250880)) for _ in range(8193)))' >"$tmp/ids.txt"
  : >"$out/bloom560m.md"
  for dtype in f32 bf16; do
    run "$bin" bench --model "$tmp/bloom-560m" --device cuda --dtype "$dtype" --token-ids "$tmp/ids.txt" \
      --min-length 2048 --max-length 8192 --sweep-max 0 --long-length 0 --out "$tmp/ours-$dtype.md"
    cat "$tmp/ours-$dtype.md" >>"$out/bloom560m.md"
  done
  for dtype in float32 bfloat16; do
    run python3 scripts/make_fixtures.py --bench-transformers "$tmp/bloom-560m" --device cuda --dtype "$dtype" \
      --lengths 2048,8192 --repeats 3 --threads 8 | tee -a "$out/bloom560m-transformers.jsonl"
  done
  rm -rf "$tmp"
else
  echo "SKIPPED: python3 has no torch/transformers"
fi
step "done (status $status); results in $out"
exit $status
