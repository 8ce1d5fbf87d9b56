"""Preprocessing into the training cache: resampling, orientation, windowing, region crops, metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from ct_builders import synthetic_torso  # tests/data/ct_builders.py

from meddiff.config import PreprocessConfig, Window
from meddiff.data.intensity import hu_to_unit
from meddiff.data.masks import anatomy_mask
from meddiff.data.preprocess import crop_to_sitk, load_crop, load_lesion, preprocess_case
from meddiff.errors import InputImageError
from meddiff.labels import BODY, class_index


WINDOWS = {"han": Window(50, 400), "chest": Window(-500, 1800), "abdomen": Window(60, 360)}


def _cfg(spacing=(2.5, 2.5, 2.5), interpolation="linear", min_mm=40.0) -> PreprocessConfig:
    return PreprocessConfig(spacing, interpolation, WINDOWS, min_mm)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A synthetic torso CT (2.5 mm) and its threshold mask on disk."""
    d = tmp_path_factory.mktemp("case")
    torso = synthetic_torso(airway=True)
    mask = anatomy_mask(torso.image, backend="threshold", body_threshold_hu=-500)
    sitk.WriteImage(torso.image, str(d / "ct.nii.gz"))
    sitk.WriteImage(mask, str(d / "mask.nii.gz"))
    return d, torso, mask


def test_single_region_case_is_windowed_into_the_cache(tmp_path, case):
    d, torso, mask = case
    out = tmp_path / "cache" / "c1"
    metas = preprocess_case(
        d / "ct.nii.gz", d / "mask.nii.gz", out, case="c1", dataset="ds", regions=["chest"], cfg=_cfg()
    )
    assert sorted(p.name for p in out.iterdir()) == ["chest_image.npy", "chest_label.npy", "chest_meta.json"]
    image, label, meta = load_crop(out, "chest")
    assert isinstance(image, np.memmap) and image.dtype == np.float32 and label.dtype == np.uint8
    assert image.shape == label.shape == tuple(meta["shape"]) == sitk.GetArrayViewFromImage(torso.image).shape
    assert image.min() >= -1 and image.max() <= 1
    # same spacing and LPS input: no resampling, voxels are exactly the windowed HU
    hu = sitk.GetArrayFromImage(torso.image).astype(np.float32)
    np.testing.assert_allclose(image, hu_to_unit(hu, WINDOWS["chest"]), atol=1e-6)
    np.testing.assert_array_equal(label, sitk.GetArrayFromImage(mask))
    assert metas == [meta] and json.loads((out / "chest_meta.json").read_text()) == meta
    assert meta["window"] == {"level": -500, "width": 1800}
    assert meta["crop_z"] == [0, image.shape[0]] and meta["direction"] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert meta["origin_mm"] == pytest.approx(torso.image.GetOrigin())
    assert meta["hu_stats"]["p1"] < -900 and -100 < meta["hu_stats"]["p99"] < 1000
    assert load_lesion(out, "chest") is None


def test_resampling_to_the_configured_spacing(tmp_path, case):
    d, torso, _ = case
    (meta,) = preprocess_case(
        d / "ct.nii.gz",
        d / "mask.nii.gz",
        tmp_path / "c",
        case="c",
        dataset="ds",
        regions=["chest"],
        cfg=_cfg(spacing=(5.0, 5.0, 4.0), interpolation="bspline"),
    )
    size = torso.image.GetSize()
    assert meta["shape"] == [round(size[2] * 2.5 / 4.0), round(size[1] / 2), round(size[0] / 2)]
    assert meta["spacing_mm"] == [5.0, 5.0, 4.0]
    _, label, _ = load_crop(tmp_path / "c", "chest")
    assert set(np.unique(label)) <= set(np.unique(sitk.GetArrayViewFromImage(case[2])))  # nearest neighbour


def test_stored_orientation_does_not_change_the_cache(tmp_path, case):
    d, torso, mask = case
    sitk.WriteImage(sitk.DICOMOrient(torso.image, "RAS"), str(tmp_path / "ras.nii.gz"))
    sitk.WriteImage(sitk.DICOMOrient(mask, "RAS"), str(tmp_path / "ras_mask.nii.gz"))
    preprocess_case(
        tmp_path / "ras.nii.gz",
        tmp_path / "ras_mask.nii.gz",
        tmp_path / "ras",
        case="c",
        dataset="ds",
        regions=["chest"],
        cfg=_cfg(),
    )
    preprocess_case(
        d / "ct.nii.gz", d / "mask.nii.gz", tmp_path / "lps", case="c", dataset="ds", regions=["chest"], cfg=_cfg()
    )
    a_img, a_lab, a_meta = load_crop(tmp_path / "ras", "chest")
    b_img, b_lab, b_meta = load_crop(tmp_path / "lps", "chest")
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert a_meta["origin_mm"] == pytest.approx(b_meta["origin_mm"])


