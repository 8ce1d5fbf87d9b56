"""Kill training with SIGKILL mid-run, resume it in a fresh process, and get the weights of an uninterrupted
run bit for bit (CPU, fixed seed, one thread).

Checkpoints every 3 steps, loss rows every 4: the loss window of row 8 spans the resume at step 6, so the
loss log also checks that the running window survives the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from meddiff.diffusion.checkpoint import load_training_state, training_state_step

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parents[1]

SCRIPT = """
import logging, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO)
sys.path[:0] = [{tests!r}, {tests!r} + "/.."]  # training_fixtures, tiny_network
from training_fixtures import DIFFUSION, VARIANT, tiny_model, tiny_training
from meddiff.diffusion.training import train
train(
    Path({manifest!r}),
    Path({out!r}),
    model=tiny_model(),
    diffusion=DIFFUSION,
    training=tiny_training(steps=12, checkpoint_every=3, grad_accumulation=2, ema_decay=0.5, log_every=4),
    variant=VARIANT,
    seed=3,
    device="cpu",
)
"""


def start_training(manifest: Path, out: Path) -> subprocess.Popen:
    code = SCRIPT.format(tests=str(TESTS_DIR), manifest=str(manifest), out=str(out))
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return stderr


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_training_killed_mid_run_resumes_to_the_uninterrupted_weights(tmp_path, manifest):
    straight = start_training(manifest, tmp_path / "straight")  # runs alongside (two cores, one thread each)
    killed = start_training(manifest, tmp_path / "killed")
    deadline = time.monotonic() + 600
    while (training_state_step(tmp_path / "killed" / "last") or 0) < 4:
        assert killed.poll() is None, killed.communicate()[1]
        assert time.monotonic() < deadline, "training never wrote a checkpoint past step 4"
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model").exists(), "the kill must land before training finished"
    killed_at = training_state_step(tmp_path / "killed" / "last")
    assert 4 <= killed_at < 12

    log = finish(start_training(manifest, tmp_path / "killed"))
    assert f"resuming from step {killed_at}" in log
    finish(straight)

    for name in ("model/weights.pt",):
        a = torch.load(tmp_path / "straight" / name, weights_only=True)
        b = torch.load(tmp_path / "killed" / name, weights_only=True)
        assert_same_tensors(a, b)
    a, b = load_training_state(tmp_path / "straight" / "last"), load_training_state(tmp_path / "killed" / "last")
    assert a.step == b.step == 12
    assert_same_tensors(a.network, b.network)
    assert_same_tensors(a.ema, b.ema)
    for sa, sb in zip(a.optimizer["state"].values(), b.optimizer["state"].values()):
        assert_same_tensors(sa, sb)

    log_a = pd.read_csv(tmp_path / "straight" / "loss.csv")
    log_b = pd.read_csv(tmp_path / "killed" / "loss.csv")
    assert list(log_b["step"]) == [4, 8, 12], "loss.csv must have each logged step once"
    assert np.array_equal(log_a["loss"].to_numpy(), log_b["loss"].to_numpy())
