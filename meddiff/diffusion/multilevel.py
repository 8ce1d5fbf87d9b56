"""Multi-level training inputs (paper 3.2): image level and two patch levels, with whole-volume coordinates.

From a crop's volume (Z, Y, X), one of three operations yields the training input x_0 of eq. 3: level 0 resizes
the whole volume to the patch size, level 1 resizes a random crop of twice the patch size, level 2 takes a
random crop at the patch size (the only level of Table 3's patch-level baseline). Image, anatomy map and
coordinates (eq. 5, relative to the whole volume) are sampled on one align-corners grid of the same box; axes
shorter than the patch are padded (image -1, anatomy 0, coordinates beyond [-1, 1]). Details: docs/design.md,
"Multi-level training inputs".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import Resize
from scipy import ndimage

from meddiff.models.position_encoding import crop_coordinates

LEVELS: tuple[int, ...] = (0, 1, 2)
"""0 = whole volume resized (image level), 1 = 2x-patch crop resized, 2 = patch crop."""
IMAGE_PAD_VALUE = -1.0
LABEL_PAD_VALUE = 0


@dataclass(frozen=True)
class TrainingSample:
    """One multi-level training input.

    Attributes:
        x0: (1, P, P, P) float32 image in [-1, 1].
        anatomy: (P, P, P) int64 labels (label space of :mod:`meddiff.labels`).
        coords: (3, P, P, P) float32 whole-volume coordinates (eq. 5), channel k along array axis k.
        level: 0, 1 or 2 (see :data:`LEVELS`).
        start: first voxel of the box in the volume, per axis (negative where padded).
        size: extent of the box in volume voxels, per axis.
    """

    x0: torch.Tensor
    anatomy: torch.Tensor
    coords: torch.Tensor
    level: int
    start: tuple[int, int, int]
    size: tuple[int, int, int]


def choose_level(multilevel: bool, level_probabilities: Sequence[float], rng: np.random.Generator) -> int:
    """Draw the operation of paper 3.2.

    Args:
        multilevel: False = patch-level baseline (Table 3).
        level_probabilities: probabilities of levels (0, 1, 2), normalised here.
        rng: source of the draw.

    Returns:
        0, 1 or 2 (see :data:`LEVELS`); always 2 without ``multilevel``.
    """
    if not multilevel:
        return 2
    p = np.asarray(level_probabilities, dtype=np.float64)
    if p.shape != (3,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"level_probabilities must be 3 non-negative numbers, not all 0; got {level_probabilities}")
    return int(rng.choice(3, p=p / p.sum()))


def level_box(
    volume_shape: Sequence[int], patch_size: Sequence[int], level: int, rng: np.random.Generator
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Box (start, size) in volume voxels for ``level``; the start is uniform over all valid positions.

    Level 0: the whole volume. Level 1: min(2 P, N) per axis. Level 2: P per axis; where N < P the start is
    drawn from [N - P, 0] so the volume lands at a random offset inside the padded patch.

    Args:
        volume_shape: (Z, Y, X) of the volume.
        patch_size: (P_z, P_y, P_x).
        level: 0, 1 or 2.
        rng: source of the start positions.

    Returns:
        (start, size), each a tuple of 3 ints in volume voxels (start < 0 where padded).
    """
    if level == 0:
        return tuple(0 for _ in volume_shape), tuple(int(n) for n in volume_shape)
    if level == 1:
        sizes = [min(2 * p, n) for n, p in zip(volume_shape, patch_size)]
    elif level == 2:
        sizes = [int(p) for p in patch_size]
    else:
        raise ValueError(f"level must be one of {LEVELS}, got {level}")
    starts = []
    for n, k in zip(volume_shape, sizes):
        lo, hi = min(0, n - k), max(0, n - k)
        starts.append(int(rng.integers(lo, hi + 1)))
    return tuple(starts), tuple(sizes)


