"""``pathup evaluate --preset paper``: a tiny timm ViT (random weights in a local safetensors file, made at
224 px as published weights are) fine-tuned end to end on real H&E crops of the demo data through all
folds, with and without a synthetic store; resumption of a killed run; clear refusals that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import demo_crops, synthetic_store
from napari_pathup.cli import main
from napari_pathup.errors import InputError
from napari_pathup.evaluation import finetune
from napari_pathup.evaluation.data import add_synthetic, collect_real
from napari_pathup.evaluation.finetune import (
    PRESETS,
    FineTuneSettings,
    create_model,
    evaluate_finetune,
    load_pretrained,
    mil_settings,
)
from napari_pathup.evaluation.run import EvaluateSettings

timm = pytest.importorskip("timm")

ARCH = "vit_tiny_patch16_224"
#: (class, demo image, top-left corners of 64x64 tissue crops); each crop is one source image
CROPS = {
    "normal": [("normal/skin.tif", [(200, 800), (800, 400)]), ("normal/cmu_small_region.svs", [(700, 1100)])],
    "tumour": [
        ("tumour/hgsc_tumour_nest.jpg", [(600, 1300), (1400, 1300)]),
        ("tumour/carcinoma_tia_target.png", [(500, 0)]),
    ],
}


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_crops(tmp_path_factory.mktemp("finetune") / "data", CROPS, 64)


@pytest.fixture(scope="module")
def store(crops: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1:1 synthetic store as pathup augment writes it (flipped, colour-shifted reference copies)."""
    return synthetic_store(crops, tmp_path_factory.mktemp("finetune") / "store")


def quiet(_: str) -> None:
    """A log that prints nothing."""


