"""Run every benchmark side by side and print each ratio against its goal; write benchmarks/README.md.

    python -m benchmarks                                  # demo config, ~3-8 min on 2 CPU cores
    python -m benchmarks --config config/demo.yaml --model results/demo/models/foundation/model

Every ratio is measured against its baseline in this run (this machine is shared and noisy; absolute times
mean little). The data are two phantom cases generated into a temporary folder; the sampling model is
``--model`` (default: the run's foundation model when it exists, else a random network of the config's
architecture, and then the DDIM-vs-DDPM metric change is marked as meaningless).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.preprocessing import preprocessing_ratio
from benchmarks.sliding_window_sampling import compare, overhead, random_model
from benchmarks.training_step import seconds_per_call, training_ratios
from meddiff.atomic import write_text
from meddiff.config import Config, Window, load_config
from meddiff.data.manifest import build_manifest, write_manifest
from meddiff.data.phantom import write_cohort
from meddiff.data.preprocess import load_crop, preprocess_case
from meddiff.diffusion.checkpoint import load_model
from meddiff.diffusion.precision import cpu_capability, forward_fn
from meddiff.diffusion.samplers import probe_inputs

README = Path(__file__).with_name("README.md")
STAGES = ("preprocessing", "training", "sampling")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")


def cpu_description() -> str:
    """CPU model, the flags that decide fp32/bf16 speed, torch's kernel level and thread count."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = ", ".join(f for f in FLAGS if f in flags) or "none of " + ", ".join(FLAGS)
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    limits = [f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(k)]
    restricted = f" (restricted by {' '.join(limits)})" if limits else ""
    return (
        f"{model}; flags: {have}; torch {torch.__version__} capability {cpu_capability()}{restricted}, "
        f"native bf16 {'yes' if native else 'no'}; {torch.get_num_threads()} threads"
    )


def make_data(cfg: Config, work: Path) -> tuple[Path, Path, Path, Path]:
    """Two phantom cases (chest, abdomen) preprocessed with the config; returns (manifest with both as train
    rows, abdomen image, abdomen labels, abdomen cache folder)."""
    raw = work / "raw"
    cases = write_cohort(raw, {"chest": 1, "abdomen": 1}, lesion_fraction=0.0, spacing_jitter=True, seed=cfg.seed)
    dirs = []
    for case in cases:
        region = case.split("_")[1]
        out = work / "cache" / case
        preprocess_case(
            raw / "images" / f"{case}.nii.gz", raw / "labels" / f"{case}.nii.gz", out,
            case=case, dataset="phantom", regions=[region], cfg=cfg.preprocess,
        )
        dirs.append(out)
    manifest = build_manifest(dirs, cfg.data.split, cfg.seed).assign(split="train")
    write_manifest(manifest, work / "manifest.csv")
    abdomen = next(c for c in cases if "abdomen" in c)
    return work / "manifest.csv", raw / "images" / f"{abdomen}.nii.gz", raw / "labels" / f"{abdomen}.nii.gz", work / "cache" / abdomen


