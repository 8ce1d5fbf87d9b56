"""HU histogram distance (Wasserstein-1 in HU)."""

import math

import numpy as np
import pytest

from meddiff import labels
from meddiff.errors import GeometryError
from meddiff.metrics.histogram import hu_histogram_distance, organ_hu_distances


def test_shift_by_50_hu_is_distance_50():
    real = np.random.default_rng(0).uniform(-900, 1500, size=(20, 30, 30))
    assert hu_histogram_distance(real, real + 50) == pytest.approx(50.0, abs=0.5)
    assert hu_histogram_distance(real, real) == pytest.approx(0.0)


def test_mask_restricts_the_comparison():
    real = np.full((10, 10, 10), 40.0)
    fake = real.copy()
    fake[5:] += 200  # only the upper half differs
    lower = np.zeros(real.shape, bool)
    lower[:5] = True
    assert hu_histogram_distance(real, fake, lower) == pytest.approx(0.0)
    assert hu_histogram_distance(real, fake) == pytest.approx(100.0, abs=1)
    assert math.isnan(hu_histogram_distance(real, fake, np.zeros(real.shape, bool)))
    with pytest.raises(GeometryError):
        hu_histogram_distance(real, fake[:9], lower)


def test_out_of_range_values_are_kept_not_dropped():
    real = np.full((5, 5, 5), 3000.0)  # beyond the last bin edge (2000)
    fake = np.full((5, 5, 5), 0.0)
    assert hu_histogram_distance(real, fake) > 1900


def test_organ_hu_distances_per_organ():
    lab = np.zeros((8, 8, 8), np.int16)
    lab[:4] = labels.class_index()["lung_upper_lobe_left"]
    lab[4:] = labels.class_index()["heart"]
    real = np.where(lab == labels.class_index()["heart"], 40.0, -800.0)
    fake = real + np.where(lab == labels.class_index()["heart"], 100.0, 0.0)
    out = organ_hu_distances(real, fake, lab, "chest")
    assert out["lung"] == pytest.approx(0.0)
    assert out["heart"] == pytest.approx(100.0, abs=1)
    assert math.isnan(out["aorta"])
    assert out["body"] == pytest.approx(50.0, abs=1)
