#!/usr/bin/env bash
# Forward speed and peak memory of alibi-explorer next to Hugging Face transformers, in one run on
# one machine, for a randomly initialised model with bigscience/bloom-560m's exact shape
# (vocab 250880, hidden 1024, 24 layers, 16 heads), f32, CPU. Writes a Markdown table.
#
# Usage: scripts/bench-bloom560m.sh [--shape bloom-560m|bloom-tiny] [--lengths 512,2048]
#                                   [--threads 2] [--repeats 1] [--dtypes f32,bf16]
#                                   [--out bench/bloom-560m.md]
# Environment: PY  python with torch + transformers (default /tmp/fxenv/bin/python; see
#                  scripts/FIXTURES.md), BIN  our binary (default target/release/alibi-explorer),
#              KEEP=1  keep the generated model folder (printed at the end).
#
# How it measures (every run is a fresh process, so each peak RSS belongs to one length):
# - ours: `/usr/bin/time` around `eval --lengths L --protocol nonoverlap --batch 1` on exactly L+1
#   random token ids (one window: one forward of L tokens plus the loss over the full vocabulary),
#   minus the wall time of `inspect` (loading alone), each the fastest of its runs (--repeats
#   evals per length, each after an inspect run; all of a dtype's inspect runs so far).
# - transformers: `make_fixtures.py --bench-transformers` (eager attention, use_cache=False,
#   logits for every position, torch.set_num_threads(--threads)), one process per length.
# - --dtypes: f32 first (the headline table); each further dtype (bf16, f16) adds rows for both,
#   ours with `--dtype` (weights converted at load), transformers with the model loaded in it.
# The model folder (~2.2 GB) is written to a temporary folder and deleted afterwards; never commit it.
set -euo pipefail
cd "$(dirname "$0")/.."

shape=bloom-560m
lengths=512,2048
threads=2
repeats=1
dtypes=f32
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --lengths) lengths=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
out=${out:-bench/$shape.md}
PY=${PY:-/tmp/fxenv/bin/python}
BIN=${BIN:-target/release/alibi-explorer}
for tool in "$PY" "$BIN" /usr/bin/time; do
  [ -x "$tool" ] || { echo "'$tool' is not an executable (see the header of $0)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-$shape.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
model="$work/model"
results="$work/results.jsonl"
: > "$results"

echo "writing a random $shape model to $model" >&2
"$PY" scripts/make_fixtures.py --shape "$shape" --out "$model" >&2
vocab=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$model/config.json")

# Wall seconds and peak RSS (KiB) of one command, as "seconds kib".
timed() {
  local t="$work/time.txt"
  RAYON_NUM_THREADS=$threads /usr/bin/time -f '%e %M' -o "$t" "$@" > "$work/last.out" 2> "$work/last.err" \
    || { echo "failed: $*" >&2; cat "$work/last.err" >&2; exit 1; }
  cat "$t"
}

IFS=, read -ra dts <<< "$dtypes"
IFS=, read -ra lens <<< "$lengths"
for L in "${lens[@]}"; do
  python3 -c 'import random,sys; r=random.Random(0); print(" ".join(str(r.randrange(int(sys.argv[1]))) for _ in range(int(sys.argv[2])+1)))' "$vocab" "$L" > "$work/ids-$L.txt"
done
for dt in "${dts[@]}"; do
  case "$dt" in
    f32) torch_dt=float32 ;; bf16) torch_dt=bfloat16 ;; f16) torch_dt=float16 ;;
    *) echo "unknown dtype '$dt' in --dtypes (expected f32, bf16 or f16)" >&2; exit 2 ;;
  esac
  # Loading takes 0.4-4 s here depending on the kernel's memory state (the page cache, what ran
  # before), and that noise only ever adds: so each eval follows an inspect run (after one discarded
  # warm-up), and the forward is the fastest eval minus the fastest inspect of this dtype.
  timed "$BIN" inspect --model "$model" --device cpu --dtype "$dt" > /dev/null
  load=""
  for L in "${lens[@]}"; do
    wall=""; peak=0
    for _ in $(seq "$repeats"); do
      read -r ls _kib < <(timed "$BIN" inspect --model "$model" --device cpu --dtype "$dt")
      load=$(python3 -c 'import sys; a=[float(x) for x in sys.argv[1:] if x]; print(min(a))' "$ls" "$load")
      read -r s kib < <(timed "$BIN" eval --model "$model" --token-ids "$work/ids-$L.txt" --lengths "$L" \
        --protocol nonoverlap --batch 1 --device cpu --dtype "$dt")
      wall=$(python3 -c 'import sys; a=[float(x) for x in sys.argv[1:] if x]; print(min(a))' "$s" "$wall")
      peak=$(( kib > peak ? kib : peak ))
    done
    ppl=$(grep -E "^ +$L +" "$work/last.out" | awk '{print $5}')
    python3 -c 'import json,sys; L,wall,load,kib=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]); f=max(wall-load,1e-3); print(json.dumps({"impl":"alibi-explorer","dtype":sys.argv[5],"length":L,"forward_s":round(f,3),"tokens_per_s":L/f,"peak_rss_mib":round(kib/1024,1),"wall_s":wall,"load_s":load,"perplexity":float(sys.argv[6] or "nan")}))' \
      "$L" "$wall" "$load" "$peak" "$dt" "$ppl" | tee -a "$results" >&2
    RAYON_NUM_THREADS=$threads "$PY" scripts/make_fixtures.py --bench-transformers "$model" --lengths "$L" \
      --threads "$threads" --repeats "$repeats" --dtype "$torch_dt" \
      | python3 -c 'import json,sys; [print(json.dumps({**json.loads(l), "dtype": sys.argv[1]})) for l in sys.stdin if l.strip()]' "$dt" \
      | tee -a "$results" >&2
  done
