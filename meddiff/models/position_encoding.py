"""3D position conditioning (paper 3.3, eqs. 5-6).

Coordinates are per-voxel positions normalised to [-1, 1] relative to the *whole volume*, so a patch's
coordinate channels say where it lies in the volume (multi-level position relationships, Fig. 3).
Channel k holds the coordinate along array axis k of (D, H, W) = (Z, Y, X).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

POSITION_MODES = ("none", "coords", "embedding")


def crop_coordinates(
    volume_shape: Sequence[int],
    start: Sequence[float],
    size: Sequence[float],
    out_shape: Sequence[int],
) -> torch.Tensor:
    """Coordinates of a crop, sampled on a grid of ``out_shape``.

    Args:
        volume_shape: (D, H, W) of the whole volume the crop is taken from.
        start: first voxel of the crop along each axis (may be fractional).
        size: extent of the crop in voxels along each axis (the crop covers start .. start + size - 1).
        out_shape: (d, h, w) of the network input the crop is resized to.

    Returns:
        (3, d, h, w) float32 tensor; voxel i of the volume maps to -1 + 2 i / (N - 1).
    """
    axes = []
    for n, s, k, m in zip(volume_shape, start, size, out_shape):
        denom = max(n - 1, 1)
        lo = -1.0 + 2.0 * s / denom
        hi = -1.0 + 2.0 * (s + k - 1) / denom
        axes.append(torch.linspace(lo, hi, m, dtype=torch.float32))
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(grid, dim=0)


def position_encoding(coords: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """PE of eq. 6: (sin(2^0 pi p), cos(2^0 pi p), ..., sin(2^(L-1) pi p), cos(2^(L-1) pi p)).

    Args:
        coords: (B, 3, D, H, W) coordinates in [-1, 1] (eq. 5, p_c).
        num_frequencies: L.

    Returns:
        (B, 6 L, D, H, W).
    """
    bands = []
    for level in range(num_frequencies):
        scaled = (2.0**level) * math.pi * coords
        bands.extend((torch.sin(scaled), torch.cos(scaled)))
    return torch.cat(bands, dim=1)


def position_channels(mode: str, num_frequencies: int) -> int:
    """Number of input channels a position mode adds.

    ``embedding`` keeps the raw coordinates beside their encoding: the ablation adds the embedding on top
    of "+ position" (Table 3), and at L's lowest band sin/cos cannot tell p = -1 from p = +1.
    """
    if mode == "none":
        return 0
    if mode == "coords":
        return 3
    if mode == "embedding":
        return 3 + 6 * num_frequencies
    raise ValueError(f"unknown position mode {mode!r}; expected one of {POSITION_MODES}")


def position_input(coords: torch.Tensor, mode: str, num_frequencies: int) -> torch.Tensor | None:
    """Position channels for the network input: None, (B, 3, ...) or (B, 3 + 6 L, ...)."""
    if mode == "none":
        return None
    if mode == "coords":
        return coords
    if mode == "embedding":
        return torch.cat([coords, position_encoding(coords, num_frequencies)], dim=1)
    raise ValueError(f"unknown position mode {mode!r}; expected one of {POSITION_MODES}")
