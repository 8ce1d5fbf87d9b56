"""Full-reference image quality: MS-SSIM, SSIM and PSNR (paper 4.1.3), thin wrappers over ``monai.metrics``.

All functions take two numpy arrays of the same shape, (Z, Y, X) volumes (or (Y, X) slices), on the same
intensity scale — network intensities in [-1, 1] (``data_range=2``) or [0, 1] (``data_range=1``) — and
return a Python float.

MS-SSIM on small volumes
------------------------
MONAI's MS-SSIM uses 5 scales with the Wang et al. (2003) weights and an 11-voxel Gaussian window (sigma
1.5), which needs more than 160 voxels per side. The CPU demo volumes have 40-90 voxels per side, so
:func:`ms_ssim_settings` reduces the setting automatically and deterministically from the shape alone:

1. keep the 11-voxel window and use the largest number of scales (5 down to 2) that fits;
2. only if not even 2 scales fit, shrink the window (9, 7, 5, 3 voxels; sigma scaled as 1.5 * size / 11)
   and again take the most scales that fit.

"Fits" means MONAI's own size check (side // (scales - 1)^2 >= window) and that the coarsest scale
(side // 2^(scales - 1)) still holds one window. The weights are the first ``scales`` Wang et al. weights,
renormalised to sum to 1. With 5 scales and an 11-voxel window (volumes >= 176 voxels per side) the result
is MONAI's default MS-SSIM. Values computed with fewer scales are not comparable to the paper's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric, PSNRMetric, SSIMMetric

from meddiff.errors import GeometryError

log = logging.getLogger(__name__)

MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-scale exponents of Wang et al. (2003), finest scale first (MONAI's default)."""

_WINDOW_SIZES = (11, 9, 7, 5, 3)


@dataclass(frozen=True)
class MsSsimSettings:
    """The MS-SSIM configuration used for a given volume size (see the module docstring)."""

    scales: int
    weights: tuple[float, ...]
    kernel_size: int
    kernel_sigma: float

    def describe(self) -> str:
        """One line for a table note, e.g. ``"3 scales, 11-voxel Gaussian window (sigma 1.50)"``."""
        return f"{self.scales} scales, {self.kernel_size}-voxel Gaussian window (sigma {self.kernel_sigma:.2f})"


def _fits(side: int, scales: int, kernel: int) -> bool:
    monai_check = side // max(1, (scales - 1) ** 2) >= kernel  # the check compute_ms_ssim performs
    coarsest = side // 2 ** (scales - 1) >= kernel  # the coarsest scale must still hold one window
    return monai_check and coarsest


def ms_ssim_settings(shape: Sequence[int]) -> MsSsimSettings:
    """Choose scales, weights and window for arrays of ``shape`` (the smallest side decides).

    Raises ``ValueError`` when even 2 scales with a 3-voxel window do not fit (a side below 6 voxels).
    """
    side = int(min(shape))
    for kernel in _WINDOW_SIZES:
        for scales in range(len(MS_SSIM_WEIGHTS), 1, -1):
            if _fits(side, scales, kernel):
                w = np.asarray(MS_SSIM_WEIGHTS[:scales])
                if scales < len(MS_SSIM_WEIGHTS):
                    w = w / w.sum()  # all 5 scales: MONAI's weights exactly as they are
                return MsSsimSettings(
                    scales=scales,
                    weights=tuple(float(v) for v in w),
                    kernel_size=kernel,
                    kernel_sigma=1.5 * kernel / 11,
                )
    raise ValueError(f"MS-SSIM needs at least 6 voxels per side, got shape {tuple(shape)}")


def _as_batch(a: np.ndarray) -> torch.Tensor:
    """(Z, Y, X) or (Y, X) numpy -> (1, 1, ...) float32 tensor."""
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)[None, None]


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise GeometryError(f"image quality metrics need arrays of the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected a (Z, Y, X) volume or a (Y, X) slice, got shape {a.shape}")


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float, settings: MsSsimSettings | None = None) -> float:
    """Multi-scale SSIM between two arrays of the same shape (1 = identical).

    Args:
        a, b: (Z, Y, X) volumes (or (Y, X) slices) on the same intensity scale.
        data_range: max - min of that scale (2.0 for [-1, 1], 1.0 for [0, 1]).
        settings: fixed settings (to use one setting across a set of volumes); by default chosen from
            ``a.shape`` with :func:`ms_ssim_settings`.
    """
    _check_pair(a, b)
    s = settings or ms_ssim_settings(a.shape)
    metric = MultiScaleSSIMMetric(
        spatial_dims=a.ndim,
        data_range=data_range,
        kernel_size=s.kernel_size,
        kernel_sigma=s.kernel_sigma,
        weights=s.weights,
    )
    return float(metric(_as_batch(a), _as_batch(b)).item())


def paired_ms_ssim(real: Sequence[np.ndarray], fake: Sequence[np.ndarray], data_range: float = 2.0) -> float:
    """Mean MS-SSIM over pairs (paper 4.1.3, Tables 3-4).

    What is compared: each synthetic volume ``fake[i]`` with the real test volume ``real[i]`` whose anatomy
    (label map) and region it was conditioned on — same anatomy, same grid. MS-SSIM therefore measures how
    closely the synthesis reproduces the real CT behind the condition (higher is better), not the diversity
    among synthetic volumes. One setting (scales, window) chosen from the smallest volume is used for all
    pairs so that the mean is over like quantities.

    Args:
        real, fake: equally long sequences of (Z, Y, X) arrays; ``real[i]`` and ``fake[i]`` share a shape.
        data_range: 2.0 for [-1, 1] intensities.
    """
    if len(real) != len(fake) or not real:
        raise ValueError(f"paired_ms_ssim needs equally many real and synthetic volumes, got {len(real)} and {len(fake)}")
    settings = ms_ssim_settings((min(min(r.shape) for r in real),))
    if settings.scales < len(MS_SSIM_WEIGHTS):
        log.info("MS-SSIM on small volumes: %s (not comparable to the paper's 5-scale MS-SSIM)", settings.describe())
    values = [ms_ssim(r, f, data_range, settings) for r, f in zip(real, fake, strict=True)]
    return float(np.mean(values))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """SSIM (Wang et al. 2004) with an 11-voxel Gaussian window (sigma 1.5), as in the denoising and
    super-resolution evaluations (paper 4.1.3, Tables 5 and 7). For arrays with a side below 11 voxels the
    window shrinks to the largest odd size that fits.

    Args:
        a, b: (Z, Y, X) volumes or (Y, X) slices of the same shape.
        data_range: max - min of the intensity scale.
    """
    _check_pair(a, b)
    win = min(11, int(min(a.shape)))
    win -= 1 - win % 2  # largest odd size <= side
    if win < 3:
        raise ValueError(f"SSIM needs at least 3 voxels per side, got shape {a.shape}")
    metric = SSIMMetric(spatial_dims=a.ndim, data_range=data_range, win_size=win, kernel_sigma=1.5 * win / 11)
    return float(metric(_as_batch(a), _as_batch(b)).item())


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB: 20 log10(data_range) - 10 log10(MSE); ``inf`` for identical arrays.

    Args:
        a, b: arrays of the same shape on the same intensity scale.
        data_range: max - min of that scale.
    """
    _check_pair(a, b)
    return float(PSNRMetric(max_val=data_range)(_as_batch(a), _as_batch(b)).item())
