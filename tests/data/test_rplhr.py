"""RPLHR-CT loader on a tiny fixture in the dataset's layout (<split>/1mm and <split>/5mm NIfTI pairs)."""

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from meddiff.data.rplhr import RplhrCase, list_rplhr_cases, load_rplhr_pair
from meddiff.data.thick_slices import slab_average
from meddiff.errors import DatasetMissingError, GeometryError, InputImageError

THICK = 6
THIN = 5 * (THICK - 1) + 1  # thick slice k centred on thin slice 5k


def _write(path: Path, arr: np.ndarray, spacing_zyx=(1.0, 0.7, 0.7)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    sitk.WriteImage(img, str(path))


def _thin_hu(seed: int, depth: int = THIN, size: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hu = np.full((depth, size, size), -1000.0)
    hu[:, 2:-2, 2:-2] = 40.0 + rng.normal(0, 30, (depth, size - 4, size - 4))
    return hu


def _thick_from(thin: np.ndarray) -> np.ndarray:
    """Thick slice k = mean of thin 5k-2 .. 5k+2 (clipped at the ends), as a scanner would reconstruct."""
    return np.stack([thin[max(0, 5 * k - 2) : 5 * k + 3].mean(axis=0) for k in range(THICK)])


def _pair(root: Path, split: str, case: str, seed: int, **kw) -> None:
    thin = _thin_hu(seed)
    _write(root / split / "1mm" / f"{case}.nii.gz", kw.get("thin", thin), kw.get("thin_spacing", (1.0, 0.7, 0.7)))
    _write(
        root / split / "5mm" / f"{case}.nii.gz",
        kw.get("thick", _thick_from(thin)),
        kw.get("thick_spacing", (5.0, 0.7, 0.7)),
    )


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "RPLHR-CT"
    _pair(root, "test", "CT00000101", 1)
    _pair(root, "test", "CT00000100", 0)
    return root


def test_lists_cases_of_a_split_sorted(root):
    cases = list_rplhr_cases(root / "test")
    assert [c.case for c in cases] == ["CT00000100", "CT00000101"]
    assert cases[0].thin == root / "test" / "1mm" / "CT00000100.nii.gz"
    assert cases[0].thick == root / "test" / "5mm" / "CT00000100.nii.gz"


def test_reads_a_pair_with_its_alignment(root):
    case = list_rplhr_cases(root / "test")[0]
    pair = load_rplhr_pair(case)
    assert pair.thin.shape == (THIN, 12, 12) and pair.thick.shape == (THICK, 12, 12)
    assert pair.thin.dtype == np.float32
    assert pair.thin_spacing == pytest.approx((1.0, 0.7, 0.7)) and pair.thick_spacing == pytest.approx((5.0, 0.7, 0.7))
    assert (pair.factor, pair.offset, pair.thick_start, pair.intensity) == (5, 3, 1, "hu")
    np.testing.assert_allclose(pair.thin, _thin_hu(0), atol=1e-3)
    # the whole slabs are what slab averaging of the thin volume gives
    np.testing.assert_allclose(pair.whole_slabs(), slab_average(pair.thin, pair.factor, pair.offset), rtol=1e-5)
    assert pair.whole_slabs().shape[0] == THICK - 2
    np.testing.assert_array_equal(pair.thick_centres(), 5 * np.arange(THICK))


def test_missing_counterpart_is_named(root):
    (root / "test" / "5mm" / "CT00000101.nii.gz").unlink()
    with pytest.raises(DatasetMissingError, match=r"1mm/CT00000101\.nii\.gz: no thick counterpart .*5mm/CT00000101"):
        list_rplhr_cases(root / "test")
    _write(root / "test" / "5mm" / "CT00000101.nii.gz", np.zeros((THICK, 12, 12)) - 1000)
    _write(root / "test" / "5mm" / "CT00000102.nii.gz", np.zeros((THICK, 12, 12)) - 1000)
    with pytest.raises(DatasetMissingError, match=r"5mm/CT00000102\.nii\.gz: no thin counterpart"):
        list_rplhr_cases(root / "test")


def test_missing_folder_says_where_to_get_the_data(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"test/1mm: RPLHR-CT folder not found.*zenodo"):
        list_rplhr_cases(tmp_path / "test")


def _case(root: Path, name: str) -> RplhrCase:
    return RplhrCase(name, root / "val" / "1mm" / f"{name}.nii.gz", root / "val" / "5mm" / f"{name}.nii.gz")


def test_mismatched_in_plane_size(tmp_path):
    _pair(tmp_path, "val", "a", 0, thick=np.full((THICK, 10, 12), -1000.0))
    with pytest.raises(GeometryError, match=r"1mm/a\.nii\.gz and .*5mm/a\.nii\.gz: in-plane size differs"):
        load_rplhr_pair(_case(tmp_path, "a"))


def test_mismatched_in_plane_spacing(tmp_path):
    _pair(tmp_path, "val", "a", 0, thick_spacing=(5.0, 0.8, 0.7))
    with pytest.raises(GeometryError, match="in-plane spacing differs"):
        load_rplhr_pair(_case(tmp_path, "a"))


@pytest.mark.parametrize("thin_z, thick_z", [(1.0, 3.0), (0.625, 3.125)])
def test_wrong_slice_spacing(tmp_path, thin_z, thick_z):
    _pair(tmp_path, "val", "a", 0, thin_spacing=(thin_z, 0.7, 0.7), thick_spacing=(thick_z, 0.7, 0.7))
    with pytest.raises(GeometryError, match="wrong slice spacing"):
        load_rplhr_pair(_case(tmp_path, "a"))


def test_headers_without_slice_spacing_get_the_nominal_one(tmp_path, caplog):
    _pair(tmp_path, "val", "a", 0, thin_spacing=(1.0, 1.0, 1.0), thick_spacing=(1.0, 1.0, 1.0))
    with caplog.at_level(logging.WARNING):
        pair = load_rplhr_pair(_case(tmp_path, "a"))
    assert pair.thin_spacing == (1.0, 1.0, 1.0) and pair.thick_spacing == (5.0, 1.0, 1.0)
    assert "nominal" in caplog.text


@pytest.mark.parametrize("depth", [THIN - 3, THIN + 3, 5 * THICK + 2])
def test_thin_depth_must_fit_the_thick_stack(tmp_path, depth):
    _pair(tmp_path, "val", "a", 0, thin=_thin_hu(0, depth))
    with pytest.raises(GeometryError, match=f"{depth} thin slices do not fit {THICK} thick slices"):
        load_rplhr_pair(_case(tmp_path, "a"))


@pytest.mark.parametrize("depth", [THIN - 2, THIN + 2])
def test_thin_depth_within_half_a_slab_is_accepted(tmp_path, depth):
    _pair(tmp_path, "val", "a", 0, thin=_thin_hu(0, depth))
    pair = load_rplhr_pair(_case(tmp_path, "a"))
    assert pair.whole_slabs().shape[0] == (depth - 3) // 5


def test_unit_interval_volumes(tmp_path):
    thin = (_thin_hu(0) + 1024.0) / 2048.0
    thin = np.clip(thin, 0, 1)
    _pair(tmp_path, "val", "a", 0, thin=thin, thick=_thick_from(thin))
    assert load_rplhr_pair(_case(tmp_path, "a")).intensity == "unit"


def test_unrecognised_or_mixed_intensities(tmp_path):
    raw = _thin_hu(0) + 1024.0  # stored without rescale: 0 .. ~1100
    _pair(tmp_path, "val", "a", 0, thin=raw, thick=_thick_from(raw))
    with pytest.raises(InputImageError, match=r"1mm/a\.nii\.gz: values span .* neither HU"):
        load_rplhr_pair(_case(tmp_path, "a"))
    thin = _thin_hu(0)
    _pair(tmp_path, "val", "b", 0, thin=thin, thick=np.clip((_thick_from(thin) + 1024) / 2048, 0, 1))
    with pytest.raises(InputImageError, match="one volume is in HU, the other on"):
        load_rplhr_pair(_case(tmp_path, "b"))


def test_unreadable_file(tmp_path):
    _pair(tmp_path, "val", "a", 0)
    (tmp_path / "val" / "5mm" / "a.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InputImageError, match=r"5mm/a\.nii\.gz"):
        load_rplhr_pair(_case(tmp_path, "a"))
