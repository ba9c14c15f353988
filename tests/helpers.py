"""Helpers shared by the test modules (importable as ``helpers``: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from napari_pathup.models.patch_autoencoder import PatchAutoencoder

#: ``pathup train`` settings of a tiny run on one thread (tests/training): tiny presets, small crops
TINY_TRAINING: dict[str, Any] = {
    "ae_preset": "tiny",
    "ae_iters": 3,
    "ae_batch_size": 2,
    "ae_crop": 32,
    "preset": "tiny",
    "batch_size": 2,
    "crop": 64,
    "checkpoint_every": 2,
    "eval_every": 2,
    "reference_size": 128,
    "progress": False,
    "threads": 1,
}

#: the repository's real H&E demo data (data/demo)
DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A seeded random (H, W, 3) uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def synthesize_argv(model, reference, out, *extra: str, size: str = "128") -> list[str]:
    """``pathup synthesize`` of a tiny CPU run (4 steps, 64-px stage 1) of class tumour."""
    return [
        "synthesize",
        "--model",
        str(model),
        "--class",
        "tumour",
        "--reference",
        str(reference),
        "--out",
        str(out),
        "--size",
        size,
        "--steps",
        "4",
        "--reference-size",
        "64",
        "--quiet",
        "--device",
        "cpu",
        *extra,
    ]


def mean_2x2_reference(image: np.ndarray) -> np.ndarray:
    """2x2 mean down-sampling with rounding, written independently of the package's pyramid code."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    a = image[:h, :w].astype(np.int64)
    return ((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2] + 2) // 4).astype(np.uint8)


class Recording:
    """Array-like that remembers how much was read from it, to prove that input is read in pieces."""

    def __init__(self, data: np.ndarray, fail_after: int | None = None):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.largest = self.total = self.calls = 0
        self.fail_after = fail_after

    def __getitem__(self, key):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("source failed")
        block = self.data[key]
        self.largest, self.total = max(self.largest, block.size), self.total + block.size
        return block


def menu_command_ids(menu_id: str) -> list[str]:
    """The command ids napari's app model lists in a menu (e.g. ``napari/layers/measure``)."""
    from napari._app_model import get_app_model

    return [item.command.id for item in get_app_model().menus.get_menu(menu_id) if hasattr(item, "command")]


def demo_crops(root: Path, spec: dict[str, list[tuple[str, list[tuple[int, int]]]]], size: int) -> Path:
    """Class folders of ``size`` x ``size`` crops of the demo images: ``spec`` maps a class to
    (demo image, top-left corners); each crop is saved as its own PNG, one "source image" each."""
    from PIL import Image

    from napari_pathup.io.images import read_image

    for cls, sources in spec.items():
        (root / cls).mkdir(parents=True)
        for name, corners in sources:
            image = read_image(DEMO / name)
            for y, x in corners:
                crop = image[y : y + size, x : x + size]
                Image.fromarray(crop).save(root / cls / f"{Path(name).stem}_{y}_{x}.png")
    return root


def synthetic_store(data: Path, store: Path, *, failed: bool = False) -> Path:
    """A synthetic store as ``pathup augment`` writes it: one OME-Zarr per real image of ``data`` and its
    manifest, written by the augment module's own writer; with ``failed``, also one failed row.

    The images are flipped, colour-shifted copies of their reference (the generator is not under test)."""
    from napari_pathup.augmentation.manifest import MANIFEST_NAME, ManifestRow, write_manifest
    from napari_pathup.io.images import read_image
    from napari_pathup.io.ome_zarr import write_ome_zarr

    store.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, ref in enumerate(sorted(data.glob("*/*.png"))):
        image = read_image(ref)[::-1].astype(np.int16)
        image = np.clip(image + np.array([-6, 4, 6]), 0, 255).astype(np.uint8)
        out = f"{ref.parent.name}/{ref.stem}_syn0.ome.zarr"
        (store / ref.parent.name).mkdir(exist_ok=True)
        write_ome_zarr(store / out, image)
        key = ref.relative_to(data).as_posix()
        rows.append(ManifestRow(out, ref.parent.name, key, i, {}, "abc", "done", "", 1.0))
    if failed:
        rows.append(
            ManifestRow("tumour/never.ome.zarr", "tumour", rows[-1].reference, 99, {}, "abc", "failed", "oom")
        )
    write_manifest(store / MANIFEST_NAME, rows)
    return store


