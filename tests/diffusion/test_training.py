"""Training items and the training loop: determinism, condition dropout, loss log, model folder, EMA,
in-process resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from meddiff.diffusion.checkpoint import load_model, load_training_state
from meddiff.diffusion.training import train
from meddiff.diffusion.training_data import MultilevelTrainingDataset, StepBatchSampler, micro_batch_indices
from meddiff.diffusion.training_log import training_summary
from meddiff.errors import ConfigError, DatasetMissingError, WeightsMissingError
from meddiff.labels import NULL_LABEL, REGIONS

from training_fixtures import DIFFUSION, VARIANT, make_synthetic_cache, tiny_model, tiny_training


def dataset(manifest, **overrides):
    values = dict(
        patch_size=(16, 16, 16),
        multilevel=True,
        level_probabilities=(1 / 3, 1 / 3, 1 / 3),
        condition_dropout=0.0,
        seed=5,
    )
    values.update(overrides)
    return MultilevelTrainingDataset(manifest, **values)


def run(manifest, out_dir, continue_from=None, diffusion=DIFFUSION, **training):
    return train(
        manifest,
        out_dir,
        model=tiny_model(),
        diffusion=diffusion,
        training=tiny_training(**training),
        variant=VARIANT,
        seed=3,
        device="cpu",
        continue_from=continue_from,
    )


def same_items(a, b):
    return all(torch.equal(a[k], b[k]) for k in ("x0", "anatomy", "coords", "region", "level"))


# ------------------------------------------------------------------------------------------------ items


def test_item_depends_only_on_seed_and_index(manifest):
    first, second = dataset(manifest), dataset(manifest)
    assert same_items(first[17], second[17])
    assert same_items(first[17], first[17])
    assert not torch.equal(first[17]["x0"], first[18]["x0"])
    other_seed = dataset(manifest, seed=6)
    assert not all(same_items(other_seed[i], first[i]) for i in range(10))


def test_item_fields(manifest):
    item = dataset(manifest)[0]
    assert item["x0"].shape == (1, 16, 16, 16) and item["x0"].dtype == torch.float32
    assert item["anatomy"].shape == (16, 16, 16) and item["anatomy"].dtype == torch.int64
    assert item["coords"].shape == (3, 16, 16, 16)
    assert item["region"].dtype == torch.int64 and 0 <= int(item["region"]) < len(REGIONS)


def test_all_levels_and_regions_occur_and_baseline_uses_patches_only(manifest):
    items = [dataset(manifest)[i] for i in range(40)]
    assert {int(it["level"]) for it in items} == {0, 1, 2}
    assert {int(it["region"]) for it in items} == {0, 1, 2}
    baseline = dataset(manifest, multilevel=False)
    assert {int(baseline[i]["level"]) for i in range(15)} == {2}


def test_image_level_items_span_the_whole_volume_and_patches_a_sub_range(manifest):
    data = dataset(manifest)
    for i in range(40):
        item = data[i]
        lo, hi = item["coords"].amin(dim=(1, 2, 3)), item["coords"].amax(dim=(1, 2, 3))
        if int(item["level"]) == 0:
            assert torch.allclose(lo, torch.full((3,), -1.0)) and torch.allclose(hi, torch.ones(3))
        if int(item["level"]) == 2:  # synthetic volumes are >= 18 voxels: no padding at patch 16
            assert (lo >= -1).all() and (hi <= 1).all() and ((hi - lo) < 2).all()


def test_condition_dropout_replaces_the_anatomy_map_by_the_null_label(manifest):
    always = dataset(manifest, condition_dropout=1.0)
    never = dataset(manifest, condition_dropout=0.0)
    for i in range(5):
        assert (always[i]["anatomy"] == NULL_LABEL).all()
        assert not (never[i]["anatomy"] == NULL_LABEL).any()
        # dropout changes only the anatomy map, not which crop or box the item uses
        assert torch.equal(always[i]["x0"], never[i]["x0"])
    half = dataset(manifest, condition_dropout=0.5)
    dropped = [bool((half[i]["anatomy"] == NULL_LABEL).all()) for i in range(40)]
    assert 5 < sum(dropped) < 35


def test_micro_batches_of_steps_and_ranks_never_share_items():
    seen = []
    for step in range(4):
        for micro in range(3):
            for rank in range(2):
                seen += micro_batch_indices(step, micro, grad_accumulation=3, batch_size=2, world_size=2, rank=rank)
    assert sorted(seen) == list(range(4 * 3 * 2 * 2))


def test_resumed_sampler_continues_the_same_sequence():
    kwargs = dict(grad_accumulation=2, batch_size=1, world_size=1, rank=0)
    full = list(StepBatchSampler(0, 6, **kwargs))
    assert list(StepBatchSampler(0, 3, **kwargs)) + list(StepBatchSampler(3, 6, **kwargs)) == full
    assert len(StepBatchSampler(3, 6, **kwargs)) == 6


def test_worker_processes_produce_the_same_items(manifest):
    data = dataset(manifest)
    sampler = StepBatchSampler(0, 2, grad_accumulation=2, batch_size=2, world_size=1, rank=0)
    serial = list(DataLoader(data, batch_sampler=sampler, num_workers=0))
    parallel = list(DataLoader(data, batch_sampler=sampler, num_workers=2))
    assert len(serial) == 4
    assert all(same_items(a, b) for a, b in zip(serial, parallel))


def test_missing_manifest_and_missing_arrays_are_reported(tmp_path, manifest):
    with pytest.raises(DatasetMissingError, match="nowhere.csv"):
        dataset(tmp_path / "nowhere.csv")
    table = pd.read_csv(manifest)
    table.loc[0, "image"] = str(tmp_path / "gone.npy")
    table.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(DatasetMissingError, match="gone.npy"):
        dataset(tmp_path / "broken.csv")
    table["split"] = "test"
    table.to_csv(tmp_path / "no_train.csv", index=False)
    with pytest.raises(DatasetMissingError, match="no rows with split 'train'"):
        dataset(tmp_path / "no_train.csv")


# ------------------------------------------------------------------------------------------ training loop


def weights(path):
    return torch.load(path / "weights.pt", weights_only=True)


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_v_prediction_trains_on_v_and_the_model_folder_says_so(tmp_path, manifest, monkeypatch):
    import meddiff.diffusion.training as training_mod

    targets = []
    real_target = training_mod.training_target

    def spy(scheduler, x0, noise, timesteps):
        target = real_target(scheduler, x0, noise, timesteps)
        targets.append((target, x0, noise, scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)))
        return target

    monkeypatch.setattr(training_mod, "training_target", spy)
    diffusion = dataclasses.replace(DIFFUSION, prediction="v_prediction")
    model_dir = run(manifest, tmp_path / "out", steps=2, log_every=1, checkpoint_every=2, diffusion=diffusion)
    assert load_model(model_dir, "cpu").prediction == "v_prediction"
    assert len(targets) == 4  # 2 steps x 2 accumulated micro-batches
    for target, x0, noise, abar in targets:
        assert torch.allclose(target, abar.sqrt() * noise - (1 - abar).sqrt() * x0, atol=1e-6)


def test_training_writes_loss_log_model_folder_and_checkpoint(tmp_path, manifest):
    model_dir = run(manifest, tmp_path / "out", steps=6, log_every=2, checkpoint_every=3)
    assert model_dir == tmp_path / "out" / "model"
    log = pd.read_csv(tmp_path / "out" / "loss.csv")
    assert list(log.columns) == ["step", "loss", "lr", "it_per_s", "elapsed_s"]
    assert list(log["step"]) == [2, 4, 6]
    assert (log["loss"] > 0).all() and (log["lr"] == 1e-3).all() and log["elapsed_s"].is_monotonic_increasing

    loaded = load_model(model_dir, "cpu")
    assert loaded.info["steps"] == 6 and loaded.info["variant"] == dataclasses.asdict(VARIANT)
    assert loaded.num_train_timesteps == DIFFUSION.num_train_timesteps and loaded.schedule == "cosine"
    with torch.no_grad():
        eps = loaded.network(
            torch.zeros(1, 1, 16, 16, 16),
            torch.tensor([5]),
            torch.full((1, 16, 16, 16), NULL_LABEL),
            torch.tensor([1]),
            torch.zeros(1, 3, 16, 16, 16),
        )
    assert eps.shape == (1, 1, 16, 16, 16) and torch.isfinite(eps).all()

    state = load_training_state(tmp_path / "out" / "last")
    assert state.step == 6 and state.ema is None
    assert_same_tensors(state.network, weights(model_dir))  # no EMA: the model folder holds the raw weights

    # a finished run is not repeated
    stamp = (model_dir / "weights.pt").stat().st_mtime_ns
    assert run(manifest, tmp_path / "out", steps=6, log_every=2, checkpoint_every=3) == model_dir
    assert (model_dir / "weights.pt").stat().st_mtime_ns == stamp
    assert list(pd.read_csv(tmp_path / "out" / "loss.csv")["step"]) == [2, 4, 6]


def test_model_folder_holds_ema_weights_when_ema_is_on(tmp_path, manifest):
    model_dir = run(manifest, tmp_path / "out", steps=3, ema_decay=0.5)
    state = load_training_state(tmp_path / "out" / "last")
    ema = {k.removeprefix("module."): v for k, v in state.ema.items() if k.startswith("module.")}
    assert_same_tensors(ema, weights(model_dir))
    assert any(not torch.equal(state.network[k], ema[k]) for k in ema)
    assert json.loads((model_dir / "training.json").read_text())["ema"] is True


def test_resume_continues_bit_exactly(tmp_path, manifest):
    straight = run(manifest, tmp_path / "straight", steps=4, checkpoint_every=2, ema_decay=0.5)
    run(manifest, tmp_path / "pieces", steps=2, checkpoint_every=2, ema_decay=0.5)
    # rows a killed run wrote after its last checkpoint must not survive the resume
    with open(tmp_path / "pieces" / "loss.csv", "a") as log:
        log.write("3,9.9,0.001,1.0,1.0\n")
    pieces = run(manifest, tmp_path / "pieces", steps=4, checkpoint_every=2, ema_decay=0.5)
    assert_same_tensors(weights(straight), weights(pieces))
    a, b = load_training_state(tmp_path / "straight" / "last"), load_training_state(tmp_path / "pieces" / "last")
    assert_same_tensors(a.network, b.network)
    assert_same_tensors(a.ema, b.ema)
    log_a, log_b = pd.read_csv(tmp_path / "straight" / "loss.csv"), pd.read_csv(tmp_path / "pieces" / "loss.csv")
    assert list(log_b["step"]) == [1, 2, 3, 4]
    assert np.array_equal(log_a["loss"].to_numpy(), log_b["loss"].to_numpy())


def test_continuing_a_finished_run_in_a_new_folder_equals_one_longer_run(tmp_path, manifest):
    straight = run(manifest, tmp_path / "straight", steps=4, checkpoint_every=2, ema_decay=0.5)
    short = run(manifest, tmp_path / "short", steps=2, checkpoint_every=2, ema_decay=0.5)
    short_weights = weights(short)
    longer = run(manifest, tmp_path / "longer", continue_from=tmp_path / "short", steps=4, ema_decay=0.5)
    assert_same_tensors(weights(straight), weights(longer))
    assert_same_tensors(short_weights, weights(short))  # the source run is left as it was
    assert list(pd.read_csv(tmp_path / "longer" / "loss.csv")["step"]) == [1, 2, 3, 4]
    assert training_summary(tmp_path / "short")["steps"] == 2


def test_continuing_needs_a_finished_source_run_with_fewer_steps(tmp_path, manifest):
    with pytest.raises(WeightsMissingError, match="train that variant first"):
        run(manifest, tmp_path / "longer", continue_from=tmp_path / "missing", steps=4)
    run(manifest, tmp_path / "short", steps=4, checkpoint_every=2)
    with pytest.raises(ConfigError, match="more than the 3"):
        run(manifest, tmp_path / "fewer", continue_from=tmp_path / "short", steps=3)
    assert not (tmp_path / "fewer" / "last").exists()


def test_resume_refuses_a_checkpoint_of_another_architecture(tmp_path, manifest):
    run(manifest, tmp_path / "out", steps=2, checkpoint_every=2)
    (tmp_path / "out" / "model").rename(tmp_path / "out" / "old_model")
    with pytest.raises(ConfigError, match="different architecture"):
        train(
            manifest,
            tmp_path / "out",
            model=dataclasses.replace(tiny_model(), anatomy_embedding_dim=2),
            diffusion=DIFFUSION,
            training=tiny_training(steps=4),
            variant=VARIANT,
            seed=3,
            device="cpu",
        )


def test_training_summary(tmp_path):
    rows = [(s, 1.0 - 0.05 * s, 1e-4, 2.0, 0.5 * s) for s in range(1, 11)]
    pd.DataFrame(rows, columns=["step", "loss", "lr", "it_per_s", "elapsed_s"]).to_csv(
        tmp_path / "loss.csv", index=False
    )
    summary = training_summary(tmp_path)
    assert summary["steps"] == 10 and summary["wall_time_s"] == 5.0 and summary["window_rows"] == 2
    assert summary["first_window_loss"] == pytest.approx(0.925)
    assert summary["last_window_loss"] == pytest.approx(0.525)
    assert summary["loss_ratio"] < 1


def test_loss_falls_on_an_easy_dataset(tmp_path):
    manifest = make_synthetic_cache(tmp_path / "data")
    run(manifest, tmp_path / "out", steps=60, grad_accumulation=1, batch_size=2, log_every=1, checkpoint_every=60)
    summary = training_summary(tmp_path / "out")
    assert summary["steps"] == 60
    assert summary["last_window_loss"] < 0.8 * summary["first_window_loss"]