def test_crop_to_sitk_restores_hu_and_geometry(tmp_path, case):
    d, torso, _ = case
    preprocess_case(
        d / "ct.nii.gz", d / "mask.nii.gz", tmp_path / "c", case="c", dataset="ds", regions=["chest"], cfg=_cfg()
    )
    image, label, meta = load_crop(tmp_path / "c", "chest")
    img = crop_to_sitk(image, meta, hu=True)
    hu = sitk.GetArrayFromImage(torso.image)
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), np.clip(hu, -1400, 400), atol=0.05)
    assert img.GetOrigin() == pytest.approx(torso.image.GetOrigin())
    assert img.GetSpacing() == pytest.approx(torso.image.GetSpacing())
    lab = crop_to_sitk(label, meta, hu=False)
    assert lab.GetPixelID() == sitk.sitkUInt8
    with pytest.raises(ValueError, match="shape"):
        crop_to_sitk(image[1:], meta, hu=True)


def _whole_body_case(d):
    """A 2-region volume: the torso (chest) above an abdomen block with a liver (labels written by hand)."""
    torso = synthetic_torso(airway=True)
    hu = sitk.GetArrayFromImage(torso.image)
    mask = sitk.GetArrayFromImage(anatomy_mask(torso.image, backend="threshold", body_threshold_hu=-500))
    depth = hu.shape[0]
    belly_hu = np.full((60,) + hu.shape[1:], -1000, np.int16)
    belly_lab = np.zeros_like(belly_hu, dtype=np.uint8)
    belly_hu[:, 20:80, 20:110] = 40
    belly_lab[:, 20:80, 20:110] = BODY
    belly_lab[30:, 30:60, 25:60] = class_index()["liver"]
    hu = np.concatenate([belly_hu, hu])
    lab = np.concatenate([belly_lab, mask])
    for arr, name in [(hu, "wb.nii.gz"), (lab, "wb_mask.nii.gz")]:
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(torso.image.GetSpacing())
        sitk.WriteImage(img, str(d / name))
    return depth


def test_wholebody_case_is_split_into_regions_with_lesions(tmp_path):
    _whole_body_case(tmp_path)
    lesion = np.zeros(sitk.GetArrayViewFromImage(sitk.ReadImage(str(tmp_path / "wb.nii.gz"))).shape, np.uint8)
    lesion[40:45, 40:45, 40:45] = 1
    les = sitk.GetImageFromArray(lesion)
    les.SetSpacing((2.5, 2.5, 2.5))
    sitk.WriteImage(les, str(tmp_path / "lesion.nii.gz"))
    out = tmp_path / "wb"
    metas = preprocess_case(
        tmp_path / "wb.nii.gz",
        tmp_path / "wb_mask.nii.gz",
        out,
        case="wb",
        dataset="ds",
        regions=["wholebody"],
        cfg=_cfg(),
        lesion_path=tmp_path / "lesion.nii.gz",
    )
    regions = [m["region"] for m in metas]
    assert regions == ["chest", "abdomen"]
    chest, abdomen = metas
    assert abdomen["crop_z"] == [0, 60 + 4]  # from the bottom to the liver top + 10 mm margin
    assert 60 < chest["crop_z"][0] < chest["crop_z"][1] < 60 + 90  # the lungs +- 10 mm
    assert abdomen["window"] == {"level": 60, "width": 360}
    assert chest["origin_mm"][2] == pytest.approx(chest["crop_z"][0] * 2.5)
    assert int(load_lesion(out, "abdomen").sum()) == 125
    assert {p.name for p in out.iterdir()} >= {"abdomen_lesion.npy", "chest_lesion.npy", "abdomen_meta.json"}


def test_rerun_replaces_the_whole_case_folder(tmp_path, case):
    d, _, _ = case
    out = tmp_path / "c"
    out.mkdir()
    (out / "han_image.npy").write_bytes(b"stale")
    preprocess_case(d / "ct.nii.gz", d / "mask.nii.gz", out, case="c", dataset="ds", regions=["chest"], cfg=_cfg())
    assert not (out / "han_image.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_volume_too_short_for_any_region(tmp_path, case):
    d, _, _ = case
    with pytest.raises(InputImageError, match="shorter than preprocess.min_region_extent_mm"):
        preprocess_case(
            d / "ct.nii.gz",
            d / "mask.nii.gz",
            tmp_path / "c",
            case="c",
            dataset="ds",
            regions=["chest"],
            cfg=_cfg(min_mm=1000),
        )
    assert not (tmp_path / "c").exists()


def test_load_crop_names_missing_region(tmp_path, case):
    d, _, _ = case
    preprocess_case(
        d / "ct.nii.gz", d / "mask.nii.gz", tmp_path / "c", case="c", dataset="ds", regions=["chest"], cfg=_cfg()
    )
    with pytest.raises(InputImageError, match="'han' not in the cache"):
        load_crop(tmp_path / "c", "han")
