"""The embedded demo cohort: determinism, plausible HU per organ, valid labels, geometry, orientation."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from meddiff.data.phantom import (
    CONSPICUOUS_TUMOURS,
    LESION_CLASSES,
    ORIENTATIONS,
    PHANTOM_REGIONS,
    SUBTLE_TUMOURS,
    ScanGeometry,
    generate_case,
    oriented_image,
    write_cohort,
)
from meddiff.errors import ConfigError
from meddiff.labels import BODY, NUM_CLASSES, class_index, indices

IDX = class_index()
LUNGS = indices("lung")


@functools.cache
def case(region: str, seed: int = 3, jitter: bool = True):
    return generate_case(region, seed, lesions=True, spacing_jitter=jitter)


def arrays(c):
    return (sitk.GetArrayFromImage(c.image), sitk.GetArrayFromImage(c.labels), sitk.GetArrayFromImage(c.lesions))


def median_hu(c, names) -> float:
    img, lab, _ = arrays(c)
    sel = np.isin(lab, [IDX[n] for n in names] if isinstance(names, list) else indices(names))
    assert sel.sum() > 50, f"{names} missing"
    return float(np.median(img[sel]))


def test_same_seed_same_case_different_seed_different_case():
    a, b = arrays(case("han")), arrays(generate_case("han", 3, lesions=True))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    other = arrays(case("han", seed=4))
    assert other[0].shape != a[0].shape or not np.array_equal(other[0], a[0])


@pytest.mark.parametrize("region", PHANTOM_REGIONS)
def test_image_label_lesion_share_one_grid_and_dtypes(region):
    c = case(region)
    assert c.region == region
    assert c.image.GetPixelID() == sitk.sitkInt16
    assert c.labels.GetPixelID() == sitk.sitkUInt8 and c.lesions.GetPixelID() == sitk.sitkUInt8
    for other in (c.labels, c.lesions):
        assert other.GetSize() == c.image.GetSize()
        assert other.GetSpacing() == c.image.GetSpacing()
        assert other.GetOrigin() == c.image.GetOrigin()
        assert other.GetDirection() == c.image.GetDirection()
    assert np.prod(c.image.GetSize()) <= 6_000_000


@pytest.mark.parametrize(
    "region, organs",
    [
        ("han", ["brain", "skull", "spinal_cord", "trachea", "vertebrae_C4"]),
        (
            "chest",
            [
                "heart",
                "aorta",
                "trachea",
                "esophagus",
                "sternum",
                "rib_left_5",
                "vertebrae_T6",
                *[n for n in IDX if n.startswith("lung_")],
            ],
        ),
        (
            "abdomen",
            [
                "liver",
                "spleen",
                "kidney_left",
                "kidney_right",
                "stomach",
                "pancreas",
                "gallbladder",
                "small_bowel",
                "duodenum",
                "colon",
                "aorta",
                "inferior_vena_cava",
                "vertebrae_L3",
                "hip_left",
            ],
        ),
        (
            "wholebody",
            [
                "brain",
                "skull",
                "heart",
                "aorta",
                "liver",
                "spleen",
                "kidney_left",
                "urinary_bladder",
                "lung_upper_lobe_right",
                "vertebrae_L1",
                "vertebrae_C3",
            ],
        ),
    ],
)
def test_labels_are_valid_and_hold_the_regions_key_organs(region, organs):
    _, lab, _ = arrays(case(region))
    present = set(np.unique(lab).tolist())
    assert present <= set(range(NUM_CLASSES)), "labels outside the label space"
    assert {0, BODY} <= present
    missing = [n for n in organs if IDX[n] not in present]
    assert not missing, f"{region} lacks {missing}"


def test_organ_hu_is_plausible():
    wb = case("wholebody")
    phase = wb.info["contrast_phase"]
    liver_hi = 90 if phase == "native" else 130
    assert 40 <= median_hu(wb, ["liver"]) <= liver_hi
    assert median_hu(wb, "lung") < -700
    assert 20 <= median_hu(wb, ["brain"]) <= 50
    assert median_hu(wb, ["skull"]) > 300
    assert median_hu(case("abdomen"), "vertebrae") > 150
    assert -130 <= median_hu(wb, ["gluteus_maximus_left"]) <= 90  # muscle
    img, lab, _ = arrays(wb)
    assert np.median(img[lab == 0]) < -900  # outside air
    fat = img[(lab == BODY) & (img < -30)]
    assert -140 < np.median(fat) < -60


CASES = [("han", 3), ("chest", 3), ("abdomen", 3), ("wholebody", 3), ("wholebody", 4)]


def test_aorta_brightness_follows_the_contrast_phase():
    expected = {"native": (-20, 80), "arterial": (180, 420), "portal": (110, 230)}
    phases = set()
    for region, seed in CASES[1:]:
        c = case(region, seed)
        lo, hi = expected[c.info["contrast_phase"]]
        assert lo <= median_hu(c, ["aorta"]) <= hi, c.info
        phases.add(c.info["contrast_phase"])
    assert len(phases) >= 2, "every case has the same contrast phase"


def test_images_have_noise_and_partial_volume_not_flat_labels():
    img, lab, _ = arrays(case("abdomen"))
    liver = img[lab == IDX["liver"]]
    assert 8 < liver.std() < 60
    assert len(np.unique(img)) > 500


@pytest.mark.parametrize("region", ["chest", "abdomen", "wholebody"])
def test_lesions_lie_inside_their_organs(region):
    _, lab, les = arrays(case(region))
    assert set(np.unique(les).tolist()) <= {0, *LESION_CLASSES}
    assert les.any()
    host = {1: [IDX["liver"]], 2: LUNGS, 3: [BODY]}
    for cls, labels in host.items():
        sel = les == cls
        assert np.isin(lab[sel], labels).all(), f"{LESION_CLASSES[cls]} outside its organ"


def test_lesions_show_in_the_image():
    img, lab, les = arrays(case("abdomen"))
    tumour = (les == 1) & (lab == IDX["liver"])
    if tumour.sum() < 20:
        pytest.skip("no liver tumour in this case")
    liver = (les == 0) & (lab == IDX["liver"])
    assert abs(np.median(img[tumour]) - np.median(img[liver])) >= 8


def test_conspicuous_tumours_are_larger_and_stronger_than_the_subtle_default():
    def tumours(profile):
        img, lab, les = arrays(generate_case("abdomen", 3, lesions=True, spacing_jitter=False, liver_tumours=profile))
        tumour = (les == 1) & (lab == IDX["liver"])
        liver = (les == 0) & (lab == IDX["liver"])
        return tumour.sum(), abs(np.median(img[tumour]) - np.median(img[liver])) if tumour.any() else 0.0

    subtle, conspicuous = tumours(SUBTLE_TUMOURS), tumours(CONSPICUOUS_TUMOURS)
    assert conspicuous[0] > subtle[0] and conspicuous[1] >= 35


def _centroid_lps(labels: sitk.Image, values) -> np.ndarray:
    arr = sitk.GetArrayFromImage(labels)
    k, j, i = np.nonzero(np.isin(arr, values))
    idx = np.stack([i, j, k], 1).mean(0)
    return np.array(labels.TransformContinuousIndexToPhysicalPoint(idx.tolist()))


def test_orientations_vary_and_reorientation_recovers_anatomy():
    assert len({case(r, s).info["orientation"] for r, s in CASES}) >= 2, "all cases share one orientation"
    for seed in (3, 4):
        c = case("wholebody", seed)
        lps = sitk.DICOMOrient(c.labels, "LPS")
        brain, liver = _centroid_lps(lps, [IDX["brain"]]), _centroid_lps(lps, [IDX["liver"]])
        spleen, heart = _centroid_lps(lps, [IDX["spleen"]]), _centroid_lps(lps, [IDX["heart"]])
        assert brain[2] > heart[2] > liver[2], "head is not superior"
        assert spleen[0] > liver[0], "spleen must be on the patient's left (+x in LPS)"
        # the physical position does not depend on how the file is oriented
        np.testing.assert_allclose(_centroid_lps(c.labels, [IDX["brain"]]), brain, atol=1e-3)


def test_spacing_varies_with_jitter_and_includes_thick_slices():
    slices = {case(r, s).image.GetSpacing()[2] for r, s in CASES}
    assert len(slices) >= 2 and max(slices) >= 3.0
    for r, s in CASES:
        if r != "wholebody":
            assert 1.5 <= case(r, s).image.GetSpacing()[0] <= 2.5


def test_write_cohort_writes_readable_niftis_and_the_tsv(tmp_path):
    ids = write_cohort(tmp_path, {"abdomen": 1, "han": 0}, lesion_fraction=1.0, spacing_jitter=True, seed=7)
    assert ids == ["phantom_abdomen_000"]
    img = sitk.ReadImage(str(tmp_path / "images" / "phantom_abdomen_000.nii.gz"))
    lab = sitk.ReadImage(str(tmp_path / "labels" / "phantom_abdomen_000.nii.gz"))
    les = sitk.ReadImage(str(tmp_path / "lesions" / "phantom_abdomen_000.nii.gz"))
    assert img.GetSize() == lab.GetSize() == les.GetSize()
    np.testing.assert_allclose(img.GetDirection(), lab.GetDirection())
    np.testing.assert_allclose(img.GetOrigin(), les.GetOrigin())
    assert sitk.GetArrayViewFromImage(img).min() >= -1024
    assert IDX["liver"] in np.unique(sitk.GetArrayViewFromImage(lab))
    assert not list(tmp_path.rglob("*.part*")), "temporary files left behind"
    table = pd.read_csv(tmp_path / "cohort.tsv", sep="\t")
    assert list(table.columns[:6]) == ["case", "region", "has_lesions", "size", "spacing", "orientation"]
    assert table["case"].tolist() == ids and table["region"].tolist() == ["abdomen"]
    assert table["has_lesions"].all() and sitk.GetArrayViewFromImage(les).any()
    assert [int(n) for n in table["size"][0].split("x")] == list(img.GetSize())
    assert table["orientation"][0] == sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())


def test_cohort_without_jitter_or_lesions(tmp_path):
    write_cohort(tmp_path, {"han": 1}, lesion_fraction=0.0, spacing_jitter=False, seed=1)
    table = pd.read_csv(tmp_path / "cohort.tsv", sep="\t")
    assert table["case"].tolist() == ["phantom_han_000"] and not table["has_lesions"].any()
    assert table["orientation"].tolist() == ["LPS"] and table["spacing"].tolist() == ["2.5x2.5x3"]
    assert not (tmp_path / "lesions" / "phantom_han_000.nii.gz").exists()  # healthy: no lesion file
    img = sitk.ReadImage(str(tmp_path / "images" / "phantom_han_000.nii.gz"))
    assert img.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)


def test_unknown_region_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="pelvis"):
        generate_case("pelvis", 0, lesions=False)
    with pytest.raises(ConfigError, match="pelvis"):
        write_cohort(tmp_path, {"pelvis": 1}, lesion_fraction=0.0, spacing_jitter=False, seed=0)


def test_every_orientation_puts_a_voxel_at_the_same_physical_point():
    geo = ScanGeometry(pixel=2.0, thickness=3.0, nx=6, nz=5, z_bottom=100.0, centre_xy=(3.0, -4.0), substeps=1)
    arr = np.zeros((5, 6, 6), np.uint8)
    arr[1, 2, 4] = 1  # z index 1, y index 2, x index 4 on the LPS grid
    expected = np.array([geo.xy[0][4], geo.xy[1][2], 103.0]) + (1.0, 2.0, -500.0)
    for code in ORIENTATIONS:
        img = oriented_image(arr, geo, code, np.array([1.0, 2.0, -500.0]))
        assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection()) == code
        k, j, i = np.argwhere(sitk.GetArrayFromImage(img))[0]
        np.testing.assert_allclose(img.TransformIndexToPhysicalPoint((int(i), int(j), int(k))), expected)
