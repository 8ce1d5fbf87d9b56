"""Result tables as CSV (for machines) and Markdown (for people), each carrying its provenance.

``stem.csv`` starts with ``# key: value`` comment lines (read it back with ``pd.read_csv(path, comment="#")``);
``stem.md`` has a title, the provenance as a bullet list, the table and notes. Numbers quoted from the paper
are kept apart from numbers this run measured by a ``source`` column (:data:`SOURCE_PAPER` / :data:`SOURCE_RUN`,
the quotes live in :mod:`meddiff.reporting.paper_results`).
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
from meddiff.config import DiffusionConfig, Sections
from meddiff.diffusion.precision import read_choice
from meddiff.reporting.paper_results import SOURCE_PAPER, SOURCE_RUN

DEMO_SCALE = "demo (CPU toy scale) — not comparable to the paper"
PAPER_SCALE = "paper scale"

def paper_table(this_run: pd.DataFrame, quoted: pd.DataFrame) -> pd.DataFrame:
    """Rows measured by this run followed by rows quoted from the paper, with a first column ``source``
    (:data:`SOURCE_RUN` / :data:`SOURCE_PAPER`) so the two can never be confused. Columns are the union of both inputs;
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


def provenance(results: str | Path, settings: Sections, *, data: str, scale: str) -> dict[str, str]:
    """The standard provenance of a table of the run in ``results`` (results/<run>): its resolved config file,
    run name, scale (e.g. :data:`DEMO_SCALE`), data description, seed, diffusion setup, numeric precision (the
    run's ``precision.json``, as written by ``meddiff probe-precision``), meddiff version, git commit (if the
    package is in a git checkout) and UTC date.

    ``settings`` are a report command's (:data:`meddiff.config.COMMAND_SECTIONS`): run, seed, diffusion and the
    configured training / sampling precision."""
    results = Path(results)
    d: DiffusionConfig = settings["diffusion"]
    paper = "" if d.prediction == "epsilon" else " (paper: epsilon)"
    return {
        "config": str(results / "config.resolved.yaml"),
        "run": settings["run"],
        "scale": scale,
        "data": data,
        "seed": str(settings["seed"]),
        "diffusion": f"{d.prediction} prediction{paper}, {d.schedule} schedule, T = {d.num_train_timesteps}",
        "precision": _precision(results / "precision.json", settings),
        "meddiff": meddiff.__version__,
        "git commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _precision(probe: Path, settings: Sections) -> str:
    if not probe.is_file():
        return (f"training {settings['training.precision']}, sampling {settings['sampling.precision']} "
                "(as configured; no probe)")
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
