"""Volumetric super-resolution with the fine-tuned ControlNet and DiffPIR (paper 3.5.1, 4.4.1, eq. 12; Table 7).

Per test crop: the thick slices y = H x (slab means of ``thick_factor`` thin slices along z: the demo makes
them from the thin crop, as RPLHR-CT's thick CTs are made by the scanner), the ControlNet condition c_t = y
interpolated linearly onto the thin grid, and DiffPIR from t_start = T (pure noise) whose data step is the
exact slab-mean proximal step (:func:`meddiff.tasks.sr_data_step.sr_data_step`). The baselines interpolate the
same thick slices along z (trilinear, cubic B-spline). No anatomy condition: at inference only the thick CT
is known, so the SR ControlNet is fine-tuned with the anatomy map dropped too (:mod:`meddiff.diffusion.training`).

Outputs: one ``<dataset>__<case>__<region>.npz`` per crop with ``truth``, ``thick`` and one array per method,
all (Z, Y, X) float32 in the model's [-1, 1] window units; :mod:`meddiff.evaluation.super_resolution` scores them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from meddiff.atomic import atomic_dir
from meddiff.config import SamplingConfig, SuperResolutionConfig
from meddiff.data.manifest import evaluation_crops, read_manifest
from meddiff.data.slice_interpolation import bspline_upsample, controlnet_condition, trilinear_upsample
from meddiff.data.thick_slices import slab_average, slab_centres
from meddiff.diffusion.checkpoint import load_model
from meddiff.diffusion.schedule import as_epsilon_fn, make_scheduler
from meddiff.diffusion.training_data import resolve_cache_path
from meddiff.errors import DatasetMissingError, WeightsMissingError
from meddiff.models.controlnet import ControlledMedDiff
from meddiff.tasks.denoising import model_output_fn
from meddiff.tasks.diffpir import EpsFn, diffpir_loop, respaced_timesteps
from meddiff.tasks.sr_data_step import sr_data_step
from meddiff.tasks.synthesis import case_seed

log = logging.getLogger(__name__)

MEDDIFF_FM, TRILINEAR, BSPLINE = "MedDiff-FM", "Trilinear", "Cubic B-spline"
METHODS = (TRILINEAR, BSPLINE, MEDDIFF_FM)


def diffpir_super_resolve(
    thick: torch.Tensor,
    thin_depth: int,
    eps_fn: EpsFn,
    alphas_cumprod: torch.Tensor,
    *,
    factor: int,
    sigma_n: float,
    lam: float,
    steps: int,
    zeta: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """DiffPIR super-resolution from t_start = T (paper 4.4.1): x_T ~ N(0, I), ``steps`` NFEs with uniform skipping.

    Args:
        thick: (1, 1, Z', Y, X) thick slices in [-1, 1] units, slab k = thin slices [k*factor, (k+1)*factor).
        thin_depth: Z of the thin grid (>= Z' * factor).
        eps_fn: ε̂(x_t, t) of the fine-tuned model on the thin grid (its condition already bound).

    Returns:
        (1, 1, Z, Y, X) thin estimate in [-1, 1] units.
    """
    shape = (1, 1, thin_depth, *thick.shape[3:])
    x_t = torch.randn(shape, generator=generator).to(thick)
    timesteps = respaced_timesteps(len(alphas_cumprod) - 1, steps)

    def data_step(x0_t: torch.Tensor, rho: float) -> torch.Tensor:
        return sr_data_step(x0_t, thick, rho, factor)

    return diffpir_loop(x_t, timesteps, eps_fn, alphas_cumprod, data_step, sigma_n=sigma_n, lam=lam, zeta=zeta,
                        generator=generator)  # fmt: skip


def super_resolve_crop(
    model, alphas_cumprod: torch.Tensor, thin: np.ndarray, region: str, *, cfg: SuperResolutionConfig,
    sampling: SamplingConfig, device: str, seed: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Thick slices of one thin crop, and the crop restored by every method of Table 7.

    Args:
        model: a loaded fine-tuned model folder (:class:`meddiff.diffusion.checkpoint.LoadedModel` of a
            :class:`~meddiff.models.controlnet.ControlledMedDiff`).
        thin: (Z, Y, X) thin crop in [-1, 1]; slices after the last whole slab are dropped.

    Returns:
        {"truth": (Z, Y, X), "thick": (Z', Y, X), method: (Z, Y, X) for each of :data:`METHODS`}, float32.
    """
    factor = cfg.thick_factor
    thick = slab_average(np.asarray(thin, np.float32), factor)
    depth = thick.shape[0] * factor
    truth = np.asarray(thin[:depth], np.float32)
    centres = slab_centres(factor, thick.shape[0])
    condition = controlnet_condition(thick, centres, depth)
    output_fn = model_output_fn(model.network, None, region, truth.shape, patch_size=model.network.model_config.patch_size,
                                sampling=sampling, device=device, control=condition[None])  # fmt: skip
    eps_fn = as_epsilon_fn(output_fn, alphas_cumprod, model.prediction)
    generator = torch.Generator().manual_seed(seed)
    estimate = diffpir_super_resolve(
        torch.from_numpy(thick)[None, None].to(device), depth, eps_fn, alphas_cumprod, factor=factor,
        sigma_n=cfg.sigma_n, lam=cfg.lam, steps=cfg.steps, zeta=cfg.zeta, generator=generator,
    )  # fmt: skip
    return {
        "truth": truth,
        "thick": thick,
        TRILINEAR: trilinear_upsample(thick, centres, depth),
        BSPLINE: bspline_upsample(thick, centres, depth),
        MEDDIFF_FM: estimate[0, 0].float().cpu().numpy(),
    }


def run_super_resolution(
    model_dir: Path, manifest: Path, out_dir: Path, *, cfg: SuperResolutionConfig, sampling: SamplingConfig,
    device: str, seed: int,
) -> Path:  # fmt: skip
    """Super-resolve the test crops of ``cfg.dataset`` (the first ``cfg.cases``; 0 = all) into ``out_dir``.

    Raises:
        WeightsMissingError: ``model_dir`` is not a fine-tuned (ControlNet) model folder.
        DatasetMissingError: the manifest has no test crop of ``cfg.dataset`` with enough slices for two slabs.
    """
    model = load_model(model_dir, device)
    if not isinstance(model.network, ControlledMedDiff):
        raise WeightsMissingError(f"{model_dir}: not a fine-tuned ControlNet model; run the finetune rule first")
    abar = make_scheduler(model.num_train_timesteps, model.schedule, model.prediction).alphas_cumprod
    rows = evaluation_crops(read_manifest(manifest))
    rows = rows[(rows["dataset"] == cfg.dataset)]
    rows = rows[[int(s.split("x")[0]) >= 2 * cfg.thick_factor for s in rows["shape"]]]
    if cfg.cases:
        rows = rows.head(cfg.cases)
    if rows.empty:
        raise DatasetMissingError(f"{manifest}: no test crop of {cfg.dataset!r} with at least "
                                  f"{2 * cfg.thick_factor} slices to super-resolve")  # fmt: skip
    with atomic_dir(Path(out_dir)) as tmp:
        for row in rows.itertuples(index=False):
            thin = np.load(resolve_cache_path(Path(manifest), row.image), mmap_mode="r")
            log.info("%s/%s %s: %s thin slices, factor %d", row.dataset, row.case, row.region, thin.shape[0],
                     cfg.thick_factor)  # fmt: skip
            out = super_resolve_crop(model, abar, thin, row.region, cfg=cfg, sampling=sampling, device=device,
                                     seed=case_seed(seed, row.case, row.region))  # fmt: skip
            np.savez(tmp / f"{row.dataset}__{row.case}__{row.region}.npz", **out)
    return Path(out_dir)
