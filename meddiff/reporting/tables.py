"""Result tables as CSV (for machines) and Markdown (for people), each carrying its provenance.

``stem.csv`` starts with ``# key: value`` comment lines (read it back with ``pd.read_csv(path, comment="#")``);
``stem.md`` has a title, the provenance as a bullet list, the table and notes. Numbers quoted from the paper
are kept apart from numbers this run measured by a ``source`` column ("paper (quoted)" / "this run").
"""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

import meddiff
from meddiff.atomic import write_text
from meddiff.config import Config
from meddiff.diffusion.precision import read_choice

SOURCE_PAPER = "paper (quoted)"
SOURCE_RUN = "this run"
DEMO_SCALE = "demo (CPU toy scale) — not comparable to the paper"
PAPER_SCALE = "paper scale"

_METRICS = ("MS-SSIM", "LPIPS", "FID", "MMD", "Dice")

# Paper Table 3 (ablation; incremental components on the patch-level DDPM baseline), quoted verbatim.
_TABLE3 = {
    "HaN": [
        ("patch-level baseline", 0.7227, 0.0185, 0.1973, 0.0513, 0.7491),
        ("+ multi-level integration", 0.7867, 0.0125, 0.1564, 0.0301, 0.8843),
        ("+ position", 0.8049, 0.0132, 0.1101, 0.0293, 0.8923),
        ("+ position embedding", 0.8034, 0.0110, 0.1074, 0.0275, 0.8949),
    ],
    "Chest": [
        ("patch-level baseline", 0.7799, 0.0175, 0.3121, 0.1219, 0.4909),
        ("+ multi-level integration", 0.8344, 0.0116, 0.1961, 0.0753, 0.6372),
        ("+ position", 0.8443, 0.0121, 0.1069, 0.0652, 0.6997),
        ("+ position embedding", 0.8480, 0.0130, 0.0749, 0.0648, 0.7076),
    ],
    "Abdomen": [
        ("patch-level baseline", 0.6009, 0.0242, 0.2792, 0.0489, 0.6998),
        ("+ multi-level integration", 0.7256, 0.0148, 0.2130, 0.0325, 0.8318),
        ("+ position", 0.7255, 0.0157, 0.2402, 0.0390, 0.8503),
        ("+ position embedding", 0.7439, 0.0136, 0.2595, 0.0303, 0.8524),
    ],
    "Overall": [
        ("patch-level baseline", 0.7011, 0.0201, 0.1096, 0.0740, 0.6466),
        ("+ multi-level integration", 0.7823, 0.0130, 0.0819, 0.0460, 0.7844),
        ("+ position", 0.7916, 0.0137, 0.0667, 0.0445, 0.8141),
        ("+ position embedding", 0.7984, 0.0125, 0.0655, 0.0409, 0.8183),
    ],
}

# Paper Table 4 (conditional CT volume synthesis vs. DDPM and MAISI), quoted verbatim.
_TABLE4 = {
    "HaN": [
        ("DDPM", 0.7227, 0.0185, 0.1973, 0.0513, 0.7491),
        ("MAISI", 0.6963, 0.0150, 0.1572, 0.0414, 0.8164),
        ("MedDiff-FM", 0.8034, 0.0110, 0.1074, 0.0275, 0.8949),
    ],
    "Chest": [
        ("DDPM", 0.7799, 0.0175, 0.3121, 0.1219, 0.4909),
        ("MAISI", 0.7063, 0.0240, 0.1731, 0.0326, 0.6490),
        ("MedDiff-FM", 0.8480, 0.0130, 0.0749, 0.0648, 0.7076),
    ],
    "Abdomen": [
        ("DDPM", 0.6009, 0.0242, 0.2792, 0.0489, 0.6998),
        ("MAISI", 0.6905, 0.0134, 0.1373, 0.0304, 0.8169),
        ("MedDiff-FM", 0.7439, 0.0136, 0.2595, 0.0303, 0.8524),
    ],
    "Overall": [
        ("DDPM", 0.7011, 0.0201, 0.1096, 0.0740, 0.6466),
        ("MAISI", 0.6977, 0.0175, 0.0764, 0.0348, 0.7608),
        ("MedDiff-FM", 0.7984, 0.0125, 0.0655, 0.0409, 0.8183),
    ],
}


