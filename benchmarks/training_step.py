"""Training-step costs, each against a baseline timed in the same run (``python -m benchmarks`` prints them).

* meddiff's whole training iteration (data, conditioning, noise, forward/backward/Adam, EMA, logging,
  checkpoint; ``seconds_per_step`` of :func:`meddiff.diffusion.training.train`) over a bare MONAI step: the
  same ``DiffusionModelUNet`` on a precomputed input tensor of the same shape, L1 loss, Adam;
* data wait over step (the loader's share of meddiff's step);
* batch 1 over batch 2 per sample, bf16 autocast over fp32 (bare steps);
* a ``torch.profiler`` breakdown of meddiff's steps by the loop's ``record_function`` labels.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from meddiff.config import Config
from meddiff.diffusion.precision import PrecisionChoice, autocast
from meddiff.diffusion.training import train
from meddiff.labels import REGIONS
from meddiff.models.network import MedDiffUNet

PROFILE_LABELS = ("data", "noise", "conditioning", "unet", "ema", "log", "checkpoint")


def bare_step(cfg: Config, batch_size: int, precision: str = "fp32") -> Callable[[], None]:
    """One forward/backward/Adam step of the bare MONAI U-Net of ``cfg.model`` on a fixed random batch."""
    torch.manual_seed(0)
    wrapper = MedDiffUNet(cfg.model, cfg.variants[-1].position)
    unet = wrapper.unet.train()
    optimizer = torch.optim.Adam(unet.parameters(), lr=cfg.training.lr)
    g = torch.Generator().manual_seed(0)
    channels = unet.conv_in.conv.in_channels
    x = torch.randn((batch_size, channels, *cfg.model.patch_size), generator=g)
    target = torch.randn((batch_size, 1, *cfg.model.patch_size), generator=g)
    t = torch.randint(0, 1000, (batch_size,), generator=g)
    region = torch.randint(0, len(REGIONS), (batch_size,), generator=g)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, "cpu"):
            out = unet(x, t, class_labels=region)
        F.l1_loss(out.float(), target).backward()
        optimizer.step()

    return step


def seconds_per_call(fn: Callable[[], None], calls: int) -> float:
    """Mean seconds of ``calls`` calls after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def meddiff_steps(cfg: Config, manifest: Path, steps: int, work: Path, profile: bool = False) -> dict:
    """Run ``meddiff train`` for ``steps`` steps (fp32, the config's batch, EMA, log and checkpoint intervals,
    variant = the last one) in a fresh folder; return its training.json (``seconds_per_step``, ...), plus the
    profiler's table when ``profile``."""
    training = dataclasses.replace(
        cfg.training, steps=steps, precision="fp32", checkpoint_every=min(cfg.training.checkpoint_every, steps)
    )
    out = Path(tempfile.mkdtemp(dir=work, prefix="train-"))
    run = lambda: train(  # noqa: E731
        manifest,
        out,
        model=cfg.model,
        diffusion=cfg.diffusion,
        training=training,
        variant=cfg.variants[-1],
        seed=cfg.seed,
        device="cpu",
        precision=PrecisionChoice("fp32", "fp32", "benchmark"),
    )
    result: dict = {}
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run()
        result["profile"] = profile_breakdown(prof)
    else:
        run()
    result.update(json.loads((out / "model" / "training.json").read_text()))
    return result


def profile_breakdown(prof) -> dict[str, float]:
    """Share of the profiled wall time by loop label, backward and optimizer step (CPU self+children time)."""
    events = {e.key: e.cpu_time_total for e in prof.key_averages()}
    total = sum(v for k, v in events.items() if k.startswith("ProfilerStep")) or None
    parts = {label: events.get(label, 0.0) for label in PROFILE_LABELS}
    parts["backward"] = sum(v for k, v in events.items() if k.startswith("autograd::engine::evaluate_function"))
    parts["optimizer"] = sum(v for k, v in events.items() if k.startswith("Optimizer.step"))
    whole = total or sum(parts.values())
    return {k: v / whole for k, v in parts.items()}


def training_ratios(cfg: Config, manifest: Path, work: Path, repeats: int = 3) -> list[dict]:
    """All training-step rows for the report; bare and meddiff steps interleaved ``repeats`` times.

    Each meddiff run lasts ``training.checkpoint_every`` steps (12 to 100), so it checkpoints as often as the
    configured run does (once, at its last step; more often when checkpoint_every > 100).
    """
    b = cfg.training.batch_size
    steps = min(max(12, cfg.training.checkpoint_every), 100)
    bare = bare_step(cfg, b)
    bare_times, ours, waits = [], [], []
    for _ in range(repeats):  # interleaved, so machine load hits both alike
        bare_times.append(seconds_per_call(bare, steps - 1))
        info = meddiff_steps(cfg, manifest, steps, work)
        ours.append(info["seconds_per_step"])
        waits.append(info["data_wait_fraction"])
    profiled = meddiff_steps(cfg, manifest, 6, work, profile=True)["profile"]
    bare_s, ours_s = statistics.median(bare_times), statistics.median(ours)
    rows = [
        {
            "benchmark": f"training step / bare MONAI step (batch {b}, fp32)",
            "ratio": ours_s / bare_s,
            "goal": "<= 1.10",
            "ok": ours_s / bare_s <= 1.10,
            "detail": f"meddiff {ours_s:.3f} s/step, bare {bare_s:.3f} s/step; median of {repeats} interleaved runs "
            f"of {steps - 1} timed steps; profile: "
            + ", ".join(f"{k} {100 * v:.1f}%" for k, v in profiled.items()),
        },
        {
            "benchmark": "data wait / training step",
            "ratio": statistics.median(waits),
            "goal": "<= 0.05",
            "ok": statistics.median(waits) <= 0.05,
            "detail": f"num_workers {cfg.training.num_workers}, median of {repeats} runs",
        },
    ]
    b1 = seconds_per_call(bare_step(cfg, 1), 4)
    b2 = seconds_per_call(bare_step(cfg, 2), 4) / 2
    rows.append(
        {
            "benchmark": "batch 1 / batch 2, bare step cost per sample",
            "ratio": b1 / b2,
            "goal": "> 1 justifies batch 2 on CPU",
            "ok": None,
            "detail": f"batch 1 {b1:.3f} s/sample, batch 2 {b2:.3f} s/sample",
        }
    )
    fp32 = seconds_per_call(bare_step(cfg, b), 2)
    bf16 = seconds_per_call(bare_step(cfg, b, "bf16"), 2)
    rows.append(
        {
            "benchmark": f"bf16 autocast / fp32, bare step (batch {b})",
            "ratio": bf16 / fp32,
            "goal": "< 0.9 makes 'auto' pick bf16",
            "ok": None,
            "detail": f"fp32 {fp32:.3f} s, bf16 {bf16:.3f} s per step",
        }
    )
    return rows
