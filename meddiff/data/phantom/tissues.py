"""Tissues of the demo phantom and how a scan turns them into Hounsfield units.

Each voxel of the render grid holds a :class:`Tissue`. A case draws a contrast phase and, per tissue, a
mean HU (literature values for non-contrast, arterial and portal-venous CT, jittered per case) plus two
texture amplitudes that scale shared smooth noise fields (fine ~2 mm, coarse ~15 mm), so organs are not
flat. :func:`render_hu` then imitates the scanner: point-spread blur, a triangular slice-sensitivity
profile over the sub-slices (partial volume of thick slices), noise correlated in-plane, and the -1024 HU
padding outside the reconstruction circle on some scanners.
"""

from __future__ import annotations

import enum

import numpy as np
from scipy import ndimage

PHASES = ("native", "arterial", "portal")


class Tissue(enum.IntEnum):
    AIR = 0
    FAT = 1
    SKIN = 2
    MUSCLE = 3
    ARTERY = 4
    VEIN = 5
    PORTAL = 6
    BLOOD_LEFT = 7
    BLOOD_RIGHT = 8
    MYOCARDIUM = 9
    LUNG = 10
    LUNG_VESSEL = 11
    AIRWAY_WALL = 12
    CORTICAL = 13
    CANCELLOUS = 14
    SKULL = 15
    DIPLOE = 16
    TEETH = 17
    MARROW = 18
    CARTILAGE = 19
    DISC = 20
    CSF = 21
    GREY_MATTER = 22
    WHITE_MATTER = 23
    SPINAL_CORD = 24
    EYE = 25
    LENS = 26
    LIVER = 27
    SPLEEN = 28
    KIDNEY_CORTEX = 29
    KIDNEY_MEDULLA = 30
    URINE = 31
    ADRENAL = 32
    PANCREAS = 33
    BILE = 34
    BOWEL_WALL = 35
    BOWEL_FLUID = 36
    STOMACH_CONTENT = 37
    FECES = 38
    THYROID = 39
    GLAND = 40
    PROSTATE = 41
    TABLE_SHELL = 42
    TABLE_FOAM = 43
    LYMPH = 44
    LESION = 100  # LESION + i: the i-th lesion of a case (own HU), i < 16


