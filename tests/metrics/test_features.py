"""Feature extractors: FID Inception architecture and checksum, EfficientNet-Lite0, user modules, timm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_pathup.errors import InputError
from napari_pathup.metrics import INCEPTION_ENV, get_extractor, inception_extractor, module_extractor
from napari_pathup.metrics.inception import FIDInceptionV3, load_fid_inception, resize_bilinear_tf1


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> str:
    """A state dict of the FID architecture with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    state = FIDInceptionV3().state_dict()
    for key, value in state.items():
        if key.endswith(("running_var", "bn.weight")):
            value.uniform_(0.5, 1.5)
        elif key.endswith(("running_mean", "bn.bias")):
            value.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(state, path)
    return str(path)


def test_inception_weights_with_the_wrong_checksum_are_refused(random_inception_weights, monkeypatch):
    with pytest.raises(InputError, match="6726825d"):
        load_fid_inception(random_inception_weights)
    with pytest.raises(InputError, match="6726825d"):
        inception_extractor(random_inception_weights)
    monkeypatch.setenv(INCEPTION_ENV, random_inception_weights)
    with pytest.raises(InputError, match="6726825d"):  # auto picks the env file and refuses it, no fallback
        get_extractor("auto", device="cpu")


def test_missing_inception_weights_are_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    with pytest.raises(InputError, match="inception-weights"):
        get_extractor("inception", device="cpu")
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(InputError, match=r"nowhere\.pth"):
        get_extractor("auto", device="cpu")


def test_inception_architecture_and_resize_match_torch_fidelity(random_inception_weights):
    tf_inception = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    tf_resize = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    ours = inception_extractor(random_inception_weights, unsafe_skip_checksum=True)
    theirs = tf_inception.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=random_inception_weights
    )
    image = np.random.default_rng(0).integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    batch = torch.from_numpy(image).permute(2, 0, 1)[None]

    resized = resize_bilinear_tf1(batch.float(), (299, 299))
    reference = tf_resize.interpolate_bilinear_2d_like_tensorflow1x(
        batch.float(), size=(299, 299), align_corners=False
    )
    assert torch.equal(resized, reference)

    with torch.no_grad():
        expected = theirs(batch)[0].numpy()
    got = ours.embed(ours.prepare(image))
    assert got.shape == (1, 2048)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # random weights are not the FID network: never labelled FID
    assert not ours.is_fid
    assert ours.distance_names == ("FD", "KD")
    assert ours.provenance()["checksum_verified"] is False


def test_only_verified_weights_with_the_reference_resize_are_called_fid(
    random_inception_weights, monkeypatch
):
    from napari_pathup.checksum import sha256_of
    from napari_pathup.metrics import inception

    # pretend the random file is the published one, to check the labelling that follows a passed checksum
    monkeypatch.setattr(inception, "INCEPTION_SHA256_PREFIX", sha256_of(random_inception_weights)[:8])
    verified = inception_extractor(random_inception_weights)
    assert verified.is_fid and verified.distance_names == ("FID", "KID")
    assert verified.provenance()["checksum_verified"] is True
    resized = inception_extractor(random_inception_weights, resize_method="bilinear-antialias")
    assert not resized.is_fid
    assert resized.metric_label("FD") == "FD (Inception-v3 pool3)"


def test_effnet_lite0_loads_offline_with_its_checksum_and_recognises_an_imagenet_photo():
    extractor = get_extractor("effnet-lite0", device="cpu")
    assert extractor.weights_sha256.startswith("57934424")
    assert extractor.distance_names == ("FD", "KD")
    assert extractor.metric_label("FD") == "FD (EfficientNet-Lite0)"
    data = pytest.importorskip("skimage.data")
    coffee = data.coffee()  # a cup of espresso
    side = min(coffee.shape[:2])
    with torch.no_grad():
        x = extractor.prepare(np.ascontiguousarray(coffee[:side, :side]))
        mean = torch.tensor(extractor.mean).view(1, 3, 1, 1)
        std = torch.tensor(extractor.std).view(1, 3, 1, 1)
        top = extractor.module.logits((x - mean) / std).argmax(1).item()
    assert top == 967  # ImageNet "espresso": weights and preprocessing are the right ones
    assert extractor.embed(x).shape == (1, 1280)


def test_auto_uses_effnet_lite0_without_inception_weights(monkeypatch):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    assert get_extractor("auto", device="cpu").name == "effnet-lite0"


def test_a_user_module_is_named_in_its_results(tmp_path):
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    weights = tmp_path / "tiny.pth"
    torch.save(module.state_dict(), weights)
    extractor = module_extractor(module, name="tiny", input_size=32, weights_path=weights)
    feats = extractor.embed(extractor.prepare(np.zeros((50, 40, 3), np.uint8)))
    assert feats.shape == (1, 8)
    assert extractor.metric_label("FD") == "FD (tiny)"
    assert len(extractor.provenance()["weights_sha256"]) == 64
    assert extractor.provenance()["normalisation"]["mean"][0] == pytest.approx(0.485 * 255)


def test_timm_model_with_local_safetensors(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    model = timm.create_model("test_resnet", pretrained=False)
    weights = tmp_path / "test_resnet.safetensors"
    save_file(model.state_dict(), str(weights))
    extractor = get_extractor("timm:test_resnet", weights=weights, device="cpu")
    assert extractor.name == "timm:test_resnet"
    assert extractor.embed(extractor.prepare(np.zeros((64, 64, 3), np.uint8))).shape[0] == 1
    with pytest.raises(InputError, match="local weights"):
        get_extractor("timm:test_resnet", device="cpu")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(wrong))
    with pytest.raises(InputError, match="does not match"):
        get_extractor("timm:test_resnet", weights=wrong, device="cpu")


def test_unknown_extractor_name_lists_the_choices():
    with pytest.raises(InputError, match="effnet-lite0"):
        get_extractor("vgg", device="cpu")
