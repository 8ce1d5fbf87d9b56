import math

import numpy as np
import torch

from meddiff.data.thick_slices import slab_average
from meddiff.diffusion.schedule import make_scheduler
from meddiff.evaluation.super_resolution import evaluate_crop
from meddiff.tasks.super_resolution import BSPLINE, MEDDIFF_FM, TRILINEAR, diffpir_super_resolve

ABAR = make_scheduler(1000, "cosine", "epsilon").alphas_cumprod


def _truth(seed=0):
    rng = np.random.default_rng(seed)
    z = np.linspace(-1, 1, 24)[:, None, None]
    return np.clip(0.6 * np.sin(4 * z) + 0.05 * rng.normal(size=(24, 8, 8)), -1, 1).astype(np.float32)


def test_an_oracle_prior_returns_the_truth():
    truth = torch.from_numpy(_truth())[None, None]

    def oracle_eps(x_t, t):  # the noise that x_t carries relative to the truth
        a = float(ABAR[t])
        return (x_t - math.sqrt(a) * truth) / math.sqrt(1 - a)

    thick = torch.from_numpy(slab_average(_truth(), 3))[None, None]
    out = diffpir_super_resolve(thick, 24, oracle_eps, ABAR, factor=3, sigma_n=1.0, lam=1.0, steps=10, zeta=0.0,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(out, truth, atol=1e-5, rtol=0)


def test_with_little_thick_slice_noise_a_blind_prior_still_matches_the_thick_slices():
    truth = _truth()
    thick = torch.from_numpy(slab_average(truth, 3))[None, None]
    out = diffpir_super_resolve(thick, 24, lambda x, t: torch.zeros_like(x), ABAR, factor=3, sigma_n=1e-4, lam=1.0,
                                steps=5, zeta=0.0, generator=torch.Generator().manual_seed(0))  # fmt: skip
    np.testing.assert_allclose(slab_average(out[0, 0].numpy(), 3), thick[0, 0].numpy(), atol=2e-3)


def test_evaluation_ranks_the_exact_answer_first():
    truth = _truth()
    rng = np.random.default_rng(1)
    arrays = {"truth": truth, TRILINEAR: truth + 0.1 * rng.normal(size=truth.shape).astype(np.float32),
              BSPLINE: truth + 0.05 * rng.normal(size=truth.shape).astype(np.float32), MEDDIFF_FM: truth.copy()}
    rows = {r["method"]: r for r in evaluate_crop(arrays, trim=1)}
    assert rows[MEDDIFF_FM]["PSNR"] == math.inf and rows[MEDDIFF_FM]["SSIM"] > 0.999999
    assert rows[BSPLINE]["PSNR"] > rows[TRILINEAR]["PSNR"] and rows[BSPLINE]["SSIM"] > rows[TRILINEAR]["SSIM"]
