"""Tables 3 and 4 and Figure 5 from the per-variant synthesis evaluations.

Per region and overall: means of the per-case metrics, and FID / MMD computed from the pooled crop features
of the region's real and synthetic volumes. The Table 3 rows are the trained ablation variants; Table 4
compares the patch-level DDPM baseline, MAISI (only when its outputs are supplied) and MedDiff-FM (the
foundation model: the last variant, trained on to ``training.foundation_steps`` when that is set), plus
MedDiff-FM sampled without its anatomy condition when the model was trained with condition dropout (the
reference for "Dice well above unconditional"). The notes give every row's training steps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from meddiff.config import Config, Window
from meddiff.data.intensity import hu_to_unit
from meddiff.data.masks import EVALUATION_BACKEND
from meddiff.data.preprocess import load_crop
from meddiff.diffusion.training import training_summary
from meddiff.metrics.distribution import fid, mmd
from meddiff.metrics.synthesis_evaluation import CROPS_PER_VOLUME, FEATURE_CROP, evaluate_synthesis
from meddiff.reporting.figures import orthogonal_montage
from meddiff.reporting.tables import DEMO_SCALE, PAPER_SCALE, paper_rows, paper_table, provenance, write_table

log = logging.getLogger(__name__)

REGION_TITLES = {"han": "HaN", "chest": "Chest", "abdomen": "Abdomen"}
METRICS = ["MS-SSIM", "LPIPS", "FID", "MMD", "Dice", "Dice body/lung/bone", "HU W1 body"]


def _scale(cfg: Config) -> str:
    return DEMO_SCALE if "phantom" in cfg.data.datasets else PAPER_SCALE


def _data(cfg: Config, n_cases: int) -> str:
    return f"{', '.join(cfg.data.datasets)}; {n_cases} test crops (split seed {cfg.seed})"


def summarise(per_case: pd.DataFrame, features: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows Region (HaN, Chest, Abdomen, Overall) with the metric means and pooled FID / MMD."""
    out = []
    groups = [(REGION_TITLES[r], per_case[per_case["region"] == r]) for r in REGION_TITLES]
    for title, rows in [*groups, ("Overall", per_case)]:
        if rows.empty:
            continue
        keys = [f"{d}/{c}/{r}" for d, c, r in rows[["dataset", "case", "region"]].itertuples(index=False)]
        real = np.concatenate([features[f"{k}/real"] for k in keys])
        fake = np.concatenate([features[f"{k}/synthetic"] for k in keys])
        record = {"Region": title, "cases": len(rows)}
        record.update({m: rows[m].mean() for m in ("MS-SSIM", "LPIPS", "Dice", "Dice body/lung/bone", "HU W1 body")})
        record.update(FID=fid(real, fake), MMD=mmd(real, fake))
        out.append(record)
    return pd.DataFrame(out)


