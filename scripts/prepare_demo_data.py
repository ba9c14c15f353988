"""Build the demo training folder ``data/demo/<class>/...`` from the shared real H&E images.

Run: ``python scripts/prepare_demo_data.py [SHARED_HE_FOLDER] [--out data/demo] [--force]``
(default source: ``../shared/data/he`` relative to the repository). Every file is copied unchanged
after its sha256 is checked against the source's ``SOURCES.md``; the Aperio slide stays an .svs
(``pathup train`` reads its level 0 through tifffile). The script also writes ``holdout.json`` (the
region of every image that training never reads; all quality figures are measured there) and
``SOURCES.md`` (attribution, licences, checksums and the hold-out rationale).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "he"

#: class → images (file names in the shared folder)
CLASSES: dict[str, tuple[str, ...]] = {
    "tumour": ("hgsc_tumour_nest.jpg", "carcinoma_tia_target.png", "tumour_stardist.jpg"),
    "stroma": ("hgsc_stroma.jpg",),
    "normal": ("skin.tif", "cmu_small_region.svs"),
}

#: image → hold-out rectangle (x, y, width, height in level-0 pixels) and why it lies there
HOLDOUT: dict[str, tuple[tuple[int, int, int, int], str]] = {
    "hgsc_tumour_nest.jpg": (
        (416, 352, 512, 512),
        "Centre of the tumour nest. Placed with hgsc_tumour_nest_type_mask.npz: of all 512x512 windows on a "
        "32-pixel grid this one has the purest neoplastic nuclei (type 3: 99% of its typed nuclei) and holds "
        "47% of the field's neoplastic nuclei, so the rest of the nest (its lower and right parts) stays in "
        "training. The right-most strip was avoided: it is mostly stroma-like tissue, not tumour.",
    ),
    "carcinoma_tia_target.png": (
        (0, 0, 512, 512),
        "Top-left quarter: dense carcinoma with small lumina. The lymphocyte-rich and stromal right edge "
        "and the lower half stay in training (bands 488 pixels wide).",
    ),
    "tumour_stardist.jpg": (
        (256, 0, 244, 300),
        "Right part of a small 500x300 field. A hold-out and a training crop cannot both be 256 pixels wide "
        "here, so training keeps exactly one 256-pixel column (x 0-255) and the hold-out takes the rest "
        "(244x300: one 244-pixel or 224-pixel evaluation crop).",
    ),
    "hgsc_stroma.jpg": (
        (988, 988, 512, 512),
        "Bottom-right corner of a homogeneous stromal field; the L-shaped rest (bands 988 pixels wide) keeps "
        "room for overview-scale crops. 512x512: four 256-pixel or one 512-pixel evaluation crop.",
    ),
    "skin.tif": (
        (768, 0, 512, 960),
        "Right-most 512-pixel strip over the full height, so that it holds the same sequence as the training "
        "part (glass, stratum corneum, epidermis with rete ridges, dermis). 10x magnification.",
    ),
    "cmu_small_region.svs": (
        (512, 2455, 1376, 512),
        "Bottom 512 rows of the slide crop, limited to the tissue columns (dermis, epidermis and an adnexal "
        "structure); the slide is mostly white background, which is neither trained on (tissue filter) nor "
        "worth holding out. The top 2455 rows remain for training.",
    ),
}

SUMMARY = """\
Hold-out regions (pixel rectangles, level 0) are listed in holdout.json. `pathup train` never reads
them: each image is cut into the bands above, below, left and right of its hold-out rectangle and
every training crop (and every autoencoder tile used to encode training latents) lies inside one
band. All quality figures (autoencoder PSNR, denoiser validation loss, FID/KID of syntheses) are
measured on crops of the hold-out regions. The nuclei type mask hgsc_tumour_nest_type_mask.npz
(not copied here) was used only to place the tumour-nest hold-out.
"""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def expected_checksums(sources_md: str) -> dict[str, str]:
    """``<64 hex>  <file>`` lines of the shared SOURCES.md."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^([0-9a-f]{64})\s+(\S+)\s*$", sources_md, re.M)}


