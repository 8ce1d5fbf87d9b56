"""Two invocations at once: a second `snakemake` on the same results is refused by Snakemake's lock and the
first run's outputs stay intact; two different `run:` names run side by side without touching each other.

Runs the masks + preprocess stages of one small case of a user's dataset (the fixture of
test_bad_input_workflow.py), a few seconds each.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from test_bad_input_workflow import CASE, RUN, _common, _config, good_case  # noqa: F401  (fixture)
from test_workflow import BIN, snakemake


def _popen(*args) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.Popen([str(BIN / "snakemake"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, encoding="utf-8")


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_second_invocation_on_the_same_results_is_refused_and_the_first_finishes(tmp_path, good_case):
    shutil.copytree(good_case, tmp_path / "raw" / "custom")
    common = _common(tmp_path, _config(tmp_path))
    target = f"results/{RUN}/cache/custom/{CASE}"
    first = _popen("--cores", "1", target, *common)
    locks = tmp_path / "work" / ".snakemake" / "locks"
    deadline = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.iterdir())):
        assert first.poll() is None, f"the first run ended before taking its lock:\n{first.stdout.read()}"
        assert time.monotonic() < deadline, "the first run never took its lock"
        time.sleep(0.05)
    second = snakemake("--cores", "1", target, *common, check=False)
    first_out = first.communicate(timeout=300)[0]
    assert first.returncode == 0, first_out
    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stdout + second.stderr, second.stdout + second.stderr
    results = tmp_path / "work" / "results" / RUN
    assert any((results / "cache" / "custom" / CASE).iterdir())
    # the first run's outputs are complete and consistent: nothing left to do, and no temporary files
    plan = snakemake("-n", target, *common)
    assert "Nothing to be done" in plan.stdout + plan.stderr
    assert [f for f in _digests(results) if ".part" in f] == []


def _run_config(tmp_path: Path, run: str) -> Path:
    cfg = yaml.safe_load(_config(tmp_path).read_text(encoding="utf-8"))
    cfg["run"] = run
    path = tmp_path / f"{run}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def test_two_run_names_side_by_side_do_not_touch_each_other(tmp_path, good_case):
    shutil.copytree(good_case, tmp_path / "raw" / "custom")
    work = tmp_path / "work"
    configs = {run: _run_config(tmp_path, run) for run in ("alpha", "beta")}
    common = {run: _common(tmp_path, cfg) for run, cfg in configs.items()}
    for run in configs:  # each run plans only its own folder
        plan = snakemake("-n", f"results/{run}/cache/custom/{CASE}", *common[run])
        other = "beta" if run == "alpha" else "alpha"
        assert f"results/{other}/" not in plan.stdout + plan.stderr
    procs = {run: _popen("--cores", "1", f"results/{run}/cache/custom/{CASE}", *common[run]) for run in configs}
    for run, proc in procs.items():
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, f"run {run}:\n{out}"
    assert sorted(p.name for p in (work / "results").iterdir()) == ["alpha", "beta"]
    alpha, beta = (_digests(work / "results" / run) for run in ("alpha", "beta"))
    # same input, same config apart from the name: the same files with the same masks, each in its own folder
    assert {f for f in alpha if not f.startswith(("logs/", "benchmarks/"))} == {
        f for f in beta if not f.startswith(("logs/", "benchmarks/"))}
    assert alpha[f"masks/custom/{CASE}.nii.gz"] == beta[f"masks/custom/{CASE}.nii.gz"]
    # and a rerun of one leaves the other's files untouched
    before = _digests(work / "results" / "beta")
    snakemake("--cores", "1", "--force", f"results/alpha/masks/custom/{CASE}.nii.gz", *common["alpha"])
    assert _digests(work / "results" / "beta") == before
