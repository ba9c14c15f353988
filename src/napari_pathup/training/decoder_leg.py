"""A decoder leg: a trained model's decoder trained on as a conditional GAN, the encoder frozen.

The pipeline's decoder phase (:mod:`napari_pathup.training.decoder_gan`) trains a decoder it trained
itself; a leg starts from a finished PathUp model instead, so that a blurry or dithering decoder can be
retrained without touching the denoiser: the encoder is frozen, so the latent space the denoiser was
trained on stays valid. Optionally the decoder is widened first (``PatchAutoencoder.widen_decoder``:
it decodes exactly as before until the leg trains its new channels), and a full-resolution L1 term,
on every pixel (``full``) or on glass only (``glass``), joins the 2x-pooled one, which cannot see a
2-px dither. The default model's candidates of the forty-first session were made this way
(``pathup train-decoder``; docs/model_experiments.md).

The new model folder is MODEL's files (less the checkpoints of MODEL's own ``pathup train``) with the
new ``autoencoder/``, and its ``pathup.json`` records the leg under "training" / "decoder" / "legs";
it is written whole under a temporary name, then renamed.
Checkpoints go to ``.OUT.work`` beside OUT: the same command resumes; other settings are refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from napari_pathup.errors import InputError, ModelLoadError, OutputExistsError
from napari_pathup.models.spec import PATHUP_JSON

if TYPE_CHECKING:
    from diffusers import ModelMixin

#: what a work folder records of its leg, so that a resume with other settings is refused
_WORK_RECORD = "leg.json"
#: the checkpoints ``pathup train`` keeps inside a model folder: MODEL's own training's, not copied to OUT
CHECKPOINTS = "checkpoints"


@dataclasses.dataclass(frozen=True)
class DecoderLeg:
    """A decoder leg's settings; the losses are the decoder phase's (``GanWeights``)."""

    iterations: int = 1500
    adversarial: float = 2.0  # the hinge term's weight against the 2x-pooled L1's 1
    full: float = 0.0  # an L1 term at full resolution
    glass: float = 0.0  # the same on glass pixels only
    decoder_width: int = 0  # widen the decoder's residual stack to this many channels first (0: as is)
    lr: float = 1e-4
    batch_size: int = 4
    crop: int = 96
    seed: int = 0

    def check(self) -> None:
        """Refuse a setting no leg can run with, naming it and what was expected."""
        for name in ("iterations", "batch_size", "crop"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"decoder leg {name} {value!r}: expected a whole number >= 1")
        if self.crop % 8:
            raise InputError(f"decoder leg crop {self.crop}: expected a multiple of 8 (the latent scale)")
        for name in ("adversarial", "full", "glass"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InputError(f"decoder leg weight {name} {value!r}: expected a finite number >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"decoder leg lr {self.lr!r}: expected a finite number > 0")
        if not isinstance(self.decoder_width, int) or self.decoder_width < 0:
            raise InputError(f"decoder leg decoder_width {self.decoder_width!r}: expected 0 or a width")


def _work_folder(out: Path) -> Path:
    return out.with_name(f".{out.name}.work")


def _load_decoder_model(model: Path, leg: DecoderLeg) -> ModelMixin:
    """MODEL's autoencoder, widened if asked; refused early where a leg cannot train it."""
    from diffusers import AutoencoderTiny

    from napari_pathup.models.patch_autoencoder import PatchAutoencoder
    from napari_pathup.training.train import load_autoencoder

    if not (model / PATHUP_JSON).is_file():
        raise ModelLoadError(f"{model}: expected a PathUp model folder (pathup.json beside autoencoder/)")
    vae = load_autoencoder(model).float()  # trained (and widened) in full precision
    if not isinstance(vae, AutoencoderTiny | PatchAutoencoder):
        raise ModelLoadError(
            f"{model}: its autoencoder is a {type(vae).__name__}; a decoder leg trains an AutoencoderTiny "
            "or PatchAutoencoder decoder"
        )
    if leg.decoder_width:
        if not isinstance(vae, PatchAutoencoder):
            kind = type(vae).__name__
            raise InputError(
                f"--decoder-width: only a PatchAutoencoder's decoder widens ({model} has an {kind})"
            )
        current = vae.config.decoder_width or vae.config.width
        if leg.decoder_width <= current:
            raise InputError(
                f"--decoder-width {leg.decoder_width}: expected more than the decoder's current {current}"
            )
        vae = vae.widen_decoder(leg.decoder_width, seed=leg.seed)  # decodes as before until trained
    return vae


