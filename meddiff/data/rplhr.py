"""RPLHR-CT: real-paired thin (1 mm) and thick (5 mm) chest CT (Yu et al., MICCAI 2022; paper 4.1.1, Table 2).

Layout, as RPLHR-CT's code reads it (github.com/smilenaxx/RPLHR-CT, ``code/utils/in_model.py``; 100 train,
50 val, 100 test cases; case names like ``CT00000000``)::

    <root>/train/1mm/<case>.nii.gz    thin volume
    <root>/train/5mm/<case>.nii.gz    thick volume of the same scan, same in-plane grid
    <root>/val/...  <root>/test/...

Alignment (RPLHR-CT's index convention, not read from the headers): thick slice k is centred on thin slice
5k, i.e. it covers thin slices 5k-2 .. 5k+2. Its code pairs a window of 4 thick slices starting at z with thin
slices ``5z + 3`` .. ``5z + 12`` (the slabs of the two inner thick slices; ``mask_z_s = z_s * 5 + 3`` in
``in_model.get_train_img``, ``pos_z_s = 5 * tmp_pos_z + 3`` in ``test.py``). A thin stack therefore spans
about ``5 (Z' - 1) + 1`` slices. In the slab-averaging convention of :mod:`meddiff.data.thick_slices`
(non-negative offsets) the whole slabs start at thin slice 3 and belong to thick slices 1, 2, ...; the first
thick slice (and the last one, when the thin stack ends at its centre) has only half a slab on the thin grid.

Intensities: RPLHR-CT's code applies no HU conversion and scores against volumes read as they are, on a
[0, 1] scale, so the distributed files may be stored in [0, 1] rather than in HU. Both are accepted; the
scale found is reported in :attr:`RplhrPair.intensity`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from meddiff.data.io import read_image
from meddiff.data.thick_slices import slab_centres, thick_depth
from meddiff.errors import DatasetMissingError, GeometryError, InputImageError

log = logging.getLogger(__name__)

THIN_DIR, THICK_DIR = "1mm", "5mm"
THIN_MM, THICK_MM = 1.0, 5.0
FACTOR = 5
"""Thin slices per thick slice."""
SLAB_START = -(FACTOR // 2)
"""Thin slice where the slab of thick slice 0 starts (-2: thick slice k covers thin 5k-2 .. 5k+2)."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SUFFIXES = (".nii.gz", ".nii")
_SPACING_RTOL = 0.02

WHERE_TO_GET = (
    "get RPLHR-CT from https://zenodo.org/records/17239183 (or the links at "
    "https://github.com/smilenaxx/RPLHR-CT) and place it as <root>/<split>/1mm/<case>.nii.gz and "
    "<root>/<split>/5mm/<case>.nii.gz, split in train/val/test"
)

Intensity = Literal["hu", "unit"]


@dataclass(frozen=True)
class RplhrCase:
    """One case of a split: its thin and thick files."""

    case: str
    thin: Path
    thick: Path


@dataclass(frozen=True)
class RplhrPair:
    """A read thin/thick pair, arrays (Z, Y, X) as stored, spacings (z, y, x) in mm.

    ``factor`` and ``offset`` are the slab-averaging parameters of :func:`meddiff.data.thick_slices.slab_average`
    for the whole slabs: ``thick[thick_start + k] ≈ mean(thin[offset + factor k : offset + factor (k + 1)])``.
    """

    case: str
    thin: np.ndarray
    thick: np.ndarray
    thin_spacing: tuple[float, float, float]
    thick_spacing: tuple[float, float, float]
    factor: int
    offset: int
    thick_start: int
    intensity: Intensity

    def whole_slabs(self) -> np.ndarray:
        """(Z'', Y, X) the thick slices whose slab lies wholly on the thin grid: y0 of the DiffPIR data step
        with ``factor`` and ``offset`` (:func:`meddiff.tasks.sr_data_step.sr_data_step`)."""
        n = thick_depth(self.thin.shape[0], self.factor, self.offset)
        return self.thick[self.thick_start : self.thick_start + n]

    def thick_centres(self) -> np.ndarray:
        """(Z',) thin-grid z position of every thick slice's centre (0, 5, 10, ...), for interpolation."""
        return slab_centres(self.factor, self.thick.shape[0], self.offset - self.factor * self.thick_start)


def _case_name(path: Path) -> str | None:
    for suffix in _SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _volumes(folder: Path) -> dict[str, Path]:
    return {name: p for p in sorted(folder.iterdir()) if p.is_file() and (name := _case_name(p)) is not None}


