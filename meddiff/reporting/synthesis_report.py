"""Tables 3 and 4, the training summary and Figure 5, formatted from the synthesis evaluations.

The Table 3 rows are the trained ablation variants; Table 4 compares the patch-level DDPM baseline, MAISI (only
when its outputs are supplied and evaluated by the ``evaluate_maisi`` rule) and MedDiff-FM (the foundation
model: the last variant, trained on to ``training.foundation_steps`` when that is set), plus MedDiff-FM sampled
without its anatomy condition when the model was trained with condition dropout (the reference for "Dice well
above unconditional"). The rows come from :mod:`meddiff.evaluation.synthesis`; the notes give every row's
training steps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from meddiff.config import Sections, foundation_run
from meddiff.data.masks import EVALUATION_BACKEND
from meddiff.diffusion.training import training_summary
from meddiff.evaluation.synthesis import CROPS_PER_VOLUME, FEATURE_CROP, REGION_TITLES, method_rows, ordered
from meddiff.reporting.figures import orthogonal_montage
from meddiff.reporting.paper_results import table34_rows
from meddiff.reporting.tables import DEMO_SCALE, PAPER_SCALE, paper_table, provenance, write_table

log = logging.getLogger(__name__)


def figure5(examples: dict[str, Path], run: str, path: Path) -> None:
    """Axial / coronal / sagittal views of real vs synthetic, one test crop per region.

    Args:
        examples: {method label: examples npz of its evaluation (:func:`meddiff.evaluation.synthesis.evaluate_synthesis`)};
            the real crop is taken from the first.
    Each row is shown in its own region window (mapped to [0, 1] before drawing)."""
    loaded = {}
    for label, npz_path in examples.items():
        with np.load(npz_path) as npz:
            loaded[label] = {k: npz[k] for k in npz.files}
    first = next(iter(loaded.values()))
    rows = {}
    for region, title in REGION_TITLES.items():
        if f"{region}/real" not in first:
            continue
        spacing = tuple(float(s) for s in first[f"{region}/spacing_mm"])
        rows[f"{title} real"] = ((first[f"{region}/real"] + 1) / 2, spacing)
        for label, arrays in loaded.items():
            rows[f"{title} {label}"] = ((arrays[f"{region}/synthetic"] + 1) / 2, spacing)
    orthogonal_montage(
        rows,
        path,
        window=(0.0, 1.0),
        title=f"Figure 5 ({run}): real vs synthetic",
        window_note="each row in its region window (HaN 50/400, chest -500/1800, abdomen 60/360 HU by default)",
    )


def report_synthesis(results: Path, settings: Sections) -> None:
    """Write tables/table3.*, tables/table4.*, tables/training.* and figures/figure5_synthesis.png of the run in
    ``results`` (results/<run>) from its declared inputs: evaluation/synthesis/<run>_<mode>.{csv,features.npz,
    examples.npz} of every model (and maisi.* when ``evaluation.maisi_output`` is set), models/<run>/model."""
    evaluation = results / "evaluation" / "synthesis"
    variants = settings["variants"]
    first, last = variants[0], variants[-1]
    foundation = foundation_run(settings["training.steps"], settings["training.foundation_steps"], variants)
    table3 = pd.concat(
        [method_rows(evaluation / f"{v.name}_conditional.csv", v.label) for v in variants], ignore_index=True
    )
    table3 = ordered(table3)
    last_cases = pd.read_csv(evaluation / f"{last.name}_conditional.csv")
    extractor = last_cases["extractor"].iloc[0]
    steps = {run: training_summary(results / "models" / run)["steps"] for run in (first.name, foundation)}
    datasets = settings["data.datasets"]
    scale = DEMO_SCALE if "phantom" in datasets else PAPER_SCALE
    data = f"{', '.join(datasets)}; {len(last_cases)} test crops (split seed {settings['seed']})"
    prov = provenance(results, settings, data=data, scale=scale)
    backend = settings["masks.backend"]
    notes = [
        f"FID, MMD and LPIPS-style distance use 3D features of {extractor}; FID/MMD pool {CROPS_PER_VOLUME} crops "
        f"of {FEATURE_CROP}^3 per volume.",
        "Dice: mean over the paper's organs of the region, between the anatomy condition and TotalSegmentator's "
        "segmentation of the synthetic volume; n/a unless the mask backend is TotalSegmentator (this run: "
        f"{backend}, synthetic volumes segmented by {EVALUATION_BACKEND[backend]}). "
        "'Dice body/lung/bone' uses the coarse classes every backend finds.",
        "HU W1 body: Wasserstein-1 distance (HU) between real and synthetic intensity histograms inside the body.",
    ]
    write_table(
        paper_table(table3, table34_rows(3)),
        results / "tables" / "table3",
        title="Table 3: ablation of MedDiff-FM components (conditional whole-volume synthesis)",
        provenance=prov,
        notes=[f"Every variant trained {settings['training.steps']} steps (tables/training.md).", *notes],
    )

    rows = [table3[table3["Method"] == first.label].assign(Method="DDPM (patch-level baseline)")]
    maisi = settings["evaluation.maisi_output"]
    if maisi:
        rows.append(method_rows(evaluation / "maisi.csv", "MAISI"))
        notes.append(f"MAISI: volumes generated outside this workflow, read from {maisi}.")
    else:
        rows.append(pd.DataFrame([{"Region": r, "Method": "MAISI (not run: evaluation.maisi_output not set)"}
                                  for r in ("HaN", "Chest", "Abdomen", "Overall")]))  # fmt: skip
    rows.append(method_rows(evaluation / f"{foundation}_conditional.csv", "MedDiff-FM"))
    unconditional = evaluation / f"{foundation}_unconditional.csv"
    if unconditional.exists():
        rows.append(method_rows(unconditional, "MedDiff-FM without anatomy condition"))
    notes.insert(
        0,
        f"Training steps: DDPM (patch-level baseline) {steps[first.name]}, MedDiff-FM and MedDiff-FM without "
        f"anatomy condition (the same model) {steps[foundation]}.",
    )
    write_table(
        paper_table(ordered(pd.concat(rows, ignore_index=True)), table34_rows(4)),
        results / "tables" / "table4",
        title="Table 4: conditional CT volume synthesis",
        provenance=prov,
        notes=notes,
    )

    runs = {v.name: v.label for v in variants}
    runs.setdefault(foundation, f"{last.label}, continued (foundation model)")
    training = pd.DataFrame(
        [{"variant": run, "label": label, **training_summary(results / "models" / run)} for run, label in runs.items()]
    )
    write_table(training, results / "tables" / "training", title="Pre-training runs (loss falls?)", provenance=prov)
    figure5(
        {first.label: evaluation / f"{first.name}_conditional.examples.npz",
         "MedDiff-FM": evaluation / f"{foundation}_conditional.examples.npz"},
        settings["run"],
        results / "figures" / "figure5_synthesis.png",
    )  # fmt: skip
