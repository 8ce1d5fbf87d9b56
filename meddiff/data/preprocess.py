"""Preprocessing of one CT case into the training cache (paper 4.1.2): canonical orientation, resampling to
``spacing_mm``, region crops of whole-body scans, per-region HU window -> [-1, 1].

Cache layout of one case folder (written atomically as a whole)::

    <region>_image.npy   float32 (Z, Y, X) in [-1, 1]   (z index 0 = most inferior slice; SimpleITK array order)
    <region>_label.npy   uint8   (Z, Y, X) label space of meddiff.labels
    <region>_lesion.npy  uint8   (Z, Y, X) only when a lesion mask was given
    <region>_meta.json   case, dataset, region, shape, spacing_mm, origin_mm, direction, window, source_image,
                         source_mask, source_lesion, crop_z, hu_stats
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from meddiff.atomic import atomic_dir
from meddiff.config import PreprocessConfig, Window
from meddiff.data.intensity import hu_to_unit, unit_to_hu
from meddiff.data.io import read_image
from meddiff.data.regions import region_extents
from meddiff.data.validate import check_ct, check_label_map, check_same_geometry
from meddiff.errors import ConfigError, InputImageError
from meddiff.labels import NUM_CLASSES, REGIONS

log = logging.getLogger(__name__)

AIR_HU = -1024.0
"""Value of image voxels resampled from outside the source volume."""
WHOLEBODY = "wholebody"
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}


def canonical_grid(img: sitk.Image, spacing: tuple[float, float, float]) -> sitk.Image:
    """The grid every case is resampled to: ``img``'s extent reoriented to LPS, at ``spacing``.

    Args:
        img: any 3D image; only its geometry (size, spacing, origin, direction) is read.
        spacing: target voxel size (x, y, z) in mm.

    Returns:
        An empty uint8 reference image with identity direction (LPS), ``spacing``, and a size that covers
        ``img`` (``round(n * s / t)`` voxels per axis, at least 1), its first voxel at ``img``'s first voxel
        centre after reorientation.
    """
    proxy = sitk.Image(img.GetSize(), sitk.sitkUInt8)  # geometry only: reorienting it is cheap
    proxy.CopyInformation(img)
    oriented = sitk.DICOMOrient(proxy, "LPS")
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(oriented.GetSize(), oriented.GetSpacing(), spacing)]
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing(tuple(float(s) for s in spacing))
    ref.SetDirection(_IDENTITY)
    # Place the first voxel at the oriented image's first voxel centre (exact for axis-aligned scans).
    ref.SetOrigin(oriented.GetOrigin())
    return ref


def _is_same_grid(img: sitk.Image, ref: sitk.Image) -> bool:
    return (
        img.GetSize() == ref.GetSize()
        and np.allclose(img.GetSpacing(), ref.GetSpacing())
        and np.allclose(img.GetOrigin(), ref.GetOrigin())
        and np.allclose(img.GetDirection(), ref.GetDirection())
    )


def resample_to(img: sitk.Image, ref: sitk.Image, interpolator: int, default: float, pixel: int) -> sitk.Image:
    """Resample ``img`` onto ``ref``'s grid (skipped when the grids already match)."""
    if _is_same_grid(img, ref):
        return sitk.Cast(img, pixel)
    return sitk.Resample(img, ref, sitk.Transform(), interpolator, default, pixel)


def _read_label(path: Path, image: sitk.Image, image_path: Path, max_label: int) -> sitk.Image:
    lab = read_image(path)
    check_label_map(lab, path, max_label=max_label)
    check_same_geometry(image, lab, image_path, path)
    return lab


