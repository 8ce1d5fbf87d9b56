"""The dataset registry (``config/datasets.yaml``): one validated :class:`DatasetSpec` per dataset of the paper's
Tables 1-2 (plus the embedded ``phantom`` cohort).

A spec says what a dataset is (title, anatomical regions, cases used in the paper, tasks, file format), how to
get it (``access``: ``direct`` download with checksums, ``manual`` placement after registration, or
``generated``) and where its images are once on disk (``image_glob`` and friends, relative to
``<data root>/<name>/``).

Globs are :meth:`pathlib.Path.glob` patterns. Every component with a wildcard (``*``, ``?``, ``[...]``) except
``**`` contributes to the case id (see :func:`meddiff.data.fetch.list_cases`), so ``imagesTr/*.nii.gz`` gives
ids like ``lung_001`` and ``**/case_*_IMG_CT.nrrd`` gives ``case_01``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from meddiff.errors import ConfigError

ACCESS_KINDS = ("direct", "manual", "generated")
FORMATS = ("nifti", "dicom", "nrrd", "png_stack", "generated")
REGIONS = ("han", "chest", "abdomen", "wholebody")
TASKS = ("pretrain", "denoising", "anomaly", "super_resolution", "lesion")
CASE_UNITS = ("volumes", "slices")
LABEL_SPACES = ("own", "totalsegmentator")
ARCHIVE_KINDS = ("zip", "tar", "tar.gz", "tar.bz2", "tar.xz", "none")

_NAME_RE = re.compile(r"^[a-z0-9_]+$")
_HEX_LENGTH = {"sha256": 64, "md5": 32}


@dataclass(frozen=True)
class RemoteFile:
    """One file of a ``direct`` dataset: fetched from ``url`` into ``<name>/downloads/<filename>``, verified
    against ``sha256`` (or ``md5`` where the publisher only gives that), then extracted if ``archive`` is not
    ``"none"``."""

    url: str
    filename: str
    sha256: str | None
    md5: str | None
    archive: str


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry. ``cases`` is the number the paper used (``None`` for the generated phantom, whose
    size comes from the run config); ``case_unit`` says whether they are volumes or 2D slices."""

    name: str
    title: str
    regions: tuple[str, ...]
    cases: int | None
    case_unit: str
    tasks: tuple[str, ...]
    format: str
    access: str
    licence: str
    image_glob: str
    homepage: str | None
    placement: str | None
    files: tuple[RemoteFile, ...]
    lesion_glob: str | None
    label_glob: str | None
    label_space: str
    """``"own"``: the ``label_glob`` files use the dataset's own classes (e.g. StructSeg's organs at risk);
    ``"totalsegmentator"``: they are in the project's label space (:mod:`meddiff.labels`), so they can stand in
    for computed masks (``masks.backend: reference``)."""
    region_table: str | None
    """TSV (columns ``case``, ``region``) inside the dataset folder giving each case's own region, for datasets
    that mix regions; without it every case gets ``regions``."""
    notes: str | None


_REQUIRED = ("name", "title", "regions", "cases", "tasks", "format", "access", "licence", "image_glob")
_OPTIONAL = ("case_unit", "homepage", "placement", "files", "lesion_glob", "label_glob", "label_space", "region_table",
             "notes")
_FILE_REQUIRED = ("url", "filename", "archive")
_FILE_OPTIONAL = ("sha256", "md5")


