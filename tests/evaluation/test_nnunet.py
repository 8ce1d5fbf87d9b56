"""The nnU-Net lesion judge (paper 4.1.3) end to end on a tiny synthetic cohort: bright spheres (lesions) in
noise, 4 training cases and 2 held-out cases of 32³ at 1.5 mm, trained for 2 epochs × 3 iterations on CPU."""

import json
import time
import types

import numpy as np
import pytest
import SimpleITK as sitk

from meddiff.errors import ConfigError, GeometryError, InputImageError
from meddiff.evaluation import nnunet
from meddiff.evaluation.nnunet_data import export_raw_dataset, export_test_images

DATASET_ID, NAME = 501, "LesionJudge"
SPACING = (1.5, 1.5, 1.5)
SCHEDULE = dict(epochs=2, iterations_per_epoch=3)


def sphere_case(seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Y, X) image in HU (soft tissue 40 ± 20 HU, lesion 400 HU) and its lesion mask (uint8 0/1)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((size,) * 3)
    centre = rng.integers(11, size - 11, 3)
    radius = rng.uniform(5, 8)
    mask = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2).astype(np.uint8)
    image = 40 + 20 * rng.standard_normal((size,) * 3) + 360.0 * mask
    return image.astype(np.float32), mask


@pytest.fixture(scope="module")
def cohort():
    return {f"case{i:02d}": sphere_case(i) for i in range(6)}


@pytest.fixture(scope="module")
def root(tmp_path_factory, cohort):
    root = tmp_path_factory.mktemp("nnunet")
    env = nnunet.nnunet_environment(root)
    train_ids = sorted(cohort)[:4]
    # masks given in several forms: a label value other than 1 must still become lesion = 1
    cases = [(c, (cohort[c][0], SPACING), cohort[c][1] * (7 if i == 0 else 1)) for i, c in enumerate(train_ids)]
    export_raw_dataset(cases, env["nnUNet_raw"], DATASET_ID, NAME)
    return root


@pytest.fixture(scope="module")
def trained(root):
    nnunet.plan_and_preprocess(root, DATASET_ID, patch_size=None)
    start = time.perf_counter()
    folder = nnunet.train(root, DATASET_ID, **SCHEDULE, device="cpu")
    print(f"nnU-Net training: {time.perf_counter() - start:.1f} s")
    return folder


def test_export_writes_nnunet_raw_layout(root, cohort):
    folder = root / "raw" / f"Dataset{DATASET_ID}_{NAME}"
    ids = sorted(cohort)[:4]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in ids]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in ids]
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["numTraining"] == 4 and meta["file_ending"] == ".nii.gz"
    image = sitk.ReadImage(str(folder / "imagesTr" / f"{ids[0]}_0000.nii.gz"))
    label = sitk.ReadImage(str(folder / "labelsTr" / f"{ids[0]}.nii.gz"))
    assert image.GetSpacing() == pytest.approx(SPACING)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), cohort[ids[0]][0], atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), cohort[ids[0]][1])  # the 7s became 1


def test_export_refuses_a_mask_on_another_grid(tmp_path, cohort):
    image, mask = cohort["case00"]
    shifted = sitk.GetImageFromArray(mask)
    shifted.SetSpacing((1.5, 1.5, 3.0))
    mask_file = tmp_path / "mask.nii.gz"
    sitk.WriteImage(shifted, str(mask_file))
    with pytest.raises(GeometryError, match="mask.nii.gz"):
        export_raw_dataset([("a", (image, SPACING), mask_file)], tmp_path / "raw", 7, "Bad")
    with pytest.raises(GeometryError, match="does not match"):
        export_test_images([("a", (image, SPACING), mask[:-1])], tmp_path / "ts", tmp_path / "ref")
    assert not (tmp_path / "raw" / "Dataset007_Bad").exists() and not (tmp_path / "ts").exists()


def test_export_test_images_without_masks_writes_images_only(tmp_path, cohort):
    export_test_images([("gen1", (cohort["case00"][0], SPACING), None)], tmp_path / "ts")
    assert [p.name for p in (tmp_path / "ts").iterdir()] == ["gen1_0000.nii.gz"]


def test_environment_refuses_paths_frozen_at_import(tmp_path, monkeypatch):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_def_n_proc", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(var, "unset")  # restored after the test
    old_style = types.SimpleNamespace(nnUNet_raw="/elsewhere/raw", nnUNet_preprocessed=None, nnUNet_results=None)
    monkeypatch.setitem(__import__("sys").modules, "nnunetv2.paths", old_style)
    with pytest.raises(ConfigError, match="nnUNet_raw=/elsewhere/raw"):
        nnunet.nnunet_environment(tmp_path)


