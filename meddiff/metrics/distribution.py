"""Feature-space distances between real and synthetic CT (paper 4.1.3, Tables 3-4): FID, MMD and an
LPIPS-style perceptual distance, all on the 3D ResNet of :mod:`meddiff.metrics.features`.

Which features: FID and MMD compare the distributions of (N, F) feature vectors; with the 1-2 test volumes of
the demo, :func:`feature_distribution_scores` takes K deterministic crops per volume
(:func:`meddiff.metrics.features.patch_features`) so that the distributions have N * K samples.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import FIDMetric

from meddiff.errors import GeometryError
from meddiff.metrics.features import FeatureExtractor, patch_features

log = logging.getLogger(__name__)


def _features(x: np.ndarray, what: str) -> torch.Tensor:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what} features must be (N, F), got shape {a.shape}")
    return torch.from_numpy(a)


def fid(real_feats: np.ndarray, fake_feats: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to real (N, F) and synthetic (M, F) features (monai FIDMetric).

    Needs N, M >= 2 (a covariance from one sample is undefined): returns NaN and logs why otherwise. With
    fewer samples than features the covariances are rank-deficient; the value is still defined but biased
    upwards — compare only values computed with the same extractor and sample counts. Tiny negative results
    from round-off in the matrix square root are reported as 0.
    """
    real, fake = _features(real_feats, "real"), _features(fake_feats, "synthetic")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} (real) vs {fake.shape[1]} (synthetic)")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        log.warning("FID needs at least 2 feature vectors per set, got %d real and %d synthetic: NaN",
                    real.shape[0], fake.shape[0])
        return float("nan")
    # MONAI print()s a note when it regularises a singular covariance product, and scipy warns about the
    # (expected, see above) singular matrices; route both to the log instead.
    with contextlib.redirect_stdout(io.StringIO()) as out, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(FIDMetric()(fake, real).item())
    for note in [out.getvalue().strip(), *{str(w.message) for w in caught}]:
        if note:
            log.debug("FID: %s", note)
    return max(value, 0.0)


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).square()


def mmd(real_feats: np.ndarray, fake_feats: np.ndarray, *, bandwidth: float | None = None) -> float:
    """Squared maximum mean discrepancy (Gretton et al. 2012) with a Gaussian RBF kernel, biased (V-) estimate.

    MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y),   k(u, v) = exp(-|u - v|^2 / (2 bandwidth^2)).

    Written here instead of ``monai.metrics.MMDMetric`` because MONAI's version uses a linear kernel (it only
    compares the feature means), requires as many synthetic as real samples, and its unbiased estimate is
    negative for identical sets. The biased RBF estimate is >= 0, exactly 0 for identical sets, and sees
    differences beyond the mean.

    Args:
        real_feats: (N, F) real features; fake_feats: (M, F) synthetic features.
        bandwidth: kernel width; default the median heuristic — the median pairwise distance of the pooled
            samples (scale-free, so features of any extractor work).
    """
    x, y = _features(real_feats, "real"), _features(fake_feats, "synthetic")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} (real) vs {y.shape[1]} (synthetic)")
    if bandwidth is None:
        pooled = torch.cat([x, y])
        d = torch.cdist(pooled, pooled)
        off_diag = d[~torch.eye(len(pooled), dtype=torch.bool)]
        bandwidth = float(off_diag.median()) if off_diag.numel() else 1.0
        bandwidth = bandwidth if bandwidth > 0 else 1.0
    gamma = 1.0 / (2.0 * bandwidth**2)
    kxx = torch.exp(-gamma * _sq_dists(x, x)).mean()
    kyy = torch.exp(-gamma * _sq_dists(y, y)).mean()
    kxy = torch.exp(-gamma * _sq_dists(x, y)).mean()
    return max(float(kxx + kyy - 2 * kxy), 0.0)


def perceptual_name(extractor: FeatureExtractor) -> str:
    """Column/metric name for tables, e.g. ``"LPIPS-style (3D ResNet10-3D random init ...)"``."""
    return f"LPIPS-style (3D {extractor.name})"


def perceptual_distance(extractor: FeatureExtractor, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS-style distance (Zhang et al. 2018) between two (Z, Y, X) volumes of the same shape.

    For each of the extractor's five stages: unit-normalise the feature vector at every voxel along the
    channels, take the squared difference summed over channels, average over space; then average over the
    stages. This is LPIPS without its learned per-channel linear heads (all weights 1), on 3D features: 0 for
    identical volumes, at most 4. Label it with :func:`perceptual_name` in tables.
    """
    if a.shape != b.shape:
        raise GeometryError(f"perceptual distance needs volumes of the same shape, got {a.shape} and {b.shape}")
    per_stage = []
    for fa, fb in zip(extractor.feature_maps(a), extractor.feature_maps(b), strict=True):
        na = fa / (fa.norm(dim=0, keepdim=True) + 1e-10)
        nb = fb / (fb.norm(dim=0, keepdim=True) + 1e-10)
        per_stage.append(float((na - nb).square().sum(dim=0).mean()))
    return float(np.mean(per_stage))


def paired_perceptual_distance(
    extractor: FeatureExtractor, real: Sequence[np.ndarray], fake: Sequence[np.ndarray]
) -> float:
    """Mean :func:`perceptual_distance` over pairs (real test volume, synthetic volume conditioned on it)."""
    if len(real) != len(fake) or not real:
        raise ValueError(f"need equally many real and synthetic volumes, got {len(real)} and {len(fake)}")
    return float(np.mean([perceptual_distance(extractor, r, f) for r, f in zip(real, fake, strict=True)]))


def feature_distribution_scores(
    extractor: FeatureExtractor,
    real: Sequence[np.ndarray],
    fake: Sequence[np.ndarray],
    *,
    crop_size: int = 32,
    crops_per_volume: int = 8,
    seed: int = 0,
) -> dict[str, float]:
    """FID and MMD between crop-level features of real and synthetic (Z, Y, X) volumes in [-1, 1].

    Returns ``{"FID": ..., "MMD": ..., "feature_samples_real": N*K, "feature_samples_synthetic": M*K}``.
    """
    real_f = patch_features(extractor, real, crop_size=crop_size, crops_per_volume=crops_per_volume, seed=seed)
    fake_f = patch_features(extractor, fake, crop_size=crop_size, crops_per_volume=crops_per_volume, seed=seed)
    return {
        "FID": fid(real_f, fake_f),
        "MMD": mmd(real_f, fake_f),
        "feature_samples_real": float(len(real_f)),
        "feature_samples_synthetic": float(len(fake_f)),
    }
