"""ModelSpec: what a run plan needs, from the configs alone, equal to what the loaded model measures."""

from __future__ import annotations

import pytest
import torch

from napari_pathup.models.build import build_denoiser, build_random_autoencoder
from napari_pathup.models.load import read_model_spec
from napari_pathup.models.spec import autoencoder_scale_factor, denoiser_patch_multiple


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_the_patch_rule_from_the_config_is_the_rule_the_denoiser_obeys(preset):
    unet = build_denoiser(("a", "b"), preset=preset, sample_size=16).eval()
    m = denoiser_patch_multiple("UNet2DModel", unet.config)
    assert m == (2 if preset == "tiny" else 4)

    def works(side: int) -> bool:
        try:
            with torch.no_grad():
                unet(torch.zeros(1, 4, side, side), torch.tensor(5), class_labels=torch.tensor([0]))
        except RuntimeError:
            return False
        return True

    assert [side for side in range(1, 2 * m + 2) if works(side)] == [m, 2 * m]


@pytest.mark.parametrize("kind", ["kl", "tiny"])
def test_the_autoencoder_factor_from_the_config_is_the_measured_one(kind):
    from napari_pathup.models.base import Autoencoder

    vae = build_random_autoencoder(kind)
    assert autoencoder_scale_factor(type(vae).__name__, vae.config) == Autoencoder(vae).scale_factor == 8


def test_a_spec_reads_no_weights_and_matches_the_loaded_model(
    pathup_model, pathup_model_dir, sd_model_dir, monkeypatch
):
    import napari_pathup.models.load as load

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(load, "_from_pretrained", no_weights)
    spec = read_model_spec(pathup_model_dir)
    assert (spec.kind, spec.classes, spec.native_size, spec.latent_channels) == (
        "pathup",
        pathup_model.classes,
        pathup_model.native_size,
        pathup_model.latent_channels,
    )
    assert (
        spec.vae_scale_factor == pathup_model.vae_scale_factor
        and spec.patch_multiple == pathup_model.patch_multiple
    )
    sd = read_model_spec(sd_model_dir)
    assert sd.kind == "stable-diffusion" and sd.patch_multiple == 1  # it up-samples to the recorded sizes


def test_a_spec_and_the_loaded_model_refuse_an_unknown_class_alike(
    pathup_model, pathup_model_dir, sd_model_dir
):
    from napari_pathup.errors import SettingsError

    spec = read_model_spec(pathup_model_dir)
    messages = []
    for model in (spec, pathup_model):
        model.check_class(pathup_model.classes[0])  # a known class passes
        with pytest.raises(SettingsError, match="unknown class 'lymphoma'") as caught:
            model.check_class("lymphoma")
        messages.append(str(caught.value).split(";")[1])
    assert messages[0] == messages[1] == f" expected one of {', '.join(pathup_model.classes)}"
    read_model_spec(sd_model_dir).check_class("any prompt")  # text models accept any class