def attribution_rows(sources_md: str, files: set[str]) -> list[str]:
    """The table header and the rows of the shared SOURCES.md for ``files``."""
    lines = sources_md.splitlines()
    header = [line for line in lines if line.startswith("| file |") or line.startswith("|---")]
    rows = [line for line in lines if line.startswith("| ") and line.split("|")[1].strip() in files]
    return header[:2] + rows


def write_sources(out: Path, sources_md: str, checksums: dict[str, str], source: Path) -> None:
    files = {name for names in CLASSES.values() for name in names}
    table = attribution_rows(sources_md, files)
    holdout_rows = ["| image | x | y | width | height | why |", "|---|---|---|---|---|---|"]
    for cls, names in CLASSES.items():
        for name in names:
            (x, y, w, h), why = HOLDOUT[name]
            holdout_rows.append(f"| {cls}/{name} | {x} | {y} | {w} | {h} | {why} |")
    text = [
        "# Demo training data (real H&E)",
        "",
        "Copied unchanged (sha256 checked) from the shared offline image folder by",
        "`scripts/prepare_demo_data.py`; the attribution below comes from that folder's SOURCES.md. Keep it",
        "wherever these files are redistributed.",
        "",
        "Classes: " + "; ".join(f"{c}: {', '.join(n)}" for c, n in CLASSES.items()) + ".",
        "",
        *table,
        "",
        "Reading note: cmu_small_region.svs is an Aperio SVS kept as it is; its level 0 (2220x2967, 20x) is",
        "read through tifffile (JPEG tiles need imagecodecs).",
        "",
        "## Hold-out regions",
        "",
        SUMMARY,
        *holdout_rows,
        "",
        "## sha256",
        "",
        "```",
        *(f"{checksums[name]}  {cls}/{name}" for cls, names in CLASSES.items() for name in names),
        "```",
        "",
    ]
    (out / "SOURCES.md").write_text("\n".join(text))


def write_holdout(out: Path) -> None:
    regions = {}
    for cls, names in CLASSES.items():
        for name in names:
            (x, y, w, h), why = HOLDOUT[name]
            regions[f"{cls}/{name}"] = {"x": x, "y": y, "width": w, "height": h, "why": why}
    data = {"version": 1, "description": " ".join(SUMMARY.split()), "regions": regions}
    (out / "holdout.json").write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="shared H&E folder")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "demo", help="demo folder (data/demo)")
    parser.add_argument("--force", action="store_true", help="replace an existing demo folder")
    args = parser.parse_args(argv)

    source: Path = args.source
    sources_md = (source / "SOURCES.md").read_text()
    expected = expected_checksums(sources_md)
    checksums = {}
    for names in CLASSES.values():
        for name in names:
            if name not in expected:
                print(f"error: {name} has no sha256 in {source / 'SOURCES.md'}", file=sys.stderr)
                return 1
            got = sha256(source / name)
            if got != expected[name]:
                print(f"error: {source / name} has sha256 {got}, expected {expected[name]}", file=sys.stderr)
                return 1
            checksums[name] = got
    out: Path = args.out
    if out.exists():
        if not args.force:
            print(f"error: {out} exists; pass --force to replace it", file=sys.stderr)
            return 1
        shutil.rmtree(out)
    for cls, names in CLASSES.items():
        (out / cls).mkdir(parents=True)
        for name in names:
            shutil.copyfile(source / name, out / cls / name)
            if sha256(out / cls / name) != checksums[name]:
                print(f"error: copy of {name} differs from its source", file=sys.stderr)
                return 1
    write_holdout(out)
    write_sources(out, sources_md, checksums, source)
    print(
        f"wrote {out}: {sum(len(n) for n in CLASSES.values())} images in {len(CLASSES)} classes, "
        "holdout.json, SOURCES.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
