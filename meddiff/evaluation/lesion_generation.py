"""Evaluation of lesion generation (paper 4.1.3, 4.4.2, Table 8): Table 4's image metrics and the nnU-Net judge.

The judge is nnU-Net (:mod:`meddiff.evaluation.nnunet`) trained on the *real* train crops with a lesion; it then
segments the held-out real test crops (the "Real" row: how well lesions can be found at all) and every model's
images generated from those crops' masks. Dice is against the masks that conditioned the generation. Images
stay in the model's [-1, 1] window units (nnU-Net's CT normalisation is fitted to whatever it is trained on,
and real and generated images share the scale). MS-SSIM and the LPIPS-style distance pair each generated crop
with its real crop; FID and MMD pool crop features of all real and all generated crops
(:mod:`meddiff.metrics.distribution`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from meddiff.atomic import atomic_dir
from meddiff.data.manifest import lesion_split, read_manifest
from meddiff.diffusion.training_data import resolve_cache_path
from meddiff.errors import DatasetMissingError
from meddiff.evaluation import nnunet
from meddiff.evaluation.nnunet_data import export_raw_dataset, export_test_images
from meddiff.metrics.distribution import feature_distribution_scores, paired_perceptual_distance
from meddiff.metrics.features import load_feature_extractor
from meddiff.metrics.image_quality import paired_ms_ssim

log = logging.getLogger(__name__)

REAL = "Real"
JUDGE_NAME = "LesionJudge"
JUDGE_ID = 501  # nnU-Net dataset id of the judge, inside the run's own nnU-Net folders


def _spacing(value: str) -> tuple[float, float, float]:
    """(x, y, z) mm of a manifest ``spacing_mm`` cell ("6x6x6")."""
    x, y, z = (float(v) for v in value.split("x"))
    return x, y, z


def judge_training_cases(manifest: Path, dataset: str, seed: int) -> list[tuple[str, tuple[np.ndarray, tuple], np.ndarray]]:
    """``(case id, (image (Z, Y, X) in [-1, 1], spacing), lesion mask)`` of every lesion-train crop of ``dataset``
    (:func:`meddiff.data.manifest.lesion_split`)."""
    rows = lesion_split(read_manifest(manifest), seed)
    rows = rows[(rows["lesion_split"] == "train") & (rows["dataset"] == dataset)]
    if rows.empty:
        raise DatasetMissingError(f"{manifest}: no train crop of {dataset!r} with a lesion mask to train the "
                                  "nnU-Net judge on")  # fmt: skip
    return [
        (f"{r.dataset}_{r.case}_{r.region}", (np.load(resolve_cache_path(Path(manifest), r.image)), _spacing(r.spacing_mm)),
         np.load(resolve_cache_path(Path(manifest), r.lesion)))
        for r in rows.itertuples(index=False)
    ]  # fmt: skip


def train_judge(manifest: Path, root: Path, *, dataset: str, seed: int, dataset_id: int, epochs: int,
                iterations_per_epoch: int, patch_size: tuple[int, int, int] | None, device: str) -> Path:  # fmt: skip
    """Export the real train lesion crops to nnU-Net's raw format, plan and preprocess them, and train the judge
    (cached: a finished judge is not retrained). Returns the nnU-Net model folder."""
    env = nnunet.nnunet_environment(root)
    export_raw_dataset(judge_training_cases(manifest, dataset, seed), Path(env["nnUNet_raw"]), dataset_id, JUDGE_NAME)
    nnunet.plan_and_preprocess(root, dataset_id, patch_size=patch_size)
    return nnunet.train(root, dataset_id, epochs, iterations_per_epoch, device=device)


def evaluate_lesion_generation(task_dir: Path, manifest: Path, judge_root: Path, out_dir: Path, *, dataset_id: int,
                               medicalnet_weights: str | None, device: str) -> Path:  # fmt: skip
    """Score every generated crop of a lesion-generation folder (``<dataset>__<case>__<region>.npz`` holding
    ``real``, ``lesion`` and one array per model) into ``out_dir``: ``dice.csv`` (the judge's Dice per crop and
    method), ``table8.csv`` (one row per method: MS-SSIM, LPIPS, FID, MMD, Dice, crops).

    Raises:
        DatasetMissingError: the folder holds no crop.
    """
    files = sorted(Path(task_dir).glob("*.npz"))
    if not files:
        raise DatasetMissingError(f"{task_dir}: no generated lesion crop; run the generate_lesions rule first")
    spacing = {f"{r.dataset}__{r.case}__{r.region}": _spacing(r.spacing_mm)
               for r in read_manifest(manifest).itertuples(index=False)}  # fmt: skip
    crops = {}
    for path in files:
        with np.load(path) as npz:
            crops[path.stem] = {k: npz[k] for k in npz.files}
    methods = [REAL] + [k for k in next(iter(crops.values())) if k not in ("real", "anatomy", "lesion")]
    extractor = load_feature_extractor(medicalnet_weights, device)
    dice_rows, table = [], []
    with atomic_dir(Path(out_dir)) as tmp:
        for method in methods:
            key = "real" if method == REAL else method
            cases = [(stem.replace("__", "_"), (c[key], spacing[stem]), c["lesion"]) for stem, c in crops.items()]
            folder = tmp / "nnunet" / method.replace(" ", "_")
            export_test_images(cases, folder / "images", folder / "masks")
            nnunet.predict(judge_root, dataset_id, folder / "images", folder / "predictions", device=device)
            scores = nnunet.score(folder / "predictions", folder / "masks")
            dice_rows += [{"method": method, **row} for row in scores.to_dict("records") if row["case"] != "mean"]
            row = {"Method": method, "Dice": float(scores.iloc[-1]["dice"]), "crops": len(cases)}
            if method != REAL:
                real = [c["real"] for c in crops.values()]
                fake = [c[key] for c in crops.values()]
                row.update({"MS-SSIM": paired_ms_ssim(real, fake), "LPIPS": paired_perceptual_distance(extractor, real, fake),
                            **{k: v for k, v in feature_distribution_scores(extractor, real, fake).items()
                               if k in ("FID", "MMD")}})  # fmt: skip
            table.append(row)
            log.info("%s: %s", method, {k: v for k, v in row.items() if k != "Method"})
        pd.DataFrame(dice_rows).to_csv(tmp / "dice.csv", index=False)
        columns = ["Method", "MS-SSIM", "LPIPS", "FID", "MMD", "Dice", "crops"]
        pd.DataFrame(table).reindex(columns=columns).to_csv(tmp / "table8.csv", index=False)
    return Path(out_dir)


def evaluate_lesion_inpainting(task_dir: Path, manifest: Path, judge_root: Path, out_dir: Path, *,
                               dataset_id: int, device: str) -> Path:  # fmt: skip
    """The judge's Dice on every inpainted crop of a lesion-inpainting folder (``<dataset>__<case>__<region>.npz``
    holding ``inpainted``, ``lesion``, ``network_calls``) into ``out_dir``: ``dice.csv`` per crop and
    ``table9.csv`` (Method, Dice, crops, network calls per crop).

    Raises:
        DatasetMissingError: the folder holds no crop.
    """
    files = sorted(Path(task_dir).glob("*.npz"))
    if not files:
        raise DatasetMissingError(f"{task_dir}: no inpainted crop; run the inpaint_lesions rule first")
    spacing = {f"{r.dataset}__{r.case}__{r.region}": _spacing(r.spacing_mm)
               for r in read_manifest(manifest).itertuples(index=False)}  # fmt: skip
    cases, calls = [], []
    for path in files:
        with np.load(path) as npz:
            cases.append((path.stem.replace("__", "_"), (npz["inpainted"], spacing[path.stem]), npz["lesion"]))
            calls.append(int(npz["network_calls"]))
    with atomic_dir(Path(out_dir)) as tmp:
        export_test_images(cases, tmp / "images", tmp / "masks")
        nnunet.predict(judge_root, dataset_id, tmp / "images", tmp / "predictions", device=device)
        scores = nnunet.score(tmp / "predictions", tmp / "masks")
        scores.to_csv(tmp / "dice.csv", index=False)
        row = {"Method": "MedDiff-FM (fine-tune)", "Dice": float(scores.iloc[-1]["dice"]), "crops": len(cases),
               "network calls": int(np.mean(calls))}  # fmt: skip
        pd.DataFrame([row]).to_csv(tmp / "table9.csv", index=False)
    return Path(out_dir)
