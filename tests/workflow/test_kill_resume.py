"""Kill and resume through the workflow: `kill -9` the training process (not Snakemake) between two checkpoints,
rerun the same `snakemake` command with `--rerun-incomplete` (what the SLURM profile's retries do), and the
training resumes from its last checkpoint to weights bit-identical to an uninterrupted run.

Runs the tiny workflow of .test/ up to one variant's model (data stage shared by both runs), 40 short steps; and
the same for the super-resolution ControlNet fine-tuned on the (6-step) foundation model.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from test_workflow import BIN, ROOT, snakemake, tiny_config

STEPS, CHECKPOINT_EVERY, KILL_AFTER = 40, 10, 13  # killed at step >= 13: between checkpoints 10 and 20
# (command, its name argument, model folder under models/, log under logs/, what must exist first)
JOBS = {
    "train": ("train", "baseline", "baseline", "train/baseline.log", []),
    "finetune": ("finetune", "sr", "controlnet_sr", "finetune/sr.log", ["results/e2e/models/meddiff_fm/model"]),
}


def _config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text(encoding="utf-8"))
    cfg["training"].update(steps=STEPS, checkpoint_every=CHECKPOINT_EVERY, log_every=1, foundation_steps=None)
    cfg["finetune"].update(steps=STEPS, checkpoint_every=CHECKPOINT_EVERY)
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _training_pids(command: str, name: str) -> list[int]:
    """PIDs of `meddiff ... <command> <name>` Python processes (not the shell Snakemake wraps them in)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if any(a.endswith("/meddiff") or a == "meddiff" for a in args) and command in args and name in args:
            pids.append(int(proc.name))
    return pids


def _last_logged_step(loss_csv: Path) -> int:
    try:
        lines = loss_csv.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0


def _weights(model: Path) -> dict[str, torch.Tensor]:
    return torch.load(model / "weights.pt", map_location="cpu", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("job", list(JOBS))
def test_training_killed_between_checkpoints_resumes_to_identical_weights(tmp_path, job):
    command, name, folder, log_name, first_needs = JOBS[job]
    work = tmp_path / "work"
    work.mkdir()
    common = ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(_config(tmp_path))]
    run_dir = work / "results" / "e2e" / "models" / folder
    target = f"results/e2e/models/{folder}/model"
    # the shared data stage and precision probe (targets before --resources, which takes several values)
    snakemake("results/e2e/manifest.csv", "results/e2e/precision.json", *first_needs, "--cores", "2",
              "--resources", "gpu=1", *common)  # fmt: skip

    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    first = subprocess.Popen([str(BIN / "snakemake"), target, "--cores", "2", "--resources", "gpu=1", *common],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8")
    deadline = time.monotonic() + 600
    while _last_logged_step(run_dir / "loss.csv") < KILL_AFTER:
        assert first.poll() is None, f"training ended before it could be killed:\n{first.stdout.read()}"
        assert time.monotonic() < deadline, "training never reached the kill step"
        time.sleep(0.02)
    pids = _training_pids(command, name)
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    killed_at = _last_logged_step(run_dir / "loss.csv")
    out = first.communicate(timeout=120)[0]
    assert first.returncode != 0, out
    assert CHECKPOINT_EVERY < killed_at < STEPS, killed_at
    assert not (run_dir / "model").exists(), "a killed run left a model folder that looks finished"
    assert (run_dir / "last").is_dir()
    assert [p.name for p in run_dir.rglob("*.part*")] == []  # killed between checkpoints: no write was under way

    snakemake(target, "--rerun-incomplete", "--cores", "2", "--resources", "gpu=1", *common)
    log = (work / "results" / "e2e" / "logs" / log_name).read_text(encoding="utf-8")
    resumed_from = (killed_at // CHECKPOINT_EVERY) * CHECKPOINT_EVERY
    assert f"resuming from step {resumed_from}" in log, log[-3000:]
    resumed = _weights(run_dir / "model")

    shutil.rmtree(run_dir)  # the same job again, uninterrupted
    snakemake(target, "--cores", "2", "--resources", "gpu=1", *common)
    uninterrupted = _weights(run_dir / "model")
    assert resumed.keys() == uninterrupted.keys()
    different = [k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])]
    assert different == [], f"{len(different)} tensors differ after resume, e.g. {different[:3]}"
