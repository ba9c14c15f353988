"""Finding and checking a model folder without torch: a local folder, or a hub id only when the user
allows it; its files checked as loading checks them."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import BROKEN_MODELS, broken_model
from napari_pathup.errors import ModelLoadError
from napari_pathup.models.folder import check_model_files, detect_layout, resolve_model_path

#: broken folders only loading can tell: the weights' bytes, and a scheduler class diffusers lacks
NEEDS_DIFFUSERS = ("truncated-weights", "no-such-scheduler")


def test_a_local_folder_is_found_and_its_layout_read(pathup_model_dir, sd_model_dir, tmp_path):
    assert resolve_model_path(str(pathup_model_dir)) == pathup_model_dir
    assert detect_layout(pathup_model_dir) == "pathup" and detect_layout(sd_model_dir) == "stable-diffusion"
    with pytest.raises(ModelLoadError, match=r"is not a model folder: expected pathup\.json"):
        detect_layout(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_path(tmp_path / "missing")


def test_a_hub_id_is_fetched_only_when_allowed_and_a_failed_fetch_is_one_line(monkeypatch):
    import huggingface_hub

    asked = []

    def offline(repo_id, **kwargs):
        asked.append(repo_id)
        raise OSError("Name or service not known\nPlease check your internet connection.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelLoadError, match=r"allow it explicitly \(--allow-download\)"):
        resolve_model_path("org/name")
    assert asked == []  # never touched the network without the user's word
    with pytest.raises(ModelLoadError) as failed:
        resolve_model_path("org/name", allow_download=True)
    assert asked == ["org/name"]
    assert str(failed.value) == (
        "cannot download the hub model 'org/name': OSError: Name or service not known Please check your "
        "internet connection."
    )


@pytest.mark.parametrize("how", BROKEN_MODELS)
def test_the_files_check_refuses_what_loading_refuses_in_the_same_words(pathup_model_dir, tmp_path, how):
    """Every broken folder that loading refuses before its weights is refused by the torch-free check
    with the same message (the command line's early refusal); the rest pass it, for loading to decide."""
    from napari_pathup.models.load import load_model

    folder = broken_model(pathup_model_dir, tmp_path, how)
    with pytest.raises(ModelLoadError, match=BROKEN_MODELS[how]) as loading:
        load_model(folder)
    if how in NEEDS_DIFFUSERS:
        assert check_model_files(folder).layout == "pathup"
    else:
        with pytest.raises(ModelLoadError) as early:
            check_model_files(folder)
        assert str(early.value) == str(loading.value)


def test_the_files_check_reads_both_layouts(pathup_model_dir, sd_model_dir, tmp_path):
    import shutil

    from napari_pathup.models.load import read_model_spec

    files = check_model_files(pathup_model_dir)
    assert files.layout == "pathup" and files.classes == read_model_spec(pathup_model_dir).classes
    assert set(files.configs) == {"denoiser", "autoencoder", "scheduler"}
    text = check_model_files(sd_model_dir)
    assert text.layout == "stable-diffusion" and text.classes == []  # a text model: any prompt
    assert text.configs["unet"][0] == "UNet2DConditionModel"
    folder = Path(shutil.copytree(sd_model_dir, tmp_path / "sd"))
    for name in ("vocab.json", "tokenizer.json"):
        (folder / "tokenizer" / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match="missing CLIP tokenizer files"):
        check_model_files(folder)