def _check_resume(work: Path, record: dict[str, Any]) -> None:
    """A work folder left by another leg (other settings or another MODEL) is refused, not mixed in."""
    path = work / _WORK_RECORD
    if not path.is_file():
        return
    before = json.loads(path.read_text())
    differ = sorted(k for k in {*before, *record} if k != "model" and before.get(k) != record.get(k))
    if differ:
        raise InputError(
            f"{work} holds the checkpoints of another leg ({', '.join(differ)} differ); rerun that leg's "
            f"command to finish it, or delete {work} to start this one"
        )


def train_decoder_leg(
    model: str | Path,
    out: str | Path,
    data: str | Path,
    leg: DecoderLeg = DecoderLeg(),
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Write OUT: MODEL with its decoder trained on for ``leg.iterations`` on DATA's training areas.

    DATA is a data set as ``pathup train`` reads it; its hold-out regions (DATA/holdout.json) are
    never trained on. Returns OUT. The leg is deterministic per seed on the CPU.
    """
    from napari_pathup.datasets import discover
    from napari_pathup.io.atomic import atomic_output, check_output
    from napari_pathup.models.load import model_hash
    from napari_pathup.training.data import CropSampler, build_sources, load_images
    from napari_pathup.training.decoder_gan import GanWeights, decoder_gan_phase
    from napari_pathup.training.loop import run_phase
    from napari_pathup.training.settings import TrainConfig
    from napari_pathup.training.train import AE_OVERVIEW_FRACTION, latest_iteration

    leg.check()
    model, out = Path(model).expanduser(), Path(out).expanduser()
    if not model.is_dir():
        raise ModelLoadError(f"{model}: expected a PathUp model folder; there is no such folder")
    if out.resolve() == model.resolve():
        raise OutputExistsError(f"{out.resolve()} is MODEL itself; choose a new folder")
    # before minutes of training, not after; this command has no --overwrite to offer
    out = check_output(out, overwrite=False, probe=True, hint="a decoder leg writes a new folder")
    device = torch.device(device)
    defaults = TrainConfig(data=Path(data), out=out)

    vae = _load_decoder_model(model, leg).to(device)  # refused here, before the data load, if it cannot
    index = discover(data)
    arrays = load_images(index)
    sources = build_sources(index, arrays, leg.crop, defaults.min_tissue, defaults.reference_size)
    sampler = CropSampler(sources, overview_fraction=AE_OVERVIEW_FRACTION)  # as the decoder phase samples
    weights = GanWeights(adversarial=leg.adversarial, full=leg.full, glass=leg.glass)
    phase = decoder_gan_phase(
        vae,
        sampler,
        lr=leg.lr,
        batch_size=leg.batch_size,
        seed=leg.seed,
        device=device,
        eval_crops=[],
        weights=weights,
    )
    record = {
        "model": model.resolve().name,
        "hash": model_hash(model, documentation=False),
        "iterations": leg.iterations,
        "weights": dataclasses.asdict(weights),
        "lr": leg.lr,
        "batch": [leg.batch_size, leg.crop],
        "seed": leg.seed,
        "decoder_width": leg.decoder_width or None,
    }
    work = _work_folder(out)
    settings = {**record, "iterations": None}  # what a resume must share: more iterations may continue a leg
    _check_resume(work, settings)
    if (done := latest_iteration(work)) > leg.iterations:
        raise InputError(
            f"{work} holds a leg already {done} iterations long; ask for at least that many, or delete it"
        )
    work.mkdir(exist_ok=True)
    (work / _WORK_RECORD).write_text(json.dumps(settings, indent=2) + "\n")
    log(
        f"decoder leg: {model} -> {out}, {leg.iterations} iterations of {leg.batch_size} x {leg.crop} px "
        f"on {device}; weights {dataclasses.asdict(weights)}"
        + (f", decoder widened to {leg.decoder_width}" if leg.decoder_width else "")
    )
    result = run_phase(phase, leg.iterations, work, checkpoint_every=500, eval_every=0, resume=True,
                       progress=progress)  # fmt: skip
    phase.ema.copy_to(phase.model.parameters())
    vae = vae.eval().to("cpu")

    with atomic_output(out, overwrite=False) as partial:
        top = str(model)  # MODEL's own training's checkpoints stay with MODEL
        shutil.copytree(model, partial, ignore=lambda folder, names: [CHECKPOINTS] * (folder == top))
        shutil.rmtree(partial / "autoencoder")
        vae.save_pretrained(partial / "autoencoder", safe_serialization=True)
        meta = json.loads((partial / PATHUP_JSON).read_text())
        training = meta.setdefault("training", {})
        decoder = training["decoder"] = dict(training.get("decoder", {}))
        decoder["legs"] = [*decoder.get("legs", []), record]
        (partial / PATHUP_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(work)
    log(f"decoder leg: wrote {out} in {result.seconds / 60:.1f} min")
    return out