# mean HU (native, arterial, portal venous), +-jitter, fine and coarse texture amplitude (HU)
_TABLE: dict[Tissue, tuple[tuple[float, float, float], float, float, float]] = {
    Tissue.AIR: ((-1000, -1000, -1000), 0, 0, 0),
    Tissue.FAT: ((-100, -100, -100), 12, 6, 8),
    Tissue.SKIN: ((25, 30, 35), 8, 4, 2),
    Tissue.MUSCLE: ((50, 55, 62), 8, 6, 4),
    Tissue.ARTERY: ((42, 300, 165), 35, 3, 3),
    Tissue.VEIN: ((40, 90, 150), 15, 3, 3),
    Tissue.PORTAL: ((40, 100, 170), 15, 3, 3),
    Tissue.BLOOD_LEFT: ((42, 290, 160), 35, 3, 3),
    Tissue.BLOOD_RIGHT: ((42, 200, 150), 30, 6, 10),
    Tissue.MYOCARDIUM: ((45, 100, 110), 10, 4, 3),
    Tissue.LUNG: ((-860, -860, -860), 25, 25, 20),
    Tissue.LUNG_VESSEL: ((40, 220, 150), 20, 10, 0),
    Tissue.AIRWAY_WALL: ((30, 40, 45), 10, 10, 0),
    Tissue.CORTICAL: ((800, 800, 800), 120, 90, 40),  # thin cortices, partial-volumed at 1.5-3 mm
    Tissue.CANCELLOUS: ((230, 230, 230), 60, 60, 35),
    Tissue.SKULL: ((1500, 1500, 1500), 150, 80, 40),
    Tissue.DIPLOE: ((600, 600, 600), 120, 80, 40),
    Tissue.TEETH: ((2200, 2200, 2200), 200, 100, 0),
    Tissue.MARROW: ((-40, -40, -30), 20, 20, 10),
    Tissue.CARTILAGE: ((130, 130, 130), 40, 60, 20),
    Tissue.DISC: ((85, 85, 85), 10, 6, 3),
    Tissue.CSF: ((8, 8, 8), 3, 2, 1),
    Tissue.GREY_MATTER: ((40, 42, 43), 3, 2, 2),
    Tissue.WHITE_MATTER: ((29, 31, 32), 3, 2, 2),
    Tissue.SPINAL_CORD: ((35, 38, 40), 4, 2, 1),
    Tissue.EYE: ((10, 10, 10), 4, 2, 0),
    Tissue.LENS: ((90, 90, 90), 10, 2, 0),
    Tissue.LIVER: ((60, 75, 105), 7, 5, 6),
    Tissue.SPLEEN: ((48, 110, 115), 6, 6, 5),
    Tissue.KIDNEY_CORTEX: ((32, 170, 160), 6, 5, 4),
    Tissue.KIDNEY_MEDULLA: ((28, 60, 150), 6, 5, 4),
    Tissue.URINE: ((8, 8, 8), 4, 2, 0),
    Tissue.ADRENAL: ((30, 60, 70), 6, 4, 0),
    Tissue.PANCREAS: ((42, 110, 90), 8, 12, 4),
    Tissue.BILE: ((10, 10, 10), 5, 2, 0),
    Tissue.BOWEL_WALL: ((40, 80, 90), 8, 5, 0),
    Tissue.BOWEL_FLUID: ((15, 15, 15), 8, 6, 4),
    Tissue.STOMACH_CONTENT: ((20, 20, 20), 10, 25, 15),
    Tissue.FECES: ((-150, -150, -150), 60, 160, 60),
    Tissue.THYROID: ((100, 180, 150), 15, 10, 4),
    Tissue.GLAND: ((0, 20, 30), 15, 10, 5),
    Tissue.PROSTATE: ((40, 70, 80), 6, 5, 3),
    Tissue.TABLE_SHELL: ((250, 250, 250), 50, 20, 0),
    Tissue.TABLE_FOAM: ((-950, -950, -950), 20, 5, 0),
    Tissue.LYMPH: ((32, 55, 70), 6, 4, 0),
}


class TissueTable:
    """Per-case HU of every tissue: ``mean``, ``fine`` and ``coarse`` are (256,) float32 lookups."""

    def __init__(self, rng: np.random.Generator, phase: str, *, oral_contrast: bool) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown contrast phase {phase!r}")
        p = PHASES.index(phase)
        self.phase = phase
        self.mean = np.zeros(256, np.float32)
        self.fine = np.zeros(256, np.float32)
        self.coarse = np.zeros(256, np.float32)
        for tissue, (means, jitter, fine, coarse) in _TABLE.items():
            self.mean[tissue] = means[p] + rng.uniform(-jitter, jitter)
            self.fine[tissue] = fine * rng.uniform(0.7, 1.3)
            self.coarse[tissue] = coarse * rng.uniform(0.7, 1.3)
        if phase == "arterial":  # arterial-phase spleen is patchy ("zebra"), renal cortex > medulla
            self.coarse[Tissue.SPLEEN] = rng.uniform(20, 35)
        if oral_contrast:
            self.mean[Tissue.BOWEL_FLUID] = rng.uniform(180, 320)
            self.fine[Tissue.BOWEL_FLUID] = 25.0
        # blood inside the lung vessels and the portal tree is partial-volumed with its surroundings
        self.mean[Tissue.LUNG_VESSEL] = min(self.mean[Tissue.LUNG_VESSEL], self.mean[Tissue.BLOOD_RIGHT])

    def set_lesion(self, index: int, hu: float, fine: float = 6.0) -> int:
        """Give lesion ``index`` its own HU; returns its tissue value."""
        if not 0 <= index < 16:
            raise ValueError(f"lesion index {index} out of range 0..15")
        t = Tissue.LESION + index
        self.mean[t], self.fine[t], self.coarse[t] = hu, fine, 0.0
        return int(t)


