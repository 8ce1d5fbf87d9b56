"""Noise schedule of eq. 1 (paper 4.1.2: T = 1000, cosine, ε-prediction) and the v-prediction option."""

from __future__ import annotations

import pytest
import torch

from meddiff.diffusion.schedule import as_epsilon_fn, make_scheduler, to_epsilon, training_target
from meddiff.errors import ConfigError


def test_cosine_schedule_at_paper_scale():
    scheduler = make_scheduler(1000, "cosine", "epsilon")
    abar = scheduler.alphas_cumprod
    assert abar.shape == (1000,)
    assert (abar[1:] < abar[:-1]).all(), "ᾱ_t must fall monotonically"
    assert abar[0] > 0.999 and abar[-1] < 1e-3
    assert scheduler.prediction_type == "epsilon" and scheduler.clip_sample


def test_noising_follows_eq_1_closed_form():
    scheduler = make_scheduler(100, "cosine", "epsilon")
    x0, noise, t = torch.ones(2, 1, 4, 4, 4), torch.randn(2, 1, 4, 4, 4), torch.tensor([0, 99])
    x_t = scheduler.add_noise(x0, noise, t)
    abar = scheduler.alphas_cumprod[t].view(2, 1, 1, 1, 1)
    assert torch.allclose(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise)


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="quadratic"):
        make_scheduler(1000, "quadratic", "epsilon")


def test_unknown_prediction_is_a_config_error():
    with pytest.raises(ConfigError, match="x0_prediction"):
        make_scheduler(1000, "cosine", "x0_prediction")


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_training_target_and_its_conversion_back_to_the_noise(prediction):
    """The target of x_t = sqrt(ᾱ) x0 + sqrt(1-ᾱ) ε is ε or v = sqrt(ᾱ) ε - sqrt(1-ᾱ) x0 (written out here), and
    to_epsilon / as_epsilon_fn turn a perfect output back into ε at every t (also t = 950, t = T-1)."""
    scheduler = make_scheduler(1000, "cosine", prediction)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(3, 1, 4, 4, 4, generator=g) * 2 - 1, torch.randn(3, 1, 4, 4, 4, generator=g)
    t = torch.tensor([10, 950, 999])
    x_t = scheduler.add_noise(x0, noise, t)
    target = training_target(scheduler, x0, noise, t)
    abar = scheduler.alphas_cumprod[t].view(3, 1, 1, 1, 1)
    expected = noise if prediction == "epsilon" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    assert torch.allclose(target, expected, atol=1e-6)
    for i, ti in enumerate(t.tolist()):
        eps = to_epsilon(target[i : i + 1], x_t[i : i + 1], float(scheduler.alphas_cumprod[ti]), prediction)
        assert torch.allclose(eps, noise[i : i + 1], atol=1e-5)
        eps_fn = as_epsilon_fn(lambda x, _t, i=i: target[i : i + 1], scheduler.alphas_cumprod, prediction)
        assert torch.allclose(eps_fn(x_t[i : i + 1], ti), noise[i : i + 1], atol=1e-5)


def test_v_prediction_recovers_x0_better_than_epsilon_at_large_t():
    """Why the option exists: the same small output error costs ~sqrt((1-ᾱ)/ᾱ) times more in the one-step
    x̂0 of an ε-model than of a v-model (12.8x at t = 950 of the cosine schedule)."""
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(1, 1, 8, 8, 8, generator=g) * 2 - 1, torch.randn(1, 1, 8, 8, 8, generator=g)
    error = 0.01 * torch.randn(1, 1, 8, 8, 8, generator=g)
    t = torch.tensor([950])
    errors = {}
    for prediction in ("epsilon", "v_prediction"):
        scheduler = make_scheduler(1000, "cosine", prediction)
        abar = float(scheduler.alphas_cumprod[950])
        x_t = scheduler.add_noise(x0, noise, t)
        eps = to_epsilon(training_target(scheduler, x0, noise, t) + error, x_t, abar, prediction)
        x0_hat = (x_t - (1 - abar) ** 0.5 * eps) / abar**0.5
        errors[prediction] = float((x0_hat - x0).abs().mean())
    assert errors["epsilon"] > 10 * errors["v_prediction"]
