"""Multi-level training inputs (paper 3.2): levels, boxes, whole-volume coordinates, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meddiff.diffusion.multilevel import sample_training_input
from meddiff.models.position_encoding import crop_coordinates

P = (16, 16, 16)
ONLY = {0: (1, 0, 0), 1: (0, 1, 0), 2: (0, 0, 1)}


def volume(shape=(40, 36, 28), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, shape).astype(np.float32)
    label = rng.integers(0, 119, shape).astype(np.uint8)
    return image, label


def draw(image, label, level=None, seed=0, multilevel=True, patch=P):
    probabilities = ONLY[level] if level is not None else (1 / 3, 1 / 3, 1 / 3)
    return sample_training_input(
        image,
        label,
        patch_size=patch,
        multilevel=multilevel,
        level_probabilities=probabilities,
        rng=np.random.default_rng(seed),
    )


def whole_volume_coordinates(shape):
    return crop_coordinates(shape, (0, 0, 0), shape, shape)


def test_shapes_and_dtypes():
    image, label = volume()
    for level in (0, 1, 2):
        s = draw(image, label, level)
        assert s.level == level
        assert s.x0.shape == (1, *P) and s.x0.dtype == torch.float32
        assert s.anatomy.shape == P and s.anatomy.dtype == torch.int64
        assert s.coords.shape == (3, *P) and s.coords.dtype == torch.float32


def test_image_level_coordinates_span_minus_one_to_one():
    image, label = volume()
    s = draw(image, label, level=0)
    assert s.start == (0, 0, 0) and s.size == image.shape
    assert torch.allclose(s.coords, crop_coordinates(image.shape, (0, 0, 0), image.shape, P))
    for axis in range(3):
        assert s.coords[axis].min().item() == -1.0 and s.coords[axis].max().item() == 1.0
        # channel k runs from -1 to 1 along array axis k and is constant along the others
        line = s.coords[axis].movedim(axis, 0)[:, 0, 0]
        assert torch.allclose(line, torch.linspace(-1, 1, P[axis]))
        assert torch.allclose(s.coords[axis].movedim(axis, 0), line[:, None, None].expand(P))


def test_patch_level_is_the_exact_slice_of_the_volume_and_of_its_coordinates():
    image, label = volume()
    whole = whole_volume_coordinates(image.shape)
    for seed in range(5):
        s = draw(image, label, level=2, seed=seed)
        box = tuple(slice(a, a + p) for a, p in zip(s.start, P))
        assert np.array_equal(s.x0[0].numpy(), image[box])
        assert np.array_equal(s.anatomy.numpy(), label[box].astype(np.int64))
        assert torch.allclose(s.coords, whole[(slice(None),) + box], atol=1e-6)
        assert s.coords.min() > -1 - 1e-6 and s.coords.max() < 1 + 1e-6
        assert (s.coords.amax(dim=(1, 2, 3)) - s.coords.amin(dim=(1, 2, 3)) < 2).all()  # a strict sub-range


def test_double_patch_level_covers_twice_the_patch_clipped_to_the_volume():
    image, label = volume(shape=(40, 36, 28))
    whole = whole_volume_coordinates(image.shape)
    s = draw(image, label, level=1, seed=3)
    assert s.size == (32, 32, 28)  # 2 P, clipped to the 28-voxel axis
    first, last = s.coords[:, 0, 0, 0], s.coords[:, -1, -1, -1]
    assert torch.allclose(first, whole[:, s.start[0], s.start[1], s.start[2]], atol=1e-6)
    end = [a + k - 1 for a, k in zip(s.start, s.size)]
    assert torch.allclose(last, whole[:, end[0], end[1], end[2]], atol=1e-6)


@pytest.mark.parametrize("level", [0, 1])
def test_resized_anatomy_image_and_coordinates_share_one_grid(level):
    # label = z index, image = linear ramp in z: the resized label must be the nearest volume index to the
    # position the coordinates name, and the image the ramp at that position.
    shape = (50, 20, 20)
    z = np.arange(shape[0], dtype=np.float32)[:, None, None] * np.ones(shape, np.float32)
    image = -1 + 2 * z / (shape[0] - 1)
    s = draw(image, z.astype(np.int64), level=level, seed=1)
    position = (s.coords[0].numpy() + 1) / 2 * (shape[0] - 1)
    assert np.abs(s.anatomy.numpy() - position).max() <= 0.5 + 1e-4
    interior = (slice(2, -2), slice(None), slice(None))  # anti-aliasing blurs the ends of the ramp
    assert np.abs(s.x0[0].numpy()[interior] - s.coords[0].numpy()[interior]).max() < 1e-4


def test_patch_level_baseline_only_uses_patch_crops():
    image, label = volume()
    levels = {draw(image, label, seed=seed, multilevel=False).level for seed in range(30)}
    assert levels == {2}


def test_multilevel_draws_every_level():
    image, label = volume()
    levels = [draw(image, label, seed=seed).level for seed in range(60)]
    assert set(levels) == {0, 1, 2}


def test_same_rng_state_gives_the_same_sample():
    image, label = volume()
    a, b = draw(image, label, seed=7), draw(image, label, seed=7)
    assert a.level == b.level and a.start == b.start
    assert torch.equal(a.x0, b.x0) and torch.equal(a.anatomy, b.anatomy) and torch.equal(a.coords, b.coords)


def test_axes_shorter_than_the_patch_are_padded_with_air_background_and_extrapolated_coordinates():
    image, label = volume(shape=(10, 30, 30))
    label = np.maximum(label, 1)  # no background inside the volume, so padding is recognisable
    whole = whole_volume_coordinates(image.shape)
    for seed in range(4):
        s = draw(image, label, level=2, seed=seed)
        z0 = -s.start[0]
        assert s.start[0] <= 0 and z0 + 10 <= P[0]
        inside = slice(z0, z0 + 10)
        box_yx = tuple(slice(a, a + p) for a, p in zip(s.start[1:], P[1:]))
        assert np.array_equal(s.x0[0, inside].numpy(), image[(slice(None),) + box_yx])
        outside = np.ones(P[0], bool)
        outside[inside] = False
        assert (s.x0[0, outside] == -1).all() and (s.anatomy[outside] == 0).all()
        assert torch.allclose(s.coords[0, inside], whole[0][(slice(None),) + box_yx], atol=1e-6)
        if z0 > 0:
            assert (s.coords[0, :z0] < -1).all()
        if z0 + 10 < P[0]:
            assert (s.coords[0, z0 + 10 :] > 1).all()


def test_memmapped_input_gives_the_same_sample(tmp_path):
    image, label = volume()
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "label.npy", label)
    mapped = draw(
        np.load(tmp_path / "image.npy", mmap_mode="r"), np.load(tmp_path / "label.npy", mmap_mode="r"), seed=5
    )
    loaded = draw(image, label, seed=5)
    assert torch.equal(mapped.x0, loaded.x0) and torch.equal(mapped.anatomy, loaded.anatomy)


def test_rejects_mismatched_image_and_label():
    image, label = volume()
    with pytest.raises(ValueError, match="same shape"):
        draw(image, label[:-1])
