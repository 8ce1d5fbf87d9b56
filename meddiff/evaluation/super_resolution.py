"""Evaluation of volumetric super-resolution (paper 4.4.1, Table 7, Fig. 8): the ``super-resolve`` task's crops
against their thin truth, as RPLHR-CT evaluates.

The task stores every volume in the model's [-1, 1] window units, so [0, 1] is ``(x + 1) / 2`` clipped (the
same as :func:`meddiff.metrics.super_resolution.to_unit_interval` over the crop's region window). PSNR over the
3D volume and the mean axial SSIM (:mod:`meddiff.metrics.super_resolution`) after dropping ``trim`` thin slices
at each end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from meddiff.atomic import atomic_dir
from meddiff.errors import DatasetMissingError
from meddiff.metrics.super_resolution import sr_psnr, sr_ssim
from meddiff.tasks.super_resolution import METHODS

COLUMNS = ["case", "region", "method", "PSNR", "SSIM"]


def _unit(x: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(x, np.float64) + 1.0) / 2.0, 0.0, 1.0)


def evaluate_crop(arrays: dict[str, np.ndarray], *, trim: int) -> list[dict]:
    """PSNR / SSIM of every method of :data:`METHODS` in ``arrays`` (one task ``.npz``) against ``truth``."""
    truth = _unit(arrays["truth"])
    return [
        {"method": m, "PSNR": sr_psnr(_unit(arrays[m]), truth, trim=trim), "SSIM": sr_ssim(_unit(arrays[m]), truth, trim=trim)}
        for m in METHODS
    ]


def evaluate_super_resolution(task_dir: Path, out_dir: Path, *, trim: int) -> Path:
    """Score every crop of a ``super-resolve`` folder into ``out_dir``: ``metrics.csv`` (per crop and method),
    ``table7.csv`` (mean and std over crops per method) and ``fig8_slices.npz`` (central coronal slices of the
    first crop: thick slices upsampled by nearest neighbour, each method, truth).

    Raises:
        DatasetMissingError: the folder holds no crop.
    """
    files = sorted(Path(task_dir).glob("*.npz"))
    if not files:
        raise DatasetMissingError(f"{task_dir}: no super-resolved crop; run the super_resolve rule first")
    rows, figure = [], {}
    for path in files:
        dataset, case, region = path.stem.split("__")
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        rows += [{"case": f"{dataset}/{case}", "region": region, **row} for row in evaluate_crop(arrays, trim=trim)]
        if not figure:
            y = arrays["truth"].shape[1] // 2
            factor = arrays["truth"].shape[0] // arrays["thick"].shape[0]
            figure = {"case": f"{dataset}/{case} {region}",
                      "Thick": np.repeat(arrays["thick"], factor, axis=0)[::-1, y],
                      **{m: arrays[m][::-1, y] for m in METHODS}, "Thin (truth)": arrays["truth"][::-1, y]}  # fmt: skip
    metrics = pd.DataFrame(rows, columns=COLUMNS)
    summary = metrics.groupby("method", sort=False)[["PSNR", "SSIM"]].agg(["mean", "std"])
    summary.columns = [f"{metric} {stat}" for metric, stat in summary.columns]
    summary = summary.reset_index().rename(columns={"method": "Method"})
    with atomic_dir(Path(out_dir)) as tmp:
        metrics.to_csv(tmp / "metrics.csv", index=False)
        summary.to_csv(tmp / "table7.csv", index=False)
        np.savez(tmp / "fig8_slices.npz", **{k: np.asarray(v) for k, v in figure.items()})
    return Path(out_dir)
