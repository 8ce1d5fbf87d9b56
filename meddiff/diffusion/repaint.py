"""RePaint inpainting (Lugmayr et al. 2022, paper [43]; MedDiff-FM 3.5.3, eq. 13) with resampling jumps.

The loop runs over explicit (i, i_prev) pairs of respaced step indices, written here by hand: MONAI has no
RePaint, and MONAI 1.6.1's ``DDPMScheduler.step`` after ``set_timesteps(n < T)`` takes the wrong previous
timestep, so respaced DDPM steps are computed from ᾱ directly.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from meddiff.errors import ConfigError, GeometryError

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
"""ε̂(x_t, t): (1, 1, Z, Y, X) state and an integer training timestep -> (1, 1, Z, Y, X) noise estimate."""


def repaint_schedule(steps: int, jump_length: int, resamples: int) -> list[int]:
    """Respaced step indices RePaint visits, from ``steps - 1`` down to -1 (= x_0), with its resampling jumps.

    As RePaint's ``get_schedule_jump`` (one sample per step): after reaching index j (j a multiple of
    ``jump_length`` below ``steps - jump_length``) the state is re-noised ``jump_length`` steps up, ``resamples - 1``
    times. A decreasing pair costs one network call: 250 / 10 / 10 gives 2,410 calls.
    """
    if steps < 1 or jump_length < 1 or resamples < 1:
        raise ConfigError(f"RePaint needs steps, jump length and resamples >= 1, got {steps}, {jump_length}, {resamples}")
    jumps = {j: resamples - 1 for j in range(0, steps - jump_length, jump_length)}
    t, visited = steps - 1, [steps - 1]
    while t >= 0:
        t -= 1
        visited.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                visited.append(t)
    return visited


def network_calls(schedule: list[int]) -> int:
    """Number of denoising (network) steps of a :func:`repaint_schedule`."""
    return sum(b < a for a, b in zip(schedule[:-1], schedule[1:]))


def respaced(num_train_timesteps: int, steps: int) -> np.ndarray:
    """(steps,) ascending training timesteps of the respaced chain, uniformly from 0 to T - 1."""
    if not 1 <= steps <= num_train_timesteps:
        raise ConfigError(f"RePaint steps must be in 1..{num_train_timesteps}, got {steps}")
    return np.round(np.linspace(0, num_train_timesteps - 1, steps)).astype(int)


def repaint_inpaint(
    image: torch.Tensor,
    inpaint_mask: torch.Tensor,
    eps_fn: EpsFn,
    alphas_cumprod: torch.Tensor,
    *,
    steps: int,
    jump_length: int,
    resamples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inpaint ``image`` inside ``inpaint_mask`` (eq. 13: x_{t-1} = (1 − c) ⊙ x^known_{t-1} + c ⊙ x^unknown_{t-1}).

    Args:
        image: (1, 1, Z, Y, X) known image x_0 in the model's [-1, 1] units.
        inpaint_mask: (1, 1, Z, Y, X) bool, True where the lesion is generated (c).
        eps_fn: noise estimate of the (lesion-conditioned) model at a training timestep.
        alphas_cumprod: (T,) ᾱ_t of the model's schedule.
        steps, jump_length, resamples: respaced DDPM steps and RePaint's jump settings.
        generator: for the forward noise of the known region, the posterior noise and the re-noising jumps.

    Returns:
        (1, 1, Z, Y, X) float32; equal to ``image`` wherever ``inpaint_mask`` is False.
    """
    if image.shape != inpaint_mask.shape or image.dim() != 5:
        raise GeometryError(f"image {tuple(image.shape)} and inpaint mask {tuple(inpaint_mask.shape)} must be one "
                            "(1, 1, Z, Y, X) shape")
    x0 = image.float()
    c = inpaint_mask.bool().to(x0.device)
    taus = respaced(len(alphas_cumprod), steps)
    abar = alphas_cumprod.double().cpu()[taus].tolist() + [1.0]  # abar[-1] = 1: index -1 is x_0 itself

    def noise() -> torch.Tensor:
        return torch.randn(x0.shape, generator=generator).to(x0.device)

    schedule = repaint_schedule(steps, jump_length, resamples)
    x = noise()
    for i, j in zip(schedule[:-1], schedule[1:]):
        a_i, a_j = abar[i], abar[j]
        if j > i:  # re-noise one respaced step up: q(x_j | x_i)
            x = (a_j / a_i) ** 0.5 * x + (1.0 - a_j / a_i) ** 0.5 * noise()
            continue
        eps = eps_fn(x, int(taus[i])).float()
        x0_hat = ((x - (1.0 - a_i) ** 0.5 * eps) / a_i**0.5).clamp(-1.0, 1.0)
        if j < 0:
            known, unknown = x0, x0_hat
        else:
            beta = 1.0 - a_i / a_j
            mean = (a_j**0.5 * beta * x0_hat + (1.0 - beta) ** 0.5 * (1.0 - a_j) * x) / (1.0 - a_i)
            unknown = mean + (beta * (1.0 - a_j) / (1.0 - a_i)) ** 0.5 * noise()
            known = a_j**0.5 * x0 + (1.0 - a_j) ** 0.5 * noise()
        x = torch.where(c, unknown, known)
    return x
