"""Sanity checks run on every input volume before it is used: is it a 3D CT in Hounsfield units, is a label
map within the label space, do two images share a voxel grid.

Raw unsigned CT (stored values = HU + 1024, rescale not applied) is **rejected with a hint**, not shifted:
an offset guessed from the histogram would silently corrupt an MR volume that happens to look similar, and
the fix (apply the DICOM RescaleIntercept / NIfTI scl_inter when converting) belongs to the data source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from meddiff.errors import GeometryError, InputImageError
from meddiff.labels import NUM_CLASSES

AIR_MAX_HU = -500.0
"""A CT volume must contain air: its 0.1st intensity percentile must lie below this (air is ~ -1000 HU)."""

MIN_HU_RANGE = 500.0
"""... and its 0.1st..99.9th percentile range must span at least this many HU (air to soft tissue is ~1000)."""

GEOMETRY_RTOL = 1e-3
"""Relative tolerance on spacing / origin / direction when comparing two voxel grids."""

MAX_SPACING_MM = 10.0
"""Largest voxel spacing accepted along any axis: the paper's CT has 0.5-5 mm voxels; a spacing above 10 mm (or
zero, or negative) is a broken header or not a diagnostic CT volume, and resampling it would invent anatomy."""

_MAX_SAMPLE = 2_000_000  # voxels used for the intensity percentiles (a strided subsample keeps checks fast)


def _sample(arr: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil((arr.size / _MAX_SAMPLE) ** (1 / 3))))
    return arr[::step, ::step, ::step] if arr.ndim == 3 else arr


def check_volume_shape(img: sitk.Image, path: str | Path, what: str = "CT volume") -> None:
    """Raise :class:`InputImageError` unless ``img`` is a single-channel 3D image with >= 2 voxels per axis."""
    dim = img.GetDimension()
    if dim != 3:
        raise InputImageError(f"{path}: expected a 3D {what}, found a {dim}D image of size {img.GetSize()}")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            f"{path}: expected a single-channel {what}, found {img.GetNumberOfComponentsPerPixel()} components per voxel"
        )
    if min(img.GetSize()) < 2:
        raise InputImageError(
            f"{path}: {what} is empty or flat: size {img.GetSize()} (need >= 2 voxels along x, y and z)"
        )


def check_ct(img: sitk.Image, path: str | Path) -> None:
    """Raise :class:`InputImageError` unless ``img`` looks like a 3D CT volume in Hounsfield units.

    Checks: 3D, single channel, >= 2 voxels per axis, spacing in (0, ``MAX_SPACING_MM``] mm, finite voxels,
    not constant, contains air (0.1st percentile
    < ``AIR_MAX_HU``) and spans >= ``MIN_HU_RANGE`` HU. MR volumes (non-negative), normalised images (0..1)
    and raw unsigned CT (HU + 1024) fail with a message giving min / max / percentiles and a hint.
    """
    check_volume_shape(img, path)
    spacing = img.GetSpacing()
    if not all(0 < s <= MAX_SPACING_MM for s in spacing):
        raise InputImageError(
            f"{path}: voxel spacing {_fmt(spacing)} mm is outside (0, {MAX_SPACING_MM:g}] mm along some axis "
            "(broken header, or not a diagnostic CT volume)"
        )
    arr = sitk.GetArrayViewFromImage(img)
    finite = np.isfinite(arr)
    if not finite.all():
        raise InputImageError(
            f"{path}: {arr.size - int(finite.sum())} of {arr.size} voxels are NaN or infinite; a CT volume in HU "
            "has finite values everywhere"
        )
    lo_val, hi_val = float(arr.min()), float(arr.max())
    if lo_val == hi_val:
        raise InputImageError(f"{path}: volume is constant (every voxel = {lo_val:g}); nothing to learn from")
    p = np.percentile(_sample(arr), [0.1, 50, 99.9])
    stats = f"min {lo_val:g}, p0.1 {p[0]:g}, median {p[1]:g}, p99.9 {p[2]:g}, max {hi_val:g}"
    problems = []
    if p[0] > AIR_MAX_HU:
        problems.append(f"no air (0.1st percentile {p[0]:g} > {AIR_MAX_HU:g} HU)")
    if p[2] - p[0] < MIN_HU_RANGE:
        problems.append(f"intensity range {p[2] - p[0]:g} < {MIN_HU_RANGE:g} HU")
    if problems:
        hint = ""
        if lo_val >= 0 and hi_val > 1000:
            hint = (
                "; if this is CT stored without its rescale (air ~0, soft tissue ~1040), subtract 1024 or fix the"
                " DICOM RescaleIntercept / NIfTI scl_inter; an MR volume cannot be used"
            )
        raise InputImageError(
            f"{path}: does not look like CT in Hounsfield units: {' and '.join(problems)} ({stats}){hint}"
        )


def check_label_map(img: sitk.Image, path: str | Path, max_label: int = NUM_CLASSES - 1) -> None:
    """Raise :class:`InputImageError` unless ``img`` is a 3D integer label map with values in 0..``max_label``."""
    check_volume_shape(img, path, what="label map")
    arr = sitk.GetArrayViewFromImage(img)
    lo, hi = arr.min(), arr.max()
    if not np.issubdtype(arr.dtype, np.integer) and not np.array_equal(_sample(arr), np.round(_sample(arr))):
        raise InputImageError(f"{path}: label map has non-integer values (type {arr.dtype})")
    if lo < 0 or hi > max_label:
        raise InputImageError(f"{path}: label values must lie in 0..{max_label}, found {lo:g}..{hi:g}")


def _close(a: tuple[float, ...], b: tuple[float, ...], scale: float) -> bool:
    return bool(np.allclose(a, b, rtol=GEOMETRY_RTOL, atol=GEOMETRY_RTOL * scale))


def check_same_geometry(a: sitk.Image, b: sitk.Image, path_a: str | Path, path_b: str | Path) -> None:
    """Raise :class:`GeometryError` listing every difference (dimension, size, spacing, origin, direction)
    between the voxel grids of ``a`` and ``b``; spacing/origin/direction compare with ``GEOMETRY_RTOL``
    (origin relative to the voxel spacing)."""
    diffs = []
    if a.GetDimension() != b.GetDimension():
        diffs.append(f"dimension {a.GetDimension()} vs {b.GetDimension()}")
    else:
        if a.GetSize() != b.GetSize():
            diffs.append(f"size {a.GetSize()} vs {b.GetSize()}")
        if not _close(a.GetSpacing(), b.GetSpacing(), 0.0):
            diffs.append(f"spacing {_fmt(a.GetSpacing())} vs {_fmt(b.GetSpacing())}")
        if not _close(a.GetOrigin(), b.GetOrigin(), max(a.GetSpacing())):
            diffs.append(f"origin {_fmt(a.GetOrigin())} vs {_fmt(b.GetOrigin())}")
        if not _close(a.GetDirection(), b.GetDirection(), 1.0):
            diffs.append(f"direction {_fmt(a.GetDirection())} vs {_fmt(b.GetDirection())}")
    if diffs:
        raise GeometryError(f"{path_b}: voxel grid differs from {path_a}: " + "; ".join(diffs))


def _fmt(v: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
