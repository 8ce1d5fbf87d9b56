"""Lesion cases in nnU-Net v2's raw format, for the nnU-Net lesion judge of paper 4.1.3 (:mod:`.nnunet`).

A case is ``(case_id, image, mask)``: ``image`` is a file (NIfTI, or anything :func:`meddiff.data.io.read_image`
reads), a :class:`SimpleITK.Image`, or ``(array, spacing)`` with a (Z, Y, X) array in HU and spacing (x, y, z) mm;
``mask`` is a file, an image or a (Z, Y, X) array on the image's grid, nonzero = lesion. Files are written as
nnU-Net expects them: ``<case>_0000.nii.gz`` (one channel, "CT") and ``<case>.nii.gz`` (0 background, 1 lesion).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from meddiff.atomic import atomic_dir
from meddiff.data.io import read_image
from meddiff.errors import ConfigError, GeometryError, InputImageError

log = logging.getLogger(__name__)

ImageLike = str | Path | sitk.Image | tuple[np.ndarray, Sequence[float]]
MaskLike = str | Path | sitk.Image | np.ndarray
LesionCase = tuple[str, ImageLike, MaskLike]

FILE_ENDING = ".nii.gz"
CHANNELS = {0: "CT"}  # "CT" selects nnU-Net's CT normalisation (clip to foreground percentiles, z-score)
LABELS = {"background": 0, "lesion": 1}
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def dataset_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name ``Dataset{id:03d}_{name}`` (id 1..999; name of letters, digits, ``_``, ``-``)."""
    if not 1 <= int(dataset_id) <= 999:
        raise ConfigError(f"nnU-Net dataset id must be in 1..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ConfigError(f"nnU-Net dataset name {name!r}: use letters, digits, '_' and '-' only")
    return f"Dataset{int(dataset_id):03d}_{name}"


def _as_image(image: ImageLike, what: str) -> sitk.Image:
    if isinstance(image, sitk.Image):
        return image
    if isinstance(image, (str, Path)):
        return read_image(image)
    array, spacing = image
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputImageError(f"{what}: expected a (Z, Y, X) array, got shape {array.shape}")
    img = sitk.GetImageFromArray(array.astype(np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing))
    return img


def _as_mask(mask: MaskLike, image: sitk.Image, what: str) -> sitk.Image:
    """Binary uint8 mask on ``image``'s grid (an array takes the image's geometry)."""
    if isinstance(mask, np.ndarray):
        out = sitk.GetImageFromArray((mask > 0).astype(np.uint8))
        if out.GetSize() != image.GetSize():
            raise GeometryError(f"{what}: mask (Z, Y, X) {mask.shape} does not match the image size "
                                f"{image.GetSize()[::-1]}")
        out.CopyInformation(image)
        return out
    source = mask
    mask = _as_image(mask, what)
    same = (
        mask.GetSize() == image.GetSize()
        and np.allclose(mask.GetSpacing(), image.GetSpacing(), atol=1e-4)
        and np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-3)
        and np.allclose(mask.GetDirection(), image.GetDirection(), atol=1e-4)
    )
    if not same:
        raise GeometryError(
            f"{source if isinstance(source, (str, Path)) else what}: mask grid (size {mask.GetSize()}, spacing "
            f"{mask.GetSpacing()}, origin {mask.GetOrigin()}) differs from its image's (size {image.GetSize()}, "
            f"spacing {image.GetSpacing()}, origin {image.GetOrigin()})"
        )
    out = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(mask) > 0).astype(np.uint8))
    out.CopyInformation(image)  # identical up to rounding: nnU-Net compares geometries exactly
    return out


def _check_ids(case_ids: Sequence[str]) -> None:
    bad = [c for c in case_ids if not _CASE_ID.fullmatch(str(c))]
    if bad:
        raise ConfigError(f"nnU-Net case ids must be letters, digits, '_', '.', '-': {bad[:5]}")
    dup = sorted(c for c, n in Counter(case_ids).items() if n > 1)
    if dup:
        raise ConfigError(f"duplicate nnU-Net case ids: {dup[:5]}")


