"""3D position conditioning (paper 3.3, eqs. 5-6)."""

from __future__ import annotations

import math

import pytest
import torch

from meddiff.models.position_encoding import crop_coordinates, position_channels, position_encoding, position_input

VOLUME = (20, 24, 18)


def whole():
    return crop_coordinates(VOLUME, (0, 0, 0), VOLUME, VOLUME)


def test_whole_volume_coordinates_run_from_minus_one_to_one_along_their_axis():
    coords = whole()
    assert coords.shape == (3, *VOLUME) and coords.dtype == torch.float32
    for axis, n in enumerate(VOLUME):
        line = coords[axis].movedim(axis, 0)
        assert torch.allclose(line[:, 0, 0], torch.linspace(-1, 1, n))
        assert torch.equal(line, line[:, :1, :1].expand_as(line))  # constant across the other axes
    assert torch.equal(coords[:, 0, 0, 0], torch.tensor([-1.0, -1.0, -1.0]))  # upper left back corner
    assert torch.equal(coords[:, -1, -1, -1], torch.tensor([1.0, 1.0, 1.0]))


@pytest.mark.parametrize("start", [(0, 0, 0), (3, 5, 1), (4, 8, 2)])
def test_coordinates_of_a_crop_are_the_slice_of_the_whole_volume_coordinates(start):
    size = (16, 16, 16)
    crop = crop_coordinates(VOLUME, start, size, size)
    box = (slice(None),) + tuple(slice(s, s + k) for s, k in zip(start, size))
    assert torch.allclose(crop, whole()[box], atol=1e-6)


def test_resized_crop_keeps_its_end_points():
    crop = crop_coordinates(VOLUME, (2, 4, 0), (16, 20, 18), (8, 8, 8))
    assert crop.shape == (3, 8, 8, 8)
    assert torch.allclose(crop[:, 0, 0, 0], whole()[:, 2, 4, 0])
    assert torch.allclose(crop[:, -1, -1, -1], whole()[:, 17, 23, 17])


def test_position_encoding_is_eq_6():
    coords = torch.rand(2, 3, 4, 5, 6) * 2 - 1
    levels = 3
    encoded = position_encoding(coords, levels)
    assert encoded.shape == (2, 6 * levels, 4, 5, 6)
    for level in range(levels):
        scaled = (2**level) * math.pi * coords
        assert torch.allclose(encoded[:, 6 * level : 6 * level + 3], torch.sin(scaled), atol=1e-6)
        assert torch.allclose(encoded[:, 6 * level + 3 : 6 * level + 6], torch.cos(scaled), atol=1e-6)


def test_position_input_per_mode():
    coords = torch.rand(1, 3, 4, 4, 4)
    assert position_input(coords, "none", 4) is None and position_channels("none", 4) == 0
    assert torch.equal(position_input(coords, "coords", 4), coords) and position_channels("coords", 4) == 3
    embedded = position_input(coords, "embedding", 4)
    assert embedded.shape[1] == position_channels("embedding", 4) == 3 + 24
    assert torch.equal(embedded[:, :3], coords)
    with pytest.raises(ValueError, match="unknown position mode"):
        position_input(coords, "sinusoid", 4)
