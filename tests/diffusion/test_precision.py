"""training.precision / sampling.precision: 'auto' picks whichever precision times faster (injected timings),
forced values are kept, and the choice survives its JSON file and a resumed training run."""

from __future__ import annotations

import json

import pytest
import torch

from training_fixtures import DIFFUSION, VARIANT, make_synthetic_cache, tiny_model, tiny_training

from meddiff.diffusion import precision as precision_module
from meddiff.diffusion.precision import (
    PrecisionChoice,
    choose_precision,
    pick_precision,
    read_choice,
    write_choices,
)
from meddiff.diffusion.training import train
from meddiff.errors import ConfigError


@pytest.fixture
def fake_clock(monkeypatch):
    """Replace the probe's clock by the seconds each fake call reports: ``calls`` records (what, precision)."""
    state = {"now": 0.0}
    monkeypatch.setattr(precision_module.time, "perf_counter", lambda: state["now"])

    def work(seconds: dict[str, float], calls: list, what: str):
        def run(precision: str) -> None:
            calls.append((what, precision))
            state["now"] += seconds[precision]

        return run

    return work


def test_pick_precision_needs_bf16_clearly_faster():
    assert pick_precision({"fp32": 1.0, "bf16": 0.5}) == "bf16"
    assert pick_precision({"fp32": 1.0, "bf16": 0.95}) == "fp32"  # a tie within noise stays fp32
    assert pick_precision({"fp32": 1.0, "bf16": 18.0}) == "fp32"
    assert pick_precision({"fp32": 1.0}) == "fp32"


def test_auto_picks_bf16_when_it_times_faster(fake_clock):
    calls = []
    run = fake_clock({"fp32": 2.0, "bf16": 0.5}, calls, "step")
    screen = fake_clock({"fp32": 0.125, "bf16": 0.0625}, calls, "screen")
    choice = choose_precision("auto", run, "cpu", screen=screen, repeats=3)
    assert choice.chosen == "bf16"
    assert choice.seconds == {"fp32": 2.0, "bf16": 0.5}
    assert calls.count(("step", "bf16")) == 4  # warm-up + 3 timed


def test_auto_picks_fp32_when_bf16_times_slower(fake_clock):
    calls = []
    run = fake_clock({"fp32": 1.0, "bf16": 1.5}, calls, "step")
    screen = fake_clock({"fp32": 0.125, "bf16": 0.25}, calls, "screen")  # within the screen's tolerance
    choice = choose_precision("auto", run, "cpu", screen=screen)
    assert choice.chosen == "fp32"
    assert choice.seconds == {"fp32": 1.0, "bf16": 1.5}
    assert "1.50" in choice.reason


def test_emulated_bf16_is_rejected_by_the_screen_without_timing_the_network(fake_clock):
    calls = []
    run = fake_clock({"fp32": 1.0, "bf16": 30.0}, calls, "step")
    screen = fake_clock({"fp32": 0.0625, "bf16": 2.0}, calls, "screen")
    choice = choose_precision("auto", run, "cpu", screen=screen)
    assert choice.chosen == "fp32"
    assert ("step", "bf16") not in calls and ("step", "fp32") not in calls
    assert "emulated" in choice.reason and choice.seconds == {"fp32 screen": 0.0625, "bf16 screen": 2.0}


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_forced_precision_is_kept_without_timing(forced, fake_clock):
    calls = []
    choice = choose_precision(forced, fake_clock({"fp32": 1.0, "bf16": 0.1}, calls, "step"), "cpu")
    assert choice.chosen == forced and calls == [] and choice.reason == "set in the config"


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="fp16"):
        choose_precision("fp16", lambda p: None, "cpu")


def test_choices_round_trip_through_their_file(tmp_path):
    choices = {
        "training": PrecisionChoice("auto", "fp32", "why", {"fp32": 1.0}, "cpu (AVX2)"),
        "sampling": PrecisionChoice("bf16", "bf16", "set in the config"),
    }
    path = tmp_path / "precision.json"
    write_choices(path, choices)
    assert read_choice(path, "training") == choices["training"]
    assert read_choice(path, "sampling") == choices["sampling"]
    with pytest.raises(ConfigError, match="not found"):
        read_choice(tmp_path / "missing.json", "training")
    path.write_text(json.dumps({"training": {"requested": "auto", "chosen": "fp16"}}))
    with pytest.raises(ConfigError, match="not a precision probe"):
        read_choice(path, "training")


def test_real_probe_of_a_tiny_network_returns_a_timed_choice():
    from meddiff.diffusion.schedule import make_scheduler
    from meddiff.diffusion.training import probe_training_precision
    from meddiff.models.network import MedDiffUNet

    network = MedDiffUNet(tiny_model(), "embedding")
    before = {k: v.clone() for k, v in network.state_dict().items()}
    scheduler = make_scheduler(DIFFUSION.num_train_timesteps, DIFFUSION.schedule, DIFFUSION.prediction)
    training = tiny_training(precision="auto")
    choice = probe_training_precision(network, scheduler, training.precision, training.batch_size, "cpu")
    assert choice.chosen in ("fp32", "bf16") and choice.seconds and choice.device.startswith("cpu (")
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())  # probed on a copy


def test_training_records_its_precision_and_keeps_it_on_resume(tmp_path, caplog):
    manifest = make_synthetic_cache(tmp_path)
    given = PrecisionChoice("auto", "fp32", "injected for the test", {"fp32": 1.0, "bf16": 2.0}, "cpu (test)")
    run = dict(manifest=manifest, model=tiny_model(), diffusion=DIFFUSION, variant=VARIANT, seed=0, device="cpu")
    train(out_dir=tmp_path / "run", training=tiny_training(steps=3), precision=given, **run)
    info = json.loads((tmp_path / "run" / "model" / "training.json").read_text())
    assert PrecisionChoice.from_dict(info["precision"]) == given
    assert info["samples"] == 3 * 1 * 2  # steps x batch x accumulation
    # resumed to more steps with a different probe result: the checkpoint's precision wins (exact resume)
    other = PrecisionChoice("auto", "bf16", "a later probe", {"fp32": 2.0, "bf16": 1.0}, "cpu (test)")
    (tmp_path / "run" / "model").rename(tmp_path / "run" / "model.old")
    train(out_dir=tmp_path / "run", training=tiny_training(steps=4), precision=other, **run)
    info = json.loads((tmp_path / "run" / "model" / "training.json").read_text())
    assert info["precision"]["chosen"] == "fp32"
    assert "keeping the checkpoint's precision fp32" in caplog.text
