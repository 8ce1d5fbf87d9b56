"""Tiny synthetic training cache + manifest and tiny configs for the diffusion tests (imported by them and by
the training subprocess of test_resume.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tiny_network import TINY_MODEL

from meddiff.config import DiffusionConfig, ModelConfig, TrainingConfig, Variant

REGION_OF_CASE = ("han", "chest", "abdomen")


def make_synthetic_cache(root: Path, shapes=((20, 22, 18), (18, 20, 24), (21, 19, 20)), seed: int = 0) -> Path:
    """Write a few small volumes in the training-cache layout and a manifest.csv listing them as train rows
    (plus one val row that training must ignore). Each volume: a bright box (label 5) inside a body
    (label 118) on air (-1, label 0), with a little noise; returns the manifest path."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, shape in enumerate(shapes):
        region = REGION_OF_CASE[i % 3]
        case_dir = root / "cache" / "synthetic" / f"case{i}"
        case_dir.mkdir(parents=True)
        label = np.zeros(shape, np.uint8)
        image = np.full(shape, -1.0, np.float32)
        body = tuple(slice(2, n - 2) for n in shape)
        label[body], image[body] = 118, -0.2
        box = tuple(slice(n // 3, 2 * n // 3) for n in shape)
        label[box], image[box] = 5, 0.6
        image += rng.normal(0, 0.02, shape).astype(np.float32)
        np.save(case_dir / f"{region}_image.npy", image)
        np.save(case_dir / f"{region}_label.npy", label)
        rows.append(
            {
                "case": f"case{i}",
                "dataset": "synthetic",
                "region": region,
                "split": "train",
                "shape": str(list(shape)),
                "spacing_mm": "[5, 5, 5]",
                "image": str(case_dir / f"{region}_image.npy"),
                "label": str(case_dir / f"{region}_label.npy"),
                "lesion": "",
                "meta": "",
            }
        )
    val = dict(rows[0], case="val0", split="val", image=str(root / "missing_image.npy"))
    manifest = root / "manifest.csv"
    pd.DataFrame(rows + [val]).to_csv(manifest, index=False)
    return manifest


def tiny_model() -> ModelConfig:
    return TINY_MODEL


def tiny_training(**overrides) -> TrainingConfig:
    values = dict(
        steps=6,
        foundation_steps=None,
        lr=1e-3,
        batch_size=1,
        grad_accumulation=2,
        level_probabilities=(1 / 3, 1 / 3, 1 / 3),
        ema_decay=0.0,
        condition_dropout=0.0,
        checkpoint_every=3,
        log_every=1,
        precision="fp32",
        num_workers=0,
    )
    values.update(overrides)
    return TrainingConfig(**values)


DIFFUSION = DiffusionConfig(num_train_timesteps=100, schedule="cosine", prediction="epsilon")
VARIANT = Variant(name="full", label="MedDiff-FM", multilevel=True, position="embedding")
