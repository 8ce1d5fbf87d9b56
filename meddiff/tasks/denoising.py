"""Zero-shot low-dose CT denoising with MedDiff-FM (paper 3.4.1, 4.3.2, Table 5, Fig. 6).

Intensity spaces (decided here, one place):

- **Model space.** The foundation model was trained on region windows (chest -500/1800, abdomen 60/360,
  ``preprocess.windows``), so the low-dose volume is mapped with its region's window to [-1, 1]
  (:func:`meddiff.data.intensity.hu_to_unit`) and DiffPIR runs there; sigma_n is a std in these units.
  (The paper feeds [-160, 240] HU; a model trained on other windows would see foreign intensities. The
  abdomen window is close to it: Mayo's ~30 HU quarter-dose noise is 0.15-0.17 in both, the paper's 0.15.)
  Voxels the model clips at its window bound (x0_hat at -1 or +1) take the low-dose HU beyond that bound,
  so that the part of the evaluation window outside the model window (abdomen: [-160, -120] HU) is not
  flattened to the bound.
- **Evaluation space.** Every method and the LDCT baseline are compared with the full-dose volume in the
  evaluation window (default [-160, 240] HU, paper 4.3.2), clipped and scaled to [0, 1], data range 1.

Metrics: PSNR and SSIM (:mod:`meddiff.metrics.image_quality`, MONAI) per axial slice, averaged over the
slices of a case (as the 2D methods of Table 5 are evaluated); slices whose full-dose image is constant in
the window (all air / all clipped) are skipped. Improvements are method - LDCT on the same case.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from meddiff.atomic import atomic_path, write_text
from meddiff.config import DenoisingConfig, SamplingConfig, Window
from meddiff.data.intensity import hu_to_unit, unit_to_hu
from meddiff.diffusion.checkpoint import LoadedModel, load_model
from meddiff.diffusion.schedule import as_epsilon_fn, make_scheduler
from meddiff.diffusion.sliding_window import SlidingWindowPlan
from meddiff.errors import ConfigError, GeometryError
from meddiff.labels import NULL_LABEL, REGIONS
from meddiff.metrics.image_quality import psnr, ssim
from meddiff.tasks.denoising_baselines import bm3d_denoise, nlm_denoise, to_window01
from meddiff.tasks.denoising_cases import DenoisingCase
from meddiff.tasks.denoising_noise import NoiseLevel, calibrate_noise, estimate_sigma_n, noise_for  # noqa: F401
from meddiff.tasks.diffpir import EpsFn, diffpir_denoise

log = logging.getLogger(__name__)

LDCT = "LDCT"
MEDDIFF_FM = "MedDiff-FM"
NLM = "NLM"
BM3D = "BM3D"
COMPUTED_SOURCE = "computed (this run)"
CITED_SOURCE = "paper (cited, Mayo 2016)"

# Table 5 of the paper: (method, category, PSNR gain dB, SSIM gain) over each method's LDCT baseline.
# The LDCT baseline itself in [-160, 240] HU (paper 4.3.2): 23.10 dB, SSIM 0.757.
_LDCT_PAPER = (23.10, 0.757)
_TABLE5 = (
    ("RED-CNN", "supervised", 4.55, 0.051),
    ("CTformer", "supervised", 4.66, 0.052),
    ("NLM", "unsupervised", 2.44, 0.032),
    ("BM3D", "unsupervised", 2.73, 0.033),
    ("Noise2Sim", "unsupervised", 4.22, 0.050),
    ("Dn-Dp", "unsupervised", 4.40, 0.049),
    ("MedDiff-FM", "unsupervised", 4.19, 0.059),
)


def cited_rows() -> pd.DataFrame:
    """The paper's Table 5 (improvements over LDCT on Mayo 2016), labelled ``source = CITED_SOURCE``.

    Quotes, not computed here. The first row is the paper's LDCT baseline in [-160, 240] HU (absolute
    PSNR / SSIM, 4.3.2; the methods' own baselines in other windows are not given); the other rows carry
    only the improvements of Table 5.
    """
    ldct = {"method": LDCT, "category": "baseline", "psnr": _LDCT_PAPER[0], "ssim": _LDCT_PAPER[1],
            "delta_psnr": 0.0, "delta_ssim": 0.0, "source": CITED_SOURCE}  # fmt: skip
    rows = [
        {"method": m, "category": c, "delta_psnr": p, "delta_ssim": s, "source": CITED_SOURCE} for m, c, p, s in _TABLE5
    ]
    return pd.DataFrame([ldct, *rows])


# ---------------------------------------------------------------- MedDiff-FM (DiffPIR, paper 3.4.1)


def restore_out_of_window(
    denoised: np.ndarray, low_hu: np.ndarray, window: Window, margin_hu: float = 0.0, tol: float = 1e-4
) -> np.ndarray:
    """Model output (Z, Y, X) in [-1, 1] -> HU, keeping the low-dose HU where the model cannot see.

    The model only represents its window: (a) voxels whose low-dose HU lies beyond a window bound by more than
    ``margin_hu`` (about 3 noise stds: noise alone does not put them there; e.g. air in the abdomen window)
    and (b) voxels the model put at a bound keep the low-dose HU beyond that bound. Without (a), air would
    come back as the window floor (-120 HU in the abdomen window), 40 HU off inside [-160, 240].
    """
    lo, hi = window.bounds
    low_hu = np.asarray(low_hu, dtype=np.float32)
    hu = unit_to_hu(denoised, window).astype(np.float32)
    hu = np.where(denoised <= -1 + tol, np.minimum(low_hu, lo), hu)
    hu = np.where(denoised >= 1 - tol, np.maximum(low_hu, hi), hu)
    outside = (low_hu < lo - margin_hu) | (low_hu > hi + margin_hu)
    return np.where(outside, low_hu, hu).astype(np.float32)


def meddiff_fm_denoise(
    low_hu: np.ndarray,
    eps_fn: EpsFn,
    alphas_cumprod: torch.Tensor,
    window: Window,
    *,
    sigma_n: float,
    lam: float,
    steps: int,
    zeta: float,
    seed: int,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Denoise a (Z, Y, X) HU volume with DiffPIR in the model's region window; returns HU (Z, Y, X)."""
    y0 = torch.as_tensor(hu_to_unit(np.asarray(low_hu, dtype=np.float32), window), device=device)[None, None]
    generator = torch.Generator(device=device).manual_seed(seed)
    x0 = diffpir_denoise(
        y0, eps_fn, alphas_cumprod, sigma_n=sigma_n, lam=lam, steps=steps, zeta=zeta, generator=generator
    )
    sigma_hu = sigma_n * window.width / 2  # [-1, 1] spans the window width
    return restore_out_of_window(x0[0, 0].cpu().numpy(), low_hu, window, margin_hu=3 * sigma_hu)