def centre_subslices(n_render: int, substeps: int) -> slice:
    """Render-grid slices at the output slice centres (where labels are sampled); see :func:`render_hu`."""
    m = substeps
    nz = (n_render - m + 1) // m
    return slice(m - 1, m - 1 + m * nz, m)


def _linear_upsampling(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of linear interpolation weights from a coarse to a fine axis (same extent)."""
    t = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.minimum(np.floor(t).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    w = np.zeros((n_out, n_in), np.float32)
    frac = t - i0
    w[np.arange(n_out), i0] = 1 - frac
    if n_in > 1:
        w[np.arange(n_out), i0 + 1] += frac
    return w


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], sigma_vox: tuple[float, ...], factor: int
) -> np.ndarray:
    """Unit-variance Gaussian random field: white noise on a grid ``factor`` times coarser, smoothed, then
    upsampled linearly by three matrix products (much cheaper than ``ndimage.zoom`` at full size)."""
    small = tuple(max(2, -(-s // factor)) for s in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(small, dtype=np.float32), [s / factor for s in sigma_vox])
    field /= field.std() + 1e-6
    wz, wy, wx = (_linear_upsampling(m, s) for m, s in zip(small, shape))
    field = field @ wx.T  # (z, y, X)
    field = np.einsum("Yy,zyX->zYX", wy, field, optimize=True)
    return np.tensordot(wz, field, axes=(1, 0))


def render_hu(
    tissue: np.ndarray,
    table: TissueTable,
    rng: np.random.Generator,
    *,
    spacing_render: tuple[float, float, float],
    substeps: int,
    noise_std: float,
    psf_sigma_mm: float,
    fov_radius_vox: float | None,
) -> np.ndarray:
    """Scanner model: tissue map on the render grid (Zr, Y, X) -> HU image (Z, Y, X) float32.

    ``substeps`` m: the render grid steps T/m in z (T = slice thickness) and reaches m - 1 sub-slices beyond
    the first and last slice centres (Zr = m Z + m - 1); output slice j is the mean of sub-slices
    m j .. m j + 2m - 2 weighted by the triangle 1 - |i|/m (a slice-sensitivity profile of FWHM T), and its
    centre sub-slice is m j + m - 1 (see :func:`centre_subslices`). ``fov_radius_vox``: outside this
    in-plane radius the image is -1024 (reconstruction circle), or None for no padding.
    """
    sz, sy, sx = spacing_render
    shape = tissue.shape
    hu = table.mean[tissue]
    fine = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (1.2 / sz, 1.2 / sy, 1.2 / sx))
    fine *= np.float32(1.0 / (fine.std() + 1e-6))
    hu += table.fine[tissue] * fine
    del fine
    coarse = smooth_noise(rng, shape, (15.0 / sz, 15.0 / sy, 15.0 / sx), 6)
    hu += table.coarse[tissue] * coarse
    del coarse
    hu = ndimage.gaussian_filter(hu, (0.35, psf_sigma_mm / sy, psf_sigma_mm / sx), truncate=3.0)
    m = substeps
    if m > 1:
        weights = 1.0 - np.abs(np.arange(-(m - 1), m)) / m
        weights /= weights.sum()
        nz = (shape[0] - m + 1) // m
        out = np.zeros((nz,) + shape[1:], np.float32)
        for off, w in enumerate(weights):
            out += np.float32(w) * hu[off : off + m * nz : m]
        hu = out
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, (0.0, 0.7, 0.7))
    noise *= np.float32(noise_std / (noise.std() + 1e-6))
    hu += noise
    if fov_radius_vox is not None:
        ny, nx = hu.shape[1:]
        yy, xx = np.ogrid[:ny, :nx]
        outside = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > fov_radius_vox**2
        hu[:, outside] = -1024.0
    return np.clip(hu, -1024.0, 3071.0)