def _write_mask(folder, case, array):
    folder.mkdir(exist_ok=True)
    img = sitk.GetImageFromArray(array.astype(np.uint8))
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(folder / f"{case}.nii.gz"))


def test_score_gives_dice_per_case_and_skips_empty_pairs_in_the_mean(tmp_path):
    ref = np.zeros((8, 8, 8), np.uint8)
    ref[2:6, 2:6, 2:6] = 1  # 64 voxels
    half = np.zeros_like(ref)
    half[2:4, 2:6, 2:6] = 1  # 32 voxels, all inside: Dice = 64 / 96
    for case, (r, p) in {"a": (ref, ref), "b": (ref, half), "c": (ref * 0, ref * 0), "d": (ref, ref * 0)}.items():
        _write_mask(tmp_path / "ref", case, r)
        _write_mask(tmp_path / "pred", case, p)
    table = nnunet.score(tmp_path / "pred", tmp_path / "ref")
    assert list(table["case"]) == ["a", "b", "c", "d", "mean"]
    dice = dict(zip(table["case"], table["dice"]))
    assert dice["a"] == 1.0 and dice["b"] == pytest.approx(2 / 3) and dice["d"] == 0.0
    assert np.isnan(dice["c"])  # both empty
    assert dice["mean"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    (tmp_path / "pred" / "d.nii.gz").unlink()
    with pytest.raises(InputImageError, match=r"missing \['d.nii.gz'\]"):
        nnunet.score(tmp_path / "pred", tmp_path / "ref")


def test_train_refuses_a_dataset_that_is_not_preprocessed(tmp_path, cohort):
    env = nnunet.nnunet_environment(tmp_path)
    export_raw_dataset([("a", (cohort["case00"][0], SPACING), cohort["case00"][1])], env["nnUNet_raw"], 9, "Raw")
    with pytest.raises(ConfigError, match="not preprocessed"):
        nnunet.train(tmp_path, 9, **SCHEDULE)


def test_judge_trains_predicts_held_out_cases_and_scores_them(root, trained, cohort, tmp_path):
    assert (trained / "fold_all" / "checkpoint_final.pth").is_file()
    assert (trained / "plans.json").is_file() and (trained / "dataset.json").is_file()
    held_out = [(c, (cohort[c][0], SPACING), cohort[c][1]) for c in sorted(cohort)[4:]]
    export_test_images(held_out, tmp_path / "images", tmp_path / "masks")
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["case04_0000.nii.gz", "case05_0000.nii.gz"]
    out = nnunet.predict(root, DATASET_ID, tmp_path / "images", tmp_path / "pred")
    for case, _, mask in held_out:
        pred = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert pred.GetSpacing() == pytest.approx(SPACING)
        assert sitk.GetArrayFromImage(pred).shape == mask.shape
        assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1}
    table = nnunet.score(out, tmp_path / "masks")
    print(table.to_string())
    assert list(table["case"]) == ["case04", "case05", "mean"]
    assert table["dice"].between(0, 1).all()  # also false for NaN: the held-out masks are never empty
    assert table["dice"].iloc[-1] > 0  # 6 iterations already find the bright spheres (measured mean ~0.5)
    assert (table["n_ref"][:2].to_numpy() == [cohort[c][1].sum() for c in ("case04", "case05")]).all()
    with pytest.raises(InputImageError, match="no image"):
        nnunet.predict(root, DATASET_ID, tmp_path / "masks", tmp_path / "pred2")


def test_train_is_cached_once_finished(root, trained):
    checkpoint = trained / "fold_all" / "checkpoint_final.pth"
    before = checkpoint.stat().st_mtime_ns
    start = time.perf_counter()
    assert nnunet.train(root, DATASET_ID, **SCHEDULE) == trained
    assert time.perf_counter() - start < 5
    assert checkpoint.stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="delete it to retrain"):
        nnunet.train(root, DATASET_ID, epochs=3, iterations_per_epoch=3)


def test_a_patch_size_the_network_cannot_downsample_is_refused(tmp_path):
    plans = {"configurations": {"3d_fullres": {"patch_size": [64, 64, 64],
                                               "architecture": {"arch_kwargs": {"features_per_stage": [32, 64, 128]}}}}}
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(plans))
    with pytest.raises(ConfigError, match="divisible by 4"):
        nnunet._set_patch_size(path, (32, 30, 32))
    nnunet._set_patch_size(path, (32, 32, 32))
    assert json.loads(path.read_text())["configurations"]["3d_fullres"]["patch_size"] == [32, 32, 32]