def model_output_fn(
    network: torch.nn.Module,
    anatomy: np.ndarray | None,
    region: str,
    shape: Sequence[int],
    *,
    patch_size: Sequence[int],
    sampling: SamplingConfig,
    device: str | torch.device,
) -> EpsFn:
    """The network output of a whole volume at (x_t, t): the sliding-window mean of the patch outputs (paper
    3.3); ε̂ for an ε-model, v̂ for a v-model (:func:`meddiff.diffusion.schedule.as_epsilon_fn` converts).

    ``anatomy`` None -> NULL_LABEL everywhere (no anatomy condition).
    """
    labels = np.full(tuple(shape), NULL_LABEL, dtype=np.uint8) if anatomy is None else np.asarray(anatomy)
    plan = SlidingWindowPlan(
        tuple(shape), patch_size, sampling.overlap, labels, REGIONS.index(region), device,
        blend=sampling.blend,
        precision=sampling.precision,
    )

    def eps(x_t: torch.Tensor, t: int) -> torch.Tensor:
        with torch.inference_mode():
            return plan.eps(network, x_t.to(device), t, sampling.patch_batch_size)

    return eps


@functools.lru_cache(maxsize=1)
def _load(model_dir: Path, device: str) -> tuple[LoadedModel, torch.Tensor]:
    """(model, alphas_cumprod) of a model folder; cached so that a run loads its model once."""
    loaded = load_model(model_dir, device)
    return loaded, make_scheduler(loaded.num_train_timesteps, loaded.schedule).alphas_cumprod


