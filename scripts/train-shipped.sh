#!/usr/bin/env bash
# Trains the shipped model family with identical data, data order, size, seed and tokens seen;
# only the position scheme differs (and, for sinusoidal-2x, the training length: 2 x L tokens,
# half the windows per step, so every model sees the same tokens in the same number of steps).
# Every step is 4,096 tokens: 4096 / L windows of L = ALIBI_TRAIN_LEN tokens (256 for the shipped family).
#
# Runs train outside the repository (default ../runs/family-L<L>-s<steps>, override with ALIBI_RUNS), niced, in the
# background: `start` runs its models side by side, one thread each; `queue` runs them one after
# another, each with every core (on 2 cores a model then finishes in half the time, so a session
# that ends loses at most one run). Running `start` or `queue` again resumes from the checkpoints,
# so a run survives any number of interruptions (SIGTERM or Ctrl-C saves a checkpoint first).
# A half-trained model never reaches assets/: `keep` and `promote` copy only finished runs.
# The run folders do not survive a fresh machine, so `keep` commits-ready copies each finished run
# to assets/models/next/MODEL (read by nothing but `promote`), and `promote` takes a model from its
# run folder or, failing that, from there. Promote the whole family at once.
#
# Usage:
#   scripts/train-shipped.sh start   [MODEL...]   start or resume side by side (default: alibi sinusoidal-2x)
#   scripts/train-shipped.sh queue   [MODEL...]   start or resume one after another, each with all cores,
#                                                 and `keep` each as it finishes (log: ALIBI_RUNS/queue.log)
#   scripts/train-shipped.sh status  [MODEL...]   last logged step of each run
#   scripts/train-shipped.sh stop    [MODEL...]   SIGTERM: checkpoint and stop
#   scripts/train-shipped.sh keep    [MODEL...]   copy finished runs to assets/models/next/MODEL
#   scripts/train-shipped.sh promote [MODEL...]   copy finished runs to assets/models/MODEL
#   scripts/train-shipped.sh args    MODEL        print MODEL's `train` arguments, one a line, without
#                                                 --out (scripts/bench-headline.sh trains with them)
# MODEL: alibi sinusoidal rotary none sinusoidal-2x (the headline pair first).
# Environment: ALIBI_BIN (default target/release/alibi-explorer), ALIBI_DATA (../shared/data),
# ALIBI_TRAIN_LEN (256), ALIBI_STEPS (6000), ALIBI_RUNS (../runs/family-L<L>-s<steps>: each schedule its own
# folder, since a run resumes only with the schedule it started with), ALIBI_THREADS (1 per run for start,
# every core for queue). The previous shipped family was ALIBI_TRAIN_LEN=128 ALIBI_STEPS=2000.
#
# The copy recipe (ALIBI_STAGE=copy, issue 32) gives each model of the 256-token family induction heads in two
# phases, the same for every twin (seed, data and schedule):
#   mix:  from its own stage-1 weights (the family as promoted in commit ALIBI_STAGE1_REF, taken from git into
#         ALIBI_RUNS/stage1/), ALIBI_COPY_STEPS (2000) steps in which every window repeats a span of L/8..L/2
#         tokens (--repeat-frac ALIBI_COPY_FRAC, 1), lr ALIBI_COPY_LR (0.001), 100 warm-up steps, the cosine;
#         the run folder is ALIBI_RUNS/MODEL;
#   hold: from the mix phase's weights, ALIBI_HOLD_STEPS (1000) steps in which a quarter of the windows repeat a
#         span (ALIBI_HOLD_FRAC, 0.25), lr ALIBI_HOLD_LR (0.0003), 50 warm-up steps: the text loss comes back
#         and the heads stay; the run folder is ALIBI_RUNS/hold/MODEL, the model that is kept.
# Its runs go to ../runs/copy-L<L>-s<copy steps> unless ALIBI_RUNS says otherwise; start/queue/status/stop/
# keep/promote work as for stage 1 (a model is finished when its hold phase is).
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
bin=${ALIBI_BIN:-target/release/alibi-explorer}
data=${ALIBI_DATA:-../shared/data}
train_len=${ALIBI_TRAIN_LEN:-256}
steps=${ALIBI_STEPS:-6000}
runs=${ALIBI_RUNS:-../runs/family-L$train_len-s$steps}
threads=${ALIBI_THREADS:-}
stage=${ALIBI_STAGE:-base}
stage1_ref=${ALIBI_STAGE1_REF:-b43a113}
copy_steps=${ALIBI_COPY_STEPS:-2000}
copy_frac=${ALIBI_COPY_FRAC:-1}
copy_lr=${ALIBI_COPY_LR:-0.001}
hold_steps=${ALIBI_HOLD_STEPS:-1000}
hold_frac=${ALIBI_HOLD_FRAC:-0.25}
hold_lr=${ALIBI_HOLD_LR:-0.0003}
case "$stage" in
  base) ;;
  copy) runs=${ALIBI_RUNS:-../runs/copy-L$train_len-s$copy_steps} ;;
  *) echo "ALIBI_STAGE must be base or copy, not '$stage'" >&2; exit 2 ;;
