"""Bad input as a user meets it: through `snakemake`, one bad case in a user's own dataset (a `manual` NIfTI
registry entry with shipped TotalSegmentator-space labels), or a bad config. Each run exits non-zero, prints one
line naming the file and the problem (in the rule's log or Snakemake's output), and leaves no output file.

Only the stage that must fail is run (the masks or preprocess target of the bad case; a dry run for config
problems). The unit-level versions are in tests/data/test_bad_input.py.
"""

from __future__ import annotations

import gzip
import re
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from ct_builders import synthetic_torso  # noqa: E402  (tests/data/ct_builders.py)

from test_workflow import ROOT, snakemake, tiny_config  # noqa: E402

RUN = "bad"
CASE = "case1"
SPACING = (5.0, 5.0, 5.0)
CUSTOM = {
    "name": "custom",
    "title": "A user's own CT dataset",
    "regions": ["chest"],
    "cases": 1,
    "tasks": ["pretrain"],
    "format": "nifti",
    "access": "manual",
    "homepage": "https://example.org/custom",
    "placement": "Put each CT as <root>/custom/images/<case>.nii.gz and its labels as labels/<case>.nii.gz.",
    "licence": "test data",
    "image_glob": "images/*.nii.gz",
    "label_glob": "labels/*.nii.gz",
    "lesion_glob": "lesions/*.nii.gz",
    "label_space": "totalsegmentator",
}


def _good_case() -> tuple[sitk.Image, sitk.Image]:
    """A small torso CT (45 x 48 x 64 voxels of 5 mm) and its label map (body = 118)."""
    torso = synthetic_torso(shape=(45, 48, 64), spacing=SPACING)
    labels = sitk.GetImageFromArray(np.where(sitk.GetArrayFromImage(torso.image) > -500, 118, 0).astype(np.uint8))
    labels.CopyInformation(torso.image)
    return torso.image, labels


def _with_array(like: sitk.Image, arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(like)
    return img


# --------------------------------------------------------------------------- corruptions: (image, labels, lesion)


def corrupt_gzip(folder: Path) -> Path:
    data = bytearray((folder / "images" / f"{CASE}.nii.gz").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # zeroed bytes inside the deflate stream
    (folder / "images" / f"{CASE}.nii.gz").write_bytes(bytes(data))
    return folder / "images" / f"{CASE}.nii.gz"


def truncated_nifti(folder: Path) -> Path:
    path = folder / "images" / f"{CASE}.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # a valid gzip of half the NIfTI
    return path


def image_2d(folder: Path) -> Path:
    path = folder / "images" / f"{CASE}.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[20]), str(path))
    return path


def image_4d(folder: Path) -> Path:
    path = folder / "images" / f"{CASE}.nii.gz"
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([arr, arr]), isVector=False), str(path))
    return path


def nan_voxels(folder: Path) -> Path:
    path = folder / "images" / f"{CASE}.nii.gz"
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[10:12] = np.nan
    sitk.WriteImage(_with_array(img, arr), str(path))
    return path


def mr_like(folder: Path) -> Path:
    path = folder / "images" / f"{CASE}.nii.gz"
    img = sitk.ReadImage(str(path))
    arr = np.random.default_rng(0).uniform(0, 3000, sitk.GetArrayFromImage(img).shape).astype(np.int16)
    sitk.WriteImage(_with_array(img, arr), str(path))
    return path


def _set_spacing(folder: Path, spacing) -> Path:
    for sub in ("images", "labels"):  # image and labels keep one grid: the spacing itself is the problem
        path = folder / sub / f"{CASE}.nii.gz"
        img = sitk.ReadImage(str(path))
        img.SetSpacing(spacing)
        sitk.WriteImage(img, str(path))
    return folder / "images" / f"{CASE}.nii.gz"


def spacing_above_10mm(folder: Path) -> Path:
    return _set_spacing(folder, (5.0, 5.0, 12.0))


def spacing_zero(folder: Path) -> Path:
    """pixdim[3] = 0 in the image's NIfTI header, patched in the raw bytes (SimpleITK refuses to write a zero
    spacing; nibabel and ITK both read it as 1 mm)."""
    path = folder / "images" / f"{CASE}.nii.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[88:92] = struct.pack("<f", 0.0)  # pixdim[3]: bytes 76 + 4 * 3 of the NIfTI-1 header
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def labels_other_grid(folder: Path) -> Path:
    path = folder / "labels" / f"{CASE}.nii.gz"
    img = sitk.ReadImage(str(path))
    img.SetSpacing((5.0, 5.0, 6.0))
    sitk.WriteImage(img, str(path))
    return path


