"""Evaluation cases of the anomaly-detection task (paper 3.4.2, 4.3.3) and the demo cohort of healthy and
lesioned phantom livers that stands in for BMAD liver when BMAD is not on disk.

An :class:`AnomalyCase` is what the task needs of one volume: the image in the network's [-1, 1] space, the
anatomy labels the organ mask and anatomy condition are taken from, and the ground-truth anomalies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from meddiff.config import Window
from meddiff.data.intensity import hu_to_unit
from meddiff.errors import InputImageError
from meddiff.labels import class_index

log = logging.getLogger(__name__)

DEMO_SEED_OFFSET = 10_000
"""Added to the demo seed so anomaly cases never share a phantom seed with the pre-training cohort."""
LIVER_TUMOUR = 1
"""Value of a liver tumour in a phantom lesion map; the only lesion class that counts as an anomaly here."""


@dataclass(frozen=True)
class AnomalyCase:
    """One evaluation volume.

    Attributes:
        case: identifier.
        image: (Z, Y, X) float32 in [-1, 1] (``window`` mapped to [-1, 1], see :mod:`meddiff.data.intensity`).
        labels: (Z, Y, X) uint8 label space of :mod:`meddiff.labels` (0 = background / outside air).
        lesion_mask: (Z, Y, X) bool ground-truth anomalies.
        spacing: voxel spacing (x, y, z) in mm.
        window: HU window of ``image``.
        region: region class of the region condition (``"abdomen"`` for livers).
    """

    case: str
    image: np.ndarray
    labels: np.ndarray
    lesion_mask: np.ndarray
    spacing: tuple[float, float, float]
    window: Window
    region: str

    def __post_init__(self) -> None:
        shapes = {np.shape(self.image), np.shape(self.labels), np.shape(self.lesion_mask)}
        if len(shapes) != 1 or np.ndim(self.image) != 3:
            raise InputImageError(
                f"{self.case}: image {np.shape(self.image)}, labels {np.shape(self.labels)} and lesion mask "
                f"{np.shape(self.lesion_mask)} must be 3D (Z, Y, X) arrays of one shape"
            )


def _resample_like_preprocessing(img: sitk.Image, spacing: tuple[float, float, float], *, labels: bool) -> sitk.Image:
    """Reorient to LPS and resample to ``spacing`` exactly as :func:`meddiff.data.preprocess.preprocess_case`
    does (its grid and resampler; air outside the source volume, nearest neighbour for label maps)."""
    # preprocess's grid builder, reused so demo cases sit on the training grid.
    from meddiff.data.preprocess import AIR_HU, canonical_grid, resample_to

    ref = canonical_grid(img, spacing)
    if labels:
        return resample_to(img, ref, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return resample_to(img, ref, sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)


def liver_z_range(labels: np.ndarray, margin: int) -> tuple[int, int]:
    """(z0, z1) of the slices holding liver, widened by ``margin`` slices on each side (clipped to the volume)."""
    liver = np.asarray(labels) == class_index()["liver"]
    zs = np.flatnonzero(liver.any(axis=(1, 2)))
    if zs.size == 0:
        raise InputImageError("no liver label in the case: cannot crop the anomaly-detection volume to the liver")
    return max(0, int(zs[0]) - margin), min(liver.shape[0], int(zs[-1]) + 1 + margin)


def demo_anomaly_cases(
    n_healthy: int,
    n_lesioned: int,
    *,
    seed: int,
    spacing_mm: tuple[float, float, float],
    window: Window,
    z_margin_mm: float = 10.0,
) -> list[AnomalyCase]:
    """Healthy and lesioned abdomen phantoms ("generated healthy and lesioned livers"), ready for the task.

    Each phantom (``meddiff.data.phantom.generate_case``, seed ``seed + DEMO_SEED_OFFSET + i``, disjoint from the
    pre-training cohort's seeds) is reoriented to LPS and resampled to ``spacing_mm`` (x, y, z) like the training
    cache, windowed with ``window`` (the abdomen window) to [-1, 1], and cropped in z to the liver's extent plus
    ``z_margin_mm`` on each side to keep the volume small. Only liver tumours (lesion value 1) count as anomalies;
    they are drawn as :data:`~meddiff.data.phantom.lesions.CONSPICUOUS_TUMOURS` (see there why).

    Returns ``n_healthy`` healthy cases followed by ``n_lesioned`` lesioned ones (case names ``anomaly_demo_<i>``).
    """
    # the phantom modules are only needed for demo cases
    from meddiff.data.phantom import CONSPICUOUS_TUMOURS, generate_case

    cases = []
    for i in range(n_healthy + n_lesioned):
        lesioned = i >= n_healthy
        phantom = generate_case(
            "abdomen", seed + DEMO_SEED_OFFSET + i, lesions=lesioned, liver_tumours=CONSPICUOUS_TUMOURS
        )
        hu = sitk.GetArrayFromImage(_resample_like_preprocessing(phantom.image, spacing_mm, labels=False))
        labels = sitk.GetArrayFromImage(_resample_like_preprocessing(phantom.labels, spacing_mm, labels=True))
        lesions = sitk.GetArrayFromImage(_resample_like_preprocessing(phantom.lesions, spacing_mm, labels=True))
        z0, z1 = liver_z_range(labels, margin=int(round(z_margin_mm / spacing_mm[2])))
        lesion_mask = lesions[z0:z1] == LIVER_TUMOUR
        if lesioned and not lesion_mask.any():
            log.warning("demo anomaly case %d: the lesioned phantom has no liver tumour at %s mm", i, spacing_mm)
        cases.append(
            AnomalyCase(
                case=f"anomaly_demo_{i:03d}",
                image=hu_to_unit(hu[z0:z1], window).astype(np.float32),
                labels=np.ascontiguousarray(labels[z0:z1]),
                lesion_mask=lesion_mask,
                spacing=tuple(float(s) for s in spacing_mm),
                window=window,
                region="abdomen",
            )
        )
    log.info("demo anomaly cases: %d healthy, %d lesioned, shapes %s", n_healthy, n_lesioned,
             sorted({c.image.shape for c in cases}))
    return cases
