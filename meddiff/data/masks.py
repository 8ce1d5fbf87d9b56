"""Anatomy masks in the project's label space (paper 4.1.2): TotalSegmentator ``total`` classes 1..117 plus the
thresholded body class 118 (see :mod:`meddiff.labels`).

Three backends:

* ``"totalsegmentator"`` — the paper's choice: TotalSegmentator v2 (task ``total``) through its Python API, then
  every unclaimed body voxel becomes ``body``. Needs its weights installed; never downloads at run time.
* ``"threshold"`` — a weights-free approximation for machines without TotalSegmentator weights (the CPU demo).
  It finds only body, lungs (as lobes), trachea and bone; see :func:`threshold_anatomy`.
* ``"reference"`` — labels shipped with the dataset (registry ``label_glob`` with ``label_space:
  totalsegmentator``, e.g. the embedded phantom's ground truth), checked against the image's grid; every
  unclaimed body voxel becomes ``body``. Gives real organ classes without TotalSegmentator weights. It cannot
  segment new images, so synthesis evaluation segments generated volumes with the threshold backend
  (:data:`EVALUATION_BACKEND`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from meddiff.config import MasksConfig
from meddiff.data.io import read_image, write_image
from meddiff.data.validate import check_ct, check_label_map, check_same_geometry
from meddiff.errors import ConfigError, WeightsMissingError
from meddiff.labels import BODY, class_index

log = logging.getLogger(__name__)

LUNG_AIR_HU = -400.0
"""Air inside the body below this HU is a lung / airway candidate."""
LUNG_MIN_ML = 50.0
"""An air component smaller than this (mL) is never a lung."""
GAS_MEDIAN_HU = -970.0
"""An air component whose median is below this is pure gas (bowel, stomach), not lung parenchyma (~ -850 HU)."""
TRACHEA_MAX_AREA_MM2 = 700.0
"""Largest axial cross-section of the trachea (diameter <= ~30 mm)."""
TRACHEA_MAX_OFFSET_MM = 20.0
"""Largest distance of the trachea's centre from the body's mid-sagittal line."""
BONE_HU = 250.0
"""Body voxels above this HU (outside lungs/airway) are bone."""
GENERIC_BONE = "vertebrae_T12"
"""Class given to bone below the lung apex by the threshold backend: ribs, spine, pelvis and limbs are not
separable by a threshold, so they share one spine class (the thoracolumbar junction, present in most scans)."""

BACKENDS = ("threshold", "totalsegmentator", "reference")
EVALUATION_BACKEND = {"threshold": "threshold", "totalsegmentator": "totalsegmentator", "reference": "threshold"}
"""Backend that segments a new (e.g. generated) image, for each ``masks.backend``."""

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)  # connects voxels within an axial slice only


def _to_lps(img: sitk.Image) -> tuple[sitk.Image, str]:
    """Reorient to LPS (array axes (Z, Y, X) = inferior->superior, anterior->posterior, right->left)."""
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())
    return (img if code == "LPS" else sitk.DICOMOrient(img, "LPS")), code


def _fill_enclosed(mask: np.ndarray, in_plane: bool) -> np.ndarray:
    """Fill background regions of ``mask`` (Z, Y, X) not connected to the array border.

    ``in_plane=True`` fills each axial slice separately (border = the slice's edges), which closes lungs and
    airways that open at the top of the volume. Written with :func:`scipy.ndimage.label` because
    ``binary_fill_holes`` has no per-slice mode and its iterative propagation is slower on large volumes.
    """
    lab, n = ndimage.label(~mask, structure=_IN_PLANE if in_plane else None)
    outside = np.zeros(n + 1, dtype=bool)
    faces = [lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]]
    if not in_plane:
        faces += [lab[0], lab[-1]]
    for face in faces:
        outside[np.unique(face)] = True
    outside[0] = True
    return mask | ~outside[lab]


def body_mask(hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    """Body (Z, Y, X) bool: ``hu > threshold_hu``, largest connected component, holes filled per axial slice
    and in 3D (the definition of class 118, :mod:`meddiff.labels`)."""
    lab, n = ndimage.label(hu > threshold_hu)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body = lab == int(sizes.argmax())
    return _fill_enclosed(_fill_enclosed(body, in_plane=True), in_plane=False)


def _midline_x(body: np.ndarray) -> np.ndarray:
    """Per-slice x index (float, shape (Z,)) of the body's centre: the mid-sagittal line."""
    counts = body.sum(axis=1)  # (Z, X)
    total = counts.sum(axis=1)
    x = np.arange(body.shape[2])
    mid = (counts * x).sum(axis=1) / np.maximum(total, 1)
    return np.where(total > 0, mid, body.shape[2] / 2)


def _lung_system(hu: np.ndarray, body: np.ndarray, voxel_ml: float) -> np.ndarray:
    """Air components inside the body that are lungs (+ connected airways), as a bool mask (Z, Y, X).

    Candidates are air (< ``LUNG_AIR_HU``) components of >= ``LUNG_MIN_ML`` whose median HU is not pure gas
    (>= ``GAS_MEDIAN_HU``). The largest one is kept, plus any other of >= 10 % of its volume overlapping it
    in z (the other lung when the two are not connected by airways).
    """
    lab, n = ndimage.label(body & (hu < LUNG_AIR_HU))
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    ids = np.flatnonzero(sizes * voxel_ml >= LUNG_MIN_ML)
    if ids.size:
        # medians on every 2nd voxel per axis: candidates have >= 50 mL, and the full median costs ~10x more
        medians = np.atleast_1d(ndimage.median(hu[::2, ::2, ::2], lab[::2, ::2, ::2], ids))
        ids = ids[medians >= GAS_MEDIAN_HU]
    if ids.size == 0:
        return np.zeros(hu.shape, dtype=bool)
    objects = ndimage.find_objects(lab)
    main = ids[np.argmax(sizes[ids])]
    z0, z1 = objects[main - 1][0].start, objects[main - 1][0].stop
    keep = np.zeros(n + 1, dtype=bool)
    for i in ids:
        zs = objects[i - 1][0]
        if i == main or (sizes[i] >= 0.1 * sizes[main] and zs.start < z1 and zs.stop > z0):
            keep[i] = True
    return keep[lab]


def _airway(
    system: np.ndarray, mid_x: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Split the lung system into (lungs, trachea, lung apex z index or None when no lung is found).

    Each axial blob of the system is *lateral* (centre further than ``TRACHEA_MAX_OFFSET_MM`` from the body
    midline: a lung), *narrow* (midline, area <= ``TRACHEA_MAX_AREA_MM2``: trachea-like) or *wide* midline
    (fused lungs, or pharynx / mouth air). The apex is the highest lateral blob of the contiguous run of
    slices with lateral or wide blobs that contains the slice with the most lateral area (so sinus air
    connected through the nose, above a narrow trachea, does not count). The trachea is the narrow blobs above the apex plus, going down from the apex, the narrow
    blobs until the first slice without one (~ the carina). Other air above the apex is not lung (it stays body).
    """
    lab, n = ndimage.label(system, structure=_IN_PLANE)
    empty = np.zeros(system.shape, dtype=bool)
    if n == 0:
        return empty, empty, None
    area = np.bincount(lab.ravel())[1:] * spacing[0] * spacing[1]
    xs = np.broadcast_to(np.arange(system.shape[2], dtype=np.float32), system.shape)
    cx = np.asarray(ndimage.mean(xs, lab, np.arange(1, n + 1)))
    zs = np.array([o[0].start for o in ndimage.find_objects(lab)])
    lateral = np.abs(cx - mid_x[zs]) * spacing[0] > TRACHEA_MAX_OFFSET_MM
    narrow = ~lateral & (area <= TRACHEA_MAX_AREA_MM2)
    lateral_area = np.bincount(zs[lateral], weights=area[lateral], minlength=system.shape[0])
    if not lateral_area.any():  # no lung: at most an airway column
        sel = np.concatenate([[False], narrow])
        return empty, sel[lab], None
    # the run of slices holding lung-like (non-narrow) blobs around the largest lateral slice; its highest
    # lateral slice is the apex (wide midline slices, e.g. lungs fused at the carina, do not break the run)
    lung_like = np.bincount(zs[~narrow], minlength=system.shape[0]) > 0
    top = int(np.argmax(lateral_area))
    while top + 1 < system.shape[0] and lung_like[top + 1]:
        top += 1
    apex = int(np.flatnonzero(lateral_area[: top + 1] > 0).max())
    trachea_ids = list(np.flatnonzero(narrow & (zs > apex)) + 1)
    for z in range(apex, int(zs.min()) - 1, -1):
        hits = np.flatnonzero((zs == z) & narrow)
        if hits.size == 0:
            break
        trachea_ids.extend(hits + 1)
    is_trachea = np.zeros(n + 1, dtype=bool)
    is_trachea[np.asarray(trachea_ids, dtype=int)] = True
    is_lung = np.concatenate([[False], zs <= apex]) & ~is_trachea
    return is_lung[lab], is_trachea[lab], apex


def _split_sides(lungs: np.ndarray, mid_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) lung masks. Whole 3D components go to one side when >= 90 % of them lie on it (x grows
    to the patient's left in LPS); components spanning both sides are cut at the midline."""
    x = np.arange(lungs.shape[2])[None, None, :]
    patient_left = x > mid_x[:, None, None]
    lab, n = ndimage.label(lungs)
    if n == 0:
        return lungs.copy(), lungs.copy()
    frac_left = ndimage.mean(patient_left & lungs, lab, np.arange(1, n + 1))
    side = np.full(n + 1, -1)  # -1: split voxelwise, 1: left, 0: right
    side[1:][frac_left >= 0.9] = 1
    side[1:][frac_left <= 0.1] = 0
    s = side[lab]
    left = lungs & ((s == 1) | ((s == -1) & patient_left))
    return left, lungs & ~left


def _lobes(side: np.ndarray, names: list[str], labels: np.ndarray) -> None:
    """Write ``names`` (top to bottom) into ``labels`` over equal z-bands of the lung ``side`` (approximation)."""
    zs = np.flatnonzero(side.any(axis=(1, 2)))
    if zs.size == 0:
        return
    idx = class_index()
    edges = np.linspace(zs.max() + 1, zs.min(), len(names) + 1)  # descending: superior first
    z = np.arange(side.shape[0])[:, None, None]
    for name, hi, lo in zip(names, edges[:-1], edges[1:]):
        labels[side & (z < hi) & (z >= lo)] = idx[name]


def threshold_anatomy(hu: np.ndarray, spacing: tuple[float, float, float], body_threshold_hu: float) -> np.ndarray:
    """Weights-free anatomy labels (Z, Y, X) uint8 from an LPS-oriented HU array (z index grows superior).

    An approximation of TotalSegmentator's output with the classes a threshold can find:

    * ``body`` (118): :func:`body_mask`.
    * lungs: large non-gas air components (:func:`_lung_system`) minus the trachea, split left/right at the
      body midline, vessels inside filled; lobes are **approximated by height**: left upper/lower lobe =
      upper/lower half of the left lung, right upper/middle/lower lobe = its thirds. Not anatomical fissures.
    * ``trachea`` (16): the narrow midline airway at the top of the lung system (:func:`_airway`); wider air
      above the lung apex (pharynx, mouth) stays ``body``.
    * bone (> ``BONE_HU``): ``skull`` above the lung apex, ``GENERIC_BONE`` elsewhere; with no lungs found
      every bone voxel is ``GENERIC_BONE``. Contrast-filled vessels above ``BONE_HU`` also land here.
    * bowel / stomach gas and other air inside the body stays ``body`` (no reliable colon/stomach split).
    """
    idx = class_index()
    voxel_ml = float(np.prod(spacing)) / 1000.0
    body = body_mask(hu, body_threshold_hu)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[body] = BODY
    mid_x = _midline_x(body)
    system = _lung_system(hu, body, voxel_ml)
    lungs, trachea, apex = _airway(system, mid_x, spacing)
    left, right = _split_sides(lungs, mid_x)
    # Vessels and airway walls inside a lung belong to it (as in TotalSegmentator's lobes): fill each side's
    # in-plane holes separately (together, the two lungs could enclose the mediastinum).
    left = _fill_enclosed(left, in_plane=True) & ~trachea
    right = _fill_enclosed(right, in_plane=True) & ~trachea & ~left
    lungs = left | right
    _lobes(left, ["lung_upper_lobe_left", "lung_lower_lobe_left"], labels)
    _lobes(right, ["lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"], labels)
    labels[trachea] = idx["trachea"]
    bone = body & (hu > BONE_HU) & ~lungs & ~trachea
    labels[bone] = idx[GENERIC_BONE]
    if apex is not None:
        labels[apex + 1 :][bone[apex + 1 :]] = idx["skull"]
    return labels


def totalsegmentator_weights(fast: bool) -> list[Path]:
    """Folders TotalSegmentator needs for task ``total`` (fast: the 3 mm model, else the five 1.5 mm parts)."""
    from totalsegmentator.config import get_weights_dir
    from totalsegmentator.map_tasks_config import TASK_CONFIGS, TASK_ID_WEIGHTS_CONFIGS

    task_ids = TASK_CONFIGS["total"]["sub_modes"]["fast" if fast else "default"]["task_id"]
    task_ids = task_ids if isinstance(task_ids, list) else [task_ids]
    folders = []
    for tid in task_ids:
        info = TASK_ID_WEIGHTS_CONFIGS[tid]
        folders.append(get_weights_dir() / info.get("rel_path", "") / info["foldername"])
    return folders


def check_totalsegmentator_weights(fast: bool) -> None:
    """Raise :class:`WeightsMissingError` unless every weights folder for task ``total`` holds a checkpoint.

    TotalSegmentator would otherwise start a download (which hangs without internet)."""
    folders = totalsegmentator_weights(fast)
    missing = [f for f in folders if not f.is_dir() or not any(f.rglob("*.pth"))]
    if missing:
        names = ", ".join(f.name for f in missing)
        raise WeightsMissingError(
            f"TotalSegmentator weights for task 'total'{' (fast)' if fast else ''} not installed: {names} "
            f"missing or without checkpoint under {folders[0].parent} (TotalSegmentator looks in "
            "$TOTALSEG_WEIGHTS_PATH, else $TOTALSEG_HOME_DIR/nnunet/results, else ~/.totalsegmentator/nnunet/results). "
            f"Install them with `totalseg_download_weights -t total{' --fast' if fast else ''}` on a machine with "
            "internet, or copy the folders there and set TOTALSEG_HOME_DIR; or use masks.backend: threshold"
        )


def _totalsegmentator_labels(image: sitk.Image, fast: bool, image_path: Path | None) -> sitk.Image:
    """Run TotalSegmentator (task ``total``, multilabel) on ``image``; returns its label image on ``image``'s grid."""
    check_totalsegmentator_weights(fast)
    import torch
    from totalsegmentator.python_api import totalsegmentator

    device = "gpu" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="meddiff-totalseg-") as tmp:
        src = image_path if image_path is not None and image_path.name.endswith((".nii", ".nii.gz")) else None
        if src is None:
            src = Path(tmp) / "image.nii.gz"
            sitk.WriteImage(image, str(src))
        out = Path(tmp) / "labels.nii.gz"
        log.info("running TotalSegmentator (task total, fast=%s, device=%s) on %s", fast, device, src)
        totalsegmentator(src, out, ml=True, fast=fast, task="total", quiet=True, device=device)
        seg = sitk.ReadImage(str(out), sitk.sitkUInt8)
    if seg.GetSize() != image.GetSize():
        raise RuntimeError(f"TotalSegmentator returned size {seg.GetSize()} for an image of size {image.GetSize()}")
    seg.CopyInformation(image)
    return seg


def anatomy_mask(
    image: sitk.Image,
    *,
    backend: str,
    body_threshold_hu: float,
    fast: bool = False,
    image_path: Path | None = None,
    reference: sitk.Image | None = None,
) -> sitk.Image:
    """Anatomy label map (uint8, classes 0..118, same grid as ``image``) of a CT volume in HU.

    ``backend="totalsegmentator"``: TotalSegmentator classes 1..117, then body voxels (threshold
    ``body_threshold_hu``) left at 0 become ``body`` (118). ``backend="threshold"``: :func:`threshold_anatomy`.
    ``backend="reference"``: the label map ``reference`` (already checked to be on the image's grid and in the
    label space), completed with ``body`` the same way. ``fast`` selects TotalSegmentator's 3 mm model.
    ``image_path`` (optional) lets TotalSegmentator read the original file instead of a temporary copy.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown masks.backend {backend!r}; expected one of {list(BACKENDS)}")
    if (backend == "reference") != (reference is not None):
        raise ConfigError("a reference label map is needed by, and only by, masks.backend 'reference'")
    oriented, code = _to_lps(image)
    hu = sitk.GetArrayFromImage(oriented).astype(np.float32, copy=False)
    spacing = tuple(float(s) for s in oriented.GetSpacing())
    if backend == "threshold":
        labels = threshold_anatomy(hu, spacing, body_threshold_hu)
    else:
        if backend == "reference":
            seg = sitk.Cast(reference, sitk.sitkUInt8)
        else:
            seg = _totalsegmentator_labels(image, fast, Path(image_path) if image_path else None)
        labels = sitk.GetArrayFromImage(sitk.DICOMOrient(seg, "LPS") if code != "LPS" else seg).astype(np.uint8)
        labels[(labels == 0) & body_mask(hu, body_threshold_hu)] = BODY
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(oriented)
    if code != "LPS":
        out = sitk.DICOMOrient(out, code)
    out.CopyInformation(image)
    return out


def make_anatomy_mask(
    image_path: str | Path, out_path: str | Path, cfg: MasksConfig, reference_path: str | Path | None = None
) -> None:
    """Read and check the CT at ``image_path``, compute its anatomy mask with ``cfg``, write it atomically
    to ``out_path`` (what the ``masks`` rule calls). ``reference_path``: the case's shipped label map, needed by
    (and only by) ``masks.backend: reference``; it must be on the image's grid with classes 0..118."""
    image_path = Path(image_path)
    image = read_image(image_path)
    check_ct(image, image_path)
    reference = None
    if cfg.backend == "reference":
        if reference_path is None:
            raise ConfigError(
                f"{image_path}: masks.backend 'reference' needs the case's label map (--reference), from a "
                "dataset whose registry entry has a label_glob with label_space: totalsegmentator"
            )
        reference = read_image(reference_path)
        check_label_map(reference, reference_path)
        check_same_geometry(image, reference, image_path, reference_path)
    elif reference_path is not None:
        raise ConfigError(f"--reference is only used with masks.backend 'reference' (this run: {cfg.backend!r})")
    mask = anatomy_mask(
        image, backend=cfg.backend, body_threshold_hu=cfg.body_threshold_hu, fast=cfg.fast, image_path=image_path,
        reference=reference,
    )
    counts = np.bincount(sitk.GetArrayViewFromImage(mask).ravel(), minlength=BODY + 1)
    log.info(
        "%s: mask with %d classes, body fraction %.2f",
        image_path,
        int((counts[1:] > 0).sum()),
        counts[1:].sum() / counts.sum(),
    )
    write_image(mask, out_path)
