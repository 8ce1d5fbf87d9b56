"""CSV/Markdown tables with provenance."""

import math

import numpy as np
import pandas as pd
import pytest

from meddiff.config import Sections
from meddiff.diffusion.precision import PrecisionChoice, write_choices
from meddiff.reporting.paper_results import SOURCE_PAPER, SOURCE_RUN, table34_rows
from meddiff.reporting.tables import DEMO_SCALE, paper_table, provenance, write_table

PROV = {"config": "config/demo.yaml", "run": "demo", "scale": DEMO_SCALE, "seed": "0"}


def _df():
    return pd.DataFrame(
        {"Region": ["HaN", "Chest"], "Method": ["MedDiff-FM #1", "DDPM"], "MS-SSIM": [0.81234, np.nan], "n": [2, 3]}
    )


def test_csv_round_trips_with_comment_lines(tmp_path):
    df = _df()
    write_table(df, tmp_path / "table4", title="Table 4", provenance=PROV)
    text = (tmp_path / "table4.csv").read_text(encoding="utf-8")
    assert text.startswith("# config: config/demo.yaml\n# run: demo\n")
    back = pd.read_csv(tmp_path / "table4.csv", comment="#")
    pd.testing.assert_frame_equal(back, df)  # including the '#' inside a method label and the NaN


def test_markdown_has_title_provenance_table_and_notes(tmp_path):
    write_table(_df(), tmp_path / "t", title="Synthesis (Table 4)", provenance=PROV, notes=["MAISI not run."])
    md = (tmp_path / "t.md").read_text(encoding="utf-8")
    assert md.startswith("## Synthesis (Table 4)\n")
    assert f"- **scale**: {DEMO_SCALE}" in md
    assert "| Region" in md and "0.8123" in md and "n/a" in md
    assert md.rstrip().endswith("- MAISI not run.")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_paper_table_labels_sources():
    ours = pd.DataFrame({"Region": ["HaN"], "Method": ["MedDiff-FM"], "MS-SSIM": [0.5], "extra": [1.0]})
    both = paper_table(ours, table34_rows(4))
    assert both.columns[0] == "source"
    assert list(both["source"]).count(SOURCE_RUN) == 1
    assert list(both["source"]).count(SOURCE_PAPER) == 12
    quoted = both[both["source"] == SOURCE_PAPER]
    row = quoted[(quoted.Region == "Chest") & (quoted.Method == "MAISI")].iloc[0]
    assert row["FID"] == pytest.approx(0.1731) and math.isnan(row["extra"])


def test_paper_rows_quote_table3():
    t3 = table34_rows(3)
    assert len(t3) == 16
    overall = t3[(t3.Region == "Overall") & (t3.Method == "+ position embedding")].iloc[0]
    assert overall["Dice"] == pytest.approx(0.8183)
    with pytest.raises(ValueError):
        table34_rows(5)


def _report_settings(run="demo", seed=42, prediction="v_prediction"):
    diffusion = {"num_train_timesteps": 1000, "schedule": "cosine", "prediction": prediction}
    anomaly = {"dataset": "phantom", "timestep": 950, "organ": "liver", "smoothing_sigma_mm": 0.0, "threshold": 0.5,
               "cases": 2, "slices_per_volume": 0, "remove_organ_offset": False}  # fmt: skip
    return Sections("report-anomaly", {"run": run, "seed": seed, "diffusion": diffusion, "training.precision": "auto",
                                       "sampling.precision": "fp32", "anomaly": anomaly})  # fmt: skip


def test_provenance_fields(tmp_path):
    p = provenance(tmp_path, _report_settings(), data="phantom cohort, 2 test cases", scale=DEMO_SCALE)
    assert p["precision"] == "training auto, sampling fp32 (as configured; no probe)"
    assert p["config"] == str(tmp_path / "config.resolved.yaml") and p["run"] == "demo" and p["seed"] == "42"
    assert p["data"] == "phantom cohort, 2 test cases" and p["scale"] == DEMO_SCALE
    assert p["diffusion"] == "v_prediction prediction (paper: epsilon), cosine schedule, T = 1000"
    assert p["meddiff"] and p["git commit"] and p["date"].endswith("UTC")
    cfg = _report_settings(run="paper", seed=0, prediction="epsilon")
    assert provenance(tmp_path, cfg, data="", scale="")["diffusion"].startswith("epsilon prediction, ")
    # with the run's probe in the results folder, its choice (and why) is the provenance
    write_choices(
        tmp_path / "precision.json",
        {
            "training": PrecisionChoice("auto", "fp32", "bf16 30x slower", {"fp32": 0.5}, "cpu (AVX2, no native bf16)"),
            "sampling": PrecisionChoice("fp32", "fp32", "set in the config"),
        },
    )
    line = provenance(tmp_path, cfg, data="", scale="")["precision"]
    assert line.startswith("training fp32 (auto; bf16 30x slower; fp32 0.5 s; cpu (AVX2") and "sampling fp32 (fp32;" in line
