#!/usr/bin/env bash
# One time-boxed training run on the lent GPU (the `device` tool; docs/training.md, "On a lent GPU"):
# variants of a denoiser line (one seed each) trained side by side on the one GPU, each a plain phase
# cut at a wall-clock share, then the adversarial leg of version 4.3's recipe from wherever the plain
# phase reached, then the export. Each exported model comes back under $OUT as its own tar in 15-MB
# parts as soon as it is packed (the tool returns at most 8 files of 16 MiB: three cpu-xl variants
# fill 6), with the logs; the checkpoints stay there (a later session continues by warm start from
# the exported model, not by exact resume). Here: cat NAME.tar.part* > NAME.tar, check models.sha256.
#
#   VARIANTS="xl0:0 xl3:3 large3:3:candidates/patch16" INIT=candidates/patch16-xl BATCH=32 \
#       PLAIN=8000 LEG=2000 BUDGET=500 PLAIN_SECONDS=270 EXPORT_SECONDS=60 DEVICE=cuda THREADS=4 \
#       scripts/device_train.sh          # the first run (thirty-first session; the wait fixed since)
#   VARIANTS="xl0:0 xl3:3" INIT=candidates/patch16-xl BATCH=32 PLAIN=8000 LEG=0 PLAIN_SECONDS=450 \
#       BUDGET=560 EXPORT_SECONDS=40 CHECKPOINT_EVERY=500 DEVICE=cuda THREADS=6 scripts/device_train.sh
#   VARIANTS="xl0L:0:/tmp/pathup-device/model-xl0 xl3L:3:/tmp/pathup-device/model-xl3" BATCH=8 PLAIN=0 \
#       LEG=4000 BUDGET=490 EXPORT_SECONDS=45 CHECKPOINT_EVERY=250 DEVICE=cuda THREADS=6 \
#       SCRATCH=/tmp/pathup-device2 scripts/device_train.sh
#                                        # the second run (thirty-second session): plain models, then
#                                        # batch-8 legs from them in a second call on the warm machine
#                                        # (the calls as run: docs/training.md, "The second run")
#
# VARIANTS are name:seed or name:seed:init (a variant's own warm start; INIT otherwise).
# PLAIN and LEG are iterations added to INIT's count (PLAIN=0: the leg alone, at LEG_BATCH, as a warm
# start from the variant's init, e.g. a plain model a first call left in the warm machine's /tmp, run
# with another SCRATCH; LEG=0: the plain models alone, which the next
# GPU session should bring back: a leg's batch is part of its checkpoints' settings, so a leg at
# batch 8 starts from the exported plain model; docs/model_experiments.md, thirty-first session);
# PLAIN_SECONDS caps the plain phase (the rest of BUDGET, less EXPORT_SECONDS, goes to the leg).
# LEG_BATCH (BATCH unless set) is the leg's batch: another one makes the leg a warm start from the
# exported plain model, in a work folder of its own (KEEP_PLAIN=1 brings that plain model back too,
# as NAME-plain). A variant that fails in the first FAIL_FAST seconds stops the run, so that a warm
# machine can take a corrected command. Here (no GPU) the same script runs with DEVICE=cpu, tiny
# counts and CHECKPOINT_EVERY=5: it tests nothing, but rehearses every path (docs/training.md).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
start=$(date +%s)
PYTHON="${PYTHON:-python3}"
VARIANTS="${VARIANTS:-xl0:0 xl3:3}"  # name:seed[:init] ...
INIT="${INIT:-candidates/patch16-xl}"
BATCH="${BATCH:-32}"
LEG_BATCH="${LEG_BATCH:-$BATCH}"  # another: the leg warm-starts from the exported plain model
PLAIN="${PLAIN:-8000}"
LEG="${LEG:-2000}"
BUDGET="${BUDGET:-540}"
PLAIN_SECONDS="${PLAIN_SECONDS:-300}"
EXPORT_SECONDS="${EXPORT_SECONDS:-60}"
FAIL_FAST="${FAIL_FAST:-150}"
SCRATCH="${SCRATCH:-/tmp/pathup-device}"
OUT="${OUT:-$SCRATCH/out}"
# the shipped version's leg and export (4.5's; versions 4.6 to 4.8 average that leg's denoiser with INIT's,
# 0.8 and 0.2: scripts/train_default_model.sh gives its whole command; the first run exported with
# 4.3's class defaults, tumour's alone)
export DGAN_WEIGHT=0.1 DGAN_MAX_T=400 DGAN_JUDGE=pair DGAN_CLASS_WEIGHTS="stroma=0 normal=2" \
    DGAN_CROP_EMPHASIS="normal=3" SLIDE_REFERENCES="normal tumour" \
    SLIDE_REFERENCES_SKIP=tumour/tumour_stardist.jpg \
    CLASS_DEFAULTS="tumour:upscale_strength=0.9 stroma:scheduler=euler-a stroma:guidance=1.5 normal:overlap=4 tumour:overlap=4"
