#!/usr/bin/env bash
# Builds alibi-explorer with `--features cuda` on a machine with no GPU and no system CUDA install, and
# checks what can be checked there. Needs Rust, gcc, python3 with pip, and PyPI (nothing else):
#
#   1. nvcc from PyPI: the CUDA 13 wheels (nvidia-cuda-nvcc, -crt, -runtime, nvidia-nvvm, nvidia-cuda-cccl)
#      unpack into one toolkit-shaped folder (bin/nvcc, include/, nvvm/) in a virtualenv. The version is
#      pinned to 13.0 by default: the PTX that candle's kernels are compiled to must not be newer than the
#      driver that loads it (CUDA 13.0 = driver 580 or newer). The older -cu12 wheels have no nvcc binary.
#   2. Link stubs: candle links cudarc with `dynamic-linking`, so the linker wants libcuda, libcublas,
#      libcublasLt, libcurand and libnvrtc (and libcudart, which the runtime wheel ships for real). Like the toolkit's own lib/stubs/libcuda.so, we generate
#      stand-ins from cudarc's bindings that carry the real sonames and return an error code from every
#      function. They are only for linking and for the no-GPU checks below; on a GPU machine the real
#      libraries are loaded by soname (driver + CUDA 13 runtime libraries on LD_LIBRARY_PATH).
#   3. `cargo build --release --features cuda` (CUDA_COMPUTE_CAP=90, Hopper, unless set) and the GPU test
#      binary, into ${CARGO_TARGET_DIR:-target/cuda}.
#   4. With the stubs standing in for a missing driver: `inspect --device auto` must fall back to the CPU
#      with a visible note, `--device cuda` must fail with a one-line error and exit 2, and the GPU tests
#      must skip with a message.
#
# The results of step 3 are what scripts/gpu-check.sh runs on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
cuda_version=${CUDA_WHEEL_VERSION:-13.0.88}
venv=${CUDA_WHEELS_VENV:-$root/target/cuda-toolkit}
stubs=$CARGO_TARGET_DIR/link-stubs

say() { printf '== %s\n' "$*"; }

# 1. nvcc from PyPI.
if [ ! -x "$venv/nvcc-root/bin/nvcc" ]; then
  say "installing nvcc $cuda_version from PyPI into $venv"
  python3 -m venv "$venv"
  minor=${cuda_version%.*}
  "$venv/bin/pip" install -q "nvidia-cuda-nvcc==$cuda_version" "nvidia-cuda-crt==$cuda_version" \
    "nvidia-nvvm==$cuda_version" "nvidia-cuda-runtime==$cuda_version" "nvidia-cuda-cccl>=$minor,<$minor.999"
  top=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
  ln -sfn "$top" "$venv/nvcc-root"
fi
toolkit=$(readlink -f "$venv/nvcc-root")
export PATH=$toolkit/bin:$PATH CUDA_ROOT=$toolkit CUDA_PATH=$toolkit
nvcc --version | tail -1

# 2. Link stubs generated from cudarc's bindings.
cudarc=$(cargo metadata --format-version 1 --features cuda --manifest-path "$root/Cargo.toml" |
  python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')
mkdir -p "$stubs"
while read -r module soname link; do
  # 34 is CUDA_ERROR_STUB_LIBRARY; every library's stub returns a non-zero status.
  grep -oE '^pub unsafe fn [A-Za-z0-9_]+\(' "$cudarc/src/$module/sys/mod.rs" | sed -E 's/pub unsafe fn (.*)\(/int \1(void) { return 34; }/' |
    sort -u >"$stubs/$module.c"
  gcc -shared -fPIC -o "$stubs/$soname" -Wl,-soname,"$soname" "$stubs/$module.c"
  ln -sf "$soname" "$stubs/$link"
done <<'EOF'
driver libcuda.so.1 libcuda.so
cublas libcublas.so.13 libcublas.so
cublaslt libcublasLt.so.13 libcublasLt.so
curand libcurand.so.10 libcurand.so
nvrtc libnvrtc.so.13 libnvrtc.so
EOF
# candle-kernels' static kernels also link the CUDA runtime (libcudart), which the wheels do ship.
ln -sf "$toolkit/lib/libcudart.so.13" "$stubs/libcudart.so"
# The linker (cc) searches LIBRARY_PATH for -lcuda etc.; unlike RUSTFLAGS it does not force a rebuild.
export LIBRARY_PATH=$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}

# 3. Build.
say "cargo build --release --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
cargo build --release --features cuda
test_bin=$(cargo test --release --features cuda --test gpu --no-run --message-format json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"): print(m["executable"])')
bin=$CARGO_TARGET_DIR/release/alibi-explorer
mkdir -p "$CARGO_TARGET_DIR/gpu-bundle"
cp "$bin" "$test_bin" "$CARGO_TARGET_DIR/gpu-bundle/"
mv "$CARGO_TARGET_DIR/gpu-bundle/$(basename "$test_bin")" "$CARGO_TARGET_DIR/gpu-bundle/gpu-tests"
say "built: $(du -h "$bin" | cut -f1) binary; PTX for sm_$CUDA_COMPUTE_CAP embedded: $(grep -c -a '^.target sm_' "$bin" || true) kernel modules"
say "packing $CARGO_TARGET_DIR/gpu-bundle.tar.xz (what scripts/gpu-check.sh runs on a GPU machine)"
tar -C "$CARGO_TARGET_DIR/gpu-bundle" -cf - alibi-explorer gpu-tests | xz -T0 -6 >"$CARGO_TARGET_DIR/gpu-bundle.tar.xz"
du -h "$CARGO_TARGET_DIR/gpu-bundle.tar.xz"

# 4. No-GPU checks, with the stubs standing in for the driver.
export LD_LIBRARY_PATH=$stubs:$toolkit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
say "the CUDA libraries the binary loads (here: the stubs and the wheel's libcudart)"
ldd "$bin" | grep -E 'cuda|cublas|curand|nvrtc' || true
fail=0
out=$("$bin" inspect --model assets/models/alibi --device auto 2>&1) || { echo "$out"; fail=1; }
if grep -q 'auto: CUDA unavailable' <<<"$out" && grep -q 'device' <<<"$out"; then
  say "ok: --device auto falls back to the CPU: $(grep -m1 'auto:' <<<"$out")"
else
  echo "$out"; say "FAILED: --device auto did not fall back with a note"; fail=1
fi
set +e
err=$("$bin" inspect --model assets/models/alibi --device cuda 2>&1); rc=$?
set -e
if [ "$rc" = 2 ] && [ "$(wc -l <<<"$err")" -le 2 ] && grep -qi 'cuda' <<<"$err"; then
  say "ok: --device cuda without a GPU exits 2: $err"
else
  echo "$err"; say "FAILED: --device cuda without a GPU (exit $rc)"; fail=1
fi
tests=$(CARGO_MANIFEST_DIR=$root "$CARGO_TARGET_DIR/gpu-bundle/gpu-tests" --nocapture 2>&1) || fail=1
echo "$tests"
if grep -q 'SKIPPED: no GPU' <<<"$tests"; then
  say "ok: GPU tests build and skip without a GPU"
else
  say "FAILED: GPU tests did not skip"; fail=1
fi
exit $fail
