"""Interpolation baselines of Table 7 and the ControlNet condition: thick -> thin grid along z."""

import numpy as np
import pytest

from meddiff.data.thick_slices import slab_average, slab_centres
from meddiff.errors import GeometryError
from meddiff.data.slice_interpolation import bspline_upsample, controlnet_condition, interpolate_z, trilinear_upsample

THIN = 36
FACTOR, OFFSET = 5, 3


def _sampled(f, centres: np.ndarray, shape=(4, 5)) -> tuple[np.ndarray, np.ndarray]:
    """(thick, thin truth) of a volume f(z) * in-plane pattern, thick slices sampled at ``centres``."""
    pattern = 1.0 + np.arange(np.prod(shape), dtype=float).reshape(shape) / 10
    thin = f(np.arange(THIN, dtype=float))[:, None, None] * pattern
    thick = f(centres)[:, None, None] * pattern
    return thick, thin


def test_output_is_on_the_thin_grid():
    centres = slab_centres(FACTOR, 6, OFFSET)
    thick = np.random.default_rng(0).normal(size=(6, 7, 9))
    for up in (trilinear_upsample, bspline_upsample, controlnet_condition):
        out = up(thick, centres, THIN)
        assert out.shape == (THIN, 7, 9) and out.dtype == np.float32


def test_linear_in_z_is_reproduced_exactly_inside_the_covered_range():
    centres = slab_centres(FACTOR, 6, OFFSET)  # 5, 10, ..., 30
    thick, truth = _sampled(lambda z: -800.0 + 37.5 * z, centres)
    # a linear profile averages to its centre value: the thick slices are the real slab means too
    np.testing.assert_allclose(slab_average(truth, FACTOR, OFFSET)[:6], thick)
    out = trilinear_upsample(thick, centres, THIN)
    inside = slice(int(centres[0]), int(centres[-1]) + 1)
    np.testing.assert_allclose(out[inside], truth[inside], rtol=1e-6)


def test_outside_the_covered_range_copies_the_nearest_thick_slice():
    centres = slab_centres(FACTOR, 6, OFFSET)
    thick = np.random.default_rng(1).normal(size=(6, 3, 3))
    for up in (trilinear_upsample, bspline_upsample):
        out = up(thick, centres, THIN)
        np.testing.assert_allclose(
            out[: int(centres[0])], np.broadcast_to(thick[0], (int(centres[0]), 3, 3)), rtol=1e-6
        )
        np.testing.assert_allclose(out[int(centres[-1]) :], np.broadcast_to(thick[-1], (THIN - 30, 3, 3)), rtol=1e-6)


def test_cubic_bspline_reproduces_a_quadratic_better_than_trilinear():
    centres = slab_centres(FACTOR, 6, OFFSET)
    thick, truth = _sampled(lambda z: 0.02 * (z - 17.0) ** 2, centres)
    inside = slice(int(centres[0]), int(centres[-1]) + 1)
    err_linear = np.abs(trilinear_upsample(thick, centres, THIN)[inside] - truth[inside]).max()
    err_cubic = np.abs(bspline_upsample(thick, centres, THIN)[inside] - truth[inside]).max()
    assert err_linear > 0.05
    assert err_cubic < 1e-4 * err_linear


def test_controlnet_condition_is_the_trilinear_upsampling():
    centres = slab_centres(FACTOR, 6, OFFSET)
    thick = np.random.default_rng(2).normal(size=(6, 4, 4))
    np.testing.assert_array_equal(controlnet_condition(thick, centres, THIN), trilinear_upsample(thick, centres, THIN))


def test_rplhr_convention_thick_slice_k_at_thin_5k():
    centres = slab_centres(5, 4, -2)  # thick slice k covers thin 5k-2 .. 5k+2
    np.testing.assert_array_equal(centres, [0, 5, 10, 15])
    thick = np.arange(4, dtype=float)[:, None, None] * np.ones((1, 2, 2))
    out = trilinear_upsample(thick, centres, 16)
    np.testing.assert_allclose(out[::5, 0, 0], [0, 1, 2, 3])
    np.testing.assert_allclose(out[:, 0, 0], np.arange(16) / 5, rtol=1e-6)


def test_bad_inputs():
    thick = np.zeros((3, 2, 2))
    with pytest.raises(GeometryError, match="at least 4 thick slices"):
        bspline_upsample(thick, [0, 5, 10], 12)
    with pytest.raises(GeometryError, match="increase strictly"):
        trilinear_upsample(thick, [0, 5, 5], 12)
    with pytest.raises(GeometryError, match="centres"):
        trilinear_upsample(thick, [0, 5], 12)
    with pytest.raises(GeometryError, match=r"\(Z', Y, X\)"):
        trilinear_upsample(np.zeros((3, 2)), [0, 5, 10], 12)
    with pytest.raises(ValueError, match="degree"):
        interpolate_z(thick, [0, 5, 10], 12, degree=2)