def denoise_case(
    model_dir: str | Path,
    low_hu: np.ndarray,
    full_hu: np.ndarray,
    anatomy: np.ndarray | None,
    region: str,
    window: Window,
    cfg: DenoisingConfig,
    sampling: SamplingConfig,
    patch_size: Sequence[int],
    sigma_n: float,
    device: str,
    seed: int,
    *,
    sigma_hu: float | None = None,
    zeta: float = 0.0,
) -> dict[str, np.ndarray]:
    """MedDiff-FM, NLM and BM3D on one low-dose volume.

    Args:
        model_dir: trained model folder (architecture.json, diffusion.json, weights.pt).
        low_hu: (Z, Y, X) low-dose HU. ``full_hu`` is used only to check the grid (never by a method).
        anatomy: (Z, Y, X) labels or None; region: "chest" / "abdomen"; window: the region's model window.
        cfg: lam, steps, evaluation window; sampling: overlap, patch batch size.
        sigma_n: noise std in model units; sigma_hu: the same in HU for the baselines
            (default ``sigma_n * window.width / 2``); zeta: DiffPIR noise mix.

    Returns:
        {"MedDiff-FM": hu, "NLM": hu, "BM3D": hu}, each (Z, Y, X) float32.
    """
    if np.shape(low_hu) != np.shape(full_hu):
        raise GeometryError(
            f"{region} case: low-dose {np.shape(low_hu)} and full-dose {np.shape(full_hu)} grids differ"
        )
    loaded, abar = _load(Path(model_dir), str(device))
    output_fn = model_output_fn(
        loaded.network, anatomy, region, np.shape(low_hu), patch_size=patch_size, sampling=sampling, device=device
    )
    eps_fn = as_epsilon_fn(output_fn, abar, loaded.prediction)
    sigma_hu = sigma_n * window.width / 2 if sigma_hu is None else sigma_hu
    eval_win = tuple(cfg.window)
    return {
        MEDDIFF_FM: meddiff_fm_denoise(
            low_hu,
            eps_fn,
            abar,
            window,
            sigma_n=sigma_n,
            lam=cfg.lam,
            steps=cfg.steps,
            zeta=zeta,
            seed=seed,
            device=device,
        ),
        NLM: nlm_denoise(low_hu, sigma_hu=sigma_hu, window=eval_win),
        BM3D: bm3d_denoise(low_hu, sigma_hu=sigma_hu, window=eval_win),
    }


def model_denoiser(
    model_dir: str | Path,
    *,
    windows: Mapping[str, Window],
    cfg: DenoisingConfig,
    sampling: SamplingConfig,
    patch_size: Sequence[int],
    device: str,
    seed: int,
    zeta: float = 0.0,
) -> Callable[[DenoisingCase, NoiseLevel], dict[str, np.ndarray]]:
    """The ``denoise`` argument of :func:`run_denoising_task` for a trained model folder."""

    def denoise(case: DenoisingCase, noise: NoiseLevel) -> dict[str, np.ndarray]:
        return denoise_case(
            model_dir, case.low_hu, case.full_hu, case.anatomy, case.region, windows[case.region], cfg, sampling,
            patch_size, noise.sigma_n, device, seed, sigma_hu=noise.sigma_hu, zeta=zeta,
        )  # fmt: skip

    return denoise


# ---------------------------------------------------------------- evaluation (paper 4.1.3, Table 5)


def evaluate_denoising(
    full_hu: np.ndarray,
    low_hu: np.ndarray,
    denoised_hu: Mapping[str, np.ndarray],
    *,
    window: tuple[float, float] = (-160.0, 240.0),
) -> dict[str, dict[str, float]]:
    """PSNR / SSIM of LDCT and of each method against the full dose, in ``window`` (see module docstring).

    Returns:
        {method: {"psnr", "ssim", "delta_psnr", "delta_ssim"}}, "LDCT" first (its deltas are 0).

    Raises:
        GeometryError: an array is not on the full-dose grid.
    """
    for name, arr in {LDCT: low_hu, **denoised_hu}.items():
        if np.shape(arr) != np.shape(full_hu):
            raise GeometryError(f"{name} volume {np.shape(arr)} is not on the full-dose grid {np.shape(full_hu)}")
    ref = to_window01(full_hu, window)
    slices = [z for z in range(ref.shape[0]) if np.ptp(ref[z]) > 0]
    if not slices:
        raise ValueError(f"the full-dose volume is constant in the evaluation window {window}")

    def scores(hu: np.ndarray) -> dict[str, float]:
        x = to_window01(hu, window)
        return {
            "psnr": float(np.mean([psnr(x[z], ref[z], 1.0) for z in slices])),
            "ssim": float(np.mean([ssim(x[z], ref[z], 1.0) for z in slices])),
        }

    out = {LDCT: scores(low_hu)}
    for name, hu in denoised_hu.items():
        out[name] = scores(hu)
    base = out[LDCT]
    for s in out.values():
        s["delta_psnr"] = s["psnr"] - base["psnr"]
        s["delta_ssim"] = s["ssim"] - base["ssim"]
    return out


