"""Whole-body region split from mask landmarks."""

from __future__ import annotations

import numpy as np

from meddiff.data.regions import region_extents
from meddiff.labels import BODY, class_index

SPACING = (4.0, 4.0, 4.0)  # 2.5 mm margin -> 2 voxels


def _whole_body(detailed: bool) -> np.ndarray:
    """(Z, Y, X) labels of a stick figure, z index 0 = feet: legs z < 100, torso 100..380, head above 380.

    ``detailed`` adds liver and hips (TotalSegmentator-like); without them it resembles a threshold mask.
    """
    idx = class_index()
    lab = np.zeros((450, 20, 40), np.uint8)
    lab[100:380, 2:18, 5:35] = BODY
    lab[:100, 2:18, 5:17] = BODY  # right leg
    lab[:100, 2:18, 23:35] = BODY  # left leg
    lab[380:, 4:16, 12:28] = BODY  # head and neck
    lab[260:341, 5:15, 7:18] = idx["lung_lower_lobe_right"]
    lab[260:341, 5:15, 22:33] = idx["lung_lower_lobe_left"]
    lab[400:450, 4:16, 12:28] = idx["skull"]
    if detailed:
        lab[220:271, 5:15, 7:20] = idx["liver"]
        lab[90:151, 8:12, 6:15] = idx["hip_right"]
    return lab


def test_landmarks_of_a_totalsegmentator_style_mask():
    ext = region_extents(_whole_body(detailed=True), SPACING, min_extent_mm=40)
    assert ext == {"han": (339, 450), "chest": (258, 343), "abdomen": (88, 273)}


def test_fallback_landmarks_without_liver_and_hips_stop_at_the_legs():
    ext = region_extents(_whole_body(detailed=False), SPACING, min_extent_mm=40)
    assert ext["chest"] == (258, 343)
    assert ext["abdomen"] == (100, 260 + 1 + 20)  # crotch .. lung base + 80 mm
    assert list(ext) == ["han", "chest", "abdomen"]


def test_short_or_headless_neck_is_dropped():
    lab = _whole_body(detailed=True)[:360]  # volume ends 19 slices (76 mm) above the lungs, no skull
    ext = region_extents(lab, SPACING, min_extent_mm=40)
    assert "han" not in ext and "chest" in ext


def test_regions_shorter_than_min_extent_are_dropped():
    lab = _whole_body(detailed=True)
    ext = region_extents(lab, SPACING, min_extent_mm=400)  # chest is 85 slices = 340 mm
    assert "chest" not in ext and "abdomen" in ext


def test_volume_without_landmarks_has_no_regions():
    lab = np.zeros((50, 10, 10), np.uint8)
    lab[:, 2:8, 2:8] = BODY
    assert region_extents(lab, SPACING) == {}