class PixelDenoiser(torch.nn.Module):
    """A per-pixel denoiser: 1x1 convolution, a timestep factor and a per-label bias."""

    def __init__(self, channels: int = 4, labels: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.conv = torch.nn.Conv2d(channels, channels, 1)
        assert self.conv.bias is not None  # Conv2d's bias=True
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(channels, channels, 1, 1, generator=g) * 0.3)
            self.conv.bias.copy_(torch.randn(channels, generator=g) * 0.1)
        self.label_bias = torch.randn(labels, channels, generator=g) * 0.2

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The 1x1 convolution written as elementwise sums, so that its float rounding cannot depend
        # on the spatial size (BLAS kernels for different shapes may sum in different orders).
        w, b = self.conv.weight[:, :, 0, 0], self.conv.bias
        assert b is not None
        out = torch.stack(
            [sum(w[o, c] * x[:, c] for c in range(x.shape[1])) + b[o] for o in range(w.shape[0])], 1
        )
        scale = 1 + float(t) / 1000
        return out * scale + self.label_bias[labels][:, :, None, None]


def drain(generator):
    """Run an engine generator to the end: (its return value, every event it yielded)."""
    events = []
    try:
        while True:
            events.append(next(generator))
    except StopIteration as stop:
        return stop.value, events


def save_patch_model(folder: Path, vae: PatchAutoencoder, classes: list[str]) -> Path:
    """A PathUp model folder around ``vae`` (a ``PatchAutoencoder``): a tiny random denoiser with the
    autoencoder's latent channels, seeded, and a DDIM scheduler."""
    from diffusers import DDIMScheduler

    from napari_pathup.models.build import build_denoiser
    from napari_pathup.models.layout import save_pathup_model

    torch.manual_seed(0)
    channels = int(vae.config.latent_channels)
    denoiser = build_denoiser(classes, preset="tiny", sample_size=8, latent_channels=channels)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False)
    return save_pathup_model(folder, denoiser, vae, scheduler, classes)


def tiny_patch_model(data: Path, folder: Path) -> Path:
    """A PathUp model around a PatchAutoencoder (width 8) started from 8x8 blocks of the tiny data set
    (``tiny_dataset``: classes stroma and tumour)."""
    from napari_pathup.io import read_image
    from napari_pathup.models.patch_autoencoder import PatchAutoencoder

    image = read_image(data / "tumour" / "b.png")[:128, :128]
    crops = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    torch.manual_seed(0)
    vae = PatchAutoencoder(latent_channels=4, width=8, num_blocks=1).eval()
    vae.initialise_from_blocks(crops)
    return save_patch_model(folder, vae, ["stroma", "tumour"])


#: broken copies of a PathUp model folder (:func:`broken_model`), each with the error it must give
BROKEN_MODELS: dict[str, str] = {
    "no-pathup-json": "not a model folder: expected pathup.json",
    "bad-json": r"pathup.json is not valid JSON",
    "no-classes": r"'classes' must be a non-empty list",
    "no-scales": r"'scales' must be a list including overview, native",
    "no-denoiser": r"missing component folder .*denoiser",
    "pickle-only": r"no .safetensors weights in .*denoiser \(found diffusion_pytorch_model.bin: pickle",
    "truncated-weights": r"cannot load .*denoiser",
    "unknown-scheduler": r"scheduler_config.json names 'os.system'",
    "no-such-scheduler": r"scheduler_config.json names 'NoSuchScheduler'; expected one of",
    "wrong-class-count": r"num_class_embeds is 8, but 2 classes x 2 scales need 6",
    "remote-code-class": r"config.json names \['my_module', 'Evil'\]",
    "weak-mismatch": r"weak_denoiser/config.json: the weak denoiser must take and give what the denoiser",
}


