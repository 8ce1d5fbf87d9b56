"""The workflow as a user runs it: lint, the paper-scale dry run, and a tiny end-to-end demo run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def snakemake(*args, cwd=ROOT, check=True, timeout=1800):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8",
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}")
    return proc


def test_paper_config_dry_run_plans_every_registry_dataset(tmp_path):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text(encoding="utf-8"))
    cfg["data"]["root"] = str(tmp_path / "data")  # absent: fine for a dry run
    cfg["data"]["registry"] = str(ROOT / "config/datasets.yaml")
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                     "--configfile", str(config))
    out = proc.stdout + proc.stderr
    for name in PAPER_PRETRAIN + PAPER_TASK:
        assert f"dataset={name}" in out, f"fetch of {name} not planned"


PAPER_PRETRAIN = ["structseg", "instance2022", "hanseg", "segrap2023", "segthor", "ct_rate", "abdomenct1k",
                  "amos22", "btcv", "chaos", "word", "totalsegmentator", "autopet"]
PAPER_TASK = ["mayo2016", "bmad_liver", "rplhr_ct", "msd_lung", "msd_liver", "med_ln", "abd_ln"]


def test_paper_config_lists_the_twenty_datasets():
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text(encoding="utf-8"))
    assert cfg["data"]["datasets"] == PAPER_PRETRAIN
    assert cfg["data"]["task_datasets"] == PAPER_TASK


def test_lint_is_clean():
    proc = snakemake("--lint", "--configfile", str(ROOT / "config/demo.yaml"), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules"], cwd=ROOT,
                          capture_output=True, text=True, encoding="utf-8")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_config_typo_is_rejected(tmp_path):
    cfg = yaml.safe_load((ROOT / "config/demo.yaml").read_text(encoding="utf-8"))
    cfg["training"]["stpes"] = 10
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "stpes" in proc.stdout + proc.stderr


def test_reference_masks_on_datasets_without_shipped_labels_stop_before_any_job(tmp_path):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text(encoding="utf-8"))
    cfg["masks"]["backend"] = "reference"
    bad = tmp_path / "reference.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "masks.backend 'reference'" in proc.stdout + proc.stderr


def tiny_config(tmp_path: Path) -> Path:
    """The tiny workflow of ``.test/config/config.yaml`` (8 cases, a few training steps, 3 sampling steps), with
    its data folder in ``tmp_path`` and the project's registry."""
    cfg = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text(encoding="utf-8"))
    cfg["data"]["root"] = str(tmp_path / "raw")
    cfg["data"]["registry"] = str(ROOT / "config/datasets.yaml")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_tiny_workflow(folder: Path, config: Path, *targets: str) -> tuple[Path, list[str]]:
    """Run the workflow of ``config`` (to ``targets``, default all) in ``folder/work``: (work, common args)."""
    work = folder / "work"
    work.mkdir()
    common = ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(config)]
    snakemake(*targets, "--cores", "2", "--resources", "gpu=1", *common)
    return work, common


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, list[str], Path]:
    """The tiny workflow run once end to end, shared by the tests that read its results: (work, args, config)."""
    folder = tmp_path_factory.mktemp("tiny")
    config = tiny_config(folder)
    work, common = run_tiny_workflow(folder, config)
    return work, common, config


@pytest.mark.slow
def test_tiny_demo_runs_end_to_end(tiny_run):
    work, common, config = tiny_run
    results = work / "results" / "e2e"
    manifest = pd.read_csv(results / "manifest.csv")
    assert set(manifest["region"]) == {"han", "chest", "abdomen"}
    assert set(manifest["split"]) >= {"train", "test"}
    for n in (3, 4, 5, 6, 7, 8, 9):
        table = pd.read_csv(results / "tables" / f"table{n}.csv", comment="#")
        assert len(table) > 0
        assert "demo" in (results / "tables" / f"table{n}.md").read_text(encoding="utf-8").lower()
    for fig in ("figure5_synthesis", "figure6_denoising", "figure7_anomaly", "figure8_super_resolution"):
        assert (results / "figures" / f"{fig}.png").stat().st_size > 1000
    assert (results / "logs" / "train").is_dir()
    # Table 3 compares the variants at 6 steps; the foundation model continues the last one to 9.
    assert json.loads((results / "models" / "foundation" / "model" / "training.json").read_text())["steps"] == 9
    assert "(the same model) 9" in (results / "tables" / "table4.md").read_text(encoding="utf-8")
    # precision 'auto' was probed once for the run; the models and every table's provenance record the choice
    probe = json.loads((results / "precision.json").read_text())
    chosen = probe["training"]["chosen"]
    info = json.loads((results / "models" / "foundation" / "model" / "training.json").read_text())
    assert probe["training"]["requested"] == "auto" and info["precision"]["chosen"] == chosen
    assert f"# precision: training {chosen} (auto;" in (results / "tables" / "table4.csv").read_text(encoding="utf-8")
    # Table 7: the fine-tuned ControlNet and both interpolation baselines on the same crop, beside the paper's rows
    table7 = pd.read_csv(results / "tables" / "table7.csv", comment="#")
    ours = table7[table7["source"] == "this run"]
    assert len(ours) == 3 and ours["PSNR"].notna().all() and (ours["SSIM"] <= 1).all()
    assert (table7["source"] == "paper (cited)").sum() == 7
    # Table 8: the three lesion models and the nnU-Net judge on the real crops, each with a Dice in [0, 1]
    table8 = pd.read_csv(results / "tables" / "table8.csv", comment="#")
    ours = table8[table8["source"] == "this run"]
    assert [m.split(" (this run")[0] for m in ours["Method"]] == [
        "Real", "Med-DDPM", "MedDiff-FM (from scratch)", "MedDiff-FM (fine-tune)"]
    assert ours["Dice"].between(0, 1).all() and ours["MS-SSIM"].iloc[1:].notna().all()
    table9 = pd.read_csv(results / "tables" / "table9.csv", comment="#")
    assert (table9["source"] == "this run").sum() == 2
    assert "network calls" in (results / "tables" / "table9.md").read_text(encoding="utf-8")
    tuned = json.loads((results / "models" / "controlnet_sr" / "model" / "training.json").read_text())
    assert tuned["steps"] == 4 and tuned["finetune"]["condition"] == "sr"
    training = pd.read_csv(results / "tables" / "training.csv", comment="#")
    assert dict(zip(training["variant"], training["steps"])) == {"baseline": 6, "meddiff_fm": 6, "foundation": 9}
    # Nothing left to do: a rerun is a no-op.
    proc = snakemake("-n", *common)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    check_setting_changes_rerun_their_readers(config, work, common)
    check_report_holds_every_table(work, common)


