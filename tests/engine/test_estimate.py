"""The run-time estimate: calibration calls on the model, scaled by the run's own patch batches."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import napari_pathup.engine.estimate as estimate_module
from napari_pathup.engine.estimate import estimate
from napari_pathup.engine.plan import SynthesisSettings

MS_PER_PATCH = 1e-3


@pytest.fixture
def patch_clock(monkeypatch):
    """A clock that a denoiser call advances by 1 ms per patch evaluation (guidance doubles them) and
    nothing else advances: the estimate then has to come out as the run's patch evaluations in ms."""
    now = [0.0]

    def guided_output(denoiser, x, t, cond, uncond, guidance, weak=None):
        now[0] += x.shape[0] * (1 if guidance == 1 else 2) * MS_PER_PATCH

    monkeypatch.setattr(estimate_module, "guided_output", guided_output)
    monkeypatch.setattr(estimate_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))


@pytest.mark.parametrize("batch_size", [1, 4, 7, 15, 64])
def test_a_step_remainder_batch_is_costed_at_its_own_size(pathup_model, patch_clock, batch_size):
    """81 patches in batches of 8 are ten batches of 8 and one of a single patch: costing the single
    patch as a full batch overestimated the README job by 7-13 %."""
    settings = SynthesisSettings("tumour", height=320, width=448, steps=6, batch_size=batch_size)
    plan = settings.resolve(pathup_model)
    if batch_size in (4, 7):  # these sizes leave a partial batch in each step of this plan
        assert any(st.patches_per_step % batch_size for st in plan.stages)
    result = estimate(pathup_model, plan)
    evaluations = sum(st.patch_evaluations for st in plan.stages)
    assert result.seconds == pytest.approx(evaluations * MS_PER_PATCH, rel=1e-9)


def test_guidance_outside_its_interval_is_costed_as_a_plain_call(pathup_model, patch_clock):
    settings = SynthesisSettings("tumour", height=320, width=448, steps=8, guidance_interval=(0.3, 1.0))
    plan = settings.resolve(pathup_model)
    assert any(0 < st.guided_steps < st.steps for st in plan.stages)
    evaluations = sum(st.patch_evaluations for st in plan.stages)
    assert estimate(pathup_model, plan).seconds == pytest.approx(evaluations * MS_PER_PATCH, rel=1e-9)
