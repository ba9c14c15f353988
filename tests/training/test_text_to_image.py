"""``pathup train --base``: fine-tuning a tiny random Stable Diffusion pipeline on real H&E crops."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_pathup.cli import main
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.errors import InputError, ModelLoadError
from napari_pathup.io import read_image
from napari_pathup.models.conditioning import TextConditioner
from napari_pathup.models.load import load_model
from napari_pathup.models.spec import SCALES
from napari_pathup.training.denoiser import diffusion_target, min_snr_weight
from napari_pathup.training.text_to_image import FineTuneConfig, fine_tune

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
UNET_WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"
TINY: dict[str, Any] = {
    "iters": 4,
    "batch_size": 2,
    "crop": 64,
    "lr": 1e-3,
    "warmup": 0,
    "checkpoint_every": 2,
    "eval_every": 2,
    "reference_size": 128,
    "progress": False,
    "threads": 1,
}


@pytest.fixture(scope="module")
def real_crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of real H&E: 192x192 windows of the demo tumour nest and stroma fields; the right
    strip of one image per class is held out (the validation loss is measured there)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("real") / "data"
    for name, source, corners in (
        ("tumour", DEMO / "tumour" / "hgsc_tumour_nest.jpg", ((0, 0), (0, 1000))),
        ("stroma", DEMO / "stroma" / "hgsc_stroma.jpg", ((0, 0), (400, 400))),
    ):
        image = read_image(source)
        (root / name).mkdir(parents=True)
        for i, (y, x) in enumerate(corners):
            Image.fromarray(image[y : y + 192, x : x + 192]).save(root / name / f"{i}.png")
    strip = {"x": 128, "y": 0, "width": 64, "height": 192, "why": "validation"}
    (root / "holdout.json").write_text(
        json.dumps({"regions": {"tumour/1.png": strip, "stroma/1.png": strip}})
    )
    return root


def _config(data: Path, out: Path, base: Path | str, **changes) -> FineTuneConfig:
    return FineTuneConfig(data=data, out=out, base=str(base), **{**TINY, **changes})


def _fixed_loss(model_dir: Path, data: Path) -> float:
    """The min-SNR weighted loss of a pipeline on fixed training crops, timesteps and noise, under the
    prompts that synthesis builds from the folder's own ``pathup.json`` (or the default template)."""
    model = load_model(model_dir)
    unet, autoencoder = model.modules["denoiser"], model.autoencoder
    crops, prompts = [], []
    for class_name in ("tumour", "stroma"):
        for path in sorted((data / class_name).glob("*.png")):
            image = read_image(path)
            for y, x in ((0, 0), (64, 64), (128, 0)):  # training pixels, not the held-out strip
                crops.append(image[y : y + 64, x : x + 64])
                prompts.append(class_name)
    pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
    x0 = autoencoder.encode(pixels).float()
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.linspace(50, 950, len(x0)).round().long()
    alphas = model.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1).float()
    kind = model.scheduler.config.prediction_type
    noisy, target = diffusion_target(x0, noise, alphas, kind)
    cond = torch.cat([model.conditioner(c, "native") for c in prompts])
    with torch.no_grad():
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
    per_sample = (pred - target).pow(2).mean(dim=(1, 2, 3))
    return float((min_snr_weight(alphas.view(-1), kind, 5.0) * per_sample).mean())


