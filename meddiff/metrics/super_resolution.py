"""RPLHR-CT's evaluation of volumetric super-resolution (paper 4.1.3 and Table 7, "following TVSRN [78]").

The protocol of RPLHR-CT's released code (github.com/smilenaxx/RPLHR-CT, ``code/test.py`` and
``code/utils/non_model.py``), reproduced here:

1. intensities on [0, 1]: the network output is clamped to [0, 1] and compared with the thin volume as read
   from the dataset's ``.nii.gz`` files; the code contains no HU normalisation of its own, so the distributed
   volumes are evidently stored on [0, 1] already and the window behind that scale is not stated in the
   code. Here HU volumes are mapped to [0, 1] with :func:`to_unit_interval` over a window the caller passes
   (a config value; no default);
2. ``trim`` thin slices dropped at each end (``y[5:-5]``, :data:`RPLHR_TRIM`);
3. PSNR over the whole trimmed 3D volume with peak 1 (``cal_psnr``);
4. SSIM per axial slice, averaged over the slices (``cal_ssim``): an 11 x 11 Gaussian window (sigma 1.5),
   K1 = 0.01, K2 = 0.03 for data range 1, population (weighted) variances, zero padding to the image size and
   the mean over the *whole* map, borders included.

PSNR of identical volumes is ``inf`` here (as :func:`meddiff.metrics.image_quality.psnr`); RPLHR-CT's
``cal_psnr`` returns 40 dB when the MSE is exactly 0, a case real predictions never reach, and a finite cap
would hide a prediction that is a copy of the target inside a mean.

Inputs are numpy arrays; nothing here depends on the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate1d

from meddiff.config import Window
from meddiff.data.intensity import hu_to_unit
from meddiff.errors import GeometryError

RPLHR_TRIM = 5
"""Thin slices RPLHR-CT's evaluation drops at each end of the volume (``y[5:-5]`` in its ``test.py``)."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = 0.01**2  # (K1 * data range)², data range 1
_C2 = 0.03**2
_SLICES_PER_CHUNK = 8  # axial slices filtered at once (bounds memory on 512 x 512 slices)


@dataclass(frozen=True)
class SrScores:
    """PSNR (dB) and mean axial SSIM of one predicted thin volume against its ground truth."""

    psnr: float
    ssim: float


def to_unit_interval(volume_hu: np.ndarray, window: Window) -> np.ndarray:
    """Clip HU to ``window`` and map it linearly to [0, 1] (float64).

    Uses the project's one HU -> [-1, 1] conversion (:func:`meddiff.data.intensity.hu_to_unit`), shifted.
    """
    return (hu_to_unit(np.asarray(volume_hu, dtype=np.float64), window) + 1.0) / 2.0


def _trimmed(pred: np.ndarray, target: np.ndarray, trim: int) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != target.shape:
        raise GeometryError(f"super-resolution metrics need volumes of one shape, got {pred.shape} and {target.shape}")
    if pred.ndim != 3:
        raise GeometryError(f"super-resolution metrics take (Z, Y, X) volumes, got shape {pred.shape}")
    if trim < 0 or pred.shape[0] <= 2 * trim:
        raise GeometryError(f"cannot drop {trim} slices at each end of a volume of {pred.shape[0]} slices")
    keep = slice(trim, pred.shape[0] - trim)
    return np.asarray(pred[keep], dtype=np.float64), np.asarray(target[keep], dtype=np.float64)


def sr_psnr(pred: np.ndarray, target: np.ndarray, *, trim: int = RPLHR_TRIM) -> float:
    """PSNR in dB with peak 1 over the trimmed 3D volume: ``-10 log10(MSE)``; ``inf`` if identical.

    Args:
        pred, target: (Z, Y, X) thin volumes on [0, 1].
        trim: thin slices dropped at each end before scoring.
    """
    p, t = _trimmed(pred, target, trim)
    mse = float(np.mean((p - t) ** 2))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def _gaussian_window() -> np.ndarray:
    x = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    g = np.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _blur(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2D Gaussian over the last two axes of (n, Y, X), zero outside the image, output same size."""
    return correlate1d(correlate1d(a, g, axis=1, mode="constant", cval=0.0), g, axis=2, mode="constant", cval=0.0)


def axial_ssim_maps(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(Z, Y, X) SSIM map of each axial slice, computed as RPLHR-CT's ``non_model._ssim`` does.

    Hand-written because no library uses this border handling: scikit-image filters with reflection and
    averages only the interior (``crop(S, pad)``), MONAI and pytorch-msssim use valid windows; RPLHR-CT
    convolves with zero padding (``F.conv2d(..., padding=window_size // 2)``) and averages the full map.
    Away from the border (5 pixels) the map equals scikit-image's ``structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, full=True)``.

    Args:
        pred, target: (Z, Y, X) volumes on [0, 1], same shape.
    """
    if pred.shape != target.shape or pred.ndim != 3:
        raise GeometryError(f"axial SSIM needs two (Z, Y, X) volumes of one shape, got {pred.shape} and {target.shape}")
    g = _gaussian_window()
    out = np.empty(pred.shape, dtype=np.float64)
    for start in range(0, pred.shape[0], _SLICES_PER_CHUNK):
        part = slice(start, start + _SLICES_PER_CHUNK)
        a = np.asarray(pred[part], dtype=np.float64)
        b = np.asarray(target[part], dtype=np.float64)
        mu_a, mu_b = _blur(a, g), _blur(b, g)
        var_a = _blur(a * a, g) - mu_a**2
        var_b = _blur(b * b, g) - mu_b**2
        cov = _blur(a * b, g) - mu_a * mu_b
        out[part] = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2))
    return out


def sr_ssim(pred: np.ndarray, target: np.ndarray, *, trim: int = RPLHR_TRIM) -> float:
    """Mean over the trimmed volume's axial slices of each slice's mean SSIM (1 = identical).

    Args:
        pred, target: (Z, Y, X) thin volumes on [0, 1].
        trim: thin slices dropped at each end before scoring.
    """
    p, t = _trimmed(pred, target, trim)
    per_slice = axial_ssim_maps(p, t).mean(axis=(1, 2))
    return float(per_slice.mean())


def sr_scores(pred_hu: np.ndarray, target_hu: np.ndarray, *, window: Window, trim: int = RPLHR_TRIM) -> SrScores:
    """PSNR and SSIM of Table 7 for HU volumes: both mapped to [0, 1] over ``window``, then scored.

    Args:
        pred_hu, target_hu: (Z, Y, X) predicted and true thin volumes in HU, same grid.
        window: HU window mapped to [0, 1] (the evaluation config's; values outside are clipped).
        trim: thin slices dropped at each end before scoring.

    Returns:
        :class:`SrScores` with ``psnr`` in dB (``inf`` for identical volumes) and ``ssim``.
    """
    pred, target = to_unit_interval(pred_hu, window), to_unit_interval(target_hu, window)
    return SrScores(psnr=sr_psnr(pred, target, trim=trim), ssim=sr_ssim(pred, target, trim=trim))
