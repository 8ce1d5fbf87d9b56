"""FID, MMD and the LPIPS-style distance."""

import math

import numpy as np
import pytest

from meddiff.errors import GeometryError
from meddiff.metrics.distribution import (
    feature_distribution_scores,
    fid,
    mmd,
    paired_perceptual_distance,
    perceptual_distance,
    perceptual_name,
)
from meddiff.metrics.features import load_feature_extractor


@pytest.fixture(scope="module")
def extractor():
    return load_feature_extractor(None)


def _feats(n=40, f=16, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, f)) + shift


def test_fid_identical_is_zero_and_grows_with_shift():
    a = _feats()
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    small, large = fid(a, _feats(shift=0.5, seed=1)), fid(a, _feats(shift=2.0, seed=1))
    assert 0 < small < large
    # mean shift of 2 in each of 16 dims contributes |mu diff|^2 = 64 on top of the sampling noise
    assert large == pytest.approx(64, rel=0.3)


def test_fid_with_fewer_samples_than_features_and_degenerate_sets():
    a, b = _feats(n=16, f=128), _feats(n=16, f=128, seed=1, shift=1.0)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-4)
    assert fid(a, b) > fid(a, _feats(n=16, f=128, seed=1))
    assert math.isnan(fid(a[:1], b))


def test_mmd_identical_zero_shifted_positive_and_unequal_sizes():
    a = _feats()
    assert mmd(a, a) == pytest.approx(0.0, abs=1e-12)
    near, far = mmd(a, _feats(n=30, seed=1, shift=0.3)), mmd(a, _feats(n=30, seed=1, shift=3.0))
    assert 0 < near < far
    assert mmd(a, _feats(n=30, seed=1, shift=3.0), bandwidth=1.0) > 0


def test_perceptual_distance_zero_for_identical_and_grows_with_noise(extractor):
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    v = gaussian_filter(rng.uniform(-1, 1, (32, 32, 32)), 2).astype(np.float32)
    v /= np.abs(v).max()
    d = [perceptual_distance(extractor, v, v + rng.normal(0, s, v.shape).astype(np.float32)) for s in (0.02, 0.2, 1.0)]
    assert perceptual_distance(extractor, v, v) == pytest.approx(0.0, abs=1e-10)
    assert 0 < d[0] < d[1] < d[2] <= 4
    assert paired_perceptual_distance(extractor, [v, v], [v, v]) == pytest.approx(0.0, abs=1e-10)
    assert "LPIPS-style" in perceptual_name(extractor) and extractor.name in perceptual_name(extractor)
    with pytest.raises(GeometryError):
        perceptual_distance(extractor, v, v[:-1])


def test_feature_distribution_scores_on_volumes(extractor):
    rng = np.random.default_rng(0)
    real = [rng.uniform(-1, 1, (40, 40, 40)).astype(np.float32) for _ in range(2)]
    scores_same = feature_distribution_scores(extractor, real, real, crop_size=16, crops_per_volume=4)
    smooth = [np.clip(np.round(r * 2) / 2, -1, 1) for r in real]  # a visibly different texture
    scores_diff = feature_distribution_scores(extractor, real, smooth, crop_size=16, crops_per_volume=4)
    assert scores_same["feature_samples_real"] == 8
    assert scores_same["FID"] == pytest.approx(0.0, abs=1e-4)
    assert scores_same["MMD"] == pytest.approx(0.0, abs=1e-9)
    assert scores_diff["FID"] > scores_same["FID"] and scores_diff["MMD"] > 0
