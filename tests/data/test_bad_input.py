"""Bad input: every case fails with one line naming the file and the problem, and leaves no output behind.

Image-level problems are checked through both entry points the rules call (mask creation and preprocessing).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import SimpleITK as sitk

from ct_builders import synthetic_torso, write_nifti  # tests/data/ct_builders.py

from meddiff.config import MasksConfig, PreprocessConfig, Window
from meddiff.data.masks import make_anatomy_mask
from meddiff.data.preprocess import preprocess_case
from meddiff.errors import GeometryError, InputImageError


SPACING = (2.5, 2.5, 2.5)
PRE = PreprocessConfig(
    SPACING,
    "linear",
    {"han": Window(50, 400), "chest": Window(-500, 1800), "abdomen": Window(60, 360)},
    40.0,
)
MASKS = MasksConfig(backend="threshold", body_threshold_hu=-500, fast=False)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid CT and mask (paths), shared read-only by the tests."""
    d = tmp_path_factory.mktemp("good")
    torso = synthetic_torso()
    sitk.WriteImage(torso.image, str(d / "ct.nii.gz"))
    mask = np.where(sitk.GetArrayFromImage(torso.image) > -500, 118, 0).astype(np.uint8)
    write_nifti(mask, d / "mask.nii.gz", spacing=SPACING, origin=torso.image.GetOrigin())
    return d / "ct.nii.gz", d / "mask.nii.gz"


def _run_mask(image, good, out):
    make_anatomy_mask(image, out / "mask.nii.gz", MASKS)


def _run_preprocess(image, good, out, mask=None):
    preprocess_case(image, mask or good[1], out / "case", case="c", dataset="d", regions=["chest"], cfg=PRE)


ENTRY_POINTS = [_run_mask, _run_preprocess]


def _expect_failure(call, bad_path, problem: str, out, error=InputImageError):
    with pytest.raises(error) as err:
        call()
    msg = str(err.value)
    assert str(bad_path) in msg, msg
    assert re.search(problem, msg), msg
    assert "\n" not in msg
    left = [os.path.join(r, f) for r, ds, fs in os.walk(out) for f in fs + ds]
    assert left == [], f"output left behind: {left}"


@pytest.fixture
def out(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.mark.parametrize("run", ENTRY_POINTS)
def test_corrupt_nifti_random_bytes(tmp_path, out, good, run):
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    _expect_failure(lambda: run(bad, good, out), bad, "corrupt|not a valid|cannot read", out)


@pytest.mark.parametrize("run", ENTRY_POINTS)
def test_truncated_nifti(tmp_path, out, good, run):
    data = good[0].read_bytes()
    bad = tmp_path / "half.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    _expect_failure(lambda: run(bad, good, out), bad, "truncated", out)


@pytest.mark.parametrize("run", ENTRY_POINTS)
def test_2d_image(tmp_path, out, good, run):
    bad = tmp_path / "slice.nii.gz"
    write_nifti(np.linspace(-1000, 1000, 64 * 64).reshape(64, 64).astype(np.int16), bad)
    _expect_failure(lambda: run(bad, good, out), bad, "expected a 3D CT volume, found a 2D image", out)


@pytest.mark.parametrize("run", ENTRY_POINTS)
def test_4d_image(tmp_path, out, good, run):
    bad = tmp_path / "dynamic.nii.gz"
    arr = np.linspace(-1000, 1000, 3 * 8 * 16 * 16).reshape(3, 8, 16, 16).astype(np.int16)
    write_nifti(arr, bad, spacing=(1, 1, 1, 1))
    _expect_failure(lambda: run(bad, good, out), bad, "found a 4D image", out)


@pytest.mark.parametrize("run", ENTRY_POINTS)
def test_mr_like_volume(tmp_path, out, good, run):
    bad = tmp_path / "t1.nii.gz"
    rng = np.random.default_rng(0)
    write_nifti(rng.uniform(0, 3000, (40, 48, 48)).astype(np.int16), bad, spacing=SPACING)
    _expect_failure(lambda: run(bad, good, out), bad, r"does not look like CT in Hounsfield units: no air.*min 0", out)


def test_raw_unsigned_ct_gets_a_rescale_hint(tmp_path, out, good):
    bad = tmp_path / "raw.nii.gz"
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(good[0]))).astype(np.int32) + 1024
    write_nifti(np.clip(raw, 0, None).astype(np.uint16), bad, spacing=SPACING)
    _expect_failure(lambda: _run_preprocess(bad, good, out), bad, "subtract 1024", out)


