#!/usr/bin/env bash
# Hub readiness: build the wheel, check what it carries, install it into a fresh virtual environment
# (no --system-site-packages, no source checkout on the path) with napari, and check that napari's
# plugin engine lists and validates the plugin, that the embedded model synthesises an image, and
# that a headless viewer opens the sample data and docks the Synthesize widget.
#
#   bash scripts/check_wheel.sh [WORKDIR]      (default: a new temporary folder; 15-30 min, 6.8 GB)
#   REUSE_VENV=1 bash scripts/check_wheel.sh WORKDIR   (a rerun: reinstalls only the new wheel)
#
# Needs: python3 with venv, network access to PyPI (or a pip cache), xvfb-run for the viewer check
# (skipped with a note when missing). torch is pinned as in .ci/run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d /tmp/pathup-wheel.XXXXXX)}"
mkdir -p "$WORK"
BUILD_PY="${BUILD_PY:-$ROOT/.venv/bin/python}"
[ -x "$BUILD_PY" ] || BUILD_PY=python3
step() { printf '\n== %s\n' "$*"; }

step "build sdist and wheel into $WORK/dist"
rm -rf "$WORK/dist"
"$BUILD_PY" -m build --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/napari_pathup-*.whl)"
ls -l "$WORK/dist"

step "the wheel carries the manifest, the shipped model and the sample data"
for path in napari_pathup/napari.yaml \
    napari_pathup/data/default_model/pathup.json \
    napari_pathup/data/default_model/denoiser/diffusion_pytorch_model.safetensors \
    napari_pathup/data/default_model/autoencoder/diffusion_pytorch_model.safetensors \
    napari_pathup/data/default_model/scheduler/scheduler_config.json \
    napari_pathup/data/default_model/references/tumour.png \
    napari_pathup/data/default_model/references/stroma.png \
    napari_pathup/data/default_model/references/normal.png \
    napari_pathup/data/default_model/references/SOURCES.md; do
    unzip -l "$WHEEL" "$path" > /dev/null || { echo "MISSING in the wheel: $path"; exit 1; }
    echo "ok  $path"
done
unzip -p "$WHEEL" '*.dist-info/entry_points.txt' | grep -A1 'napari.manifest'
unzip -p "$WHEEL" '*.dist-info/METADATA' | grep -E '^(Name|Version|Summary|License-Expression|Project-URL|Classifier: Framework)'

step "fresh virtual environment in $WORK/venv (torch==2.14.1 as in .ci/run, then the wheel with its napari extra, npe2)"
PY="$WORK/venv/bin/python"
if [ "${REUSE_VENV:-0}" = 1 ] && [ -x "$PY" ]; then  # a rerun: keep the dependencies, replace the wheel
    "$PY" -m pip install --quiet --force-reinstall --no-deps "$WHEEL"
else
    rm -rf "$WORK/venv"
    python3 -m venv "$WORK/venv"
    "$PY" -m pip install --quiet torch==2.14.1
    "$PY" -m pip install --quiet "${WHEEL}[napari]" npe2 twine  # the README's install for napari users
fi
du -sh "$WORK/venv"

cd "$WORK"  # away from the checkout: nothing may come from the source tree
unset PYTHONPATH

step "twine check: the README renders as the long description"
"$PY" -m twine check "$WORK"/dist/*

step "the plugin is installed from the wheel, not the checkout"
"$PY" - <<'EOF'
import importlib.metadata as md
import napari_pathup

print("napari_pathup from", napari_pathup.__file__)
assert "site-packages" in napari_pathup.__file__, "imported from a source tree"
print("napari-pathup", md.version("napari-pathup"))
EOF

step "npe2 list / npe2 validate"
"$WORK/venv/bin/npe2" list | grep -E 'name|napari-pathup'
"$WORK/venv/bin/npe2" validate napari-pathup

step "the embedded default model synthesises a 128x128 image (CPU, 6 steps)"
OMP_NUM_THREADS=1 "$PY" - <<'EOF'
import numpy as np
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.models.default import default_model_path, reference_for_class
from napari_pathup.models.load import load_model
from napari_pathup.io import read_image

folder = default_model_path()
print("default model at", folder)
model = load_model(folder)
reference = read_image(reference_for_class(model, "tumour"))
result = run(model, reference, SynthesisSettings("tumour", height=128, width=128, steps=6, seed=0))
image = np.asarray(result.image)
print("synthesised", image.shape, image.dtype, "mean", round(float(image.mean()), 1))
assert image.shape == (128, 128, 3) and image.std() > 0
EOF

step "napari: sample data and the Synthesize widget in a headless viewer"
if command -v xvfb-run > /dev/null; then
    OMP_NUM_THREADS=1 xvfb-run -a "$PY" - <<'EOF'
import napari

viewer = napari.Viewer(show=False)
layers = viewer.open_sample("napari-pathup", "tumour")
print("sample layer", layers[0].name, layers[0].data.shape)
_, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Synthesize")
print("docked", type(widget).__name__, "classes", list(widget.class_name.choices))
viewer.close()
EOF
else
    echo "xvfb-run not found: viewer check skipped"
fi
step "all wheel checks passed ($WORK)"
