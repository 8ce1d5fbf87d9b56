"""Fetching datasets (generated, direct, manual) and listing their cases into the case index."""

from __future__ import annotations

import dataclasses
import io
import sys
import tarfile
import types
from pathlib import Path

import pytest

from meddiff.config import PhantomConfig
from meddiff.data import fetch as fetch_mod
from meddiff.data.fetch import CaseFiles, fetch_and_index, fetch_dataset, list_cases, read_case_index, write_case_index
from meddiff.data.registry import DatasetSpec, RemoteFile, load_registry
from meddiff.errors import ConfigError, DatasetMissingError

REGISTRY = load_registry(Path(__file__).resolve().parents[2] / "config" / "datasets.yaml")
PHANTOM = PhantomConfig(cases_per_region={"han": 1, "chest": 1, "abdomen": 0, "wholebody": 0},
                        lesion_fraction=0.5, spacing_jitter=False)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------- manual
def test_missing_manual_dataset_says_where_to_get_it_and_where_to_put_it(tmp_path):
    spec = REGISTRY["btcv"]
    with pytest.raises(DatasetMissingError) as err:
        fetch_dataset(spec, tmp_path / "data", phantom=PHANTOM, seed=0)
    message = str(err.value)
    folder = str((tmp_path / "data" / "btcv").resolve())
    assert spec.title in message and "registration" in message
    assert spec.homepage in message and folder in message and spec.image_glob in message
    assert f"{folder}/RawData/Training/img" in message, "placement should name the real folder, not <root>"


def test_manual_dataset_folder_without_matching_images_is_still_missing(tmp_path):
    touch(tmp_path / "btcv" / "RawData" / "Training" / "img" / "notes.txt")
    with pytest.raises(DatasetMissingError, match="btcv"):
        fetch_dataset(REGISTRY["btcv"], tmp_path, phantom=PHANTOM, seed=0)


def test_placed_manual_dataset_is_indexed(tmp_path):
    for i in (1, 2, 3):
        touch(tmp_path / "btcv" / "RawData" / "Training" / "img" / f"img{i:04d}.nii.gz")
    index = tmp_path / "index" / "btcv.tsv"

    cases = fetch_and_index(REGISTRY["btcv"], tmp_path, index, phantom=PHANTOM, seed=0)

    assert [c.case for c in cases] == ["img0001", "img0002", "img0003"]
    assert read_case_index(index) == cases


# --------------------------------------------------------------------------------------------- list_cases
def test_dicom_series_folders_become_cases(tmp_path):
    folder = tmp_path / "chaos"
    for patient in ("1", "10", "2"):
        for k in range(3):
            touch(folder / "Train_Sets" / "CT" / patient / "DICOM_anon" / f"i{k:04d},0000b.dcm")
    touch(folder / "Train_Sets" / "CT" / "5" / "DICOM_anon")  # a stray file named like a series: not a case
    (folder / "Train_Sets" / "CT" / "7" / "DICOM_anon").mkdir(parents=True)  # an empty series: not a case
    touch(folder / "Train_Sets" / "CT" / ".DS_Store" / "DICOM_anon" / "x.dcm")  # hidden: ignored

    cases = list_cases(REGISTRY["chaos"], folder)

    assert [c.case for c in cases] == ["1", "10", "2"]
    assert all(c.image.is_dir() and c.lesion is None for c in cases)
    assert cases[0].image == folder / "Train_Sets" / "CT" / "1" / "DICOM_anon"


def test_mayo_patient_folders_become_cases(tmp_path):
    folder = tmp_path / "mayo2016"
    for patient in ("L067", "L096"):
        touch(folder / patient / "full_1mm" / "a.IMA")
        touch(folder / patient / "quarter_1mm" / "a.IMA")
    assert [c.case for c in list_cases(REGISTRY["mayo2016"], folder)] == ["L067", "L096"]


def test_nifti_cases_are_paired_with_lesions_and_macos_companions_skipped(tmp_path):
    folder = tmp_path / "msd_lung"
    for case in ("lung_001", "lung_003", "lung_010"):
        touch(folder / "Task06_Lung" / "imagesTr" / f"{case}.nii.gz")
    touch(folder / "Task06_Lung" / "imagesTr" / "._lung_001.nii.gz")
    touch(folder / "Task06_Lung" / "labelsTr" / "lung_003.nii.gz")
    touch(folder / "Task06_Lung" / "labelsTr" / "._lung_003.nii.gz")

    cases = list_cases(REGISTRY["msd_lung"], folder)

    assert [c.case for c in cases] == ["lung_001", "lung_003", "lung_010"]
    assert [c.lesion for c in cases] == [None, folder / "Task06_Lung" / "labelsTr" / "lung_003.nii.gz", None]


