"""The training manifest: one row per (case, region) crop of the preprocessed cache, with its train/val/test split.

The split is drawn per dataset at the **case** level (every region of a whole-body case shares one split, so no
anatomy leaks between splits), deterministically from the seed (paper 4.1.1: 90 % / 5 % / 5 %).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from meddiff.atomic import atomic_path, write_text
from meddiff.config import SplitConfig
from meddiff.errors import InputImageError
from meddiff.labels import REGIONS

COLUMNS = ["case", "dataset", "region", "split", "shape", "spacing_mm", "image", "label", "lesion", "meta"]


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def split_counts(n: int, split: SplitConfig) -> tuple[int, int, int]:
    """(n_train, n_val, n_test) for ``n`` cases.

    With n >= 3, val and test get ``max(1, round(fraction * n))`` each when their fraction is > 0 (at least one
    case stays in train when the train fraction is > 0); with fewer cases, plain rounding (usually all train).
    """

    def count(frac: float) -> int:
        if frac <= 0:
            return 0
        return max(1, _round_half_up(frac * n)) if n >= 3 else _round_half_up(frac * n)

    n_test, n_val = count(split.test), count(split.val)
    keep = 1 if split.train > 0 and n > 0 else 0
    while n_test + n_val > n - keep:
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def assign_splits(case_ids: list[str], split: SplitConfig, seed: int) -> dict[str, str]:
    """Case id -> "train" / "val" / "test": a ``numpy.random.default_rng(seed)`` permutation of the sorted ids;
    the first n_test are test, the next n_val val, the rest train."""
    cases = sorted(set(case_ids))
    _, n_val, n_test = split_counts(len(cases), split)
    order = np.random.default_rng(seed).permutation(len(cases))
    out = {}
    for rank, i in enumerate(order):
        out[cases[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


LESION_SPLIT = SplitConfig(train=0.8, val=0.0, test=0.2)  # the paper's split of each lesion dataset (4.1.1)


def lesion_split(manifest: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The crops that have a lesion mask, with a column ``lesion_split`` ("train" / "test"): the paper's 80/20
    split of each dataset's lesion cases (fine-tuning and the nnU-Net judge / generation and scoring), drawn like
    :func:`assign_splits` and independent of the pre-training split."""
    rows = manifest[manifest["lesion"] != ""].copy()
    split = {}
    for dataset, group in rows.groupby("dataset"):
        for case, s in assign_splits(list(group["case"]), LESION_SPLIT, seed).items():
            split[(dataset, case)] = s
    rows["lesion_split"] = [split[(d, c)] for d, c in zip(rows["dataset"], rows["case"])]
    return rows


def _rows_of_case(case_dir: Path) -> list[dict]:
    metas = sorted(case_dir.glob("*_meta.json"))
    if not metas:
        raise InputImageError(f"{case_dir}: no <region>_meta.json in this case folder (not a preprocessed cache?)")
    rows = []
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        region = meta["region"]
        lesion = case_dir / f"{region}_lesion.npy"
        rows.append(
            {
                "case": meta["case"],
                "dataset": meta["dataset"],
                "region": region,
                "shape": "x".join(str(s) for s in meta["shape"]),
                "spacing_mm": "x".join(f"{s:g}" for s in meta["spacing_mm"]),
                "image": str(case_dir / f"{region}_image.npy"),
                "label": str(case_dir / f"{region}_label.npy"),
                "lesion": str(lesion) if lesion.exists() else "",
                "meta": str(meta_path),
            }
        )
    return rows


def build_manifest(case_dirs: list[Path], split: SplitConfig, seed: int) -> pd.DataFrame:
    """One row per (case, region) of the cache folders ``case_dirs``, columns :data:`COLUMNS`.

    ``shape`` is "ZxYxX", ``spacing_mm`` "xxyxz"; ``lesion`` is empty when the case has no lesion mask.
    Splits are assigned per dataset with :func:`assign_splits`; rows are sorted by dataset, case, region.
    """
    rows = [row for d in case_dirs for row in _rows_of_case(Path(d))]
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "split"])
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    splits = {}
    for dataset, group in df.groupby("dataset"):
        for case, s in assign_splits(list(group["case"]), split, seed).items():
            splits[(dataset, case)] = s
    df["split"] = [splits[(d, c)] for d, c in zip(df["dataset"], df["case"])]
    df["_order"] = df["region"].map({r: i for i, r in enumerate(REGIONS)})
    df = df.sort_values(["dataset", "case", "_order"]).drop(columns="_order").reset_index(drop=True)
    return df[COLUMNS]


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write the manifest as CSV (atomically) and a Markdown twin beside it (``path`` with suffix ``.md``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    write_text(path.with_suffix(".md"), df.to_markdown(index=False) + "\n")


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV written by :func:`write_manifest` (empty lesion cells stay empty strings)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def evaluation_crops(manifest: pd.DataFrame, per_region: int = 0) -> pd.DataFrame:
    """Test-split crops in a stable order (dataset, case, region); with ``per_region`` > 0 only the first
    ``per_region`` crops of each region (the demo keeps its CPU sampling time bounded this way)."""
    rows = manifest[manifest["split"] == "test"].sort_values(["dataset", "case", "region"])
    if per_region:
        rows = rows.groupby("region", sort=False).head(per_region)
    return rows.sort_values(["dataset", "case", "region"])