def paper_rows(table: int) -> pd.DataFrame:
    """The paper's Table 3 or Table 4 as a DataFrame with columns
    Region, Method, MS-SSIM, LPIPS, FID, MMD, Dice (MS-SSIM and Dice higher is better, the rest lower)."""
    source = {3: _TABLE3, 4: _TABLE4}.get(table)
    if source is None:
        raise ValueError(f"only Tables 3 and 4 are quoted, not {table}")
    rows = [dict(Region=region, Method=m, **dict(zip(_METRICS, vals, strict=True)))
            for region, entries in source.items() for m, *vals in entries]
    return pd.DataFrame(rows)


def paper_table(this_run: pd.DataFrame, quoted: pd.DataFrame) -> pd.DataFrame:
    """Rows measured by this run followed by rows quoted from the paper, with a first column ``source``
    ("this run" / "paper (quoted)") so the two can never be confused. Columns are the union of both inputs;
    a metric one side lacks is left empty (NaN). A ``source`` column already present is overwritten."""
    ours = this_run.drop(columns="source", errors="ignore").assign(source=SOURCE_RUN)
    theirs = quoted.drop(columns="source", errors="ignore").assign(source=SOURCE_PAPER)
    parts = [df for df in (ours, theirs) if not df.empty]
    out = pd.concat(parts, ignore_index=True, sort=False) if parts else ours
    return out[["source", *[c for c in out.columns if c != "source"]]]


def _git_commit() -> str:
    repo = Path(meddiff.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown (not a git checkout or no commit yet)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        suffix = " (with uncommitted changes)" if dirty.returncode == 0 and dirty.stdout.strip() else ""
        return head.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def provenance(cfg_path: str | Path, cfg: Config, *, data: str, scale: str) -> dict[str, str]:
    """The standard provenance of a table: config file, run name, scale (e.g. :data:`DEMO_SCALE`), data
    description, seed, diffusion setup, numeric precision (the run's ``precision.json`` beside ``cfg_path``, as
    written by ``meddiff probe-precision``), meddiff version, git commit (if the package is in a git checkout)
    and UTC date."""
    d = cfg.diffusion
    paper = "" if d.prediction == "epsilon" else " (paper: epsilon)"
    return {
        "config": str(cfg_path),
        "run": cfg.run,
        "scale": scale,
        "data": data,
        "seed": str(cfg.seed),
        "diffusion": f"{d.prediction} prediction{paper}, {d.schedule} schedule, T = {d.num_train_timesteps}",
        "precision": _precision(Path(cfg_path).parent / "precision.json", cfg),
        "meddiff": meddiff.__version__,
        "git commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _precision(probe: Path, cfg: Config) -> str:
    if not probe.is_file():
        return f"training {cfg.training.precision}, sampling {cfg.sampling.precision} (as configured; no probe)"
    return "; ".join(f"{key} {read_choice(probe, key).summary()}" for key in ("training", "sampling"))


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _has_hash(df: pd.DataFrame) -> bool:
    cells = df.select_dtypes(include=["object", "string"]).astype(str)
    return any("#" in str(c) for c in df.columns) or bool(cells.apply(lambda s: s.str.contains("#")).any().any())


def write_table(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    title: str,
    provenance: dict[str, str],
    notes: Sequence[str] = (),
) -> None:
    """Write ``stem.csv`` and ``stem.md`` atomically.

    CSV: ``# key: value`` provenance lines, then the table without index; NaN is an empty cell. Cells are
    quoted only when some text contains ``#`` (which ``read_csv(comment="#")`` would otherwise cut).
    Markdown: ``## title``, the provenance as bullets, the table (4 decimals, NaN as "n/a"), then the notes.
    """
    stem = Path(stem)
    header = "".join(f"# {_one_line(k)}: {_one_line(v)}\n" for k, v in provenance.items())
    quoting = csv.QUOTE_NONNUMERIC if _has_hash(df) else csv.QUOTE_MINIMAL
    write_text(stem.with_name(stem.name + ".csv"), header + df.to_csv(index=False, quoting=quoting, lineterminator="\n"))

    shown = df.astype(object).where(df.notna(), None)
    lines = [f"## {_one_line(title)}", ""]
    lines += [f"- **{_one_line(k)}**: {_one_line(v)}" for k, v in provenance.items()]
    lines += ["", shown.to_markdown(index=False, floatfmt=".4f", missingval="n/a"), ""]
    if notes:
        lines += ["Notes:", ""] + [f"- {_one_line(n)}" for n in notes] + [""]
    write_text(stem.with_name(stem.name + ".md"), "\n".join(lines))
