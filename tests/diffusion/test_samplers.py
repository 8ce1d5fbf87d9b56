"""Whole-volume samplers (DDPM / DDIM on MONAI schedulers, sliding-window ε)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from meddiff.config import SamplingConfig
from meddiff.diffusion.samplers import make_sampling_scheduler, reverse_diffusion, sample_volume
from meddiff.diffusion.sliding_window import SlidingWindowPlan
from meddiff.errors import ConfigError
from meddiff.labels import NULL_LABEL, REGIONS

BLEND_FP32 = {"blend": "gaussian", "precision": "fp32"}  # sampling.blend / precision as in the schema defaults

PATCH = (16, 16, 16)
SHAPE = (20, 24, 18)  # larger than the patch along every axis: several windows


def smooth_volume(shape, seed: int = 0) -> torch.Tensor:
    """A smooth test image in [-0.9, 0.9], (Z, Y, X)."""
    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*[torch.linspace(0, 1, n) for n in shape], indexing="ij")
    a = torch.rand(3, generator=g) * 4 + 1
    return 0.9 * torch.sin(a[0] * z + a[1] * y) * torch.cos(a[2] * x)


def voxel_index(coords: torch.Tensor, shape) -> tuple[torch.Tensor, ...]:
    """Whole-volume coordinates (B, 3, d, h, w) in [-1, 1] -> integer voxel indices per axis."""
    return tuple(((coords[:, k] + 1) / 2 * (n - 1)).round().long() for k, n in enumerate(shape))


class X0Oracle(nn.Module):
    """ε = (x_t - sqrt(ᾱ_t) x0) / sqrt(1 - ᾱ_t) (or v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x0) for a known x0, read at
    each window's whole-volume coordinates (so it is right only if every window gets its own coordinates and
    crop of x_t)."""

    def __init__(self, x0: torch.Tensor, alphas_cumprod: torch.Tensor, prediction: str = "epsilon"):
        super().__init__()
        self.x0, self.ab, self.prediction = x0, alphas_cumprod, prediction

    def forward(self, x_t, timesteps, anatomy, region, coords):
        x0 = self.x0[voxel_index(coords, self.x0.shape)][:, None]
        ab = self.ab[timesteps].view(-1, 1, 1, 1, 1)
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return eps if self.prediction == "epsilon" else ab.sqrt() * eps - (1 - ab).sqrt() * x0


class NoiseOracle(nn.Module):
    """Always returns the same noise n: the exact ε along the DDIM (η = 0) trajectory
    x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) n, provided each step lands on the timestep the next call is told."""

    def __init__(self, noise: torch.Tensor):
        super().__init__()
        self.noise = noise

    def forward(self, x_t, timesteps, anatomy, region, coords):
        return self.noise[voxel_index(coords, self.noise.shape)][:, None]


class Spy(nn.Module):
    """Records the anatomy and region every window receives; predicts ε = 0.1 x_t."""

    def __init__(self):
        super().__init__()
        self.anatomy: list[torch.Tensor] = []
        self.region: list[torch.Tensor] = []
        self.model_config = SimpleNamespace(patch_size=PATCH)

    def forward(self, x_t, timesteps, anatomy, region, coords):
        self.anatomy.append(anatomy.clone())
        self.region.append(region.clone())
        return 0.1 * x_t


def loaded(network: nn.Module, num_train_timesteps: int = 50, prediction: str = "epsilon"):
    return SimpleNamespace(
        network=network, num_train_timesteps=num_train_timesteps, schedule="cosine", info={}, prediction=prediction
    )


@pytest.mark.parametrize("T, k", [(1000, 10), (1000, 30), (100, 7), (50, 50)])
def test_ddim_timesteps_are_the_ones_monai_step_moves_between(T, k):
    scheduler = make_sampling_scheduler("ddim", T, "cosine", k, "epsilon")
    ts = scheduler.timesteps.tolist()
    assert len(ts) == k and ts[0] == (k - 1) * (T // k) and ts[-1] == 0
    # DDIMScheduler.step goes from t to t - T // k: the next timestep must be exactly that.
    assert all(a - b == T // k for a, b in zip(ts, ts[1:]))


@pytest.mark.parametrize("error, tolerance", [(0.0, 1e-4), (0.01, 0.1)])
def test_ddim_follows_the_trajectory_of_a_known_image_and_noise(error, tolerance):
    """Exact ε: DDIM lands on x0 (max error). ε off by 1 %: still close on average -- the first x̂_0 must not
    amplify the error into clipped ±1 noise (starting at t = 999 of the cosine schedule: mean error 0.99)."""
    x0 = smooth_volume(SHAPE)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    wrong = noise + error * torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    scheduler = make_sampling_scheduler("ddim", 1000, "cosine", 10, "epsilon")
    ab = scheduler.alphas_cumprod[scheduler.timesteps[0]]
    x_t = (ab.sqrt() * x0 + (1 - ab).sqrt() * noise)[None, None]
    plan = SlidingWindowPlan(SHAPE, PATCH, 0.5, np.zeros(SHAPE, np.uint8), 0, "cpu", **BLEND_FP32)
    out = reverse_diffusion(NoiseOracle(wrong), plan, scheduler, x_t, batch_size=4)
    err = (out[0, 0] - x0).abs()
    assert (err.max() if error == 0 else err.mean()) < tolerance


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler, T, steps", [("ddim", 1000, 10), ("ddpm", 20, 20)])
def test_sampler_with_an_x0_oracle_recovers_x0(sampler, T, steps, prediction):
    x0 = smooth_volume(SHAPE, seed=1)
    scheduler = make_sampling_scheduler(sampler, T, "cosine", steps, "epsilon")
    oracle = X0Oracle(x0, scheduler.alphas_cumprod, prediction)
    sampling = SamplingConfig(sampler=sampler, steps=steps, overlap=0.5, patch_batch_size=3, **BLEND_FP32)
    out = sample_volume(
        loaded(oracle, T, prediction),
        np.zeros(SHAPE, np.uint8),
        "abdomen",
        sampling=sampling,
        patch_size=PATCH,
        seed=0,
        device="cpu",
    )
    assert out.shape == SHAPE and out.dtype == np.float32
    np.testing.assert_allclose(out, x0.numpy(), atol=1e-4)


@pytest.mark.parametrize("sampler, steps", [("ddim", 4), ("ddpm", 50)])
def test_same_seed_same_volume_other_seed_other_volume(sampler, steps):
    sampling = SamplingConfig(sampler=sampler, steps=steps, overlap=0.25, patch_batch_size=4, **BLEND_FP32)
    anatomy = np.zeros((16, 18, 16), np.uint8)
    run = lambda seed: sample_volume(loaded(Spy()), anatomy, "han", sampling=sampling, seed=seed, device="cpu")
    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01
    assert a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize("unconditional", [False, True])
def test_network_gets_the_anatomy_map_or_the_null_label_and_the_region(unconditional):
    anatomy = np.random.default_rng(0).integers(0, 119, (16, 16, 16)).astype(np.uint8)
    spy = Spy()
    sampling = SamplingConfig(sampler="ddim", steps=2, overlap=0.5, patch_batch_size=4, **BLEND_FP32)
    sample_volume(loaded(spy), anatomy, "chest", sampling=sampling, seed=0, device="cpu", unconditional=unconditional)
    assert len(spy.anatomy) == 2  # one window per step
    expected = np.full_like(anatomy, NULL_LABEL) if unconditional else anatomy
    for seen in spy.anatomy:
        np.testing.assert_array_equal(seen[0].numpy(), expected)
    assert all(int(r) == REGIONS.index("chest") for regions in spy.region for r in regions)


def test_bad_settings_are_rejected():
    anatomy = np.zeros((16, 16, 16), np.uint8)
    with pytest.raises(ConfigError, match="DDPM runs all"):
        make_sampling_scheduler("ddpm", 1000, "cosine", 50, "epsilon")
    with pytest.raises(ConfigError, match="unknown sampler"):
        make_sampling_scheduler("dpm_solver", 1000, "cosine", 20, "epsilon")
    with pytest.raises(ConfigError, match="unknown region"):
        sample_volume(
            loaded(Spy()), anatomy, "pelvis", sampling=SamplingConfig("ddim", 2, 0.5, 4, "gaussian", "fp32"), seed=0, device="cpu"
        )
    with pytest.raises(ValueError, match="anatomy labels"):
        sample_volume(
            loaded(Spy()), anatomy + 200, "han", sampling=SamplingConfig("ddim", 2, 0.5, 4, "gaussian", "fp32"), seed=0, device="cpu"
        )


class ControlSpy(Spy):
    """A Spy of a fine-tuned (ControlNet) network: records the control crops too."""

    def __init__(self):
        super().__init__()
        self.control: list[torch.Tensor] = []

    def forward(self, x_t, timesteps, anatomy, region, coords, control):
        self.control.append(control.clone())
        return 0.1 * x_t + control


def test_the_control_condition_reaches_the_network():
    anatomy = np.zeros((16, 16, 16), np.uint8)
    lesion = np.zeros((1, 16, 16, 16), np.float32)
    lesion[0, 4:9, 5:10, 6:12] = 1.0
    sampling = SamplingConfig(sampler="ddim", steps=2, overlap=0.5, patch_batch_size=4, **BLEND_FP32)
    spy = ControlSpy()
    with_lesion = sample_volume(loaded(spy), anatomy, "abdomen", sampling=sampling, seed=0, device="cpu",
                                control=lesion)  # fmt: skip
    assert len(spy.control) == 2 and all(torch.equal(c[0], torch.from_numpy(lesion)) for c in spy.control)
    without = sample_volume(loaded(ControlSpy()), anatomy, "abdomen", sampling=sampling, seed=0, device="cpu",
                            control=np.zeros_like(lesion))  # fmt: skip
    assert not np.array_equal(with_lesion, without)