def _write_case(case_id: str, image: ImageLike, mask: MaskLike | None, images: Path, labels: Path | None) -> int:
    """Write one case; returns its lesion voxel count (0 when no mask is written)."""
    img = sitk.Cast(_as_image(image, case_id), sitk.sitkFloat32)
    sitk.WriteImage(img, str(images / f"{case_id}_0000{FILE_ENDING}"), useCompression=True)
    if labels is None:
        return 0
    seg = _as_mask(mask, img, case_id)
    sitk.WriteImage(seg, str(labels / f"{case_id}{FILE_ENDING}"), useCompression=True)
    return int(sitk.GetArrayViewFromImage(seg).sum())


def export_raw_dataset(cases: Sequence[LesionCase], raw_root: Path, dataset_id: int, name: str) -> Path:
    """Write the training cases of the lesion judge as nnU-Net raw dataset ``raw_root/Dataset{id:03d}_{name}``.

    Layout: ``imagesTr/<case>_0000.nii.gz`` (float32 HU), ``labelsTr/<case>.nii.gz`` (uint8, 1 = lesion, the mask
    binarised with ``> 0``) and ``dataset.json`` (channel "CT", labels background 0 / lesion 1). The folder is
    replaced atomically.

    Args:
        cases: ``(case_id, image, mask)`` per case (see the module docstring); masks must share the image grid.
        raw_root: the ``nnUNet_raw`` folder (``nnunet_environment(root)["nnUNet_raw"]``).
        dataset_id, name: nnU-Net dataset id (1..999) and name.

    Returns:
        The dataset folder.

    Raises:
        GeometryError: a mask is not on its image's grid. ConfigError: bad/duplicate ids, no case, or another
        dataset with the same id in ``raw_root``.
    """
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    folder_name = dataset_name(dataset_id, name)
    if not cases:
        raise ConfigError(f"{folder_name}: no training case to export")
    _check_ids([c[0] for c in cases])
    raw_root = Path(raw_root)
    # nnU-Net resolves an id to a name by listing folders: a second name for the same id makes it refuse
    others = [p.name for p in raw_root.glob(f"Dataset{int(dataset_id):03d}_*") if p.name != folder_name]
    if others:
        raise ConfigError(f"{raw_root}: dataset id {dataset_id} is already used by {others}")
    with atomic_dir(raw_root / folder_name) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        empty = [cid for cid, image, mask in cases if _write_case(cid, image, mask, tmp / "imagesTr",
                                                                    tmp / "labelsTr") == 0]
        if empty:
            log.info("%s: %d of %d training cases have no lesion: %s", folder_name, len(empty), len(cases), empty[:5])
        generate_dataset_json(str(tmp), dict(CHANNELS), dict(LABELS), len(cases), FILE_ENDING,
                              dataset_name=folder_name, description="MedDiff-FM lesion judge (paper 4.1.3)")
    return raw_root / folder_name


def export_test_images(cases: Sequence[LesionCase], images_folder: Path, masks_folder: Path | None = None) -> None:
    """Write images to segment (``images_folder/<case>_0000.nii.gz``) and, when ``masks_folder`` is given, the
    masks that conditioned them (``masks_folder/<case>.nii.gz``, uint8 0/1) as references for :func:`.nnunet.score`.

    Args:
        cases: ``(case_id, image, mask)``; ``mask`` is ignored (may be None) when ``masks_folder`` is None.
        images_folder, masks_folder: output folders, each replaced atomically.
    """
    if not cases:
        raise ConfigError(f"{images_folder}: no image to export")
    _check_ids([c[0] for c in cases])
    with atomic_dir(images_folder) as images:
        if masks_folder is None:
            for cid, image, _ in cases:
                _write_case(cid, image, None, images, None)
            return
        with atomic_dir(masks_folder) as masks:
            for cid, image, mask in cases:
                _write_case(cid, image, mask, images, masks)
