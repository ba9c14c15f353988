"""Named schedulers: a run's scheduler keeps the model's noise schedule and never shares its state."""

from __future__ import annotations

import pytest
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler

from napari_pathup.errors import SettingsError
from napari_pathup.models.schedulers import USABLE_SCHEDULERS, run_scheduler


@pytest.fixture
def base() -> DDIMScheduler:
    return DDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction", steps_offset=1)


def test_a_run_without_a_name_gets_a_fresh_copy_of_the_models_scheduler(base):
    own = run_scheduler(None, base)
    assert type(own) is DDIMScheduler and own is not base
    own.set_timesteps(7)
    assert base.num_inference_steps is None  # the model's scheduler is not touched by a run
    assert dict(own.config) == dict(base.config)


def test_a_named_scheduler_takes_the_models_schedule_and_prediction(base):
    named = run_scheduler("euler-a", base)
    assert isinstance(named, EulerAncestralDiscreteScheduler)
    assert named.config.prediction_type == "v_prediction"
    assert named.config.beta_schedule == "scaled_linear"
    assert run_scheduler("EulerAncestralDiscreteScheduler", base).config == named.config


def test_an_unknown_or_unrepeatable_scheduler_is_refused_naming_the_usable_ones(base):
    with pytest.raises(SettingsError, match=rf"unknown scheduler 'eular'.*{USABLE_SCHEDULERS[0]}"):
        run_scheduler("eular", base)
    assert "dpm++-sde" not in USABLE_SCHEDULERS
    with pytest.raises(SettingsError, match=r"'dpm\+\+-sde' \(--sampler\) is not supported: .* seed"):
        run_scheduler("dpm++-sde", base)
