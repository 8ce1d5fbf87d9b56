"""Sliding-window noise estimates (paper 3.3, Fig. 4): window placement, exact averaging, and no seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tiny_network import TINY_MODEL

from meddiff.diffusion.samplers import make_sampling_scheduler, reverse_diffusion
from meddiff.diffusion.schedule import make_scheduler
from meddiff.diffusion.sliding_window import SlidingWindowPlan, sliding_window_eps, window_starts
from meddiff.labels import NULL_LABEL
from meddiff.models.network import MedDiffUNet
from meddiff.models.position_encoding import crop_coordinates

BLEND_FP32 = {"blend": "gaussian", "precision": "fp32"}  # sampling.blend / precision as in the schema defaults

PATCH = (16, 16, 16)
TINY = TINY_MODEL


class Probe(nn.Module):
    """A fake ε-network that returns one of its inputs as the 'noise estimate', to check what each window
    receives: ``what`` in {"z", "y", "x"} (its whole-volume coordinate), "anatomy", "region", "t", "x_t"."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what
        self.calls: list[int] = []

    def forward(self, x_t, timesteps, anatomy, region, coords):
        self.calls.append(x_t.shape[0])
        b = x_t.shape[0]
        if self.what in ("z", "y", "x"):
            return coords[:, "zyx".index(self.what)][:, None]
        if self.what == "anatomy":
            return anatomy[:, None].float()
        if self.what == "region":
            return region.float().view(b, 1, 1, 1, 1).expand_as(x_t)
        if self.what == "t":
            return timesteps.float().view(b, 1, 1, 1, 1).expand_as(x_t)
        return x_t


def random_network(seed: int = 0) -> MedDiffUNet:
    """Tiny MedDiffUNet with a non-zero output layer (MONAI zero-initialises it, which would make every
    estimate 0 and every comparison trivially true)."""
    torch.manual_seed(seed)
    net = MedDiffUNet(TINY, "embedding").eval()
    with torch.no_grad():
        net.unet.out[2].conv.reset_parameters()
    return net


# ----------------------------------------------------------------------------------------- window placement


@pytest.mark.parametrize(
    "size, patch, overlap, expected",
    [
        (40, 16, 0.5, [0, 8, 16, 24]),
        (40, 16, 0.0, [0, 16, 24]),  # last window flush with the end
        (64, 32, 0.25, [0, 24, 32]),
        (16, 16, 0.5, [0]),
        (10, 16, 0.5, [0]),  # shorter than the patch: one window over the padded axis
    ],
)
def test_window_starts(size, patch, overlap, expected):
    assert window_starts(size, patch, overlap) == expected


@pytest.mark.parametrize("size", [17, 31, 33, 50, 97])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_windows_cover_the_axis_with_the_configured_stride(size, overlap):
    starts = window_starts(size, 16, overlap)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + 16] = True
    assert covered.all()
    assert starts[0] == 0 and starts[-1] == size - 16
    assert all(b - a == round(16 * (1 - overlap)) for a, b in zip(starts[:-2], starts[1:-1]))


def test_each_window_gets_its_whole_volume_coordinates():
    shape = (37, 21, 40)
    plan = SlidingWindowPlan(shape, PATCH, 0.5, np.zeros(shape, np.uint8), 0, "cpu", **BLEND_FP32)
    for i, start in enumerate(plan.starts):
        expected = crop_coordinates(shape, start, PATCH, PATCH)
        torch.testing.assert_close(plan.window_coordinates(i), expected, atol=1e-6, rtol=0)


# -------------------------------------------------------------------------------------- exact averaging


def test_volume_of_one_patch_equals_a_single_network_call():
    net = random_network()
    gen = torch.Generator().manual_seed(1)
    x_t = torch.randn((1, 1, *PATCH), generator=gen)
    anatomy = torch.randint(0, 119, (1, *PATCH), generator=gen)
    coords = crop_coordinates(PATCH, (0, 0, 0), PATCH, PATCH)[None]
    with torch.no_grad():
        direct = net(x_t, torch.tensor([321]), anatomy, torch.tensor([2]), coords)
    windowed = sliding_window_eps(net, x_t, 321, anatomy, 2, patch_size=PATCH, overlap=0.5, batch_size=4, **BLEND_FP32)
    assert direct.abs().mean() > 1e-3
    torch.testing.assert_close(windowed, direct)


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
@pytest.mark.parametrize("axis", ["z", "y", "x"])
def test_averaging_is_exact_for_a_function_of_position(axis, blend):
    shape = (37, 21, 40)
    x_t = torch.zeros((1, 1, *shape))
    plan = SlidingWindowPlan(shape, PATCH, 0.5, np.zeros(shape, np.uint8), 0, "cpu", blend=blend, precision="fp32")
    probe = Probe(axis)
    eps = plan.eps(probe, x_t, 10, batch_size=3)
    whole = crop_coordinates(shape, (0, 0, 0), shape, shape)["zyx".index(axis)]
    torch.testing.assert_close(eps[0, 0], whole, atol=1e-5, rtol=0)
    assert sum(probe.calls) == plan.num_windows == 4 * 2 * 4  # z: 0 8 16 21, y: 0 5, x: 0 8 16 24
    assert max(probe.calls) == 3


