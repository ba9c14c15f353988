"""PatchAutoencoder: starts as the principal components of real H&E blocks, saves and loads as a
diffusers folder, runs in the engine like AutoencoderTiny, and tiles without seams."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import DEMO, save_patch_model
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.engine.vae import decode_tiled
from napari_pathup.io import read_image
from napari_pathup.models.base import Autoencoder
from napari_pathup.models.load import load_model
from napari_pathup.models.patch_autoencoder import PatchAutoencoder
from napari_pathup.training.autoencoder import psnr


def _crops(seed: int, count: int, size: int = 64) -> torch.Tensor:
    """Random crops of the real tumour field, as [-1, 1] tensors (N, 3, size, size)."""
    image = read_image(DEMO / "tumour" / "hgsc_tumour_nest.jpg")
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, image.shape[0] - size, count)
    xs = rng.integers(0, image.shape[1] - size, count)
    crops = np.stack([image[y : y + size, x : x + size] for y, x in zip(ys, xs, strict=True)])
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1


def _initialised(channels: int, fit: torch.Tensor) -> PatchAutoencoder:
    torch.manual_seed(0)
    vae = PatchAutoencoder(latent_channels=channels, width=8, num_blocks=1).eval()
    vae.initialise_from_blocks(fit)
    return vae


def test_the_start_is_the_whitened_principal_components_of_the_blocks() -> None:
    fit = _crops(0, 64)
    vae = _initialised(8, fit)
    with torch.no_grad():
        z = vae.encode(fit).latents
    codes = z.permute(0, 2, 3, 1).reshape(-1, 8).double()
    # uncorrelated channels of unit variance around zero: whitened components
    torch.testing.assert_close(codes.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.cov(codes.T), torch.eye(8, dtype=torch.float64), atol=1e-3, rtol=0)
    # the same subspace as numpy's SVD of the centred blocks
    blocks = F.pixel_unshuffle(fit, 8).permute(0, 2, 3, 1).reshape(-1, 192).double().numpy()
    _, _, vt = np.linalg.svd(blocks - blocks.mean(0), full_matrices=False)
    projection = vae.encoder.projection.weight.detach()[:, :, 0, 0].double().numpy()
    basis = np.linalg.qr(projection.T)[0]
    overlap = np.linalg.svd(basis.T @ vt[:8].T, compute_uv=False)
    np.testing.assert_allclose(overlap, 1.0, atol=1e-4)


def test_more_latent_channels_keep_more_of_unseen_tissue() -> None:
    fit, unseen = _crops(0, 96), _crops(1, 16)
    scores = []
    for channels in (4, 8, 16):
        vae = _initialised(channels, fit)
        with torch.no_grad():
            scores.append(psnr(vae(unseen).sample, unseen))
    assert scores[0] < scores[1] < scores[2]
    # 8x8 blocks averaged and repeated keep less than any of them
    blocky = F.interpolate(F.avg_pool2d(unseen, 8), scale_factor=8, mode="nearest")
    assert psnr(blocky, unseen) < scores[0]


def test_saves_loads_and_synthesises_as_a_pathup_model(tmp_path: Path) -> None:
    vae = _initialised(8, _crops(0, 64))
    vae.register_to_config(scaling_factor=0.9, shift_factor=0.05)
    folder = save_patch_model(tmp_path / "model", vae, ["stroma", "tumour"])
    assert sorted(p.name for p in (folder / "autoencoder").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    model = load_model(folder)
    assert type(model.modules["autoencoder"]).__name__ == "PatchAutoencoder"
    assert model.vae_scale_factor == 8 and model.latent_channels == 8
    assert model.autoencoder.scaling_factor == 0.9 and model.autoencoder.shift_factor == 0.05
    loaded = model.modules["autoencoder"]
    for name, tensor in vae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    reference = ((_crops(2, 1, 128)[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    settings = SynthesisSettings("tumour", height=96, width=128, reference_size=64, steps=3, batch_size=4)
    finished = run(model, reference, settings)
    assert finished.image.shape == (96, 128, 3) and finished.image.std() > 0


def test_tiled_decoding_blends_without_seams() -> None:
    """With a trained-looking (non-zero) residual, tiles see a receptive field; blending hides it."""
    vae = _initialised(8, _crops(0, 64))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in vae.decoder.residual.conv_out.parameters():
            p.normal_(0, 0.01)
    ae = Autoencoder(vae)
    latent = ae.encode(_crops(3, 1, 256))
    whole = ((ae.decode(latent)[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).numpy()
    sink = np.zeros((256, 256, 3), np.uint8)
    list(decode_tiled(ae, latent, sink, tile=16, overlap=8))
    assert np.abs(sink.astype(float) - whole).max() < 3.0


def test_a_widened_decoder_decodes_as_before_then_learns_with_its_new_channels(tmp_path: Path) -> None:
    """A decoder grown beside a frozen encoder (a decoder leg) starts as the old one, to the bit, and its
    new channels take part once trained; the wider decoder saves and loads as a model."""
    vae = _initialised(8, _crops(0, 64))
    with torch.no_grad():  # a trained-looking residual: the old channels do something
        for p in vae.decoder.residual.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(4)) * 0.05)
    wide = vae.widen_decoder(24)
    assert wide.decoder.residual.conv_out.weight.shape[1] == 24 and wide.config.decoder_width == 24
    x = _crops(5, 2)
    z = vae.encode(x).latents
    assert torch.equal(wide.encode(x).latents, z)
    assert torch.equal(wide.decode(z).sample, vae.decode(z).sample)
    loss = (wide.decode(z).sample - x).abs().mean()
    loss.backward()
    grad = wide.decoder.residual.conv_out.weight.grad
    assert grad is not None
    assert grad[:, 8:].abs().sum() > 0  # the new channels are alive: their output weights learn
    torch.optim.SGD(wide.decoder.parameters(), lr=0.5).step()
    after = (wide.decode(z).sample - x).abs().mean()
    assert after < loss
    folder = save_patch_model(tmp_path / "wide", wide, ["tumour"])
    loaded = load_model(folder).modules["autoencoder"]
    assert loaded.config.decoder_width == 24
    assert torch.equal(loaded.decode(z).sample, wide.decode(z).sample)
    with pytest.raises(ValueError, match="decoder width: expected more than the current 24, got 16"):
        wide.widen_decoder(16)


@pytest.mark.parametrize(("key", "value"), [("patch_size", 0), ("patch_size", "8"), ("num_blocks", -1)])
def test_a_broken_config_is_a_clear_load_error(tmp_path: Path, key: str, value: object) -> None:
    from napari_pathup.errors import ModelLoadError

    torch.manual_seed(0)
    vae = PatchAutoencoder(latent_channels=4, width=8, num_blocks=1)
    folder = save_patch_model(tmp_path / "model", vae, ["tumour"])
    config = folder / "autoencoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), key: value}))
    with pytest.raises(ModelLoadError, match=key):
        load_model(folder)


def test_too_few_blocks_to_start_from_is_a_clear_error() -> None:
    vae = PatchAutoencoder(latent_channels=16, width=8, num_blocks=1)
    with pytest.raises(ValueError, match="needs more than 192 pixel blocks"):
        vae.initialise_from_blocks(_crops(0, 2))  # 2 crops of 64 px: 128 blocks
