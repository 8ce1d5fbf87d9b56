"""DiffPIR plug-and-play denoising with a pre-trained diffusion prior (paper 3.4.1, eqs. 7-11; Zhu et al. 2023).

Degradation (eq. 7) with H = identity: ``y0 = x0 + n``, ``n ~ N(0, sigma_n^2)``. The MAP problem (eq. 8) is
split into a prior step -- the diffusion model's clean-image estimate (eq. 9) -- and a data-proximal step
with the closed form of eq. 10. Because the low-dose image already *is* a noisy image, the reverse process
does not start from pure noise: with ``sigma_bar_t = sqrt((1 - abar_t) / abar_t)``, ``t_start`` is the
timestep whose ``sigma_bar`` equals ``sigma_n`` and ``x_start = sqrt(abar_start) * y0`` (eq. 11).

Timesteps index ``alphas_cumprod`` (0 = least noise, T-1 = most), as in MONAI's schedulers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from meddiff.errors import ConfigError

log = logging.getLogger(__name__)

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
"""ε_θ(x_t, t): (1, 1, Z, Y, X) noisy volume and an integer timestep -> (1, 1, Z, Y, X) noise estimate."""


def sigma_bar(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """(T,) noise-to-signal ratio ``sigma_bar_t = sqrt((1 - abar_t) / abar_t)`` of the forward process."""
    a = alphas_cumprod.double()
    return torch.sqrt((1.0 - a) / a)


def _check_sigma_n(sigma_n: float) -> None:
    if not (isinstance(sigma_n, (int, float)) and math.isfinite(sigma_n) and sigma_n > 0):
        raise ConfigError(
            f"denoising.sigma_n must be a positive finite noise std in the model's [-1, 1] units, got {sigma_n!r}"
        )


def t_start_for_sigma(alphas_cumprod: torch.Tensor, sigma_n: float) -> int:
    """The timestep whose ``sigma_bar_t`` is closest to ``sigma_n`` (paper 3.4.1, discussion of eq. 11).

    Args:
        alphas_cumprod: (T,) cumulative products abar_t of the training schedule.
        sigma_n: noise std of the low-dose image in the model's [-1, 1] units.

    Raises:
        ConfigError: ``sigma_n`` is not a positive finite number.
    """
    _check_sigma_n(sigma_n)
    return int(torch.argmin(torch.abs(sigma_bar(alphas_cumprod) - sigma_n)).item())


def data_weight(alpha_cumprod_t: float, sigma_n: float, lam: float) -> float:
    """Trade-off coefficient of eq. 10: ``rho_t = lam * sigma_n^2 / sigma_bar_t^2``."""
    sb2 = (1.0 - alpha_cumprod_t) / alpha_cumprod_t
    return lam * sigma_n**2 / sb2


def respaced_timesteps(t_start: int, steps: int) -> list[int]:
    """Descending timesteps from ``t_start`` to 0, uniformly spaced, at most ``steps`` of them (= NFEs)."""
    if steps < 1:
        raise ConfigError(f"denoising.steps must be >= 1, got {steps}")
    n = min(steps, t_start + 1)
    if n == 1:
        return [t_start]
    ts = np.round(np.linspace(t_start, 0, n)).astype(int)
    return [int(t) for t in dict.fromkeys(ts.tolist())]  # unique, order kept


def diffpir_denoise(
    y0: torch.Tensor,
    eps_fn: EpsFn,
    alphas_cumprod: torch.Tensor,
    *,
    sigma_n: float,
    lam: float,
    steps: int,
    zeta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-shot denoising of ``y0`` with DiffPIR started at ``t_start`` (paper 3.4.1, eqs. 9-11).

    For each respaced timestep t (from t_start down to 0):

    - prior step (eq. 9): ``x0_t = (x_t - sqrt(1 - abar_t) eps_fn(x_t, t)) / sqrt(abar_t)``, clipped to [-1, 1]
      (the data range; the scheduler's ``clip_sample`` does the same);
    - data step (eq. 10): ``x0_hat = (y0 + rho_t x0_t) / (1 + rho_t)``, ``rho_t = lam sigma_n^2 / sigma_bar_t^2``;
    - move to the next timestep t' (DiffPIR): ``eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)``,
      ``x_t' = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') (sqrt(1 - zeta) eps_hat + sqrt(zeta) z)``.

    Args:
        y0: (1, 1, Z, Y, X) noisy volume in the model's [-1, 1] intensities.
        eps_fn: noise estimate ε_θ(x_t, t) (for a whole volume: the sliding-window estimate).
        alphas_cumprod: (T,) abar_t of the schedule the model was trained with.
        sigma_n: noise std of ``y0`` in [-1, 1] units (sets t_start and rho_t).
        lam: regularisation weight λ of eq. 8 (paper: 10).
        steps: maximum number of network evaluations (uniform skipping from t_start to 0).
        zeta: DiffPIR's noise mix ζ in [0, 1]; 0 = deterministic.
        generator: torch RNG for the fresh noise z (used only when ``zeta > 0``).

    Returns:
        (1, 1, Z, Y, X) denoised volume x0_hat of the last step, in [-1, 1] units (same dtype/device as y0).

    Raises:
        ConfigError: ``sigma_n`` not positive and finite, ``lam`` <= 0, ``steps`` < 1 or ``zeta`` outside [0, 1].
    """
    _check_sigma_n(sigma_n)
    if not (math.isfinite(lam) and lam > 0):
        raise ConfigError(f"denoising.lam must be positive, got {lam}")
    abar = alphas_cumprod.double().cpu()
    t_start = t_start_for_sigma(abar, sigma_n)
    timesteps = respaced_timesteps(t_start, steps)
    log.info(
        "DiffPIR: sigma_n=%.4f -> t_start=%d (sigma_bar=%.4f), %d NFEs, lambda=%g, zeta=%g",
        sigma_n,
        t_start,
        float(sigma_bar(abar)[t_start]),
        len(timesteps),
        lam,
        zeta,
    )
    y0 = y0.float()
    x_t = math.sqrt(abar[t_start]) * y0  # eq. 11: no extra noise, y0 already carries sigma_n

    def data_step(x0_t: torch.Tensor, rho: float) -> torch.Tensor:
        return (y0 + rho * x0_t) / (1.0 + rho)  # eq. 10

    return diffpir_loop(x_t, timesteps, eps_fn, abar, data_step, sigma_n=sigma_n, lam=lam, zeta=zeta,
                        generator=generator)  # fmt: skip


