#!/usr/bin/env bash
# Download the wheels a training run needs on the lent GPU machine (the `device` tool's nvidia-h200
# image: Python 3.12 with torch, transformers, safetensors, accelerate, numpy, scipy, pillow, tifffile,
# but no diffusers or imagecodecs) into .whl/ (ignored by git; name it in the call's `carry`).
# Training imports no zarr, ome-zarr or dask; it needs diffusers (with importlib_metadata and
# lazy-importer), 6 MiB. imagecodecs (26 MiB), which decodes the JPEG tiles of data/demo's SVS, does
# not travel: scripts/device_tree.sh strip stores that slide's pixels losslessly instead
# (docs/training.md, "On a lent GPU").
#
#   scripts/device_wheels.sh && scripts/device_tree.sh strip   # then, on the device, first:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
# the versions this project is tested with here, and the needs the image lacks
DIFFUSERS="$("$PYTHON" -c 'import diffusers; print(diffusers.__version__)')"
rm -rf .whl.partial && mkdir -p .whl.partial
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl.partial "diffusers==$DIFFUSERS" "importlib_metadata>=8" "lazy-importer>=0.1"
rm -rf .whl && mv .whl.partial .whl
du -sh .whl && ls .whl