@pytest.fixture(scope="module")
def fine_tuned(real_crops: Path, sd_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ft") / "pipeline"
    return fine_tune(_config(real_crops, out, sd_model_dir, iters=40, batch_size=4), log=lambda _: None)


def test_fine_tuning_lowers_the_loss_on_the_training_crops(
    fine_tuned: Path, sd_model_dir: Path, real_crops: Path
) -> None:
    before, after = _fixed_loss(sd_model_dir, real_crops), _fixed_loss(fine_tuned, real_crops)
    assert after < 0.7 * before, (before, after)
    log = [json.loads(line) for line in (fine_tuned / "checkpoints" / "text_to_image" / "log.jsonl").open()]
    assert log[-1]["iteration"] == 40 and log[-1]["val"] < log[0]["val"]  # on the hold-out strips


def test_the_pipeline_loads_with_its_classes_and_the_stored_prompts(
    fine_tuned: Path, sd_model_dir: Path
) -> None:
    meta = json.loads((fine_tuned / "pathup.json").read_text())
    # the base named by folder and hash, as another machine can check it, not by this machine's path
    assert meta["training"]["base"] == meta["training"]["settings"]["base"] == sd_model_dir.name
    assert str(sd_model_dir.parent) not in json.dumps(meta["training"])
    assert meta["classes"] == ["stroma", "tumour"]
    assert (
        meta["prompt_template"]
        == "a {scale} magnification H&E stained histopathology image of {class_name} tissue"
    )
    assert meta["training"]["class_contrastive_term"] == "absent"
    model = load_model(fine_tuned)
    assert model.kind == "stable-diffusion" and model.classes == ["stroma", "tumour"]
    assert isinstance(model.conditioner, TextConditioner)
    for class_name in model.classes:
        for scale in SCALES:
            assert model.conditioner.prompt(class_name, scale) == meta["prompts"][class_name][scale]
    assert meta["prompts"]["tumour"]["overview"].startswith("a low magnification")
    assert model.native_size == 8  # the trained crop (64 px), not the base's 16
    assert not any(p.suffix in (".bin", ".ckpt", ".pt") for p in fine_tuned.rglob("*"))
    reference = read_image(fine_tuned / meta["references"]["tumour"])
    settings = SynthesisSettings("tumour", height=96, width=128, reference_size=64, steps=3, batch_size=4)
    finished = run(model, reference, settings)
    assert finished.image.shape == (96, 128, 3) and finished.image.std() > 0


def test_only_the_unet_changes(fine_tuned: Path, sd_model_dir: Path) -> None:
    for part in ("vae", "text_encoder"):
        name = next(p.name for p in (sd_model_dir / part).glob("*.safetensors"))
        a, b = load_file(sd_model_dir / part / name), load_file(fine_tuned / part / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = load_file(sd_model_dir / UNET_WEIGHTS), load_file(fine_tuned / UNET_WEIGHTS)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_resume_gives_the_same_pipeline_as_an_uninterrupted_run(
    real_crops: Path, sd_model_dir: Path, tmp_path: Path
) -> None:
    whole = fine_tune(_config(real_crops, tmp_path / "whole", sd_model_dir), log=lambda _: None)
    part = tmp_path / "part"
    fine_tune(_config(real_crops, part, sd_model_dir, iters=2), log=lambda _: None)
    assert (part / "checkpoints" / "text_to_image" / "step-0000002").is_dir()
    fine_tune(_config(real_crops, part, sd_model_dir, resume=True), log=lambda _: None)
    a, b = load_file(whole / UNET_WEIGHTS), load_file(part / UNET_WEIGHTS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match=r"other settings \(batch_size"):
        fine_tune(_config(real_crops, part, sd_model_dir, batch_size=4, resume=True), log=lambda _: None)
    with pytest.raises(InputError, match="not empty; pass --resume"):
        fine_tune(_config(real_crops, part, sd_model_dir), log=lambda _: None)


def test_lora_changes_only_the_attention_projections_and_resumes_exactly(
    real_crops: Path, sd_model_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    out = fine_tune(_config(real_crops, tmp_path / "lora", sd_model_dir, lora_rank=4), log=lambda _: None)
    a, b = load_file(sd_model_dir / UNET_WEIGHTS), load_file(out / UNET_WEIGHTS)
    assert a.keys() == b.keys()  # merged: a plain UNet, loadable without peft
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(
        any(f".{m}.weight" in k for m in ("to_q", "to_k", "to_v", "to_out.0")) for k in changed
    )
    stored = load_file(next((out / "checkpoints" / "text_to_image").glob("step-*")) / "model.safetensors")
    assert stored and all("lora" in k for k in stored)  # checkpoints hold the adapters only
    load_model(out)
    part = tmp_path / "lora-part"
    fine_tune(_config(real_crops, part, sd_model_dir, lora_rank=4, iters=2), log=lambda _: None)
    fine_tune(_config(real_crops, part, sd_model_dir, lora_rank=4, resume=True), log=lambda _: None)
    resumed = load_file(part / UNET_WEIGHTS)
    assert all(torch.equal(b[k], resumed[k]) for k in b)  # resume is exact with LoRA too


def test_text_encoder_fine_tune_with_gradient_checkpointing(
    real_crops: Path, sd_model_dir: Path, tmp_path: Path
) -> None:
    """The text encoder trains too; gradient checkpointing recomputes activations without changing
    the result; the base's single-file checkpoint and precision variants are not copied."""
    base = tmp_path / "base"
    shutil.copytree(sd_model_dir, base)
    shutil.copy(base / "vae" / "diffusion_pytorch_model.safetensors", base / "v1-5-pruned.safetensors")
    shutil.copy(
        base / "vae" / "diffusion_pytorch_model.safetensors",
        base / "vae" / "diffusion_pytorch_model.fp16.safetensors",
    )
    runs = [
        fine_tune(
            _config(
                real_crops,
                tmp_path / f"te{i}",
                base,
                iters=3,
                train_text_encoder=True,
                gradient_checkpointing=i,
            ),
            log=lambda _: None,
        )
        for i in (False, True)
    ]
    name = Path("text_encoder") / "model.safetensors"
    before, plain, checkpointed = (load_file(f / name) for f in (base, *runs))
    assert any(not torch.equal(before[k], plain[k]) for k in before)
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-6) for k in plain)
    assert not (runs[0] / "v1-5-pruned.safetensors").exists()
    assert not (runs[0] / "vae" / "diffusion_pytorch_model.fp16.safetensors").exists()
    assert load_model(runs[1]).classes == ["stroma", "tumour"]


def _write_nothing(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_bad_bases_are_refused_before_anything_is_written(
    real_crops: Path, sd_model_dir: Path, pathup_model_dir: Path, tmp_path: Path
) -> None:
    pickled = tmp_path / "pickled"
    shutil.copytree(sd_model_dir, pickled)
    weights = pickled / UNET_WEIGHTS
    weights.rename(weights.with_suffix(".bin"))
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(sd_model_dir, no_tokenizer)
    shutil.rmtree(no_tokenizer / "tokenizer")
    no_text_encoder = tmp_path / "no_text_encoder"
    shutil.copytree(sd_model_dir, no_text_encoder)
    shutil.rmtree(no_text_encoder / "text_encoder")
    cases: tuple[tuple[Path | str, type[Exception], str], ...] = (
        (pickled, ModelLoadError, "pickle weights are never loaded"),
        (no_tokenizer, ModelLoadError, "missing CLIP tokenizer"),
        (no_text_encoder, ModelLoadError, "missing component folder .*text_encoder"),
        (pathup_model_dir, ModelLoadError, "PathUp-layout model"),
        ("someone/some-model", ModelLoadError, "allow it explicitly"),
    )
    for i, (base, error, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with pytest.raises(error, match=message):
            fine_tune(_config(real_crops, out, base), log=lambda _: None)
        assert _write_nothing(out)
    out = tmp_path / "bad-crop"
    with pytest.raises(InputError, match="multiple of 16"):
        fine_tune(_config(real_crops, out, sd_model_dir, crop=72), log=lambda _: None)
    with pytest.raises(InputError, match="must contain"):
        fine_tune(_config(real_crops, out, sd_model_dir, prompt_template="{class_name}"), log=lambda _: None)
    assert _write_nothing(out)


def test_cli_fine_tunes_and_refuses_pathup_only_options(
    real_crops: Path, sd_model_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "cli"
    args = ["train", str(real_crops), "--out", str(out), "--base", str(sd_model_dir), "--iters", "1"]
    args += ["--batch-size", "1", "--crop", "64", "--threads", "1", "--quiet", "--set-default", "steps=9"]
    template = "an H&E image of {class_name} at {scale} power"
    assert main([*args, "--prompt-template", template, "--set-class-default", "stroma:guidance=4.5"]) == 0
    meta = json.loads((out / "pathup.json").read_text())
    assert meta["defaults"]["steps"] == 9 and meta["prompt_template"] == template
    assert meta["class_defaults"] == {"stroma": {"guidance": 4.5}}
    assert meta["prompts"]["stroma"]["native"] == "an H&E image of stroma at high power"
    assert meta["training"]["settings"]["lr"] == 1e-5  # the fine-tune default, not the PathUp one
    assert main([*args[:3], str(tmp_path / "x"), *args[4:], "--ae-iters", "3"]) == 2
    assert "--ae-iters: only for a PathUp-layout model" in capsys.readouterr().err
    assert main([*args[:3], str(tmp_path / "y"), *args[4:], "--mixed-precision", "bf16"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    # a class default for a class the crops lack is refused before the base model loads
    assert main([*args[:3], str(tmp_path / "z"), *args[4:], "--set-class-default", "tumor:steps=5"]) == 2
    assert "--set-class-default must be keyed by" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


@pytest.mark.slow
def test_two_processes_with_accelerate_resume_to_the_single_process_model(
    real_crops: Path, sd_model_dir: Path, tmp_path: Path
) -> None:
    """A one-process run stopped at iteration 2, resumed to 4 by ``accelerate launch`` with 2 CPU
    processes (gloo; each trains on half of every batch, gradients averaged), ends where an
    uninterrupted one-process run ends, up to float summation order."""
    import os
    import subprocess
    import sys

    single = fine_tune(_config(real_crops, tmp_path / "single", sd_model_dir), log=lambda _: None)
    out = tmp_path / "two"
    fine_tune(_config(real_crops, out, sd_model_dir, iters=2), log=lambda _: None)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "napari_pathup", "train", str(real_crops), "--out", str(out), "--resume"]
    command += ["--base", str(sd_model_dir), "--iters", "4", "--batch-size", "2", "--crop", "64"]
    command += ["--lr", "1e-3", "--checkpoint-every", "2", "--eval-every", "2", "--reference-size", "128"]
    command += ["--warmup", "0", "--threads", "1", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("pathup train: wrote") == 1  # the main process alone exports
    meta = json.loads((out / "pathup.json").read_text())
    assert meta["training"]["processes"] == 2 and meta["training"]["unet"]["iterations"] == 4
    log = (out / "checkpoints" / "text_to_image" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in log] == [2, 4]  # resumed at 2, not restarted
    a, b = load_file(single / UNET_WEIGHTS), load_file(out / UNET_WEIGHTS)
    base = load_file(sd_model_dir / UNET_WEIGHTS)
    # Adam magnifies summation-order differences of near-zero gradients, so compare each tensor's
    # difference with how far training moved it (measured: at most 0.005% of it; with both processes
    # training on the same half of the batch: up to 53%)
    for k in a:
        moved = float((a[k] - base[k]).abs().max())
        assert moved > 0 and float((a[k] - b[k]).abs().max()) <= 0.01 * moved, k
