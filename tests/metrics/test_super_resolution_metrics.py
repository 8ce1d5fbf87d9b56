"""RPLHR-CT's super-resolution evaluation: [0, 1] scale, trimmed ends, 3D PSNR (peak 1), mean axial SSIM."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from meddiff.config import Window
from meddiff.errors import GeometryError
from meddiff.metrics.super_resolution import (
    RPLHR_TRIM,
    axial_ssim_maps,
    sr_psnr,
    sr_scores,
    sr_ssim,
    to_unit_interval,
)


def _volume(seed: int, shape=(20, 32, 32)) -> np.ndarray:
    """A smooth [0.2, 0.8] volume with some texture."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    return 0.5 + 0.2 * np.sin(6 * x + 2 * z) * np.cos(5 * y) + 0.05 * rng.uniform(-1, 1, shape)


def test_identical_volumes():
    v = _volume(0)
    assert sr_psnr(v, v) == math.inf
    assert sr_ssim(v, v) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sigma", [0.1, 0.01, 0.003])
def test_psnr_of_known_error_is_analytic(sigma):
    v = _volume(1)
    signs = np.random.default_rng(2).choice([-1.0, 1.0], size=v.shape)
    assert sr_psnr(v + sigma * signs, v) == pytest.approx(-20 * math.log10(sigma), abs=1e-9)  # MSE = sigma² exactly


def test_only_the_untrimmed_slices_count():
    v = _volume(3)
    changed = v.copy()
    changed[:RPLHR_TRIM] = 0.0
    changed[-RPLHR_TRIM:] = 1.0
    assert sr_psnr(changed, v) == math.inf
    assert sr_ssim(changed, v) == pytest.approx(1.0, abs=1e-12)
    changed[RPLHR_TRIM] += 0.05  # the first scored slice
    assert sr_psnr(changed, v) < 100
    assert sr_ssim(changed, v) < 1.0
    assert sr_psnr(changed, v, trim=RPLHR_TRIM + 1) == math.inf


def test_ssim_is_the_mean_of_per_slice_means():
    a, b = _volume(4), _volume(5)
    manual = np.mean([axial_ssim_maps(a[k : k + 1], b[k : k + 1]).mean() for k in range(RPLHR_TRIM, 20 - RPLHR_TRIM)])
    assert sr_ssim(a, b) == pytest.approx(manual, rel=1e-12)


def _rplhr_reference_ssim(img1: np.ndarray, img2: np.ndarray) -> float:
    """RPLHR-CT's non_model._ssim on one slice, re-derived: Gaussian 11 / 1.5, conv2d zero padding, full mean."""
    g = torch.exp(-((torch.arange(11.0, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] @ g[None, :])[None, None]
    x, y = (torch.as_tensor(i, dtype=torch.float64)[None, None] for i in (img1, img2))
    conv = lambda t: F.conv2d(t, w, padding=5)  # noqa: E731
    mu1, mu2 = conv(x), conv(y)
    s1, s2, s12 = conv(x * x) - mu1**2, conv(y * y) - mu2**2, conv(x * y) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return float(m.mean())


def test_ssim_matches_rplhr_ct_formulation_borders_included():
    a, b = _volume(6, (12, 40, 36)), _volume(7, (12, 40, 36))
    expected = np.mean([_rplhr_reference_ssim(b[k], a[k]) for k in range(2, 10)])
    assert sr_ssim(a, b, trim=2) == pytest.approx(expected, rel=1e-10)


def test_ssim_map_interior_equals_scikit_image():
    a, b = _volume(8, (3, 40, 40)), _volume(9, (3, 40, 40))
    maps = axial_ssim_maps(a, b)
    for k in range(3):
        _, ref = structural_similarity(
            a[k], b[k], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True
        )
        np.testing.assert_allclose(maps[k, 5:-5, 5:-5], ref[5:-5, 5:-5], rtol=1e-9, atol=1e-12)


def test_hu_volumes_are_scored_on_the_window_mapped_to_unit_interval():
    window = Window(level=-500.0, width=2000.0)  # [-1500, 500] HU
    np.testing.assert_allclose(
        to_unit_interval(np.array([-2000.0, -1500.0, -500.0, 500.0, 900.0]), window), [0.0, 0.0, 0.5, 1.0, 1.0]
    )
    target = -1500.0 + 2000.0 * _volume(10)
    pred = target + 20.0  # 20 HU = 0.01 of the window
    scores = sr_scores(pred, target, window=window)
    assert scores.psnr == pytest.approx(40.0, abs=1e-9)
    assert 0.9 < scores.ssim < 1.0


def test_bad_shapes():
    v = _volume(11)
    with pytest.raises(GeometryError, match="one shape"):
        sr_psnr(v, v[:-1])
    with pytest.raises(GeometryError, match="cannot drop 10 slices"):
        sr_ssim(v, v, trim=10)
    with pytest.raises(GeometryError, match=r"\(Z, Y, X\)"):
        sr_psnr(v[0], v[0], trim=0)
