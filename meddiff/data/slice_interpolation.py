"""Interpolation baselines of Table 7 and the ControlNet condition of super-resolution (paper 3.5.1, 4.4.1).

A thick volume is interpolated along z onto the thin grid; the in-plane grids are the same, so "trilinear"
is linear interpolation along z. Where each thick slice sits on the thin grid is given by ``centres``
(thin-slice index of each thick slice's centre, e.g. :func:`meddiff.data.thick_slices.slab_centres`, or
:meth:`meddiff.data.rplhr.RplhrPair.thick_centres` for RPLHR-CT, where thick slice k is centred on thin
slice 5k).

Interpolation: SciPy's ``make_interp_spline`` along axis 0 — degree 1 (linear) or degree 3 (the cubic
interpolating B-spline, not-a-knot end conditions, which reproduces polynomials up to degree 3 exactly).
Table 7's "Bicubic" row is RPLHR-CT's number; :func:`bspline_upsample` is the z-only cubic counterpart
computed here. Thin slices beyond the first or last thick centre are not extrapolated: they copy the nearest
thick slice (coordinates clamped to the covered range).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import make_interp_spline

from meddiff.errors import GeometryError

_SLICES_PER_CHUNK = 32  # thin slices evaluated at once (bounds float64 memory on 512 x 512 slices)


def interpolate_z(thick: np.ndarray, centres: np.ndarray, thin_depth: int, *, degree: int) -> np.ndarray:
    """Interpolate a thick (Z', Y, X) volume along z onto ``thin_depth`` thin slices.

    Args:
        thick: (Z', Y, X) thick volume (any intensity unit).
        centres: (Z',) strictly increasing thin-grid z position of each thick slice.
        thin_depth: number of thin slices Z of the output grid.
        degree: 1 (linear) or 3 (cubic B-spline).

    Returns:
        (Z, Y, X) float32 volume on the thin grid.

    Raises:
        GeometryError: shapes do not fit, centres not increasing, or too few thick slices for ``degree``.
    """
    if degree not in (1, 3):
        raise ValueError(f"interpolation degree must be 1 or 3, got {degree}")
    if thick.ndim != 3:
        raise GeometryError(f"thick volume must be (Z', Y, X), got shape {thick.shape}")
    centres = np.asarray(centres, dtype=np.float64)
    if centres.shape != (thick.shape[0],):
        raise GeometryError(
            f"{centres.shape[0] if centres.ndim == 1 else centres.shape} slice centres "
            f"for {thick.shape[0]} thick slices"
        )
    if thick.shape[0] < degree + 1:
        raise GeometryError(
            f"degree-{degree} interpolation needs at least {degree + 1} thick slices, " f"got {thick.shape[0]}"
        )
    if np.any(np.diff(centres) <= 0):
        raise GeometryError(f"thick slice centres must increase strictly, got {centres.tolist()}")
    if thin_depth < 1:
        raise GeometryError(f"thin grid needs at least one slice, got {thin_depth}")
    spline = make_interp_spline(centres, np.asarray(thick, dtype=np.float64), k=degree, axis=0)
    positions = np.clip(np.arange(thin_depth, dtype=np.float64), centres[0], centres[-1])
    out = np.empty((thin_depth, *thick.shape[1:]), dtype=np.float32)
    for start in range(0, thin_depth, _SLICES_PER_CHUNK):
        part = slice(start, start + _SLICES_PER_CHUNK)
        out[part] = spline(positions[part])
    return out


def trilinear_upsample(thick: np.ndarray, centres: np.ndarray, thin_depth: int) -> np.ndarray:
    """Table 7 baseline: (Z', Y, X) thick -> (Z, Y, X) thin by linear interpolation along z (see module)."""
    return interpolate_z(thick, centres, thin_depth, degree=1)


def bspline_upsample(thick: np.ndarray, centres: np.ndarray, thin_depth: int) -> np.ndarray:
    """Table 7 baseline: (Z', Y, X) thick -> (Z, Y, X) thin by cubic B-spline interpolation along z."""
    return interpolate_z(thick, centres, thin_depth, degree=3)


def controlnet_condition(thick: np.ndarray, centres: np.ndarray, thin_depth: int) -> np.ndarray:
    """The ControlNet target condition c_t of super-resolution (paper 3.5.1, eq. 4): the thick volume
    upsampled onto the thin grid by linear interpolation along z, (Z', Y, X) -> (Z, Y, X) float32, so that it
    shares the patch grid of x_t."""
    return trilinear_upsample(thick, centres, thin_depth)
