"""The dataset registry: the shipped file matches the paper's Tables 1-2, and mistakes are named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meddiff.data.registry import dataset_spec, load_registry, require_reference_labels
from meddiff.errors import ConfigError

REGISTRY = Path(__file__).resolve().parents[2] / "config" / "datasets.yaml"

TABLE_1 = {  # name: (region, cases)
    "structseg": ("han", 50), "instance2022": ("han", 130), "hanseg": ("han", 42), "segrap2023": ("han", 140),
    "segthor": ("chest", 40), "ct_rate": ("chest", 1000),
    "abdomenct1k": ("abdomen", 1062), "amos22": ("abdomen", 500), "btcv": ("abdomen", 30), "chaos": ("abdomen", 20),
    "word": ("abdomen", 120),
    "totalsegmentator": ("wholebody", 1228), "autopet": ("wholebody", 1014),
}
TABLE_2 = {  # name: (task, cases)
    "mayo2016": ("denoising", 10), "bmad_liver": ("anomaly", 3201), "rplhr_ct": ("super_resolution", 250),
    "msd_lung": ("lesion", 63), "msd_liver": ("lesion", 131), "med_ln": ("lesion", 90), "abd_ln": ("lesion", 86),
}


@pytest.fixture(scope="module")
def registry():
    return load_registry(REGISTRY)


def test_shipped_registry_has_every_paper_dataset_with_its_case_count(registry):
    assert set(registry) == set(TABLE_1) | set(TABLE_2) | {"phantom"}
    for name, (region, cases) in TABLE_1.items():
        spec = registry[name]
        assert spec.regions == (region,) and spec.cases == cases and "pretrain" in spec.tasks, name
    for name, (task, cases) in TABLE_2.items():
        assert registry[name].cases == cases and task in registry[name].tasks, name
    # The paper's totals: 5,376 volumes = 362 HaN + 1,040 chest + 1,732 abdomen + 2,242 whole body.
    regions = ("han", "chest", "abdomen", "wholebody")
    per_region = {r: sum(c for reg, c in TABLE_1.values() if reg == r) for r in regions}
    assert per_region == {"han": 362, "chest": 1040, "abdomen": 1732, "wholebody": 2242}
    assert registry["bmad_liver"].case_unit == "slices" and registry["mayo2016"].format == "dicom"
    assert registry["chaos"].format == "dicom"


def test_shipped_registry_access_is_actionable(registry):
    phantom = registry["phantom"]
    assert phantom.access == "generated" and phantom.cases is None and phantom.lesion_glob
    for spec in registry.values():
        if spec.access == "manual":
            assert spec.homepage.startswith("http") and spec.placement, spec.name
        if spec.access == "direct":
            assert all(f.sha256 or f.md5 for f in spec.files), spec.name
    assert registry["msd_lung"].access == "direct" and registry["msd_lung"].lesion_glob


def write_registry(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"datasets": entries}))
    return path


def entry(**overrides) -> dict:
    base = {
        "name": "demo", "title": "Demo", "regions": ["chest"], "cases": 3, "tasks": ["pretrain"], "format": "nifti",
        "access": "manual", "homepage": "https://example.org/demo", "placement": "put it there", "licence": "CC0",
        "image_glob": "images/*.nii.gz",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_minimal_entry_loads(tmp_path):
    spec = load_registry(write_registry(tmp_path, [entry()]))["demo"]
    assert spec.case_unit == "volumes" and spec.files == () and spec.lesion_glob is None


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"imag_glob": "x/*.nii.gz"}, "imag_glob"),  # typo'd key
        ({"image_glob": None}, "image_glob"),  # missing field
        ({"access": "torrent"}, "access"),
        ({"format": "jpeg"}, "format"),
        ({"regions": ["pelvis"]}, "regions"),
        ({"cases": 0}, "cases"),
        ({"homepage": None}, "homepage"),
        ({"image_glob": "../elsewhere/*.nii.gz"}, "image_glob"),
        ({"access": "direct", "files": [{"url": "https://x.org/a.zip", "filename": "a.zip", "archive": "zip"}]},
         "sha256"),
        ({"access": "direct", "files": [{"url": "https://x.org/a.zip", "filename": "a.zip", "archive": "zip",
                                         "sha256": "abc"}]}, "sha256"),
        ({"access": "direct", "files": [{"url": "https://x.org/a.zip", "filename": "../a.zip", "archive": "zip",
                                         "md5": "0" * 32}]}, "filename"),
    ],
)
def test_bad_entries_are_rejected_naming_entry_and_field(tmp_path, overrides, field):
    path = write_registry(tmp_path, [entry(**overrides)])
    with pytest.raises(ConfigError) as err:
        load_registry(path)
    message = str(err.value)
    assert str(path) in message and "'demo'" in message and repr(field) in message


def test_duplicate_names_and_unknown_lookups_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="defined twice"):
        load_registry(write_registry(tmp_path, [entry(), entry()]))
    registry = load_registry(write_registry(tmp_path, [entry()]))
    with pytest.raises(ConfigError, match="unknown dataset 'dmeo'.*demo"):
        dataset_spec(registry, "dmeo")


def test_reference_labels_need_a_label_glob_in_the_project_label_space(tmp_path, registry):
    require_reference_labels(registry["phantom"])  # ships TotalSegmentator-space labels
    with pytest.raises(ConfigError, match="own classes"):
        require_reference_labels(registry["structseg"])  # its labels are organs at risk, numbered its own way
    spec = load_registry(write_registry(tmp_path, [entry()]))["demo"]
    with pytest.raises(ConfigError, match="no label_glob"):
        require_reference_labels(spec)
    with pytest.raises(ConfigError, match="label_space"):
        load_registry(write_registry(tmp_path, [entry(label_glob="l/*.nii.gz", label_space="custom")]))