esac
action=${1:-status}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(alibi sinusoidal-2x)

# The family's shape and schedule (see docs/models.md).
common=(--d-model 256 --layers 4 --heads 8 --d-ff 1024 --vocab-size 4096
  --steps "$steps" --lr 0.0015 --warmup 200 --clip 1.0 --weight-decay 0.1 --seed 1234
  --valid-every 250 --checkpoint-every 100 --save-dtype f16)

case "$train_len" in
  64 | 128 | 256 | 512) ;;
  *) echo "ALIBI_TRAIN_LEN must be 64, 128, 256 or 512 (4,096 tokens a step), not '$train_len'" >&2; exit 2 ;;
esac
args_for() {
  case "$1" in
    alibi | sinusoidal | rotary | none) echo "--position $1 --train-len $train_len --batch $((4096 / train_len))" ;;
    sinusoidal-2x) echo "--position sinusoidal --train-len $((2 * train_len)) --batch $((2048 / train_len))" ;;
    *) echo "unknown model '$1' (alibi, sinusoidal, rotary, none, sinusoidal-2x)" >&2; return 2 ;;
  esac
}

finished() { [ -f "$1/model.safetensors" ] && [ -f "$1/TRAINING.md" ]; }
running() { pgrep -f -- "--out $1( |\$)" > /dev/null; }

# final_dir MODEL: the run folder of MODEL's finished model (the hold phase's in the copy recipe).
final_dir() {
  if [ "$stage" = copy ]; then echo "$runs/hold/$1"; else echo "$runs/$1"; fi
}

# copy_phase_args EXTRA STEPS LR WARMUP FRAC INIT: one phase of the copy recipe, into `targs`.
copy_phase_args() {
  # shellcheck disable=SC2206
  targs=(--data "$data/books/train" --valid "$data/books/valid"
    --tokenizer assets/tokenizer/tokenizer.json $1
    --d-model 256 --layers 4 --heads 8 --d-ff 1024 --vocab-size 4096
    --steps "$2" --lr "$3" --warmup "$4" --clip 1.0 --weight-decay 0.1 --seed 1234
    --valid-every 100 --checkpoint-every 100 --save-dtype f16
    --repeat-frac "$5" --repeat-span "$((train_len / 8))..$((train_len / 2))" --repeat-kind text
    --copy-span "$((train_len / 2 - 2))" --init "$6")
}

# train_args MODEL [PHASE]: MODEL's whole `train` argument list but --out, into the array `targs`
# (PHASE, for the copy recipe: mix, or hold, the default).
train_args() {
  local extra
  extra=$(args_for "$1")
  # shellcheck disable=SC2206
  targs=(--data "$data/books/train" --valid "$data/books/valid"
    --tokenizer assets/tokenizer/tokenizer.json $extra "${common[@]}")
  if [ "$stage" = copy ]; then
    if [ "${2:-hold}" = hold ]; then
      copy_phase_args "$extra" "$hold_steps" "$hold_lr" 50 "$hold_frac" "$runs/$1"
    else
      copy_phase_args "$extra" "$copy_steps" "$copy_lr" 100 "$copy_frac" "$runs/stage1/$1"
    fi
  fi
}

# stage1 MODEL: MODEL's stage-1 weights from git (commit $stage1_ref) into $runs/stage1/MODEL.
stage1() {
  local dir=$runs/stage1/$1 f
  [ -f "$dir/model.safetensors" ] && return 0
  mkdir -p "$dir"
  for f in config.json model.safetensors tokenizer.json TRAINING.md; do
    git show "$stage1_ref:assets/models/$1/$f" > "$dir/$f"
  done
}

# run_phase MODEL THREADS OUT [PHASE]: one `train` run into OUT, in the foreground, appending to OUT.log.
run_phase() {
  local out=$3 resume=() targs
  train_args "$1" "${4:-}"
  mkdir -p "$(dirname "$out")"
  [ -d "$out/checkpoint" ] && resume=(--resume)
  RAYON_NUM_THREADS=$2 nice -n 10 "$bin" train "${targs[@]}" --out "$out" "${resume[@]}" >> "$out.log" 2>&1
}

# train MODEL THREADS: MODEL's training (both phases of the copy recipe, each skipped once finished).
train() {
  if [ "$stage" = copy ]; then
    stage1 "$1"
    finished "$runs/$1" || run_phase "$1" "$2" "$runs/$1" mix || return 1
    run_phase "$1" "$2" "$runs/hold/$1" hold
  else
    run_phase "$1" "$2" "$runs/$1"
  fi
}

