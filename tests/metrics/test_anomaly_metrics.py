"""Anomaly metrics against numbers derived by hand."""

import math

import numpy as np
import pytest

from meddiff.metrics.anomaly import (
    anomaly_metrics,
    binary_mask,
    dataset_max,
    dice_at_threshold,
    image_auroc,
    pixel_auroc,
    pro_curve,
    pro_score,
    slice_scores,
)


def _as_case(scores_2d, lesion_2d, organ_2d=None):
    """One case of a single axial slice (1, Y, X)."""
    s = np.asarray(scores_2d, dtype=float)[None]
    les = np.asarray(lesion_2d, dtype=bool)[None]
    org = np.ones_like(les) if organ_2d is None else np.asarray(organ_2d, dtype=bool)[None]
    return [s], [les], [org]


# ---------------------------------------------------------------- AUROC
def test_pixel_auroc_perfect_inverted_and_tied():
    lesion = np.array([[1, 1, 0, 0]])
    maps, les, org = _as_case([[0.9, 0.8, 0.1, 0.2]], lesion)
    assert pixel_auroc(maps, les, org) == 1.0
    maps, les, org = _as_case([[0.1, 0.2, 0.9, 0.8]], lesion)
    assert pixel_auroc(maps, les, org) == 0.0
    maps, les, org = _as_case([[0.5, 0.5, 0.5, 0.5]], lesion)
    assert pixel_auroc(maps, les, org) == 0.5


def test_pixel_auroc_ignores_voxels_outside_the_organ_domain():
    # Outside the organ the normal voxel has score 0.95 > every lesion voxel: counted it would lower AUROC.
    maps, les, org = _as_case([[0.9, 0.8, 0.1, 0.95]], [[1, 1, 0, 0]], organ_2d=[[1, 1, 1, 0]])
    assert pixel_auroc(maps, les, org) == 1.0


def test_pixel_auroc_single_class_is_nan():
    maps, les, org = _as_case([[0.9, 0.8]], [[0, 0]])
    assert math.isnan(pixel_auroc(maps, les, org))


def test_image_auroc_uses_slice_max_and_only_organ_slices():
    # 4 slices of 1x3: slice 0 has a lesion and max 0.7, slice 1 healthy max 0.4, slice 2 lesion max 0.9,
    # slice 3 healthy but without organ (score 0.99 must be ignored).
    amap = np.array([[[0.1, 0.7, 0.0]], [[0.4, 0.0, 0.2]], [[0.9, 0.3, 0.1]], [[0.99, 0.0, 0.0]]])
    lesion = np.zeros_like(amap, dtype=bool)
    lesion[0, 0, 0] = True  # lesion voxel itself scores low; the slice max is what counts
    lesion[2, 0, 1] = True
    organ = np.ones_like(lesion)
    organ[3] = False
    scores, labels = slice_scores([amap], [lesion], [organ])
    np.testing.assert_allclose(scores, [0.7, 0.4, 0.9])
    np.testing.assert_array_equal(labels, [True, False, True])
    assert image_auroc([amap], [lesion], [organ]) == 1.0


# ---------------------------------------------------------------- PRO
# One 4x4 slice, organ everywhere. Region A = 4 pixels (top-left 2x2), region B = 2 pixels (right column rows
# 2-3), not 8-connected to A. 10 normal pixels.
A = [(0, 0), (0, 1), (1, 0), (1, 1)]
B = [(2, 3), (3, 3)]


def _pro_example(a_scores, b_scores, normal_scores):
    amap = np.zeros((4, 4))
    lesion = np.zeros((4, 4), dtype=bool)
    for (y, x), s in zip(A, a_scores):
        amap[y, x], lesion[y, x] = s, True
    for (y, x), s in zip(B, b_scores):
        amap[y, x], lesion[y, x] = s, True
    normal = [(y, x) for y in range(4) for x in range(4) if not lesion[y, x]]
    assert len(normal) == 10
    for (y, x), s in zip(normal, normal_scores):
        amap[y, x] = s
    return [amap[None]], [lesion[None]], [np.ones((1, 4, 4), dtype=bool)]


def test_pro_curve_and_score_by_hand():
    # A = 0.9, 0.9, 0.5, 0.1; B = 0.7, 0.2; normal = 0.8, 0.6, 0.3 and seven 0.0.
    # threshold: overlap A, B -> PRO ; FPR
    #   0.9: 2/4, 0/2 -> 0.25 ; 0.0      0.8: -> 0.25 ; 0.1      0.7: 2/4, 1/2 -> 0.5 ; 0.1
    #   0.6: -> 0.5 ; 0.2                0.5: 3/4, 1/2 -> 0.625 ; 0.2   0.3: -> 0.625 ; 0.3
    #   0.2: 3/4, 2/2 -> 0.875 ; 0.3     0.1: 1, 1 -> 1 ; 0.3           0.0: -> 1 ; 1.0
    maps, les, org = _pro_example([0.9, 0.9, 0.5, 0.1], [0.7, 0.2], [0.8, 0.6, 0.3] + [0.0] * 7)
    fpr, pro = pro_curve(maps, les, org)
    np.testing.assert_allclose(fpr, [0, 0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 1.0])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.5, 0.5, 0.625, 0.625, 0.875, 1.0, 1.0])
    # Area for FPR in [0, 0.3]: 0.1*0.25 + 0.1*0.5 + 0.1*0.625 = 0.1375 (vertical steps add nothing);
    # normalised by 0.3 -> 0.458333...
    assert pro_score(maps, les, org) == pytest.approx(0.1375 / 0.3)
    # Limit 0.25 falls inside the horizontal 0.2..0.3 step: 0.025 + 0.05 + 0.05*0.625 = 0.10625; / 0.25 = 0.425.
    assert pro_score(maps, les, org, fpr_limit=0.25) == pytest.approx(0.425)