class _Entry:
    """Field accessors that raise :class:`ConfigError` naming the registry file, the entry and the field."""

    def __init__(self, path: Path, where: str, raw: dict[str, Any]):
        self.path, self.where, self.raw = path, where, raw

    def fail(self, field: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.where}: field {field!r}: {problem}")

    def text(self, field: str, *, optional: bool = False) -> str | None:
        value = self.raw.get(field)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"expected a non-empty string, got {value!r}")
        return value.strip()

    def choice(self, field: str, allowed: tuple[str, ...]) -> str:
        value = self.text(field)
        if value not in allowed:
            raise self.fail(field, f"{value!r} is not one of {list(allowed)}")
        return value

    def choices(self, field: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw.get(field)
        if not isinstance(value, list) or not value:
            raise self.fail(field, f"expected a non-empty list, got {value!r}")
        bad = [v for v in value if v not in allowed]
        if bad:
            raise self.fail(field, f"{bad} not in {list(allowed)}")
        return tuple(value)

    def glob(self, field: str, *, optional: bool = False) -> str | None:
        value = self.text(field, optional=optional)
        if value is None:
            return None
        parts = PurePosixPath(value).parts
        if value.startswith("/") or ".." in parts or "\\" in value:
            raise self.fail(field, f"{value!r} must be a relative glob inside the dataset folder")
        if parts.count("**") > 1 or any("**" in p and p != "**" for p in parts):
            raise self.fail(field, f"{value!r}: use '**' at most once, as a whole path component")
        return value


def _check_keys(entry: _Entry, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    unknown = sorted(set(entry.raw) - set(required) - set(optional))
    if unknown:
        raise entry.fail(unknown[0], f"unknown key (known keys: {sorted(required + optional)})")
    missing = [k for k in required if k not in entry.raw]
    if missing:
        raise entry.fail(missing[0], "missing")


def _remote_file(entry: _Entry, index: int, raw: Any) -> RemoteFile:
    if not isinstance(raw, dict):
        raise entry.fail(f"files[{index}]", f"expected a mapping, got {raw!r}")
    sub = _Entry(entry.path, f"{entry.where} files[{index}]", raw)
    _check_keys(sub, _FILE_REQUIRED, _FILE_OPTIONAL)
    url = sub.text("url")
    if not re.match(r"^https?://", url):
        raise sub.fail("url", f"{url!r} is not an http(s) URL")
    filename = sub.text("filename")
    if "/" in filename or "\\" in filename or filename.startswith("."):
        raise sub.fail("filename", f"{filename!r} must be a plain file name")
    digests = {}
    for algo, length in _HEX_LENGTH.items():
        value = sub.text(algo, optional=True)
        if value is not None and not re.fullmatch(rf"[0-9a-f]{{{length}}}", value):
            raise sub.fail(algo, f"{value!r} is not {length} lowercase hex digits")
        digests[algo] = value
    if digests["sha256"] is None and digests["md5"] is None:
        raise sub.fail("sha256", "a direct download needs a checksum (sha256, or md5 if that is all the publisher has)")
    return RemoteFile(url, filename, digests["sha256"], digests["md5"], sub.choice("archive", ARCHIVE_KINDS))


def _dataset_spec(path: Path, index: int, raw: Any) -> DatasetSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: datasets[{index}]: expected a mapping, got {raw!r}")
    name = raw.get("name")
    entry = _Entry(path, f"dataset {name!r}" if isinstance(name, str) else f"datasets[{index}]", raw)
    _check_keys(entry, _REQUIRED, _OPTIONAL)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise entry.fail("name", f"{name!r} must be a lowercase id of letters, digits and '_'")
    access = entry.choice("access", ACCESS_KINDS)
    fmt = entry.choice("format", FORMATS)
    cases = raw["cases"]
    if access == "generated":
        if cases is not None:
            raise entry.fail("cases", "a generated dataset takes its size from the run config; use null")
        if fmt != "generated":
            raise entry.fail("format", "access 'generated' needs format 'generated'")
    elif isinstance(cases, bool) or not isinstance(cases, int) or cases <= 0:
        raise entry.fail("cases", f"expected the positive number of cases the paper used, got {cases!r}")
    raw_files = raw.get("files") or []
    if not isinstance(raw_files, list):
        raise entry.fail("files", f"expected a list, got {raw_files!r}")
    files = tuple(_remote_file(entry, i, f) for i, f in enumerate(raw_files))
    homepage = entry.text("homepage", optional=True)
    placement = entry.text("placement", optional=True)
    if access == "direct" and not files:
        raise entry.fail("files", "access 'direct' needs at least one file with url and checksum")
    if access != "direct" and files:
        raise entry.fail("files", f"only access 'direct' downloads files (this entry is {access!r})")
    if access == "manual":
        if homepage is None:
            raise entry.fail("homepage", "access 'manual' needs the page where the data is obtained")
        if placement is None:
            raise entry.fail("placement", "access 'manual' needs instructions on where to put the files")
    case_unit = entry.choice("case_unit", CASE_UNITS) if "case_unit" in raw else "volumes"
    return DatasetSpec(
        name=name,
        title=entry.text("title"),
        regions=entry.choices("regions", REGIONS),
        cases=cases,
        case_unit=case_unit,
        tasks=entry.choices("tasks", TASKS),
        format=fmt,
        access=access,
        licence=entry.text("licence"),
        image_glob=entry.glob("image_glob"),
        homepage=homepage,
        placement=placement,
        files=files,
        lesion_glob=entry.glob("lesion_glob", optional=True),
        label_glob=entry.glob("label_glob", optional=True),
        label_space=entry.choice("label_space", LABEL_SPACES) if "label_space" in raw else "own",
        region_table=entry.glob("region_table", optional=True),
        notes=entry.text("notes", optional=True),
    )


def load_registry(path: str | Path) -> dict[str, DatasetSpec]:
    """Read and validate the registry YAML (a top-level ``datasets:`` list) into ``{name: DatasetSpec}``, in
    file order. Unknown or missing keys, bad access kinds, formats, regions or tasks, malformed checksums and
    duplicate names raise :class:`ConfigError` naming the file, the entry and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: dataset registry not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict) or set(raw) != {"datasets"} or not isinstance(raw["datasets"], list):
        raise ConfigError(f"{path}: expected a single top-level key 'datasets' holding a list of entries")
    registry: dict[str, DatasetSpec] = {}
    for index, item in enumerate(raw["datasets"]):
        spec = _dataset_spec(path, index, item)
        if spec.name in registry:
            raise ConfigError(f"{path}: dataset {spec.name!r} is defined twice")
        registry[spec.name] = spec
    return registry


def dataset_spec(registry: dict[str, DatasetSpec], name: str) -> DatasetSpec:
    """Look ``name`` up in a loaded registry; an unknown name raises :class:`ConfigError` listing the known ones."""
    try:
        return registry[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; the registry defines {sorted(registry)}") from None


def require_reference_labels(spec: DatasetSpec) -> None:
    """Raise :class:`ConfigError` unless ``spec`` ships labels in the project's label space, which
    ``masks.backend: reference`` uses instead of computing masks."""
    if spec.label_glob is None:
        problem = "no label_glob"
    elif spec.label_space != "totalsegmentator":
        problem = f"labels in its own classes (label_space: {spec.label_space})"
    else:
        return
    raise ConfigError(
        f"masks.backend 'reference' uses the labels a dataset ships, but {spec.name!r} has {problem} in the "
        "registry; use masks.backend: totalsegmentator (or threshold) for it"
    )