if [ "$action" = args ]; then
  [ ${#models[@]} -eq 1 ] || { echo "args takes one MODEL" >&2; exit 2; }
  train_args "${models[0]}" "${ALIBI_PHASE:-hold}"
  printf '%s\n' "${targs[@]}"
  exit 0
fi

# The queue's worker: each model in turn, kept as soon as it has finished.
if [ "$action" = _queue ]; then
  for m in "${models[@]}"; do
    if ! finished "$(final_dir "$m")"; then
      echo "$(date -u +%FT%TZ) $m: training with $threads threads"
      train "$m" "$threads" || { echo "$(date -u +%FT%TZ) $m: stopped before the end (resume: queue again)"; exit 1; }
    fi
    "$self" keep "$m"
  done
  echo "$(date -u +%FT%TZ) queue done: ${models[*]}"
  exit 0
fi
if [ "$action" = queue ]; then
  for m in "${models[@]}"; do
    args_for "$m" > /dev/null || exit 2
    if running "$runs/$m" || running "$runs/hold/$m"; then echo "$m: already running; stop it first" >&2; exit 1; fi
  done
  mkdir -p "$runs"
  threads=${threads:-$(nproc)}
  ALIBI_THREADS=$threads nohup "$self" _queue "${models[@]}" >> "$runs/queue.log" 2>&1 &
  echo "queued ${models[*]} (pid $!), one at a time with $threads threads; log $runs/queue.log"
  exit 0
fi
kept_files=(config.json model.safetensors tokenizer.json TRAINING.md loss.csv)

for m in "${models[@]}"; do
  args_for "$m" > /dev/null
  out=$(final_dir "$m")
  case "$action" in
    start)
      if finished "$out"; then echo "$m: finished ($out)"; continue; fi
      if running "$out"; then echo "$m: already running"; continue; fi
      (trap '' HUP; train "$m" "${threads:-1}") & # like nohup: the run outlives the terminal
      echo "$m: started (pid $!), log $out.log"
      ;;
    status)
      if finished "$out"; then echo "$m: finished"; continue; fi
      if [ -f "$out/loss.csv" ]; then
        echo "$m: $(tail -n 1 "$out/loss.csv") (step,lr,train_loss,valid_loss,grad_norm,tokens_s,elapsed_s)"
      else
        echo "$m: not started"
      fi
      ;;
    stop)
      pkill -TERM -f -- "--out ($runs/$m|$out)( |\$)" && echo "$m: stopping (checkpoint first)" || echo "$m: not running"
      ;;
    keep)
      if ! finished "$out"; then echo "$m: not finished, not kept" >&2; continue; fi
      dest=assets/models/next/$m
      mkdir -p "$dest"
      for f in "${kept_files[@]}"; do cp "$out/$f" "$dest/"; done
      if [ "$stage" = copy ]; then
        cp "$runs/$m/loss.csv" "$dest/loss-mix.csv"
        # The record of the copy stage names its starting weights; say where they come from and add
        # their own record, so the folder tells the whole recipe after they are replaced.
        {
          printf '\n## The mix phase: the weights `--init` names\n\n'
          printf 'The copy recipe'"'"'s first phase (docs/models.md), trained into `%s`. Its own record:\n\n' "$runs/$m"
          sed -e 's/^## /### /' -e 's/^# .*/(the mix phase)/' "$runs/$m/TRAINING.md"
          printf '\n## Stage 1: the weights the mix phase started from\n\n'
          printf 'The 256-token family'"'"'s %s model as promoted in commit %s (`git show %s:assets/models/%s/model.safetensors`;\n' "$m" "$stage1_ref" "$stage1_ref" "$m"
          printf '`ALIBI_STAGE=copy scripts/train-shipped.sh queue %s` takes it from git into the run folder). Its own record:\n\n' "$m"
          git show "$stage1_ref:assets/models/$m/TRAINING.md" | sed -e 's/^## /### /' -e 's/^# .*/(stage 1)/'
        } >> "$dest/TRAINING.md"
      fi
      echo "$m: kept in $dest (commit it; \`promote\` takes it from there)"
      ;;
    promote)
      src=$out
      finished "$src" || src=assets/models/next/$m
      if ! finished "$src"; then echo "$m: not finished, not promoted" >&2; continue; fi
      dest=assets/models/$m
      mkdir -p "$dest"
      for f in "${kept_files[@]}"; do cp "$src/$f" "$dest/"; done
      # The copy recipe's mix-phase log, which TRAINING.md names, travels with the model.
      if [ -f "$src/loss-mix.csv" ]; then cp "$src/loss-mix.csv" "$dest/"; else rm -f "$dest/loss-mix.csv"; fi
      echo "$m: promoted to $dest (from $src)"
      ;;
    *) echo "unknown action '$action' (start, status, stop, keep, promote)" >&2; exit 2 ;;
  esac
done
