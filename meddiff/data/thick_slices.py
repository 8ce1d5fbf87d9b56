"""Thick slices from thin ones: the slab-averaging operator H of volumetric super-resolution (paper 3.5.1, eq. 12).

A thick slice is the mean of ``factor`` consecutive thin slices along z, starting at thin slice ``offset``:
``thick[k] = mean(thin[offset + factor*k : offset + factor*(k+1)])``. Written by hand: it is one reshape and a mean,
and its adjoint is needed by DiffPIR's closed-form data step (H Hᵀ = I / factor), which no library offers.
"""
from __future__ import annotations

import numpy as np

from meddiff.errors import GeometryError


def thick_depth(thin_depth: int, factor: int, offset: int = 0) -> int:
    """Number of whole thick slices a thin stack of ``thin_depth`` slices yields."""
    if factor < 1 or offset < 0:
        raise GeometryError(f"slab averaging needs factor >= 1 and offset >= 0, got factor {factor}, offset {offset}")
    depth = (thin_depth - offset) // factor
    if depth < 1:
        raise GeometryError(f"{thin_depth} thin slices hold no slab of {factor} slices after offset {offset}")
    return depth


def slab_average(thin: np.ndarray, factor: int, offset: int = 0) -> np.ndarray:
    """H: thin (Z, Y, X) -> thick (Z', Y, X), Z' = (Z - offset) // factor; trailing thin slices are dropped."""
    if thin.ndim != 3:
        raise GeometryError(f"slab averaging takes a (Z, Y, X) volume, got shape {thin.shape}")
    depth = thick_depth(thin.shape[0], factor, offset)
    slabs = thin[offset: offset + depth * factor].reshape(depth, factor, *thin.shape[1:])
    return slabs.mean(axis=1)


def slab_average_adjoint(thick: np.ndarray, factor: int, thin_depth: int, offset: int = 0) -> np.ndarray:
    """Hᵀ: thick (Z', Y, X) -> thin (thin_depth, Y, X); each thick value / factor over its slab, zero elsewhere."""
    if thick.ndim != 3 or thick.shape[0] != thick_depth(thin_depth, factor, offset):
        raise GeometryError(f"thick stack {thick.shape} does not match {thin_depth} thin slices at factor {factor}, "
                         f"offset {offset}")
    thin = np.zeros((thin_depth, *thick.shape[1:]), dtype=np.result_type(thick.dtype, np.float32))
    thin[offset: offset + thick.shape[0] * factor] = np.repeat(thick, factor, axis=0) / factor
    return thin


def slab_centres(factor: int, depth: int, offset: int = 0) -> np.ndarray:
    """(Z',) thin-grid z position of each thick slice's centre: offset + factor*k + (factor - 1)/2."""
    return offset + factor * np.arange(depth) + (factor - 1) / 2