def test_windows_receive_their_anatomy_crop_region_and_timestep():
    shape = (30, 20, 24)
    gen = torch.Generator().manual_seed(0)
    anatomy = torch.randint(0, NULL_LABEL + 1, shape, generator=gen)
    x_t = torch.randn((1, 1, *shape), generator=gen)
    plan = SlidingWindowPlan(shape, PATCH, 0.25, anatomy, 1, "cpu", **BLEND_FP32)
    torch.testing.assert_close(plan.eps(Probe("anatomy"), x_t, 7, 4)[0, 0], anatomy.float())
    torch.testing.assert_close(plan.eps(Probe("region"), x_t, 7, 4), torch.ones_like(x_t))
    torch.testing.assert_close(plan.eps(Probe("t"), x_t, 7, 4), torch.full_like(x_t, 7.0))
    torch.testing.assert_close(plan.eps(Probe("x_t"), x_t, 7, 4), x_t)


def test_volume_smaller_than_the_patch_is_padded_and_cropped_back():
    shape = (10, 16, 20)  # z shorter than the patch
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn((1, 1, *shape), generator=gen)
    anatomy = torch.randint(0, 119, (1, *shape), generator=gen)
    eps = sliding_window_eps(Probe("x_t"), x_t, 5, anatomy, 0, patch_size=PATCH, overlap=0.5, batch_size=2, **BLEND_FP32)
    assert eps.shape == x_t.shape
    torch.testing.assert_close(eps, x_t)
    z = sliding_window_eps(Probe("z"), x_t, 5, anatomy, 0, patch_size=PATCH, overlap=0.5, batch_size=2, **BLEND_FP32)
    torch.testing.assert_close(z[0, 0, :, 0, 0], torch.linspace(-1, 1, 10), atol=1e-6, rtol=0)
    a = sliding_window_eps(Probe("anatomy"), x_t, 5, anatomy, 0, patch_size=PATCH, overlap=0.5, batch_size=2, **BLEND_FP32)
    torch.testing.assert_close(a[0, 0], anatomy[0].float())


def test_wrong_shapes_are_rejected():
    plan = SlidingWindowPlan((20, 20, 20), PATCH, 0.5, np.zeros((20, 20, 20), np.uint8), 0, "cpu", **BLEND_FP32)
    with pytest.raises(ValueError, match="x_t has shape"):
        plan.eps(Probe("x_t"), torch.zeros(1, 1, 20, 20, 19), 0, 2)
    with pytest.raises(ValueError, match="anatomy has shape"):
        SlidingWindowPlan((20, 20, 20), PATCH, 0.5, np.zeros((20, 20, 19), np.uint8), 0, "cpu", **BLEND_FP32)


# ------------------------------------------------------------------------------------------------ no seams


def smooth_fields(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, 16, 16, 16) smooth random images in [-0.8, 0.8]: a few low-frequency plane waves."""
    r = torch.stack(torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij"))
    out = []
    for _ in range(n):
        freq, phase, amp = (
            torch.randn(3, 3, generator=gen) * 0.08,
            torch.rand(3, generator=gen) * 6.28,
            torch.randn(3, generator=gen),
        )
        v = sum(amp[k] * torch.cos(2 * np.pi * (freq[k][:, None, None, None] * r).sum(0) + phase[k]) for k in range(3))
        out.append(0.8 * torch.tanh(v / 1.5))
    return torch.stack(out)[:, None]


@pytest.fixture(scope="module")
def smooth_denoiser() -> MedDiffUNet:
    """The tiny network trained for 60 steps on smooth images: enough to make smooth samples, so seams at
    window borders stand out against the inside (a random network gives noise everywhere)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = MedDiffUNet(TINY, "embedding")
    scheduler = make_scheduler(1000, "cosine", "epsilon")
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(60):
        x0 = smooth_fields(4, gen)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (4,), generator=gen)
        starts = torch.randint(0, 33, (4, 3), generator=gen)
        coords = torch.stack([crop_coordinates((48,) * 3, s.tolist(), PATCH, PATCH) for s in starts])
        anatomy = torch.zeros((4, *PATCH), dtype=torch.long)
        pred = net(scheduler.add_noise(x0, noise, t), t, anatomy, torch.zeros(4, dtype=torch.long), coords)
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return net.eval()


