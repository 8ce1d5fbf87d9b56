"""Lesion generation over the test lesion crops (paper 4.4.2, Table 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_fixtures import LESION_SEED, SAMPLING, make_lesion_cache, save_controlnet, save_foundation, save_mask_concat

from meddiff.errors import DatasetMissingError, WeightsMissingError
from meddiff.models.controlnet import ControlledMedDiff
from meddiff.models.mask_concat import MaskConcatUNet
from meddiff.tasks.lesion_generation import generate_lesion_crop, load_lesion_model, run_lesion_generation


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lesions")
    return {
        "manifest": make_lesion_cache(root / "data"),
        "controlnet": save_controlnet(root / "controlnet"),
        "mask_concat": save_mask_concat(root / "mask_concat"),
        "foundation": save_foundation(root / "foundation"),
    }


def test_both_kinds_of_lesion_model_load(data):
    assert isinstance(load_lesion_model(data["controlnet"], "cpu").network, ControlledMedDiff)
    assert isinstance(load_lesion_model(data["mask_concat"], "cpu").network, MaskConcatUNet)


def test_one_file_per_test_lesion_crop_with_every_model(data, tmp_path):
    rows = {"MedDiff-FM (fine-tune)": data["controlnet"], "Med-DDPM": data["mask_concat"]}
    out = run_lesion_generation(rows, data["manifest"], tmp_path / "gen", dataset="synthetic", cases=0,
                                sampling=SAMPLING, device="cpu", seed=LESION_SEED)  # fmt: skip
    # test crops with a lesion only: not the healthy ones, not the train lesion crop les2
    assert sorted(p.name for p in out.iterdir()) == ["synthetic__les0__abdomen.npz", "synthetic__les1__abdomen.npz"]
    cache = data["manifest"].parent / "cache" / "synthetic" / "les1"
    with np.load(out / "synthetic__les1__abdomen.npz") as f:
        assert set(f.files) == {"real", "anatomy", "lesion", *rows}
        np.testing.assert_array_equal(f["real"], np.load(cache / "abdomen_image.npy"))
        np.testing.assert_array_equal(f["anatomy"], np.load(cache / "abdomen_label.npy"))
        np.testing.assert_array_equal(f["lesion"], np.load(cache / "abdomen_lesion.npy") > 0)
        for name in rows:
            x = f[name]
            assert x.shape == (18, 16, 20) and x.dtype == np.float32
            assert np.isfinite(x).all() and x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0
        assert not np.array_equal(f["MedDiff-FM (fine-tune)"], f["Med-DDPM"])
    first = run_lesion_generation(rows, data["manifest"], tmp_path / "one", dataset="synthetic", cases=1,
                                  sampling=SAMPLING, device="cpu", seed=LESION_SEED)  # fmt: skip
    assert [p.name for p in first.iterdir()] == ["synthetic__les0__abdomen.npz"]


@pytest.mark.parametrize("folder", ["controlnet", "mask_concat"])
def test_the_lesion_mask_steers_the_sample(data, folder):
    model = load_lesion_model(data[folder], "cpu")
    anatomy = np.full((18, 16, 20), 118, np.uint8)
    lesion = np.zeros(anatomy.shape, np.uint8)
    lesion[6:12, 5:11, 7:13] = 1

    def sample(mask):
        return generate_lesion_crop(model, anatomy, mask, "abdomen", sampling=SAMPLING, seed=3, device="cpu")

    with_lesion = sample(lesion)
    np.testing.assert_array_equal(with_lesion, sample(lesion))  # same seed, same sample
    assert np.abs(with_lesion - sample(np.zeros_like(lesion))).max() > 1e-3


def test_a_plain_foundation_model_is_refused(data, tmp_path):
    with pytest.raises(WeightsMissingError, match="not a lesion model"):
        load_lesion_model(data["foundation"], "cpu")
    with pytest.raises(WeightsMissingError, match="not a lesion model"):
        run_lesion_generation({"MedDiff-FM": data["foundation"]}, data["manifest"], tmp_path / "gen",
                              dataset="synthetic", cases=0, sampling=SAMPLING, device="cpu", seed=0)  # fmt: skip
    assert not (tmp_path / "gen").exists()


def test_no_test_lesion_crop_is_a_clear_error(data, tmp_path):
    with pytest.raises(DatasetMissingError, match="no test crop of 'msd_liver' with a lesion mask"):
        run_lesion_generation({"MedDiff-FM": data["controlnet"]}, data["manifest"], tmp_path / "gen",
                              dataset="msd_liver", cases=0, sampling=SAMPLING, device="cpu", seed=0)  # fmt: skip
    assert not (tmp_path / "gen").exists()
