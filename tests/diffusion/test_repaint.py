import torch
import pytest

from meddiff.diffusion.repaint import network_calls, repaint_inpaint, repaint_schedule, respaced
from meddiff.diffusion.schedule import make_scheduler
from meddiff.errors import ConfigError, GeometryError

ALPHAS = make_scheduler(1000, "cosine", "epsilon").alphas_cumprod


def test_schedule_counts_the_papers_network_calls():
    schedule = repaint_schedule(250, 10, 10)
    assert schedule[0] == 249 and schedule[-1] == -1
    assert network_calls(schedule) == 2410
    assert network_calls(repaint_schedule(50, 10, 1)) == 50  # no resampling: plain respaced DDPM
    assert all(abs(a - b) == 1 for a, b in zip(schedule[:-1], schedule[1:]))


def test_respaced_timesteps_span_the_schedule():
    taus = respaced(1000, 250)
    assert taus[0] == 0 and taus[-1] == 999 and len(set(taus.tolist())) == 250
    with pytest.raises(ConfigError):
        respaced(1000, 0)


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.rand((1, 1, 6, 7, 5), generator=g) * 1.6 - 0.8
    mask = torch.zeros_like(truth, dtype=torch.bool)
    mask[..., 2:4, 2:5, 1:4] = True
    return truth, mask


def test_voxels_outside_the_mask_equal_the_input():
    truth, mask = _case()
    known = torch.where(mask, torch.zeros_like(truth), truth)  # the lesion-free image
    calls = []

    def eps(x, t):
        calls.append(t)
        return torch.zeros_like(x)

    out = repaint_inpaint(known, mask, eps, ALPHAS, steps=20, jump_length=5, resamples=3,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert torch.equal(out[~mask], known[~mask])
    assert not torch.equal(out[mask], known[mask])
    assert len(calls) == network_calls(repaint_schedule(20, 5, 3))


def test_an_oracle_prior_inpaints_the_truth():
    truth, mask = _case(3)
    known = torch.where(mask, torch.full_like(truth, -1.0), truth)

    def oracle(x, t):  # the exact noise of x_t around the true image
        a = float(ALPHAS[t])
        return (x - a**0.5 * truth) / (1.0 - a) ** 0.5

    out = repaint_inpaint(known, mask, oracle, ALPHAS, steps=25, jump_length=5, resamples=2,
                          generator=torch.Generator().manual_seed(2))  # fmt: skip
    torch.testing.assert_close(out, truth, atol=1e-4, rtol=0)


def test_mismatched_mask_is_refused():
    truth, mask = _case()
    with pytest.raises(GeometryError, match="inpaint mask"):
        repaint_inpaint(truth, mask[..., :-1], lambda x, t: x, ALPHAS, steps=5, jump_length=2, resamples=1)


def test_every_visited_state_is_marginally_q_of_the_truth():
    """With an oracle prior each x_t the network sees is sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε with ε ~ N(0, 1): wrong
    posterior coefficients or jump noise show up as a residual std away from 1."""
    g = torch.Generator().manual_seed(4)
    truth = torch.rand((1, 1, 16, 16, 16), generator=g) * 1.6 - 0.8
    mask = torch.zeros_like(truth, dtype=torch.bool)
    mask[..., 4:12, :, :] = True
    stds = []

    def oracle(x, t):
        a = float(ALPHAS[t])
        residual = (x - a**0.5 * truth) / (1.0 - a) ** 0.5
        stds.append(float(residual[mask].std()))
        return residual

    repaint_inpaint(truth, mask, oracle, ALPHAS, steps=30, jump_length=5, resamples=3,
                    generator=torch.Generator().manual_seed(5))  # fmt: skip
    assert min(stds) > 0.93 and max(stds) < 1.07, (min(stds), max(stds))
