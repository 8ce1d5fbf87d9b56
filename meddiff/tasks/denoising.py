"""Zero-shot low-dose CT denoising with MedDiff-FM (paper 3.4.1, 4.3.2, Table 5, Fig. 6).

Intensity spaces (decided here, one place):

- **Model space.** The foundation model was trained on region windows (chest -500/1800, abdomen 60/360,
  ``preprocess.windows``), so the low-dose volume is mapped with its region's window to [-1, 1]
  (:func:`meddiff.data.intensity.hu_to_unit`) and DiffPIR runs there; sigma_n is a std in these units.
  (The paper feeds [-160, 240] HU; a model trained on other windows would see foreign intensities. The
  abdomen window is close to it: Mayo's ~30 HU quarter-dose noise is 0.15-0.17 in both, the paper's 0.15.)
  Voxels the model clips at its window bound (x0_hat at -1 or +1) take the low-dose HU beyond that bound,
  so that the part of the evaluation window outside the model window (abdomen: [-160, -120] HU) is not
  flattened to the bound.
- **Evaluation space** (:mod:`meddiff.evaluation.denoising`): every method and the low-dose input against the
  full dose in the ``denoising.window``.

The NLM and BM3D baselines run on the same cases with the same noise estimate. This module writes volumes;
it computes no metric.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from meddiff.atomic import atomic_path, write_text
from meddiff.config import DenoisingConfig, SamplingConfig, Window
from meddiff.data.intensity import hu_to_unit, unit_to_hu
from meddiff.diffusion.checkpoint import LoadedModel, load_model
from meddiff.diffusion.schedule import as_epsilon_fn, make_scheduler
from meddiff.data.manifest import read_manifest
from meddiff.diffusion.sliding_window import SlidingWindowPlan
from meddiff.errors import ConfigError, GeometryError
from meddiff.labels import NULL_LABEL, REGIONS
from meddiff.tasks.denoising_baselines import bm3d_denoise, nlm_denoise, to_window01
from meddiff.tasks.denoising_cases import DenoisingCase, mayo_cases, simulated_cases_from_manifest
from meddiff.tasks.denoising_noise import NoiseLevel, calibrate_noise, estimate_sigma_n, noise_for  # noqa: F401
from meddiff.tasks.diffpir import EpsFn, diffpir_denoise

log = logging.getLogger(__name__)

LDCT = "LDCT"
MEDDIFF_FM = "MedDiff-FM"
NLM = "NLM"
BM3D = "BM3D"

# ---------------------------------------------------------------- MedDiff-FM (DiffPIR, paper 3.4.1)


def restore_out_of_window(
    denoised: np.ndarray, low_hu: np.ndarray, window: Window, margin_hu: float = 0.0, tol: float = 1e-4
) -> np.ndarray:
    """Model output (Z, Y, X) in [-1, 1] -> HU, keeping the low-dose HU where the model cannot see.

    The model only represents its window: (a) voxels whose low-dose HU lies beyond a window bound by more than
    ``margin_hu`` (about 3 noise stds: noise alone does not put them there; e.g. air in the abdomen window)
    and (b) voxels the model put at a bound keep the low-dose HU beyond that bound. Without (a), air would
    come back as the window floor (-120 HU in the abdomen window), 40 HU off inside [-160, 240].
    """
    lo, hi = window.bounds
    low_hu = np.asarray(low_hu, dtype=np.float32)
    hu = unit_to_hu(denoised, window).astype(np.float32)
    hu = np.where(denoised <= -1 + tol, np.minimum(low_hu, lo), hu)
    hu = np.where(denoised >= 1 - tol, np.maximum(low_hu, hi), hu)
    outside = (low_hu < lo - margin_hu) | (low_hu > hi + margin_hu)
    return np.where(outside, low_hu, hu).astype(np.float32)


def meddiff_fm_denoise(
    low_hu: np.ndarray,
    eps_fn: EpsFn,
    alphas_cumprod: torch.Tensor,
    window: Window,
    *,
    sigma_n: float,
    lam: float,
    steps: int,
    zeta: float,
    seed: int,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Denoise a (Z, Y, X) HU volume with DiffPIR in the model's region window; returns HU (Z, Y, X)."""
    y0 = torch.as_tensor(hu_to_unit(np.asarray(low_hu, dtype=np.float32), window), device=device)[None, None]
    generator = torch.Generator(device=device).manual_seed(seed)
    x0 = diffpir_denoise(
        y0, eps_fn, alphas_cumprod, sigma_n=sigma_n, lam=lam, steps=steps, zeta=zeta, generator=generator
    )
    sigma_hu = sigma_n * window.width / 2  # [-1, 1] spans the window width
    return restore_out_of_window(x0[0, 0].cpu().numpy(), low_hu, window, margin_hu=3 * sigma_hu)