def _load(evaluation_dir: Path, variant: str, mode: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    per_case = pd.read_csv(evaluation_dir / f"{variant}_{mode}.csv")
    with np.load(evaluation_dir / f"{variant}_{mode}.features.npz") as npz:
        features = {k: npz[k] for k in npz.files}
    return per_case, features


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df[["Region", "Method", *METRICS, "cases"]]


def figure5(results: Path, cfg: Config, per_case: pd.DataFrame, path: Path) -> None:
    """Axial / coronal / sagittal views of real vs synthetic (baseline and the foundation model), one test crop
    per region.

    Each row is shown in its own region window (mapped to [0, 1] before drawing)."""
    rows = {}
    shown = {cfg.variants[0].name: cfg.variants[0].label, cfg.foundation_run: "MedDiff-FM"}
    for region, title in REGION_TITLES.items():
        picked = per_case[per_case["region"] == region]
        if picked.empty:
            continue
        dataset, case = picked.iloc[0][["dataset", "case"]]
        real, _, meta = load_crop(results / "cache" / dataset / case, region)
        window = Window(**meta["window"])
        spacing = tuple(meta["spacing_mm"])
        rows[f"{title} real"] = ((np.asarray(real) + 1) / 2, spacing)
        for run, label in shown.items():
            path_v = results / "synthesis" / run / "conditional" / dataset / region / f"{case}.nii.gz"
            hu = sitk.GetArrayFromImage(sitk.ReadImage(str(path_v)))
            rows[f"{title} {label}"] = ((hu_to_unit(hu, window) + 1) / 2, spacing)
    orthogonal_montage(
        rows,
        path,
        window=(0.0, 1.0),
        title=f"Figure 5 ({cfg.run}): real vs synthetic",
        window_note="each row in its region window (HaN 50/400, chest -500/1800, abdomen 60/360 HU by default)",
    )


def _maisi(results: Path, cfg: Config, evaluation: Path, device: str):
    """Evaluate MAISI volumes the user generated for the same test crops (``<dataset>/<region>/<case>.nii.gz``
    on each crop's grid, in HU) exactly like our own synthetic volumes."""
    csv, npz = evaluation / "maisi.csv", evaluation / "maisi.features.npz"
    per_case = evaluate_synthesis(results / "manifest.csv", Path(cfg.evaluation.maisi_output), csv, npz, cfg, device)
    with np.load(npz) as data:
        return per_case, {k: data[k] for k in data.files}


def report_synthesis(results: Path, cfg: Config, cfg_path: Path, device: str = "cpu") -> None:
    """Write tables/table3.*, tables/table4.*, tables/training.* and figures/figure5_synthesis.png."""
    evaluation = results / "evaluation" / "synthesis"
    table3, per_case_by_variant = [], {}
    for variant in cfg.variants:
        per_case, features = _load(evaluation, variant.name, "conditional")
        per_case_by_variant[variant.name] = per_case
        table3.append(summarise(per_case, features).assign(Method=variant.label))
    table3 = pd.concat(table3, ignore_index=True)
    first, last, foundation = cfg.variants[0], cfg.variants[-1], cfg.foundation_run
    n_cases = len(per_case_by_variant[last.name])
    extractor = per_case_by_variant[last.name]["extractor"].iloc[0]
    steps = {run: training_summary(results / "models" / run)["steps"] for run in (first.name, foundation)}
    prov = provenance(cfg_path, cfg, data=_data(cfg, n_cases), scale=_scale(cfg))
    notes = [
        f"FID, MMD and LPIPS-style distance use 3D features of {extractor}; FID/MMD pool {CROPS_PER_VOLUME} crops "
        f"of {FEATURE_CROP}^3 per volume.",
        "Dice: mean over the paper's organs of the region, between the anatomy condition and TotalSegmentator's "
        "segmentation of the synthetic volume; n/a unless the mask backend is TotalSegmentator (this run: "
        f"{cfg.masks.backend}, synthetic volumes segmented by {EVALUATION_BACKEND[cfg.masks.backend]}). "
        "'Dice body/lung/bone' uses the coarse classes every backend finds.",
        "HU W1 body: Wasserstein-1 distance (HU) between real and synthetic intensity histograms inside the body.",
    ]
    by_region = {"Region": pd.CategoricalDtype(["HaN", "Chest", "Abdomen", "Overall"], ordered=True)}
    table3 = _ordered(table3.astype(by_region).sort_values("Region", kind="stable"))
    write_table(
        paper_table(table3, paper_rows(3)),
        results / "tables" / "table3",
        title="Table 3: ablation of MedDiff-FM components (conditional whole-volume synthesis)",
        provenance=prov,
        notes=[f"Every variant trained {cfg.training.steps} steps (tables/training.md).", *notes],
    )

    rows = [table3[table3["Method"] == first.label].assign(Method="DDPM (patch-level baseline)")]
    if cfg.evaluation.maisi_output:
        per_case, features = _maisi(results, cfg, evaluation, device)
        rows.append(summarise(per_case, features).assign(Method="MAISI"))
        notes.append(f"MAISI: volumes generated outside this workflow, read from {cfg.evaluation.maisi_output}.")
    else:
        rows.append(pd.DataFrame([{"Region": r, "Method": "MAISI (not run: evaluation.maisi_output not set)"}
                                  for r in ("HaN", "Chest", "Abdomen", "Overall")]))
    per_case, features = _load(evaluation, foundation, "conditional")
    rows.append(summarise(per_case, features).assign(Method="MedDiff-FM"))
    unconditional = evaluation / f"{foundation}_unconditional.csv"
    if unconditional.exists():
        per_case, features = _load(evaluation, foundation, "unconditional")
        rows.append(summarise(per_case, features).assign(Method="MedDiff-FM without anatomy condition"))
    notes.insert(
        0,
        f"Training steps: DDPM (patch-level baseline) {steps[first.name]}, MedDiff-FM and MedDiff-FM without "
        f"anatomy condition (the same model) {steps[foundation]}.",
    )
    table4 = _ordered(pd.concat(rows, ignore_index=True).astype(by_region).sort_values("Region", kind="stable"))
    write_table(
        paper_table(table4, paper_rows(4)),
        results / "tables" / "table4",
        title="Table 4: conditional CT volume synthesis",
        provenance=prov,
        notes=notes,
    )

    runs = {v.name: v.label for v in cfg.variants}
    runs.setdefault(foundation, f"{last.label}, continued (foundation model)")
    training = pd.DataFrame(
        [{"variant": run, "label": label, **training_summary(results / "models" / run)} for run, label in runs.items()]
    )
    write_table(training, results / "tables" / "training", title="Pre-training runs (loss falls?)", provenance=prov)
    figure5(results, cfg, per_case_by_variant[last.name], results / "figures" / "figure5_synthesis.png")