export PYTHON BATCH INIT STORAGE="${STORAGE:-float16}" DEVICE="${DEVICE:-cuda}" THREADS="${THREADS:-4}" \
    PYTHONUNBUFFERED=1
if [ "$PLAIN" = 0 ] && [ "$LEG" = 0 ]; then echo "error: PLAIN=0 and LEG=0 leave nothing to train" >&2; exit 1; fi
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH/logs" "$SCRATCH/pack" "$OUT"
echo "plain +$PLAIN (batch $BATCH), leg +$LEG (batch $LEG_BATCH) iterations, on $DEVICE: $VARIANTS (default init $INIT)"

pack() {  # name work dest: the model (not its autoencoder or references) into $OUT, in 15-MB parts
    local name=$1 work=$2 dest=$3
    mkdir -p "$SCRATCH/pack/$name"
    cp -r "$dest/pathup.json" "$dest/denoiser" "$dest/scheduler" "$SCRATCH/pack/$name/"
    (cd "$dest" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$SCRATCH/pack/$name/sha256.txt"
    for phase in denoiser denoiser_gan; do  # iterations, losses, validation, it/s at each checkpoint
        [ -f "$work/checkpoints/$phase/log.jsonl" ] && cp "$work/checkpoints/$phase/log.jsonl" "$SCRATCH/pack/$name/$phase.jsonl"
    done
    # into $OUT at once, so that a run stopped at the tool's limit still returns the finished variants
    tar -C "$SCRATCH/pack" -cf "$SCRATCH/$name.tar" "$name" && split -b 15M -d "$SCRATCH/$name.tar" "$OUT/$name.tar.part" \
        && (cd "$SCRATCH" && sha256sum "$name.tar") >> "$OUT/models.sha256"
}

variant() {  # name seed init: plain phase, leg, export, pack; the last line of its status is its outcome
    local name=$1 seed=$2 log="$SCRATCH/logs/$1.log" status="$SCRATCH/logs/$1.status" rc reached initial left
    export WORK="$SCRATCH/work-$name" DEST="$SCRATCH/model-$name" SEED=$seed INIT=$3
    # the count the warm start continues from (training.train.trained_iterations, as --init reads it)
    initial="$("$PYTHON" -c 'import sys; from napari_pathup.training.train import trained_iterations
print(trained_iterations(sys.argv[1]))' "$INIT")" || { echo "FAILED init" >> "$status"; return 1; }
    echo "$name: seed $seed, from $INIT at iteration $initial" >> "$status"
    if [ "$PLAIN" = 0 ]; then  # the leg alone, a warm start from INIT (e.g. a plain model left in /tmp)
        reached=$initial
        export BATCH="$LEG_BATCH"
    else
        timeout "$PLAIN_SECONDS" env ITERS=$((initial + PLAIN)) DGAN_ITERS=0 scripts/train_default_model.sh >> "$log" 2>&1
        rc=$?
        if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then echo "FAILED plain rc $rc" >> "$status"; return 1; fi
        reached="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["iteration"])' \
            "$WORK/checkpoints/denoiser/latest.json")" || { echo "FAILED no checkpoint" >> "$status"; return 1; }
        echo "plain phase: rc $rc at iteration $reached, $(($(date +%s) - start)) s" >> "$status"
    fi
    if [ "$PLAIN" != 0 ] && { [ "$LEG" = 0 ] || [ "$LEG_BATCH" != "$BATCH" ]; }; then  # the plain model, exported
        if [ "$rc" != 0 ]; then  # cut: export its latest checkpoint (a finished phase exported itself)
            EXPORT_ONLY=1 ITERS="$reached" DGAN_ITERS=0 scripts/train_default_model.sh >> "$log" 2>&1 \
                || { echo "FAILED export" >> "$status"; return 1; }
        fi
        if [ "$LEG" = 0 ]; then pack "$name" "$WORK" "$DEST"; echo "DONE $name $(($(date +%s) - start)) s" >> "$status"; return 0; fi
        [ -z "${KEEP_PLAIN:-}" ] || pack "$name-plain" "$WORK" "$DEST"
        # a leg at another batch: a warm start from the plain model (the batch is a checkpoint setting)
        export INIT="$DEST" WORK="$WORK-leg" DEST="$DEST-leg" BATCH="$LEG_BATCH"
    fi
    left=$((start + BUDGET - EXPORT_SECONDS - $(date +%s)))
    if [ "$left" -gt 10 ]; then  # (timeout 0 would mean none)
        timeout "$left" env ITERS="$reached" DGAN_ITERS=$((reached + LEG)) scripts/train_default_model.sh >> "$log" 2>&1
        rc=$?
    else
        rc="no time"
    fi
    echo "leg (batch $BATCH): rc $rc, $(($(date +%s) - start)) s" >> "$status"
    if [ "$rc" != 0 ] && [ ! -f "$WORK/checkpoints/denoiser_gan/latest.json" ] \
        && [ ! -f "$WORK/checkpoints/denoiser/latest.json" ]; then  # a warm-start leg with no checkpoint yet
        echo "FAILED leg cut before its first checkpoint: nothing of it to export" >> "$status"; return 1
    fi
    if [ "$rc" != 0 ]; then  # cut: export the latest checkpoint of the leg (or of what it started from)
        EXPORT_ONLY=1 ITERS="$reached" DGAN_ITERS=$((reached + LEG)) scripts/train_default_model.sh >> "$log" 2>&1 \
            || { echo "FAILED export" >> "$status"; return 1; }
    fi
    pack "$name" "$WORK" "$DEST"
    echo "DONE $name $(($(date +%s) - start)) s" >> "$status"
}

nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv -l 15 > "$SCRATCH/logs/gpu.csv" 2>&1 &
smi=$!
pids=()
for v in $VARIANTS; do
    IFS=: read -r name seed init <<< "$v"
    variant "$name" "$seed" "${init:-$INIT}" &
    pids+=($!)
done
while :; do  # fail fast: a variant that dies early stops the run
    running=0
    for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null && running=1; done
    [ "$running" = 0 ] && break
    if [ $(($(date +%s) - start)) -lt "$FAIL_FAST" ] && grep -q '^FAILED' "$SCRATCH"/logs/*.status 2> /dev/null; then
        echo "a variant failed early: stopping the run"
        pkill -f train_default_model.sh; pkill -f 'napari_pathup train'; sleep 2
        break
    fi
    sleep 5
done
wait "${pids[@]}"  # not a bare wait: nvidia-smi -l never ends (the first run hung here until the tool's limit)
kill "$smi" 2> /dev/null
for v in $VARIANTS; do
    echo "== $(cat "$SCRATCH/logs/${v%%:*}.status")"
    tail -c 600 "$SCRATCH/logs/${v%%:*}.log" | tr '\r' '\n' | tail -n 4
    for f in "$SCRATCH/pack/${v%%:*}"/*.jsonl; do [ -f "$f" ] && grep val "$f" | tail -n 3; tail -n 1 "$f"; done
done
tar -C "$SCRATCH" -czf "$OUT/logs.tgz" logs
ls -la "$OUT"
echo "total $(($(date +%s) - start)) s"
