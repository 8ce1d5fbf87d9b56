"""Image I/O: file formats, DICOM series folders, PNG stacks, atomic writes, truncated NIfTI detection."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from meddiff.data.io import read_image, read_png_stack, write_image
from meddiff.errors import InputImageError


def _volume(shape=(6, 7, 8), spacing=(0.8, 0.9, 2.5), origin=(-10.0, 20.0, 30.0)) -> sitk.Image:
    arr = (np.arange(np.prod(shape)).reshape(shape) % 2000 - 1000).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.nrrd", "ct.mha"])
def test_write_then_read_keeps_voxels_and_geometry(tmp_path, name):
    img = _volume()
    write_image(img, tmp_path / "sub" / name)
    back = read_image(tmp_path / "sub" / name)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), rtol=1e-6)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == [name]  # no temporary file left


def test_write_image_compresses_nii_gz(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((20, 20, 20), np.int16))
    write_image(img, tmp_path / "z.nii.gz")
    assert (tmp_path / "z.nii.gz").read_bytes()[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz"])
def test_truncated_nifti_is_rejected_instead_of_zero_filled(tmp_path, name):
    # ITK itself would return a volume whose second half is zeros.
    write_image(_volume(shape=(20, 30, 30)), tmp_path / name)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputImageError, match="truncated") as err:
        read_image(tmp_path / name)
    assert str(err.value).startswith(str(tmp_path / name))
    assert "\n" not in str(err.value)


def _write_dicom_series(folder, arr: np.ndarray, series_uid: str, spacing=(0.7, 0.7, 2.0)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(arr):
        s = sitk.GetImageFromArray(plane[None])
        s.SetSpacing(spacing)
        s.SetOrigin((0.0, 0.0, k * spacing[2]))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for tag, value in {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{k * spacing[2]}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
            "0018|0050": str(spacing[2]),
        }.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid[-3:]}_{k:03d}.dcm"))
        writer.Execute(s)


def test_dicom_folder_reads_the_largest_series(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(-1000, 1000, (9, 16, 12)).astype(np.int16)
    _write_dicom_series(tmp_path / "study", big, "1.2.826.0.1.3680043.2.1125.100")
    _write_dicom_series(tmp_path / "study", big[:3] + 5, "1.2.826.0.1.3680043.2.1125.200")  # scout-like series
    img = read_image(tmp_path / "study")
    assert img.GetSize() == (12, 16, 9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), big)
    assert img.GetSpacing()[2] == pytest.approx(2.0)


def test_folder_without_dicom_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(InputImageError, match="no DICOM series"):
        read_image(tmp_path / "empty")


def test_png_stack_is_sorted_by_natural_name_order(tmp_path):
    for k in range(12):  # slice_10 must come after slice_9
        plane = np.full((5, 6), k * 10, dtype=np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(plane), str(tmp_path / f"slice_{k}.png"))
    vol = read_png_stack(tmp_path, spacing=(0.7, 0.7, 5.0))
    arr = sitk.GetArrayFromImage(vol)
    assert arr.shape == (12, 5, 6)
    assert list(arr[:, 0, 0]) == [k * 10 for k in range(12)]
    assert vol.GetSpacing() == (0.7, 0.7, 5.0)


def test_png_stack_from_file_list_and_mismatched_slice(tmp_path):
    files = []
    for k, shape in enumerate([(5, 6), (5, 6), (4, 6)]):
        files.append(tmp_path / f"s{k}.png")
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, np.uint8)), str(files[-1]))
    assert read_png_stack(files[:2]).GetSize() == (6, 5, 2)
    with pytest.raises(InputImageError, match="s2.png"):
        read_png_stack(files)