def broken_model(pathup_model_dir: Path, tmp_path: Path, how: str) -> Path:
    """A copy of ``pathup_model_dir`` broken as ``how`` (a key of :data:`BROKEN_MODELS`) says."""
    import json
    import shutil

    folder = Path(shutil.copytree(pathup_model_dir, tmp_path / "m"))
    weights = folder / "denoiser" / "diffusion_pytorch_model.safetensors"
    if how == "no-pathup-json":
        (folder / "pathup.json").unlink()
    elif how == "bad-json":
        (folder / "pathup.json").write_text("{not json")
    elif how == "no-classes":
        (folder / "pathup.json").write_text(json.dumps({"format": "pathup", "classes": []}))
    elif how == "no-denoiser":
        shutil.rmtree(folder / "denoiser")
    elif how == "pickle-only":
        weights.rename(weights.with_suffix(".bin"))
    elif how == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how in ("unknown-scheduler", "no-such-scheduler"):
        cfg = folder / "scheduler" / "scheduler_config.json"
        name = "os.system" if how == "unknown-scheduler" else "NoSuchScheduler"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "_class_name": name}))
    elif how == "no-scales":
        meta = json.loads((folder / "pathup.json").read_text())
        (folder / "pathup.json").write_text(json.dumps({**meta, "scales": ["native"]}))
    elif how == "weak-mismatch":
        shutil.copytree(folder / "denoiser", folder / "weak_denoiser")
        cfg = folder / "weak_denoiser" / "config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "in_channels": 3}))
    elif how == "wrong-class-count":
        meta = json.loads((folder / "pathup.json").read_text())
        (folder / "pathup.json").write_text(json.dumps({**meta, "classes": ["a", "b"]}))
    elif how == "remote-code-class":
        cfg = folder / "denoiser" / "config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "_class_name": ["my_module", "Evil"]}))
    return folder


SCN_NS = "http://www.leica-microsystems.com/scn/2010/10/01"


