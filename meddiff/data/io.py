"""Reading and writing CT volumes: NIfTI / NRRD / MetaImage files, DICOM series folders and PNG slice stacks.

Every reader returns a :class:`SimpleITK.Image` (physical geometry included); every failure on bad input is an
:class:`~meddiff.errors.InputImageError` whose one-line message starts with the offending path.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from meddiff.atomic import atomic_path
from meddiff.errors import InputImageError

log = logging.getLogger(__name__)

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_PNG_SUFFIXES = (".png",)


def _itk_reason(err: Exception, path: Path) -> str:
    """Shorten a multi-line ITK exception about ``path`` to the one line a user can act on."""
    text = str(err)
    if "Unable to determine ImageIO reader" in text:
        return "not a readable image file (unknown format or corrupt header)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # ITK messages look like "Exception thrown in ... | <file>:<line>: | ITK ERROR: <Class>(0x..): <reason>".
    useful = [
        ln for ln in lines if not ln.startswith("Exception thrown") and not re.search(r"\.(cxx|h|hxx):\d+:?$", ln)
    ]
    reason = " ".join(useful) if useful else (lines[0] if lines else type(err).__name__)
    reason = re.sub(r"(ITK|sitk)(::)?\s*ERROR:\s*", "", reason)
    reason = re.sub(r"\w+\(0x[0-9a-f]+\):\s*", "", reason)
    reason = reason.replace(str(path), "the file")
    if path.exists() and "No such file or directory" in reason:  # a stale errno: the file is there but short
        reason = reason.replace("Reason: No such file or directory", "").strip() + " (truncated or corrupt data?)"
    return reason[:240]


def _check_nifti_complete(path: Path) -> None:
    """Raise if a NIfTI file is shorter than its header promises.

    ITK silently zero-fills a truncated ``.nii``/``.nii.gz`` (checked on ITK 5.4 / SimpleITK 2.5), so the
    byte count is verified here: for ``.nii`` against the file size, for ``.nii.gz`` by decompressing the whole
    stream (which also checks the gzip CRC). Hand-written because no library offers a cheap integrity check.
    """
    try:
        header = nib.load(str(path)).header
    except Exception as err:  # nibabel raises several types for corrupt headers
        raise InputImageError(f"{path}: not a valid NIfTI file ({type(err).__name__}: {err})") from None
    # nibabel and ITK both replace a zero pixdim by 1 mm on reading (a warning at most): read it unfixed
    with nib.openers.ImageOpener(str(path)) as fh:
        raw = nib.Nifti1Header.from_fileobj(fh, check=False)
    spatial = raw["pixdim"][1 : 1 + min(3, int(raw["dim"][0]))]
    if not (spatial > 0).all():
        raise InputImageError(
            f"{path}: voxel spacing {tuple(float(v) for v in spatial)} mm in the NIfTI header is zero or negative "
            "(readers would silently use 1 mm); fix the header (pixdim)"
        )
    expected = int(header.get_data_offset()) + _nbytes(header)
    if path.name.endswith(".gz"):
        total = 0
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    total += len(chunk)
        except (EOFError, OSError, zlib.error) as err:
            raise InputImageError(f"{path}: truncated or corrupt gzip stream ({err})") from None
    else:
        total = path.stat().st_size
    if total < expected:
        raise InputImageError(
            f"{path}: truncated NIfTI file: {total} bytes of data where the header requires {expected}"
        )
    if np.issubdtype(header.get_data_dtype(), np.floating):
        # ITK's NIfTI reader turns NaN voxels into 0 without a word (SimpleITK 2.5), so they are counted here
        data = np.asanyarray(nib.load(str(path)).dataobj)
        bad = int(data.size - np.isfinite(data).sum())
        if bad:
            raise InputImageError(
                f"{path}: {bad} of {data.size} voxels are NaN or infinite; a CT volume in HU has finite values everywhere"
            )


def _nbytes(header: nib.Nifti1Header) -> int:
    n = 1
    for d in header.get_data_shape():
        n *= int(d)
    return n * header.get_data_dtype().itemsize


def _read_file(path: Path) -> sitk.Image:
    if path.name.endswith(_NIFTI_SUFFIXES):
        _check_nifti_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise InputImageError(f"{path}: cannot read image: {_itk_reason(err, path)}") from None


MIXED_SERIES_FRACTION = 0.5
"""A DICOM folder whose second-largest series has at least this fraction of the largest one's files holds two
volumes (two doses, kernels or phases): which one is meant cannot be guessed, so reading it is refused. Smaller
series (scouts, localisers, dose reports) are skipped."""


def _read_dicom_folder(folder: Path) -> sitk.Image:
    """Read the DICOM series with the most files found in ``folder`` or its sub-folders; refuse a folder that
    mixes two full series (:data:`MIXED_SERIES_FRACTION`)."""
    found: list[tuple[str, list[str]]] = []
    for sub, _, files in os.walk(folder):
        if not files:
            continue
        for series in sitk.ImageSeriesReader.GetGDCMSeriesIDs(sub) or ():
            found.append((series, list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(sub, series))))
    if not found:
        raise InputImageError(f"{folder}: folder contains no DICOM series (and is not an image file)")
    found.sort(key=lambda f: len(f[1]), reverse=True)
    best = found[0][1]
    if len(found) > 1 and len(found[1][1]) >= MIXED_SERIES_FRACTION * len(best):
        raise InputImageError(
            f"{folder}: folder mixes {len(found)} DICOM series ({found[0][0]}: {len(best)} files, "
            f"{found[1][0]}: {len(found[1][1])} files); put each series in its own folder"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(best)
    try:
        img = reader.Execute()
    except RuntimeError as err:
        raise InputImageError(f"{folder}: cannot read DICOM series: {_itk_reason(err, folder)}") from None
    log.info("%s: read DICOM series of %d slices", folder, len(best))
    return img


def read_image(path: str | Path) -> sitk.Image:
    """Read a CT volume from a ``.nii``/``.nii.gz``/``.nrrd``/``.mha`` file or a DICOM series folder.

    For a folder, the largest DICOM series in it (searched recursively) is read. Intensities are returned as
    stored after the file's rescale (NIfTI scl_slope/scl_inter, DICOM RescaleSlope/Intercept), i.e. HU for CT.

    Raises:
        InputImageError: the path is missing, unreadable, truncated or corrupt.
    """
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{path}: file not found")
    if path.is_dir():
        return _read_dicom_folder(path)
    return _read_file(path)


def _natural_key(p: Path) -> list:
    """Sort key for ``slice_2.png`` < ``slice_10.png`` (digits compared as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def read_png_stack(
    folder_or_files: str | Path | Sequence[str | Path], spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> sitk.Image:
    """Stack 2D PNG slices into a 3D volume, slice ``k`` (in natural name order) at z index ``k``.

    Used for BMAD liver, which ships axial slices as 8/16-bit PNGs (values are the file's grey levels, not HU).
    Colour PNGs are reduced to their first channel. ``spacing`` is (x, y, z) in mm; origin 0, identity direction.
    """
    if isinstance(folder_or_files, (str, Path)) and Path(folder_or_files).is_dir():
        source = Path(folder_or_files)
        files = sorted((p for p in source.iterdir() if p.suffix.lower() in _PNG_SUFFIXES), key=_natural_key)
    elif isinstance(folder_or_files, (str, Path)):
        source = Path(folder_or_files)
        raise InputImageError(f"{source}: PNG stack folder not found")
    else:
        files = sorted((Path(f) for f in folder_or_files), key=_natural_key)
        source = files[0].parent if files else Path(".")
    if not files:
        raise InputImageError(f"{source}: no PNG slices found")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputImageError(f"{missing[0]}: file not found")
    slices = []
    for f in files:
        try:
            s = sitk.ReadImage(str(f))
        except RuntimeError as err:
            raise InputImageError(f"{f}: cannot read PNG slice: {_itk_reason(err, f)}") from None
        if s.GetNumberOfComponentsPerPixel() > 1:
            s = sitk.VectorIndexSelectionCast(s, 0)
        if slices and s.GetSize() != slices[0].GetSize():
            raise InputImageError(f"{f}: slice size {s.GetSize()} differs from {files[0].name} {slices[0].GetSize()}")
        slices.append(s)
    if len({s.GetPixelID() for s in slices}) > 1:  # mixed 8/16-bit files: JoinSeries needs one pixel type
        slices = [sitk.Cast(s, sitk.sitkFloat32) for s in slices]
    vol = sitk.JoinSeries(slices)
    vol.SetSpacing(tuple(float(s) for s in spacing))
    vol.SetOrigin((0.0, 0.0, 0.0))
    vol.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return vol


def write_image(img: sitk.Image, path: str | Path) -> None:
    """Write ``img`` atomically (temporary sibling + rename), compressed when the suffix is ``.gz``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=path.name.endswith(".gz"))
