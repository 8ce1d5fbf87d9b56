"""Getting a registry dataset onto disk and listing its cases.

:func:`fetch_and_index` is what ``meddiff fetch`` runs: it makes ``<root>/<name>/`` hold the dataset
(generating the phantom, downloading + extracting ``direct`` datasets, or checking that a ``manual`` one
was placed), lists its cases from the registry globs and writes a case index TSV
(``dataset  case  image  lesion  region  labels``) that every later rule reads.

Case ids: each wildcard component of the glob (all but ``**``) contributes the name it matched, minus the
literal text after its last wildcard and minus an image suffix; the pieces are joined with ``_``. So
``imagesTr/*.nii.gz`` gives ``lung_001``, ``**/case_*_IMG_CT.nrrd`` gives ``case_01`` and
``Train_Sets/CT/*/DICOM_anon`` gives ``1``. A glob without wildcards falls back to the file stem. Lesion and
label files are paired with images by that id, so ``lesion_glob``/``label_glob`` must have the same wildcard
structure.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from meddiff.atomic import atomic_dir, atomic_path, write_text
from meddiff.config import PhantomConfig
from meddiff.data.archive import extract_archive, extraction_record
from meddiff.data.download import download
from meddiff.data.registry import DatasetSpec
from meddiff.errors import ConfigError, DatasetMissingError

log = logging.getLogger(__name__)

PHANTOM_STAMP = ".phantom-settings.json"
INDEX_COLUMNS = ("dataset", "case", "image", "lesion", "region", "labels")
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".dcm", ".ima")
_WILDCARD_RE = re.compile(r"[*?\[]")
_UNSAFE_ID_RE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class CaseFiles:
    """One case: its image (a file, or a DICOM series folder), its lesion mask and anatomy labels if the dataset
    has them (``lesion_glob``, ``label_glob``), and its region if the dataset mixes regions (``region_table``;
    None = the dataset's ``regions``)."""

    case: str
    image: Path
    lesion: Path | None
    region: str | None = None
    labels: Path | None = None


# --------------------------------------------------------------------------------------------- case ids
def _strip_image_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _captures(glob: str, rel: PurePosixPath) -> list[str]:
    """What each wildcard component of ``glob`` matched in ``rel`` (trailing literal text removed)."""
    pattern = PurePosixPath(glob).parts
    parts = rel.parts
    if "**" in pattern:
        i = pattern.index("**")
        head, tail = pattern[:i], pattern[i + 1 :]
        pairs = list(zip(head, parts[: len(head)])) + list(zip(tail, parts[len(parts) - len(tail) :]))
    else:
        pairs = list(zip(pattern, parts))
    out = []
    for component, name in pairs:
        if not _WILDCARD_RE.search(component):
            continue
        last_wild_end = max(component.rfind("*"), component.rfind("?"), component.rfind("]")) + 1
        trailing = component[last_wild_end:]
        out.append(name[: len(name) - len(trailing)] if trailing and name.endswith(trailing) else name)
    return out


def case_id(glob: str, rel: PurePosixPath) -> str:
    """The case id of the path ``rel`` (relative to the dataset folder) matched by ``glob``; sanitised to
    ``[A-Za-z0-9_.-]``."""
    pieces = _captures(glob, rel) or [rel.name]
    pieces[-1] = _strip_image_suffix(pieces[-1])
    raw = "_".join(pieces)
    return _UNSAFE_ID_RE.sub("_", raw).strip("._") or "case"


def _matches(folder: Path, glob: str, *, dirs: bool) -> Iterator[tuple[PurePosixPath, Path]]:
    """Sorted (relative path, path) pairs matching ``glob``: folders holding at least one file (DICOM series)
    if ``dirs``, else files. Hidden entries (any component starting with '.', e.g. macOS ``._x`` companions,
    our temporary folders) are skipped."""
    found = []
    for path in folder.glob(glob):
        rel = PurePosixPath(path.relative_to(folder).as_posix())
        if any(p.startswith(".") for p in rel.parts):
            continue
        if (path.is_dir() and any(child.is_file() for child in path.iterdir())) if dirs else path.is_file():
            found.append((rel, path))
    return iter(sorted(found, key=lambda item: str(item[0])))


def _by_case(folder: Path, glob: str, *, dirs: bool, what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for rel, path in _matches(folder, glob, dirs=dirs):
        cid = case_id(glob, rel)
        if cid in out:
            raise ConfigError(
                f"{folder}: {what} glob {glob!r} gives case id {cid!r} to both {out[cid]} and {path}; "
                "make the registry glob more specific"
            )
        out[cid] = path
    return out


def list_cases(spec: DatasetSpec, folder: str | Path) -> list[CaseFiles]:
    """Cases of ``spec`` found in ``folder`` (= ``<root>/<name>``), sorted by path: images from
    ``image_glob`` (series folders for DICOM), lesions and labels from ``lesion_glob`` and
    ``label_glob`` paired by case id.

    Raises :class:`DatasetMissingError` if nothing matches, :class:`ConfigError` if two images (or two
    lesions) get the same case id.
    """
    folder = Path(folder)
    images = _by_case(folder, spec.image_glob, dirs=spec.format == "dicom", what="image")
    if not images:
        raise DatasetMissingError(f"{spec.title} ({spec.name}): no images match {spec.image_glob!r} in {folder}"
                                  + (f". {_placement_hint(spec, folder)}" if spec.access == "manual" else ""))
    extras = {}
    for what, glob in (("lesion", spec.lesion_glob), ("label", spec.label_glob)):
        extras[what] = _by_case(folder, glob, dirs=False, what=what) if glob else {}
        orphans = sorted(set(extras[what]) - set(images))
        if orphans:
            log.warning("%s: %d %s files have no image (e.g. %s)", spec.name, len(orphans), what,
                        extras[what][orphans[0]])
    regions = _case_regions(spec, folder)
    unknown = sorted(set(images) - set(regions)) if spec.region_table else []
    if unknown:
        raise ConfigError(f"{folder / spec.region_table}: no region for case(s) {unknown[:5]}")
    return [
        CaseFiles(cid, path, extras["lesion"].get(cid), regions.get(cid), extras["label"].get(cid))
        for cid, path in images.items()
    ]


def _case_regions(spec: DatasetSpec, folder: Path) -> dict[str, str]:
    """``case -> region`` from the dataset's ``region_table`` ({} when it has none)."""
    if not spec.region_table:
        return {}
    table = pd.read_csv(folder / spec.region_table, sep="\t", dtype=str)
    bad = sorted(set(table["region"]) - set(spec.regions))
    if bad:
        raise ConfigError(f"{folder / spec.region_table}: regions {bad} not among {spec.name}'s {list(spec.regions)}")
    return dict(zip(table["case"], table["region"]))


# --------------------------------------------------------------------------------------------- case index
def write_case_index(path: str | Path, dataset: str, cases: list[CaseFiles]) -> None:
    """Atomically write the case index TSV with columns :data:`INDEX_COLUMNS` (empty = none)."""
    frame = pd.DataFrame(
        [(dataset, c.case, str(c.image), str(c.lesion or ""), c.region or "", str(c.labels or "")) for c in cases],
        columns=list(INDEX_COLUMNS),
    )
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def read_case_index(path: str | Path) -> list[CaseFiles]:
    """Read a case index written by :func:`write_case_index`."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatasetMissingError(f"{path}: case index not found; run `meddiff fetch` for the dataset first") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ConfigError(f"{path}: not a readable case index TSV: {err}") from None
    missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: not a case index: missing column(s) {missing}")
    return [
        CaseFiles(r.case, Path(r.image), Path(r.lesion) if r.lesion else None, r.region or None,
                  Path(r.labels) if r.labels else None)
        for r in frame.itertuples()
    ]


# --------------------------------------------------------------------------------------------- fetching
def _placement_hint(spec: DatasetSpec, folder: Path) -> str:
    root = str(folder.resolve().parent)
    placement = (spec.placement or "").replace("<root>", root)
    return f"How and where: {placement} (meddiff looks for {spec.image_glob!r} inside {folder.resolve()})."


def _missing_message(spec: DatasetSpec, folder: Path) -> str:
    return (
        f"{spec.title} ({spec.name}) is not on disk and cannot be downloaded automatically: it needs registration "
        f"(or a manual download) at {spec.homepage} . Put it in {folder.resolve()} . {_placement_hint(spec, folder)}"
    )


def _has_images(spec: DatasetSpec, folder: Path) -> bool:
    return folder.is_dir() and next(_matches(folder, spec.image_glob, dirs=spec.format == "dicom"), None) is not None


def _phantom_settings(phantom: PhantomConfig, seed: int) -> dict:
    return {
        "cases_per_region": dict(sorted(phantom.cases_per_region.items())),
        "lesion_fraction": phantom.lesion_fraction,
        "spacing_jitter": phantom.spacing_jitter,
        "seed": seed,
        "layout": 2,  # 2: healthy cases have no lesion file (1 wrote all-zero ones); a new layout regenerates
    }


def _generate_phantom(folder: Path, phantom: PhantomConfig, seed: int, workers: int) -> None:
    settings = _phantom_settings(phantom, seed)
    try:
        if json.loads((folder / PHANTOM_STAMP).read_text()) == settings and (folder / "cohort.tsv").is_file():
            log.info("phantom cohort in %s is complete for these settings; not regenerating", folder)
            return
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    # Imported here so the phantom generator (and its dependencies) load only when the phantom is used.
    phantom_module = importlib.import_module("meddiff.data.phantom")
    log.info("generating phantom cohort %s in %s", settings, folder)
    with atomic_dir(folder) as tmp:
        phantom_module.write_cohort(
            tmp, phantom.cases_per_region, lesion_fraction=phantom.lesion_fraction,
            spacing_jitter=phantom.spacing_jitter, seed=seed, workers=workers,
        )
        write_text(tmp / PHANTOM_STAMP, json.dumps(settings, sort_keys=True) + "\n")  # last: marks completeness


def _fetch_direct(spec: DatasetSpec, folder: Path) -> None:
    for remote in spec.files:
        dest = folder / "downloads" / remote.filename
        if remote.archive != "none" and not dest.exists() and extraction_record(folder, remote.filename):
            log.info("%s: %s was extracted before and then deleted; not downloading", spec.name, remote.filename)
            continue
        download(remote.url, dest, sha256=remote.sha256, md5=remote.md5)
        if remote.archive != "none":
            extract_archive(dest, folder, kind=remote.archive)


def fetch_dataset(
    spec: DatasetSpec, root: str | Path, *, phantom: PhantomConfig, seed: int, workers: int = 1
) -> Path:
    """Make ``<root>/<spec.name>`` hold the dataset and return that folder.

    - ``generated``: write the phantom cohort (``meddiff.data.phantom.write_cohort``) atomically, skipped if
      the folder's settings stamp equals ``phantom`` + ``seed`` (``workers`` processes generate it);
    - ``direct``: download every file into ``downloads/``, verify, and extract safely into the folder;
    - ``manual``: check that at least one path matches ``image_glob``, else raise
      :class:`DatasetMissingError` saying where to register, where to put the data and in which layout.
    """
    folder = Path(root) / spec.name
    if spec.access == "generated":
        _generate_phantom(folder, phantom, seed, workers)
    elif spec.access == "direct":
        _fetch_direct(spec, folder)
    elif not _has_images(spec, folder):
        raise DatasetMissingError(_missing_message(spec, folder))
    else:
        log.info("%s: found manually placed data in %s", spec.name, folder)
    return folder


def fetch_and_index(
    spec: DatasetSpec, root: str | Path, index_path: str | Path, *, phantom: PhantomConfig, seed: int, workers: int = 1
) -> list[CaseFiles]:
    """Fetch ``spec`` into ``root`` (:func:`fetch_dataset`), list its cases and write the case index TSV to
    ``index_path``; return the cases."""
    folder = fetch_dataset(spec, root, phantom=phantom, seed=seed, workers=workers)
    cases = list_cases(spec, folder)
    write_case_index(index_path, spec.name, cases)
    with_lesion = sum(c.lesion is not None for c in cases)
    log.info("%s: %d cases (%d with a lesion mask) indexed in %s", spec.name, len(cases), with_lesion, index_path)
    if spec.cases is not None and len(cases) != spec.cases:
        log.warning("%s: found %d %s, the paper used %d", spec.name, len(cases), spec.case_unit, spec.cases)
    return cases