def save_vit(path: Path, architecture: str = ARCH) -> Path:
    """Random weights of a timm model at its published input size (224: a 14x14 position grid)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_vit(tmp_path_factory.mktemp("weights") / "vit_tiny.safetensors")


def preset_args(data: Path, weights: Path, *extra: str) -> list[str]:
    return ["evaluate", str(data), "--preset", "paper", "--backbone", f"timm:{ARCH}", "--backbone-weights",
            str(weights), "--image-size", "32", "--tile-size", "32", "--folds", "2", "--epochs", "2",
            "--batch-size", "4", "--quiet", *extra]  # fmt: skip


def test_paper_preset_fine_tunes_a_tiny_vit_through_all_folds(
    crops: Path, store: Path, weights: Path, tmp_path: Path, capsys
):
    ckpt = tmp_path / "ckpt"
    args = preset_args(crops, weights, "--synthetic", str(store), "--checkpoints", str(ckpt))
    code = main([*args, "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads((tmp_path / "r.json").read_text())
    protocol = result["protocol"]
    assert protocol["preset"] == "paper" and protocol["architecture"] == ARCH
    assert protocol["input_size"] == [32, 32] and protocol["weights_sha256"]
    assert protocol["vit"]["lr"] == 1e-3 and protocol["mil"]["lr"] == 1e-4  # the paper's rates
    assert protocol["vit"]["epochs"] == protocol["mil"]["epochs"] == 2
    assert protocol["autocast"] == "none (fp32)" and protocol["device"] == "cpu"
    assert protocol["synthetic_per_real"] == 1.0 and "the paper's protocol is 1:1" not in captured.err
    assert [(r["classifier"], r["training_data"]) for r in result["summary"]] == [
        ("ViT (fine-tuned)", "real"),
        ("ViT (fine-tuned)", "real + synthetic"),
        ("MIL (gated attention)", "real"),
        ("MIL (gated attention)", "real + synthetic"),
    ]
    assert len(result["folds"]) == 8  # 2 folds x 2 training settings x 2 classifiers
    for fold in result["folds"]:
        assert sum(map(sum, fold["confusion"])) == fold["n_val"] > 0
        assert fold["n_train_synthetic"] > 0 or fold["setting"] == "real"
    losses = protocol["train_loss_per_epoch"]
    assert len(losses) == 4 and all(len(v) == 2 and all(np.isfinite(v)) for v in losses.values())
    assert "vit_tiny_patch16_224 at 32x32 px fine-tuned end to end" in captured.out
    # every fold finished: predictions kept, weights dropped
    states = sorted(ckpt.glob("fold*/state.json"))
    assert [p.parent.name for p in states] == [
        "fold1-real", "fold1-real-synthetic", "fold2-real", "fold2-real-synthetic"
    ]  # fmt: skip
    assert all(json.loads(p.read_text())["done"] for p in states)
    assert not list(ckpt.rglob("*.safetensors")) and (ckpt / "run.json").is_file()
    # the same command again resumes from the finished folds: same table, nothing trained
    assert main([*args, "--json", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["summary"] == result["summary"]


def test_fine_tuning_lowers_the_training_loss(crops: Path, weights: Path):
    data = collect_real(crops)
    ft = FineTuneSettings(ARCH, weights, image_size=32, lr=1e-2, epochs=6, batch_size=4)
    report = evaluate_finetune(
        data, EvaluateSettings(folds=2, tile_size=32, mil=mil_settings(ft, 2)), ft, progress=False, log=quiet
    )
    assert report.protocol is not None
    for losses in report.protocol["train_loss_per_epoch"].values():
        assert np.mean(losses[-2:]) < losses[0], losses


def test_a_killed_run_resumes_at_its_epoch_and_ends_as_an_uninterrupted_one(
    crops: Path, store: Path, weights: Path, tmp_path: Path, monkeypatch
):
    data = add_synthetic(collect_real(crops), store)
    ft = FineTuneSettings(ARCH, weights, image_size=32, epochs=3, batch_size=4)
    settings = EvaluateSettings(folds=2, tile_size=32, mil=mil_settings(ft, 2))
    whole = evaluate_finetune(data, settings, ft, progress=False, log=quiet)

    saved = finetune.FoldCheckpoint.save_epoch
    epochs: list[tuple[str, int]] = []

    def killed_after_fold2_epoch2(self, epoch, *args, **kwargs):
        saved(self, epoch, *args, **kwargs)
        epochs.append((self.folder.name, epoch))
        if (self.folder.name, epoch) == ("fold2-real", 2):
            raise KeyboardInterrupt  # the process dies right after this checkpoint

    monkeypatch.setattr(finetune.FoldCheckpoint, "save_epoch", killed_after_fold2_epoch2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_finetune(data, settings, ft, checkpoints=tmp_path / "ckpt", progress=False, log=quiet)
    assert (tmp_path / "ckpt" / "fold2-real" / "epoch-2.safetensors").is_file()
    epochs.clear()
    resumed = evaluate_finetune(data, settings, ft, checkpoints=tmp_path / "ckpt", progress=False, log=quiet)
    # fold 1 was finished; fold 2 (real) went on from epoch 3, fold 2 (real + synthetic) from the start
    assert epochs == [("fold2-real", 3), ("fold2-real-synthetic", 1), ("fold2-real-synthetic", 2),
                      ("fold2-real-synthetic", 3)]  # fmt: skip
    assert resumed.results == whole.results
    assert resumed.protocol is not None and whole.protocol is not None
    assert resumed.protocol["train_loss_per_epoch"] == whole.protocol["train_loss_per_epoch"]


def _first_layout(state, prefix: str, tensors: dict) -> object:
    """How fold checkpoints stored an optimiser state before they shared ``io.optimizer_state``."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().clone().contiguous()
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {str(k): _first_layout(v, f"{prefix}.{k}", tensors) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return [_first_layout(v, f"{prefix}.{i}", tensors) for i, v in enumerate(state)]
    return state


def test_a_fold_checkpoint_of_the_first_layout_still_resumes(tmp_path: Path):
    from safetensors.torch import save_file

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    saved = _first_layout(opt.state_dict(), "optimizer", tensors)
    save_file(tensors, str(tmp_path / "epoch-1.safetensors"))
    state = {"done": False, "epoch": 1, "file": "epoch-1.safetensors", "optimizer": saved, "losses": [1.0]}
    (tmp_path / finetune.STATE_JSON).write_text(json.dumps(state))

    checkpoint = finetune.FoldCheckpoint(tmp_path)
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.5, momentum=0.9)
    read = checkpoint.state()
    assert read is not None
    checkpoint.load_epoch(read, fresh, fresh_opt)
    assert fresh_opt.param_groups[0]["lr"] == 0.1
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["momentum_buffer"], fresh_opt.state[q]["momentum_buffer"])

    # the next epoch is written in the shared layout, and reads back the same
    checkpoint.save_epoch(2, fresh, fresh_opt, {"losses": [1.0, 0.5]})
    again = torch.nn.Linear(3, 2)
    again_opt = torch.optim.SGD(again.parameters(), lr=0.5, momentum=0.9)
    read = checkpoint.state()
    assert read is not None and "scalars" in read["optimizer"]
    checkpoint.load_epoch(read, again, again_opt)
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == ["epoch-2.safetensors"]
    for p, q in zip(fresh.parameters(), again.parameters(), strict=True):
        assert torch.equal(fresh_opt.state[p]["momentum_buffer"], again_opt.state[q]["momentum_buffer"])


def test_weights_load_into_the_larger_input_with_resampled_positions(weights: Path):
    model = create_model(ARCH, 32, n_classes=3)
    skipped = load_pretrained(model, weights, ARCH)
    assert skipped == {"classifier": ["head.bias", "head.weight"]}
    from safetensors.torch import load_file

    source = load_file(str(weights))
    assert torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], source["blocks.0.attn.qkv.weight"])
    assert source["pos_embed"].shape == (1, 1 + 14 * 14, 192)
    assert model.pos_embed.shape == (1, 1 + 2 * 2, 192)  # resampled to the 2x2 grid of 32 px input
    assert PRESETS["paper"].architecture == "vit_large_patch16_224" and PRESETS["paper"].image_size == 512


