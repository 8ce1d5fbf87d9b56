"""Lesion inpainting with RePaint and the lesion model (paper 4.4.3, eq. 13, Table 9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_fixtures import BODY, LESION_SEED, LIVER, SAMPLING, make_lesion_cache, save_controlnet, save_foundation

from meddiff.diffusion.repaint import network_calls, repaint_schedule
from meddiff.errors import DatasetMissingError, WeightsMissingError
from meddiff.tasks.lesion_generation import load_lesion_model
from meddiff.tasks.lesion_inpainting import borrow_lesion, inpaint_lesion_crop, run_lesion_inpainting

REPAINT = {"steps": 10, "jump_length": 2, "resamples": 2}


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inpaint")
    return {
        "manifest": make_lesion_cache(root / "data"),
        "controlnet": save_controlnet(root / "controlnet"),
        "foundation": save_foundation(root / "foundation"),
    }


def _healthy(manifest: Path, case: str = "hea0") -> tuple[np.ndarray, np.ndarray]:
    cache = manifest.parent / "cache" / "synthetic" / case
    return np.load(cache / "abdomen_image.npy"), np.load(cache / "abdomen_label.npy")


def test_outside_the_mask_every_voxel_is_the_input(data):
    model = load_lesion_model(data["controlnet"], "cpu")
    forwards = []
    model.network.register_forward_hook(lambda *_: forwards.append(1))
    image, anatomy = _healthy(data["manifest"])
    mask = np.zeros(image.shape, np.uint8)
    mask[7:11, 6:10, 8:12] = 1
    out, calls = inpaint_lesion_crop(model, image, anatomy, mask, "abdomen", **REPAINT, sampling=SAMPLING, seed=0,
                                     device="cpu")  # fmt: skip
    inside = mask > 0
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.array_equal(out[~inside], image[~inside])  # exact, not close
    assert np.abs(out[inside] - image[inside]).min() > 0 and np.isfinite(out).all()
    assert calls == network_calls(repaint_schedule(10, 2, 2)) == 18
    assert len(forwards) == calls  # one batch of all windows per whole-volume ε evaluation


def test_a_borrowed_mask_stays_in_the_organ_under_the_source_lesion():
    source_anatomy = np.full((6, 6, 6), BODY, np.uint8)
    source_anatomy[:, :, :3] = LIVER
    source_lesion = np.zeros((6, 6, 6), np.uint8)
    source_lesion[2:4, 2:4, 1:5] = 2  # half in liver, half in body soft tissue
    anatomy = np.full((8, 8, 8), LIVER, np.uint8)  # larger crop: the source sits in its centre (offset 1)
    anatomy[:, :, 4] = 0
    mask = borrow_lesion(source_lesion, source_anatomy, anatomy)
    expected = np.zeros((8, 8, 8), np.uint8)
    expected[3:5, 3:5, 2:4] = 1  # source x 1..2 (liver) -> 2..3 (liver); source x 3..4 (body) -> 4 (air), 5 (liver)
    np.testing.assert_array_equal(mask, expected)


def test_healthy_test_crops_get_a_same_region_lesion_inpainted(data, tmp_path):
    out = run_lesion_inpainting(data["controlnet"], data["manifest"], tmp_path / "inp", dataset="synthetic", cases=0,
                                **REPAINT, sampling=SAMPLING, device="cpu", seed=LESION_SEED)  # fmt: skip
    # hea2 is a chest crop and there is no chest lesion crop; the lesion crops are not inpainted
    assert sorted(p.name for p in out.iterdir()) == ["synthetic__hea0__abdomen.npz", "synthetic__hea1__abdomen.npz"]
    for case, source, shape in (("hea0", "les0", (18, 16, 20)), ("hea1", "les1", (20, 18, 22))):
        image, anatomy = _healthy(data["manifest"], case)
        with np.load(out / f"synthetic__{case}__abdomen.npz") as f:
            assert str(f["source"]) == f"synthetic/{source}/abdomen"  # k-th healthy crop <- k-th lesion crop
            assert f["inpainted"].shape == f["lesion"].shape == shape
            inside = f["lesion"] > 0
            assert inside.sum() > 0 and (anatomy[inside] == LIVER).all()
            np.testing.assert_array_equal(f["image"], image)
            np.testing.assert_array_equal(f["anatomy"], anatomy)
            assert np.array_equal(f["inpainted"][~inside], image[~inside])
            assert not np.array_equal(f["inpainted"][inside], image[inside])
            assert int(f["network_calls"]) == 18


def test_refusals(data, tmp_path):
    with pytest.raises(WeightsMissingError, match="not a lesion model"):
        run_lesion_inpainting(data["foundation"], data["manifest"], tmp_path / "a", dataset="synthetic", cases=0,
                              **REPAINT, sampling=SAMPLING, device="cpu", seed=0)  # fmt: skip
    with pytest.raises(DatasetMissingError, match="no healthy test crop of 'msd_lung'"):
        run_lesion_inpainting(data["controlnet"], data["manifest"], tmp_path / "b", dataset="msd_lung", cases=0,
                              **REPAINT, sampling=SAMPLING, device="cpu", seed=0)  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
