"""MS-SSIM / SSIM / PSNR wrappers (paper 4.1.3)."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from meddiff.errors import GeometryError
from meddiff.metrics.image_quality import ms_ssim, ms_ssim_settings, paired_ms_ssim, psnr, ssim


def _smooth_volume(shape=(40, 48, 56), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = gaussian_filter(rng.uniform(-1, 1, shape), 2.0)
    return np.clip(v / np.abs(v).max(), -1, 1).astype(np.float32)


def test_ms_ssim_is_one_for_identical_and_falls_with_noise():
    a = _smooth_volume()
    rng = np.random.default_rng(1)
    values = [ms_ssim(a, np.clip(a + rng.normal(0, s, a.shape), -1, 1), data_range=2.0) for s in (0.05, 0.2, 0.5)]
    assert ms_ssim(a, a, data_range=2.0) == pytest.approx(1.0, abs=1e-5)
    assert 1.0 > values[0] > values[1] > values[2]


def test_ms_ssim_settings_shrink_for_demo_sizes_and_match_monai_default_when_large():
    small = ms_ssim_settings((40, 64, 64))
    assert small.scales == 2 and small.kernel_size == 11
    assert sum(small.weights) == pytest.approx(1.0)
    assert ms_ssim_settings((48, 64, 90)).scales == 3
    large = ms_ssim_settings((176, 176, 176))
    assert large.scales == 5 and large.weights == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    tiny = ms_ssim_settings((12, 12, 12))  # not even 2 scales of an 11-voxel window: the window shrinks
    assert tiny.kernel_size < 11
    tiny_volume = _smooth_volume((12, 12, 12))
    assert ms_ssim(tiny_volume, tiny_volume, 2.0) == pytest.approx(1.0, abs=1e-5)


def test_paired_ms_ssim_is_the_mean_over_pairs():
    a, b = _smooth_volume(seed=0), _smooth_volume(seed=1)
    noisy = np.clip(a + np.random.default_rng(2).normal(0, 0.2, a.shape), -1, 1)
    expected = (ms_ssim(a, a, 2.0) + ms_ssim(a, noisy, 2.0)) / 2
    assert paired_ms_ssim([a, a], [a, noisy], 2.0) == pytest.approx(expected)
    assert paired_ms_ssim([a], [b]) < 0.5  # unrelated anatomy scores low
    with pytest.raises(ValueError):
        paired_ms_ssim([a], [a, a])


def test_shape_mismatch_is_a_geometry_error():
    with pytest.raises(GeometryError):
        ms_ssim(np.zeros((40, 40, 40)), np.zeros((40, 40, 41)), 2.0)


def test_ssim_and_psnr_hand_values():
    a = _smooth_volume()
    assert ssim(a, a, 2.0) == pytest.approx(1.0, abs=1e-5)
    assert ssim(a, np.clip(a + 0.3 * np.random.default_rng(0).normal(size=a.shape), -1, 1), 2.0) < 0.9
    # constant offset 0.1 on a range of 2: PSNR = 20 log10(2) - 10 log10(0.01) = 26.0206 dB
    assert psnr(a, a + 0.1, 2.0) == pytest.approx(20 * np.log10(2) + 20, abs=1e-3)
    assert psnr(a, a, 2.0) == float("inf")
    sl = a[20]
    assert ssim(sl, sl, 2.0) == pytest.approx(1.0, abs=1e-5)  # 2-D slices work too
