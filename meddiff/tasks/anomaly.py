"""Zero-shot anomaly detection with the pre-trained model (paper 3.4.2, 4.3.3, Table 6, Fig. 7).

The model has learnt mostly healthy anatomy. The organ of interest is cut out of the image, noised to a large
fixed timestep t (950 of 1000 in the paper, so that tumours are destroyed), and the clean image is predicted in
one step (eq. 9); where the image differs from this "healthy" reconstruction, the anomaly map is high.

This module writes the maps (:func:`detect_anomalies`); :mod:`meddiff.evaluation.anomaly` scores them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from meddiff.atomic import atomic_path
from meddiff.config import AnomalyConfig, SamplingConfig, Window
from meddiff.data.anomaly_cases import AnomalyCase, demo_anomaly_cases
from meddiff.data.bmad import load_bmad_liver
from meddiff.data.intensity import unit_to_hu
from meddiff.errors import ConfigError, GeometryError, InputImageError
from meddiff.labels import BODY, REGIONS, indices

if TYPE_CHECKING:
    from meddiff.diffusion.checkpoint import LoadedModel

log = logging.getLogger(__name__)

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
"""ε_θ(x_t, t): (1, 1, Z, Y, X) noisy volume and an integer timestep -> (1, 1, Z, Y, X) noise estimate."""
MapFn = Callable[[AnomalyCase, int], np.ndarray]
"""(case, seed) -> (Z, Y, X) anomaly map of the case."""

BACKGROUND_INTENSITY = -1.0
"""Intensity of everything outside the organ in the masked image: the [-1, 1] value of outside air."""
_RANGE_TOLERANCE = 1e-3


def organ_mask_from_labels(labels: np.ndarray, organ_indices: Sequence[int]) -> np.ndarray:
    """(Z, Y, X) bool mask of the organ classes ``organ_indices``, with enclosed holes filled in 3D.

    Holes are filled because a segmentation (TotalSegmentator, or a phantom's labels) may leave a tumour inside
    the organ unlabelled; the detector must see the tumour to find it.
    """
    organ = np.isin(np.asarray(labels), np.asarray(list(organ_indices)))
    return ndimage.binary_fill_holes(organ) if organ.any() else organ


def anatomy_condition(labels: np.ndarray, organ_mask: np.ndarray, organ_indices: Sequence[int]) -> np.ndarray:
    """(Z, Y, X) int64 anatomy condition c_a of the masked image: the organ's label inside the mask, 0 outside.

    This matches training, where label 0 is the outside air at intensity -1 -- exactly what the masked image
    holds outside the organ (:data:`BACKGROUND_INTENSITY`), so the model sees an organ floating in air, a
    combination consistent with its training data. Filled holes of the mask (voxels whose label is not one of
    the organ's classes, e.g. an unlabelled tumour) get the first organ class, so the model is told "healthy
    organ here" and reconstructs it as such.
    """
    labels = np.asarray(labels).astype(np.int64)
    organ_indices = list(organ_indices)
    inside = np.where(np.isin(labels, organ_indices), labels, organ_indices[0])
    return np.where(organ_mask, inside, 0).astype(np.int64)


def _check_inputs(image: np.ndarray, organ_mask: np.ndarray, name: str) -> None:
    if image.ndim != 3:
        raise InputImageError(f"{name}: expected a 3D (Z, Y, X) image, got shape {image.shape}")
    if organ_mask.shape != image.shape:
        raise GeometryError(
            f"{name}: organ mask shape {organ_mask.shape} does not match the image shape {image.shape}; "
            "the mask must be on the image's grid"
        )
    if not organ_mask.any():
        raise InputImageError(f"{name}: the organ mask is empty, there is nothing to look for anomalies in")
    lo, hi = float(image.min()), float(image.max())
    if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise InputImageError(
            f"{name}: image values {lo:.3g}..{hi:.3g} are outside [-1, 1]; window HU with "
            "meddiff.data.intensity.hu_to_unit first"
        )


def anomaly_map(
    eps_fn: EpsFn,
    image: np.ndarray,
    organ_mask: np.ndarray,
    alphas_cumprod: torch.Tensor,
    *,
    timestep: int,
    seed: int,
    name: str = "image",
    remove_organ_offset: bool,
) -> np.ndarray:
    """Anomaly map Ano_map = |x̃_0 − x̃′_0| of one volume (paper 3.4.2).

    1. Masked image x̃_0: ``image`` inside the organ, -1 (outside air) elsewhere.
    2. Forward diffusion to the fixed ``timestep`` (eq. 1): x̃_t = sqrt(ᾱ_t) x̃_0 + sqrt(1 − ᾱ_t) ε, with
       ε ~ N(0, I) drawn on the CPU from ``torch.Generator().manual_seed(seed)``.
    3. One-step reconstruction of the healthy image (eq. 9):
       x̃′_0 = (x̃_t − sqrt(1 − ᾱ_t) ε_θ(x̃_t, t)) / sqrt(ᾱ_t), clipped to [-1, 1].
    4. Ano_map = |x̃_0 − x̃′_0| inside the organ, 0 outside. (The paper writes the signed difference; its
       maps and metrics treat brighter and darker lesions alike, so the magnitude is used.)

    ``remove_organ_offset`` (``anomaly.remove_organ_offset``, not in the paper) subtracts the organ's median of
    x̃_0 − x̃′_0 before the magnitude. Why: at t = 950 only sqrt(ᾱ) = 0.078 of the image is left, so even an
    ideal denoiser pins an organ's overall brightness from ~2,000 voxels of a 32³ window only to about
    1 / (0.078 sqrt(2000)) = 0.29 (in [-1, 1] units, ~50 HU in the abdomen window), while livers differ by
    more than that between scans (contrast phase). Without the correction a healthy but bright liver lights up
    as a whole; the median ignores lesions covering less than half of the organ.

    Args:
        eps_fn: the noise estimate ε_θ(x_t, t) with the anatomy and region condition already bound
            (e.g. :func:`model_output_fn` through ``as_epsilon_fn``).
        image: (Z, Y, X) float in [-1, 1].
        organ_mask: (Z, Y, X) bool, on the image's grid.
        alphas_cumprod: (T,) ᾱ_t of the model's schedule (index = timestep, 0 = least noise).
        timestep: t, an index into ``alphas_cumprod`` (paper: 950 with T = 1000).
        seed: seed of the forward-process noise.
        name: used in error messages.

    Returns:
        (Z, Y, X) float32 anomaly map, >= 0, zero outside the organ.

    Raises:
        GeometryError: mask and image shapes differ. InputImageError: empty mask, image not in [-1, 1].
        ConfigError: ``timestep`` outside 0..T-1.
    """
    image = np.asarray(image, dtype=np.float32)
    organ_mask = np.asarray(organ_mask, dtype=bool)
    _check_inputs(image, organ_mask, name)
    if not 0 <= timestep < len(alphas_cumprod):
        raise ConfigError(f"anomaly.timestep={timestep} must be in 0..{len(alphas_cumprod) - 1} (T of the model)")
    abar = float(alphas_cumprod[timestep])
    x0 = torch.from_numpy(np.where(organ_mask, np.clip(image, -1.0, 1.0), BACKGROUND_INTENSITY))[None, None]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    x_t = (abar**0.5) * x0 + ((1.0 - abar) ** 0.5) * noise
    with torch.no_grad():
        eps = eps_fn(x_t, timestep).detach().to("cpu", torch.float32)
    if eps.shape != x_t.shape:
        raise ValueError(f"{name}: the noise estimate has shape {tuple(eps.shape)}, expected {tuple(x_t.shape)}")
    x0_hat = ((x_t - ((1.0 - abar) ** 0.5) * eps) / (abar**0.5)).clamp(-1.0, 1.0)
    residual = (x0 - x0_hat)[0, 0].numpy()
    if remove_organ_offset:
        residual = residual - np.median(residual[organ_mask])
    return np.where(organ_mask, np.abs(residual), 0.0).astype(np.float32)


def smooth_map(amap: np.ndarray, organ_mask: np.ndarray, sigma_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing of an anomaly map inside the organ (``anomaly.smoothing_sigma_mm``; 0 = off, as in the paper).

    Why offer it: every voxel of a one-step x̃′_0 at t = 950 is an independent, noisy estimate, so the raw map
    carries voxel-scale speckle that is not anomaly; a Gaussian of a few mm averages it while lesions of
    >= 5 mm survive (reconstruction-based detectors commonly smooth their maps, e.g. several BMAD baselines blur
    with σ = 4 px). Normalised convolution (smoothed map / smoothed mask) keeps the zeros outside the organ from
    darkening its border. ``spacing`` is (x, y, z) mm.
    """
    if sigma_mm <= 0:
        return np.asarray(amap, dtype=np.float32)
    mask = np.asarray(organ_mask, dtype=np.float64)
    sigma_zyx = [sigma_mm / float(s) for s in reversed(tuple(spacing))]
    num = ndimage.gaussian_filter(np.asarray(amap, dtype=np.float64) * mask, sigma_zyx, mode="constant")
    den = ndimage.gaussian_filter(mask, sigma_zyx, mode="constant")
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)
    return np.where(organ_mask, out, 0.0).astype(np.float32)


def model_output_fn(
    loaded: LoadedModel,
    anatomy: np.ndarray,
    region: str,
    *,
    patch_size: Sequence[int],
    sampling: SamplingConfig,
    device: str | torch.device,
) -> EpsFn:
    """The network output of a whole volume at (x_t, t): the sliding-window estimate (paper 3.3) with anatomy
    and region bound; ε̂ for an ε-model, v̂ for a v-model (:func:`meddiff.diffusion.schedule.as_epsilon_fn`).

    ``anatomy`` is (Z, Y, X) int (:func:`anatomy_condition`); windows overlap by ``sampling.overlap`` and run
    ``sampling.patch_batch_size`` at a time.
    """
    from meddiff.diffusion.sliding_window import sliding_window_eps

    if region not in REGIONS:
        raise ConfigError(f"unknown region {region!r}; expected one of {REGIONS}")
    device = torch.device(device)
    anatomy_t = torch.as_tensor(np.asarray(anatomy), dtype=torch.long, device=device)[None]

    def eps_fn(x_t: torch.Tensor, timestep: int) -> torch.Tensor:
        return sliding_window_eps(
            loaded.network, x_t.to(device), timestep, anatomy_t, REGIONS.index(region),
            patch_size=tuple(patch_size), overlap=sampling.overlap, batch_size=sampling.patch_batch_size,
            blend=sampling.blend, precision=sampling.precision,
        )

    return eps_fn


def anomaly_map_for_case(
    loaded: LoadedModel,
    image: np.ndarray,
    labels: np.ndarray,
    organ_indices: Sequence[int],
    region: str,
    *,
    cfg: AnomalyConfig,
    sampling: SamplingConfig,
    patch_size: Sequence[int],
    spacing: Sequence[float],
    device: str | torch.device,
    seed: int,
    name: str = "image",
    condition_label: int | None = None,
) -> np.ndarray:
    """Anomaly map of one volume with a trained model (paper 3.4.2): organ mask from ``labels``, anatomy
    condition, sliding-window ε at ``cfg.timestep``, :func:`anomaly_map` (optionally without the organ's
    offset), optional :func:`smooth_map`.

    Args:
        loaded: trained model (network, T, schedule).
        image: (Z, Y, X) in [-1, 1]; labels: (Z, Y, X) label map on the same grid.
        organ_indices: label-space classes of the organ (``meddiff.labels.indices(cfg.organ)``).
        region: region class of the volume (``"abdomen"`` for the liver).
        spacing: (x, y, z) mm, for the smoothing kernel.
        condition_label: the class the model was trained to see inside the organ, when its mask backend
            differs from the labels (the threshold backend calls every soft-tissue organ ``body``); None = the
            organ's own classes.

    Returns:
        (Z, Y, X) float32 anomaly map, 0 outside the organ.
    """
    from meddiff.diffusion.schedule import as_epsilon_fn, make_scheduler

    labels = np.asarray(labels)
    if labels.shape != np.shape(image):
        raise GeometryError(f"{name}: label map shape {labels.shape} does not match the image shape {np.shape(image)}")
    organ = organ_mask_from_labels(labels, organ_indices)
    if not organ.any():
        raise InputImageError(f"{name}: no voxel of the organ classes {list(organ_indices)} in the label map")
    condition = anatomy_condition(labels, organ, organ_indices)
    if condition_label is not None:
        condition = np.where(organ, condition_label, 0).astype(np.int64)
    alphas = make_scheduler(loaded.num_train_timesteps, loaded.schedule, loaded.prediction).alphas_cumprod
    output_fn = model_output_fn(loaded, condition, region, patch_size=patch_size, sampling=sampling, device=device)
    eps_fn = as_epsilon_fn(output_fn, alphas, loaded.prediction)
    amap = anomaly_map(eps_fn, image, organ, alphas, timestep=cfg.timestep, seed=seed, name=name,
                       remove_organ_offset=cfg.remove_organ_offset)
    return smooth_map(amap, organ, cfg.smoothing_sigma_mm, spacing)


def model_map_fn(
    loaded: LoadedModel,
    *,
    cfg: AnomalyConfig,
    sampling: SamplingConfig,
    patch_size: Sequence[int],
    device: str | torch.device,
    condition_label: int | None = None,
) -> MapFn:
    """The :data:`MapFn` of a trained model, for :func:`run_anomaly_task` (``condition_label``: see
    :func:`anomaly_map_for_case`)."""
    organ_indices = indices(cfg.organ)

    def map_fn(case: AnomalyCase, seed: int) -> np.ndarray:
        return anomaly_map_for_case(
            loaded, case.image, case.labels, organ_indices, case.region, cfg=cfg, sampling=sampling,
            patch_size=patch_size, spacing=case.spacing, device=device, seed=seed, name=case.case,
            condition_label=condition_label,
        )

    return map_fn


@dataclass(frozen=True)
class AnomalyTaskOutput:
    """Anomaly maps of a set of cases, aligned by position: ``maps[i]`` and ``organ_masks[i]`` are (Z, Y, X)
    arrays of ``cases[i]``."""

    cases: list[AnomalyCase]
    maps: list[np.ndarray]
    organ_masks: list[np.ndarray]


def run_anomaly_task(
    cases: Sequence[AnomalyCase], map_fn: MapFn, cfg: AnomalyConfig, *, seed: int
) -> AnomalyTaskOutput:
    """Anomaly maps of all ``cases`` (case ``i`` uses noise seed ``seed + i``).

    ``map_fn`` is :func:`model_map_fn` for a trained model (or any (case, seed) -> map function, e.g. in tests).
    Organ masks come from the labels and ``cfg.organ`` as in :func:`anomaly_map_for_case`.
    """
    if not cases:
        raise InputImageError("no anomaly-detection cases to evaluate")
    organ_indices = indices(cfg.organ)
    maps, organs = [], []
    for i, case in enumerate(tqdm(cases, desc="anomaly maps", unit="case", disable=None)):
        organ = organ_mask_from_labels(case.labels, organ_indices)
        amap = np.asarray(map_fn(case, seed + i), dtype=np.float32)
        if amap.shape != case.image.shape:
            raise GeometryError(
                f"{case.case}: anomaly map shape {amap.shape} differs from the image {case.image.shape}"
            )
        maps.append(amap)
        organs.append(organ)
        log.info("%s: anomaly map max %.3f, %d organ voxels, %d lesion voxels", case.case, float(amap.max()),
                 int(organ.sum()), int(case.lesion_mask.sum()))
    return AnomalyTaskOutput(list(cases), maps, organs)


def anomaly_cases(
    dataset: str, *, cases: int, slices_per_volume: int, window: Window, spacing_mm: Sequence[float],
    patch_size: Sequence[int], data_root: Path, seed: int,
) -> list[AnomalyCase]:
    """The evaluation cases of ``anomaly.dataset``.

    Demo (``phantom``): freshly generated abdomen phantoms, half healthy and half with liver tumours, resampled
    and windowed like the training data (``cases`` in all, default 6). Paper scale (``bmad_liver``): BMAD's
    liver test slices stacked into pseudo-3D volumes of ``slices_per_volume`` slices (default: the patch depth).
    """
    if dataset == "phantom":
        n = cases or 6
        return demo_anomaly_cases(n // 2, n - n // 2, seed=seed, spacing_mm=spacing_mm, window=window)
    return load_bmad_liver(
        Path(data_root) / dataset,
        "test",
        slices_per_volume=slices_per_volume or patch_size[0],
        window=window,
        max_volumes=cases,
    )


def write_anomaly_maps(output: AnomalyTaskOutput, path: Path) -> None:
    """Write the maps and what scoring them needs, atomically, as one npz: ``cases`` (names), and per case
    ``<case>/map``, ``<case>/organ``, ``<case>/lesion`` and ``<case>/image_hu`` ((Z, Y, X)) and ``<case>/window``
    ((low, high) HU of the image's window)."""
    arrays = {"cases": np.array([c.case for c in output.cases])}
    for case, amap, organ in zip(output.cases, output.maps, output.organ_masks):
        arrays.update({
            f"{case.case}/map": amap,
            f"{case.case}/organ": organ,
            f"{case.case}/lesion": case.lesion_mask,
            f"{case.case}/image_hu": unit_to_hu(case.image, case.window).astype(np.float32),
            f"{case.case}/window": np.array(case.window.bounds),
        })  # fmt: skip
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def detect_anomalies(
    model_dir: Path,
    out_npz: Path,
    *,
    cfg: AnomalyConfig,
    sampling: SamplingConfig,
    window: Window,
    spacing_mm: Sequence[float],
    patch_size: Sequence[int],
    mask_backend: str,
    data_root: Path,
    seed: int,
    device: str,
) -> AnomalyTaskOutput:
    """The ``anomaly`` rule: anomaly maps of every case of ``cfg.dataset`` with the model in ``model_dir``,
    written by :func:`write_anomaly_maps`. ``window`` is the abdomen window the model was trained on."""
    from meddiff.diffusion.checkpoint import load_model

    cases = anomaly_cases(
        cfg.dataset, cases=cfg.cases, slices_per_volume=cfg.slices_per_volume, window=window,
        spacing_mm=spacing_mm, patch_size=patch_size, data_root=data_root, seed=seed,
    )  # fmt: skip
    loaded = load_model(model_dir, device)
    # The model knows the label space of its own mask backend: the threshold backend labels the liver
    # (and every soft-tissue organ) ``body``, so that is the condition it must be given there.
    condition_label = BODY if mask_backend == "threshold" else None
    map_fn = model_map_fn(
        loaded, cfg=cfg, sampling=sampling, patch_size=patch_size, device=device, condition_label=condition_label
    )
    output = run_anomaly_task(cases, map_fn, cfg, seed=seed)
    write_anomaly_maps(output, out_npz)
    return output