done

mkdir -p "$(dirname "$out")"
python3 - "$results" "$out" "$shape" "$threads" "$repeats" "$BIN" <<'EOF'
import json, platform, subprocess, sys, datetime
results, out, shape, threads, repeats, binary = sys.argv[1:]
rows = [json.loads(l) for l in open(results) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
ncpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
for r in rows:
    r["dtype"] = r.get("dtype", "f32")
load = {}
for r in rows:
    if r["impl"] == "alibi-explorer":
        load[r["dtype"]] = r["load_s"]
tf = next((r for r in rows if r["impl"] == "transformers"), {})
dtypes = list(dict.fromkeys(r["dtype"] for r in rows))

def table(f, dtype):
    f.write("| implementation | length (tokens) | forward (s) | tokens/s | ours / transformers | peak RSS (MiB) | perplexity |\n")
    f.write("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    sel = [r for r in rows if r["dtype"] == dtype]
    for r in sorted(sel, key=lambda r: (r["length"], r["impl"] != "alibi-explorer")):
        ref = next((x for x in sel if x["impl"] == "transformers" and x["length"] == r["length"]), None)
        ratio = f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}x" if ref and r["impl"] == "alibi-explorer" else ""
        ppl = f"{r['perplexity']:.3f}" if "perplexity" in r else ""
        f.write(f"| {r['impl']} | {r['length']} | {r['forward_s']:.2f} | {r['tokens_per_s']:.0f} | {ratio} | {r['peak_rss_mib']:.0f} | {ppl} |\n")
with open(out, "w") as f:
    f.write(f"# Forward speed: alibi-explorer vs transformers ({shape}, random weights, f32, CPU)\n\n")
    f.write(f"Measured {datetime.date.today()} on {cpu} ({ncpu} CPUs), {threads} threads each, "
            f"best of {repeats}. transformers {tf.get('transformers_version', '?')}, torch {tf.get('torch_version', '?')}; "
            f"ours: `{binary}`. Written by `scripts/bench-bloom560m.sh`.\n\n")
    table(f, "f32")
    for dt in dtypes:
        if dt != "f32":
            f.write(f"\n{dt} (ours: `--dtype {dt}`, weights converted at load; transformers: the model loaded in {dt}):\n\n")
            table(f, dt)
    f.write("\nForward time includes the output projection and loss over the whole vocabulary for every "
            "position in both. Ours: the fastest `eval` wall time minus the fastest `inspect` wall time "
            f"(loading alone: {', '.join(f'{v} s in {k}' for k, v in load.items())}), each run following an `inspect` run. transformers: the timed `model(ids)` call after a warm-up. "
            "Peak RSS is each process's maximum, weights included. Other load on the machine slows "
            "both; compare numbers from the same run.\n")
print(f"wrote {out}", file=sys.stderr)
EOF
if [ "${KEEP:-0}" = 1 ]; then echo "kept $model" >&2; fi
