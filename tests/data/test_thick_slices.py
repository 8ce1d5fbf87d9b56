import numpy as np
import pytest

from meddiff.data.thick_slices import slab_average, slab_average_adjoint, slab_centres
from meddiff.errors import GeometryError


@pytest.mark.parametrize("factor, offset", [(1, 0), (3, 0), (5, 3), (4, 1)])
def test_adjoint_identity(factor, offset):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 4, 5))
    hx = slab_average(x, factor, offset)
    y = rng.normal(size=hx.shape)
    hty = slab_average_adjoint(y, factor, x.shape[0], offset)
    assert np.isclose((hx * y).sum(), (x * hty).sum())
    # H Hᵀ = I / factor
    np.testing.assert_allclose(slab_average(hty, factor, offset), y / factor)


def test_slab_mean_and_centres():
    x = np.arange(10, dtype=float)[:, None, None] * np.ones((1, 2, 2))
    np.testing.assert_allclose(slab_average(x, 3, 1)[:, 0, 0], [2.0, 5.0, 8.0])
    np.testing.assert_allclose(slab_centres(3, 3, 1), [2.0, 5.0, 8.0])


def test_bad_shapes():
    with pytest.raises(GeometryError, match="Z, Y, X"):
        slab_average(np.zeros((4, 4)), 2)
    with pytest.raises(GeometryError, match="no slab"):
        slab_average(np.zeros((2, 4, 4)), 3)
    with pytest.raises(GeometryError, match="does not match"):
        slab_average_adjoint(np.zeros((5, 4, 4)), 3, 9)

