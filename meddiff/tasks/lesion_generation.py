"""Lesion generation with a lesion-mask-conditioned model (paper 3.5.2, 4.4.2; Table 8, Fig. 9).

Per test crop with a lesion mask: the whole crop is sampled from noise
(:func:`meddiff.diffusion.samplers.sample_volume`) under its anatomy map c_a, its region c_r and the binary lesion
mask as the control condition c_t (eq. 4), once per compared model: the ControlNet fine-tuned from MedDiff-FM,
the one trained from scratch, and the Med-DDPM-style baseline with the mask concatenated to x_t
(:class:`~meddiff.models.mask_concat.MaskConcatUNet`).

Outputs: one ``<dataset>__<case>__<region>.npz`` per crop with ``real`` (the crop, [-1, 1]), ``anatomy`` (uint8),
``lesion`` (uint8 {0, 1}) and one (Z, Y, X) float32 array in [-1, 1] per model row; this module scores nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from meddiff.atomic import atomic_dir
from meddiff.config import SamplingConfig
from meddiff.data.manifest import evaluation_crops, lesion_split, read_manifest
from meddiff.diffusion.checkpoint import LoadedModel, load_model
from meddiff.diffusion.samplers import sample_volume
from meddiff.diffusion.training_data import resolve_cache_path
from meddiff.errors import DatasetMissingError, GeometryError, WeightsMissingError
from meddiff.models.controlnet import ControlledMedDiff
from meddiff.models.mask_concat import MaskConcatUNet
from meddiff.tasks.synthesis import case_seed

log = logging.getLogger(__name__)


def load_lesion_model(folder: Path, device: str) -> LoadedModel:
    """Load a model folder that takes a one-channel lesion mask as control (ControlNet or mask concatenation).

    Raises:
        WeightsMissingError: incomplete folder, or a network without a one-channel control (a plain foundation model).
    """
    folder = Path(folder)
    loaded = load_model(folder, device)
    network = loaded.network
    if not isinstance(network, (ControlledMedDiff, MaskConcatUNet)) or network.control_channels != 1:
        raise WeightsMissingError(
            f"{folder}: not a lesion model (a ControlNet or mask-concatenation network with a "
            "one-channel lesion-mask control); fine-tune the foundation model on lesions first"
        )
    return loaded


def lesion_test_crops(manifest: Path, dataset: str, *, with_lesion: bool, seed: int) -> pd.DataFrame:
    """Crops of ``dataset`` in the order of :func:`evaluation_crops`: with a lesion, those of the lesion-test cases
    (the paper's 80/20 split, :func:`meddiff.data.manifest.lesion_split`); without, the healthy test crops."""
    table = read_manifest(manifest)
    table = table[table["dataset"] == dataset]
    if with_lesion:
        rows = lesion_split(table, seed)
        return evaluation_crops(rows[rows["lesion_split"] == "test"].assign(split="test"))
    rows = evaluation_crops(table)
    return rows[rows["lesion"] == ""] if "lesion" in rows.columns else rows


def generate_lesion_crop(
    model: LoadedModel, anatomy: np.ndarray, lesion: np.ndarray, region: str, *, sampling: SamplingConfig,
    seed: int, device: str,
) -> np.ndarray:  # fmt: skip
    """Sample one crop with a lesion where the mask says (paper 4.4.2).

    Args:
        model: a lesion model (:func:`load_lesion_model`).
        anatomy: (Z, Y, X) uint8 label map (c_a).
        lesion: (Z, Y, X) lesion mask; voxels > 0 are lesion (c_t, binarised as in fine-tuning).
        region: one of :data:`meddiff.labels.REGIONS` (c_r).
        sampling: sampler settings; seed: RNG seed of x_T (and DDPM noise); device: where the network runs.

    Returns:
        (Z, Y, X) float32 in [-1, 1].
    """
    control = (np.asarray(lesion) > 0).astype(np.float32)[None]
    return sample_volume(model, np.asarray(anatomy), region, sampling=sampling, seed=seed, device=device,
                         control=control)  # fmt: skip


def run_lesion_generation(
    model_dirs: dict[str, Path], manifest: Path, out_dir: Path, *, dataset: str, cases: int,
    sampling: SamplingConfig, device: str, seed: int,
) -> Path:  # fmt: skip
    """Generate every test lesion crop of ``dataset`` (the first ``cases``; 0 = all) with every model into ``out_dir``.

    Args:
        model_dirs: Table 8 row name -> model folder; each row becomes an array of the output files.
        seed: run seed; each crop samples with :func:`case_seed` (the same x_T for every model).

    Raises:
        WeightsMissingError: a folder is not a lesion model (:func:`load_lesion_model`).
        DatasetMissingError: the manifest has no test crop of ``dataset`` with a lesion mask.
    """
    reserved = {"real", "anatomy", "lesion"} & set(model_dirs)
    if reserved:
        raise ValueError(f"model row names {sorted(reserved)} clash with the arrays of the output files")
    models = {name: load_lesion_model(Path(folder), device) for name, folder in model_dirs.items()}
    rows = lesion_test_crops(Path(manifest), dataset, with_lesion=True, seed=seed)
    rows = rows.head(cases) if cases else rows
    if rows.empty:
        raise DatasetMissingError(f"{manifest}: no test crop of {dataset!r} with a lesion mask to generate")
    with atomic_dir(Path(out_dir)) as tmp:
        for row in rows.itertuples(index=False):
            real, anatomy, lesion = (np.load(resolve_cache_path(Path(manifest), p))
                                     for p in (row.image, row.label, row.lesion))  # fmt: skip
            if not real.shape == anatomy.shape == lesion.shape:
                raise GeometryError(f"{row.lesion}: lesion {lesion.shape}, image {real.shape} and anatomy "
                                    f"{anatomy.shape} of {row.case}/{row.region} differ")  # fmt: skip
            lesion = (lesion > 0).astype(np.uint8)
            out = {"real": real.astype(np.float32), "anatomy": anatomy.astype(np.uint8), "lesion": lesion}
            for name, model in models.items():
                log.info("%s/%s %s: %s, %d lesion voxels", row.dataset, row.case, row.region, name, int(lesion.sum()))
                out[name] = generate_lesion_crop(model, anatomy, lesion, row.region, sampling=sampling,
                                                 seed=case_seed(seed, row.case, row.region), device=device)  # fmt: skip
            np.savez(tmp / f"{row.dataset}__{row.case}__{row.region}.npz", **out)
    return Path(out_dir)