def test_pro_interpolates_a_diagonal_segment_at_the_limit():
    # A normal pixel tied with an A pixel at 0.5 makes a diagonal step.
    # A = 0.9, 0.9, 0.5, 0.1; B = 0.7, 0.2; normal = 0.8, 0.6, 0.5 and seven 0.0.
    # Curve: (0,0) (0,0.25) (0.1,0.25) (0.1,0.5) (0.2,0.5) (0.3,0.625) (0.3,0.875) (0.3,1) (1,1).
    # Limit 0.25: PRO interpolated on the diagonal (0.2,0.5)-(0.3,0.625) = 0.5625.
    #   area = 0.1*0.25 + 0.1*0.5 + 0.05*(0.5+0.5625)/2 = 0.025 + 0.05 + 0.0265625 = 0.1015625; / 0.25 = 0.40625
    # Limit 0.3: area = 0.025 + 0.05 + 0.1*(0.5+0.625)/2 = 0.13125; / 0.3 = 0.4375
    maps, les, org = _pro_example([0.9, 0.9, 0.5, 0.1], [0.7, 0.2], [0.8, 0.6, 0.5] + [0.0] * 7)
    assert pro_score(maps, les, org, fpr_limit=0.25) == pytest.approx(0.40625)
    assert pro_score(maps, les, org) == pytest.approx(0.4375)


def test_pro_weights_regions_equally_not_pixels():
    # Detecting only the small region B (2 px) gives PRO 0.5 at FPR 0, like detecting only the big region A would:
    # per-region averaging. Pixel-weighted overlap would be 2/6.
    maps, les, org = _pro_example([0.0] * 4, [0.9, 0.9], [0.0] * 10)
    fpr, pro = pro_curve(maps, les, org)
    assert fpr[1] == 0.0 and pro[1] == pytest.approx(0.5)


def test_pro_regions_are_per_axial_slice():
    # The same pixel lesioned in two adjacent slices is two regions (2D components), not one 3D blob.
    amap = np.zeros((2, 3, 3))
    lesion = np.zeros((2, 3, 3), dtype=bool)
    lesion[:, 1, 1] = True
    amap[0, 1, 1] = 1.0  # only the region in slice 0 is found
    fpr, pro = pro_curve([amap], [lesion], [np.ones_like(lesion)])
    assert pro[1] == pytest.approx(0.5)
    assert anomaly_metrics([amap], [lesion], [np.ones_like(lesion)], 0.5)["n_regions"] == 2


def test_pro_without_lesions_is_nan():
    maps, les, org = _as_case([[0.3, 0.2]], [[0, 0]])
    assert math.isnan(pro_score(maps, les, org))


# ---------------------------------------------------------------- Dice and normalisation
def test_dice_pools_voxels_over_cases_with_dataset_scale():
    # Case 1: map max 2.0 (the dataset max); at threshold 0.5 predicted = voxels with map >= 1.0.
    m1 = np.array([[[2.0, 1.0, 0.2, 0.0]]])
    l1 = np.array([[[1, 0, 1, 0]]], dtype=bool)
    # Case 2: map max 0.8 -> normalised by the dataset max 2.0 gives 0.4 < 0.5: nothing predicted. A per-case
    # normalisation would predict its 0.8 voxel.
    m2 = np.array([[[0.8, 0.0]]])
    l2 = np.array([[[0, 0]]], dtype=bool)
    assert dataset_max([m1, m2]) == 2.0
    # Predicted {m1[0], m1[1]}, truth {m1[0], m1[2]}: intersection 1 -> Dice = 2*1 / (2 + 2) = 0.5.
    assert dice_at_threshold([m1, m2], [l1, l2], 0.5, scale=2.0) == pytest.approx(0.5)
    assert dice_at_threshold([m2], [l2], 0.5, scale=0.8) == 0.0  # false positive only
    assert dice_at_threshold([m2], [l2], 0.5, scale=2.0) == 1.0  # both empty


def test_binary_mask_of_zero_map_is_empty():
    assert not binary_mask(np.zeros((2, 2, 2)), 0.0, 0.5).any()


def test_anomaly_metrics_summary_keys_and_counts():
    maps, les, org = _pro_example([0.9, 0.9, 0.5, 0.1], [0.7, 0.2], [0.8, 0.6, 0.3] + [0.0] * 7)
    out = anomaly_metrics(maps, les, org, 0.5)
    assert out["pro"] == pytest.approx(0.1375 / 0.3)
    assert out["n_regions"] == 2 and out["n_cases"] == 1 and out["n_slices"] == 1
    assert math.isnan(out["image_auroc"])  # one slice, one class
    # pixel AUROC by hand: 6 lesion x 10 normal pairs. Lesion 0.9 (x2) beat all 10; 0.7 beats 9 (all but 0.8);
    # 0.5 beats 8; 0.2 beats 7; 0.1 beats 7 -> (20 + 9 + 8 + 7 + 7) / 60 = 51/60.
    assert out["pixel_auroc"] == pytest.approx(51 / 60)
    # Dice at 0.5 with scale 0.9: predicted = scores >= 0.45: A 0.9,0.9,0.5; B 0.7; normal 0.8,0.6 -> 6 voxels,
    # 4 of them lesion; 6 lesion voxels -> 2*4 / (6 + 6) = 2/3.
    assert out["dice"] == pytest.approx(2 / 3)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="one shape"):
        pixel_auroc([np.zeros((1, 2, 2))], [np.zeros((1, 2, 3), bool)], [np.ones((1, 2, 2), bool)])