def read_box(array: np.ndarray, start: Sequence[int], size: Sequence[int], pad_value: float) -> np.ndarray:
    """Read ``array[start : start + size]`` per axis, padding with ``pad_value`` outside the array.

    Slices the (memory-mapped) array directly instead of using MONAI's SpatialCrop, which converts the whole
    array to a tensor first and would read the entire volume from disk for every patch.

    Args:
        array: (Z, Y, X) array (may be a memmap).
        start: first voxel per axis (may be negative).
        size: extent per axis.
        pad_value: value outside the array.

    Returns:
        ``size``-shaped array of ``array``'s dtype.
    """
    src, pad = [], []
    for n, s, k in zip(array.shape, start, size):
        lo, hi = max(s, 0), min(s + k, n)
        src.append(slice(lo, hi))
        pad.append((lo - s, s + k - hi))
    block = np.asarray(array[tuple(src)])
    if any(before or after for before, after in pad):
        block = np.pad(block, pad, mode="constant", constant_values=pad_value)
    return block


def resize_image(block: np.ndarray, out_shape: Sequence[int]) -> torch.Tensor:
    """(z, y, x) image -> (1, *out_shape) float32 by trilinear interpolation on the align-corners grid
    (MONAI ``Resize``), Gaussian anti-aliased along the axes that shrink.

    The anti-aliasing sigma is skimage's/MONAI's choice, (N/M - 1)/2 input voxels, but applied with
    scipy.ndimage.gaussian_filter: MONAI's ``anti_aliasing=True`` (torch GaussianSmooth) takes ~15x
    longer on CPU (5 s vs 0.3 s for a 300x300x200 volume), which would starve the training loop.
    """
    block = np.ascontiguousarray(block, dtype=np.float32)
    if tuple(block.shape) == tuple(out_shape):
        return torch.from_numpy(block)[None]
    sigma = [max(0.0, (n / m - 1.0) / 2.0) for n, m in zip(block.shape, out_shape)]
    if any(sigma):
        block = ndimage.gaussian_filter(block, sigma, mode="nearest")
    resize = Resize(spatial_size=tuple(out_shape), mode="trilinear", align_corners=True)
    out = resize(torch.from_numpy(block)[None])
    return torch.as_tensor(out.as_tensor() if hasattr(out, "as_tensor") else out, dtype=torch.float32)


def resize_labels(block: np.ndarray, out_shape: Sequence[int]) -> torch.Tensor:
    """(z, y, x) labels -> out_shape int64 by nearest neighbour on the align-corners grid.

    Written by hand because MONAI's and torch's "nearest" modes only sample the half-voxel
    (align_corners=False) grid, which would shift the anatomy map against the image and coordinates by up
    to one input voxel; picking rounded indices of the same linspace keeps all three on one grid.
    """
    index = [np.rint(np.linspace(0, n - 1, m)).astype(np.intp) for n, m in zip(block.shape, out_shape)]
    return torch.from_numpy(np.ascontiguousarray(block[np.ix_(*index)], dtype=np.int64))


def sample_training_input(
    image: np.ndarray,
    label: np.ndarray,
    *,
    patch_size: Sequence[int],
    multilevel: bool,
    level_probabilities: Sequence[float],
    rng: np.random.Generator,
) -> TrainingSample:
    """Draw one multi-level training input x_0 with its anatomy condition c_a and coordinates p_c (paper 3.2,
    eqs. 3 and 5).

    Args:
        image: (Z, Y, X) float image in [-1, 1] (may be a memmap; only the needed box is read).
        label: (Z, Y, X) integer anatomy labels on the same grid.
        patch_size: (P_z, P_y, P_x) network input size.
        multilevel: False = patch-level baseline (level 2 only).
        level_probabilities: probabilities of levels (0, 1, 2) when ``multilevel``.
        rng: source of all randomness (level and box position).

    Returns:
        :class:`TrainingSample` with x0 (1, P, P, P), anatomy (P, P, P), coords (3, P, P, P).
    """
    if image.ndim != 3 or image.shape != label.shape:
        raise ValueError(f"image {image.shape} and label {label.shape} must be 3D arrays of the same shape")
    level = choose_level(multilevel, level_probabilities, rng)
    start, size = level_box(image.shape, patch_size, level, rng)
    x0 = resize_image(read_box(image, start, size, IMAGE_PAD_VALUE), patch_size)
    anatomy = resize_labels(read_box(label, start, size, LABEL_PAD_VALUE), patch_size)
    coords = crop_coordinates(image.shape, start, size, patch_size)
    return TrainingSample(x0=x0, anatomy=anatomy, coords=coords, level=level, start=start, size=size)
