"""Evaluation of zero-shot anomaly detection (paper 4.3.3, Table 6, Fig. 7): the ``anomaly`` task's maps
against the lesion masks, inside the organ.

Image AUROC per axial slice, pixel AUROC, PRO and Dice (:mod:`meddiff.metrics.anomaly`), pooled over the
cases of the dataset: the numbers of the run's Table 6 row.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meddiff.atomic import atomic_path
from meddiff.errors import InputImageError
from meddiff.metrics.anomaly import evaluate_anomaly

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnomalyFigureData:
    """Fig. 7 material for one lesioned case: (Z, Y, X) image in HU, anomaly map normalised by the dataset
    scale (0..1), lesion mask; ``slice_index`` = axial slice with the largest lesion area."""

    case: str
    image_hu: np.ndarray
    anomaly_map: np.ndarray
    lesion_mask: np.ndarray
    slice_index: int
    window: tuple[float, float]


def figure_data(
    cases: list[str], maps: list[np.ndarray], lesions: list[np.ndarray], images_hu: list[np.ndarray],
    windows: list[tuple[float, float]], scale: float,
) -> AnomalyFigureData | None:
    """The lesioned case whose largest axial lesion cross-section is the largest of all (None if no lesion).

    Args:
        cases, maps, lesions, images_hu, windows: per case, aligned: name, (Z, Y, X) map, lesion mask and image
            in HU, and the image's window (low, high) HU.
        scale: the dataset-wide normalisation (:func:`meddiff.metrics.anomaly.dataset_max`).
    """
    best, best_area = None, 0
    for i, lesion in enumerate(lesions):
        areas = lesion.reshape(lesion.shape[0], -1).sum(axis=1)
        if areas.size and areas.max() > best_area:
            best, best_area = i, int(areas.max())
    if best is None:
        return None
    lesion = lesions[best]
    z = int(np.argmax(lesion.reshape(lesion.shape[0], -1).sum(axis=1)))
    amap = maps[best] / scale if scale > 0 else maps[best]
    return AnomalyFigureData(
        case=cases[best],
        image_hu=np.asarray(images_hu[best], dtype=np.float32),
        anomaly_map=np.clip(amap, 0.0, 1.0).astype(np.float32),
        lesion_mask=lesion.astype(bool),
        slice_index=z,
        window=tuple(windows[best]),
    )


def evaluate_anomaly_task(maps_npz: Path, out_csv: Path, out_npz: Path, *, threshold: float, dataset: str) -> dict:
    """Score the maps of the ``anomaly`` task (:func:`meddiff.tasks.anomaly.write_anomaly_maps`).

    Writes the per-case metrics (CSV, with a ``dataset`` column) and the pooled summary + Fig. 7 material
    (npz: ``summary`` JSON, ``case``, ``image_hu``, ``anomaly_map``, ``lesion_mask``, ``window``), atomically.
    ``threshold`` is the Dice threshold of the map normalised by its dataset maximum. Returns the summary.
    """
    try:
        npz = np.load(maps_npz)
    except FileNotFoundError:
        raise InputImageError(f"{maps_npz}: no anomaly maps (run the anomaly rule first)") from None
    with npz:
        cases = [str(c) for c in npz["cases"]]
        if not cases:
            raise InputImageError(f"{maps_npz}: holds no case")
        maps, organs, lesions, images, windows = (
            [npz[f"{c}/{key}"] for c in cases] for key in ("map", "organ", "lesion", "image_hu", "window")
        )
    per_case, summary = evaluate_anomaly(cases, maps, lesions, organs, threshold)
    log.info("anomaly summary: %s", summary)
    figure = figure_data(cases, maps, lesions, images, [tuple(w) for w in windows], summary["scale"])
    arrays = {"summary": np.array(json.dumps({k: float(v) for k, v in summary.items()}))}
    if figure is not None:
        arrays.update(
            case=np.array(figure.case),
            image_hu=figure.image_hu,
            anomaly_map=figure.anomaly_map,
            lesion_mask=figure.lesion_mask,
            window=np.array(figure.window),
        )
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    with atomic_path(out_csv) as tmp:
        per_case.assign(dataset=dataset).to_csv(tmp, index=False)
    if any(math.isnan(summary[k]) for k in ("image_auroc", "pixel_auroc")):
        log.warning("AUROC undefined: the cases hold no lesion or no normal slice")
    return summary