def test_phantom_cases_are_paired_with_their_shipped_labels(tmp_path):
    folder = tmp_path / "phantom"
    for case in ("phantom_chest_000", "phantom_han_000"):
        touch(folder / "images" / f"{case}.nii.gz")
    touch(folder / "labels" / "phantom_chest_000.nii.gz")
    touch(folder / "cohort.tsv", b"case\tregion\nphantom_chest_000\tchest\nphantom_han_000\than\n")

    cases = list_cases(REGISTRY["phantom"], folder)

    assert [c.labels for c in cases] == [folder / "labels" / "phantom_chest_000.nii.gz", None]


def test_case_ids_from_nested_layouts_are_sanitised_and_paired(tmp_path):
    folder = tmp_path / "autopet"
    patient = folder / "FDG-PET-CT-Lesions" / "PETCT_0af7ffe12a"
    study = patient / "08-12-2005-NA-PET-CT Ganzkoerper  primaer mit KM-96698"
    touch(study / "CT.nii.gz")
    touch(study / "SEG.nii.gz")
    touch(folder / "hanseg_like" / "ignored.nii.gz")

    (case,) = list_cases(REGISTRY["autopet"], folder)

    assert case.case == "PETCT_0af7ffe12a_08-12-2005-NA-PET-CT_Ganzkoerper_primaer_mit_KM-96698"
    assert case.lesion == study / "SEG.nii.gz"


def test_recursive_glob_gives_file_based_ids(tmp_path):
    folder = tmp_path / "hanseg"
    touch(folder / "HaN-Seg" / "set_1" / "case_01" / "case_01_IMG_CT.nrrd")
    touch(folder / "HaN-Seg" / "set_1" / "case_01" / "case_01_IMG_MR_T1.nrrd")
    touch(folder / "case_02" / "case_02_IMG_CT.nrrd")
    assert [c.case for c in list_cases(REGISTRY["hanseg"], folder)] == ["case_01", "case_02"]


def test_colliding_case_ids_are_an_error(tmp_path):
    spec = dataclasses.replace(REGISTRY["btcv"], image_glob="*/*.nii.gz")
    touch(tmp_path / "a" / "img 0001.nii.gz")
    touch(tmp_path / "a" / "img_0001.nii.gz")  # same id "a_img_0001" once the space is sanitised
    with pytest.raises(ConfigError, match="a_img_0001"):
        list_cases(spec, tmp_path)


def test_empty_folder_has_no_cases(tmp_path):
    with pytest.raises(DatasetMissingError, match="no images match"):
        list_cases(REGISTRY["msd_lung"], tmp_path)


def test_case_index_round_trip(tmp_path):
    cases = [
        CaseFiles("a", tmp_path / "a.nii.gz", None),
        CaseFiles("b", tmp_path / "b.nii.gz", tmp_path / "bl.nii.gz", "chest", tmp_path / "b_labels.nii.gz"),
    ]
    index = tmp_path / "idx" / "demo.tsv"
    write_case_index(index, "demo", cases)
    assert index.read_text().splitlines()[0].split("\t") == ["dataset", "case", "image", "lesion", "region", "labels"]
    assert read_case_index(index) == cases
    assert sorted(p.name for p in index.parent.iterdir()) == ["demo.tsv"]
    with pytest.raises(DatasetMissingError, match="meddiff fetch"):
        read_case_index(tmp_path / "nope.tsv")


# --------------------------------------------------------------------------------------------- generated
@pytest.fixture
def fake_phantom(monkeypatch):
    """Stand-in for meddiff.data.phantom.write_cohort: two tiny NIfTIs per call (one with a lesion)."""
    import nibabel as nib
    import numpy as np

    calls = []

    def write_cohort(folder, cases_per_region, *, lesion_fraction, spacing_jitter, seed, workers=1):
        calls.append((Path(folder), dict(cases_per_region), lesion_fraction, spacing_jitter, seed))
        for case in ("han_000", "chest_000"):
            for sub in ("images", "labels") + (("lesions",) if case == "han_000" else ()):
                (Path(folder) / sub).mkdir(parents=True, exist_ok=True)
                img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
                nib.save(img, Path(folder) / sub / f"{case}.nii.gz")
        (Path(folder) / "cohort.tsv").write_text("case\tregion\nhan_000\than\nchest_000\tchest\n")

    module = types.ModuleType("meddiff.data.phantom")
    module.write_cohort = write_cohort
    monkeypatch.setitem(sys.modules, "meddiff.data.phantom", module)
    return calls


