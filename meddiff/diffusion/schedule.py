"""The forward-process noise schedule β_1..β_T of eq. 1 (paper 4.1.2: T = 1000, cosine)."""

from __future__ import annotations

from monai.networks.schedulers import DDPMScheduler, NoiseSchedules

from meddiff.errors import ConfigError


def make_scheduler(num_train_timesteps: int, schedule: str) -> DDPMScheduler:
    """MONAI DDPM scheduler for ε-prediction (eqs. 1-2).

    Args:
        num_train_timesteps: T (1000 in the paper).
        schedule: a MONAI noise schedule name: "cosine" (paper), "linear_beta" or "scaled_linear_beta".

    Returns:
        ``DDPMScheduler`` with ``prediction_type="epsilon"`` and ``clip_sample=True`` (x̂_0 clipped to the
        [-1, 1] intensity range); ``scheduler.alphas_cumprod`` is ᾱ_t as a (T,) tensor.
    """
    if schedule not in NoiseSchedules.names:
        raise ConfigError(f"unknown noise schedule {schedule!r}; MONAI offers {sorted(NoiseSchedules.names)}")
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        schedule=schedule,
        prediction_type="epsilon",
        clip_sample=True,
    )
