"""Classical baselines of Table 5, run on the same cases and window as MedDiff-FM: NLM [6] and BM3D [11].

Both work per axial slice (as the 2D methods of Table 5 on Mayo 2016) in the evaluation window mapped to
[0, 1] (``[-160, 240]`` HU by default; 1 unit = 400 HU), and return HU.

Noise level: both methods are given the same noise std as MedDiff-FM, estimated on the non-test cases
(std of low - full dose inside the body, in HU) and expressed in the window's [0, 1] units. scikit-image's
wavelet ``estimate_sigma`` is not used: FBP noise is spatially correlated (the ramp filter and the
back-projection interpolation move its power away from the finest wavelet band), and on simulated
quarter-dose slices it returned about half the true std, which left both baselines under-smoothing.

Parameters (documented defaults of the libraries):
- NLM: ``skimage.restoration.denoise_nl_means`` with ``patch_size=5``, ``patch_distance=6``,
  ``h=0.8 sigma``, ``sigma=sigma``, ``fast_mode=True`` (scikit-image's recommended setting when sigma is given);
- BM3D: ``bm3d.bm3d(slice, sigma_psd=sigma)`` with the package's default (two-stage) profile, single-threaded:
  with more threads its aggregation order changes between runs and so do the last digits of Table 5 (the
  package says so; tests/workflow/test_determinism.py caught it).
"""

from __future__ import annotations

import logging

import bm3d
import numpy as np
from skimage.restoration import denoise_nl_means
from tqdm import tqdm

from meddiff.config import Window
from meddiff.data.intensity import hu_to_unit, unit_to_hu

log = logging.getLogger(__name__)

NLM_PATCH_SIZE = 5
NLM_PATCH_DISTANCE = 6
NLM_H_FACTOR = 0.8


def eval_window(window: tuple[float, float]) -> Window:
    """The HU interval ``(lo, hi)`` as a :class:`~meddiff.config.Window` (level, width)."""
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        raise ValueError(f"evaluation window must have hi > lo, got {window}")
    return Window(level=(lo + hi) / 2, width=hi - lo)


def to_window01(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU -> clipped to ``window`` and scaled to [0, 1] (through :mod:`meddiff.data.intensity`)."""
    return ((hu_to_unit(np.asarray(hu, dtype=np.float32), eval_window(window)) + 1.0) / 2.0).astype(np.float32)


def from_window01(x: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Inverse of :func:`to_window01` (values are clipped to the window)."""
    return unit_to_hu(np.asarray(x, dtype=np.float32) * 2.0 - 1.0, eval_window(window)).astype(np.float32)


def _sigma01(sigma_hu: float, window: tuple[float, float]) -> float:
    if not (np.isfinite(sigma_hu) and sigma_hu > 0):
        raise ValueError(f"baseline noise std must be positive (HU), got {sigma_hu}")
    return float(sigma_hu) / (float(window[1]) - float(window[0]))


def nlm_denoise(low_hu: np.ndarray, *, sigma_hu: float, window: tuple[float, float]) -> np.ndarray:
    """Non-local means per axial slice (Buades et al. [6]).

    Args:
        low_hu: (Z, Y, X) low-dose volume in HU.
        sigma_hu: noise std in HU (see the module docstring).
        window: HU interval the method works in.

    Returns:
        (Z, Y, X) float32 denoised volume in HU (inside ``window``).
    """
    sigma = _sigma01(sigma_hu, window)
    x = to_window01(low_hu, window)
    out = np.stack(
        [
            denoise_nl_means(
                s,
                h=NLM_H_FACTOR * sigma,
                sigma=sigma,
                patch_size=NLM_PATCH_SIZE,
                patch_distance=NLM_PATCH_DISTANCE,
                fast_mode=True,
            )
            for s in tqdm(x, desc="NLM", unit="slice", disable=None)
        ]
    )
    return from_window01(out, window)


def bm3d_denoise(low_hu: np.ndarray, *, sigma_hu: float, window: tuple[float, float]) -> np.ndarray:
    """BM3D per axial slice (Dabov et al. [11]).

    Args:
        low_hu: (Z, Y, X) low-dose volume in HU.
        sigma_hu: noise std in HU (see the module docstring).
        window: HU interval the method works in.

    Returns:
        (Z, Y, X) float32 denoised volume in HU (inside ``window``).
    """
    sigma = _sigma01(sigma_hu, window)
    x = to_window01(low_hu, window)
    profile = bm3d.BM3DProfile()
    profile.num_threads = 1  # deterministic (module docstring)
    out = np.stack([bm3d.bm3d(s, sigma_psd=sigma, profile=profile)
                    for s in tqdm(x, desc="BM3D", unit="slice", disable=None)])  # fmt: skip
    return from_window01(out, window)
