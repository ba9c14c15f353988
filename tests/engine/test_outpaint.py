"""Outpainting (``reference_fit="outpaint"``): the reference 1:1 in the output's field, the rest drawn.

The sampler's known-region handling is checked against a whole-latent loop written independently of
the engine (the diffusers inpainting recipe for models without an inpainting input), with the
per-pixel denoiser of the exactness tests, so that the patch merge cannot hide a mistake.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

from helpers import PixelDenoiser, drain
from napari_pathup.engine.events import PatchPreview, StageStarted, StepStarted
from napari_pathup.engine.outpaint import FEATHER, known_mask, outpaint_canvas, place_reference
from napari_pathup.engine.pipeline import SynthesisSettings, run, synthesize
from napari_pathup.engine.plan import OUTPAINT_FILL_STRENGTH
from napari_pathup.engine.sampler import PatchSampling, denoise_patches, img2img_timesteps
from napari_pathup.errors import SettingsError
from napari_pathup.geometry import Box

SCHEDULERS = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm++": DPMSolverMultistepScheduler}
SMALL = {"reference_size": 64, "steps": 6, "decode_tile": 8, "decode_overlap": 2}


def make(name: str):
    return SCHEDULERS[name](num_train_timesteps=1000, beta_schedule="scaled_linear")


def whole_latent_outpaint(denoiser, sched, clean, known, cond, steps, strength, known_strength, seed):
    """img2img from ``strength`` over the whole latent; after each step the known region is reset to
    ``clean`` noised to the next timestep, until the known region's own img2img schedule has begun."""
    g = torch.Generator().manual_seed(seed)
    sched.set_timesteps(steps)
    timesteps = sched.timesteps[steps - min(int(steps * strength), steps) :]
    own = min(int(steps * known_strength), steps)
    held = len(timesteps) - own  # steps before the known region's own schedule starts
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(steps - len(timesteps))
    noise = randn_tensor(clean.shape, generator=g, dtype=torch.float32)
    x = sched.add_noise(clean, noise, timesteps[:1])
    kwargs = {"generator": g} if "generator" in inspect.signature(sched.step).parameters else {}
    for i, t in enumerate(timesteps):
        x = sched.step(denoiser(sched.scale_model_input(x, t), t, cond), t, x, **kwargs).prev_sample
        if i + 1 <= held:
            x = known * sched.add_noise(clean, noise, timesteps[i + 1 : i + 2]) + (1 - known) * x
    return x


def a_known_mask(h: int, w: int) -> torch.Tensor:
    return known_mask(Box(5 * 8, 9 * 8, 16 * 8, 22 * 8), (h * 8, w * 8), 8)


@pytest.mark.parametrize("strength", [1.0, 0.9])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_tiled_outpaint_equals_whole_latent_outpaint(name, strength):
    torch.manual_seed(0)
    clean = torch.randn(1, 4, 20, 28)
    known = a_known_mask(20, 28)
    denoiser, cond = PixelDenoiser(), torch.tensor([1])
    sampling = PatchSampling(
        steps=10, strength=strength, guidance=1.0, patch_size=8, overlap=3, batch_size=5, known_strength=0.6
    )
    expected = whole_latent_outpaint(denoiser, make(name), clean, known, cond, 10, strength, 0.6, seed=3)
    g = torch.Generator().manual_seed(3)
    got, _ = drain(denoise_patches(denoiser, make(name), clean, cond, None, sampling, g, known=known))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_wholly_known_latent_is_plain_img2img_at_the_known_strength():
    """Outpainting nothing is img2img: the held steps only bring the latent to t_i, unevaluated."""
    torch.manual_seed(1)
    clean = torch.randn(1, 4, 16, 24)
    denoiser, cond = PixelDenoiser(), torch.tensor([2])
    full = PatchSampling(steps=10, strength=1.0, guidance=1.0, patch_size=8, overlap=2, known_strength=0.6)
    plain = PatchSampling(steps=10, strength=0.6, guidance=1.0, patch_size=8, overlap=2)
    outpainted, events = drain(
        denoise_patches(
            denoiser, make("ddim"), clean, cond, None, full, torch.Generator().manual_seed(4),
            known=torch.ones(1, 1, 16, 24),
        )
    )  # fmt: skip
    img2img, plain_events = drain(
        denoise_patches(denoiser, make("ddim"), clean, cond, None, plain, torch.Generator().manual_seed(4))
    )
    torch.testing.assert_close(outpainted, img2img, rtol=0, atol=0)
    steps = [e for e in events if isinstance(e, StepStarted)]
    assert len(steps) == 10  # the progress counts every step of the full schedule
    previews = [e for e in events if isinstance(e, PatchPreview)]
    assert len(previews) == len([e for e in plain_events if isinstance(e, PatchPreview)])


def test_patches_inside_the_held_reference_are_not_evaluated():
    calls: list[int] = []

    def counting(x, t, labels):
        calls.append(x.shape[0])
        return torch.zeros_like(x)

    clean = torch.zeros(1, 4, 32, 32)
    known = torch.zeros(1, 1, 32, 32)
    known[..., :16, :] = 1  # the top half: the top row of the 2x2 grid of 16-px patches lies inside
    sampling = PatchSampling(
        steps=10, strength=1.0, guidance=1.0, patch_size=16, overlap=0, batch_size=1, known_strength=0.5
    )
    drain(denoise_patches(counting, make("ddim"), clean, torch.tensor([0]), None, sampling,
                          torch.Generator().manual_seed(0), known=known))  # fmt: skip
    held = 10 - len(img2img_timesteps(make("ddim"), 10, 0.5, torch.device("cpu")))
    assert held == 5
    assert len(calls) == held * 2 + (10 - held) * 4  # 2 of 4 patches while held, then all 4