def labels_above_118(folder: Path) -> Path:
    path = folder / "labels" / f"{CASE}.nii.gz"
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, 0] = 200
    sitk.WriteImage(_with_array(img, arr), str(path))
    return path


def lesion_other_grid(folder: Path) -> Path:
    img = sitk.ReadImage(str(folder / "images" / f"{CASE}.nii.gz"))
    lesion = sitk.Image(img.GetSize()[0], img.GetSize()[1], img.GetSize()[2] - 3, sitk.sitkUInt8)
    lesion.SetSpacing(img.GetSpacing())
    lesion.SetOrigin(img.GetOrigin())
    (folder / "lesions").mkdir(exist_ok=True)
    sitk.WriteImage(lesion, str(folder / "lesions" / f"{CASE}.nii.gz"))
    return folder / "lesions" / f"{CASE}.nii.gz"


def empty_lesion_mask(folder: Path) -> Path:
    """A lesion dataset's case whose lesion file holds no lesion (a healthy case must have no lesion file)."""
    img = sitk.ReadImage(str(folder / "images" / f"{CASE}.nii.gz"))
    (folder / "lesions").mkdir(exist_ok=True)
    path = folder / "lesions" / f"{CASE}.nii.gz"
    sitk.WriteImage(_with_array(img, np.zeros(sitk.GetArrayFromImage(img).shape, np.uint8)), str(path))
    return path


def mixed_dicom_series(folder: Path) -> Path:
    """The case is a DICOM folder holding two full series of the same study (e.g. two doses)."""
    img = sitk.ReadImage(str(folder / "images" / f"{CASE}.nii.gz"))
    (folder / "images" / f"{CASE}.nii.gz").unlink()
    series = folder / "images" / CASE
    series.mkdir()
    arr = sitk.GetArrayFromImage(img)
    for s, uid in enumerate(("1.2.826.0.1.3680043.2.1125.101", "1.2.826.0.1.3680043.2.1125.102")):
        for k, plane in enumerate(arr):
            sl = sitk.GetImageFromArray(plane[None] + s)
            sl.SetSpacing(SPACING)
            writer = sitk.ImageFileWriter()
            writer.KeepOriginalImageUIDOn()
            for tag, value in {
                "0008|0060": "CT", "0020|000d": "1.2.826.0.1.3680043.2.1125.1", "0020|000e": uid,
                "0020|0013": str(k + 1), "0020|0032": f"0\\0\\{k * SPACING[2]}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0028|0030": f"{SPACING[1]}\\{SPACING[0]}", "0018|0050": str(SPACING[2]),
            }.items():
                sl.SetMetaData(tag, value)
            writer.SetFileName(str(series / f"{s}_{k:03d}.dcm"))
            writer.Execute(sl)
    return series


# (corruption, stage whose target is built, problem the one line must state)
CASES = {
    "corrupt_gzip": (corrupt_gzip, "masks", r"corrupt gzip|not a valid NIfTI"),
    "truncated_nifti": (truncated_nifti, "masks", r"truncated NIfTI"),
    "2d_image": (image_2d, "masks", r"expected a 3D CT volume, found a 2D image"),
    "4d_image": (image_4d, "masks", r"found a 4D image"),
    "nan_voxels": (nan_voxels, "masks", r"voxels are NaN or infinite"),
    "mr_like": (mr_like, "masks", r"does not look like CT in Hounsfield units"),
    "spacing_above_10mm": (spacing_above_10mm, "masks", r"voxel spacing \(5, 5, 12\) mm is outside"),
    "spacing_zero": (spacing_zero, "masks", r"voxel spacing \(5\.0, 5\.0, 0\.0\) mm in the NIfTI header is zero"),
    "labels_on_another_grid": (labels_other_grid, "masks", r"voxel grid differs.*spacing"),
    "labels_above_118": (labels_above_118, "masks", r"label values must lie in 0\.\.118, found 0\.\.200"),
    "lesion_on_another_grid": (lesion_other_grid, "preprocess", r"voxel grid differs.*size"),
    "dicom_mixing_two_series": (mixed_dicom_series, "masks", r"folder mixes 2 DICOM series"),
    "empty_lesion_mask": (empty_lesion_mask, "preprocess", r"empty lesion mask \(no voxel > 0\) in a lesion dataset"),
}
# registry fields that differ from CUSTOM for a case (a DICOM dataset lists series folders)
REGISTRY = {"dicom_mixing_two_series": {"format": "dicom", "image_glob": "images/*"},
            "empty_lesion_mask": {"tasks": ["pretrain", "lesion"]}}


