"""The `meddiff` command as a user meets it: help texts, and bad input reported on one line."""

import subprocess
import sys

import pytest
import yaml

from meddiff.cli import build_parser, main

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_every_subcommand_explains_itself(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"fetch", "masks", "preprocess", "manifest", "train", "synthesize", "denoise", "anomaly"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        assert "usage: meddiff" in capsys.readouterr().out


def test_corrupt_input_is_one_clear_line_and_exit_2(tmp_path):
    corrupt = tmp_path / "scan.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    out = tmp_path / "mask.nii.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "meddiff.cli", "masks", str(corrupt), str(out), "--config", str(ROOT / "config/demo.yaml")],
        capture_output=True, text=True, encoding="utf-8",
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("meddiff masks: error:") and str(corrupt) in last
    assert "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [corrupt]


def test_config_typo_names_the_key(tmp_path, capsys):
    cfg = yaml.safe_load((ROOT / "config/demo.yaml").read_text(encoding="utf-8"))
    cfg["preprocess"]["spacing"] = [1, 1, 1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["manifest", str(tmp_path / "m.csv"), str(tmp_path / "none.txt"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "spacing" in err and str(bad) in err


def test_unknown_dataset_is_named(tmp_path, capsys):
    assert main(["fetch", "btvc", str(tmp_path / "i.tsv"), "--config", str(ROOT / "config/demo.yaml")]) == 2
    err = capsys.readouterr().err
    assert "btvc" in err and "btcv" in err


def demo_config_with(**training):
    raw = yaml.safe_load((ROOT / "config/demo.yaml").read_text(encoding="utf-8"))
    raw["training"].update(training)
    return raw


def test_foundation_run_is_the_last_variant_unless_it_trains_longer():
    from meddiff.config import config_from_dict

    steps = demo_config_with()["training"]["steps"]
    same = config_from_dict(demo_config_with(foundation_steps=None))
    assert same.foundation_run == same.variants[-1].name
    assert config_from_dict(demo_config_with(foundation_steps=steps)).foundation_run == same.variants[-1].name
    longer = config_from_dict(demo_config_with(foundation_steps=steps + 1))
    assert longer.foundation_run == "foundation" and longer.variant("foundation") == longer.variants[-1]


def test_foundation_steps_below_steps_and_a_variant_named_foundation_are_rejected():
    from meddiff.config import config_from_dict
    from meddiff.errors import ConfigError

    with pytest.raises(ConfigError, match="foundation_steps"):
        config_from_dict(demo_config_with(steps=10, foundation_steps=5))
    raw = demo_config_with()
    raw["variants"][0]["name"] = "foundation"
    with pytest.raises(ConfigError, match="reserved"):
        config_from_dict(raw)


def test_threads_option_limits_torch_and_simpleitk():
    """``meddiff --threads N`` (each rule passes its threads:) reaches torch and SimpleITK imported later."""
    code = (
        "from meddiff.cli import set_threads; set_threads(1); import torch, SimpleITK as s; "
        "print(torch.get_num_threads(), s.ProcessObject.GetGlobalDefaultNumberOfThreads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1"]
