"""Anomaly-detection metrics of Table 6 (paper 4.1.3 / 4.3.3, following BMAD): image-level AUROC,
pixel-level AUROC, per-region overlap (PRO) and Dice at a fixed threshold.

Every function takes lists over cases of arrays of one shape per case, (Z, Y, X):

* ``maps``: anomaly maps (any non-negative scale; 0 outside the organ, see :func:`meddiff.tasks.anomaly.anomaly_map`),
* ``lesion_masks``: ground-truth anomalies (bool),
* ``organ_masks``: the organ the detector looked at (bool).

**Evaluation domain.** BMAD scores full 2D images. Our maps are 0 outside the organ by construction, so every
voxel outside the organ would be a free true negative that inflates pixel AUROC and lowers the FPR axis of PRO,
and a full-volume evaluation of all BMAD slices (~10^8 voxels) does not fit comfortably in memory. Pixel-level
metrics are therefore computed over the *organ domain* = organ mask ∪ lesion mask (lesion voxels outside the
organ still count, with the score the map gives them). This is stricter than BMAD's full-image protocol; for
BMAD liver, whose images show little besides the liver, the difference is small.

Image-level metrics treat each axial slice (z index) that contains organ or lesion voxels as one "image", as BMAD's
liver benchmark is a set of 2D axial slices showing the liver.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.integrate import trapezoid
from sklearn.metrics import roc_auc_score

log = logging.getLogger(__name__)

# 2D connectivity inside each axial slice only: a 3x3x3 structure whose off-plane layers are empty makes
# ndimage.label find the 8-connected components of every slice in one call (BMAD works on 2D slices; MVTec AD's
# reference PRO code labels with a full 3x3 structure, i.e. 8-connectivity).
_IN_SLICE_8_CONNECTIVITY = np.zeros((3, 3, 3), dtype=bool)
_IN_SLICE_8_CONNECTIVITY[1] = True


def _count_regions(lesion: np.ndarray) -> int:
    """Number of 2D (per axial slice) connected lesion regions of one (Z, Y, X) mask."""
    return int(ndimage.label(np.asarray(lesion, dtype=bool), structure=_IN_SLICE_8_CONNECTIVITY)[1])


def _check(maps: Sequence[np.ndarray], lesion_masks: Sequence[np.ndarray], organ_masks: Sequence[np.ndarray]) -> None:
    if not (len(maps) == len(lesion_masks) == len(organ_masks)):
        raise ValueError(f"got {len(maps)} maps, {len(lesion_masks)} lesion masks, {len(organ_masks)} organ masks")
    if not maps:
        raise ValueError("no cases to evaluate")
    for i, (m, les, org) in enumerate(zip(maps, lesion_masks, organ_masks)):
        if not (np.shape(m) == np.shape(les) == np.shape(org)) or np.ndim(m) != 3:
            raise ValueError(
                f"case {i}: map {np.shape(m)}, lesion mask {np.shape(les)} and organ mask {np.shape(org)} "
                "must be 3D (Z, Y, X) arrays of one shape"
            )


def _auroc(labels: np.ndarray, scores: np.ndarray, what: str) -> float:
    """``roc_auc_score``, or NaN (with a warning) when only one class is present."""
    if labels.size == 0 or labels.all() or not labels.any():
        log.warning("%s AUROC undefined: the evaluated set holds only one class", what)
        return float("nan")
    return float(roc_auc_score(labels, scores))


def slice_scores(
    maps: Sequence[np.ndarray], lesion_masks: Sequence[np.ndarray], organ_masks: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per axial slice: (score = max of the map in the slice, label = slice contains a lesion voxel).

    Only slices holding organ or lesion voxels count as images. Returns two 1D arrays of equal length.
    """
    _check(maps, lesion_masks, organ_masks)
    scores, labels = [], []
    for amap, lesion, organ in zip(maps, lesion_masks, organ_masks):
        lesion = np.asarray(lesion, dtype=bool)
        present = np.asarray(organ, dtype=bool).any(axis=(1, 2)) | lesion.any(axis=(1, 2))
        scores.append(np.asarray(amap, dtype=np.float64).max(axis=(1, 2))[present])
        labels.append(lesion.any(axis=(1, 2))[present])
    return np.concatenate(scores), np.concatenate(labels)


def image_auroc(
    maps: Sequence[np.ndarray], lesion_masks: Sequence[np.ndarray], organ_masks: Sequence[np.ndarray]
) -> float:
    """Image-level AUROC over axial slices (see :func:`slice_scores`); NaN if all slices are of one class."""
    scores, labels = slice_scores(maps, lesion_masks, organ_masks)
    return _auroc(labels, scores, "image-level")


