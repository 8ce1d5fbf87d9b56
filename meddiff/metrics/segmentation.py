"""Dice between the anatomy a synthetic volume was conditioned on and the anatomy TotalSegmentator finds in it
(paper 4.1.3: brain and skull for head & neck; lung, heart and aorta for the chest; spleen, kidney, gallbladder,
liver, stomach, pancreas, small bowel, duodenum and colon for the abdomen).
"""

from __future__ import annotations

import math

import numpy as np

from meddiff import labels
from meddiff.errors import GeometryError


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A ∩ B| / (|A| + |B|) of two boolean masks of the same shape.

    Both empty -> NaN (nothing to compare; skipped by ``np.nanmean``); one empty -> 0. Written with numpy
    rather than ``monai.metrics.compute_dice``, whose ``ignore_empty`` returns NaN whenever the reference is
    empty even if the prediction is not (which should score 0), and which needs one-hot tensors.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise GeometryError(f"Dice needs masks of the same shape, got {a.shape} and {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return math.nan
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def organ_dice(reference_labels: np.ndarray, predicted_labels: np.ndarray, region: str) -> dict[str, float]:
    """Dice per organ group of ``labels.DICE_ORGANS[region]``, in the paper's order.

    A group is the union of all label-space classes matched by ``labels.indices(*group)`` (e.g. "kidney" =
    kidney_left + kidney_right (+ kidney cysts)), so left/right confusions do not count as errors. An organ
    absent from the reference labels gives NaN (it is skipped by :func:`mean_dice`), even if it was predicted.

    Args:
        reference_labels: (Z, Y, X) condition label map (project label space, 0..118).
        predicted_labels: (Z, Y, X) labels TotalSegmentator found in the synthetic volume, same grid.
        region: one of ``labels.REGIONS``.
    """
    if region not in labels.DICE_ORGANS:
        raise ValueError(f"unknown region {region!r}; expected one of {tuple(labels.DICE_ORGANS)}")
    ref = np.asarray(reference_labels)
    pred = np.asarray(predicted_labels)
    if ref.shape != pred.shape:
        raise GeometryError(f"organ Dice: reference labels {ref.shape} and predicted labels {pred.shape} differ")
    out: dict[str, float] = {}
    for organ, group in labels.DICE_ORGANS[region].items():
        classes = labels.indices(*group)
        ref_mask = np.isin(ref, classes)
        out[organ] = dice(ref_mask, np.isin(pred, classes)) if ref_mask.any() else math.nan
    return out


def mean_dice(per_organ: dict[str, float]) -> float:
    """Mean over organs present in the reference (NaN entries skipped); NaN if none is present."""
    values = np.array(list(per_organ.values()), dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
