"""Untrusted files: a checkpoint or model folder carrying a pickled payload, and a config YAML with a Python
tag, are refused with one clear line naming the file; the payload never runs.

The payload is an object whose unpickling calls ``os.system`` to create a marker file: if any loader in meddiff
used full pickle (``torch.load(weights_only=False)``, ``yaml.load``), the marker would appear.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from meddiff.config import load_config
from meddiff.diffusion.checkpoint import (
    STATE_FILE,
    STATE_JSON,
    load_model,
    load_training_state,
    save_model,
)
from meddiff.errors import ConfigError, MeddiffError
from meddiff.models.network import MedDiffUNet

from tiny_network import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]


class RunsCode:
    """Unpickling this object runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _malicious_checkpoint(path: Path, marker: Path) -> None:
    """A torch checkpoint whose payload runs code on load (torch.save pickles any object)."""
    torch.save({"step": 3, "network": RunsCode(marker)}, path)


def _raised(call) -> BaseException | None:
    """The exception ``call`` raises (checked after the marker, so a payload that ran is reported as such)."""
    try:
        call()
    except Exception as err:  # noqa: BLE001
        return err
    return None


def test_payload_runs_when_loaded_unsafely(tmp_path):
    """The fixture is real: full unpickling does run the payload (so the tests below can fail)."""
    marker = tmp_path / "pwned"
    _malicious_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_training_checkpoint_with_a_pickled_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    last = tmp_path / "last"
    last.mkdir()
    _malicious_checkpoint(last / STATE_FILE, marker)
    (last / STATE_JSON).write_text('{"step": 3, "elapsed_s": 0.0}\n')
    err = _raised(lambda: load_training_state(last))
    assert not marker.exists(), "the checkpoint's payload ran"
    assert isinstance(err, MeddiffError), repr(err)
    msg = str(err)
    assert str(last / STATE_FILE) in msg and "\n" not in msg, msg
    assert "could run code" in msg, msg


def test_model_folder_with_pickled_weights_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    folder = save_model(
        tmp_path / "model", MedDiffUNet(TINY_MODEL, "embedding"), num_train_timesteps=10, schedule="cosine", info={},
        prediction="epsilon",
    )
    _malicious_checkpoint(folder / "weights.pt", marker)
    err = _raised(lambda: load_model(folder, "cpu"))
    assert not marker.exists(), "the weights' payload ran"
    assert isinstance(err, MeddiffError), repr(err)
    msg = str(err)
    assert str(folder) in msg and "\n" not in msg, msg


def _python_tagged_config(tmp_path: Path, marker: Path) -> Path:
    raw = yaml.safe_load((ROOT / "config/demo.yaml").read_text(encoding="utf-8"))
    text = yaml.safe_dump(raw, sort_keys=False)
    text = text.replace("seed: ", f"seed: !!python/object/apply:os.system ['touch {marker}']\nunused_seed: ", 1)
    path = tmp_path / "evil.yaml"
    path.write_text(text, encoding="utf-8")
    # the tag is real: an unsafe loader would run it
    assert "!!python/object/apply:os.system" in path.read_text(encoding="utf-8")
    return path


def test_config_with_a_python_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = _python_tagged_config(tmp_path, marker)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "python/object" in msg, msg
    assert not marker.exists(), "the config's payload ran"


def test_config_with_a_python_tag_is_one_line_from_the_cli(tmp_path):
    marker = tmp_path / "pwned"
    path = _python_tagged_config(tmp_path, marker)
    proc = subprocess.run(
        [sys.executable, "-m", "meddiff.cli", "manifest", str(tmp_path / "m.csv"), str(tmp_path / "none.txt"),
         "--config", str(path)],
        capture_output=True, text=True, encoding="utf-8",
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(path) in errors[0], proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0], "the error continues on further lines"
    assert "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "m.csv").exists()
