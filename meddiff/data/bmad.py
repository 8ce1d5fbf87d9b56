"""BMAD liver CT anomaly-detection benchmark (Bao et al., CVPR 2024; paper 4.1.1 Table 2, 4.3.3) as
pseudo-3D volumes.

Reads ``<root>/Liver/{train,valid,test}/{good,Ungood}/img/*.png`` (+ ``Ungood/label/*.png`` tumour masks),
maps grey levels linearly onto the abdomen window, takes a slice's filled non-zero pixels as the liver mask,
and stacks consecutive slices of a volume (``<volume>_<slice>.png``) into pseudo-3D cases, as the paper does.
The verified layout and the assumptions (intensities, organ mask, spacing): docs/design.md, "BMAD".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from meddiff.config import Window
from meddiff.data.anomaly_cases import AnomalyCase
from meddiff.data.intensity import hu_to_unit
from meddiff.data.io import read_png_stack
from meddiff.errors import DatasetMissingError, InputImageError
from meddiff.labels import class_index

log = logging.getLogger(__name__)

BMAD_URL = "https://github.com/DorisBao/BMAD (data: Google Drive folder linked in its README)"
SPLITS = ("train", "valid", "test")
_SLICE_NAME = re.compile(r"^(?P<volume>.+)_(?P<slice>\d+)$")


def _liver_folder(root: Path) -> Path:
    """``root/Liver`` when present, else ``root`` when it already holds the split folders."""
    for candidate in (root / "Liver", root / "liver", root):
        if (candidate / "test").is_dir() or (candidate / "train").is_dir():
            return candidate
    raise DatasetMissingError(
        f"{root}: BMAD liver not found. Download BMAD from {BMAD_URL} and place the Liver folder so that "
        f"{root}/Liver/test/good/img/*.png, {root}/Liver/test/Ungood/img/*.png and "
        f"{root}/Liver/test/Ungood/label/*.png exist"
    )


def _slice_files(folder: Path) -> list[Path]:
    """PNGs of one class folder: ``<folder>/img/*.png`` (BMAD) or ``<folder>/*.png`` (flat train/good)."""
    img = folder / "img"
    source = img if img.is_dir() else folder
    return [p for p in source.iterdir() if p.suffix.lower() == ".png"] if source.is_dir() else []


def _volume_id(path: Path) -> str:
    """Volume id of ``<volume>_<slice>.png``; other names all belong to one volume "" (stacked in name order)."""
    m = _SLICE_NAME.match(path.stem)
    return m["volume"] if m else ""


def _collect(liver: Path, split: str) -> list[tuple[Path, Path | None]]:
    """(image, label or None) of every slice of ``split``; Ungood slices must have a label file."""
    split_dir = liver / split
    if not split_dir.is_dir():
        raise DatasetMissingError(
            f"{split_dir}: BMAD liver split {split!r} not found (expected {split_dir}/good/img/*.png"
            f"{'' if split == 'train' else f' and {split_dir}/Ungood/img/*.png'}); get BMAD from {BMAD_URL}"
        )
    slices: list[tuple[Path, Path | None]] = []
    for cls in ("good", "Ungood"):
        for img in _slice_files(split_dir / cls):
            label = split_dir / cls / "label" / img.name
            if cls == "Ungood" and not label.is_file():
                raise InputImageError(f"{img}: anomalous BMAD slice without its mask {label}")
            slices.append((img, label if label.is_file() else None))
    if not slices:
        raise DatasetMissingError(f"{split_dir}: no PNG slices in good/img or Ungood/img; get BMAD from {BMAD_URL}")
    return slices


def grey_to_unit(grey: np.ndarray, window: Window, max_grey: float = 255.0) -> np.ndarray:
    """Map grey levels linearly onto ``window`` in HU, then to [-1, 1] (an assumption: docs/design.md, "BMAD").

    Args:
        grey: array of grey levels 0..``max_grey``, any shape.
        window: the abdomen HU window.
        max_grey: the grey level mapped to the window's top (255 for 8-bit PNGs).

    Returns:
        float32 array of ``grey``'s shape in [-1, 1].
    """
    lo, hi = window.bounds
    hu = lo + np.asarray(grey, dtype=np.float64) / max_grey * (hi - lo)
    return hu_to_unit(hu, window).astype(np.float32)


def organ_mask_from_slices(grey: np.ndarray) -> np.ndarray:
    """Liver mask of BMAD slices: non-zero pixels with holes filled per slice.

    Args:
        grey: (Z, Y, X) grey levels (the liver on a black background).

    Returns:
        (Z, Y, X) bool; a slice without any zero pixel is all True.
    """
    mask = np.asarray(grey) > 0
    return np.stack([ndimage.binary_fill_holes(s) for s in mask]) if mask.size else mask


def _read_stack(files: Sequence[Path]) -> np.ndarray:
    """(Z, Y, X) array of PNG slices in the given order (``read_png_stack`` checks sizes and readability)."""
    return np.concatenate([sitk.GetArrayFromImage(read_png_stack([f])) for f in files], axis=0)


def _chunk_case(chunk: list[tuple[Path, Path | None]], name: str, window: Window,
                spacing_mm: tuple[float, float, float]) -> AnomalyCase:
    grey = _read_stack([img for img, _ in chunk])
    max_grey = 65535.0 if grey.dtype == np.uint16 else 255.0
    lesion = np.zeros(grey.shape, dtype=bool)
    for k, (img, label) in enumerate(chunk):
        if label is not None:
            lab = sitk.GetArrayFromImage(read_png_stack([label]))[0]
            if lab.shape != grey.shape[1:]:
                raise InputImageError(
                    f"{label}: mask size {lab.shape[::-1]} differs from its image {img} {grey.shape[:0:-1]}"
                )
            lesion[k] = lab > 0
    organ = organ_mask_from_slices(grey)
    labels = np.where(organ, class_index()["liver"], 0).astype(np.uint8)
    return AnomalyCase(
        case=name,
        image=grey_to_unit(grey, window, max_grey),
        labels=labels,
        lesion_mask=lesion,
        spacing=tuple(float(s) for s in spacing_mm),
        window=window,
        region="abdomen",
    )


def load_bmad_liver(
    root: str | Path,
    split: str = "test",
    *,
    slices_per_volume: int,
    window: Window,
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_volumes: int = 0,
) -> list[AnomalyCase]:
    """BMAD liver slices of ``split`` stacked into pseudo-3D :class:`AnomalyCase` volumes (paper 4.3.3).

    Args:
        root: folder holding ``Liver/`` (or the ``Liver`` folder itself).
        split: "train", "valid" or "test".
        slices_per_volume: consecutive slices per pseudo-volume (>= 1).
        window: the abdomen HU window grey levels are mapped onto.
        spacing_mm: assumed (x, y, z) spacing of the stacks.
        max_volumes: keep only the first N volumes (0 = all).

    Returns:
        One case per run of ``slices_per_volume`` slices, in natural order of volume id and slice number:
        image (Z, Y, X) float32 in [-1, 1], labels (Z, Y, X) uint8 (liver inside the organ mask, else 0),
        lesion mask (Z, Y, X) bool; case names ``bmad_<split>_<first file stem>-<last file stem>``.

    Raises:
        DatasetMissingError: BMAD (or the split) is not on disk; the message says where to get it.
        InputImageError: unreadable PNGs, a mask missing or of another size than its image.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if slices_per_volume < 1:
        raise ValueError(f"slices_per_volume must be >= 1, got {slices_per_volume}")
    liver = _liver_folder(Path(root))
    slices = _collect(liver, split)
    by_volume: dict[str, list[tuple[Path, Path | None]]] = {}
    for item in slices:
        by_volume.setdefault(_volume_id(item[0]), []).append(item)
    cases: list[AnomalyCase] = []
    chunks = []
    for volume in sorted(by_volume, key=_natural):
        ordered = sorted(by_volume[volume], key=lambda item: _natural(item[0].stem))
        chunks += [ordered[s : s + slices_per_volume] for s in range(0, len(ordered), slices_per_volume)]
    if max_volumes:
        chunks = chunks[:max_volumes]
    for chunk in chunks:
        first, last = chunk[0][0].stem, chunk[-1][0].stem
        cases.append(_chunk_case(chunk, f"bmad_{split}_{first}-{last}", window, spacing_mm))
    log.info("BMAD liver %s: %d slices in %d volumes (%d volumes with tumour)", split, len(slices), len(cases),
             sum(c.lesion_mask.any() for c in cases))
    return cases


def _natural(text: str) -> list:
    """Sort key comparing digit runs as numbers (``10_2`` after ``9_30``)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]