def _regions_to_crop(
    labels: np.ndarray, spacing: tuple[float, float, float], regions: list[str], min_mm: float, image_path: Path
) -> dict[str, tuple[int, int]]:
    """Region -> (z0, z1). A single named region covers the whole volume; ``["wholebody"]`` (or several regions)
    are split by :func:`region_extents` (keeping only the requested ones)."""
    unknown = [r for r in regions if r not in REGIONS and r != WHOLEBODY]
    if unknown or not regions:
        raise ConfigError(
            f"{image_path}: unknown region(s) {unknown or regions}; expected one of {REGIONS} or {WHOLEBODY!r}"
        )
    depth = labels.shape[0]
    extent = depth * spacing[2]
    if len(regions) == 1 and regions[0] != WHOLEBODY:
        if extent < min_mm:
            raise InputImageError(
                f"{image_path}: volume is {extent:.0f} mm long (head-foot), shorter than preprocess.min_region_extent_mm={min_mm:g}"
            )
        return {regions[0]: (0, depth)}
    found = region_extents(labels, spacing, min_extent_mm=min_mm)
    wanted = REGIONS if WHOLEBODY in regions else regions
    out = {r: z for r, z in found.items() if r in wanted}
    if not out:
        raise InputImageError(
            f"{image_path}: no region of {list(wanted)} found in the {extent:.0f} mm volume with >= {min_mm:g} mm "
            f"extent (landmarks in the mask: lungs, skull/brain, liver, hips; found {found or 'none'})"
        )
    return out


