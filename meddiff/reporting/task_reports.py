"""Tables 5, 6 and 7 and Figures 6, 7 and 8 from the denoising, anomaly-detection and super-resolution evaluations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from meddiff.config import AnomalyConfig, Sections
from meddiff.reporting.figures import overlay_figure, side_by_side
from meddiff.reporting.paper_results import (
    SOURCE_PAPER,
    SOURCE_RUN,
    TABLE6_COLUMNS,
    table5_rows,
    table6_rows,
    table7_rows,
    table8_rows,
    table9_rows,
)
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


def report_super_resolution(evaluation_dir: Path, results: Path, settings: Sections) -> None:
    """tables/table7.{csv,md} and figures/figure8_super_resolution.png of the run in ``results`` from a
    super-resolution evaluation folder (:func:`meddiff.evaluation.super_resolution.evaluate_super_resolution`)."""
    sr, finetune = settings["super_resolution"], settings["finetune"]
    demo = sr.dataset != "rplhr_ct"
    ours = pd.read_csv(evaluation_dir / "table7.csv")
    ours["Method"] = ours["Method"] + (" (this run, demo)" if demo else " (this run)")
    ours = ours.rename(columns={"PSNR mean": "PSNR", "SSIM mean": "SSIM"}).assign(source=SOURCE_RUN)
    per_case = pd.read_csv(evaluation_dir / "metrics.csv")
    crops = per_case[["case", "region"]].drop_duplicates()
    data = (f"{sr.dataset}: {len(crops)} test crops ({', '.join(sorted(set(crops['region'])))}), "
            + (f"thick slices = means of {sr.thick_factor} thin cache slices along z" if demo
               else "real 5 mm / 1 mm pairs"))  # fmt: skip
    write_table(
        pd.concat([ours, table7_rows()], ignore_index=True),
        results / "tables" / "table7",
        title="Table 7: volumetric super-resolution",
        provenance=provenance(results, settings, data=data, scale=_scale(sr.dataset)),
        notes=[
            f"MedDiff-FM: ControlNet fine-tuned for {finetune.steps} steps on the upsampled thick slices, then DiffPIR "
            f"from t = T with {sr.steps} NFEs (sigma_n = {sr.sigma_n:g}, lambda = {sr.lam:g}, zeta = {sr.zeta:g}); "
            "data step: the exact proximal step of the slab mean (eq. 12).",
            "Trilinear / cubic B-spline: the same thick slices interpolated along z between slab centres.",
            f"As RPLHR-CT evaluates: [0, 1] scale (the region's window), {sr.trim_slices} thin slices dropped at each "
            "end, PSNR over the 3D volume, SSIM = mean of axial 2D SSIM (Gaussian 11, sigma 1.5); mean (std) over crops.",
            f"Rows whose source is '{SOURCE_PAPER}' are quoted from the paper (RPLHR-CT, 1 mm from 5 mm), "
            "not computed here.",
        ],
    )
    with np.load(evaluation_dir / "fig8_slices.npz") as npz:
        case = str(npz["case"])
        panels = {k: npz[k] for k in npz.files if k != "case"}
    side_by_side(panels, results / "figures" / "figure8_super_resolution.png", window=(-1.0, 1.0),
                 title=f"Figure 8 ({settings['run']}): {case}, central coronal slice (model units)")  # fmt: skip


def report_lesions(evaluation_dir: Path, inpainting_dir: Path, judge_json: Path, results: Path,
                   settings: Sections) -> None:  # fmt: skip
    """tables/table8.{csv,md} and table9.{csv,md} of the run in ``results`` from the lesion-generation and
    -inpainting evaluation folders (:mod:`meddiff.evaluation.lesion_generation`) and the judge's JSON."""
    lesions, finetune = settings["lesions"], settings["finetune"]
    demo = lesions.dataset == "phantom"
    ours = pd.read_csv(evaluation_dir / "table8.csv")
    crops = int(ours["crops"].max())
    suffix = " (this run, demo)" if demo else " (this run)"
    real = ours[ours["Method"] == "Real"].assign(Method="Real" + suffix)
    ours["Method"] = ours["Method"] + suffix
    ours = ours.drop(columns="crops").assign(Dataset=lesions.dataset, source=SOURCE_RUN)
    judge = json.loads(Path(judge_json).read_text(encoding="utf-8"))
    write_table(
        pd.concat([ours, table8_rows()], ignore_index=True).reindex(columns=table8_rows().columns),
        results / "tables" / "table8",
        title="Table 8: lesion generation",
        provenance=provenance(results, settings, data=f"{lesions.dataset}: {crops} test crops with a lesion",
                              scale=_scale(lesions.dataset)),  # fmt: skip
        notes=[
            "Each model generates every test crop from its anatomy map, region and lesion mask (the ControlNet "
            "condition, or extra input channels for Med-DDPM); sliding-window sampling as for Table 4.",
            f"MedDiff-FM (fine-tune): ControlNet on the frozen foundation model, {finetune.steps} steps. From scratch: "
            "the same network and ControlNet, random init, all weights trained, same steps. Med-DDPM: the masks "
            "concatenated to x_t as input channels (the foundation's architecture and noise schedule, not "
            "Med-DDPM's own), trained from scratch, same steps.",
            f"Dice: an nnU-Net 3d_fullres judge trained on the real train lesion crops for {judge['epochs']} epochs x "
            f"{judge['iterations_per_epoch']} iterations"
            + (" (a short schedule for the demo; nnU-Net's default is 1000 x 250)" if judge["epochs"] < 1000 else "")
            + (f", patch {judge['patch_size']} instead of nnU-Net's plan" if judge.get("patch_size") else "")
            + ", segmenting each image; Dice against the mask that conditioned it. Real: the judge on the real "
            "test crops.",
            "MS-SSIM and LPIPS-style distance pair each generated crop with its real crop; FID and MMD pool crop "
            "features of all crops (the Table 4 extractor).",
            f"Rows whose source is '{SOURCE_PAPER}' are quoted from the paper, not computed here.",
        ],
    )
    inpainted = pd.read_csv(inpainting_dir / "table9.csv")
    calls = int(inpainted["network calls"].iloc[0])
    table9 = pd.concat([real[["Method", "Dice"]], inpainted.assign(Method=inpainted["Method"] + suffix)[["Method", "Dice"]]])
    write_table(
        pd.concat([table9.assign(Dataset=lesions.dataset, source=SOURCE_RUN), table9_rows()], ignore_index=True)
        .reindex(columns=table9_rows().columns),
        results / "tables" / "table9",
        title="Table 9: lesion inpainting",
        provenance=provenance(results, settings, data=f"{lesions.dataset}: {int(inpainted['crops'].iloc[0])} healthy "
                              "test crops, each given a same-region lesion mask of a lesion-test crop",
                              scale=_scale(lesions.dataset)),  # fmt: skip
        notes=[
            f"RePaint (eq. 13) with the fine-tuned lesion ControlNet: {lesions.repaint_steps} respaced steps, jump "
            f"length {lesions.jump_length}, {lesions.resamples} resamples = {calls} network calls per crop "
            "(paper: 250 / 10 / 10 = 2,410); outside the mask the healthy crop is kept exactly.",
            "Dice: the Table 8 judge on the inpainted crops against the inpainted masks; Real: the judge on the real "
            "lesion-test crops (as in Table 8).",
            "DiffTumor is quoted only (it needs its own autoencoder and retraining).",
            f"Rows whose source is '{SOURCE_PAPER}' are quoted from the paper, not computed here.",
        ],
    )
