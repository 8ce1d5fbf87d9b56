"""Model folders and resume checkpoints: round trips, weights_only loading, atomicity under SIGKILL."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import time

import numpy as np
import pytest
import torch

from meddiff.diffusion.checkpoint import (
    capture_rng_states,
    find_training_state,
    load_model,
    load_training_state,
    restore_rng_states,
    save_model,
    save_training_state,
    training_state_step,
)
from meddiff.diffusion.training import make_ema
from meddiff.errors import WeightsMissingError
from meddiff.models.network import MedDiffUNet

from training_fixtures import tiny_model


def network_inputs(seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 16, 16, 16)
    return (
        torch.randn(batch, 1, *shape[1:], generator=g),
        torch.randint(0, 100, (batch,), generator=g),
        torch.randint(0, 120, shape, generator=g),
        torch.randint(0, 3, (batch,), generator=g),
        torch.rand(batch, 3, *shape[1:], generator=g) * 2 - 1,
    )


def test_model_folder_round_trip_rebuilds_the_same_network(tmp_path):
    torch.manual_seed(0)
    network = MedDiffUNet(tiny_model(), "embedding").eval()
    save_model(tmp_path / "model", network, num_train_timesteps=100, schedule="cosine", info={"steps": 7, "seed": 3},
               prediction="epsilon")  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == sorted(
        ["architecture.json", "diffusion.json", "weights.pt", "training.json"]
    )
    loaded = load_model(tmp_path / "model", "cpu")
    assert loaded.num_train_timesteps == 100 and loaded.schedule == "cosine" and loaded.prediction == "epsilon"
    assert loaded.info == {"steps": 7, "seed": 3}
    assert not loaded.network.training
    with torch.no_grad():
        assert torch.equal(network(*network_inputs()), loaded.network(*network_inputs()))
    # weights.pt is a plain state dict: loadable with weights_only
    torch.load(tmp_path / "model" / "weights.pt", weights_only=True)


def test_model_folder_records_the_prediction_type_and_older_folders_mean_epsilon(tmp_path):
    network = MedDiffUNet(tiny_model(), "none")
    save_model(tmp_path / "v", network, num_train_timesteps=10, schedule="cosine", info={}, prediction="v_prediction")
    assert load_model(tmp_path / "v", "cpu").prediction == "v_prediction"
    save_model(tmp_path / "old", network, num_train_timesteps=10, schedule="cosine", info={}, prediction="epsilon")
    (tmp_path / "old" / "diffusion.json").write_text('{"num_train_timesteps": 10, "schedule": "cosine"}')
    assert load_model(tmp_path / "old", "cpu").prediction == "epsilon"


def test_load_model_names_the_folder_when_incomplete(tmp_path):
    torch.manual_seed(0)
    save_model(
        tmp_path / "model", MedDiffUNet(tiny_model(), "none"), num_train_timesteps=10, schedule="cosine", info={},
        prediction="epsilon",
    )
    (tmp_path / "model" / "weights.pt").unlink()
    with pytest.raises(WeightsMissingError, match="model.*weights.pt"):
        load_model(tmp_path / "model", "cpu")
    with pytest.raises(WeightsMissingError, match="nowhere"):
        load_model(tmp_path / "nowhere", "cpu")


def trained_pieces(ema_decay=0.9):
    torch.manual_seed(0)
    network = MedDiffUNet(tiny_model(), "coords")
    ema = make_ema(network, ema_decay)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        network(*network_inputs()).abs().mean().backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(network)
    return network, ema, optimizer


def test_training_state_round_trip(tmp_path):
    network, ema, optimizer = trained_pieces()
    save_training_state(
        tmp_path / "last",
        network=network,
        ema=ema,
        optimizer=optimizer,
        step=2,
        elapsed_s=5.5,
        extra={"window_sum": 1.25, "architecture": "x"},
    )
    assert training_state_step(tmp_path / "last") == 2
    state = load_training_state(tmp_path / "last")
    assert state.step == 2 and state.elapsed_s == 5.5 and state.extra == {"window_sum": 1.25, "architecture": "x"}

    torch.manual_seed(1)
    fresh = MedDiffUNet(tiny_model(), "coords")
    fresh_ema = make_ema(fresh, 0.9)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh.load_state_dict(state.network)
    fresh_ema.load_state_dict(state.ema)
    fresh_optimizer.load_state_dict(state.optimizer)
    for a, b in zip(network.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(ema.state_dict().values(), fresh_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh_ema.n_averaged.item() == 2
    moments = [s["exp_avg"] for s in optimizer.state_dict()["state"].values()]
    restored = [s["exp_avg"] for s in fresh_optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, restored))


def test_training_state_without_ema(tmp_path):
    network, ema, optimizer = trained_pieces(ema_decay=0.0)
    assert ema is None
    save_training_state(tmp_path / "last", network=network, ema=None, optimizer=optimizer, step=1)
    assert load_training_state(tmp_path / "last").ema is None


def test_rng_states_restore_every_generator():
    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    states = capture_rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    restore_rng_states(states)
    got = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2:] == got[2:]


def test_missing_checkpoint_is_none(tmp_path):
    assert load_training_state(tmp_path / "last") is None
    assert training_state_step(tmp_path / "last") is None


def test_falls_back_to_the_old_state_when_killed_between_the_two_renames(tmp_path):
    network, ema, optimizer = trained_pieces()
    save_training_state(tmp_path / "last", network=network, ema=ema, optimizer=optimizer, step=4)
    # atomic_dir renames last -> .last.old, then the new temp folder -> last; a kill in between leaves:
    os.replace(tmp_path / "last", tmp_path / ".last.old")
    (tmp_path / ".last.abc.part").mkdir()
    assert find_training_state(tmp_path / "last") == tmp_path / ".last.old"
    assert load_training_state(tmp_path / "last").step == 4
    # once last exists again, a leftover .last.old is ignored
    save_training_state(tmp_path / "last", network=network, ema=ema, optimizer=optimizer, step=5)
    assert load_training_state(tmp_path / "last").step == 5


class _Big(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.from_numpy(np.zeros(3_000_000, np.float32)))


def _save_forever(folder: str) -> None:
    """Forked child: rewrite the checkpoint with step k and all weights == k, forever.

    Tensors are built with numpy: after fork, torch's intra-op (OpenMP) pool of the parent would
    deadlock any parallel torch kernel in the child; torch.save itself runs none.
    """
    module = _Big()
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    step = 0
    while True:
        step += 1
        module.weight.data = torch.from_numpy(np.full(3_000_000, step, np.float32))
        save_training_state(folder, network=module, ema=None, optimizer=optimizer, step=step, extra={"mark": step})


def test_sigkill_during_checkpointing_never_leaves_a_half_written_state(tmp_path):
    folder = tmp_path / "last"
    context = multiprocessing.get_context("fork")
    for round_ in range(4):
        child = context.Process(target=_save_forever, args=(str(folder),))
        child.start()
        deadline = time.monotonic() + 60
        # wait until a write is in flight (temporary folder present) after at least one complete state
        while time.monotonic() < deadline:
            if training_state_step(folder) is not None and any(tmp_path.glob(".last.*.part")):
                break
            time.sleep(0.001)
        time.sleep(random.Random(round_).uniform(0, 0.05))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        state = load_training_state(folder)
        assert state is not None, f"round {round_}: no loadable checkpoint after the kill"
        assert state.extra == {"mark": state.step}
        assert json.loads((find_training_state(folder) / "state.json").read_text())["step"] == state.step
        assert (state.network["weight"].numpy() == state.step).all()
        for leftover in tmp_path.glob(".last.*.part"):
            shutil.rmtree(leftover)