def central_slices(case: DenoisingCase, denoised_hu: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fig. 6 panels: the central axial slice (Y, X) of LDCT, each method and the full dose, in HU."""
    z = case.full_hu.shape[0] // 2
    return {LDCT: case.low_hu[z], **{k: np.asarray(v)[z] for k, v in denoised_hu.items()}, "Full dose": case.full_hu[z]}


@dataclass
class DenoisingResult:
    """Per-(case, method) metrics, per-region noise levels and Fig. 6 slices of one run."""

    metrics: pd.DataFrame
    noise: dict[str, NoiseLevel]
    slices: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # "<case>_<region>" -> Fig. 6 panels

    def summary(self) -> pd.DataFrame:
        """Table 5: mean computed scores per method (LDCT first), then the cited rows (``source`` column)."""
        by_method = self.metrics.groupby("method", sort=False)
        rows = by_method[["psnr", "ssim", "delta_psnr", "delta_ssim"]].mean().reset_index()
        rows["n_cases"] = by_method.size().values
        rows["source"] = COMPUTED_SOURCE
        return pd.concat([rows, cited_rows()], ignore_index=True)


def run_denoising_task(
    test_cases: Iterable[DenoisingCase],
    calibration_cases: Iterable[DenoisingCase],
    denoise: Callable[[DenoisingCase, NoiseLevel], dict[str, np.ndarray]],
    *,
    windows: Mapping[str, Window],
    cfg: DenoisingConfig,
) -> DenoisingResult:
    """Estimate sigma_n on the calibration cases, denoise every test case and evaluate it (paper 4.3.2).

    Both case collections may be lazy iterables (one full-size Mayo volume in memory at a time).

    Args:
        denoise: (case, noise level) -> {method: HU volume}; for a trained model :func:`model_denoiser`.

    Returns:
        metrics: one row per (case, method) with case, region, method, psnr, ssim, delta_psnr, delta_ssim,
        sigma_n, data (where the pair came from), source.

    Raises:
        ConfigError: no test case, a test case among the calibration cases, or no sigma_n for a region.
    """
    levels = calibrate_noise(calibration_cases, windows, cfg)
    rows, slices = [], {}
    for case in test_cases:
        noise = noise_for(case.region, levels, windows, cfg)
        denoised = denoise(case, noise)
        scores = evaluate_denoising(case.full_hu, case.low_hu, denoised, window=tuple(cfg.window))
        for method, s in scores.items():
            rows.append(
                {"case": case.case, "region": case.region, "method": method, **s, "sigma_n": noise.sigma_n,
                 "data": case.source, "source": COMPUTED_SOURCE}
            )  # fmt: skip
        slices[f"{case.case}_{case.region}"] = central_slices(case, denoised)
        log.info(
            "%s (%s): %s",
            case.case,
            case.region,
            {m: f"{s['delta_psnr']:+.2f} dB / {s['delta_ssim']:+.3f}" for m, s in scores.items()},
        )
    if not rows:
        raise ConfigError("denoising: no test case (check the manifest's test split or the Mayo test patients)")
    return DenoisingResult(metrics=pd.DataFrame(rows), noise=levels, slices=slices)


def write_denoising_outputs(result: DenoisingResult, out_dir: str | Path) -> None:
    """Write ``metrics.csv`` (per case and method), ``table5.csv`` (computed means + cited rows),
    ``noise.json`` and ``fig6_slices.npz`` (keys ``<case>_<region>/<panel>``, (Y, X) HU) into ``out_dir``, atomically.
    """
    out_dir = Path(out_dir)
    for name, df in (("metrics.csv", result.metrics), ("table5.csv", result.summary())):
        with atomic_path(out_dir / name) as tmp:
            df.to_csv(tmp, index=False)
    noise = {r: dataclasses.asdict(n) for r, n in result.noise.items()}
    write_text(out_dir / "noise.json", json.dumps(noise, indent=2) + "\n")
    arrays = {f"{case}/{panel}": img for case, panels in result.slices.items() for panel, img in panels.items()}
    with atomic_path(out_dir / "fig6_slices.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
