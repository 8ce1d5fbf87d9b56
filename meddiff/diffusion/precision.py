"""Numeric precision of the network (``training.precision``, ``sampling.precision``): fp32, bf16 autocast, or
``auto`` = whichever times faster on this machine.

Why measure instead of picking: bf16 is fast only where the hardware has it. On a CPU with AVX512-BF16 or AMX
a bf16-autocast training step of the demo network is ~5x faster than fp32; on an AVX2-only CPU PyTorch
emulates bf16 and the same step is ~18-35x *slower* (measured, README "Speed"). On CUDA devices with native
bf16 (Ampere and newer) bf16 is the known-good choice and the probe is skipped.

The probe times the real step on the real network, input size and device: first one warm-up call of each
precision (first calls create kernels), then ``repeats`` timed calls; the median counts. Before that a screen
(:func:`conv_screen`: one 3D convolution of the network's first level, forward and backward, ~0.1 s) rejects
bf16 when it is more than :data:`CONCLUSIVE_RATIO` times slower than fp32 there: an emulated bf16 step of the
demo network costs over a minute on an AVX2 CPU (measured), which would make the probe cost more than it saves.
bf16 is chosen only when it is at least ``1 / BF16_MARGIN`` times faster than fp32, so noise never flips a tie
to the precision that can cost accuracy.

The result is a :class:`PrecisionChoice`, written by ``meddiff probe-precision`` as JSON (one probe per run,
rule ``probe_precision``) and recorded in every model folder and table provenance.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from meddiff.atomic import write_text
from meddiff.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
REQUESTS = ("auto", *PRECISIONS)
BF16_MARGIN = 0.9
"""bf16 must take at most this fraction of fp32's time to be chosen."""
CONCLUSIVE_RATIO = 3.0
"""bf16 / fp32 time of the :func:`conv_screen` above which bf16 is rejected without timing the network."""


def cpu_capability() -> str:
    """PyTorch's CPU kernel level ("AVX2", "AVX512", ...), as the README and tables quote it."""
    return str(torch.backends.cpu.get_cpu_capability())


@dataclass(frozen=True)
class PrecisionChoice:
    """What was asked, what is used and why.

    Attributes:
        requested: "auto", "fp32" or "bf16".
        chosen: "fp32" or "bf16".
        reason: one line for logs and provenance.
        seconds: measured seconds per call by precision ("fp32", "bf16"; "fp32 screen", "bf16 screen" when
            the screen rejected bf16); empty when nothing was timed.
        device: e.g. "cpu (AVX2)" or "cuda (NVIDIA A100)".
    """

    requested: str
    chosen: str
    reason: str
    seconds: dict[str, float] = field(default_factory=dict)
    device: str = ""

    def summary(self) -> str:
        timed = ", ".join(f"{k} {v:.3g} s" for k, v in self.seconds.items())
        return f"{self.chosen} ({self.requested}; {self.reason}{'; ' + timed if timed else ''}; {self.device})"

    @classmethod
    def from_dict(cls, data: Mapping) -> PrecisionChoice:
        choice = cls(
            requested=str(data["requested"]),
            chosen=str(data["chosen"]),
            reason=str(data.get("reason", "")),
            seconds={str(k): float(v) for k, v in dict(data.get("seconds", {})).items()},
            device=str(data.get("device", "")),
        )
        check_precision(choice.chosen, allow_auto=False)
        return choice


def check_precision(value: str, *, allow_auto: bool = True, key: str = "precision") -> str:
    allowed = REQUESTS if allow_auto else PRECISIONS
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")
    return value


