"""The 2016 NIH-AAPM-Mayo Clinic Low-Dose CT Grand Challenge data (paper 4.1.1, Table 2; denoising 4.3.2).

Expected layout (the AAPM challenge distribution; one folder per patient)::

    <root>/L067/full_1mm/*.IMA       full-dose series (DICOM; ``.IMA`` or ``.dcm``)
    <root>/L067/quarter_1mm/*.IMA    quarter-dose series on the same grid
    <root>/L096/...

``full_3mm`` / ``quarter_3mm`` are accepted too; 1 mm is preferred when a patient has both (the paper
uses the 1 mm images). Series are read with :func:`meddiff.data.io.read_image` (intensities in HU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from meddiff.data.io import read_image
from meddiff.errors import DatasetMissingError, GeometryError

log = logging.getLogger(__name__)

THICKNESSES: tuple[str, ...] = ("1mm", "3mm")
"""Slice thicknesses of the distribution, in order of preference."""

DICOM_SUFFIXES: tuple[str, ...] = (".ima", ".dcm")

WHERE_TO_GET = (
    "get it from TCIA collection 'LDCT-and-Projection-data' (registration and data-use agreement required) "
    "or from the AAPM Low-Dose CT Grand Challenge (https://www.aapm.org/grandchallenge/lowdosect/), "
    "and place it as <root>/<patient e.g. L067>/full_1mm/*.IMA and <root>/<patient>/quarter_1mm/*.IMA "
    "(full_3mm/quarter_3mm and .dcm files are accepted too)"
)


@dataclass(frozen=True)
class MayoPair:
    """One patient's full-dose and quarter-dose DICOM series folders."""

    patient: str
    full: Path
    quarter: Path


def _has_dicom(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in DICOM_SUFFIXES for p in folder.rglob("*"))


def _subfolder(patient_dir: Path, name: str) -> Path | None:
    """``patient_dir/name`` matched case-insensitively, or None."""
    for child in patient_dir.iterdir():
        if child.is_dir() and child.name.lower() == name:
            return child
    return None


def list_mayo_pairs(folder: str | Path) -> list[MayoPair]:
    """All patients of ``folder`` that have a full-dose and a quarter-dose series of one thickness.

    Patients are sorted by name. A patient folder with no usable pair is skipped with a warning.

    Raises:
        DatasetMissingError: ``folder`` does not exist or holds no pair; the message says where to get the
            data and the expected layout.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetMissingError(f"{folder}: Mayo 2016 low-dose CT data not found; {WHERE_TO_GET}")
    pairs = []
    for patient_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for thickness in THICKNESSES:
            full = _subfolder(patient_dir, f"full_{thickness}")
            quarter = _subfolder(patient_dir, f"quarter_{thickness}")
            if full is not None and quarter is not None and _has_dicom(full) and _has_dicom(quarter):
                pairs.append(MayoPair(patient=patient_dir.name, full=full, quarter=quarter))
                break
        else:
            log.warning("%s: no full_<t>/quarter_<t> pair of DICOM series (t in %s); skipped", patient_dir, THICKNESSES)
    if not pairs:
        raise DatasetMissingError(f"{folder}: no Mayo 2016 full/quarter-dose series pair found; {WHERE_TO_GET}")
    log.info("%s: %d Mayo 2016 patients", folder, len(pairs))
    return pairs


def geometry_difference(a: sitk.Image, b: sitk.Image, *, tol_mm: float = 1e-3) -> str | None:
    """Describe how the grids of ``a`` and ``b`` differ (size, spacing, origin, direction), or None."""
    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    checks = (
        ("spacing", a.GetSpacing(), b.GetSpacing()),
        ("origin", a.GetOrigin(), b.GetOrigin()),
        ("direction", a.GetDirection(), b.GetDirection()),
    )
    for name, va, vb in checks:
        if not np.allclose(va, vb, atol=tol_mm, rtol=0):
            fmt = lambda v: "(" + ", ".join(f"{x:.4g}" for x in v) + ")"  # noqa: E731
            return f"{name} {fmt(va)} vs {fmt(vb)}"
    return None


def load_pair(pair: MayoPair) -> tuple[sitk.Image, sitk.Image]:
    """Read a patient's (full-dose, quarter-dose) series, in HU, and check they share one grid.

    Raises:
        InputImageError: a series is unreadable.
        GeometryError: the two series differ in size, spacing, origin or direction.
    """
    full = read_image(pair.full)
    low = read_image(pair.quarter)
    diff = geometry_difference(full, low)
    if diff is not None:
        raise GeometryError(f"{pair.full} and {pair.quarter}: full- and quarter-dose series differ in {diff}")
    return full, low
