#!/usr/bin/env bash
# The paper's headline cost claim at our scale: training tokens/s and peak memory of ALiBi at
# L against sinusoidal at 2L (L = ALIBI_TRAIN_LEN, 256 for the shipped family), with the family's
# shape and batch (4,096 tokens a step; scripts/train-shipped.sh args), measured side by side in one run on one machine: both trainings start together, one thread
# each, so a busy machine slows both alike. Each round trains both from scratch for --steps steps
# into a temporary folder and reads their own logs: tokens/s is the median of the loss log's 10-step
# windows after the first 20 steps (warm-up), peak memory the run's TRAINING.md (the whole process's
# peak resident set). The shipped models' own TRAINING.md throughput is not used for the headline:
# those runs train one after another, beside whatever else the machine does.
# Writes a Markdown report; scripts/eval-shipped.sh puts its numbers in assets/results/headline.md.
#
# Usage: scripts/bench-headline.sh [path/to/alibi-explorer] [--out bench/headline-train.md]
#                                  [--steps 200] [--rounds 2]
# Environment: ALIBI_DATA (../shared/data), ALIBI_TRAIN_LEN (256).
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
bin=target/release/alibi-explorer
out=bench/headline-train.md
steps=200
rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$self"; exit 0 ;;
    -*) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    *) bin=$1; shift ;;
  esac
done
data=${ALIBI_DATA:-../shared/data}
L=${ALIBI_TRAIN_LEN:-256}
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release, or pass its path)" >&2; exit 1; }
[ "$steps" -ge 40 ] || { echo "--steps must be at least 40 (20 warm-up steps, then 10-step windows)" >&2; exit 2; }
[ -d "$data/books/train" ] || { echo "no $data/books/train (set ALIBI_DATA)" >&2; exit 1; }
if [ -e "$out" ] && { [ -L "$out" ] || [ ! -f "$out" ]; }; then
  echo "refusing to write $out: not a regular file" >&2; exit 1
fi
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load=$(cut -d' ' -f1-3 /proc/loadavg)

# Each model's own training arguments (scripts/train-shipped.sh args); only the steps differ.
mapfile -t alibi < <(ALIBI_STEPS=$steps ALIBI_DATA=$data ALIBI_TRAIN_LEN=$L scripts/train-shipped.sh args alibi)
mapfile -t sinusoidal < <(ALIBI_STEPS=$steps ALIBI_DATA=$data ALIBI_TRAIN_LEN=$L scripts/train-shipped.sh args sinusoidal-2x)
[ ${#alibi[@]} -gt 0 ] && [ ${#sinusoidal[@]} -gt 0 ] || exit 2
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds: ALiBi at $L and sinusoidal at $((2 * L)), $steps steps each, side by side" >&2
  RAYON_NUM_THREADS=1 "$bin" train "${alibi[@]}" \
    --out "$tmp/alibi-$r" > "$tmp/alibi-$r.log" 2>&1 &
  a=$!
  RAYON_NUM_THREADS=1 "$bin" train "${sinusoidal[@]}" \
    --out "$tmp/sinusoidal-2x-$r" > "$tmp/sinusoidal-2x-$r.log" 2>&1 &
  s=$!
  wait "$a" || { tail -3 "$tmp/alibi-$r.log" >&2; exit 1; }
  wait "$s" || { tail -3 "$tmp/sinusoidal-2x-$r.log" >&2; exit 1; }
done

python3 - "$tmp" "$rounds" "$steps" "$out" "$(nproc)" "$(uname -m)" "$load" "$L" <<'PY'
import csv, re, statistics, sys
tmp, rounds, steps, out, cores, arch, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
L = int(sys.argv[8])
def measure(run):
    rows = list(csv.DictReader(open(f"{tmp}/{run}/loss.csv")))
    tps = statistics.median(float(r["tokens_per_s"]) for r in rows if int(r["step"]) > 20)
    md = open(f"{tmp}/{run}/TRAINING.md").read()
    rss = int(re.search(r"peak resident memory of any of them: (\d+) MiB", md)[1])
    return tps, rss
lines = ["# Headline pair: training speed and memory side by side", "",
         f"ALiBi trained at L = {L} (batch {4096 // L}) against sinusoidal trained at 2L = {2 * L} (batch {2048 // L}): 4,096 tokens a step, "
         f"d_model 256, 4 layers, 8 heads, d_ff 1024, vocab 4,096; {steps} steps each from scratch on books/train, both runs "
         f"at once, one thread each, on {cores} cores ({arch}). tokens/s: median of the 10-step windows after step 20; "
         f"peak memory: the whole training process's peak resident set. Load average (1, 5, 15 min) before the first round: {load}. "
         "Written by `scripts/bench-headline.sh`.", "",
         f"| round | ALiBi@{L} tokens/s | sinusoidal@{2 * L} tokens/s | speed ratio | ALiBi peak MiB | sinusoidal peak MiB | memory ratio |",
         "|---:|---:|---:|---:|---:|---:|---:|"]
ratios, mems, a_all, s_all = [], [], [], []
for r in range(1, rounds + 1):
    (ta, ra), (ts, rs) = measure(f"alibi-{r}"), measure(f"sinusoidal-2x-{r}")
    ratios.append(ta / ts); mems.append(ra / rs); a_all.append((ta, ra)); s_all.append((ts, rs))
    lines.append(f"| {r} | {ta:.0f} | {ts:.0f} | {ta / ts:.3f} | {ra} | {rs} | {ra / rs:.3f} |")
ta = statistics.median(t for t, _ in a_all); ts = statistics.median(t for t, _ in s_all)
ra = max(m for _, m in a_all); rs = max(m for _, m in s_all)
speed, mem = statistics.median(ratios), statistics.median(mems)
lines += ["", f"Summary: ALiBi at L trains {100 * (speed - 1):+.0f}% tokens/s and uses {100 * (mem - 1):+.0f}% peak memory "
          f"against sinusoidal at 2L (median over {rounds} rounds; the paper: 11% faster, 11% less memory).", "",
          f"headline: train_len={L} alibi_tps={ta:.0f} sinusoidal_tps={ts:.0f} alibi_rss={ra} sinusoidal_rss={rs} speed_ratio={speed:.3f} memory_ratio={mem:.3f}"]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