def border_to_inside_ratio(volume: np.ndarray, overlap: float) -> float:
    """Mean |finite difference| across the voxel planes where a window starts or ends, over the mean
    |finite difference| across the planes inside windows (1 = no seams), pooled over the three axes.

    Inside planes are compared only at the parity of the border planes: the U-Net's stride-2 down- and
    up-sampling leaves a period-2 texture aligned with the windows (every window starts at an even
    voxel), which is not a seam but would bias an all-planes average.
    """
    border_sum = border_n = inside_sum = inside_n = 0.0
    for axis, n in enumerate(volume.shape):
        p = PATCH[axis]
        starts = window_starts(n, p, overlap)
        diffs = np.moveaxis(np.abs(np.diff(volume, axis=axis)), axis, 0)  # diffs[i] = |v[i+1] - v[i]|
        border = sorted({s - 1 for s in starts if s > 0} | {s + p - 1 for s in starts if s + p - 1 < n - 1})
        assert len({i % 2 for i in border}) == 1
        inside = [i for i in range(border[0] % 2, n - 1, 2) if i not in border]
        border_sum, border_n = border_sum + diffs[border].sum(), border_n + diffs[border].size
        inside_sum, inside_n = inside_sum + diffs[inside].sum(), inside_n + diffs[inside].size
    return float((border_sum / border_n) / (inside_sum / inside_n))


@pytest.fixture(scope="module")
def seam_ratio(smooth_denoiser):
    """``seam_ratio(shape, overlap, blend)``: :func:`border_to_inside_ratio` of a DDIM-10 sample (x_T from
    seed 0, background anatomy), computed once per setting for the tests below."""
    cache: dict = {}

    def ratio(shape: tuple[int, int, int], overlap: float, blend: str) -> float:
        key = (shape, overlap, blend)
        if key not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            scheduler = make_sampling_scheduler("ddim", 1000, "cosine", 10, "epsilon")
            plan = SlidingWindowPlan(shape, PATCH, overlap, np.zeros(shape, np.uint8), 0, "cpu", blend=blend, precision="fp32")
            x_T = torch.randn((1, 1, *shape), generator=torch.Generator().manual_seed(0))
            volume = reverse_diffusion(smooth_denoiser, plan, scheduler, x_T, batch_size=16)[0, 0].numpy()
            torch.set_num_threads(threads)
            assert volume.std() > 0.1  # an image, not a constant
            cache[key] = border_to_inside_ratio(volume, overlap)
        return cache[key]

    return ratio


@pytest.mark.slow
def test_sampled_volume_has_no_seams_at_window_borders(seam_ratio):
    assert 0.9 < seam_ratio((40, 40, 40), 0.5, "gaussian") < 1.1


@pytest.mark.slow
def test_without_averaging_the_seam_check_fails(seam_ratio):
    """Non-overlapping tiles (each window denoised on its own): the same check sees the seams."""
    assert window_starts(48, 16, 0.0) == [0, 16, 32]
    assert seam_ratio((48, 48, 48), 0.0, "constant") > 1.4


@pytest.mark.slow
def test_plain_mean_reduces_seams_against_tiles(seam_ratio):
    """The paper's unweighted mean already beats tiles; the Gaussian-weighted mean beats both."""
    gaussian = seam_ratio((40, 40, 40), 0.5, "gaussian")
    plain = seam_ratio((40, 40, 40), 0.5, "constant")
    tiled = seam_ratio((48, 48, 48), 0.0, "constant")
    print(f"seam ratio: gaussian {gaussian:.3f}, plain mean {plain:.3f}, tiles {tiled:.3f}")
    assert gaussian < plain < tiled


class ControlProbe(nn.Module):
    """Returns channel 1 of its control crop: each window must get the control where its x_t crop lies."""

    def forward(self, x_t, timesteps, anatomy, region, coords, control):
        assert control.shape[0] == x_t.shape[0] and control.shape[2:] == x_t.shape[2:]
        return control[:, 1:2]


def test_control_is_cropped_with_each_window():
    shape = (20, 24, 18)
    control = torch.rand((1, 2, *shape), generator=torch.Generator().manual_seed(0))
    plan = SlidingWindowPlan(shape, PATCH, 0.5, np.zeros(shape, np.uint8), 0, "cpu", control=control, **BLEND_FP32)
    eps = plan.eps(ControlProbe(), torch.zeros((1, 1, *shape)), 5, batch_size=3)
    torch.testing.assert_close(eps, control[:, 1:2])
    with pytest.raises(ValueError, match="control has shape"):
        SlidingWindowPlan(shape, PATCH, 0.5, np.zeros(shape, np.uint8), 0, "cpu", control=control[..., :-1],
                          **BLEND_FP32)  # fmt: skip
