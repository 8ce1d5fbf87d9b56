"""Anatomy masks: the threshold backend against synthetic anatomy, orientation handling, the mask file writer,
the reference backend's checks, and TotalSegmentator's missing-weights error."""

from __future__ import annotations


import numpy as np
import pytest
import SimpleITK as sitk

from ct_builders import dice, synthetic_torso  # tests/data/ct_builders.py

from meddiff.config import MasksConfig
from meddiff.data.masks import GENERIC_BONE, anatomy_mask, check_totalsegmentator_weights, make_anatomy_mask
from meddiff.errors import ConfigError, GeometryError, InputImageError, WeightsMissingError
from meddiff.labels import BODY, class_index, indices


LEFT = indices("lung_upper_lobe_left", "lung_lower_lobe_left")
RIGHT = indices("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
BONE = [class_index()["skull"], class_index()[GENERIC_BONE]]


def _threshold(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(anatomy_mask(img, backend="threshold", body_threshold_hu=-500))


@pytest.fixture(scope="module")
def torso():
    return synthetic_torso(airway=True, gas=True, vessel=True)


@pytest.fixture(scope="module")
def torso_labels(torso):
    return _threshold(torso.image)


def test_threshold_backend_recovers_body_lungs_and_bone(torso, torso_labels):
    lab = torso_labels
    assert dice(lab > 0, torso.body) > 0.9
    assert dice(np.isin(lab, LEFT), torso.lung_left) > 0.9
    assert dice(np.isin(lab, RIGHT), torso.lung_right) > 0.9
    assert dice(np.isin(lab, BONE), torso.bone) > 0.9
    assert lab.dtype == np.uint8 and lab.max() <= BODY


def test_vessels_inside_a_lung_belong_to_it(torso, torso_labels):
    hu = sitk.GetArrayFromImage(torso.image)
    vessel = torso.lung_left & (hu > -300)
    assert vessel.sum() > 50
    assert np.isin(torso_labels[vessel], LEFT).all()


def test_threshold_backend_labels_trachea_above_the_bronchi(torso, torso_labels):
    upper = np.zeros_like(torso.airway)
    upper[-30:] = True  # z >= ~ 37 mm above the volume centre, above the bronchi's slices
    truth = torso.airway & upper
    assert dice(torso_labels == class_index()["trachea"], truth) > 0.8


def test_lobes_are_ordered_top_to_bottom(torso_labels):
    idx = class_index()

    def mean_z(name):
        return np.nonzero(torso_labels == idx[name])[0].mean()

    assert mean_z("lung_upper_lobe_left") > mean_z("lung_lower_lobe_left")
    assert mean_z("lung_upper_lobe_right") > mean_z("lung_middle_lobe_right") > mean_z("lung_lower_lobe_right")


def test_bone_above_the_lung_apex_is_skull(torso, torso_labels):
    apex = np.nonzero(np.isin(torso_labels, LEFT + RIGHT).any(axis=(1, 2)))[0].max()
    skull = torso_labels == class_index()["skull"]
    assert skull.any() and np.nonzero(skull)[0].min() > apex
    assert (torso_labels[: apex + 1][torso.bone[: apex + 1]] == class_index()[GENERIC_BONE]).all()


def test_bowel_gas_stays_body(torso, torso_labels):
    hu = sitk.GetArrayFromImage(torso.image)
    gas = torso.body & (hu < -900) & ~torso.lung_left & ~torso.lung_right & ~torso.airway
    assert gas.sum() > 1000
    assert (torso_labels[gas] == BODY).mean() > 0.95


def test_orientation_of_the_stored_image_does_not_change_anatomy(torso, torso_labels):
    flipped = sitk.DICOMOrient(torso.image, "RAS")  # same patient, stored with x and y axes reversed
    assert flipped.GetDirection() != torso.image.GetDirection()
    mask = anatomy_mask(flipped, backend="threshold", body_threshold_hu=-500)
    assert mask.GetDirection() == flipped.GetDirection() and mask.GetOrigin() == flipped.GetOrigin()
    back = sitk.GetArrayFromImage(sitk.DICOMOrient(mask, "LPS"))
    np.testing.assert_array_equal(back, torso_labels)


def test_make_anatomy_mask_writes_a_uint8_mask_on_the_image_grid(tmp_path, torso):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(torso.image, str(src))
    out = tmp_path / "masks" / "ct_mask.nii.gz"
    make_anatomy_mask(src, out, MasksConfig(backend="threshold", body_threshold_hu=-500, fast=False))
    mask = sitk.ReadImage(str(out))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == torso.image.GetSize()
    np.testing.assert_allclose(mask.GetOrigin(), torso.image.GetOrigin())
    assert sorted(p.name for p in out.parent.iterdir()) == ["ct_mask.nii.gz"]


REFERENCE = MasksConfig(backend="reference", body_threshold_hu=-500, fast=False)


def _labels_like(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array.astype(np.uint8))
    out.CopyInformation(image)
    return out


def test_reference_backend_keeps_shipped_organs_and_adds_body(tmp_path, torso):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(torso.image, str(src))
    shape = sitk.GetArrayViewFromImage(torso.image).shape
    shipped = np.zeros(shape, dtype=np.uint8)
    liver = class_index()["liver"]
    centre = tuple(n // 2 for n in shape)
    shipped[centre[0] - 2 : centre[0] + 2, centre[1] - 2 : centre[1] + 2, centre[2] - 2 : centre[2] + 2] = liver
    ref = tmp_path / "labels.nii.gz"
    sitk.WriteImage(_labels_like(torso.image, shipped), str(ref))
    out = tmp_path / "mask.nii.gz"

    make_anatomy_mask(src, out, REFERENCE, ref)

    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    body = _threshold(torso.image) > 0
    np.testing.assert_array_equal(mask == liver, shipped == liver)  # shipped organs unchanged
    np.testing.assert_array_equal(mask == BODY, body & (shipped == 0))  # unclaimed body voxels become body
    assert not mask[~body & (shipped == 0)].any()


def test_reference_backend_rejects_missing_misplaced_and_foreign_labels(tmp_path, torso):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(torso.image, str(src))
    shape = sitk.GetArrayViewFromImage(torso.image).shape
    with pytest.raises(ConfigError, match="label_glob"):
        make_anatomy_mask(src, tmp_path / "a.nii.gz", REFERENCE)
    shifted = _labels_like(torso.image, np.zeros(shape))
    shifted.SetOrigin(tuple(o + 25.0 for o in torso.image.GetOrigin()))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    with pytest.raises(GeometryError, match="origin"):
        make_anatomy_mask(src, tmp_path / "b.nii.gz", REFERENCE, tmp_path / "shifted.nii.gz")
    foreign = sitk.GetImageFromArray(np.full(shape, 200, dtype=np.uint16))  # not the 0..118 label space
    foreign.CopyInformation(torso.image)
    sitk.WriteImage(foreign, str(tmp_path / "foreign.nii.gz"))
    with pytest.raises(InputImageError, match="0..118"):
        make_anatomy_mask(src, tmp_path / "c.nii.gz", REFERENCE, tmp_path / "foreign.nii.gz")
    threshold = MasksConfig(backend="threshold", body_threshold_hu=-500, fast=False)
    with pytest.raises(ConfigError, match="only used"):
        make_anatomy_mask(src, tmp_path / "d.nii.gz", threshold, tmp_path / "shifted.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "foreign.nii.gz", "shifted.nii.gz"]


@pytest.mark.parametrize("fast, folder", [(False, "Dataset291"), (True, "Dataset297")])
def test_totalsegmentator_without_weights_explains_how_to_install(tmp_path, monkeypatch, torso, fast, folder):
    home = tmp_path / "totalseg_home"
    home.mkdir()
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    with pytest.raises(WeightsMissingError) as err:
        anatomy_mask(torso.image, backend="totalsegmentator", body_threshold_hu=-500, fast=fast)
    msg = str(err.value)
    assert folder in msg and str(home) in msg
    assert "totalseg_download_weights -t total" in msg and "TOTALSEG_HOME_DIR" in msg
    assert list(home.iterdir()) == []  # nothing was downloaded or created


def test_totalsegmentator_weights_folder_without_checkpoint_counts_as_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path))
    (tmp_path / "Dataset297_TotalSegmentator_total_3mm_1559subj").mkdir()  # an interrupted copy
    with pytest.raises(WeightsMissingError, match="Dataset297"):
        check_totalsegmentator_weights(fast=True)


def _phantom():
    return pytest.importorskip(
        "meddiff.data.phantom", reason="meddiff.data.phantom not importable"
    )


@pytest.mark.slow  # generating a phantom case takes ~5-10 s on 2 cores
def test_threshold_masks_match_the_phantom_ground_truth():
    case = _phantom().generate_case("chest", 0, lesions=False, spacing_jitter=False)
    truth = sitk.GetArrayFromImage(case.labels)
    lab = sitk.GetArrayFromImage(anatomy_mask(case.image, backend="threshold", body_threshold_hu=-500))
    lung = indices("lung")
    assert dice(lab > 0, truth > 0) > 0.95
    assert dice(np.isin(lab, lung), np.isin(truth, lung)) > 0.95


@pytest.mark.slow
def test_threshold_masks_split_a_phantom_whole_body_like_its_ground_truth():
    from meddiff.data.regions import region_extents

    case = _phantom().generate_case("wholebody", 1, lesions=False, spacing_jitter=False)
    image, truth = sitk.DICOMOrient(case.image, "LPS"), sitk.DICOMOrient(case.labels, "LPS")
    lab = sitk.GetArrayFromImage(anatomy_mask(image, backend="threshold", body_threshold_hu=-500))
    spacing = image.GetSpacing()
    ours, theirs = region_extents(lab, spacing, 40), region_extents(sitk.GetArrayFromImage(truth), spacing, 40)
    assert list(ours) == list(theirs) == ["han", "chest", "abdomen"]
    tolerance = int(round(30 / spacing[2]))  # the liver dome is estimated from the lung base without a liver
    for region in ours:
        assert np.abs(np.subtract(ours[region], theirs[region])).max() <= tolerance, (region, ours, theirs)