def _planned(output: str) -> tuple[set[str], set[str]]:
    """(rules of the planned jobs, settings keys whose command_settings job reruns on changed params) of a dry run."""
    rules, changed = set(), set()
    for rule, body in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n?)*)", output, re.M):
        rules.add(rule)
        if rule == "command_settings" and "Params have changed" in body:
            changed.add(re.search(r"output: \S*/config/(\S+)\.yaml", body).group(1))
    return rules, changed


def _readers(setting: str) -> set[str]:
    """Commands whose declared settings include ``setting`` (a dotted path), from the one table that declares them."""
    from meddiff.config import COMMAND_SECTIONS

    def overlaps(declared: str) -> bool:
        return setting == declared or setting.startswith(declared + ".") or declared.startswith(setting + ".")

    return {cmd for cmd, paths in COMMAND_SECTIONS.items() if any(overlaps(p) for p in paths)}


# (dotted setting, new value, rules that must rerun, rules that must not)
CHANGES = [
    ("preprocess.windows.abdomen", {"level": 70, "width": 360}, {"preprocess", "denoise", "anomaly"}, {"fetch", "masks"}),
    ("masks.backend", "threshold", {"masks", "anomaly", "evaluate_synthesis"}, {"fetch"}),
    ("sampling.steps", 2, {"synthesize", "denoise", "anomaly"}, {"fetch", "masks", "preprocess", "train", "probe_precision"}),
    ("anomaly.timestep", 900, {"anomaly", "evaluate_anomaly", "anomaly_table"},
     {"fetch", "preprocess", "train", "synthesize", "denoise"}),
    ("training.foundation_steps", 11, {"train_foundation", "synthesize", "finetune"}, {"train", "preprocess"}),
    ("lesions.judge_epochs", 2, {"nnunet_judge", "evaluate_lesions", "lesions_table"},
     {"finetune", "generate_lesions", "train", "synthesize"}),
    ("super_resolution.thick_factor", 3, {"finetune", "super_resolve", "evaluate_super_resolution"},
     {"train", "train_foundation", "synthesize", "denoise"}),
]


def check_setting_changes_rerun_their_readers(config: Path, work: Path, common: list[str]) -> None:
    """Each setting changed alone reruns exactly the commands that read it (COMMAND_SECTIONS) and what depends on
    their outputs: Snakemake's params trigger sees the change only in those commands' settings jobs."""
    base = yaml.safe_load(config.read_text(encoding="utf-8"))
    for setting, value, must, must_not in CHANGES:
        changed_cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        *parents, leaf = setting.split(".")
        node = changed_cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        overlay = config.with_name("changed.yaml")
        overlay.write_text(yaml.safe_dump(changed_cfg))
        args = [a if a != str(config) else str(overlay) for a in common]
        proc = snakemake("-n", "--rerun-triggers", "params", *args)
        rules, changed = _planned(proc.stdout + proc.stderr)
        readers = _readers(setting)
        assert {k.partition(".")[0] for k in changed} == readers, (setting, changed, readers)
        assert must <= rules and not (must_not & rules), (setting, sorted(rules))
    assert yaml.safe_load(config.read_text(encoding="utf-8")) == base
    # a dry run writes nothing: the resolved config still names the settings that produced the tables
    resolved = yaml.safe_load((work / "results" / "e2e" / "config.resolved.yaml").read_text(encoding="utf-8"))
    assert resolved["anomaly"]["timestep"] != 900 and resolved["sampling"]["steps"] != 2


def check_report_holds_every_table(work: Path, common: list[str]) -> None:
    """`snakemake --report` of the finished run holds every table and figure of the run."""
    import zipfile

    report = work / "results" / "e2e" / "report.zip"
    snakemake("--report", str(report), *common)
    names = "\n".join(zipfile.ZipFile(report).namelist())
    for table in ("table3.csv", "table4.csv", "table5.csv", "table6.csv", "table7.csv", "table8.csv", "table9.csv",
                  "training.csv",
                  "figure5_synthesis.png", "figure6_denoising.png", "figure7_anomaly.png",
                  "figure8_super_resolution.png"):
        assert table in names, f"{table} missing from the report: {names}"