def test_phantom_is_generated_once_per_settings(tmp_path, fake_phantom):
    spec = REGISTRY["phantom"]
    index = tmp_path / "phantom.tsv"

    cases = fetch_and_index(spec, tmp_path / "data", index, phantom=PHANTOM, seed=7)

    assert [(c.case, c.lesion is not None) for c in cases] == [("chest_000", False), ("han_000", True)]
    assert len(fake_phantom) == 1 and fake_phantom[0][1:] == (PHANTOM.cases_per_region, 0.5, False, 7)
    assert not list((tmp_path / "data").glob(".phantom.*")), "temporary cohort folder left behind"

    fetch_dataset(spec, tmp_path / "data", phantom=PHANTOM, seed=7)
    assert len(fake_phantom) == 1, "same settings: the cohort must not be regenerated"

    fetch_dataset(spec, tmp_path / "data", phantom=PHANTOM, seed=8)
    assert len(fake_phantom) == 2, "a new seed must regenerate the cohort"


def test_interrupted_phantom_generation_leaves_no_cohort(tmp_path, monkeypatch):
    def dying_write_cohort(folder, *args, **kwargs):
        touch(Path(folder) / "images" / "han_000.nii.gz")
        raise KeyboardInterrupt

    module = types.ModuleType("meddiff.data.phantom")
    module.write_cohort = dying_write_cohort
    monkeypatch.setitem(sys.modules, "meddiff.data.phantom", module)
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset(REGISTRY["phantom"], tmp_path, phantom=PHANTOM, seed=0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------- direct
def test_direct_dataset_is_downloaded_extracted_and_indexed(tmp_path, monkeypatch):
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tf:
        for name in ("Task06_Lung/imagesTr/lung_001.nii.gz", "Task06_Lung/labelsTr/lung_001.nii.gz",
                     "Task06_Lung/imagesTr/lung_002.nii.gz", "Task06_Lung/imagesTr/._lung_002.nii.gz"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
    downloads = []

    def fake_download(url, dest, *, sha256, md5):
        downloads.append((url, Path(dest), sha256, md5))
        touch(Path(dest), tar_bytes.getvalue())
        return Path(dest)

    monkeypatch.setattr(fetch_mod, "download", fake_download)
    spec = REGISTRY["msd_lung"]
    root = tmp_path / "data"

    cases = fetch_and_index(spec, root, tmp_path / "msd_lung.tsv", phantom=PHANTOM, seed=0)

    remote = spec.files[0]
    assert downloads == [(remote.url, root / "msd_lung" / "downloads" / "Task06_Lung.tar", None, remote.md5)]
    assert [(c.case, c.lesion is not None) for c in cases] == [("lung_001", True), ("lung_002", False)]

    # The archive may be deleted after extraction to save space: a rerun trusts the .extracted marker.
    (root / "msd_lung" / "downloads" / "Task06_Lung.tar").unlink()
    fetch_dataset(spec, root, phantom=PHANTOM, seed=0)
    assert len(downloads) == 1


def test_direct_plain_file_is_not_extracted(tmp_path, monkeypatch):
    spec = dataclasses.replace(
        REGISTRY["msd_lung"],
        files=(RemoteFile("https://example.org/ct.nii.gz", "ct.nii.gz", "0" * 64, None, "none"),),
        image_glob="downloads/*.nii.gz",
        lesion_glob=None,
    )
    monkeypatch.setattr(fetch_mod, "download", lambda url, dest, **kw: touch(Path(dest), b"\x1f\x8b"))
    cases = fetch_and_index(spec, tmp_path, tmp_path / "i.tsv", phantom=PHANTOM, seed=0)
    assert [c.case for c in cases] == ["ct"]
    assert isinstance(spec, DatasetSpec)


def test_region_table_gives_each_case_its_own_region(tmp_path):
    """A dataset that mixes regions (the phantom cohort) names each case's region in its region table."""
    spec = REGISTRY["phantom"]
    folder = tmp_path / "phantom"
    (folder / "images").mkdir(parents=True)
    for case in ("phantom_chest_000", "phantom_wholebody_000"):
        (folder / "images" / f"{case}.nii.gz").write_bytes(b"x")
    (folder / "cohort.tsv").write_text("case\tregion\nphantom_chest_000\tchest\nphantom_wholebody_000\twholebody\n")
    cases = {c.case: c.region for c in list_cases(spec, folder)}
    assert cases == {"phantom_chest_000": "chest", "phantom_wholebody_000": "wholebody"}
    (folder / "cohort.tsv").write_text("case\tregion\nphantom_chest_000\tchest\n")
    with pytest.raises(ConfigError, match="no region"):
        list_cases(spec, folder)