def _registry(tmp_path: Path, **fields) -> Path:
    spec = {"datasets": [{**CUSTOM, **fields}]}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _config(tmp_path: Path, registry: dict | None = None, **overrides) -> Path:
    """The tiny workflow on the `custom` dataset only (reference masks from its shipped labels)."""
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text(encoding="utf-8"))
    cfg["run"] = RUN
    cfg["data"]["registry"] = str(_registry(tmp_path, **(registry or {})))
    cfg["data"]["datasets"] = ["custom"]
    cfg["data"]["task_datasets"] = []
    cfg["denoising"]["dataset"] = "custom"
    cfg["anomaly"]["dataset"] = "custom"
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def good_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    image, labels = _good_case()
    for sub, img in (("images", image), ("labels", labels)):
        (folder / sub).mkdir()
        sitk.WriteImage(img, str(folder / sub / f"{CASE}.nii.gz"))
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _one_line(text: str, bad: Path, problem: str) -> str:
    """The single line of ``text`` that names ``bad`` and states ``problem``."""
    lines = [ln for ln in text.splitlines() if str(bad) in ln and re.search(problem, ln)]
    assert len(lines) == 1, f"expected one line naming {bad} and /{problem}/:\n{text[-3000:]}"
    return lines[0]


def _common(tmp_path: Path, config: Path) -> list[str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(config)]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_case_fails_its_stage_with_one_line_and_no_output(tmp_path, good_case, name):
    corrupt, stage, problem = CASES[name]
    config = _config(tmp_path, REGISTRY.get(name))
    folder = tmp_path / "raw" / "custom"
    shutil.copytree(good_case, folder)
    bad = corrupt(folder)
    results = tmp_path / "work" / "results" / RUN
    target = f"results/{RUN}/masks/custom/{CASE}.nii.gz" if stage == "masks" else f"results/{RUN}/cache/custom/{CASE}"
    proc = snakemake("--cores", "1", target, *_common(tmp_path, config), check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    log = results / "logs" / stage / "custom" / f"{CASE}.log"
    line = _one_line(log.read_text(encoding="utf-8"), bad, problem)
    assert line.startswith(f"meddiff {stage}: error: "), line
    assert "Traceback" not in log.read_text(encoding="utf-8")
    # nothing of the failed stage's output, finished-looking or temporary (.<name>.part*), is left
    left = [f for f in _files(results) if f.startswith(f"{stage if stage == 'masks' else 'cache'}/custom/")]
    assert left == [], f"output left behind: {left}"
    if stage == "preprocess":  # the masks stage before it succeeded: the failure is preprocessing's own
        assert (results / "masks" / "custom" / f"{CASE}.nii.gz").is_file()


def test_good_case_passes_the_same_stages(tmp_path, good_case):
    """Control: the uncorrupted case goes through masks and preprocess (so the failures above are the input's)."""
    config = _config(tmp_path)
    shutil.copytree(good_case, tmp_path / "raw" / "custom")
    snakemake("--cores", "1", f"results/{RUN}/cache/custom/{CASE}", *_common(tmp_path, config))
    assert (tmp_path / "work" / "results" / RUN / "cache" / "custom" / CASE).is_dir()


# (config overrides, the words the one line must contain)
CONFIG_CASES = {
    "unknown_key": ({"training.stpes": 10}, [r"stpes"]),
    "wrong_type": ({"training.steps": "ten"}, [r"'ten' is not of type 'integer'"]),
    "misspelt_dataset": ({"data.datasets": ["cutsom"]}, [r"cutsom", r"custom"]),
}


@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_bad_config_stops_snakemake_before_any_job(tmp_path, name):
    overrides, words = CONFIG_CASES[name]
    config = _config(tmp_path, **overrides)
    proc = snakemake("-n", *_common(tmp_path, config), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert any(all(re.search(w, ln) for w in words) for ln in out.splitlines()), out[-3000:]
    assert not (tmp_path / "work" / "results").exists(), _files(tmp_path / "work")


def test_missing_manual_dataset_folder_fails_fetch_naming_where_to_put_it(tmp_path):
    config = _config(tmp_path)  # no raw/custom folder at all
    proc = snakemake("--cores", "1", f"results/{RUN}/datasets/custom.tsv", *_common(tmp_path, config), check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    results = tmp_path / "work" / "results" / RUN
    log = (results / "logs" / "fetch" / "custom.log").read_text(encoding="utf-8")
    line = _one_line(log, (tmp_path / "raw" / "custom").resolve(), r"example\.org/custom")
    assert line.startswith("meddiff fetch: error: ") and "images/<case>.nii.gz" in line, line
    assert [f for f in _files(results) if f.startswith("datasets/")] == []
