"""ControlNet fine-tuning (paper 3.3, eq. 4): the foundation stays frozen, the ControlNet learns, resume is exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from meddiff.diffusion.checkpoint import load_model
from meddiff.diffusion.training import FineTuning, finetune, train
from meddiff.diffusion.training_data import MultilevelTrainingDataset
from meddiff.errors import DatasetMissingError
from meddiff.models.controlnet import ControlledMedDiff
from meddiff.models.mask_concat import MaskConcatUNet
from training_fixtures import DIFFUSION, VARIANT, tiny_model, tiny_training


@pytest.fixture
def foundation(tmp_path, manifest):
    return train(manifest, tmp_path / "foundation", model=tiny_model(), diffusion=DIFFUSION,
                 training=tiny_training(steps=2), variant=VARIANT, seed=1, device="cpu")  # fmt: skip


def _finetune(manifest, out, foundation, steps, condition="sr"):
    tuning = FineTuning(foundation=foundation, condition=condition, thick_factor=3 if condition == "sr" else None)
    training = tiny_training(steps=steps, checkpoint_every=2, ema_decay=0.5, lr=1e-2)
    return finetune(manifest, out, tuning=tuning, training=training, seed=4, device="cpu")


def test_fine_tuning_changes_the_controlnet_only(tmp_path, manifest, foundation):
    model = load_model(_finetune(manifest, tmp_path / "sr", foundation, steps=3), "cpu")
    assert isinstance(model.network, ControlledMedDiff)
    assert model.info["finetune"]["condition"] == "sr" and model.info["steps"] == 3
    base = load_model(foundation, "cpu").network.state_dict()
    for key, value in model.network.base.state_dict().items():
        assert torch.equal(value, base[key]), f"foundation weight {key} changed"
    zero_convs = [v for k, v in model.network.controlnet.state_dict().items() if k.startswith("controlnet_mid_block")]
    assert any(v.abs().max() > 0 for v in zero_convs), "the zero convolutions never left zero: nothing was learnt"


def test_fine_tuning_resumed_from_its_checkpoint_gives_the_uninterrupted_weights(tmp_path, manifest, foundation):
    straight = torch.load(_finetune(manifest, tmp_path / "a", foundation, steps=4) / "weights.pt", weights_only=True)
    _finetune(manifest, tmp_path / "b", foundation, steps=2)  # stops after its step-2 checkpoint, like a kill there
    resumed = torch.load(_finetune(manifest, tmp_path / "b", foundation, steps=4) / "weights.pt", weights_only=True)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_lesion_condition_uses_lesion_crops_only(tmp_path, manifest):
    with pytest.raises(DatasetMissingError, match="lesion mask"):
        MultilevelTrainingDataset(manifest, patch_size=(16, 16, 16), multilevel=False, level_probabilities=(0, 0, 1),
                                  condition_dropout=0.0, seed=0, condition="lesion")  # fmt: skip
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    image = np.load(table.loc[1, "image"])
    lesion = np.zeros(image.shape, np.uint8)
    lesion[5:12, 5:12, 5:12] = 1
    np.save(tmp_path / "lesion.npy", lesion)
    table.loc[1, "lesion"] = str(tmp_path / "lesion.npy")
    table.to_csv(manifest, index=False)
    data = MultilevelTrainingDataset(manifest, patch_size=(16, 16, 16), multilevel=False,
                                     level_probabilities=(0, 0, 1), condition_dropout=0.0, seed=0,
                                     condition="lesion")  # fmt: skip
    assert data.num_crops == 1
    items = [data[i] for i in range(4)]
    assert all(item["control"].shape == (1, 16, 16, 16) for item in items)
    assert any(item["control"].sum() > 0 for item in items)


def test_sr_condition_is_the_thick_slice_version_of_the_patch(manifest):
    data = MultilevelTrainingDataset(manifest, patch_size=(16, 16, 16), multilevel=False,
                                     level_probabilities=(0, 0, 1), condition_dropout=0.0, seed=0, condition="sr",
                                     thick_factor=4)  # fmt: skip
    item = data[0]
    x0, control = item["x0"][0].numpy(), item["control"][0].numpy()
    slabs = x0.reshape(4, 4, 16, 16).mean(axis=1)  # thick slices of 4 thin ones, centred at 1.5, 5.5, 9.5, 13.5
    np.testing.assert_allclose(control[0], slabs[0], atol=1e-6)  # before the first centre: the first thick slice
    np.testing.assert_allclose(control[15], slabs[3], atol=1e-6)
    np.testing.assert_allclose(control[7], 0.625 * slabs[1] + 0.375 * slabs[2], atol=1e-6)  # 7 = 5.5 + 1.5 of 4
    assert not np.allclose(control, x0, atol=1e-3)


@pytest.mark.parametrize("start, kind", [("scratch", ControlledMedDiff), ("mask_concat", MaskConcatUNet)])
def test_table8_models_trained_from_scratch_train_every_weight(tmp_path, manifest, foundation, start, kind):
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    lesion = np.zeros(np.load(table.loc[0, "image"]).shape, np.uint8)
    lesion[6:12, 6:12, 6:12] = 1
    np.save(tmp_path / "lesion.npy", lesion)
    table.loc[0, "lesion"] = str(tmp_path / "lesion.npy")
    table.to_csv(manifest, index=False)
    tuning = FineTuning(foundation=foundation, condition="lesion", thick_factor=None, start=start)
    training = tiny_training(steps=2, checkpoint_every=2, ema_decay=0.0, lr=1e-2)
    first = tiny_training(steps=1, checkpoint_every=1, ema_decay=0.0, lr=1e-2)
    initial = load_model(finetune(manifest, tmp_path / "one", tuning=tuning, training=first, seed=4, device="cpu"), "cpu")
    model = load_model(finetune(manifest, tmp_path / "two", tuning=tuning, training=training, seed=4, device="cpu"), "cpu")
    assert type(model.network) is kind
    before, after = initial.network.state_dict(), model.network.state_dict()
    trained = [k for k in after if not torch.equal(before[k], after[k])]
    foundation_part = [k for k in trained if k.startswith(("base.", "unet."))]
    assert foundation_part, "the network under the condition must train too when starting from scratch"
