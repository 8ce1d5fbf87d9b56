"""Evaluation of low-dose CT denoising (paper 4.3.2, Table 5, Fig. 6): the ``denoise`` task's volumes against
the full dose.

Every method and the low-dose input (LDCT) are compared with the full-dose volume in the evaluation window
(``denoising.window``, the paper's [-160, 240] HU), clipped and scaled to [0, 1], data range 1. PSNR and SSIM
(:mod:`meddiff.metrics.image_quality`, MONAI) are computed per axial slice and averaged over the slices of a
case (as the 2D methods of Table 5 are evaluated); slices whose full-dose image is constant in the window
(all air / all clipped) are skipped. Improvements are method - LDCT on the same case.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from meddiff.atomic import atomic_path
from meddiff.errors import GeometryError, InputImageError
from meddiff.metrics.image_quality import psnr, ssim
from meddiff.tasks.denoising import LDCT
from meddiff.tasks.denoising_baselines import to_window01

log = logging.getLogger(__name__)


def evaluate_denoising(
    full_hu: np.ndarray, low_hu: np.ndarray, denoised_hu: Mapping[str, np.ndarray], *, window: tuple[float, float]
) -> dict[str, dict[str, float]]:
    """PSNR / SSIM of LDCT and of each method against the full dose, in ``window`` (HU; see module docstring).

    Args:
        full_hu, low_hu: (Z, Y, X) HU. denoised_hu: {method: (Z, Y, X) HU}.

    Returns:
        {method: {"psnr", "ssim", "delta_psnr", "delta_ssim"}}, "LDCT" first (its deltas are 0).

    Raises:
        GeometryError: an array is not on the full-dose grid.
    """
    for name, arr in {LDCT: low_hu, **denoised_hu}.items():
        if np.shape(arr) != np.shape(full_hu):
            raise GeometryError(f"{name} volume {np.shape(arr)} is not on the full-dose grid {np.shape(full_hu)}")
    ref = to_window01(full_hu, window)
    slices = [z for z in range(ref.shape[0]) if np.ptp(ref[z]) > 0]
    if not slices:
        raise ValueError(f"the full-dose volume is constant in the evaluation window {window}")

    def scores(hu: np.ndarray) -> dict[str, float]:
        x = to_window01(hu, window)
        return {
            "psnr": float(np.mean([psnr(x[z], ref[z], 1.0) for z in slices])),
            "ssim": float(np.mean([ssim(x[z], ref[z], 1.0) for z in slices])),
        }

    out = {LDCT: scores(low_hu)}
    for name, hu in denoised_hu.items():
        out[name] = scores(hu)
    base = out[LDCT]
    for s in out.values():
        s["delta_psnr"] = s["psnr"] - base["psnr"]
        s["delta_ssim"] = s["ssim"] - base["ssim"]
    return out


def central_slices(
    full_hu: np.ndarray, low_hu: np.ndarray, denoised_hu: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Fig. 6 panels: the central axial slice (Y, X) of LDCT, each method and the full dose, in HU."""
    z = full_hu.shape[0] // 2
    return {LDCT: low_hu[z], **{k: np.asarray(v)[z] for k, v in denoised_hu.items()}, "Full dose": full_hu[z]}


def table5(metrics: pd.DataFrame) -> pd.DataFrame:
    """This run's Table 5 rows: mean scores per method over the cases (LDCT first), with ``n_cases``."""
    by_method = metrics.groupby("method", sort=False)
    rows = by_method[["psnr", "ssim", "delta_psnr", "delta_ssim"]].mean().reset_index()
    rows["n_cases"] = by_method.size().values
    return rows


def evaluate_denoising_task(task_dir: Path, out_dir: Path, *, window: tuple[float, float]) -> pd.DataFrame:
    """Score every case the ``denoise`` task wrote (:func:`meddiff.tasks.denoising.run_denoising_task`).

    Args:
        task_dir: the task's folder (``cases.csv``, ``volumes/``).
        out_dir: receives ``metrics.csv`` (one row per case and method: case, region, method, psnr, ssim,
            delta_psnr, delta_ssim, sigma_n, data), ``table5.csv`` (:func:`table5`) and
            ``fig6_slices.npz`` (keys ``<case>_<region>/<panel>``, (Y, X) HU), each written atomically.
        window: the evaluation window in HU (``denoising.window``).

    Returns:
        The per-case metrics.
    """
    task_dir, out_dir = Path(task_dir), Path(out_dir)
    try:
        cases = pd.read_csv(task_dir / "cases.csv")
    except FileNotFoundError:
        raise InputImageError(f"{task_dir}: no cases.csv (run the denoise rule first)") from None
    rows, slices = [], {}
    for case in cases.itertuples(index=False):
        with np.load(task_dir / case.volumes) as npz:
            full_hu, low_hu = npz["full_hu"], npz["low_hu"]
            denoised = {k: npz[k] for k in npz.files if k not in ("full_hu", "low_hu")}
        scores = evaluate_denoising(full_hu, low_hu, denoised, window=tuple(window))
        for method, s in scores.items():
            rows.append({"case": case.case, "region": case.region, "method": method, **s, "sigma_n": case.sigma_n,
                         "data": case.data})  # fmt: skip
        slices[f"{case.case}_{case.region}"] = central_slices(full_hu, low_hu, denoised)
        log.info(
            "%s (%s): %s",
            case.case,
            case.region,
            {m: f"{s['delta_psnr']:+.2f} dB / {s['delta_ssim']:+.3f}" for m, s in scores.items()},
        )
    metrics = pd.DataFrame(rows)
    for name, df in (("metrics.csv", metrics), ("table5.csv", table5(metrics))):
        with atomic_path(out_dir / name) as tmp:
            df.to_csv(tmp, index=False)
    arrays = {f"{case}/{panel}": img for case, panels in slices.items() for panel, img in panels.items()}
    with atomic_path(out_dir / "fig6_slices.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return metrics
