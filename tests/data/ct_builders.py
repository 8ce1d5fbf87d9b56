"""Synthetic CT volumes with known anatomy, shared by the tests in tests/data (imported as a plain module)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass
class SyntheticTorso:
    image: sitk.Image  # int16 HU, identity direction (LPS), arrays (Z, Y, X)
    body: np.ndarray  # bool (Z, Y, X), includes lungs and spine
    lung_left: np.ndarray
    lung_right: np.ndarray
    bone: np.ndarray
    airway: np.ndarray


def _grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Physical coordinates (mm, centred on the volume) z, y, x broadcastable to ``shape`` (Z, Y, X)."""
    z, y, x = (np.arange(n) * s - (n - 1) * s / 2 for n, s in zip(shape, spacing[::-1]))
    return z[:, None, None], y[None, :, None], x[None, None, :]


def synthetic_torso(
    shape: tuple[int, int, int] = (90, 96, 128),
    spacing: tuple[float, float, float] = (2.5, 2.5, 2.5),
    seed: int = 0,
    noise_hu: float = 15.0,
    airway: bool = False,
    gas: bool = False,
    vessel: bool = False,
) -> SyntheticTorso:
    """A soft-tissue body ellipsoid (40 HU) with two lung ellipsoids (-850 HU), a spine cylinder (700 HU)
    posterior to them, outside air -1000 HU, plus Gaussian noise. ``spacing`` is (x, y, z) mm; the volume is
    centred on (0, 0, 0) mm in these coordinates. The patient's left is +x (LPS): the left lung sits at x > 0.

    ``airway``: a midline trachea (radius 8 mm, -1000 HU) from z = 40 mm to the top of the body, joined to both
    lungs by bronchi at z = 40 mm (returned in ``airway``). ``gas``: a -1000 HU pocket (~65 mL) below the lungs.
    ``vessel``: a 40 HU vertical tube (radius 5 mm) inside the left lung (part of ``lung_left``).
    """
    z, y, x = _grid(shape, spacing)
    body = (x / 140) ** 2 + (y / 95) ** 2 + (z / 108) ** 2 <= 1
    lung_left = ((x - 62) / 42) ** 2 + ((y + 5) / 55) ** 2 + ((z - 15) / 65) ** 2 <= 1
    lung_right = ((x + 62) / 45) ** 2 + ((y + 5) / 55) ** 2 + ((z - 15) / 70) ** 2 <= 1
    bone = ((x / 14) ** 2 + ((y - 62) / 14) ** 2 <= 1) & (np.abs(z) <= 95) & body
    hu = np.full(shape, -1000.0)
    hu[body] = 40.0
    hu[lung_left | lung_right] = -850.0
    hu[bone] = 700.0
    air_tube = np.zeros(shape, dtype=bool)
    if airway:
        trachea = (x**2 + (y + 20) ** 2 <= 8**2) & (z >= 40)
        bronchi = (np.abs(x) <= 62) & ((y + 20) ** 2 + (z - 40) ** 2 <= 6**2)
        air_tube = (trachea | bronchi) & body & ~(lung_left | lung_right)
        hu[air_tube] = -1000.0
    if vessel:
        hu[((x - 62) ** 2 + (y + 5) ** 2 <= 5**2) & (np.abs(z - 15) <= 30)] = 40.0
    if gas:
        hu[x**2 + (y + 40) ** 2 + (z + 62) ** 2 <= 25**2] = -1000.0
    hu += np.random.default_rng(seed).normal(0, noise_hu, shape)
    img = sitk.GetImageFromArray(hu.astype(np.int16))
    img.SetSpacing(spacing)
    img.SetOrigin((-100.0, 50.0, -300.0))
    return SyntheticTorso(img, body, lung_left & body, lung_right & body, bone, air_tube)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks."""
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def write_nifti(arr: np.ndarray, path, spacing=(1.0, 1.0, 1.0), origin=None) -> sitk.Image:
    """Write an array (Z, Y, X) (or any dimensionality SimpleITK accepts) as an image file; returns the image."""
    img = sitk.GetImageFromArray(arr, isVector=False)
    img.SetSpacing(tuple(spacing)[: img.GetDimension()])
    if origin is not None:
        img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return img