def autocast(precision: str, device: torch.device | str):
    """Autocast context of ``precision`` ("bf16" -> bfloat16 autocast, "fp32" -> nothing) on ``device``."""
    device = torch.device(device)
    if check_precision(precision, allow_auto=False) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def pick_precision(seconds: Mapping[str, float]) -> str:
    """"bf16" when its time is at most :data:`BF16_MARGIN` of fp32's, else "fp32" (also when bf16 is untimed)."""
    fp32, bf16 = seconds.get("fp32"), seconds.get("bf16")
    if fp32 is None:
        raise ValueError(f"fp32 time missing from {dict(seconds)}")
    return "bf16" if bf16 is not None and bf16 <= BF16_MARGIN * fp32 else "fp32"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    native = "native bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no native bf16"
    return f"{device.type} ({cpu_capability()}, {native})"


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def conv_screen(channels: int, spatial: tuple[int, ...], batch: int, device: torch.device | str) -> Callable[[str], None]:
    """``screen(precision)`` for :func:`choose_precision`: forward and backward of one 3x3x3 convolution with
    ``channels`` in and out on a (batch, channels, *spatial) input, the shape of a network's first level."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1).to(device)
    x = torch.randn((batch, channels, *spatial), generator=g).to(device).requires_grad_(True)

    def screen(precision: str) -> None:
        with autocast(precision, device):
            out = conv(x)
        out.float().sum().backward()

    return screen


def choose_precision(
    requested: str,
    run_once: Callable[[str], None],
    device: torch.device | str,
    *,
    screen: Callable[[str], None] | None = None,
    repeats: int = 2,
    what: str = "step",
) -> PrecisionChoice:
    """Resolve ``requested`` ("auto" | "fp32" | "bf16") by timing ``run_once(precision)``.

    Args:
        requested: the config value.
        run_once: does one call of the work to time in the given precision (a training step, a window batch).
        device: where it runs.
        screen: a cheap call (:func:`conv_screen`) timed first (warm-up + 1) in both precisions; bf16 more than
            :data:`CONCLUSIVE_RATIO` times slower there is rejected without calling ``run_once`` in bf16.
        repeats: timed calls per precision after the warm-up.
        what: noun for the log ("training step", "sampling batch").
    """
    device = torch.device(device)
    name = _device_name(device)
    if check_precision(requested) != "auto":
        return PrecisionChoice(requested, requested, "set in the config", device=name)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return PrecisionChoice(requested, "bf16", "CUDA device with native bf16, probe skipped", device=name)
    if screen is not None:
        for p in PRECISIONS:
            screen(p)  # warm-up
        screened = {p: _timed(lambda p=p: screen(p), device) for p in PRECISIONS}
        if screened["bf16"] > CONCLUSIVE_RATIO * screened["fp32"]:
            seconds = {f"{p} screen": screened[p] for p in PRECISIONS}
            reason = f"bf16 {screened['bf16'] / screened['fp32']:.0f}x slower than fp32 on a 3D convolution (emulated bf16)"
            choice = PrecisionChoice(requested, "fp32", reason, seconds, name)
            log.info("precision of the %s: %s", what, choice.summary())
            return choice
    for p in PRECISIONS:
        run_once(p)  # warm-up: first calls create kernels
    seconds = {p: statistics.median(_timed(lambda p=p: run_once(p), device) for _ in range(repeats)) for p in PRECISIONS}
    reason = f"bf16/fp32 time ratio {seconds['bf16'] / seconds['fp32']:.2f} per {what}"
    choice = PrecisionChoice(requested, pick_precision(seconds), reason, seconds, name)
    log.info("precision of the %s: %s", what, choice.summary())
    return choice


def training_step_fn(network: torch.nn.Module, batch: Mapping[str, torch.Tensor], device: torch.device, loss_fn):
    """``run_once(precision)`` for :func:`choose_precision`: one forward/backward/Adam step of a *copy* of
    ``network`` on ``batch`` (the real network and its optimizer are untouched, so probing changes no result).

    ``loss_fn(network, batch, precision) -> loss`` computes the training loss.
    """
    probe = copy.deepcopy(network).to(device).train()
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-6)

    def run_once(precision: str) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(probe, batch, precision).backward()
        optimizer.step()

    return run_once


def forward_fn(network: torch.nn.Module, inputs: tuple, device: torch.device):
    """``run_once(precision)`` for :func:`choose_precision`: one no-grad forward of ``network(*inputs)``."""

    def run_once(precision: str) -> None:
        with torch.inference_mode(), autocast(precision, device):
            network(*inputs)

    return run_once


def write_choices(path: Path, choices: Mapping[str, PrecisionChoice]) -> None:
    """Write ``{"training": {...}, "sampling": {...}}`` atomically."""
    write_text(path, json.dumps({k: asdict(v) for k, v in choices.items()}, indent=2) + "\n")


def read_choice(path: Path, key: str) -> PrecisionChoice:
    """The ``key`` ("training" | "sampling") choice of a file from :func:`write_choices`.

    Raises:
        ConfigError: the file is missing, unreadable or lacks the key.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return PrecisionChoice.from_dict(data[key])
    except FileNotFoundError:
        raise ConfigError(f"{path}: precision probe not found; run `meddiff probe-precision` first") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ConfigError) as err:
        raise ConfigError(f"{path}: not a precision probe with a {key!r} entry ({err})") from None
