"""The low-dose denoising experiment (paper 4.3.2, Table 5): cases -> DiffPIR, NLM, BM3D -> PSNR / SSIM.

Demo (``denoising.dataset: phantom``): the chest and abdomen test crops of the manifest, with quarter dose
simulated on projections (:mod:`meddiff.tasks.lowdose`). Paper scale (``mayo2016``): the Mayo 2016
full / quarter-dose pairs; ``denoising.test_patients`` are evaluated, the others estimate σn.
"""

from __future__ import annotations

from pathlib import Path

from meddiff.config import Config
from meddiff.data.manifest import read_manifest
from meddiff.tasks.denoising import DenoisingResult, model_denoiser, run_denoising_task, write_denoising_outputs
from meddiff.tasks.denoising_cases import mayo_cases, simulated_cases_from_manifest


def run_denoising_experiment(model_dir: Path, manifest: Path, out_dir: Path, cfg: Config, device: str) -> DenoisingResult:
    """Denoise every test case with the model in ``model_dir`` and the baselines; write ``out_dir``."""
    d = cfg.denoising
    if d.dataset == "phantom":
        test, calibration = simulated_cases_from_manifest(
            read_manifest(manifest), d, interpolation=cfg.preprocess.image_interpolation, seed=cfg.seed
        )
    else:
        test, calibration = mayo_cases(
            Path(cfg.data.root) / d.dataset,
            test_patients=d.test_patients,
            spacing_mm=cfg.preprocess.spacing_mm,
            interpolation=cfg.preprocess.image_interpolation,
            cases=d.cases,
        )
    denoise = model_denoiser(
        model_dir,
        windows=cfg.preprocess.windows,
        cfg=d,
        sampling=cfg.sampling,
        patch_size=cfg.model.patch_size,
        device=device,
        seed=cfg.seed,
        zeta=d.zeta,
    )
    result = run_denoising_task(test, calibration, denoise, windows=cfg.preprocess.windows, cfg=d)
    write_denoising_outputs(result, out_dir)
    return result
