"""Dice and per-organ Dice (paper 4.1.3)."""

import math

import numpy as np
import pytest

from meddiff import labels
from meddiff.metrics.segmentation import dice, mean_dice, organ_dice


def test_dice_of_known_masks():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[:2] = True  # 32 voxels
    b[1:3] = True  # 32 voxels, 16 shared
    assert dice(a, b) == pytest.approx(2 * 16 / 64)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))


def test_organ_dice_uses_label_groups_and_nan_for_absent_organs():
    ref = np.zeros((10, 10, 10), np.int16)
    pred = np.zeros_like(ref)
    left, right = labels.class_index()["kidney_left"], labels.class_index()["kidney_right"]
    liver = labels.class_index()["liver"]
    ref[0:4, 0:5] = left  # 200 voxels of kidney
    pred[0:4, 0:5] = right  # left/right swapped: still the kidney group
    ref[5:10] = liver  # 500 voxels of liver
    pred[5:10, 0:5] = liver  # half of it found: Dice = 2*250/(500+250)
    pred[0, 9, 9] = labels.class_index()["spleen"]  # spleen predicted but absent from the reference

    out = organ_dice(ref, pred, "abdomen")
    assert list(out) == list(labels.DICE_ORGANS["abdomen"])
    assert out["kidney"] == pytest.approx(1.0)
    assert out["liver"] == pytest.approx(500 / 750)
    assert math.isnan(out["spleen"]) and math.isnan(out["colon"])
    assert mean_dice(out) == pytest.approx((1.0 + 500 / 750) / 2)


def test_organ_dice_rejects_unknown_region():
    with pytest.raises(ValueError, match="region"):
        organ_dice(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "pelvis")
