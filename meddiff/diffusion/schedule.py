"""The forward-process noise schedule β_1..β_T of eq. 1 (paper 4.1.2: T = 1000, cosine) and what the
network predicts (``diffusion.prediction``).

``epsilon`` (paper, eq. 3) predicts the noise ε; ``v_prediction`` (Salimans & Ho 2022) predicts
v = sqrt(ᾱ_t) ε − sqrt(1 − ᾱ_t) x_0, which a short CPU training learns better at large t (why: docs/design.md,
"Prediction type"). Tasks that write eq. 9 in terms of ε convert the output with :func:`as_epsilon_fn`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.schedulers import DDPMScheduler, NoiseSchedules

from meddiff.errors import ConfigError

PREDICTIONS = ("epsilon", "v_prediction")


def check_prediction(prediction: str) -> str:
    """Validate a prediction type.

    Args:
        prediction: value of ``diffusion.prediction``.

    Returns:
        ``prediction`` unchanged.

    Raises:
        ConfigError: not one of :data:`PREDICTIONS`; the message names the choices.
    """
    if prediction not in PREDICTIONS:
        raise ConfigError(f"unknown diffusion.prediction {prediction!r}; expected one of {PREDICTIONS}")
    return prediction


def make_scheduler(num_train_timesteps: int, schedule: str, prediction: str) -> DDPMScheduler:
    """MONAI DDPM scheduler of the forward process (eqs. 1-2).

    Args:
        num_train_timesteps: T (1000 in the paper).
        schedule: a MONAI noise schedule name: "cosine" (paper), "linear_beta" or "scaled_linear_beta".
        prediction: what the network predicts, one of :data:`PREDICTIONS` (paper: "epsilon").

    Returns:
        ``DDPMScheduler`` with ``prediction_type=prediction`` and ``clip_sample=True`` (x̂_0 clipped to the
        [-1, 1] intensity range); ``scheduler.alphas_cumprod`` is ᾱ_t as a (T,) tensor.
    """
    if schedule not in NoiseSchedules.names:
        raise ConfigError(f"unknown noise schedule {schedule!r}; MONAI offers {sorted(NoiseSchedules.names)}")
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        schedule=schedule,
        prediction_type=check_prediction(prediction),
        clip_sample=True,
    )


def training_target(
    scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the network is trained to output for x_t = add_noise(x0, noise, t): ε or v, shaped like ``x0``.

    Args:
        scheduler: from :func:`make_scheduler` (its ``prediction_type`` decides the target).
        x0: (B, 1, D, H, W) clean images.
        noise: (B, 1, D, H, W) the ε added to them.
        timesteps: (B,) int64.

    Returns:
        (B, 1, D, H, W): ``noise`` for ε-prediction (eq. 3), v = sqrt(ᾱ_t) ε − sqrt(1 − ᾱ_t) x_0 otherwise.
    """
    if scheduler.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    return noise


def to_epsilon(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction: str) -> torch.Tensor:
    """The noise estimate ε̂ implied by a network output at one timestep (identity for ε-prediction).

    For v: ε̂ = sqrt(1 − ᾱ) x_t + sqrt(ᾱ) v̂ (from x_t = sqrt(ᾱ) x_0 + sqrt(1 − ᾱ) ε and the definition of v).

    Args:
        output: network output, e.g. (1, 1, Z, Y, X).
        x_t: the network's input state, same shape.
        alpha_bar: ᾱ_t of their timestep.
        prediction: the model's prediction type.

    Returns:
        ε̂, shaped like ``output``.
    """
    if check_prediction(prediction) == "epsilon":
        return output
    return (1.0 - alpha_bar) ** 0.5 * x_t + alpha_bar**0.5 * output


def as_epsilon_fn(
    output_fn: Callable[[torch.Tensor, int], torch.Tensor], alphas_cumprod: torch.Tensor, prediction: str
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Turn ``output_fn(x_t, t)`` (the network's output, e.g. a sliding-window mean) into ``ε̂(x_t, t)``.

    Args:
        output_fn: maps (1, 1, Z, Y, X) x_t and a timestep to the network output of the same shape.
        alphas_cumprod: (T,) ᾱ_t of the model's schedule.
        prediction: the model's prediction type.

    Returns:
        A function (x_t, t) -> (1, 1, Z, Y, X) ε̂; ``output_fn`` itself for ε-prediction.
    """
    if check_prediction(prediction) == "epsilon":
        return output_fn

    def eps_fn(x_t: torch.Tensor, t: int) -> torch.Tensor:
        output = output_fn(x_t, t)
        return to_epsilon(output, x_t.to(output), float(alphas_cumprod[t]), prediction)

    return eps_fn
