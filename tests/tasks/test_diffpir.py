"""DiffPIR zero-shot denoising (paper eqs. 9-11): start step, data weight, convergence with an oracle prior."""

import math

import pytest
import torch

from meddiff.diffusion.schedule import make_scheduler
from meddiff.errors import ConfigError
from meddiff.tasks.diffpir import (
    data_weight,
    diffpir_denoise,
    respaced_timesteps,
    sigma_bar,
    t_start_for_sigma,
)


@pytest.fixture(scope="module", params=["cosine", "linear_beta"])
def abar(request) -> torch.Tensor:
    return make_scheduler(1000, request.param, "epsilon").alphas_cumprod


def _clean_volume() -> torch.Tensor:
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in (6, 12, 12)), indexing="ij")
    return (0.6 * torch.sin(3 * x) * torch.cos(2 * y) + 0.2 * z)[None, None].float()


def _oracle(x0: torch.Tensor, abar: torch.Tensor, calls: list):
    """The exact noise of x_t given the true clean image x0 (a perfect ε-network)."""

    def eps(x_t: torch.Tensor, t: int) -> torch.Tensor:
        calls.append((t, x_t.clone()))
        a = float(abar[t])
        return (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)

    return eps


@pytest.mark.parametrize("t", [5, 40, 120, 400])
def test_t_start_maps_sigma_bar_back_to_t(abar, t):
    assert t_start_for_sigma(abar, float(sigma_bar(abar)[t])) == t


def test_larger_noise_starts_later(abar):
    assert t_start_for_sigma(abar, 0.05) < t_start_for_sigma(abar, 0.15) < t_start_for_sigma(abar, 0.5)


def test_rho_is_lambda_sigma_n_squared_over_sigma_bar_squared():
    a = 0.9
    assert data_weight(a, 0.15, 10.0) == pytest.approx(10.0 * 0.15**2 / ((1 - a) / a))


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_sigma_n_raises(abar, bad):
    with pytest.raises(ConfigError, match="sigma_n"):
        t_start_for_sigma(abar, bad)
    with pytest.raises(ConfigError, match="sigma_n"):
        diffpir_denoise(torch.zeros(1, 1, 2, 2, 2), lambda x, t: x, abar, sigma_n=bad, lam=10.0, steps=5)


def test_respaced_timesteps_go_from_t_start_to_zero():
    ts = respaced_timesteps(95, 10)
    assert ts[0] == 95 and ts[-1] == 0 and len(ts) == 10
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert respaced_timesteps(3, 100) == [3, 2, 1, 0]  # never more NFEs than timesteps


def test_starts_at_t_start_from_scaled_y0_and_counts_nfes(abar):
    x0 = _clean_volume()
    sigma_n = 0.15
    y0 = x0 + sigma_n * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    calls: list = []
    diffpir_denoise(y0, _oracle(x0, abar, calls), abar, sigma_n=sigma_n, lam=10.0, steps=8)
    t_start = t_start_for_sigma(abar, sigma_n)
    assert len(calls) == min(8, t_start + 1)
    first_t, first_x = calls[0]
    assert first_t == t_start
    torch.testing.assert_close(first_x, math.sqrt(float(abar[t_start])) * y0)  # eq. 11: no fresh noise


def test_oracle_prior_recovers_clean_volume(abar):
    x0 = _clean_volume()
    sigma_n = 0.15
    y0 = x0 + sigma_n * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    out = diffpir_denoise(y0, _oracle(x0, abar, []), abar, sigma_n=sigma_n, lam=10.0, steps=10)
    assert out.shape == y0.shape
    assert torch.mean((out - x0) ** 2) < 0.01 * torch.mean((y0 - x0) ** 2)


def test_small_lambda_trusts_the_measurement(abar):
    """rho -> 0 (eq. 10): x0_hat -> y0 whatever the prior says."""
    x0 = _clean_volume()
    y0 = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    out = diffpir_denoise(y0, _oracle(torch.zeros_like(x0), abar, []), abar, sigma_n=0.1, lam=1e-12, steps=5)
    torch.testing.assert_close(out, y0, atol=1e-4, rtol=0)


def test_zeta_adds_seeded_noise(abar):
    x0 = _clean_volume()
    y0 = x0 + 0.15 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    eps = lambda x, t: torch.zeros_like(x)  # noqa: E731
    run = lambda zeta, seed: diffpir_denoise(  # noqa: E731
        y0, eps, abar, sigma_n=0.15, lam=10.0, steps=6, zeta=zeta, generator=torch.Generator().manual_seed(seed)
    )
    torch.testing.assert_close(run(0.0, 0), run(0.0, 1))  # deterministic without ζ
    torch.testing.assert_close(run(0.5, 4), run(0.5, 4))
    assert not torch.allclose(run(0.5, 4), run(0.5, 5))
    with pytest.raises(ConfigError, match="zeta"):
        run(1.5, 0)