def model_output_fn(
    network: torch.nn.Module,
    anatomy: np.ndarray | None,
    region: str,
    shape: Sequence[int],
    *,
    patch_size: Sequence[int],
    sampling: SamplingConfig,
    device: str | torch.device,
    control: np.ndarray | None = None,
) -> EpsFn:
    """The network output of a whole volume at (x_t, t): the sliding-window mean of the patch outputs (paper
    3.3); ε̂ for an ε-model, v̂ for a v-model (:func:`meddiff.diffusion.schedule.as_epsilon_fn` converts).

    ``anatomy`` None -> NULL_LABEL everywhere (no anatomy condition). ``control``: (Cc, Z, Y, X) ControlNet
    condition of a fine-tuned model (:class:`meddiff.models.controlnet.ControlledMedDiff`).
    """
    labels = np.full(tuple(shape), NULL_LABEL, dtype=np.uint8) if anatomy is None else np.asarray(anatomy)
    plan = SlidingWindowPlan(
        tuple(shape), patch_size, sampling.overlap, labels, REGIONS.index(region), device,
        blend=sampling.blend,
        precision=sampling.precision,
        control=None if control is None else torch.from_numpy(np.asarray(control, np.float32))[None],
    )

    def eps(x_t: torch.Tensor, t: int) -> torch.Tensor:
        with torch.inference_mode():
            return plan.eps(network, x_t.to(device), t, sampling.patch_batch_size)

    return eps


@functools.lru_cache(maxsize=1)
def _load(model_dir: Path, device: str) -> tuple[LoadedModel, torch.Tensor]:
    """(model, alphas_cumprod) of a model folder; cached so that a run loads its model once."""
    loaded = load_model(model_dir, device)
    return loaded, make_scheduler(loaded.num_train_timesteps, loaded.schedule, loaded.prediction).alphas_cumprod


def denoise_case(
    model_dir: str | Path,
    low_hu: np.ndarray,
    full_hu: np.ndarray,
    anatomy: np.ndarray | None,
    region: str,
    window: Window,
    cfg: DenoisingConfig,
    sampling: SamplingConfig,
    patch_size: Sequence[int],
    sigma_n: float,
    device: str,
    seed: int,
    *,
    sigma_hu: float | None = None,
    zeta: float = 0.0,
) -> dict[str, np.ndarray]:
    """MedDiff-FM, NLM and BM3D on one low-dose volume.

    Args:
        model_dir: trained model folder (architecture.json, diffusion.json, weights.pt).
        low_hu: (Z, Y, X) low-dose HU. ``full_hu`` is used only to check the grid (never by a method).
        anatomy: (Z, Y, X) labels or None; region: "chest" / "abdomen"; window: the region's model window.
        cfg: lam, steps, evaluation window; sampling: overlap, patch batch size.
        sigma_n: noise std in model units; sigma_hu: the same in HU for the baselines
            (default ``sigma_n * window.width / 2``); zeta: DiffPIR noise mix.

    Returns:
        {"MedDiff-FM": hu, "NLM": hu, "BM3D": hu}, each (Z, Y, X) float32.
    """
    if np.shape(low_hu) != np.shape(full_hu):
        raise GeometryError(
            f"{region} case: low-dose {np.shape(low_hu)} and full-dose {np.shape(full_hu)} grids differ"
        )
    loaded, abar = _load(Path(model_dir), str(device))
    output_fn = model_output_fn(
        loaded.network, anatomy, region, np.shape(low_hu), patch_size=patch_size, sampling=sampling, device=device
    )
    eps_fn = as_epsilon_fn(output_fn, abar, loaded.prediction)
    sigma_hu = sigma_n * window.width / 2 if sigma_hu is None else sigma_hu
    eval_win = tuple(cfg.window)
    return {
        MEDDIFF_FM: meddiff_fm_denoise(
            low_hu,
            eps_fn,
            abar,
            window,
            sigma_n=sigma_n,
            lam=cfg.lam,
            steps=cfg.steps,
            zeta=zeta,
            seed=seed,
            device=device,
        ),
        NLM: nlm_denoise(low_hu, sigma_hu=sigma_hu, window=eval_win),
        BM3D: bm3d_denoise(low_hu, sigma_hu=sigma_hu, window=eval_win),
    }