def _domain_values(
    maps: Sequence[np.ndarray], lesion_masks: Sequence[np.ndarray], organ_masks: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and lesion labels of all voxels in the organ domain (organ ∪ lesion), pooled over cases."""
    scores, labels = [], []
    for amap, lesion, organ in zip(maps, lesion_masks, organ_masks):
        lesion = np.asarray(lesion, dtype=bool)
        domain = np.asarray(organ, dtype=bool) | lesion
        scores.append(np.asarray(amap, dtype=np.float64)[domain])
        labels.append(lesion[domain])
    return np.concatenate(scores), np.concatenate(labels)


def pixel_auroc(
    maps: Sequence[np.ndarray], lesion_masks: Sequence[np.ndarray], organ_masks: Sequence[np.ndarray]
) -> float:
    """Pixel-level AUROC over all voxels of the organ domain of all cases (module docstring)."""
    _check(maps, lesion_masks, organ_masks)
    scores, labels = _domain_values(maps, lesion_masks, organ_masks)
    return _auroc(labels, scores, "pixel-level")


def pro_curve(
    maps: Sequence[np.ndarray], lesion_masks: Sequence[np.ndarray], organ_masks: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-region-overlap curve (MVTec AD / BMAD): (FPR, PRO) at every distinct threshold, highest first.

    A voxel is predicted anomalous when its score is >= the threshold. Ground-truth regions are the 8-connected
    components of the lesion mask in each axial slice of each case; PRO(thr) is the mean over all regions of the
    fraction of the region's pixels predicted anomalous; FPR(thr) the fraction of normal voxels of the organ
    domain predicted anomalous. The curve starts at (0, 0) and ends at (1, 1).

    Written by hand (no maintained library here provides PRO; anomalib is not installed). Every threshold is
    evaluated exactly in one pass: voxels are sorted by score and each anomalous voxel contributes
    1 / (n_regions * its region's size) to PRO, each normal voxel 1 / n_normal to FPR; cumulative sums taken at
    the end of each group of tied scores give the curve.

    Returns two float64 arrays (FPR, PRO) of equal length; empty arrays if there is no region or no normal voxel.
    """
    _check(maps, lesion_masks, organ_masks)
    region_scores, region_weights, normal_scores = [], [], []
    n_regions = 0
    for amap, lesion, organ in zip(maps, lesion_masks, organ_masks):
        amap = np.asarray(amap, dtype=np.float64)
        lesion = np.asarray(lesion, dtype=bool)
        components, n = ndimage.label(lesion, structure=_IN_SLICE_8_CONNECTIVITY)
        if n:
            ids = components[lesion]
            sizes = np.bincount(ids, minlength=n + 1)
            region_scores.append(amap[lesion])
            region_weights.append(1.0 / sizes[ids])
            n_regions += n
        normal_scores.append(amap[(np.asarray(organ, dtype=bool) | lesion) & ~lesion])
    normal = np.concatenate(normal_scores)
    if n_regions == 0 or normal.size == 0:
        return np.zeros(0), np.zeros(0)
    anomalous = np.concatenate(region_scores)
    scores = np.concatenate([anomalous, normal])
    pro_w = np.concatenate([np.concatenate(region_weights) / n_regions, np.zeros(normal.size)])
    fpr_w = np.concatenate([np.zeros(anomalous.size), np.full(normal.size, 1.0 / normal.size)])
    order = np.argsort(-scores, kind="stable")
    scores, pro = scores[order], np.cumsum(pro_w[order])
    fpr = np.cumsum(fpr_w[order])
    group_end = np.r_[scores[1:] != scores[:-1], True]  # last voxel of each run of equal scores
    return np.r_[0.0, fpr[group_end]], np.r_[0.0, pro[group_end]]


def pro_score(
    maps: Sequence[np.ndarray],
    lesion_masks: Sequence[np.ndarray],
    organ_masks: Sequence[np.ndarray],
    *,
    fpr_limit: float = 0.3,
) -> float:
    """Area under the PRO curve for FPR in [0, ``fpr_limit``] (trapezoid rule), divided by ``fpr_limit``.

    The curve is linearly interpolated at FPR = ``fpr_limit``; 0.3 is the limit of MVTec AD and BMAD.
    NaN when there is no lesion region or no normal voxel.
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(maps, lesion_masks, organ_masks)
    if fpr.size == 0:
        log.warning("PRO undefined: no lesion region or no normal voxel in the evaluated set")
        return float("nan")
    inside = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:inside] <= limit; fpr[-1] == 1
    x, y = fpr[:inside], pro[:inside]
    if x[-1] < fpr_limit:
        x0, y0, x1, y1 = x[-1], y[-1], fpr[inside], pro[inside]
        x = np.r_[x, fpr_limit]
        y = np.r_[y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)]
    return float(trapezoid(y, x) / fpr_limit)


def dataset_max(maps: Sequence[np.ndarray]) -> float:
    """The largest anomaly score over all cases: the one normalisation constant of a dataset (0 if all maps are 0)."""
    return float(max((np.max(m) for m in maps), default=0.0))


def dice_at_threshold(
    maps: Sequence[np.ndarray], lesion_masks: Sequence[np.ndarray], threshold: float, *, scale: float
) -> float:
    """Dice of the binary anomaly masks ``map / scale >= threshold`` against the lesions, pooled over all voxels.

    ``scale`` is the dataset-wide normalisation (:func:`dataset_max`), computed once over every evaluated case,
    so a healthy case cannot have its faint noise stretched to 1. Both masks empty -> 1.0 (nothing to find,
    nothing found). A pooled two-line formula; MONAI's DiceMetric averages per case instead.
    """
    if len(maps) != len(lesion_masks):
        raise ValueError(f"got {len(maps)} maps and {len(lesion_masks)} lesion masks")
    intersection = predicted = truth = 0
    for amap, lesion in zip(maps, lesion_masks):
        lesion = np.asarray(lesion, dtype=bool)
        pred = binary_mask(amap, scale, threshold)
        intersection += int(np.count_nonzero(pred & lesion))
        predicted += int(np.count_nonzero(pred))
        truth += int(np.count_nonzero(lesion))
    if predicted + truth == 0:
        return 1.0
    return 2.0 * intersection / (predicted + truth)


def binary_mask(amap: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """The paper's binary anomaly mask Ano_mask (3.4.2): ``amap / scale >= threshold`` (all False if scale is 0)."""
    amap = np.asarray(amap)
    if scale <= 0:
        return np.zeros(amap.shape, dtype=bool)
    return amap / scale >= threshold


def anomaly_metrics(
    maps: Sequence[np.ndarray],
    lesion_masks: Sequence[np.ndarray],
    organ_masks: Sequence[np.ndarray],
    threshold: float,
    *,
    scale: float | None = None,
) -> dict[str, float]:
    """The four metrics of Table 6 over a set of cases.

    Returns ``{"image_auroc", "pixel_auroc", "pro", "dice", "scale", "n_cases", "n_slices", "n_lesion_slices",
    "n_regions"}``; ``scale`` defaults to :func:`dataset_max` of ``maps`` (pass it to evaluate a subset with the
    normalisation of the whole dataset).
    """
    _check(maps, lesion_masks, organ_masks)
    scale = dataset_max(maps) if scale is None else float(scale)
    _, slice_labels = slice_scores(maps, lesion_masks, organ_masks)
    n_regions = sum(_count_regions(les) for les in lesion_masks)
    return {
        "image_auroc": image_auroc(maps, lesion_masks, organ_masks),
        "pixel_auroc": pixel_auroc(maps, lesion_masks, organ_masks),
        "pro": pro_score(maps, lesion_masks, organ_masks),
        "dice": dice_at_threshold(maps, lesion_masks, threshold, scale=scale),
        "scale": scale,
        "n_cases": len(maps),
        "n_slices": int(slice_labels.size),
        "n_lesion_slices": int(slice_labels.sum()),
        "n_regions": n_regions,
    }


def evaluate_anomaly(
    names: Sequence[str],
    maps: Sequence[np.ndarray],
    lesion_masks: Sequence[np.ndarray],
    organ_masks: Sequence[np.ndarray],
    threshold: float,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-case table and dataset summary of an anomaly-detection run.

    The summary is :func:`anomaly_metrics` over all cases pooled (the numbers of Table 6). Per-case rows hold
    ``case, slices, lesion_voxels, regions, map_max, pixel_auroc, pro, dice`` -- pixel AUROC and PRO are NaN for a
    case without lesion, Dice uses the dataset-wide scale so rows are comparable.
    """
    _check(maps, lesion_masks, organ_masks)
    if len(names) != len(maps):
        raise ValueError(f"got {len(names)} case names for {len(maps)} maps")
    scale = dataset_max(maps)
    rows = []
    for name, amap, lesion, organ in zip(names, maps, lesion_masks, organ_masks):
        one = ([amap], [lesion], [organ])
        has_lesion = bool(np.any(lesion))
        rows.append({
            "case": name,
            "slices": int(np.asarray(organ, bool).any(axis=(1, 2)).sum()),
            "lesion_voxels": int(np.count_nonzero(lesion)),
            "regions": _count_regions(lesion),
            "map_max": float(np.max(amap)),
            "pixel_auroc": pixel_auroc(*one) if has_lesion else float("nan"),
            "pro": pro_score(*one) if has_lesion else float("nan"),
            "dice": dice_at_threshold([amap], [lesion], threshold, scale=scale),
        })
    return pd.DataFrame(rows), anomaly_metrics(maps, lesion_masks, organ_masks, threshold, scale=scale)
