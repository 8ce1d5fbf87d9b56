"""Lesion inpainting with the fine-tuned lesion model and RePaint (paper 3.5.3, 4.4.3, eq. 13; Table 9, Fig. 10).

The lesion model of :mod:`~meddiff.tasks.lesion_generation` is reused as is (no second fine-tuning): its control
condition c_t is the lesion mask, and :func:`meddiff.diffusion.repaint.repaint_inpaint` generates inside the mask
while the known region (outside it) is the lesion-free image noised to each step, pasted back exactly at the end.

Demo pairing (:func:`pair_masks`): the healthy test crops (no lesion mask) of the dataset are the lesion-free
images; each borrows the mask of a lesion test crop of the **same region**, placed where the source had it
(centre-aligned when the crop shapes differ) and kept only where the healthy crop's anatomy label equals the
label under the lesion in the source crop (a liver tumour stays in liver, a node in body soft tissue).

Outputs: one ``<dataset>__<case>__<region>.npz`` per healthy crop with ``image``, ``inpainted`` ((Z, Y, X) float32,
[-1, 1]), ``lesion`` (uint8 {0, 1}), ``anatomy`` (uint8), ``source`` (the mask's crop) and ``network_calls``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from meddiff.atomic import atomic_dir
from meddiff.config import SamplingConfig
from meddiff.data.manifest import evaluation_crops, read_manifest
from meddiff.diffusion.checkpoint import LoadedModel
from meddiff.diffusion.repaint import repaint_inpaint
from meddiff.diffusion.schedule import as_epsilon_fn, make_scheduler
from meddiff.diffusion.training_data import resolve_cache_path
from meddiff.errors import DatasetMissingError
from meddiff.tasks.denoising import model_output_fn
from meddiff.tasks.lesion_generation import lesion_test_crops, load_lesion_model
from meddiff.tasks.synthesis import case_seed

log = logging.getLogger(__name__)


def centre_fit(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``array`` cropped or zero-padded symmetrically on every axis to ``shape`` (centres aligned)."""
    out = np.zeros(tuple(shape), dtype=array.dtype)
    src, dst = [], []
    for n, m in zip(array.shape, shape):
        a, b = max(0, (n - m) // 2), max(0, (m - n) // 2)
        k = min(n, m)
        src.append(slice(a, a + k))
        dst.append(slice(b, b + k))
    out[tuple(dst)] = array[tuple(src)]
    return out


def borrow_lesion(source_lesion: np.ndarray, source_anatomy: np.ndarray, anatomy: np.ndarray) -> np.ndarray:
    """A source crop's lesion mask moved onto a healthy crop: same place (centre-aligned), same organ only.

    Args:
        source_lesion, source_anatomy: (Z', Y', X') lesion mask (> 0 = lesion) and labels of the lesion crop.
        anatomy: (Z, Y, X) labels of the healthy crop.

    Returns:
        (Z, Y, X) uint8 {0, 1}: source lesion voxels whose healthy label equals the source label there (never air).
    """
    lesion = centre_fit(np.asarray(source_lesion) > 0, anatomy.shape)
    host = centre_fit(np.asarray(source_anatomy), anatomy.shape)
    return (lesion & (np.asarray(anatomy) == host) & (np.asarray(anatomy) != 0)).astype(np.uint8)


def pair_masks(
    manifest: Path, healthy: pd.DataFrame, lesioned: pd.DataFrame
) -> Iterator[tuple[tuple, tuple, np.ndarray]]:
    """(healthy row, source row, (Z, Y, X) borrowed mask) per healthy crop that can take a lesion (rows as
    ``itertuples`` of the manifest).

    The k-th healthy crop of a region (manifest test order) tries the lesion crops of that region from the
    (k mod n)-th on, cyclically, and takes the first whose :func:`borrow_lesion` mask is not empty.
    """
    seen: dict[str, int] = {}
    for row in healthy.itertuples(index=False):
        sources = list(lesioned[lesioned["region"] == row.region].itertuples(index=False))
        k = seen.get(row.region, 0)
        seen[row.region] = k + 1
        anatomy = np.load(resolve_cache_path(manifest, row.label))
        for j in range(len(sources)):
            src = sources[(k + j) % len(sources)]
            mask = borrow_lesion(*(np.load(resolve_cache_path(manifest, p)) for p in (src.lesion, src.label)), anatomy)
            if mask.any():
                yield row, src, mask
                break
        else:
            log.warning("%s/%s %s: no same-region lesion mask fits its anatomy; skipped", row.dataset, row.case,
                        row.region)  # fmt: skip


def inpaint_lesion_crop(
    model: LoadedModel, image: np.ndarray, anatomy: np.ndarray, lesion: np.ndarray, region: str, *, steps: int,
    jump_length: int, resamples: int, sampling: SamplingConfig, seed: int, device: str,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """Inpaint a lesion into a lesion-free crop with RePaint (eq. 13), the lesion mask as ControlNet condition c_t.

    Args:
        model: a lesion model (:func:`~meddiff.tasks.lesion_generation.load_lesion_model`).
        image: (Z, Y, X) lesion-free crop in [-1, 1]; anatomy: (Z, Y, X) its labels (c_a); region: c_r.
        lesion: (Z, Y, X) mask; voxels > 0 are generated, the others are known.
        steps, jump_length, resamples: RePaint's respaced steps and jumps
            (:func:`meddiff.diffusion.repaint.repaint_schedule`).
        sampling: overlap, blend, precision, patch batch of the sliding window; seed: RePaint's noise.

    Returns:
        ((Z, Y, X) float32 inpainted crop, equal to ``image`` outside the mask; number of whole-volume ε evaluations).
    """
    mask = np.asarray(lesion) > 0  # repaint_inpaint's inpaint_mask: True = generated (c_t of eq. 13), False = known
    abar = make_scheduler(model.num_train_timesteps, model.schedule, model.prediction).alphas_cumprod
    patch = model.network.model_config.patch_size
    output_fn = model_output_fn(model.network, anatomy, region, mask.shape, patch_size=patch, sampling=sampling,
                                device=device, control=mask.astype(np.float32)[None])  # fmt: skip
    eps_fn, calls = as_epsilon_fn(output_fn, abar, model.prediction), [0]

    def counted(x_t: torch.Tensor, t: int) -> torch.Tensor:
        calls[0] += 1
        return eps_fn(x_t, t)

    x0 = torch.from_numpy(np.array(image, dtype=np.float32))[None, None].to(device)
    out = repaint_inpaint(x0, torch.from_numpy(mask)[None, None], counted, abar, steps=steps, jump_length=jump_length,
                          resamples=resamples, generator=torch.Generator().manual_seed(seed))  # fmt: skip
    log.info("RePaint %d/%d/%d: %d network calls (NFE) of the whole volume", steps, jump_length, resamples, calls[0])
    return out[0, 0].cpu().numpy().astype(np.float32), calls[0]


def run_lesion_inpainting(
    model_dir: Path, manifest: Path, out_dir: Path, *, dataset: str, cases: int, steps: int, jump_length: int,
    resamples: int, sampling: SamplingConfig, device: str, seed: int,
) -> Path:  # fmt: skip
    """Inpaint borrowed lesion masks (:func:`pair_masks`; from any lesion crop of ``dataset``) into its healthy test
    crops (the first ``cases`` pairs; 0 = all), each with :func:`case_seed` of the healthy crop.

    Raises:
        WeightsMissingError: ``model_dir`` is not a lesion model.
        DatasetMissingError: no healthy test crop of ``dataset`` can borrow a same-region lesion mask.
    """
    model = load_lesion_model(Path(model_dir), device)
    manifest = Path(manifest)
    healthy = lesion_test_crops(manifest, dataset, with_lesion=False, seed=seed)
    # masks may come from any lesion crop (fine-tuning saw the masks of the lesion-train cases, never these
    # healthy images); the demo's few test cases rarely hold a lesion in the same region as a healthy crop
    table = read_manifest(manifest)
    lesioned = evaluation_crops(table[(table["dataset"] == dataset) & (table["lesion"] != "")].assign(split="test"))
    written = 0
    with atomic_dir(Path(out_dir)) as tmp:
        for row, src, mask in pair_masks(manifest, healthy, lesioned):
            image, anatomy = (np.load(resolve_cache_path(manifest, p)) for p in (row.image, row.label))
            source = f"{src.dataset}/{src.case}/{src.region}"
            log.info("%s/%s %s <- lesion of %s: %d voxels", row.dataset, row.case, row.region, source, mask.sum())
            inpainted, calls = inpaint_lesion_crop(
                model, image, anatomy, mask, row.region, steps=steps, jump_length=jump_length, resamples=resamples,
                sampling=sampling, seed=case_seed(seed, row.case, row.region), device=device,
            )  # fmt: skip
            np.savez(tmp / f"{row.dataset}__{row.case}__{row.region}.npz", image=image.astype(np.float32),
                     inpainted=inpainted, lesion=mask, anatomy=anatomy.astype(np.uint8), source=np.array(source),
                     network_calls=np.int64(calls))  # fmt: skip
            written += 1
            if written == cases:
                break
        if not written:
            raise DatasetMissingError(f"{manifest}: no healthy test crop of {dataset!r} with a same-region "
                                      "lesion crop whose mask fits its anatomy")  # fmt: skip
    return Path(out_dir)