def model_denoiser(
    model_dir: str | Path,
    *,
    windows: Mapping[str, Window],
    cfg: DenoisingConfig,
    sampling: SamplingConfig,
    patch_size: Sequence[int],
    device: str,
    seed: int,
    zeta: float = 0.0,
) -> Callable[[DenoisingCase, NoiseLevel], dict[str, np.ndarray]]:
    """The ``denoise`` argument of :func:`run_denoising_task` for a trained model folder."""

    def denoise(case: DenoisingCase, noise: NoiseLevel) -> dict[str, np.ndarray]:
        return denoise_case(
            model_dir, case.low_hu, case.full_hu, case.anatomy, case.region, windows[case.region], cfg, sampling,
            patch_size, noise.sigma_n, device, seed, sigma_hu=noise.sigma_hu, zeta=zeta,
        )  # fmt: skip

    return denoise


# ---------------------------------------------------------------- the task over a set of cases (paper 4.3.2)


def run_denoising_task(
    test_cases: Iterable[DenoisingCase],
    calibration_cases: Iterable[DenoisingCase],
    denoise: Callable[[DenoisingCase, NoiseLevel], dict[str, np.ndarray]],
    out_dir: str | Path,
    *,
    windows: Mapping[str, Window],
    cfg: DenoisingConfig,
) -> pd.DataFrame:
    """Estimate sigma_n on the calibration cases, denoise every test case and write the volumes (paper 4.3.2).

    Both case collections may be lazy iterables (one full-size Mayo volume in memory at a time).

    Args:
        denoise: (case, noise level) -> {method: HU volume}; for a trained model :func:`model_denoiser`.
        out_dir: receives ``volumes/<case>_<region>.npz`` (keys ``full_hu``, ``low_hu`` and one per method,
            (Z, Y, X) float32 HU), ``cases.csv`` (case, region, sigma_n, data, volumes) and ``noise.json``
            (per-region noise levels), each written atomically; ``cases.csv`` last.

    Returns:
        The ``cases.csv`` table.

    Raises:
        ConfigError: no test case, a test case among the calibration cases, or no sigma_n for a region.
    """
    out_dir = Path(out_dir)
    levels = calibrate_noise(calibration_cases, windows, cfg)
    noise = {r: dataclasses.asdict(n) for r, n in levels.items()}
    write_text(out_dir / "noise.json", json.dumps(noise, indent=2) + "\n")
    rows = []
    for case in test_cases:
        level = noise_for(case.region, levels, windows, cfg)
        denoised = denoise(case, level)
        name = f"volumes/{case.case}_{case.region}.npz"
        with atomic_path(out_dir / name) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, full_hu=case.full_hu, low_hu=case.low_hu, **denoised)
        rows.append({"case": case.case, "region": case.region, "sigma_n": level.sigma_n, "data": case.source,
                     "volumes": name})
        log.info("%s (%s): denoised with %s", case.case, case.region, ", ".join(denoised))
    if not rows:
        raise ConfigError("denoising: no test case (check the manifest's test split or the Mayo test patients)")
    cases = pd.DataFrame(rows)
    with atomic_path(out_dir / "cases.csv") as tmp:
        cases.to_csv(tmp, index=False)
    return cases


def denoise_test_cases(
    model_dir: Path,
    manifest: Path,
    out_dir: Path,
    *,
    cfg: DenoisingConfig,
    sampling: SamplingConfig,
    windows: Mapping[str, Window],
    spacing_mm: Sequence[float],
    interpolation: str,
    patch_size: Sequence[int],
    data_root: Path,
    seed: int,
    device: str,
) -> pd.DataFrame:
    """The ``denoise`` rule: build the cases, denoise them with the model and the baselines, write ``out_dir``.

    Demo (``denoising.dataset: phantom``): the chest and abdomen test crops of ``manifest``, quarter dose
    simulated on projections (:mod:`meddiff.tasks.lowdose`). Paper scale (``mayo2016``): the Mayo 2016
    full / quarter-dose pairs under ``data_root``; ``cfg.test_patients`` are denoised, the others estimate sigma_n.
    """
    if cfg.dataset == "phantom":
        test, calibration = simulated_cases_from_manifest(
            read_manifest(manifest), cfg, interpolation=interpolation, seed=seed
        )
    else:
        test, calibration = mayo_cases(
            Path(data_root) / cfg.dataset,
            test_patients=cfg.test_patients,
            spacing_mm=spacing_mm,
            interpolation=interpolation,
            cases=cfg.cases,
        )
    denoise = model_denoiser(
        model_dir, windows=windows, cfg=cfg, sampling=sampling, patch_size=patch_size, device=device, seed=seed,
        zeta=cfg.zeta,
    )  # fmt: skip
    return run_denoising_task(test, calibration, denoise, out_dir, windows=windows, cfg=cfg)
