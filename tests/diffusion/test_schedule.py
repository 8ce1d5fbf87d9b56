"""Noise schedule of eq. 1 (paper 4.1.2: T = 1000, cosine, ε-prediction)."""

from __future__ import annotations

import pytest
import torch

from meddiff.diffusion.schedule import make_scheduler
from meddiff.errors import ConfigError


def test_cosine_schedule_at_paper_scale():
    scheduler = make_scheduler(1000, "cosine")
    abar = scheduler.alphas_cumprod
    assert abar.shape == (1000,)
    assert (abar[1:] < abar[:-1]).all(), "ᾱ_t must fall monotonically"
    assert abar[0] > 0.999 and abar[-1] < 1e-3
    assert scheduler.prediction_type == "epsilon" and scheduler.clip_sample


def test_noising_follows_eq_1_closed_form():
    scheduler = make_scheduler(100, "cosine")
    x0, noise, t = torch.ones(2, 1, 4, 4, 4), torch.randn(2, 1, 4, 4, 4), torch.tensor([0, 99])
    x_t = scheduler.add_noise(x0, noise, t)
    abar = scheduler.alphas_cumprod[t].view(2, 1, 1, 1, 1)
    assert torch.allclose(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise)


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="quadratic"):
        make_scheduler(1000, "quadratic")