def preprocess_case(
    image_path: str | Path,
    mask_path: str | Path,
    out_dir: str | Path,
    *,
    case: str,
    dataset: str,
    regions: list[str],
    cfg: PreprocessConfig,
    lesion_path: str | Path | None = None,
    lesion_dataset: bool = False,
) -> list[dict]:
    """Validate, reorient, resample, crop and window one case; write its cache folder ``out_dir`` atomically.

    Args:
        image_path: CT volume in HU (file or DICOM folder).
        mask_path: anatomy mask on the same grid (values 0..118).
        out_dir: the case's cache folder (replaced as a whole).
        case, dataset: identifiers stored in the metadata.
        regions: ``["wholebody"]`` to split by landmarks, or the one region the dataset covers.
        cfg: target spacing, interpolation, per-region windows, minimum region extent.
        lesion_path: optional lesion mask (uint8 values) on the same grid.
        lesion_dataset: the dataset serves the lesion tasks, so an all-zero lesion mask is a broken case
            (refused); elsewhere (e.g. AutoPET's negative controls) it means "no lesion" and is dropped.

    Returns:
        One metadata dict per written region (the contents of ``<region>_meta.json``).

    Raises:
        InputImageError, GeometryError: unreadable / non-CT input, mismatched grids, no usable region.
    """
    image_path, mask_path = Path(image_path), Path(mask_path)
    lesion_path = Path(lesion_path) if lesion_path is not None else None
    if cfg.image_interpolation not in _INTERPOLATORS:
        raise ConfigError(
            f"preprocess.image_interpolation must be one of {sorted(_INTERPOLATORS)}, got {cfg.image_interpolation!r}"
        )
    image = read_image(image_path)
    check_ct(image, image_path)
    mask = _read_label(mask_path, image, image_path, max_label=NUM_CLASSES - 1)
    lesion = _read_label(lesion_path, image, image_path, max_label=255) if lesion_path else None
    if lesion is not None and not sitk.GetArrayViewFromImage(lesion).any():
        if lesion_dataset:
            raise InputImageError(f"{lesion_path}: empty lesion mask (no voxel > 0) in a lesion dataset; a case "
                                  "without lesions must have no lesion file")  # fmt: skip
        log.info("%s: empty lesion mask: case %s has no lesion", lesion_path, case)
        lesion, lesion_path = None, None

    ref = canonical_grid(image, cfg.spacing_mm)
    hu = sitk.GetArrayFromImage(
        resample_to(image, ref, _INTERPOLATORS[cfg.image_interpolation], AIR_HU, sitk.sitkFloat32)
    )
    labels = sitk.GetArrayFromImage(resample_to(mask, ref, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    lesions = (
        sitk.GetArrayFromImage(resample_to(lesion, ref, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
        if lesion
        else None
    )
    spacing = tuple(float(s) for s in ref.GetSpacing())
    crops = _regions_to_crop(labels, spacing, regions, cfg.min_region_extent_mm, image_path)

    metas = []
    with atomic_dir(out_dir) as tmp:
        for region, (z0, z1) in crops.items():
            window = region_window(cfg, region)
            crop = hu[z0:z1]
            p1, p50, p99 = (float(v) for v in np.percentile(crop[:: max(1, crop.shape[0] // 64)], [1, 50, 99]))
            np.save(tmp / f"{region}_image.npy", hu_to_unit(crop, window).astype(np.float32, copy=False))
            np.save(tmp / f"{region}_label.npy", np.ascontiguousarray(labels[z0:z1]))
            if lesions is not None:
                np.save(tmp / f"{region}_lesion.npy", np.ascontiguousarray(lesions[z0:z1]))
            meta = {
                "case": case,
                "dataset": dataset,
                "region": region,
                "shape": list(crop.shape),
                "spacing_mm": list(spacing),
                "origin_mm": list(ref.TransformIndexToPhysicalPoint((0, 0, int(z0)))),
                "direction": list(_IDENTITY),
                "orientation": "LPS",
                "window": {"level": window.level, "width": window.width},
                "source_image": str(image_path),
                "source_mask": str(mask_path),
                "source_lesion": str(lesion_path) if lesion_path else None,
                "crop_z": [int(z0), int(z1)],
                "hu_stats": {"p1": p1, "p50": p50, "p99": p99},
            }
            (tmp / f"{region}_meta.json").write_text(json.dumps(meta, indent=2))
            metas.append(meta)
    log.info("%s: %s -> %s", case, {m["region"]: m["shape"] for m in metas}, out_dir)
    return metas


def load_crop(case_dir: str | Path, region: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(image (Z, Y, X) float32 in [-1, 1], label (Z, Y, X) uint8, meta) of one region; arrays memory-mapped."""
    case_dir = Path(case_dir)
    meta_path = case_dir / f"{region}_meta.json"
    if not meta_path.exists():
        present = sorted(p.name.removesuffix("_meta.json") for p in case_dir.glob("*_meta.json"))
        raise InputImageError(f"{meta_path}: region {region!r} not in the cache (present: {present})")
    meta = json.loads(meta_path.read_text())
    image = np.load(case_dir / f"{region}_image.npy", mmap_mode="r")
    label = np.load(case_dir / f"{region}_label.npy", mmap_mode="r")
    return image, label, meta


def load_lesion(case_dir: str | Path, region: str) -> np.ndarray | None:
    """The region's lesion mask (Z, Y, X) uint8, memory-mapped, or None when the case has none."""
    path = Path(case_dir) / f"{region}_lesion.npy"
    return np.load(path, mmap_mode="r") if path.exists() else None


def crop_to_sitk(array: np.ndarray, meta: dict, hu: bool) -> sitk.Image:
    """A (Z, Y, X) array on a crop's grid as a SimpleITK image with the crop's geometry (spacing, origin, direction).

    ``hu=True``: ``array`` holds network intensities in [-1, 1]; they are mapped back to HU with the crop's
    window (float32 image). ``hu=False``: the array is written as is (labels, masks, maps).
    """
    array = np.asarray(array)
    if tuple(array.shape) != tuple(meta["shape"]):
        raise ValueError(
            f"array shape {array.shape} does not match the crop shape {meta['shape']} of {meta['case']}/{meta['region']}"
        )
    if hu:
        array = unit_to_hu(array, Window(**meta["window"])).astype(np.float32)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(meta["spacing_mm"]))
    img.SetOrigin(tuple(meta["origin_mm"]))
    img.SetDirection(tuple(meta["direction"]))
    return img


def region_window(cfg: PreprocessConfig, region: str) -> Window:
    """The HU window of ``region`` (paper 4.1.2: han 50/400, chest -500/1800, abdomen 60/360 by default)."""
    if region not in cfg.windows:
        raise ConfigError(f"no window configured for region {region!r}; preprocess.windows has {sorted(cfg.windows)}")
    return cfg.windows[region]
