"""Tables 5 and 6 and Figures 6 and 7 from the denoising and anomaly-detection evaluations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from meddiff.config import AnomalyConfig, Sections
from meddiff.reporting.figures import overlay_figure, side_by_side
from meddiff.reporting.paper_results import SOURCE_PAPER, SOURCE_RUN, TABLE6_COLUMNS, table5_rows, table6_rows
from meddiff.reporting.tables import DEMO_SCALE, PAPER_SCALE, provenance, write_table


def _scale(dataset: str) -> str:
    return DEMO_SCALE if dataset == "phantom" else PAPER_SCALE


def _anomaly_postprocessing(anomaly: AnomalyConfig) -> str:
    """Table 6 note: what was done to the map beyond the paper's |x0 - x0'| (or that nothing was)."""
    steps = []
    if anomaly.remove_organ_offset:
        steps.append("the organ's median of x0 - x0' subtracted first (not in the paper)")
    if anomaly.smoothing_sigma_mm > 0:
        steps.append(f"Gaussian smoothing sigma {anomaly.smoothing_sigma_mm:g} mm inside the organ (not in the paper)")
    return "Map post-processing: " + ("; ".join(steps) if steps else "none (as in the paper)") + "."


def table6(summary: dict, *, method: str) -> pd.DataFrame:
    """The paper's Table 6 rows plus this run's row from an evaluation summary (keys ``image_auroc``,
    ``pixel_auroc``, ``pro``, ``dice`` of :func:`meddiff.metrics.anomaly.anomaly_metrics`)."""
    values = (summary["image_auroc"], summary["pixel_auroc"], summary["pro"], summary["dice"])
    ours = {"Method": method, **dict(zip(TABLE6_COLUMNS, values)), "source": SOURCE_RUN}
    return pd.concat([table6_rows(), pd.DataFrame([ours])], ignore_index=True)


def report_anomaly(metrics_csv: Path, examples_npz: Path, results: Path, settings: Sections) -> None:
    """tables/table6.{csv,md} and figures/figure7_anomaly.png of the run in ``results`` (results/<run>)."""
    anomaly: AnomalyConfig = settings["anomaly"]
    per_case = pd.read_csv(metrics_csv)
    with np.load(examples_npz) as npz:
        summary = json.loads(str(npz["summary"]))
        figure = {k: npz[k] for k in npz.files if k != "summary"}
    data = (
        f"{anomaly.dataset}: {len(per_case)} volumes, {int(summary['n_slices'])} slices "
        f"({int(summary['n_lesion_slices'])} with lesion), organ {anomaly.organ}"
    )
    prov = provenance(results, settings, data=data, scale=_scale(anomaly.dataset))
    method = "MedDiff-FM (this run)" if anomaly.dataset != "phantom" else "MedDiff-FM (this run, demo)"
    write_table(
        table6(summary, method=method),
        results / "tables" / "table6",
        title="Table 6: anomaly detection (liver)",
        provenance=prov,
        notes=[
            f"Anomaly map |x0 - x0'| after noising the organ-masked image to t = {anomaly.timestep} and "
            "predicting x0 in one step (eq. 9); sliding-window noise estimates.",
            _anomaly_postprocessing(anomaly),
            "Image AUROC per axial slice (score = slice maximum); pixel AUROC and PRO over organ + lesion voxels; "
            f"PRO integrated to FPR 0.3; Dice at {anomaly.threshold} of the map normalised by its dataset maximum.",
            f"Rows whose source is '{SOURCE_PAPER}' are quoted from the paper (BMAD liver), not computed here.",
        ],
    )
    if "image_hu" in figure:
        overlay_figure(
            {str(figure["case"]): (figure["image_hu"], figure["anomaly_map"], figure["lesion_mask"])},
            results / "figures" / "figure7_anomaly.png",
            window=tuple(figure["window"]),
            title="Figure 7: anomaly map (red = higher), lesion contour",
            overlay_range=(0.0, 1.0),
        )
    else:
        raise ValueError(f"{examples_npz}: no lesioned case to draw Figure 7 from")


def report_denoising(evaluation_dir: Path, noise_json: Path, results: Path, settings: Sections) -> None:
    """tables/table5.{csv,md} and figures/figure6_denoising.png of the run in ``results`` (results/<run>) from a
    denoising evaluation folder and the task's noise levels."""
    denoising = settings["denoising"]
    ours = pd.read_csv(evaluation_dir / "table5.csv").assign(source=SOURCE_RUN)
    table = pd.concat([ours, table5_rows()], ignore_index=True)
    per_case = pd.read_csv(evaluation_dir / "metrics.csv")
    noise = json.loads(Path(noise_json).read_text())
    cases = per_case[["case", "region"]].drop_duplicates()
    data = (
        f"{denoising.dataset}: {len(cases)} test volumes ({', '.join(sorted(set(cases['region'])))})"
        + (f", quarter dose simulated on projections (I0 = {denoising.incident_photons:g})"
           if denoising.dataset == "phantom" else ", official quarter-dose images")
    )
    lo, hi = denoising.window
    sigma = ", ".join(f"{r}: {v['sigma_n']:.3f}" for r, v in noise.items())
    write_table(
        table,
        results / "tables" / "table5",
        title="Table 5: low-dose CT denoising (improvement over the low-dose input)",
        provenance=provenance(results, settings, data=data, scale=_scale(denoising.dataset)),
        notes=[
            f"PSNR / SSIM per axial slice in the window [{lo:g}, {hi:g}] HU, averaged; delta = method - low dose.",
            f"MedDiff-FM: DiffPIR (lambda = {denoising.lam:g}, at most {denoising.steps} steps from t_start), "
            f"sigma_n estimated on non-test cases ({sigma}).",
            "NLM (scikit-image) and BM3D (bm3d package) run per slice on the same cases with the same noise estimate.",
            f"Rows whose source is '{SOURCE_PAPER}' are quoted from the paper (Mayo 2016), not computed here.",
        ],
    )
    with np.load(evaluation_dir / "fig6_slices.npz") as npz:
        first = sorted({k.split("/")[0] for k in npz.files})[0]
        panels = {k.split("/", 1)[1]: npz[k] for k in npz.files if k.startswith(f"{first}/")}
    side_by_side(
        panels,
        results / "figures" / "figure6_denoising.png",
        window=(lo, hi),
        title=f"Figure 6 ({settings['run']}): {first}, central axial slice",
    )
