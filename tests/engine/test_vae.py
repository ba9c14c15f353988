"""Tiled encode/decode: seamless blending, exact regions, any sink, bounded by tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_pathup.engine.events import TileDecoded
from napari_pathup.engine.vae import crop_source, decode_tiled, encode_tiled, resized_source
from napari_pathup.models.base import Autoencoder


class PixelAutoencoder(Autoencoder):
    """An autoencoder that acts per latent pixel (8x8 average / nearest upsampling with a 1x1 map).

    Tiled results must equal whole-image results exactly: only blending can break that.
    """

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.enc = torch.randn(4, 3, generator=g)
        self.dec = torch.randn(3, 4, generator=g) * 0.3
        self.scale_factor = 8
        self.latent_channels = 4

    @property
    def device(self):
        return torch.device("cpu")

    @property
    def dtype(self):
        return torch.float32

    def encode(self, image):
        return torch.einsum("oc,bchw->bohw", self.enc, F.avg_pool2d(image, 8))

    def decode(self, latent):
        rgb = torch.einsum("oc,bchw->bohw", self.dec, latent).tanh()
        return F.interpolate(rgb, scale_factor=8, mode="nearest")


@pytest.mark.parametrize(("tile", "overlap"), [(8, 2), (16, 4), (7, 3), (64, 16)])
def test_tiled_decode_equals_whole_decode_for_a_local_decoder(tile, overlap):
    ae = PixelAutoencoder()
    latent = torch.randn(1, 4, 37, 50, generator=torch.Generator().manual_seed(1))
    whole = ((ae.decode(latent)[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    sink = np.zeros((37 * 8, 50 * 8, 3), np.uint8)
    events = list(decode_tiled(ae, latent, sink, tile=tile, overlap=overlap))
    np.testing.assert_array_equal(sink, whole)
    # every output pixel is written exactly once, in final form, and reported
    count = np.zeros(sink.shape[:2], np.int32)
    for e in events:
        assert isinstance(e, TileDecoded)
        count[e.box.slices()] += 1
        np.testing.assert_array_equal(e.rgb, whole[e.box.slices()])
    assert (count == 1).all()
    assert [e.tile_index for e in events] == list(range(events[0].tiles))


def test_tiled_encode_equals_whole_encode_for_a_local_encoder():
    ae = PixelAutoencoder()
    image = torch.rand(3, 200, 136) * 2 - 1
    whole = ae.encode(image[None])
    tiled = encode_tiled(ae, crop_source(image), 200, 136, tile=8, overlap=3)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-6)


def test_zarr_sink_matches_numpy_sink(pathup_model):
    zarr = pytest.importorskip("zarr")
    latent = torch.randn(1, 4, 24, 40, generator=torch.Generator().manual_seed(2))
    a = np.zeros((192, 320, 3), np.uint8)
    b = zarr.create_array(
        store=zarr.storage.MemoryStore(), shape=(192, 320, 3), chunks=(64, 64, 3), dtype="uint8"
    )
    list(decode_tiled(pathup_model.autoencoder, latent, a, tile=16, overlap=4))
    list(decode_tiled(pathup_model.autoencoder, latent, b, tile=16, overlap=4))
    np.testing.assert_array_equal(b[:], a)


def test_blended_decode_of_a_real_vae_is_close_to_whole_decode(pathup_model):
    """With GroupNorm and a receptive field, tiles differ at their edges; blending keeps it small."""
    ae = pathup_model.autoencoder
    latent = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(3)) * 0.5
    whole = ((ae.decode(latent)[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).numpy()
    sink = np.zeros((256, 256, 3), np.uint8)
    list(decode_tiled(ae, latent, sink, tile=16, overlap=8))
    assert np.abs(sink.astype(float) - whole).mean() < 6.0


def test_sink_shape_is_checked(pathup_model):
    with pytest.raises(ValueError, match="sink has shape"):
        list(decode_tiled(pathup_model.autoencoder, torch.zeros(1, 4, 8, 8), np.zeros((10, 10, 3), np.uint8)))


def test_resized_source_matches_interpolate_tile_by_tile():
    image = torch.rand(3, 40, 56) * 2 - 1
    full = F.interpolate(image[None], size=(160, 224), mode="bicubic", align_corners=False).clamp(-1, 1)
    source = resized_source(image, 160, 224)
    from napari_pathup.geometry import Box

    for box in (Box(0, 0, 64, 64), Box(96, 160, 160, 224), Box(37, 11, 101, 75)):
        torch.testing.assert_close(
            source(box), full[..., box.y0 : box.y1, box.x0 : box.x1], rtol=1e-4, atol=1e-4
        )
