"""DiffPIR's super-resolution data step (paper eq. 12): H and Hᵀ are adjoints, the step is the exact minimiser,
an oracle prior is a fixed point, rho -> 0 gives data consistency."""

import numpy as np
import pytest
import torch

from meddiff.data.thick_slices import slab_average, slab_average_adjoint
from meddiff.errors import ConfigError, GeometryError
from meddiff.tasks.sr_data_step import slab_mean, slab_mean_adjoint, sr_data_step

CASES = [(5, 0, 20), (5, 3, 26), (3, 1, 11), (4, 2, 13), (1, 0, 6)]  # factor, offset, thin depth


def _rand(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("factor, offset, depth", CASES)
def test_adjoint_identity(factor, offset, depth):
    x = _rand((2, 1, depth, 3, 4), 0)
    hx = slab_mean(x, factor, offset)
    y = _rand(hx.shape, 1)
    hty = slab_mean_adjoint(y, factor, depth, offset)
    assert torch.isclose((hx * y).sum(), (x * hty).sum(), rtol=1e-12)
    torch.testing.assert_close(slab_mean(hty, factor, offset), y / factor)  # H Hᵀ = I / factor


@pytest.mark.parametrize("factor, offset, depth", CASES)
def test_torch_operators_equal_the_numpy_ones(factor, offset, depth):
    x = _rand((1, 1, depth, 3, 4), 2)
    y = slab_mean(x, factor, offset)
    np.testing.assert_allclose(y[0, 0].numpy(), slab_average(x[0, 0].numpy(), factor, offset), rtol=1e-12)
    back = slab_mean_adjoint(y, factor, depth, offset)[0, 0].numpy()
    np.testing.assert_allclose(back, slab_average_adjoint(y[0, 0].numpy(), factor, depth, offset), rtol=1e-12)


def _dense_h(factor: int, offset: int, depth: int) -> np.ndarray:
    """H as a (Z', Z) matrix acting on one z column, built from its definition."""
    rows = (depth - offset) // factor
    h = np.zeros((rows, depth))
    for k in range(rows):
        h[k, offset + factor * k : offset + factor * (k + 1)] = 1.0 / factor
    return h


@pytest.mark.parametrize("factor, offset, depth", CASES)
@pytest.mark.parametrize("rho", [0.0, 0.05, 1.0, 30.0])
def test_step_is_the_exact_minimiser(factor, offset, depth, rho):
    z = _rand((1, 1, depth, 2, 3), 3)
    y = _rand((1, 1, (depth - offset) // factor, 2, 3), 4)
    x = sr_data_step(z, y, rho, factor, offset)
    # normal equations (HᵀH + rho I) x = Hᵀy + rho z, solved densely column by column
    h = _dense_h(factor, offset, depth)
    zc, yc = z[0, 0].reshape(depth, -1).numpy(), y[0, 0].reshape(h.shape[0], -1).numpy()
    a = h.T @ h + rho * np.eye(depth)
    expected, *_ = np.linalg.lstsq(a, h.T @ yc + rho * zc, rcond=None)
    if rho == 0:  # singular: compare on what the objective determines, H x = y
        np.testing.assert_allclose(h @ x[0, 0].reshape(depth, -1).numpy(), yc, atol=1e-12)
    else:
        np.testing.assert_allclose(x[0, 0].reshape(depth, -1).numpy(), expected, atol=1e-10)
    # and the gradient of the objective vanishes there
    xr = x.clone().requires_grad_(True)
    objective = ((y - slab_mean(xr, factor, offset)) ** 2).sum() + rho * ((xr - z) ** 2).sum()
    objective.backward()
    assert xr.grad.abs().max() < 1e-10


def test_oracle_prior_is_a_fixed_point():
    truth = _rand((1, 1, 23, 5, 5), 5)
    y = slab_mean(truth, 5, 3)
    for rho in (0.0, 0.3, 10.0):
        torch.testing.assert_close(sr_data_step(truth, y, rho, 5, 3), truth, rtol=0, atol=1e-12)


def test_small_rho_gives_data_consistency_and_leaves_uncovered_slices_alone():
    z = _rand((1, 1, 24, 4, 4), 6)
    y = _rand((1, 1, 4, 4, 4), 7)  # 24 thin slices, offset 3: slabs cover 3..22
    for rho in (0.0, 1e-9):
        x = sr_data_step(z, y, rho, 5, 3)
        torch.testing.assert_close(slab_mean(x, 5, 3), y, rtol=0, atol=1e-7)
        torch.testing.assert_close(x[:, :, :3], z[:, :, :3], rtol=0, atol=0)
        torch.testing.assert_close(x[:, :, 23:], z[:, :, 23:], rtol=0, atol=0)
    # H x moves from H z towards y by 1 / (1 + factor rho)
    rho = 0.4
    x = sr_data_step(z, y, rho, 5, 3)
    hz = slab_mean(z, 5, 3)
    torch.testing.assert_close(slab_mean(x, 5, 3), hz + (y - hz) / (1 + 5 * rho))


def test_printed_eq12_with_nearest_upsampling_is_the_step_at_rho_over_factor():
    """Eq. 12 read with Hᵀ = nearest-neighbour upsampling (DiffPIR's 'cubic' SR mode) equals the exact step
    at rho_t / factor (docstring of sr_data_step)."""
    z = _rand((1, 1, 20, 3, 3), 8)
    y = _rand((1, 1, 4, 3, 3), 9)
    rho_t = 0.7
    eq12 = z + torch.repeat_interleave(y - slab_mean(z, 5), 5, dim=2) / (1 + rho_t)
    torch.testing.assert_close(sr_data_step(z, y, rho_t / 5, 5), eq12)


def test_keeps_dtype_and_device_of_the_estimate():
    z = torch.zeros((1, 1, 10, 2, 2), dtype=torch.float32)
    y = torch.ones((1, 1, 2, 2, 2), dtype=torch.float64)
    x = sr_data_step(z, y, 0.5, 5)
    assert x.dtype == torch.float32 and x.shape == z.shape


def test_bad_inputs():
    z = torch.zeros((1, 1, 10, 2, 2))
    with pytest.raises(ConfigError, match="rho"):
        sr_data_step(z, torch.zeros((1, 1, 2, 2, 2)), -1.0, 5)
    with pytest.raises(ConfigError, match="rho"):
        sr_data_step(z, torch.zeros((1, 1, 2, 2, 2)), float("nan"), 5)
    with pytest.raises(GeometryError, match="3 slices.*2 whole slabs"):
        sr_data_step(z, torch.zeros((1, 1, 3, 2, 2)), 0.5, 5)
    with pytest.raises(GeometryError, match="outside the z axis"):
        sr_data_step(z, torch.zeros((1, 1, 2, 3, 2)), 0.5, 5)
    with pytest.raises(GeometryError, match=r"\(B, C, Z, Y, X\)"):
        sr_data_step(z[0], torch.zeros((1, 2, 2, 2)), 0.5, 5)
    with pytest.raises(GeometryError, match="does not match"):
        slab_mean_adjoint(torch.zeros((1, 1, 3, 2, 2)), 5, 10)
