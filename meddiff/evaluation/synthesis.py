"""Evaluation of whole-volume synthesis (paper 4.1.3; Tables 3 and 4): per test crop, the synthetic volume
against the real crop it was conditioned on, and the per-region rows of the tables.

Per case: MS-SSIM and an LPIPS-style distance (pairs real/synthetic), the HU histogram distance inside the
body, and Dice between the anatomy condition and the anatomy the mask backend finds in the synthetic volume
(the paper's organs per region; plus body/lung/bone, which every backend finds). Generated volumes are segmented
by :data:`meddiff.data.masks.EVALUATION_BACKEND` of the run's backend. Crop-level features of real
and synthetic volumes are stored so that FID and MMD are computed over pools of cases (per region, overall)
by :func:`summarise`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm import tqdm

from meddiff import labels
from meddiff.atomic import atomic_path
from meddiff.config import MasksConfig, Window
from meddiff.data.intensity import hu_to_unit, unit_to_hu
from meddiff.data.manifest import evaluation_crops, read_manifest
from meddiff.data.masks import BONE_HU, EVALUATION_BACKEND, anatomy_mask
from meddiff.data.preprocess import load_crop
from meddiff.errors import GeometryError, InputImageError
from meddiff.metrics.distribution import fid, mmd, perceptual_distance
from meddiff.metrics.features import load_feature_extractor, patch_features
from meddiff.metrics.histogram import hu_histogram_distance
from meddiff.metrics.image_quality import ms_ssim
from meddiff.metrics.segmentation import dice, mean_dice, organ_dice

log = logging.getLogger(__name__)

FEATURE_CROP = 32
CROPS_PER_VOLUME = 8


def synthetic_path(folder: Path, dataset: str, region: str, case: str) -> Path:
    """Where the synthesis rule writes the volume of one test crop."""
    return Path(folder) / dataset / region / f"{case}.nii.gz"


def coarse_dice(reference: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Dice of body (any label), lung and bone groups (:data:`meddiff.labels.COARSE_GROUPS`)."""
    out = {"body": dice(reference > 0, predicted > 0)}
    for name, group in labels.COARSE_GROUPS.items():
        classes = labels.indices(*group)
        ref = np.isin(reference, classes)
        out[name] = dice(ref, np.isin(predicted, classes)) if ref.any() else math.nan
    return out


CLIPPED_FRACTION = 0.02
"""Voxels within this fraction of the window width of a window bound count as clipped at that bound."""
CLIPPED_BONE_HU = 1000.0
"""HU given to voxels clipped at a window ceiling that lies below the segmenter's bone threshold."""


def undo_window_clipping(image: sitk.Image, window: Window) -> sitk.Image:
    """The synthetic volume as the segmenter should see it.

    The model works in the region window, so every intensity below the window (air, lung, fat below -120 HU in
    the abdomen window) comes out at the window floor and everything above it (bone) at the ceiling, plus the
    sampler's residual noise. Voxels whose 3x3x3 median lies within :data:`CLIPPED_FRACTION` of the window width
    of the floor are set to air (-1024 HU); of the ceiling, when the ceiling is below the threshold backend's
    bone level (:data:`meddiff.data.masks.BONE_HU`), to :data:`CLIPPED_BONE_HU`. All other voxels keep their
    values. Without this the body threshold (-500 HU) cannot separate body from outside air, nor the bone
    threshold find bone, in the HaN and abdomen windows (their bounds lie inside those thresholds); the median
    keeps sampling noise around a bound from deciding (a plain test made whole noisy volumes "body").
    """
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    median = sitk.GetArrayFromImage(sitk.Median(sitk.Cast(image, sitk.sitkFloat32), [1, 1, 1]))
    low, high = window.bounds
    margin = CLIPPED_FRACTION * window.width
    out_array = np.where(median <= low + margin, -1024.0, array)
    if high <= BONE_HU:
        out_array = np.where(median >= high - margin, CLIPPED_BONE_HU, out_array)
    out = sitk.GetImageFromArray(out_array.astype(np.float32))
    out.CopyInformation(image)
    return out


def _read_synthetic(path: Path, shape: tuple[int, ...]) -> tuple[sitk.Image, np.ndarray]:
    if not path.exists():
        raise InputImageError(f"{path}: synthetic volume missing (run the synthesize rule first)")
    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    if array.shape != tuple(shape):
        raise GeometryError(f"{path}: synthetic volume has shape {array.shape}, the real crop {tuple(shape)}")
    return image, array


