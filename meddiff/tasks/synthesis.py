"""Conditional whole-volume CT synthesis (paper 3.4, Fig. 4; evaluated in 4.2 and 4.3.1, Tables 3-4).

For each test crop the model synthesises a volume of the crop's own size, conditioned on the crop's
region class and its TotalSegmentator + body anatomy map, with patch-based sliding-window sampling; the
result is written in HU with the crop's geometry, ready for TotalSegmentator (Dice) and the image metrics.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from meddiff.atomic import atomic_path
from meddiff.config import SamplingConfig, Window
from meddiff.data.intensity import unit_to_hu
from meddiff.data.preprocess import crop_to_sitk, load_crop
from meddiff.diffusion.checkpoint import load_model
from meddiff.diffusion.samplers import sample_volume

log = logging.getLogger(__name__)


def case_seed(seed: int, case: str, region: str) -> int:
    """Per-case seed derived from the run seed and the case identity (CRC32), so a rerun of one case
    draws the same noise whatever other cases run, and no two cases share x_T."""
    return zlib.crc32(f"{seed}:{case}:{region}".encode())


def synthesize_case(
    model_dir: Path,
    case_dir: Path,
    region: str,
    out_path: Path,
    *,
    sampling: SamplingConfig,
    seed: int,
    device: str,
    unconditional: bool = False,
) -> Path:
    """Synthesise one test crop's volume and write it as NIfTI (HU, the crop's spacing/origin/direction).

    Args:
        model_dir: trained model folder (architecture.json, diffusion.json, weights.pt, training.json).
        case_dir: the case's training-cache folder (``<region>_label.npy``, ``<region>_meta.json``, ...).
        region: "han" | "chest" | "abdomen" (c_r).
        out_path: output ``.nii.gz``; written atomically.
        sampling: sampler, steps, overlap and patch batch size.
        seed: run seed; the case's seed is :func:`case_seed` (seed, dataset/case, region).
        device: torch device of the network.
        unconditional: sample without the anatomy map (``NULL_LABEL`` everywhere).

    Returns:
        ``out_path``.
    """
    loaded = load_model(Path(model_dir), device)
    _, label, meta = load_crop(case_dir, region)
    case_id = f"{meta.get('dataset', '')}/{meta.get('case', Path(case_dir).name)}"
    seed_ = case_seed(seed, case_id, region)
    log.info(
        "synthesising %s %s: shape %s, %s %d steps, overlap %.2f, seed %d%s",
        case_id,
        region,
        tuple(label.shape),
        sampling.sampler,
        sampling.steps,
        sampling.overlap,
        seed_,
        " (unconditional)" if unconditional else "",
    )
    unit = sample_volume(
        loaded,
        np.asarray(label),
        region,
        sampling=sampling,
        seed=seed_,
        device=device,
        unconditional=unconditional,
    )
    hu = unit_to_hu(unit, Window(**meta["window"])).astype(np.float32)
    # The array is already in HU, so crop_to_sitk only attaches the crop's geometry (hu=False: as is).
    image = crop_to_sitk(hu, meta, hu=False)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    log.info("wrote %s", out_path)
    return out_path