def list_rplhr_cases(split_dir: str | Path) -> list[RplhrCase]:
    """All cases of one split folder (``<root>/test``), sorted by name.

    Raises:
        DatasetMissingError: the folder, its ``1mm``/``5mm`` sub-folders or any case's counterpart is missing,
            or it holds no case; the message names the path.
    """
    split_dir = Path(split_dir)
    thin_dir, thick_dir = split_dir / THIN_DIR, split_dir / THICK_DIR
    for folder in (thin_dir, thick_dir):
        if not folder.is_dir():
            raise DatasetMissingError(f"{folder}: RPLHR-CT folder not found; {WHERE_TO_GET}")
    thin, thick = _volumes(thin_dir), _volumes(thick_dir)
    for have, other, other_dir, kind in ((thin, thick, thick_dir, "thick"), (thick, thin, thin_dir, "thin")):
        missing = sorted(set(have) - set(other))
        if missing:
            more = f" ({len(missing) - 1} more cases lack one)" if len(missing) > 1 else ""
            raise DatasetMissingError(
                f"{have[missing[0]]}: no {kind} counterpart {other_dir / (missing[0] + '.nii.gz')}{more}"
            )
    if not thin:
        raise DatasetMissingError(f"{thin_dir}: no .nii.gz volumes; {WHERE_TO_GET}")
    log.info("%s: %d RPLHR-CT cases", split_dir, len(thin))
    return [RplhrCase(case=name, thin=thin[name], thick=thick[name]) for name in sorted(thin)]


def _spacing_zyx(img: sitk.Image) -> tuple[float, float, float]:
    x, y, z = img.GetSpacing()
    return (float(z), float(y), float(x))


def _intensity(arr: np.ndarray, path: Path) -> Intensity:
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= -0.05 and hi <= 1.05:
        return "unit"
    if lo <= -500.0:  # a chest CT in HU holds air and lung
        return "hu"
    raise InputImageError(
        f"{path}: values span [{lo:g}, {hi:g}], neither HU (a chest CT reaches below -500 HU) nor [0, 1]"
    )


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _SPACING_RTOL * max(abs(a), abs(b))


def load_rplhr_pair(case: RplhrCase) -> RplhrPair:
    """Read a case's thin and thick volumes with SimpleITK and check that they pair up.

    Checks: both 3D; same in-plane size and spacing; thick z spacing = 5 x thin z spacing, thin slices 1 mm
    (headers whose z spacings are equal, e.g. both 1 mm as written from bare arrays, carry no slice spacing:
    a warning is logged and the nominal 1 mm / 5 mm are reported); thin depth within ``FACTOR // 2`` slices of
    ``5 (Z' - 1) + 1`` (see the module docstring); the same intensity scale in both.

    Returns:
        :class:`RplhrPair` with float32 arrays, ``factor=5``, ``offset=3``, ``thick_start=1``.

    Raises:
        InputImageError: a file is unreadable, not 3D, or its values are neither HU nor [0, 1].
        GeometryError: the pair's grids do not fit (message names both files and the mismatch).
    """
    names = f"{case.thin} and {case.thick}"
    thin_img, thick_img = read_image(case.thin), read_image(case.thick)
    for path, img in ((case.thin, thin_img), (case.thick, thick_img)):
        if img.GetDimension() != 3:
            raise InputImageError(f"{path}: expected a 3D volume, got {img.GetDimension()}D")
    thin = sitk.GetArrayFromImage(thin_img).astype(np.float32)
    thick = sitk.GetArrayFromImage(thick_img).astype(np.float32)
    if thin.shape[1:] != thick.shape[1:]:
        raise GeometryError(f"{names}: in-plane size differs, {thin.shape[1:]} vs {thick.shape[1:]} (Y, X)")
    thin_sp, thick_sp = _spacing_zyx(thin_img), _spacing_zyx(thick_img)
    if not (_close(thin_sp[1], thick_sp[1]) and _close(thin_sp[2], thick_sp[2])):
        raise GeometryError(
            f"{names}: in-plane spacing differs, {thin_sp[1]:g} x {thin_sp[2]:g} mm vs "
            f"{thick_sp[1]:g} x {thick_sp[2]:g} mm (Y, X)"
        )
    if _close(thin_sp[0], thick_sp[0]):
        log.warning(
            "%s: both headers give %g mm between slices; taking RPLHR-CT's nominal %g mm / %g mm",
            names,
            thin_sp[0],
            THIN_MM,
            THICK_MM,
        )
        thin_sp, thick_sp = (THIN_MM, *thin_sp[1:]), (THICK_MM, *thick_sp[1:])
    elif not (_close(thin_sp[0], THIN_MM) and _close(thick_sp[0], FACTOR * thin_sp[0])):
        raise GeometryError(
            f"{names}: wrong slice spacing {thin_sp[0]:g} mm (thin) and {thick_sp[0]:g} mm (thick); "
            f"RPLHR-CT pairs {THIN_MM:g} mm with {THICK_MM:g} mm slices"
        )
    expected = FACTOR * (thick.shape[0] - 1) + 1
    if abs(thin.shape[0] - expected) > FACTOR // 2:
        raise GeometryError(
            f"{names}: {thin.shape[0]} thin slices do not fit {thick.shape[0]} thick slices "
            f"(thick slice k centred on thin slice {FACTOR}k needs {expected} +- {FACTOR // 2} thin slices)"
        )
    intensity = _intensity(thin, case.thin)
    if _intensity(thick, case.thick) != intensity:
        raise InputImageError(f"{names}: one volume is in HU, the other on [0, 1]")
    thick_start = -(SLAB_START // FACTOR)  # first thick slice whose slab starts on the grid (ceil(2 / 5) = 1)
    return RplhrPair(
        case=case.case,
        thin=thin,
        thick=thick,
        thin_spacing=thin_sp,
        thick_spacing=thick_sp,
        factor=FACTOR,
        offset=SLAB_START + FACTOR * thick_start,
        thick_start=thick_start,
        intensity=intensity,
    )
