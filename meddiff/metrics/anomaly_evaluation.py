"""The anomaly-detection experiment (paper 4.3.3, Table 6): cases -> anomaly maps -> metrics.

Demo (``anomaly.dataset: phantom``): freshly generated abdomen phantoms, half healthy and half with liver
tumours, resampled and windowed like the training data. Paper scale (``bmad_liver``): BMAD's liver test
slices stacked into pseudo-3D volumes.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from meddiff.atomic import atomic_path
from meddiff.config import Config
from meddiff.data.anomaly_cases import AnomalyCase, demo_anomaly_cases
from meddiff.data.bmad import load_bmad_liver
from meddiff.diffusion.checkpoint import load_model
from meddiff.labels import BODY
from meddiff.metrics.anomaly import evaluate_anomaly
from meddiff.tasks.anomaly import figure_data, model_map_fn, run_anomaly_task

log = logging.getLogger(__name__)


def anomaly_cases(cfg: Config) -> list[AnomalyCase]:
    """The evaluation cases named by ``cfg.anomaly.dataset``."""
    window = cfg.preprocess.windows["abdomen"]
    if cfg.anomaly.dataset == "phantom":
        n = cfg.anomaly.cases or 6
        return demo_anomaly_cases(
            n // 2, n - n // 2, seed=cfg.seed, spacing_mm=cfg.preprocess.spacing_mm, window=window
        )
    return load_bmad_liver(
        Path(cfg.data.root) / cfg.anomaly.dataset,
        "test",
        slices_per_volume=cfg.anomaly.slices_per_volume or cfg.model.patch_size[0],
        window=window,
        max_volumes=cfg.anomaly.cases,
    )


def run_anomaly_experiment(model_dir: Path, out_csv: Path, out_npz: Path, cfg: Config, device: str) -> dict:
    """Anomaly maps of every case with the model in ``model_dir``; writes per-case metrics (CSV) and the
    pooled summary + Fig. 7 material (npz). Returns the summary."""
    cases = anomaly_cases(cfg)
    loaded = load_model(model_dir, device)
    # The model knows the label space of its own mask backend: the threshold backend labels the liver
    # (and every soft-tissue organ) ``body``, so that is the condition it must be given there.
    condition_label = BODY if cfg.masks.backend == "threshold" else None
    map_fn = model_map_fn(
        loaded,
        cfg=cfg.anomaly,
        sampling=cfg.sampling,
        patch_size=cfg.model.patch_size,
        device=device,
        condition_label=condition_label,
    )
    output = run_anomaly_task(cases, map_fn, cfg.anomaly, seed=cfg.seed)
    per_case, summary = evaluate_anomaly(
        [c.case for c in output.cases],
        output.maps,
        [c.lesion_mask for c in output.cases],
        output.organ_masks,
        cfg.anomaly.threshold,
    )
    log.info("anomaly summary: %s", summary)
    figure = figure_data(output, summary["scale"])
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
        per_case.assign(dataset=cfg.anomaly.dataset).to_csv(tmp, index=False)
    if any(math.isnan(summary[k]) for k in ("image_auroc", "pixel_auroc")):
        log.warning("AUROC undefined: the cases hold no lesion or no normal slice")
    return summary
