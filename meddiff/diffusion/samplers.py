"""Whole-volume reverse diffusion with sliding-window noise estimates (paper 3.3-3.4, Fig. 4; eq. 2).

Our own loop, not MONAI's ``DiffusionInferer.sample`` (which does not pass the region's class label to the
network); MONAI's schedulers do the update. ``ddpm`` runs ``DDPMScheduler`` over all T steps; ``ddim`` runs
``DDIMScheduler`` (η = 0) on ``steps`` "leading" timesteps (k-1-i) * (T // k), the ones MONAI's ``step``
moves between. Why that spacing, and why not start at T - 1: docs/design.md, "Sampling".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn
from tqdm import tqdm

from meddiff.config import SamplingConfig
from meddiff.diffusion.precision import PrecisionChoice, choose_precision, conv_screen, forward_fn
from meddiff.diffusion.schedule import check_prediction, make_scheduler
from meddiff.diffusion.sliding_window import SlidingWindowPlan
from meddiff.errors import ConfigError
from meddiff.labels import NULL_LABEL, REGIONS
from meddiff.models.position_encoding import crop_coordinates

log = logging.getLogger(__name__)

SAMPLERS = ("ddpm", "ddim")


def make_sampling_scheduler(
    sampler: str, num_train_timesteps: int, schedule: str, steps: int, prediction: str
) -> DDPMScheduler | DDIMScheduler:
    """Scheduler of the reverse process with its ``timesteps`` set (descending).

    Args:
        sampler: "ddpm" (all T steps; ``steps`` must equal T) or "ddim" (η = 0, ``steps`` leading timesteps).
        num_train_timesteps: T of the trained model.
        schedule: the model's noise schedule ("cosine" in the paper).
        steps: number of reverse steps.
        prediction: the network's prediction type ("epsilon" or "v_prediction"); MONAI's step converts it.

    Returns:
        ``DDPMScheduler`` (timesteps T-1..0) or ``DDIMScheduler`` (timesteps (k-1-i) * (T // k), i = 0..k-1,
        with k = ``steps``) of the model's schedule, ``clip_sample=True``.

    Raises:
        ConfigError: unknown sampler, ``steps`` outside 1..T, or ``steps`` != T for DDPM.
    """
    if sampler == "ddpm":
        if steps != num_train_timesteps:
            raise ConfigError(
                f"sampling.steps={steps} with sampler 'ddpm': DDPM runs all num_train_timesteps="
                f"{num_train_timesteps} steps; set steps to {num_train_timesteps} or use sampler 'ddim'"
            )
        scheduler = make_scheduler(num_train_timesteps, schedule, prediction)
        scheduler.set_timesteps(num_train_timesteps)
        return scheduler
    if sampler == "ddim":
        if not 1 <= steps <= num_train_timesteps:
            raise ConfigError(f"sampling.steps={steps} must be in 1..num_train_timesteps={num_train_timesteps}")
        scheduler = DDIMScheduler(
            num_train_timesteps=num_train_timesteps,
            schedule=schedule,
            prediction_type=check_prediction(prediction),
            clip_sample=True,
        )
        scheduler.set_timesteps(steps)
        stride = num_train_timesteps // steps
        scheduler.timesteps = stride * torch.arange(steps - 1, -1, -1, dtype=torch.long)
        return scheduler
    raise ConfigError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")


def _step(scheduler: DDPMScheduler | DDIMScheduler, eps: torch.Tensor, t: int, x: torch.Tensor, generator):
    """One scheduler update; returns (x_{t-1}, x̂_0)."""
    if isinstance(scheduler, DDIMScheduler):
        return scheduler.step(eps, t, x, eta=0.0)
    return scheduler.step(eps, t, x, generator=generator)


def reverse_diffusion(
    network: nn.Module,
    plan: SlidingWindowPlan,
    scheduler: DDPMScheduler | DDIMScheduler,
    x_t: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator | None = None,
    timesteps: Sequence[int] | None = None,
) -> torch.Tensor:
    """Run the reverse process on a whole volume: at each t, ε = sliding-window mean (Fig. 4), then one
    scheduler step on the whole volume (eq. 2 / DDIM).

    Args:
        network: network in eval mode; predicts ε or v, as the scheduler's ``prediction_type`` says.
        plan: windows of the volume (built once, reused at every step).
        scheduler: from :func:`make_sampling_scheduler`.
        x_t: (1, 1, Z, Y, X) start state at the first of ``timesteps``.
        batch_size: windows per network call.
        generator: RNG of the DDPM step noise (on ``x_t``'s device).
        timesteps: steps to run (default ``scheduler.timesteps``); tasks starting at t_start pass a tail.

    Returns:
        (1, 1, Z, Y, X) the final state; for DDIM the last step's x̂_0 (the last step moves to ᾱ = 1, so
        this is x_0 itself; docs/design.md, "Sampling").
    """
    steps = [int(t) for t in (scheduler.timesteps if timesteps is None else timesteps)]
    log.info(
        "reverse diffusion: %d steps x %d windows = %d network evaluations (NFE), volume %s, patch %s",
        len(steps),
        plan.num_windows,
        len(steps) * plan.num_windows,
        plan.volume_shape,
        plan.patch_size,
    )
    x = x_t
    x0_hat = x_t
    every = max(1, len(steps) // 10)
    start = time.perf_counter()
    for i, t in enumerate(tqdm(steps, desc="sampling", unit="step", disable=None)):
        eps = plan.eps(network, x, t, batch_size)
        x, x0_hat = _step(scheduler, eps, t, x, generator)
        if (i + 1) % every == 0:
            log.info("step %d/%d (t=%d), %.0f s", i + 1, len(steps), t, time.perf_counter() - start)
    return x0_hat if isinstance(scheduler, DDIMScheduler) else x


def sample_volume(
    loaded,
    anatomy: np.ndarray | torch.Tensor,
    region: str,
    *,
    sampling: SamplingConfig,
    patch_size: Sequence[int] | None = None,
    seed: int,
    device: str | torch.device,
    unconditional: bool = False,
    control: np.ndarray | None = None,
) -> np.ndarray:
    """Synthesise a whole CT volume of the anatomy map's size (paper 3.4, Fig. 4).

    x_T ~ N(0, I) is drawn from ``torch.Generator().manual_seed(seed)`` on the CPU (the same volume on any
    device up to floating point), then reversed with the configured sampler.

    Args:
        loaded: :class:`meddiff.diffusion.checkpoint.LoadedModel` (network in eval mode, T, schedule).
        anatomy: (Z, Y, X) integer label map in the label space of :mod:`meddiff.labels` (c_a).
        region: one of :data:`meddiff.labels.REGIONS` (c_r).
        sampling: sampler, steps, overlap, patch batch size, blend (how overlapping windows are combined).
        patch_size: window size; default the network's training patch.
        seed: RNG seed of x_T and of DDPM's step noise.
        device: where the network runs.
        unconditional: replace the anatomy by ``NULL_LABEL`` everywhere (no anatomy given).
        control: optional (Cc, Z, Y, X) ControlNet condition (e.g. the lesion mask), for a fine-tuned network.

    Returns:
        (Z, Y, X) float32 volume in [-1, 1].
    """
    if region not in REGIONS:
        raise ConfigError(f"unknown region {region!r}; expected one of {REGIONS}")
    device = torch.device(device)
    labels = anatomy.long() if torch.is_tensor(anatomy) else torch.from_numpy(np.asarray(anatomy).astype(np.int64))
    if labels.dim() != 3:
        raise ValueError(f"anatomy must be (Z, Y, X), got shape {tuple(labels.shape)}")
    if unconditional:
        labels = torch.full_like(labels, NULL_LABEL)
    elif labels.min() < 0 or labels.max() > NULL_LABEL:
        raise ValueError(f"anatomy labels must be in 0..{NULL_LABEL}, got {int(labels.min())}..{int(labels.max())}")
    network = loaded.network
    patch = tuple(patch_size) if patch_size is not None else tuple(network.model_config.patch_size)
    scheduler = make_sampling_scheduler(
        sampling.sampler, loaded.num_train_timesteps, loaded.schedule, sampling.steps, loaded.prediction
    )
    plan = SlidingWindowPlan(
        labels.shape, patch, sampling.overlap, labels, REGIONS.index(region), device,
        blend=sampling.blend,
        precision=sampling.precision,
        control=None if control is None else torch.as_tensor(np.asarray(control, dtype=np.float32))[None],
    )

    cpu_gen = torch.Generator().manual_seed(seed)
    x_T = torch.randn((1, 1, *labels.shape), generator=cpu_gen).to(device)
    step_gen = cpu_gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed + 1)
    x0 = reverse_diffusion(network, plan, scheduler, x_T, batch_size=sampling.patch_batch_size, generator=step_gen)
    return x0[0, 0].clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)


def probe_inputs(patch: Sequence[int], batch: int, device: str | torch.device, seed: int = 0) -> tuple:
    """Random network inputs for timing a forward pass.

    Args:
        patch: window size (P_z, P_y, P_x).
        batch: number of windows B.
        device: where the tensors go.
        seed: RNG seed.

    Returns:
        (x_t (B, 1, *patch) float32, t (B,) int64, anatomy (B, *patch) int64, region (B,) int64 zeros,
        coords (B, 3, *patch) float32), in :meth:`MedDiffUNet.forward <meddiff.models.network.MedDiffUNet.forward>`
        order.
    """
    patch = tuple(patch)
    g = torch.Generator().manual_seed(seed)
    coords = crop_coordinates(patch, (0, 0, 0), patch, patch)
    return (
        torch.randn((batch, 1, *patch), generator=g).to(device),
        torch.randint(0, 1000, (batch,), generator=g).to(device),
        torch.randint(0, NULL_LABEL + 1, (batch, *patch), generator=g).to(device),
        torch.zeros(batch, dtype=torch.long, device=device),
        coords[None].expand(batch, *coords.shape).contiguous().to(device),
    )


def probe_sampling_precision(
    network: nn.Module, precision: str, batch_size: int, device: str | torch.device,
    patch_size: Sequence[int] | None = None,
) -> PrecisionChoice:
    """Resolve ``sampling.precision`` by timing no-grad forwards of one batch of random windows.

    Args:
        network: the sampling network (its ``model_config`` gives channels and the default patch).
        precision: ``sampling.precision`` to resolve; batch_size: ``sampling.patch_batch_size`` windows per batch.
        device: where the network runs.
        patch_size: window size; default the network's training patch.

    Returns:
        The :class:`~meddiff.diffusion.precision.PrecisionChoice` of
        :func:`meddiff.diffusion.precision.choose_precision`.
    """
    device = torch.device(device)
    patch = tuple(patch_size) if patch_size is not None else tuple(network.model_config.patch_size)
    b = batch_size
    screen = conv_screen(network.model_config.channels[0], patch, b, device)
    run_once = forward_fn(network, probe_inputs(patch, b, device), device)
    return choose_precision(precision, run_once, device, screen=screen, what="sampling batch")