DataStep = Callable[[torch.Tensor, float], torch.Tensor]
"""argmin_x ||y - H x||^2 + rho ||x - x0_t||^2: the prior's estimate x0_t and rho_t -> the data-consistent x0."""


def diffpir_loop(
    x_t: torch.Tensor,
    timesteps: list[int],
    eps_fn: EpsFn,
    alphas_cumprod: torch.Tensor,
    data_step: DataStep,
    *,
    sigma_n: float,
    lam: float,
    zeta: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """DiffPIR's reverse loop from ``x_t`` at ``timesteps[0]`` (Zhu et al. 2023, Alg. 1; paper eqs. 9-12).

    For each timestep t: prior step x0_t (eq. 9, clipped to [-1, 1]); data step ``data_step(x0_t, rho_t)``
    with ``rho_t = lam sigma_n^2 / sigma_bar_t^2``; then x_t' from the data-consistent x0 and the effective noise,
    mixed with fresh noise by ``zeta``.

    Args:
        x_t: (1, 1, Z, Y, X) start of the loop.
        timesteps: descending timesteps (NFEs), e.g. :func:`respaced_timesteps`.

    Returns:
        (1, 1, Z, Y, X) the last data-consistent x0 estimate.
    """
    if not (0.0 <= zeta <= 1.0):
        raise ConfigError(f"DiffPIR zeta must be in [0, 1], got {zeta}")
    abar = alphas_cumprod.double().cpu()
    x0_hat = x_t
    for i, t in enumerate(tqdm(timesteps, desc="DiffPIR", unit="step", disable=None)):
        a_t = float(abar[t])
        eps = eps_fn(x_t, t).to(x_t)
        x0_t = ((x_t - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)).clamp(-1.0, 1.0)  # eq. 9
        x0_hat = data_step(x0_t, data_weight(a_t, sigma_n, lam))
        if i + 1 == len(timesteps):
            break
        a_next = float(abar[timesteps[i + 1]])
        eps_hat = (x_t - math.sqrt(a_t) * x0_hat) / math.sqrt(1.0 - a_t)
        if zeta > 0:
            device = generator.device if generator is not None else x_t.device
            z = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=device).to(x_t.device)
            eps_hat = math.sqrt(1.0 - zeta) * eps_hat + math.sqrt(zeta) * z
        x_t = math.sqrt(a_next) * x0_hat + math.sqrt(1.0 - a_next) * eps_hat
    return x0_hat
