"""Two-process DDP training on the CPU (Gloo), the way torchrun starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from meddiff.diffusion.checkpoint import load_model, load_training_state

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
train(Path({manifest!r}), Path({out!r}), model=tiny_model(), diffusion=DIFFUSION,
      training=tiny_training(steps=4, checkpoint_every=2, grad_accumulation=2, ema_decay=0.5, log_every=2),
      variant=VARIANT, seed=3, device="cpu")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_train_one_model(tmp_path, manifest):
    code = SCRIPT.format(tests=str(TESTS_DIR), manifest=str(manifest), out=str(tmp_path / "out"))
    port = str(free_port())
    processes = []
    for rank in range(2):
        env = dict(
            os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port
        )
        processes.append(
            subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        )
    logs = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], logs
    assert "process 1 of 2" in logs[1]
    assert list(pd.read_csv(tmp_path / "out" / "loss.csv")["step"]) == [2, 4]  # rank 0 alone writes
    loaded = load_model(tmp_path / "out" / "model", "cpu")
    assert loaded.info["world_size"] == 2 and loaded.info["steps"] == 4
    assert load_training_state(tmp_path / "out" / "last").step == 4
    assert all(torch.isfinite(v).all() for v in loaded.network.state_dict().values())
