#!/usr/bin/env bash
# Shrink the checkout to what a training run on the lent GPU needs (the `device` tool sends the
# working tree, at most 64 MiB), and put it back afterwards (docs/training.md, "On a lent GPU").
#
#   scripts/device_wheels.sh && scripts/device_tree.sh strip    # then the `run` call (carry .whl)
#   scripts/device_tree.sh restore
#
# strip moves the shipped model, docs/img, data/extra, tests and the candidates' references (the
# export draws references from the data) to $STASH, and replaces data/demo's SVS by a lossless tiled
# TIFF of the same name holding the pixels imagecodecs decodes (zlib, 6.8 MB; the device has no
# imagecodecs, whose wheel is 26 MiB), then prints what would travel. restore undoes both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
STASH="${STASH:-/tmp/pathup-device-stash}"
SVS=data/demo/normal/cmu_small_region.svs
MOVED=(src/napari_pathup/data/default_model docs/img data/extra tests
    candidates/patch16/references candidates/patch16-xl/references)

case "${1:-}" in
strip)
    [ ! -e "$STASH" ] || { echo "error: $STASH exists: restore first" >&2; exit 1; }
    for path in "${MOVED[@]}" "$SVS"; do
        mkdir -p "$STASH/$(dirname "$path")"
        mv "$path" "$STASH/$path"
    done
    "$PYTHON" - "$STASH/$SVS" "$SVS" <<'EOF'
import sys

import numpy as np
import tifffile

from napari_pathup.io.images import read_image

source, target = sys.argv[1:]
pixels = read_image(source)
description = tifffile.TiffFile(source).pages[0].description  # Aperio's, with the slide's scale
tifffile.imwrite(target + ".partial", pixels, tile=(256, 256), compression="zlib",
                 compressionargs={"level": 9}, predictor=True, description=description,
                 photometric="rgb")
# a TIFF of that name reads through tifffile's own zlib, without imagecodecs
assert np.array_equal(tifffile.imread(target + ".partial", key=0), pixels)
EOF
    mv "$SVS.partial" "$SVS"
    # (du complains of the moved files, which git still lists: their sizes are what travels no more)
    tree=$( (git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2> /dev/null || true) | tail -n 1 | cut -f1)
    wheels=$( (du -cb .whl/* 2> /dev/null || true) | tail -n 1 | cut -f1)
    echo "would travel: $((tree / 1048576)) MiB of tree + $((wheels / 1048576)) MiB of .whl (limit 64 MiB)"
    ;;
restore)
    [ -d "$STASH" ] || { echo "error: nothing stashed in $STASH" >&2; exit 1; }
    rm -f "$SVS"
    for path in "${MOVED[@]}" "$SVS"; do
        [ ! -e "$path" ] || { echo "error: $path exists: not overwritten" >&2; exit 1; }
        mv "$STASH/$path" "$path"
    done
    rm -rf "$STASH"
    git status --short
    ;;
*)
    echo "usage: $0 strip|restore" >&2
    exit 2
    ;;
esac