@pytest.mark.parametrize("run", ENTRY_POINTS)
def test_constant_volume(tmp_path, out, good, run):
    bad = tmp_path / "constant.nii.gz"
    write_nifti(np.full((20, 20, 20), -1000, np.int16), bad, spacing=SPACING)
    _expect_failure(lambda: run(bad, good, out), bad, "constant", out)


@pytest.mark.parametrize("run", ENTRY_POINTS)
def test_empty_volume(tmp_path, out, good, run):
    bad = tmp_path / "empty.nii.gz"
    write_nifti(np.linspace(-1000, 500, 400).reshape(1, 20, 20).astype(np.int16), bad, spacing=SPACING)
    _expect_failure(lambda: run(bad, good, out), bad, r"empty or flat: size \(20, 20, 1\)", out)


@pytest.mark.parametrize(
    "variant, problem",
    [
        ("size", r"size \(128, 96, 90\) vs \(128, 96, 89\)"),
        ("spacing", r"spacing \(2\.5, 2\.5, 2\.5\) vs \(2\.5, 2\.5, 3\)"),
    ],
)
def test_mask_of_different_geometry(tmp_path, out, good, variant, problem):
    mask = sitk.ReadImage(str(good[1]))
    arr = sitk.GetArrayFromImage(mask)
    bad = tmp_path / f"mask_{variant}.nii.gz"
    if variant == "size":
        write_nifti(arr[:-1], bad, spacing=SPACING, origin=mask.GetOrigin())
    else:
        write_nifti(arr, bad, spacing=(2.5, 2.5, 3.0), origin=mask.GetOrigin())
    _expect_failure(
        lambda: _run_preprocess(good[0], good, out, mask=bad),
        bad,
        "voxel grid differs.*" + problem,
        out,
        error=GeometryError,
    )


def test_mask_with_labels_above_118(tmp_path, out, good):
    mask = sitk.ReadImage(str(good[1]))
    arr = sitk.GetArrayFromImage(mask)
    arr[0, 0, 0] = 200
    bad = tmp_path / "mask200.nii.gz"
    write_nifti(arr, bad, spacing=SPACING, origin=mask.GetOrigin())
    _expect_failure(
        lambda: _run_preprocess(good[0], good, out, mask=bad),
        bad,
        r"label values must lie in 0\.\.118, found 0\.\.200",
        out,
    )


@pytest.mark.parametrize("run", ENTRY_POINTS)
def test_missing_input_file(tmp_path, out, good, run):
    bad = tmp_path / "nowhere" / "ct.nii.gz"
    _expect_failure(lambda: run(bad, good, out), bad, "file not found", out)


def test_missing_mask_file(tmp_path, out, good):
    bad = tmp_path / "no_mask.nii.gz"
    _expect_failure(lambda: _run_preprocess(good[0], good, out, mask=bad), bad, "file not found", out)


def test_empty_lesion_mask_is_refused_in_a_lesion_dataset_and_means_healthy_elsewhere(tmp_path, good):
    image, mask = good
    empty = tmp_path / "lesion.nii.gz"
    ref = sitk.ReadImage(str(image))
    write_nifti(np.zeros(sitk.GetArrayFromImage(ref).shape, np.uint8), empty, spacing=ref.GetSpacing(),
                origin=ref.GetOrigin())  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    run = lambda lesion_dataset: preprocess_case(image, mask, out / "case", case="c", dataset="d", regions=["chest"],
                                                 cfg=PRE, lesion_path=empty, lesion_dataset=lesion_dataset)  # noqa: E731
    _expect_failure(lambda: run(True), empty, r"empty lesion mask \(no voxel > 0\) in a lesion dataset", out)
    (meta,) = run(False)  # e.g. AutoPET's negative controls: no lesion
    assert meta["source_lesion"] is None and not list((out / "case").glob("*_lesion.npy"))
