"""Mayo 2016 loader on a tiny synthetic DICOM fixture (two series per patient, AAPM layout)."""

import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from meddiff.data.mayo import MayoPair, list_mayo_pairs, load_pair
from meddiff.errors import DatasetMissingError, GeometryError


def _write_series(
    folder: Path, hu: np.ndarray, *, spacing=(0.7, 0.7, 1.0), origin=(-20.0, -20.0, 100.0), suffix=".IMA"
):
    """Write (Z, Y, X) HU as a CT DICOM series, one file per slice (SimpleITK's series-writing recipe)."""
    folder.mkdir(parents=True)
    uid = f"1.2.826.0.1.3680043.2.1125.{zlib.crc32(str(folder).encode())}"
    for k, sl in enumerate(hu.astype(np.int16)):
        img = sitk.GetImageFromArray(sl[None])  # int16 HU (rescale slope 1, intercept 0)
        img.SetSpacing(spacing)
        z = origin[2] + k * spacing[2]
        img.SetOrigin((origin[0], origin[1], z))
        tags = {
            "0008|0060": "CT",
            "0020|000e": uid,
            "0020|000d": uid + ".1",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:g}" for v in (origin[0], origin[1], z)),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": f"{spacing[2]:g}",
        }
        for key, value in tags.items():
            img.SetMetaData(key, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        dcm = folder / f"slice_{k:04d}.dcm"
        writer.SetFileName(str(dcm))
        writer.Execute(img)
        if suffix != ".dcm":
            dcm.rename(dcm.with_suffix(suffix))


def _phantom(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hu = np.full((4, 16, 16), -1000.0)
    hu[:, 3:13, 3:13] = 40.0 + rng.normal(0, 20, (4, 10, 10))
    return np.round(hu)


@pytest.fixture
def mayo_root(tmp_path) -> Path:
    root = tmp_path / "mayo2016"
    _write_series(root / "L067" / "full_1mm", _phantom(0))
    _write_series(root / "L067" / "quarter_1mm", _phantom(1))
    _write_series(root / "L096" / "full_3mm", _phantom(2), suffix=".dcm")
    _write_series(root / "L096" / "quarter_3mm", _phantom(3), suffix=".dcm")
    (root / "L109" / "full_1mm").mkdir(parents=True)  # incomplete patient: skipped
    return root


def test_lists_pairs_of_both_thicknesses_and_skips_incomplete(mayo_root):
    pairs = list_mayo_pairs(mayo_root)
    assert [p.patient for p in pairs] == ["L067", "L096"]
    assert pairs[0].full.name == "full_1mm" and pairs[0].quarter.name == "quarter_1mm"
    assert pairs[1].full.name == "full_3mm"


def test_prefers_1mm_when_both_thicknesses_exist(mayo_root):
    _write_series(mayo_root / "L067" / "full_3mm", _phantom(4))
    _write_series(mayo_root / "L067" / "quarter_3mm", _phantom(5))
    assert list_mayo_pairs(mayo_root)[0].full.name == "full_1mm"


def test_load_pair_returns_hu_on_one_grid(mayo_root):
    full, low = load_pair(list_mayo_pairs(mayo_root)[0])
    assert full.GetSize() == low.GetSize() == (16, 16, 4)
    np.testing.assert_allclose(full.GetSpacing(), (0.7, 0.7, 1.0), atol=1e-4)
    np.testing.assert_allclose(sitk.GetArrayFromImage(full), _phantom(0), atol=0.5)
    assert abs(sitk.GetArrayFromImage(low).mean() - _phantom(1).mean()) < 0.5


def test_geometry_mismatch_names_both_series(tmp_path):
    root = tmp_path / "mayo"
    _write_series(root / "L001" / "full_1mm", _phantom(0))
    _write_series(root / "L001" / "quarter_1mm", _phantom(1), spacing=(0.8, 0.8, 1.0))
    pair = list_mayo_pairs(root)[0]
    with pytest.raises(GeometryError) as err:
        load_pair(pair)
    msg = str(err.value)
    assert "full_1mm" in msg and "quarter_1mm" in msg and "spacing" in msg


def test_missing_folder_says_where_to_get_the_data(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        list_mayo_pairs(tmp_path / "nope")
    msg = str(err.value)
    assert "LDCT-and-Projection-data" in msg and "quarter_1mm" in msg


def test_folder_without_pairs_is_missing_data(tmp_path):
    (tmp_path / "L067" / "full_1mm").mkdir(parents=True)
    with pytest.raises(DatasetMissingError):
        list_mayo_pairs(tmp_path)


def test_pair_is_a_value_object():
    p = MayoPair("L067", Path("a"), Path("b"))
    assert p == MayoPair("L067", Path("a"), Path("b"))


def test_mayo_cases_split_patients_and_resample_to_the_model_spacing(mayo_root):
    from meddiff.errors import ConfigError
    from meddiff.tasks.denoising_cases import mayo_cases

    test, calib = mayo_cases(mayo_root, test_patients=["L096"], spacing_mm=(1.4, 1.4, 1.0))
    (t,) = list(test)
    (c,) = list(calib)
    assert (t.case, t.split, c.case, c.split) == ("L096", "test", "L067", "train")
    assert t.full_hu.shape == t.low_hu.shape == (4, 8, 8) and t.anatomy is None
    assert t.spacing_mm == pytest.approx((1.4, 1.4, 1.0))
    assert t.body_mask().any() and not t.body_mask().all()
    with pytest.raises(ConfigError, match="L999"):
        mayo_cases(mayo_root, test_patients=["L999"], spacing_mm=(1.0, 1.0, 1.0))
