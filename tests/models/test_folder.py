"""Finding a model folder without torch: a local folder, or a hub id only when the user allows it."""

from __future__ import annotations

import pytest

from napari_pathup.errors import ModelLoadError
from napari_pathup.models.folder import detect_layout, resolve_model_path


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
