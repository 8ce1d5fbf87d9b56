"""Tiny lesion cache + manifest and tiny lesion models for the lesion-task tests (imported by them; tests/tasks is
on sys.path as the folder of the test files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tiny_network import TINY_MODEL

from meddiff.config import SamplingConfig
from meddiff.diffusion.checkpoint import save_model
from meddiff.models.controlnet import ControlledMedDiff
from meddiff.models.mask_concat import MaskConcatUNet
from meddiff.models.network import MedDiffUNet

LIVER, BODY = 5, 118
SAMPLING = SamplingConfig(sampler="ddim", steps=2, overlap=0.5, patch_batch_size=16, blend="gaussian", precision="fp32")

# (case, region, split, shape, lesion centre or None); the healthy abdomen crop "hea1" is larger than the sources.
CROPS = (
    ("hea0", "abdomen", "test", (18, 16, 20), None),
    ("hea1", "abdomen", "test", (20, 18, 22), None),
    ("hea2", "chest", "test", (18, 16, 20), None),  # no chest lesion crop to borrow from
    ("les0", "abdomen", "test", (18, 16, 20), (8, 7, 9)),
    ("les1", "abdomen", "test", (18, 16, 20), (10, 8, 11)),
    ("les2", "abdomen", "train", (18, 16, 20), (9, 8, 10)),
    *((f"les{i}", "abdomen", "train", (18, 16, 20), (9, 8, 10)) for i in range(3, 10)),
)
# the lesion tasks use the paper's 80/20 split of the lesion cases (meddiff.data.manifest.lesion_split), not the
# split column: with this seed les0 and les1 are its test cases
LESION_SEED = 4


def make_lesion_cache(root: Path, seed: int = 0) -> Path:
    """Crops in the training-cache layout (image, label; lesion .npy for lesion crops) and a manifest.csv.

    Each crop: body (label 118, -0.2) on air (-1, label 0), a liver box (label 5, 0.4) in the middle; a lesion crop
    has a ball of radius 2 in the liver (mask value 1, image 0.8, the label stays liver). Returns the manifest path.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for case, region, split, shape, centre in CROPS:
        case_dir = root / "cache" / "synthetic" / case
        case_dir.mkdir(parents=True)
        label = np.zeros(shape, np.uint8)
        image = np.full(shape, -1.0, np.float32)
        body = tuple(slice(2, n - 2) for n in shape)
        label[body], image[body] = BODY, -0.2
        liver = tuple(slice(n // 2 - 5, n // 2 + 5) for n in shape)
        label[liver], image[liver] = LIVER, 0.4
        lesion_path = ""
        if centre is not None:
            grid = np.indices(shape)
            lesion = (sum((g - c) ** 2 for g, c in zip(grid, centre)) <= 4).astype(np.uint8)
            image[lesion > 0] = 0.8
            lesion_path = str(case_dir / f"{region}_lesion.npy")
            np.save(lesion_path, lesion)
        image += rng.normal(0, 0.02, shape).astype(np.float32)
        np.save(case_dir / f"{region}_image.npy", image)
        np.save(case_dir / f"{region}_label.npy", label)
        rows.append({"case": case, "dataset": "synthetic", "region": region, "split": split,
                     "shape": "x".join(map(str, shape)), "spacing_mm": "5x5x5",
                     "image": str(case_dir / f"{region}_image.npy"), "label": str(case_dir / f"{region}_label.npy"),
                     "lesion": lesion_path, "meta": ""})  # fmt: skip
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _randomise(module: torch.nn.Module, std: float) -> None:
    """Give zero-initialised layers (MONAI's output conv, ControlNet's zero convs) weights, as training would."""
    for p in module.parameters():
        torch.nn.init.normal_(p, std=std)


def save_controlnet(folder: Path, seed: int = 0) -> Path:
    """A tiny ControlledMedDiff (one lesion-mask channel) whose condition reaches the output, as a model folder."""
    torch.manual_seed(seed)
    base = MedDiffUNet(TINY_MODEL, "embedding")
    _randomise(base.unet.out, 0.1)
    net = ControlledMedDiff(base, control_channels=1)
    for zero_initialised in ("controlnet_cond_embedding.conv_out", "controlnet_down_blocks", "controlnet_mid_block"):
        _randomise(net.controlnet.get_submodule(zero_initialised), 0.05)
    return save_model(folder, net, num_train_timesteps=100, schedule="cosine", info={"variant": "lesion"},
                      prediction="epsilon")  # fmt: skip


def save_mask_concat(folder: Path, seed: int = 1) -> Path:
    """A tiny Med-DDPM-style network (lesion mask concatenated to x_t), saved as a model folder."""
    torch.manual_seed(seed)
    net = MaskConcatUNet(TINY_MODEL, "embedding", control_channels=1)
    _randomise(net.unet.out, 0.1)
    return save_model(folder, net, num_train_timesteps=100, schedule="cosine", info={"variant": "med-ddpm"},
                      prediction="epsilon")  # fmt: skip


def save_foundation(folder: Path) -> Path:
    """A tiny plain foundation network (no control input)."""
    torch.manual_seed(2)
    return save_model(folder, MedDiffUNet(TINY_MODEL, "embedding"), num_train_timesteps=100, schedule="cosine",
                      info={"variant": "full"}, prediction="epsilon")  # fmt: skip
