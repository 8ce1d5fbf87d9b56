"""Split a whole-body CT into the paper's anatomical regions (head & neck, chest, abdomen; 4.1.2) using
landmarks of its anatomy mask.

Landmarks (z index grows towards the head; ranges are half-open ``[z0, z1)`` voxel indices):

* **chest**: z extent of the lungs (all five lobes) +- ``MARGIN_MM``.
* **han**: from the lung apex (top of the lungs, minus ``MARGIN_MM`` of overlap) to the top of the volume;
  kept only when skull or brain is labelled above it or it spans >= ``NECK_ONLY_MIN_MM`` (a neck without head).
  Without lungs, a volume with skull/brain is han from bottom to top.
* **abdomen**: from the liver dome (top of the liver + ``MARGIN_MM``; overlapping the chest as in clinical
  abdomen scans) down to the bottom of the hip bones - ``MARGIN_MM``. Fallbacks for masks without these
  classes (the threshold backend): top = lung base + ``DOME_ABOVE_LUNG_BASE_MM``; bottom = the crotch, the
  highest slice below which the body splits into two legs (largest axial blob < ``LEG_SPLIT_FRACTION`` of the
  body area over ``LEG_RUN_MM``), else the bottom of the volume. Needs the liver or the lungs for its top.

Regions shorter than ``min_extent_mm`` are dropped.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from meddiff.labels import REGIONS, indices

MARGIN_MM = 10.0
NECK_ONLY_MIN_MM = 100.0
DOME_ABOVE_LUNG_BASE_MM = 80.0
"""Liver dome above the lowest lung point (posterior costophrenic recess), ~2-3 vertebral levels."""
LEG_SPLIT_FRACTION = 0.7
LEG_RUN_MM = 20.0

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def _z_range(labels: np.ndarray, classes: list[int]) -> tuple[int, int] | None:
    """(lowest, highest) z index (inclusive) where any of ``classes`` occurs, or None."""
    present = np.flatnonzero(np.isin(labels, classes).any(axis=(1, 2)))
    return (int(present[0]), int(present[-1])) if present.size else None


def _crotch(body: np.ndarray, below: int, sz: float) -> int | None:
    """Highest z < ``below`` from which the body is split into legs for >= ``LEG_RUN_MM`` downward, or None."""
    lab, n = ndimage.label(body[:below], structure=_IN_PLANE)
    if n == 0:
        return None
    area = np.bincount(lab.ravel())[1:]
    zs = np.array([o[0].start for o in ndimage.find_objects(lab)])
    largest = np.zeros(below)
    np.maximum.at(largest, zs, area)
    total = np.bincount(zs, weights=area, minlength=below)
    legs = (total > 0) & (largest < LEG_SPLIT_FRACTION * np.maximum(total, 1))
    run = max(1, int(round(LEG_RUN_MM / sz)))
    for z in range(below - 1, run - 2, -1):
        if legs[z - run + 1 : z + 1].all():
            return z
    return None


def region_extents(
    labels: np.ndarray, spacing: tuple[float, float, float], min_extent_mm: float = 0.0
) -> dict[str, tuple[int, int]]:
    """z ranges ``{region: (z0, z1)}`` (half-open voxel indices) of han / chest / abdomen in a whole-body label map.

    Args:
        labels: (Z, Y, X) label map in the project label space, LPS canonical orientation (z index 0 = most
            inferior slice).
        spacing: voxel spacing (x, y, z) in mm (SimpleITK order).
        min_extent_mm: regions shorter than this (head-foot) are left out.

    Returns:
        The surviving regions, in :data:`meddiff.labels.REGIONS` order. See the module docstring for landmarks.
    """
    depth = labels.shape[0]
    sz = float(spacing[2])
    margin = int(round(MARGIN_MM / sz))
    lungs = _z_range(labels, indices("lung"))
    head = _z_range(labels, indices("skull", "brain"))
    liver = _z_range(labels, indices("liver"))
    hips = _z_range(labels, indices("hip"))
    out: dict[str, tuple[int, int]] = {}

    if lungs is not None:
        z0 = min(depth, lungs[1] + 1 - margin)
        if (head is not None and head[1] >= z0) or (depth - z0) * sz >= NECK_ONLY_MIN_MM:
            out["han"] = (max(0, z0), depth)
        out["chest"] = (max(0, lungs[0] - margin), min(depth, lungs[1] + 1 + margin))
    elif head is not None:
        out["han"] = (0, depth)

    if liver is not None:
        top = min(depth, liver[1] + 1 + margin)
    elif lungs is not None:
        top = min(lungs[1] + 1, lungs[0] + 1 + int(round(DOME_ABOVE_LUNG_BASE_MM / sz)))
    else:
        top = None
    if top is not None:
        if hips is not None:
            bottom = max(0, hips[0] - margin)
        else:
            crotch = _crotch(labels > 0, top, sz)
            bottom = crotch + 1 if crotch is not None else 0
        out["abdomen"] = (bottom, top)

    return {r: out[r] for r in REGIONS if r in out and (out[r][1] - out[r][0]) * sz >= max(min_extent_mm, sz)}
