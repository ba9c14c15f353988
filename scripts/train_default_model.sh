#!/usr/bin/env bash
# Train the shipped default model from data/demo and copy it to src/napari_pathup/data/default_model/.
#
#   scripts/train_default_model.sh            # start, or resume after an interruption (same command)
#   THREADS=2 AE_ITERS=12000 ITERS=6000 scripts/train_default_model.sh   # an idle machine: more work
# (DATA, WORK and DEST override the data folder, the work folder and where the model is copied.)
#
# One `pathup train` run does both phases (autoencoder, then denoiser), checkpointing every 250
# iterations into $WORK/checkpoints; rerunning this script resumes from the latest checkpoint, skips
# a finished phase and re-uses the cached training latents. Hold-out regions: data/demo/holdout.json.
#
# Budget (~70 min on this 2-core CPU with THREADS=1, up to ~90 min when other jobs share it), from
# speeds measured with the presets below (1 torch thread; machine load ~1):
#   autoencoder  cpu preset (0.39 M parameters), batch 4 x 64 px:    4.8 it/s  -> 7200 it ~ 25 min
#   latents      138 Mpx (training bands x 8 orientations, encoded once): 0.47 Mpx/s ~ 5 min
#   denoiser     cpu preset (2.74 M parameters), batch 8 x 32^2 latents: 1.36 it/s -> 3200 it ~ 39 min
# With THREADS=2 on an otherwise idle machine the same steps run ~1.6x faster (AE 8.1 it/s,
# denoiser 2.5 it/s), but when other processes share the two cores two torch threads were 3-10x
# slower than one (OpenMP threads wait for each other), hence THREADS=1 by default.
# The resulting model (~17 MB with its three reference images) synthesises 2048x2048 at the default
# settings (20 DDIM steps, guidance 2.5) in ~57 s with 2 threads on a quiet machine; the README's
# whole command, with imports, model load and the OME-Zarr write, took 67-71 s (docs/model_card.md).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
WORK="${WORK:-$REPO/out/train-default-model}"
THREADS="${THREADS:-1}"
AE_ITERS="${AE_ITERS:-7200}"
ITERS="${ITERS:-3200}"
DATA="${DATA:-data/demo}"
DEST="${DEST:-$REPO/src/napari_pathup/data/default_model}"
MAX_MB=40

if [ "$DATA" = data/demo ] && [ ! -f data/demo/holdout.json ]; then
    "$PYTHON" scripts/prepare_demo_data.py
fi

export OMP_WAIT_POLICY=PASSIVE  # threads yield instead of spinning when THREADS > 1
"$PYTHON" -m napari_pathup train "$DATA" --out "$WORK" --resume --seed 0 --device cpu --threads "$THREADS" \
    --ae-preset cpu --ae-iters "$AE_ITERS" --ae-batch-size 4 --ae-crop 64 --ae-lr 2e-3 --latent-channels 4 \
    --preset cpu --iters "$ITERS" --batch-size 8 --crop 256 --lr 2e-4 --prediction v_prediction \
    --label-dropout 0.1 --overview-fraction 0.3 --checkpoint-every 250 --eval-every 500

# Copy the model (not its checkpoints) into the package, replacing the previous one only when complete.
rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
cp -r "$WORK/pathup.json" "$WORK/denoiser" "$WORK/autoencoder" "$WORK/scheduler" "$WORK/references" "$DEST.partial/"
# the attribution of the reference images (written by hand for data/demo) stays with them
if [ -f "$DEST/references/SOURCES.md" ] && [ ! -f "$DEST.partial/references/SOURCES.md" ]; then
    cp "$DEST/references/SOURCES.md" "$DEST.partial/references/"
fi
size_kb=$(du -sk "$DEST.partial" | cut -f1)
if [ "$size_kb" -gt $((MAX_MB * 1024)) ]; then
    echo "error: the model is ${size_kb} kB, more than ${MAX_MB} MB; not copied (see $DEST.partial)" >&2
    exit 1
fi
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "default model: $DEST (${size_kb} kB)"
"$PYTHON" -m napari_pathup info --model "$DEST"
