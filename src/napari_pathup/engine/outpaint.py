"""Stage 1 at the reference's own scale: the reference 1:1 in the output's field, the rest outpainted.

PathUp treats the reference as the whole output field ("stretch"): a reference smaller than the output
is enlarged and its tissue looks magnified. With ``reference_fit="outpaint"`` the stage-1 canvas is the
output's field shrunk to the stage-1 size; the reference goes in its centre at the same shrink (so one
reference pixel is one output pixel), cropped where it is larger than the output, and a *known* mask
marks where it lies; the rest of the canvas is the reference mirrored at its edges. The sampler
(:func:`~napari_pathup.engine.sampler.denoise_patches`) starts the whole canvas at
``plan.OUTPAINT_FILL_STRENGTH`` (nearly pure noise: only the fill's colours and coarse density
survive) and holds the known region at
the noised reference until the img2img strength is reached; from then on everything is denoised
together, so the reference gets img2img at ``strength`` and the tissue around it is drawn in its context
(RePaint-style latent blending, as diffusers' inpainting pipeline does for models without an inpainting
input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_pathup.geometry import Box

#: the known mask ramps from 0 to 1 over this many latent pixels inside the reference's edge, so
#: that the drawn tissue joins the reference without a step
FEATHER = 2


@dataclass(frozen=True)
class Placement1to1:
    """Where the reference lies in the output (pixels) and in the stage-1 canvas (pixels)."""

    crop: Box  # the part of the reference used (all of it unless it is larger than the output)
    output_box: Box  # where that part lies in the output, 1:1
    canvas_box: Box  # the same at the stage-1 scale


def place_reference(
    reference_hw: tuple[int, int], output_hw: tuple[int, int], canvas_hw: tuple[int, int]
) -> Placement1to1:
    """The reference centred 1:1 in the output (cropped centrally where larger), and at the canvas scale."""
    (rh, rw), (oh, ow), (ch, cw) = reference_hw, output_hw, canvas_hw
    h, w = min(rh, oh), min(rw, ow)
    crop = Box((rh - h) // 2, (rw - w) // 2, (rh - h) // 2 + h, (rw - w) // 2 + w)
    oy, ox = (oh - h) // 2, (ow - w) // 2
    output_box = Box(oy, ox, oy + h, ox + w)
    sy, sx = ch / oh, cw / ow
    y0, x0 = round(oy * sy), round(ox * sx)
    y1, x1 = max(y0 + 1, round((oy + h) * sy)), max(x0 + 1, round((ox + w) * sx))
    return Placement1to1(crop, output_box, Box(y0, x0, min(y1, ch), min(x1, cw)))


def outpaint_canvas(
    reference: torch.Tensor, output_hw: tuple[int, int], canvas_hw: tuple[int, int], scale_factor: int
) -> tuple[torch.Tensor, torch.Tensor, Placement1to1]:
    """The stage-1 canvas (3, h, w) in [-1, 1], its known mask (1, 1, h/f, w/f) and the placement.

    Outside the reference the canvas holds the reference mirrored at its edges (repeatedly where the
    field is larger): the sampler starts there from this fill noised to ``plan.OUTPAINT_FILL_STRENGTH``.
    """
    ch, cw = canvas_hw
    place = place_reference(tuple(reference.shape[-2:]), output_hw, canvas_hw)  # type: ignore[arg-type]
    c, b = place.crop, place.canvas_box
    part = reference[None, :, c.y0 : c.y1, c.x0 : c.x1].float()
    small = F.interpolate(part, size=(b.height, b.width), mode="bilinear", antialias=True).clamp(-1, 1)
    pad = ((0, 0), (b.y0, ch - b.y1), (b.x0, cw - b.x1))  # mirrored as often as the field needs
    canvas = torch.from_numpy(np.pad(small[0].numpy(), pad, mode="symmetric"))
    return canvas, known_mask(b, canvas_hw, scale_factor), place


def known_mask(box: Box, canvas_hw: tuple[int, int], scale_factor: int) -> torch.Tensor:
    """1 on latent pixels wholly inside ``box`` (canvas pixels), ramping to 0 over :data:`FEATHER`
    latent pixels at every edge of the box that is not the canvas's own edge; 0 outside."""
    f = scale_factor
    lh, lw = canvas_hw[0] // f, canvas_hw[1] // f
    y0, x0 = -(-box.y0 // f), -(-box.x0 // f)  # latent pixels wholly inside the box
    y1, x1 = box.y1 // f, box.x1 // f

    def ramp(n: int, start: int, stop: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32)
        inside = ((i >= start) & (i < stop)).float()
        if stop <= start:
            return inside
        lo = (i - start + 1) / (FEATHER + 1) if start > 0 else torch.ones(n)
        hi = (stop - i) / (FEATHER + 1) if stop < n else torch.ones(n)
        return inside * torch.minimum(lo, hi).clamp(0, 1)

    mask = ramp(lh, y0, y1)[:, None] * ramp(lw, x0, x1)[None, :]
    return mask[None, None]
