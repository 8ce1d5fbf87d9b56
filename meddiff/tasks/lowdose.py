"""Physical low-dose CT simulation for the denoising task (paper 3.4.1 / 4.3.2, Mayo 2016 stand-in).

Like the Mayo 2016 quarter-dose data, noise is inserted in the projections, and both doses are reconstructed
by the same filtered back-projection (scikit-image ``radon`` / ``iradon``, parallel beam, per axial slice):

1. HU -> linear attenuation ``mu`` (1/mm, clipped at 0);
2. line integrals ``p = radon(mu) * pixel_mm``;
3. full-dose counts ``N_full ~ Poisson(I0 * exp(-p))``, low-dose counts ``N_low ~ Binomial(N_full, d)``;
4. ``p' = -log(max(N, 1) / I)`` with ``I = I0`` or ``d * I0``;
5. ramp-filtered back-projection, back to HU.

Noise statistics and how ``I0`` was chosen for the demo: docs/design.md, "Low-dose CT simulation".
"""

from __future__ import annotations

import logging

import numpy as np
from skimage.transform import iradon, radon
from tqdm import tqdm

from meddiff.errors import ConfigError

log = logging.getLogger(__name__)

MU_WATER_PER_MM = 0.0192
"""Linear attenuation of water at ~70 keV (effective energy of a 120 kVp spectrum), 1/mm."""


def hu_to_mu(hu: np.ndarray) -> np.ndarray:
    """HU -> linear attenuation: mu = MU_WATER_PER_MM * (1 + HU / 1000).

    Args:
        hu: array in HU, any shape.

    Returns:
        float64 array of the same shape in 1/mm (air and below clip to 0).
    """
    return np.clip(MU_WATER_PER_MM * (1.0 + np.asarray(hu, dtype=np.float64) / 1000.0), 0.0, None)


def mu_to_hu(mu: np.ndarray) -> np.ndarray:
    """Linear attenuation -> HU (the inverse of :func:`hu_to_mu` above air).

    Args:
        mu: array in 1/mm, any shape.

    Returns:
        Array of the same shape in HU.
    """
    return 1000.0 * (np.asarray(mu) / MU_WATER_PER_MM - 1.0)


def _pad_square(a: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Pad a (Y, X) slice with air (mu = 0) to a centred square; return it and the slices undoing it."""
    y, x = a.shape
    s = max(y, x)
    py, px = (s - y) // 2, (s - x) // 2
    out = np.zeros((s, s), dtype=a.dtype)
    out[py : py + y, px : px + x] = a
    return out, (slice(py, py + y), slice(px, px + x))


def projection_angles(side: int) -> np.ndarray:
    """View angles for a square slice: as many views as ``radon(circle=False)`` has detector bins (the padded
    diagonal), the usual sampling rule.

    Args:
        side: slice size in pixels.

    Returns:
        (ceil(sqrt(2) * side),) angles in degrees over [0, 180).
    """
    n_bins = int(np.ceil(np.sqrt(2) * side))
    return np.linspace(0.0, 180.0, n_bins, endpoint=False)


def _fbp(line_integrals: np.ndarray, theta: np.ndarray, side: int, pixel_mm: float) -> np.ndarray:
    """Ramp-filtered back-projection of dimensionless line integrals -> mu (1/mm), (side, side)."""
    return iradon(line_integrals / pixel_mm, theta=theta, output_size=side, circle=False, filter_name="ramp")


def simulate_slice(
    hu: np.ndarray,
    pixel_mm: float,
    *,
    incident_photons: float,
    dose_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Full- and low-dose reconstructions of one axial slice (steps 1-5 of the module docstring).

    Args:
        hu: (Y, X) slice in HU (square pixels of ``pixel_mm``).
        pixel_mm: pixel size in mm.
        incident_photons: I0, full-dose photons per detector bin per view.
        dose_fraction: d in (0, 1]; the low dose is ``d * I0``.
        rng: source of the Poisson / binomial draws.

    Returns:
        (full_hu, low_hu), both (Y, X) float32.
    """
    mu, keep = _pad_square(hu_to_mu(hu))
    side = mu.shape[0]
    theta = projection_angles(side)
    p = radon(mu, theta=theta, circle=False) * pixel_mm
    full_counts = rng.poisson(incident_photons * np.exp(-p))
    low_counts = rng.binomial(full_counts, dose_fraction)
    p_full = -np.log(np.maximum(full_counts, 1) / incident_photons)
    p_low = -np.log(np.maximum(low_counts, 1) / (dose_fraction * incident_photons))
    full = mu_to_hu(_fbp(p_full, theta, side, pixel_mm))[keep]
    low = mu_to_hu(_fbp(p_low, theta, side, pixel_mm))[keep]
    return full.astype(np.float32), low.astype(np.float32)


def simulate_pair(
    hu_slices: np.ndarray,
    pixel_mm: float,
    *,
    incident_photons: float,
    dose_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a (full-dose, low-dose) CT pair from a volume, slice by slice (paper 4.3.2 stand-in).

    Both volumes go through the same projection / FBP chain; they differ by the dose only.

    Args:
        hu_slices: (Z, Y, X) volume in HU; axial slices of square ``pixel_mm`` pixels.
        pixel_mm: in-plane pixel size in mm (sets the line integrals' physical scale).
        incident_photons: I0 per detector bin per view at full dose (config ``denoising.incident_photons``).
        dose_fraction: low dose / full dose (config ``denoising.dose_fraction``, 0.25 = Mayo quarter dose).
        seed: seed of the photon-count draws (same seed -> same pair).

    Returns:
        (full_hu, low_hu): two (Z, Y, X) float32 volumes in HU.

    Raises:
        ConfigError: non-positive photons / pixel size or a dose fraction outside (0, 1].
    """
    if not (np.isfinite(incident_photons) and incident_photons > 0):
        raise ConfigError(f"denoising.incident_photons must be a positive number, got {incident_photons}")
    if not (0 < dose_fraction <= 1):
        raise ConfigError(f"denoising.dose_fraction must be in (0, 1], got {dose_fraction}")
    if not (np.isfinite(pixel_mm) and pixel_mm > 0):
        raise ConfigError(f"pixel size must be positive (mm), got {pixel_mm}")
    hu_slices = np.asarray(hu_slices)
    if hu_slices.ndim != 3:
        raise ValueError(f"simulate_pair expects a (Z, Y, X) volume, got shape {hu_slices.shape}")
    rng = np.random.default_rng(seed)
    full = np.empty(hu_slices.shape, dtype=np.float32)
    low = np.empty(hu_slices.shape, dtype=np.float32)
    for z in tqdm(range(hu_slices.shape[0]), desc="low-dose simulation", unit="slice", disable=None):
        full[z], low[z] = simulate_slice(
            hu_slices[z], pixel_mm, incident_photons=incident_photons, dose_fraction=dose_fraction, rng=rng
        )
    log.info("simulated %d slices at I0=%.3g, dose fraction %.2f", hu_slices.shape[0], incident_photons, dose_fraction)
    return full, low