# ------------------------------------------------------------------------------------------- errors


def _refused(args: list[str], capsys, out: Path, *expected: str) -> None:
    code = main([*args, "--json", str(out / "r.json"), "--plot", str(out / "r.png")])
    err = capsys.readouterr().err
    assert code == 2, err
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err
    assert not list(out.iterdir()), "nothing may be written on a bad input"


def test_bad_presets_architectures_and_weights_are_refused_and_write_nothing(
    crops: Path, weights: Path, tmp_path: Path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    ckpt = out / "ckpt"
    args = preset_args(crops, weights, "--checkpoints", str(ckpt))
    _refused([*args[:3], "nope", *args[4:]], capsys, out, "unknown --preset 'nope'; expected one of: paper")
    _refused(
        [*args[:5], "timm:vit_tinny_patch16_224", *args[6:]],
        capsys,
        out,
        "unknown timm architecture 'vit_tinny_patch16_224'",
        "did you mean vit_tiny_patch16_224",
    )
    _refused([*args[:5], "effnet-lite0", *args[6:]], capsys, out, "--backbone must be timm:NAME")
    small = save_vit(tmp_path / "small.safetensors", "vit_small_patch16_224")
    _refused(
        [*args[:7], str(small), *args[8:]], capsys, out, f"{small} does not fit the weights of timm {ARCH}"
    )
    partial = tmp_path / "partial.safetensors"
    from safetensors.torch import load_file, save_file

    save_file(
        {k: v for k, v in load_file(str(weights)).items() if not k.startswith("blocks.11")}, str(partial)
    )
    _refused([*args[:7], str(partial), *args[8:]], capsys, out, "the file lacks", "blocks.11")
    pickle = tmp_path / "w.pth"
    pickle.write_bytes(b"x")
    _refused([*args[:7], str(pickle), *args[8:]], capsys, out, "expected a .safetensors file")
    _refused([*args[:6], *args[8:]], capsys, out, "--preset paper needs --backbone-weights FILE.safetensors")
    _refused(
        ["evaluate", str(crops), "--epochs", "3"], capsys, out, "--epochs: only for end-to-end fine-tuning"
    )
    _refused([*args, "--mixed-precision", "bf16"], capsys, out, "--mixed-precision bf16 needs a CUDA device")


def test_checkpoints_of_another_run_are_refused(crops: Path, weights: Path, tmp_path: Path, capsys):
    ckpt = tmp_path / "ckpt"
    args = [a for a in preset_args(crops, weights, "--checkpoints", str(ckpt)) if a != "--quiet"]
    assert main([*args, "--epochs", "1"]) == 0
    before = {p: p.stat().st_mtime_ns for p in ckpt.rglob("*")}
    err = capsys.readouterr().err  # progress bars: over the folds, and per epoch
    assert "folds: 100%" in err and "fold 2/2 real epoch 1/1" in err
    assert (
        main([*preset_args(crops, weights, "--checkpoints", str(ckpt)), "--epochs", "1", "--lr", "0.1"]) == 2
    )
    err = capsys.readouterr().err
    assert (
        f"--checkpoints {ckpt} holds a run with other settings or data" in err
        and "finetune.lr: 0.001 → 0.1" in err
    )
    assert {p: p.stat().st_mtime_ns for p in ckpt.rglob("*")} == before
    with pytest.raises(InputError, match="not a checkpoints folder"):
        finetune.check_checkpoints(crops, {})


@pytest.mark.slow
def test_two_processes_with_accelerate_fine_tune_as_one(crops: Path, weights: Path, tmp_path: Path):
    """``accelerate launch`` with 2 CPU processes (gloo): each trains on its share of every batch, gradients
    averaged; the outputs are those of a one-process run, its losses equal up to float summation order."""
    import os
    import subprocess
    import sys

    args = preset_args(crops, weights, "--checkpoints", str(tmp_path / "ckpt2"))
    assert main([*preset_args(crops, weights), "--json", str(tmp_path / "one.json")]) == 0
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "napari_pathup", *args, "--device", "cpu", "--json", str(tmp_path / "two.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ViT (fine-tuned)        real") == 1  # the main process alone prints
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert one["protocol"]["processes"] == 1 and two["protocol"]["processes"] == 2
    assert [(r["classifier"], r["fold"]) for r in two["folds"]] == [
        (r["classifier"], r["fold"]) for r in one["folds"]
    ]
    for run, losses in one["protocol"]["train_loss_per_epoch"].items():
        assert np.allclose(two["protocol"]["train_loss_per_epoch"][run], losses, rtol=1e-4), run
    states = sorted((tmp_path / "ckpt2").glob("fold*/state.json"))
    assert len(states) == 2 and all(json.loads(p.read_text())["done"] for p in states)