def evaluate_synthesis(
    manifest_path: Path,
    synthetic_dir: Path,
    out_csv: Path,
    out_features: Path,
    out_examples: Path,
    *,
    synthesis_cases: int,
    medicalnet_weights: str | None,
    masks: MasksConfig,
    device: str,
) -> pd.DataFrame:
    """Evaluate every synthesised test crop under ``synthetic_dir``.

    Args:
        manifest_path: manifest.csv; its test crops (:func:`meddiff.data.manifest.evaluation_crops`,
            ``synthesis_cases`` per region) are evaluated.
        synthetic_dir: ``<dataset>/<region>/<case>.nii.gz`` volumes in HU on each crop's grid.
        out_csv: per-case metrics. out_features: crop features of real and synthetic volumes (npz, keys
            ``<dataset>/<case>/<region>/{real,synthetic}``, (N, F) each). out_examples: Figure 5 material, the
            first crop of each region (npz, keys ``<region>/{real,synthetic}`` (Z, Y, X) in [-1, 1],
            ``<region>/spacing_mm``).
        medicalnet_weights: MedicalNet weights for the features (None: the weights-free extractor).
        masks: the run's mask backend; synthetic volumes are segmented by
            :data:`meddiff.data.masks.EVALUATION_BACKEND` of it.

    Returns:
        The per-case metrics table.
    """
    manifest = read_manifest(manifest_path)
    rows = evaluation_crops(manifest, synthesis_cases)
    extractor = load_feature_extractor(medicalnet_weights, device)
    records, features, examples = [], {}, {}
    # the reference backend only has labels for real scans; generated volumes are segmented by threshold
    segmenter = EVALUATION_BACKEND[masks.backend]
    for row in tqdm(list(rows.itertuples(index=False)), desc="evaluate synthesis", disable=None):
        case_dir = Path(row.meta).parent
        real, reference, meta = load_crop(case_dir, row.region)
        real = np.asarray(real, dtype=np.float32)
        reference = np.asarray(reference)
        window = Window(**meta["window"])
        fake_image, fake_hu = _read_synthetic(
            synthetic_path(synthetic_dir, row.dataset, row.region, row.case), real.shape
        )
        fake = hu_to_unit(fake_hu, window).astype(np.float32)
        predicted = sitk.GetArrayFromImage(
            anatomy_mask(
                undo_window_clipping(fake_image, window),
                backend=segmenter,
                body_threshold_hu=masks.body_threshold_hu,
                fast=masks.fast,
            )
        )
        # The weights-free threshold backend finds none of the paper's organs reliably (it labels bone above
        # the lung apex "skull", which a crop without lungs cannot reproduce): only the coarse groups count.
        organs = organ_dice(reference, predicted, row.region) if segmenter == "totalsegmentator" else {}
        coarse = coarse_dice(reference, predicted)
        record = {
            "dataset": row.dataset,
            "case": row.case,
            "region": row.region,
            "MS-SSIM": ms_ssim(real, fake, data_range=2.0),
            "LPIPS": perceptual_distance(extractor, real, fake),
            "HU W1 body": hu_histogram_distance(unit_to_hu(real, window), fake_hu, reference > 0),
            "Dice": mean_dice(organs) if organs else math.nan,
            "Dice body/lung/bone": mean_dice(coarse),
        }
        record.update({f"dice {k}": v for k, v in {**organs, **coarse}.items()})
        records.append(record)
        key = f"{row.dataset}/{row.case}/{row.region}"
        for name, volume in (("real", real), ("synthetic", fake)):
            features[f"{key}/{name}"] = patch_features(
                extractor, [volume], crop_size=FEATURE_CROP, crops_per_volume=CROPS_PER_VOLUME, seed=0
            )
        if f"{row.region}/real" not in examples:
            examples.update({f"{row.region}/real": real, f"{row.region}/synthetic": fake,
                             f"{row.region}/spacing_mm": np.asarray(meta["spacing_mm"], dtype=np.float64)})
        log.info("%s: %s", key, {k: round(v, 4) for k, v in record.items() if isinstance(v, float)})
    if not records:
        raise InputImageError(f"{manifest_path}: no test crops to evaluate")
    table = pd.DataFrame(records).assign(extractor=extractor.name)
    for path, arrays in ((out_features, features), (out_examples, examples)):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


REGION_TITLES = {"han": "HaN", "chest": "Chest", "abdomen": "Abdomen"}
REGION_ORDER = pd.CategoricalDtype([*REGION_TITLES.values(), "Overall"], ordered=True)
METRICS = ["MS-SSIM", "LPIPS", "FID", "MMD", "Dice", "Dice body/lung/bone", "HU W1 body"]


def summarise(per_case: pd.DataFrame, features: dict[str, np.ndarray]) -> pd.DataFrame:
    """Table rows per region (HaN, Chest, Abdomen, Overall): the per-case metric means and FID / MMD of the
    pooled crop features of the region's real and synthetic volumes (paper 4.1.3).

    Args:
        per_case: the table :func:`evaluate_synthesis` wrote. features: its npz, as a dict.
    """
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


def read_evaluation(metrics_csv: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(per-case metrics, features) of one :func:`evaluate_synthesis` output (the features npz beside the CSV)."""
    metrics_csv = Path(metrics_csv)
    per_case = pd.read_csv(metrics_csv)
    with np.load(metrics_csv.with_suffix(".features.npz")) as npz:
        features = {k: npz[k] for k in npz.files}
    return per_case, features


def method_rows(metrics_csv: Path, method: str) -> pd.DataFrame:
    """The per-region rows of one synthesis method (a variant, MAISI, ...) for Table 3 or 4, ordered by region,
    columns Region, Method, :data:`METRICS`, cases."""
    rows = summarise(*read_evaluation(metrics_csv)).assign(Method=method)
    return ordered(rows)


def ordered(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by region (stable) with the table's column order."""
    rows = rows.astype({"Region": REGION_ORDER}).sort_values("Region", kind="stable")
    return rows.reindex(columns=["Region", "Method", *METRICS, "cases"])