def sampling_rows(cfg: Config, model_dir: Path | None, case_dir: Path) -> list[dict]:
    loaded = load_model(model_dir, "cpu") if model_dir else random_model(cfg.model, cfg.seed)
    source = str(model_dir) if model_dir else "random network of the config's architecture"
    image, label, meta = load_crop(case_dir, "abdomen")
    s = cfg.sampling
    r = overhead(loaded, label, overlap=s.overlap, batch_size=s.patch_batch_size, blend=s.blend, ddim_steps=s.steps)
    rows = [
        {
            "benchmark": "sliding-window step / its bare forwards",
            "ratio": r["ratio"],
            "goal": "<= 1.10",
            "ok": r["ratio"] <= 1.10,
            "detail": f"{r['windows']} windows of {tuple(cfg.model.patch_size)} over {label.shape}, "
            f"batches of {s.patch_batch_size}; step {r['step_s']:.2f} s, bare {r['bare_s']:.2f} s",
        }
    ]
    net = loaded.network
    patch = tuple(cfg.model.patch_size)
    inputs = probe_inputs(patch, s.patch_batch_size, "cpu")
    fp32 = seconds_per_call(lambda: forward_fn(net, inputs, "cpu")("fp32"), 2)
    bf16 = seconds_per_call(lambda: forward_fn(net, inputs, "cpu")("bf16"), 2)
    rows.append(
        {
            "benchmark": f"bf16 autocast / fp32, sampling forward (batch {s.patch_batch_size})",
            "ratio": bf16 / fp32,
            "goal": "< 0.9 makes 'auto' pick bf16",
            "ok": None,
            "detail": f"fp32 {fp32:.3f} s, bf16 {bf16:.3f} s per batch",
        }
    )
    # One patch of the real crop, so DDPM's T network evaluations stay in minutes on a CPU.
    sl = tuple(slice(max(0, (n - p) // 2), max(0, (n - p) // 2) + p) for n, p in zip(label.shape, patch))
    window = Window(**meta["window"])
    c = compare(loaded, label[sl], image[sl], window, ddim_steps=s.steps, overlap=s.overlap, batch_size=s.patch_batch_size)
    meaningful = "" if model_dir else " (random network: metric change NOT meaningful)"
    rows.append(
        {
            "benchmark": f"DDIM-{c['k']} / DDPM-{c['T']}: network evaluations",
            "ratio": c["k"] / c["T"],
            "goal": "fewer NFEs at a small metric change",
            "ok": None,
            "detail": f"wall time DDIM {c['ddim_s']:.1f} s vs DDPM {c['ddpm_s']:.1f} s on {patch}; SSIM to the real "
            f"crop DDIM {c['ddim_ssim']:.3f} vs DDPM {c['ddpm_ssim']:.3f} "
            f"(change {c['ddim_ssim'] - c['ddpm_ssim']:+.3f}), HU-histogram distance {c['ddim_hist_hu']:.0f} vs "
            f"{c['ddpm_hist_hu']:.0f} HU (change {c['ddim_hist_hu'] - c['ddpm_hist_hu']:+.0f}); model: {source}{meaningful}",
        }
    )
    return rows


def report(rows: list[dict], cpu: str, config: Path, seconds: float) -> str:
    df = pd.DataFrame(rows)
    df["ratio"] = df["ratio"].map(lambda v: f"{v:.3f}")
    df["ok"] = df["ok"].map({True: "yes", False: "**no**", None: "-"})
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"## Latest run of `python -m benchmarks`\n\n"
        f"- machine: {cpu}\n- config: `{config}`\n- date: {stamp}; the whole run took {seconds / 60:.1f} min\n\n"
        + df[["benchmark", "ratio", "goal", "ok", "detail"]].to_markdown(index=False)
        + "\n"
    )


def write_readme(section: str) -> None:
    """Replace the README's "Latest run" section (everything from its heading on) by ``section``."""
    text = README.read_text(encoding="utf-8") if README.is_file() else "# Benchmarks\n"
    head = text.split("## Latest run of `python -m benchmarks`")[0].rstrip()
    write_text(README, head + "\n\n" + section)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("config/demo.yaml"), help="network, batch and sampling settings")
    p.add_argument("--model", type=Path, help="trained model folder for the sampling benchmarks (default: see above)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the demo's cores)")
    p.add_argument("--only", choices=STAGES, action="append", help="run only this stage (repeatable; implies --no-readme)")
    p.add_argument("--no-readme", action="store_true", help="only print, do not rewrite benchmarks/README.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model_dir = args.model
    default_model = Path("results") / cfg.run / "models" / "foundation" / "model"
    if model_dir is None and (default_model / "weights.pt").is_file():
        model_dir = default_model
    cpu = cpu_description()
    print(f"machine: {cpu}\nconfig: {args.config}", flush=True)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="meddiff-bench-") as tmp:
        work = Path(tmp)
        manifest, image, label, case_dir = make_data(cfg, work)
        for stage, run in (
            ("preprocessing", lambda: [preprocessing_ratio(cfg, image, label, "abdomen", work)]),
            ("training", lambda: training_ratios(cfg, manifest, work)),
            ("sampling", lambda: sampling_rows(cfg, model_dir, case_dir)),
        ):
            if args.only and stage not in args.only:
                continue
            print(f"-- {stage}", flush=True)
            for row in run():
                rows.append(row)
                ok = {True: "ok", False: "MISSED", None: "info"}[row["ok"]]
                print(f"{row['benchmark']}: {row['ratio']:.3f} (goal {row['goal']}: {ok})\n    {row['detail']}", flush=True)
    seconds = time.perf_counter() - start
    print(f"total {seconds / 60:.1f} min")
    if not (args.no_readme or args.only):
        write_readme(report(rows, cpu, args.config, seconds))
        print(f"wrote {README}")
    return 0 if all(r["ok"] is not False for r in rows) else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
