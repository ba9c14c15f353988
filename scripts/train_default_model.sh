#!/usr/bin/env bash
# Train the shipped default model from data/demo and copy it to src/napari_pathup/data/default_model/.
#
#   scripts/train_default_model.sh                 # start, or resume after an interruption (same command)
#   ITERS=60000 scripts/train_default_model.sh     # train the denoiser further (resumes, then exports)
#   LR=5e-5 ITERS=32000 scripts/train_default_model.sh
#                                                  # a cool-down: the denoiser resumes at a lower rate
#   EXPORT_ONLY=1 scripts/train_default_model.sh   # stop here: export the latest denoiser checkpoint (an
#                                                  # adversarial leg's with the settings it was made with)
#   INIT=src/napari_pathup/data/default_model scripts/train_default_model.sh
#                                                  # a machine without the checkpoints: continue from the
#                                                  # shipped weights (autoencoder as shipped, denoiser warm
#                                                  # start with a fresh optimizer, iterations counted on)
#   AUTOENCODER=candidates/patch16 PRESET=cpu LATENT_CHANNELS=16 ITERS=14000 SEED=0 WORK=out/train-weak \
#       DEST=out/weak-model scripts/train_default_model.sh
#                                                  # version 4.9's weak denoiser: a small cpu-preset
#                                                  # denoiser from scratch on the line's autoencoder
#   INIT=candidates/patch16 ITERS=39000 DGAN_ITERS=43000 DGAN_WEIGHT=0.1 DGAN_MAX_T=400 DGAN_JUDGE=pair \
#       DGAN_CLASS_WEIGHTS="stroma=0 normal=2" DGAN_CROP_EMPHASIS="normal=3" \
#       SLIDE_REFERENCES="normal tumour" SLIDE_REFERENCES_SKIP=tumour/tumour_stardist.jpg \
#       SEED=3 CLASS_DEFAULTS="tumour:upscale_strength=0.9 stroma:scheduler=euler-a stroma:guidance=1.5 \
#       normal:overlap=4 tumour:overlap=4 normal:guidance_mode=auto normal:guidance=1.5" \
#       WEAK_DENOISER=out/weak-model WEAK_NOTE="preset cpu from scratch, 14,000 iterations" \
#       WORK=out/train-v45 DEST=out/v45-model scripts/train_default_model.sh
#   python scripts/experiments/average_denoisers.py out/v46-model out/v45-model out/v45-model \
#       candidates/patch16 --weights 0.8 0.2
#                                                  # the shipped version 4.9: version 4.5 (the line
#                                                  # above, its DEST) with its denoiser averaged in
#                                                  # weight space, 0.8 of it and 0.2 of the plain
#                                                  # 39,000 it was trained from (the record goes into
#                                                  # pathup.json "training"/"denoiser"/"weight_average"),
#                                                  # guidance at t/T <= 0.7 only (every export's
#                                                  # default since version 4.7; version 4.6 was the
#                                                  # same folder without "guidance_interval"),
#                                                  # normal and tumour at patch overlap 4 (versions 4.5
#                                                  # to 4.7: CLASS_DEFAULTS without the two overlap
#                                                  # entries), normal autoguided by the weak denoiser
#                                                  # at scale 1.5 (version 4.8: no WEAK_DENOISER and
#                                                  # no normal guidance entries; 4.9 itself was 4.8's
#                                                  # folder given the weak one by add_weak_denoiser.py)
#   python scripts/store_denoiser.py out/v46-model bfloat16
#                                                  # version 4.10: version 4.9's folder with its
#                                                  # denoiser stored in bfloat16 (the same bits where
#                                                  # the model runs in bfloat16; docs/model_card.md)
#   pathup train-decoder out/v46-model data/demo --out out/v411-model --iters 4500 --glass 0.25 \
#       --decoder-width 128 --device cpu --threads 1
#                                                  # the shipped version 4.11: version 4.10's folder (the
#                                                  # line above) with its decoder widened to 128 channels
#                                                  # and trained on with a glass term, the encoder frozen
#                                                  # (docs/training.md, "decoder leg")
#                                                  # version 4.5: version 4's leg from the
#                                                  # committed 39,000 of the sixteen-channel line with
#                                                  # seed 3, a reference from each slide of normal and
#                                                  # of tumour but StarDist's (scripts/slide_references.py)
#                                                  # and tumour's stage 2 at upscale strength 0.9,
#                                                  # stroma sampled by euler-a at guidance 1.5 (version 4.4:
#                                                  # guidance 2.5; version 4.3: CLASS_DEFAULTS tumour's alone; version 4.2: SLIDE_REFERENCES=normal
#                                                  # too; version 4.1: no CLASS_DEFAULTS); without SEED, version
#                                                  # 4's leg (version 4 itself ran from that line's work
#                                                  # folder, so that repeat is not bit-identical)
#   SNR_GAMMA=0 ITERS=40000 scripts/train_default_model.sh
#                                                  # a leg with the plain v loss (no min-SNR weighting)
#   WITH_EXTRA=1 WORK=out/train-v4 INIT=src/napari_pathup/data/default_model SNR_GAMMA=0 LR=1e-4 \
#       ITERS=44000 DEST=out/v4-model scripts/train_default_model.sh
#                                                  # the version-4 experiment (docs/model_experiments.md): the
#                                                  # shipped model trained on with data/extra as well
#   INIT=VERSION_3.1_COPY ITERS=27000 DGAN_ITERS=31000 DGAN_WEIGHT=0.1 DGAN_MAX_T=400 DGAN_JUDGE=pair \
#       DGAN_CLASS_WEIGHTS=stroma=0 WORK=out/train-dgan DEST=out/dgan-model scripts/train_default_model.sh
#                                                  # phase 2b, version 3.2's leg: version 3.1's denoiser
#                                                  # trained on from iteration 27,000 to 31,000 with a
#                                                  # latent adversarial term (training/denoiser_gan.py);
#                                                  # (version 3.2 is in git history: git archive c6b8dd5
#                                                  # src/napari_pathup/data/default_model; a new leg of
#                                                  # the shipped version 4.3: ITERS=43000 DGAN_ITERS=47000)
#   WORK=out/train-deep INIT=src/napari_pathup/data/default_model PRESET=cpu-deep STORAGE=float16 \
#       ITERS=60000 DEST=out/deep-model scripts/train_default_model.sh
#                                                  # the depth experiment: the shipped denoiser deepened
#                                                  # to two resnets per block (same function at the
#                                                  # start; training/grow.py), then trained on
#   AE_PRESET=patch LATENT_CHANNELS=16 AE_LR=5e-4 WORK=out/train-patch16 \
#       DEST=out/patch16-model scripts/train_default_model.sh
#                                                  # the patch-autoencoder experiment (eleventh session):
#                                                  # a 16-channel PatchAutoencoder and a new denoiser
#   mkdir out/snap && cp -r out/train-patch16/checkpoints out/snap/ && EXPORT_ONLY=1 STORAGE=float16 \
#       AE_PRESET=patch LATENT_CHANNELS=16 AE_LR=5e-4 WORK=out/snap DEST=candidates/patch16 \
#       scripts/train_default_model.sh             # an unshipped line's continuation point, committed
#                                                  # (candidates/README.md): the latest checkpoint of a
#                                                  # copy (the line may go on training), half precision
#   INIT=candidates/patch16 WORK=out/train-patch16-b DEST=out/patch16-model ITERS=48000 \
#       scripts/train_default_model.sh             # a machine without the line's work folder continues it
#                                                  # (STORAGE=float16 for a cpu-xl line; the preset is
#                                                  # INIT's own): its rate warms up again over 500
#                                                  # iterations, its EMA goes on at the decay it had reached
#   AUTOENCODER=out/train-patch16/checkpoints/decoder/final PRESET=cpu-xl WORK=out/train-patch16-xl \
#       DEST=out/patch16-xl-model scripts/train_default_model.sh
#                                                  # another denoiser on a line's finished autoencoder
#                                                  # (its encoder, GAN decoder and latent scale, as is)
# (DATA, WORK and DEST override the data folder, the work folder and where the model is copied;
#  THREADS the torch threads of each process; BATCH the denoiser's latent crops per iteration (8, every
#  shipped version's; a GPU affords more: scripts/device_train.sh); CHECKPOINT_EVERY how often every
#  phase checkpoints (250 iterations); SEED the training's seed (0: every shipped version but 4.1, 3);
#  EVAL_EVERY how often the denoiser's hold-out validation loss is measured (1000 iterations);
#  DEVICE where the networks train (cpu; cuda where a GPU is lent: the checkpoints load onto the
#  device and the data order and noise are drawn on the CPU either way; first run on an H200 in the
#  thirty-first session by scripts/device_train.sh: docs/training.md, "On a lent GPU");
#  DGAN_ITERS the denoiser's iteration count at the end of its adversarial leg (0: none), DGAN_WEIGHT,
#  DGAN_LR, DGAN_MAX_T and DGAN_JUDGE its adversarial weight, learning rate, the timesteps it judges and
#  what its discriminator sees (clean latents, pairs, or pixel: the decoder's painting beside the
#  noisy latent; pair+pixel: both every step); DGAN_CLASS_WEIGHTS="stroma=0" its factor per
#  class (with pair+pixel the pair judge's, DGAN_PIXEL_CLASS_WEIGHTS="normal=0" the pixel judge's);
#  DGAN_CROP_EMPHASIS="normal=3" draws a class's cellular crops more often during the leg.
#  SLIDE_REFERENCES="normal" gives the exported model one reference per training slide of those classes
#  (scripts/slide_references.py; versions 4 to 4.2: normal; 4.3: normal tumour), SLIDE_REFERENCES_SKIP
#  the slides left out by key (4.3: tumour/tumour_stardist.jpg, a 256x296 window).
#  WITH_EXTRA=1 trains on data/demo, with its hold-outs, plus data/extra, training-only fields,
#  linked together into $WORK.data.)
#
# Recipe (docs/model_card.md says why):
#   1  autoencoder   AutoencoderTiny, cpu preset (32 wide, no normalisation layers), 8 latent channels,
#                    L1 + gradient + stain-density loss, batch 8 x 64 px, AE_ITERS iterations
#   1b decoder       the decoder retrained as a conditional GAN against the frozen encoder: patch
#                    discriminator (trained from scratch; no pretrained feature network anywhere), hinge
#                    loss, Adam betas (0.9, 0.9), H&E stain jitter, batch 4 x 96 px; adversarial weight
#                    raised in legs that each resume from the last checkpoint (GAN_LEGS, "until:weight"):
#                    0.5 (ramped over 500 iterations) up to 2,000, 2.0 up to 4,000, 3.0 up to 8,000,
#                    4.0 up to 12,000 (each lighter term left the outputs blurrier than real: hold-out
#                    sharpness 0.57, 0.62, 0.74, then 0.82 of real)
#   2  denoiser      UNet2DModel cpu-large preset (7.2 M parameters), v-prediction, min-SNR-5 weighting,
#                    EMA, flips/rot90, H&E stain jitter (orientations 1-7 of the latent bank), class
#                    dropout 0.1 for guidance, batch 8 x 32^2 latents, ITERS iterations
#   2b denoiser GAN  (DGAN_ITERS > 0) the finished denoiser trained on with a latent adversarial term: a
#                    class-projection discriminator on 8x32x32 latents (from scratch) judges the denoiser's
#                    clean-latent predictions below timestep DGAN_MAX_T (750), alone or (DGAN_JUDGE=pair)
#                    beside the noisy latent; hinge loss, weight DGAN_WEIGHT (ramped over 500 iterations)
#                    against the v loss, per class DGAN_CLASS_WEIGHTS, lr DGAN_LR, up to DGAN_ITERS
#                    iterations. Version 3.2: 27,000 to 31,000, weight 0.1, below 400, pair, stroma=0
#   defaults         guidance at the noise levels t/T <= 0.7 only (version 4.7); upscale strength 0.75 instead of 0.45 (measured with bench_default_model.py --quick
#                    on this model: sharper stage 2 at the same FD and class fidelity, 15 instead of 9
#                    stage-2 steps; 0.6 until bfloat16 on the CPU made room for the cost; docs/model_card.md);
#                    CLASS_DEFAULTS="CLASS:KEY=VALUE ..." sets one class's own (pathup.json "class_defaults")
#   weak denoiser    (WEAK_DENOISER=MODEL) MODEL's denoiser, in float16, as weak_denoiser/ for the classes
#                    whose guidance_mode is auto (autoguidance); WEAK_NOTE says what it is (pathup.json)
# Phases 1b and 2 need only the finished encoder, so they run as two processes at once. Every phase
# checkpoints every 250 iterations into $WORK/checkpoints and resumes exactly from the latest one.
# The body is one { ... } block ending in exit: bash reads all of it before running any, so editing this
# file while a training runs (hours) cannot change what the running copy does next.
{
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
WORK="${WORK:-$REPO/out/train-default-model}"
THREADS="${THREADS:-1}"
SEED="${SEED:-0}"  # the training's random streams (data order, noise, dropout); a repeat with another seed
AE_ITERS="${AE_ITERS:-8000}"
AE_PRESET="${AE_PRESET:-cpu}"  # patch: PatchAutoencoder, started from the blocks' principal components
LATENT_CHANNELS="${LATENT_CHANNELS:-8}"
AE_LR="${AE_LR:-2e-3}"  # 5e-4 for patch: it starts from a good linear codec, not from noise
GAN_LEGS="${GAN_LEGS:-2000:0.5 4000:2.0 8000:3.0 12000:4.0}"
GAN_ITERS="${GAN_LEGS##*[ ]}"; GAN_ITERS="${GAN_ITERS%%:*}"  # the last leg's end
ITERS="${ITERS:-40000}"
LR="${LR:-2e-4}"  # the denoiser's; may change on resume (a cool-down: LR=5e-5 ITERS=32000 ...)
SNR_GAMMA="${SNR_GAMMA:-5}"  # the denoiser's min-SNR-γ loss weighting (0: none); may change on resume
DGAN_ITERS="${DGAN_ITERS:-0}"  # phase 2b: the denoiser's iteration count after its adversarial leg
DGAN_WEIGHT="${DGAN_WEIGHT:-0.1}"
DGAN_LR="${DGAN_LR:-5e-5}"
DGAN_MAX_T="${DGAN_MAX_T:-750}"
DGAN_JUDGE="${DGAN_JUDGE:-clean}"
CLASS_DEFAULT_ARGS=()  # CLASS_DEFAULTS="tumour:upscale_strength=0.9 ...": one class's synthesis defaults
for setting in ${CLASS_DEFAULTS:-}; do CLASS_DEFAULT_ARGS+=(--set-class-default "$setting"); done
if [[ " ${CLASS_DEFAULTS:-} " == *guidance_mode=auto* ]] && [ -z "${WEAK_DENOISER:-}" ]; then
    echo "error: CLASS_DEFAULTS autoguide a class (guidance_mode=auto), and WEAK_DENOISER names no model" \
        "whose denoiser would be its weak denoiser" >&2
    exit 1
fi
DGAN_CLASS_ARGS=()  # DGAN_CLASS_WEIGHTS="stroma=0 ...": the adversarial weight's factor per class
for factor in ${DGAN_CLASS_WEIGHTS:-}; do DGAN_CLASS_ARGS+=(--denoiser-gan-class-weight "$factor"); done
pixel_factor_args() {  # DGAN_PIXEL_CLASS_WEIGHTS="normal=0 ...": the pixel judge's (judge pair+pixel)
    for factor in ${DGAN_PIXEL_CLASS_WEIGHTS:-}; do
        DGAN_CLASS_ARGS+=(--denoiser-gan-pixel-class-weight "$factor")
    done
}
pixel_factor_args
emphasis_args() {  # DGAN_CROP_EMPHASIS="normal=3 ...": how much more often the leg draws cellular crops
    for factor in ${DGAN_CROP_EMPHASIS:-}; do DGAN_CLASS_ARGS+=(--denoiser-gan-crop-emphasis "$factor"); done
}
emphasis_args
DATA="${DATA:-}"
WITH_EXTRA="${WITH_EXTRA:-}"
DEST="${DEST:-$REPO/src/napari_pathup/data/default_model}"
INIT="${INIT:-}"
AUTOENCODER="${AUTOENCODER:-}"  # a trained autoencoder (folder or model) instead of phases 1 and 1b
# the denoiser's preset: cpu-large, or with INIT the INIT denoiser's own (none passed for an architecture
# no preset names); PRESET=cpu-deep with a cpu-large INIT deepens it
if [ -n "$INIT" ] && [ -z "${PRESET+set}" ]; then
    PRESET="$("$PYTHON" -c 'import json, sys; from napari_pathup.models.build import preset_of
print(preset_of(json.load(open(sys.argv[1]))) or "")' "$INIT/denoiser/config.json")" || exit 1
fi
[ -n "$INIT" ] || PRESET="${PRESET:-cpu-large}"
STORAGE="${STORAGE:-float32}"  # the exported denoiser's weights: float16 keeps cpu-deep under MAX_MB
MAX_MB=45  # 40 until version 4.9 (44.2 MB with its float32 denoiser and weak one); the shipped folder
           # is 29.8 MB since version 4.10 (30.6 MB in 4.11) re-stored that denoiser in bfloat16 (store_denoiser.py, after
           # the float32 export and average), and the package's test holds it to 40 again

[ -n "$DATA" ] || [ -f data/demo/holdout.json ] || "$PYTHON" scripts/prepare_demo_data.py
if [ -z "$DATA" ] && [ -z "$WITH_EXTRA" ]; then
    DATA=data/demo  # the shipped model's data
elif [ -z "$DATA" ]; then  # data/demo (its hold-outs too) and data/extra (training only), as links
    DATA="$WORK.data"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    cp data/demo/holdout.json "$DATA/"
    for f in data/demo/*/* data/extra/*/*; do
        class="$(basename "$(dirname "$f")")"
        mkdir -p "$DATA/$class"
        ln -s "$REPO/$f" "$DATA/$class/"
    done
fi

export OMP_WAIT_POLICY=PASSIVE  # threads yield instead of spinning when THREADS > 1
train() {
    "$PYTHON" -m napari_pathup train "$DATA" --out "$WORK" --resume --seed "$SEED" --device "${DEVICE:-cpu}" --threads "$THREADS" \
        --ae-preset "$AE_PRESET" --ae-iters "$AE_ITERS" --ae-batch-size 8 --ae-crop 64 --ae-lr "$AE_LR" \
        --latent-channels "$LATENT_CHANNELS" \
        --gan-iters "${LEG_ITERS:-$GAN_ITERS}" --gan-weight "${LEG_WEIGHT:-${GAN_LEGS##*:}}" \
        --gan-batch-size 4 --gan-crop 96 --gan-lr 1e-4 \
        --hed-jitter 0.05 0.02 \
        ${PRESET:+--preset "$PRESET"} --batch-size "${BATCH:-8}" --crop 256 --lr "$LR" --snr-gamma "$SNR_GAMMA" --prediction v_prediction \
        --label-dropout 0.1 --overview-fraction 0.3 --checkpoint-every "${CHECKPOINT_EVERY:-250}" --eval-every "${EVAL_EVERY:-1000}" \
        --denoiser-gan-iters "$DGAN_ITERS" --denoiser-gan-weight "$DGAN_WEIGHT" --denoiser-gan-lr "$DGAN_LR" \
        --denoiser-gan-max-timestep "$DGAN_MAX_T" --denoiser-gan-judge "$DGAN_JUDGE" "${DGAN_CLASS_ARGS[@]}" \
        --set-default upscale_strength=0.75 --set-default 'guidance_interval=[0,0.7]' "${CLASS_DEFAULT_ARGS[@]}" \
        --denoiser-storage "$STORAGE" \
        ${INIT:+--init "$INIT"} ${AUTOENCODER:+--autoencoder "$AUTOENCODER"} "$@"
}

latest_denoiser_iteration() {
    "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["iteration"])' \
        "$WORK/checkpoints/denoiser/latest.json"
}

if [ -n "${EXPORT_ONLY:-}" ] && [ -f "$WORK/checkpoints/denoiser_gan/latest.json" ]; then
    # the leg's iterations from its latest checkpoint, its settings from the work folder's config.json
    read -r ITERS DGAN_ITERS DGAN_WEIGHT DGAN_LR DGAN_MAX_T DGAN_JUDGE DGAN_CROP_EMPHASIS DGAN_PIXEL_CLASS_WEIGHTS \
        DGAN_CLASS_WEIGHTS < <("$PYTHON" -c '
import json, sys
d = sys.argv[1] + "/checkpoints"
latest = json.load(open(d + "/denoiser_gan/latest.json"))
start = json.load(open(d + "/denoiser_gan/" + latest["path"] + "/state.json"))["start"]
c = json.load(open(d + "/config.json"))
factors = " ".join(f"{k}={v}" for k, v in c.get("denoiser_gan_class_weights", {}).items())
emphasis = ",".join(f"{k}={v}" for k, v in c.get("denoiser_gan_crop_emphasis", {}).items()) or "-"
pixel = ",".join(f"{k}={v}" for k, v in c.get("denoiser_gan_pixel_class_weights", {}).items()) or "-"
print(start, latest["iteration"], c["denoiser_gan_weight"], c["denoiser_gan_lr"],
      c.get("denoiser_gan_max_timestep", 750), c.get("denoiser_gan_judge", "clean"), emphasis, pixel,
      factors)' "$WORK")
    DGAN_CLASS_ARGS=()
    for factor in $DGAN_CLASS_WEIGHTS; do DGAN_CLASS_ARGS+=(--denoiser-gan-class-weight "$factor"); done
    [ "$DGAN_CROP_EMPHASIS" = - ] && DGAN_CROP_EMPHASIS="" || DGAN_CROP_EMPHASIS="${DGAN_CROP_EMPHASIS//,/ }"
    emphasis_args
    [ "$DGAN_PIXEL_CLASS_WEIGHTS" = - ] && DGAN_PIXEL_CLASS_WEIGHTS="" \
        || DGAN_PIXEL_CLASS_WEIGHTS="${DGAN_PIXEL_CLASS_WEIGHTS//,/ }"
    pixel_factor_args
    pixel_note="${DGAN_PIXEL_CLASS_WEIGHTS:+, pixel judge $DGAN_PIXEL_CLASS_WEIGHTS}"
    echo "exporting the adversarial denoiser checkpoint of iteration $DGAN_ITERS (from $ITERS; weight" \
        "$DGAN_WEIGHT below timestep $DGAN_MAX_T, judge $DGAN_JUDGE${DGAN_CLASS_WEIGHTS:+, $DGAN_CLASS_WEIGHTS}$pixel_note)"
elif [ -n "${EXPORT_ONLY:-}" ]; then
    ITERS="$(latest_denoiser_iteration)"
    echo "exporting the denoiser checkpoint of iteration $ITERS"
elif [ -n "$INIT" ] || [ -n "$AUTOENCODER" ]; then  # the autoencoder is given: only the denoiser trains
    train --iters "$ITERS" --phases denoiser
else
    train --iters "$ITERS" --phases autoencoder
    (for leg in $GAN_LEGS; do  # a finished leg returns at once on a rerun
        LEG_ITERS="${leg%%:*}" LEG_WEIGHT="${leg##*:}" train --iters "$ITERS" --phases decoder || exit 1
    done) > "$WORK.decoder.log" 2>&1 &
    decoder=$!
    train --iters "$ITERS" --phases denoiser
    wait "$decoder"
fi
# all phases finished (or stopped at $ITERS): no training happens here, only the export
train --iters "$ITERS" --quiet

# Copy the model (not its checkpoints) into the package, replacing the previous one only when complete.
rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
cp -r "$WORK/pathup.json" "$WORK/denoiser" "$WORK/autoencoder" "$WORK/scheduler" "$WORK/references" "$DEST.partial/"
# the attribution of the reference images (written by hand for data/demo) stays with them
if [ -f "$DEST/references/SOURCES.md" ] && [ ! -f "$DEST.partial/references/SOURCES.md" ]; then
    cp "$DEST/references/SOURCES.md" "$DEST.partial/references/"
fi
[ -f "$DEST/README.md" ] && cp "$DEST/README.md" "$DEST.partial/"  # a candidate's (candidates/): update it
if [ -n "${SLIDE_REFERENCES:-}" ]; then  # word splitting intended: class names
    # shellcheck disable=SC2086
    "$PYTHON" scripts/slide_references.py "$DEST.partial" --data "$DATA" --classes $SLIDE_REFERENCES \
        ${SLIDE_REFERENCES_SKIP:+--skip $SLIDE_REFERENCES_SKIP}
fi
if [ -n "${WEAK_DENOISER:-}" ]; then  # a PathUp model whose denoiser autoguides (scripts/add_weak_denoiser.py)
    "$PYTHON" scripts/add_weak_denoiser.py "$DEST.partial" "$WEAK_DENOISER" --float16 \
        --note "${WEAK_NOTE:-}" > /dev/null
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
exit
}