def leica_scn(
    path: Path,
    macro: np.ndarray,
    main: np.ndarray,
    *,
    resolution_tags: bool = True,
    more: Sequence[tuple[np.ndarray, tuple[int, int]]] = (),
    names: bool = True,
) -> Path:
    """A brightfield Leica SCN as OpenSlide's and tifffile's Leica readers take it (no scanner's file is
    at hand offline; OpenSlide opens this one as vendor "leica"): a BigTIFF whose first page's
    description is the XML of a collection (sizes in nanometres) holding a low-resolution macro image
    (IFD 0, the whole slide) and the main scan (IFD 1 and its 4x-smaller level, IFD 2; 0.5 µm/px, 1 mm
    from the left, 0.5 mm from the top), then each of ``more`` (a further scanned region and its
    (x, y) offset in nanometres, at the same resolution). ``names=False``: the images carry no ``name``
    attribute (it is optional; tifffile then names every series "Unknown")."""
    import tifffile

    image = (
        '<image{name}><pixels sizeX="{w}" sizeY="{h}">{dims}</pixels>'
        '<view sizeX="{vw}" sizeY="{vh}" offsetX="{x}" offsetY="{y}" spacingZ="0"/>'
        "<scanSettings><objectiveSettings><objective>{objective}</objective></objectiveSettings>"
        "<illuminationSettings><illuminationSource>brightfield</illuminationSource>"
        "</illuminationSettings></scanSettings></image>"
    )
    dimension = '<dimension sizeX="{}" sizeY="{}" r="{}" ifd="{}"/>'
    collection = (8_000_000, 3_200_000)  # nm: the macro image spans the collection
    regions = [(main, (1_000_000, 500_000)), *more]
    xml = (
        f'<?xml version="1.0" encoding="utf-8"?><scn xmlns="{SCN_NS}">'
        f'<collection name="slide" sizeX="{collection[0]}" sizeY="{collection[1]}">'
        + image.format(
            name=' name="macro"' if names else "",
            w=macro.shape[1],
            h=macro.shape[0],
            vw=collection[0],
            vh=collection[1],
            x=0,
            y=0,
            dims=dimension.format(macro.shape[1], macro.shape[0], 0, 0),
            objective="0.16",
        )
        + "".join(
            image.format(
                name=f' name="main{k}"' if names else "",
                w=region.shape[1],
                h=region.shape[0],
                vw=region.shape[1] * 500,
                vh=region.shape[0] * 500,
                x=x,
                y=y,
                dims=dimension.format(region.shape[1], region.shape[0], 0, 1 + 2 * k)
                + dimension.format(region.shape[1] // 4, region.shape[0] // 4, 1, 2 + 2 * k),
                objective="20",
            )
            for k, (region, (x, y)) in enumerate(regions)
        )
        + "</collection></scn>"
    )
    options: dict[str, Any] = {"photometric": "rgb", "metadata": None, "compression": "zlib"}
    tags: dict[str, Any] = (
        {"resolution": (20000, 20000), "resolutionunit": "CENTIMETER"} if resolution_tags else {}
    )
    tags4: dict[str, Any] = (
        {"resolution": (5000, 5000), "resolutionunit": "CENTIMETER"} if resolution_tags else {}
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(macro, tile=(16, 16), description=xml, **options)
        for region, _ in regions:
            tif.write(region, tile=(64, 64), **tags, **options)
            tif.write(region[::4, ::4], tile=(16, 16), **tags4, **options)
    return path


def pyramidal_ome_tiff(path: Path, image: np.ndarray, mpp: float = 0.25) -> Path:
    """A 3-level pyramidal OME-TIFF (SubIFDs) with its physical pixel size, as scanners export them."""
    import tifffile

    with tifffile.TiffWriter(path) as tif:
        options: dict[str, Any] = {"tile": (64, 64), "photometric": "rgb"}
        metadata = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp, "PhysicalSizeXUnit": "µm"}
        tif.write(image, subifds=2, metadata=metadata, **options)
        tif.write(image[::2, ::2], subfiletype=1, **options)
        tif.write(image[::4, ::4], subfiletype=1, **options)
    return path


def hamamatsu_ndpi(
    path: Path,
    main: np.ndarray,
    macro: np.ndarray,
    mpp: float = 0.5,
    lens: float = 20.0,
    planes: Sequence[tuple[np.ndarray, int]] = (),
) -> Path:
    """A Hamamatsu NDPI as OpenSlide's and tifffile's NDPI readers take it (no scanner's file is at hand
    offline; OpenSlide opens this one as vendor "hamamatsu"): a little-endian classic TIFF whose header
    and IFDs carry NDPI's 64-bit next-IFD offsets and the high 32 bits of every tag's value after the
    IFD, holding ``main`` and its 4x-smaller level, then ``macro`` (source lens -1), each one JPEG
    (YCbCr) strip, with the pixel size in the resolution tags (pixels per centimetre) and the NDPI tags
    (65420 format flag, 65421 source lens, 65422-65424 offsets from the slide's centre). ``planes``:
    further focal planes of the scan and their Z offsets (nm; ``main`` is at 0), each level's planes
    stored one after another in order of Z."""
    import struct

    stack = sorted([(main, 0), *planes], key=lambda plane: plane[1])
    pages = [(image, lens, mpp, z) for image, z in stack]
    pages += [(image[::4, ::4], lens / 4, mpp * 4, z) for image, z in stack]
    pages += [(macro, -1.0, mpp * 20, 0)]
    out = bytearray(b"II*\x00" + bytes(8))  # classic TIFF magic; the first IFD's offset in 8 bytes
    next_offset_at = 4
    for image, source_lens, microns, z in pages:
        height, width = image.shape[:2]
        strip, starts = _jpeg_with_restarts(image) if source_lens > 0 else (_jpeg(image), [])
        extras = {}
        for name, value in (
            ("strip", strip),
            ("make", b"Hamamatsu\x00"),
            ("bits", struct.pack("<3H", 8, 8, 8)),
            ("starts", struct.pack(f"<{len(starts)}I", *starts)),
        ):
            out += bytes(len(out) % 2)
            extras[name] = len(out)
            out += value
        out += bytes(len(out) % 2)
        extras["resolution"] = len(out)
        out += struct.pack("<2I", round(10_000 / microns), 1)  # pixels per centimetre
        # code: (type, count, value packed in 4 bytes, or the offset of values stored above)
        tags: dict[int, tuple[int, int, bytes]] = {
            256: (4, 1, struct.pack("<I", width)),
            257: (4, 1, struct.pack("<I", height)),
            258: (3, 3, struct.pack("<I", extras["bits"])),
            259: (3, 1, struct.pack("<HH", 7, 0)),  # JPEG
            262: (3, 1, struct.pack("<HH", 6, 0)),  # YCbCr
            271: (2, 10, struct.pack("<I", extras["make"])),
            273: (4, 1, struct.pack("<I", extras["strip"])),
            277: (3, 1, struct.pack("<HH", 3, 0)),
            278: (4, 1, struct.pack("<I", height)),
            279: (4, 1, struct.pack("<I", len(strip))),
            282: (5, 1, struct.pack("<I", extras["resolution"])),
            283: (5, 1, struct.pack("<I", extras["resolution"])),
            296: (3, 1, struct.pack("<HH", 3, 0)),  # centimetre
            65420: (4, 1, struct.pack("<I", 1)),
            65421: (11, 1, struct.pack("<f", source_lens)),
            65422: (9, 1, struct.pack("<i", 0)),
            65423: (9, 1, struct.pack("<i", 0)),
            65424: (9, 1, struct.pack("<i", z)),
        }
        if starts:  # McuStarts: where each restart interval's data begins, so readers decode only those
            tags[65426] = (4, len(starts), struct.pack("<I", extras["starts"]))
        out += bytes(len(out) % 2)
        ifd = len(out)
        struct.pack_into("<Q", out, next_offset_at, ifd)
        out += struct.pack("<H", len(tags))
        for code in sorted(tags):
            kind, count, value = tags[code]
            out += struct.pack("<HHI", code, kind, count) + value
        next_offset_at = len(out)
        out += bytes(8) + bytes(4 * len(tags))  # the next IFD's offset (0: the last), the high bits
    path.write_bytes(bytes(out))
    return path


def _jpeg(image: np.ndarray, **options: Any) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _jpeg_with_restarts(image: np.ndarray) -> tuple[bytes, list[int]]:
    """A JPEG (4:4:4, 8x8-pixel MCUs) with a restart marker after every half row of MCUs (a whole row when
    the row's MCU count is odd), so that readers decode it tile by tile as they do an NDPI scan's strips
    (OpenSlide refused this encoder's 4:2:0 output tiled so), and the byte offsets where each restart
    interval's entropy-coded data begins (NDPI's McuStarts)."""
    per_row = -(-image.shape[1] // 8)
    data = _jpeg(
        image, subsampling="4:4:4", restart_marker_blocks=per_row // 2 if per_row % 2 == 0 else per_row
    )
    at = 2  # after SOI: marker segments up to the start of scan
    while data[at + 1] != 0xDA:
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    start = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    starts = [start]
    for k in range(start, len(data) - 1):
        if data[k] == 0xFF and 0xD0 <= data[k + 1] <= 0xD7:  # RSTn: the next interval begins after it
            starts.append(k + 2)
    return data, starts
