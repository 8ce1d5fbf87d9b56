"""Manifest of cached crops and the case-level train/val/test split."""

from __future__ import annotations

import json

import pytest

from meddiff.config import SplitConfig
from meddiff.data.manifest import COLUMNS, assign_splits, build_manifest, read_manifest, split_counts, write_manifest

PAPER = SplitConfig(train=0.9, val=0.05, test=0.05)


def _fake_case(root, dataset, case, regions, lesion=False):
    d = root / dataset / case
    d.mkdir(parents=True)
    for r in regions:
        meta = {"case": case, "dataset": dataset, "region": r, "shape": [40, 64, 48], "spacing_mm": [1.0, 1.0, 1.5]}
        (d / f"{r}_meta.json").write_text(json.dumps(meta))
        if lesion:
            (d / f"{r}_lesion.npy").write_bytes(b"")
    return d


@pytest.mark.parametrize(
    "n, expected",
    [(100, (90, 5, 5)), (20, (18, 1, 1)), (3, (1, 1, 1)), (2, (2, 0, 0)), (1, (1, 0, 0)), (0, (0, 0, 0))],
)
def test_split_counts(n, expected):
    assert split_counts(n, PAPER) == expected


def test_split_counts_keep_a_training_case_and_honour_zero_fractions():
    assert split_counts(3, SplitConfig(0.2, 0.4, 0.4)) == (1, 1, 1)
    assert split_counts(10, SplitConfig(0.8, 0.0, 0.2)) == (8, 0, 2)


def test_assign_splits_is_deterministic_and_seed_dependent():
    ids = [f"case{i:03d}" for i in range(40)]
    a = assign_splits(ids, PAPER, seed=1)
    assert a == assign_splits(list(reversed(ids)), PAPER, seed=1)  # input order does not matter
    assert sorted(a.values()).count("test") == 2
    others = [assign_splits(ids, PAPER, seed=s) for s in range(2, 6)]
    assert any(o != a for o in others)


def test_whole_body_regions_share_their_case_split(tmp_path):
    dirs = [_fake_case(tmp_path, "wb", f"p{i}", ["han", "chest", "abdomen"]) for i in range(10)]
    df = build_manifest(dirs, PAPER, seed=0)
    assert len(df) == 30 and list(df.columns) == COLUMNS
    assert (df.groupby("case")["split"].nunique() == 1).all()
    assert sorted(df.drop_duplicates("case")["split"]) == ["test"] + ["train"] * 8 + ["val"]
    assert list(df[df.case == "p0"]["region"]) == ["han", "chest", "abdomen"]
    row = df.iloc[0]
    assert row["shape"] == "40x64x48" and row["spacing_mm"] == "1x1x1.5" and row["lesion"] == ""
    assert row["image"].endswith("p0/han_image.npy") and row["meta"].endswith("p0/han_meta.json")


def test_split_is_drawn_per_dataset(tmp_path):
    dirs = [_fake_case(tmp_path, "a", f"c{i}", ["chest"]) for i in range(5)]
    dirs += [_fake_case(tmp_path, "b", f"c{i}", ["abdomen"], lesion=True) for i in range(3)]
    df = build_manifest(dirs, PAPER, seed=0)
    for dataset in ("a", "b"):
        counts = df[df.dataset == dataset]["split"].value_counts()
        assert counts["test"] == 1 and counts["val"] == 1
    # adding dataset b does not change dataset a's split
    alone = build_manifest(dirs[:5], PAPER, seed=0)
    assert list(alone["split"]) == list(df[df.dataset == "a"]["split"])
    assert df[df.dataset == "b"]["lesion"].str.endswith("abdomen_lesion.npy").all()


def test_write_manifest_csv_and_markdown(tmp_path):
    dirs = [_fake_case(tmp_path, "a", f"c{i}", ["chest"]) for i in range(4)]
    df = build_manifest(dirs, PAPER, seed=0)
    out = tmp_path / "manifest" / "manifest.csv"
    write_manifest(df, out)
    back = read_manifest(out)
    assert back.equals(df.astype(str))
    md = out.with_suffix(".md").read_text()
    assert md.startswith("| case") and md.count("\n") == len(df) + 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["manifest.csv", "manifest.md"]


def test_folder_without_metadata_is_reported(tmp_path):
    from meddiff.errors import InputImageError

    (tmp_path / "x").mkdir()
    with pytest.raises(InputImageError, match="no <region>_meta.json"):
        build_manifest([tmp_path / "x"], PAPER, seed=0)