def test_place_reference_centres_it_1_to_1_and_crops_what_is_larger():
    p = place_reference((632, 1024), (2048, 2048), (512, 512))
    assert p.crop == Box(0, 0, 632, 1024)
    assert p.output_box == Box(708, 512, 1340, 1536)
    assert p.canvas_box == Box(177, 128, 335, 384)  # a quarter of the output: 1:1 at the overview scale
    wide = place_reference((300, 3000), (512, 1024), (256, 512))
    assert wide.crop == Box(0, 988, 300, 2012)  # the centre 1024 px of the 3000-px width
    assert wide.output_box == Box(106, 0, 406, 1024)
    assert wide.canvas_box == Box(53, 0, 203, 512)


def test_known_mask_is_one_inside_feathered_at_inner_edges_and_zero_outside():
    mask = known_mask(Box(40, 0, 120, 64), (160, 64), 8)[0, 0]  # rows 5..15 of 20; all 8 columns
    assert mask.shape == (20, 8)
    assert (mask[:5] == 0).all() and (mask[15:] == 0).all()
    assert (mask[5 + FEATHER : 15 - FEATHER] == 1).all()
    assert 0 < mask[5, 0] < mask[6, 0] < 1  # the ramp inside the box's top edge
    assert (mask[8, :] == 1).all()  # no ramp at the canvas's own left and right edges
    whole = known_mask(Box(0, 0, 160, 64), (160, 64), 8)
    assert (whole == 1).all()


def test_outpaint_canvas_holds_the_shrunk_reference_where_the_mask_says():
    reference = torch.rand(3, 64, 128) * 2 - 1
    canvas, known, place = outpaint_canvas(reference, (256, 256), (128, 128), 8)
    assert canvas.shape == (3, 128, 128) and known.shape == (1, 1, 16, 16)
    b = place.canvas_box
    assert b == Box(48, 32, 80, 96)
    shrunk = torch.nn.functional.interpolate(reference[None], size=(32, 64), mode="bilinear", antialias=True)
    torch.testing.assert_close(canvas[:, b.y0 : b.y1, b.x0 : b.x1], shrunk[0].clamp(-1, 1))
    assert known[0, 0, 6:10, 4:12].min() > 0 and known[0, 0, :6].max() == 0
    # around it, the field starts from the reference mirrored at its edges (not a smear of its border)
    inside = canvas[:, b.y0 : b.y1, b.x0 : b.x1]
    torch.testing.assert_close(canvas[:, b.y0 - 1, b.x0 : b.x1], inside[:, 0])
    torch.testing.assert_close(canvas[:, b.y0 - 8, b.x0 : b.x1], inside[:, 7])
    torch.testing.assert_close(canvas[:, b.y0 : b.y1, b.x1 + 3], inside[:, :, -4])


def test_outpaint_of_a_reference_as_large_as_the_output_equals_stretch(pathup_model, reference):
    square = np.ascontiguousarray(reference[:128, :128])
    a = run(pathup_model, square, SynthesisSettings("tumour", height=128, width=128, **SMALL)).image
    b = run(
        pathup_model,
        square,
        SynthesisSettings("tumour", height=128, width=128, reference_fit="outpaint", **SMALL),
    ).image
    np.testing.assert_array_equal(a, b)


def test_outpaint_starts_stage_1_nearly_from_noise_and_keeps_the_output_size(pathup_model, reference):
    small = np.ascontiguousarray(reference[:128, :128])
    settings = SynthesisSettings("tumour", height=256, width=192, reference_fit="outpaint", **SMALL)
    events = list(synthesize(pathup_model, small, settings))
    stage_one = next(e for e in events if isinstance(e, StageStarted) and e.stage == 1)
    assert stage_one.steps == int(6 * OUTPAINT_FILL_STRENGTH)  # nearly from noise (stretch: int(6 * 0.6))
    assert len([e for e in events if isinstance(e, StepStarted) and e.stage == 1]) == stage_one.steps
    final = events[-1]
    assert final.image.shape == (256, 192, 3) and final.settings["reference_fit"] == "outpaint"
    stretched = run(pathup_model, small, SynthesisSettings("tumour", height=256, width=192, **SMALL)).image
    assert not np.array_equal(final.image, stretched)


def test_reference_fit_is_checked_and_named(pathup_model):
    with pytest.raises(
        SettingsError, match=r"reference_fit \(--reference-fit\) must be one of stretch, outpaint"
    ):
        SynthesisSettings("tumour", reference_fit="tile").resolve(pathup_model)
    # the reference's own img2img schedule is checked before any work, as stretch's is
    too_short = SynthesisSettings(
        "tumour", steps=1, strength=0.5, upscale_strength=1.0, reference_fit="outpaint"
    )
    with pytest.raises(
        SettingsError, match=r"steps \(--steps\) 1 with strength \(--strength\) 0.5 gives no usable"
    ):
        too_short.resolve(pathup_model)
