"""Noise level sigma_n of the low-dose images, estimated on the non-test cases (paper 4.3.2: ~0.15).

sigma_n is the std of (low - full dose) over the body voxels of the calibration pairs, pooled. It is
estimated per region in the model's [-1, 1] units of that region's window (DiffPIR's sigma_n, eqs. 10-11)
and in HU (the noise level given to the NLM / BM3D baselines). Pairs are accumulated one at a time (sum,
sum of squares), so calibration cases may be a lazy iterable of full-size Mayo volumes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from meddiff.config import DenoisingConfig, Window
from meddiff.data.intensity import hu_to_unit
from meddiff.errors import ConfigError, GeometryError
from meddiff.tasks.denoising_cases import DenoisingCase

log = logging.getLogger(__name__)


class _PooledStd:
    """Std of all values added so far (float64 moments; one pass, no concatenation)."""

    def __init__(self) -> None:
        self.n, self.s, self.s2 = 0, 0.0, 0.0

    def add(self, low: np.ndarray, full: np.ndarray, mask: np.ndarray) -> None:
        if not (np.shape(low) == np.shape(full) == np.shape(mask)):
            raise GeometryError(
                f"sigma_n estimate: shapes differ: low {np.shape(low)}, full {np.shape(full)}, mask {np.shape(mask)}"
            )
        m = np.asarray(mask, dtype=bool)
        d = np.asarray(low, dtype=np.float64)[m] - np.asarray(full, dtype=np.float64)[m]
        self.n += d.size
        self.s += float(d.sum())
        self.s2 += float(np.square(d).sum())

    def std(self) -> float:
        if self.n < 2:
            raise ValueError("sigma_n estimate: no body voxels in the calibration cases")
        mean = self.s / self.n
        return float(np.sqrt(max(self.s2 / self.n - mean**2, 0.0)))


def estimate_sigma_n(pairs: Iterable[tuple[np.ndarray, np.ndarray]], masks: Iterable[np.ndarray]) -> float:
    """Noise std sigma_n: std of (low - full) over the body voxels of all pairs pooled (paper 4.3.2).

    Args:
        pairs: (low, full) arrays of one shape each, in the units sigma_n is wanted in (model [-1, 1] or HU).
        masks: bool body masks, one per pair, same shape.

    Raises:
        GeometryError: a pair or mask does not share a shape.
        ValueError: pairs and masks differ in number, or there is no body voxel.
    """
    acc = _PooledStd()
    try:
        for (low, full), mask in zip(pairs, masks, strict=True):
            acc.add(low, full, mask)
    except ValueError as err:
        if "zip()" in str(err):
            raise ValueError("estimate_sigma_n needs exactly one mask per pair") from None
        raise
    return acc.std()


@dataclass(frozen=True)
class NoiseLevel:
    """Noise of one region: sigma_n in model units (DiffPIR) and in HU (baselines)."""

    sigma_n: float
    sigma_hu: float
    n_cases: int


def calibrate_noise(
    calibration: Iterable[DenoisingCase], windows: Mapping[str, Window], cfg: DenoisingConfig
) -> dict[str, NoiseLevel]:
    """Per-region noise levels from the non-test cases (``cfg.sigma_n``, when set, replaces the model-unit value).

    Raises:
        ConfigError: a calibration case belongs to the test split.
    """
    hu_acc: dict[str, _PooledStd] = {}
    unit_acc: dict[str, _PooledStd] = {}
    counts: dict[str, int] = {}
    for c in calibration:
        if c.split == "test":
            raise ConfigError(f"{c.source}: test case {c.case!r} must not calibrate sigma_n (paper: non-test cases)")
        w = windows[c.region]
        mask = c.body_mask()
        hu_acc.setdefault(c.region, _PooledStd()).add(c.low_hu, c.full_hu, mask)
        unit_acc.setdefault(c.region, _PooledStd()).add(hu_to_unit(c.low_hu, w), hu_to_unit(c.full_hu, w), mask)
        counts[c.region] = counts.get(c.region, 0) + 1
    out = {}
    for region in sorted(counts):
        sigma_n = cfg.sigma_n if cfg.sigma_n is not None else unit_acc[region].std()
        out[region] = NoiseLevel(sigma_n=float(sigma_n), sigma_hu=hu_acc[region].std(), n_cases=counts[region])
        log.info(
            "%s: sigma_n = %.4f (model units), %.1f HU, from %d non-test cases",
            region,
            out[region].sigma_n,
            out[region].sigma_hu,
            counts[region],
        )
    return out


def noise_for(
    region: str, levels: Mapping[str, NoiseLevel], windows: Mapping[str, Window], cfg: DenoisingConfig
) -> NoiseLevel:
    """The noise level of ``region``; with ``cfg.sigma_n`` set, a region without calibration cases uses it
    (and ``sigma_n * width / 2`` HU for the baselines).

    Raises:
        ConfigError: no calibration case of ``region`` and ``denoising.sigma_n`` unset.
    """
    if region in levels:
        return levels[region]
    if cfg.sigma_n is not None:
        return NoiseLevel(cfg.sigma_n, cfg.sigma_n * windows[region].width / 2, 0)
    raise ConfigError(f"no non-test {region} case to estimate sigma_n from; set denoising.sigma_n in the config")
