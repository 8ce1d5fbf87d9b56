"""Conditional whole-volume synthesis of one test crop (paper 3.4, 4.3.1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tiny_network import TINY_MODEL

from meddiff.config import SamplingConfig, Window
from meddiff.data.intensity import unit_to_hu
from meddiff.diffusion.checkpoint import save_model
from meddiff.models.network import MedDiffUNet
from meddiff.tasks.synthesis import case_seed, synthesize_case

SHAPE = (18, 16, 20)  # (Z, Y, X), a little larger than the 16^3 patch in z and x
WINDOW = {"level": 60.0, "width": 360.0}
SAMPLING = SamplingConfig(sampler="ddim", steps=2, overlap=0.5, patch_batch_size=4, blend="gaussian", precision="fp32")


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder of a tiny random network (output layer re-initialised: MONAI zero-initialises it)."""
    torch.manual_seed(0)
    cfg = TINY_MODEL
    net = MedDiffUNet(cfg, "embedding")
    with torch.no_grad():
        net.unet.out[2].conv.reset_parameters()
    return save_model(tmp_path / "model", net, num_train_timesteps=100, schedule="cosine", info={"variant": "test"},
                      prediction="epsilon")  # fmt: skip


def write_crop(case_dir: Path, region: str, case: str = "case7") -> dict:
    """A crop in the training-cache layout of meddiff.data.preprocess (image, label, meta)."""
    case_dir.mkdir(parents=True, exist_ok=True)
    label = np.zeros(SHAPE, np.uint8)
    label[2:-2, 2:-2, 2:-2] = 118
    label[5:12, 4:10, 6:14] = 5  # liver
    meta = {
        "case": case,
        "dataset": "synthetic",
        "region": region,
        "shape": list(SHAPE),
        "spacing_mm": [5.0, 4.0, 3.0],
        "origin_mm": [-40.0, 12.5, 300.0],
        "direction": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "window": WINDOW,
    }
    np.save(case_dir / f"{region}_image.npy", np.zeros(SHAPE, np.float32))
    np.save(case_dir / f"{region}_label.npy", label)
    (case_dir / f"{region}_meta.json").write_text(json.dumps(meta))
    return meta


def test_writes_a_nifti_in_hu_with_the_crop_geometry(tmp_path, model_dir):
    meta = write_crop(tmp_path / "cache" / "case7", "abdomen")
    out = synthesize_case(
        model_dir,
        tmp_path / "cache" / "case7",
        "abdomen",
        tmp_path / "out" / "case7.nii.gz",
        sampling=SAMPLING,
        seed=0,
        device="cpu",
    )
    assert out == tmp_path / "out" / "case7.nii.gz"
    assert [p.name for p in out.parent.iterdir()] == ["case7.nii.gz"]  # no temporary left behind
    img = sitk.ReadImage(str(out))
    np.testing.assert_allclose(img.GetSpacing(), meta["spacing_mm"])
    np.testing.assert_allclose(img.GetOrigin(), meta["origin_mm"])
    np.testing.assert_allclose(img.GetDirection(), meta["direction"])
    hu = sitk.GetArrayFromImage(img)
    assert hu.shape == SHAPE
    lo, hi = Window(**WINDOW).bounds
    assert hu.min() >= lo - 1e-3 and hu.max() <= hi + 1e-3
    assert hu.std() > 1.0  # a synthesised image, not a constant
    # In HU, not in the network's [-1, 1]: the image spans far more than 2 units.
    assert hu.max() - hu.min() > 10


def test_reruns_are_identical_and_cases_differ(tmp_path, model_dir):
    write_crop(tmp_path / "a", "abdomen", case="case1")
    write_crop(tmp_path / "b", "abdomen", case="case2")
    run = lambda case_dir, name: sitk.GetArrayFromImage(
        sitk.ReadImage(
            str(
                synthesize_case(
                    model_dir, case_dir, "abdomen", tmp_path / name, sampling=SAMPLING, seed=3, device="cpu"
                )
            )
        )
    )
    first, again, other = (
        run(tmp_path / "a", "1.nii.gz"),
        run(tmp_path / "a", "2.nii.gz"),
        run(tmp_path / "b", "3.nii.gz"),
    )
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1.0


def test_unconditional_synthesis_ignores_the_anatomy(tmp_path, model_dir):
    write_crop(tmp_path / "c", "chest")
    cond = synthesize_case(
        model_dir, tmp_path / "c", "chest", tmp_path / "cond.nii.gz", sampling=SAMPLING, seed=0, device="cpu"
    )
    uncond = synthesize_case(
        model_dir,
        tmp_path / "c",
        "chest",
        tmp_path / "uncond.nii.gz",
        sampling=SAMPLING,
        seed=0,
        device="cpu",
        unconditional=True,
    )
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (cond, uncond))
    assert np.abs(a - b).mean() > 0.1


def test_matches_sample_volume_converted_with_the_crop_window(tmp_path, model_dir):
    from meddiff.diffusion.checkpoint import load_model
    from meddiff.diffusion.samplers import sample_volume

    write_crop(tmp_path / "d", "abdomen", case="case9")
    out = synthesize_case(
        model_dir, tmp_path / "d", "abdomen", tmp_path / "d.nii.gz", sampling=SAMPLING, seed=5, device="cpu"
    )
    label = np.load(tmp_path / "d" / "abdomen_label.npy")
    unit = sample_volume(
        load_model(model_dir, "cpu"),
        label,
        "abdomen",
        sampling=SAMPLING,
        seed=case_seed(5, "synthetic/case9", "abdomen"),
        device="cpu",
    )
    expected = unit_to_hu(unit, Window(**WINDOW))
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), expected, atol=1e-3)


def test_case_seed_depends_on_seed_case_and_region():
    seeds = {case_seed(s, c, r) for s in (0, 1) for c in ("d/a", "d/b") for r in ("han", "chest")}
    assert len(seeds) == 8
    assert case_seed(0, "d/a", "han") == case_seed(0, "d/a", "han")
