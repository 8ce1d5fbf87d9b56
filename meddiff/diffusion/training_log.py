"""Training loss log: ``loss.csv`` (step, loss, lr, it_per_s, elapsed_s), optional TensorBoard, and the
summary the README/table quote ("loss falls")."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from meddiff.atomic import write_text

logger = logging.getLogger(__name__)

LOSS_COLUMNS = ("step", "loss", "lr", "it_per_s", "elapsed_s")


class LossLog:
    """Append-only ``loss.csv`` (flushed per row), truncated on resume to the rows up to ``resume_step`` so a
    resumed run has no duplicate steps; mirrors rows to TensorBoard when ``torch.utils.tensorboard`` imports.

    Each row's ``loss`` is the mean L1 loss (eq. 3) over the steps since the previous row.
    """

    def __init__(self, path: Path, resume_step: int, tensorboard_dir: Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = ""
        if resume_step > 0 and self.path.exists() and self.path.stat().st_size > 0:
            table = pd.read_csv(self.path)
            table = table[table["step"] <= resume_step]
            kept = table.to_csv(index=False, lineterminator="\n")
        write_text(self.path, kept or ",".join(LOSS_COLUMNS) + "\n")
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._tensorboard = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.debug("tensorboard is not installed; logging to %s only", self.path)
            else:
                self._tensorboard = SummaryWriter(str(tensorboard_dir), purge_step=resume_step + 1)

    def append(self, step: int, loss: float, lr: float, it_per_s: float, elapsed_s: float) -> None:
        self._writer.writerow([step, f"{loss:.6g}", f"{lr:.6g}", f"{it_per_s:.4g}", f"{elapsed_s:.1f}"])
        self._file.flush()
        if self._tensorboard is not None:
            self._tensorboard.add_scalar("train/loss", loss, step)
            self._tensorboard.add_scalar("train/lr", lr, step)
            self._tensorboard.add_scalar("train/it_per_s", it_per_s, step)

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def training_summary(out_dir: Path) -> dict:
    """Summary of ``out_dir/loss.csv``: steps, wall time, mean loss of the first and last fifth of the rows.

    Returns:
        {"steps", "rows", "window_rows", "first_window_loss", "last_window_loss", "loss_ratio",
        "wall_time_s"}; ``loss_ratio`` = last / first (< 1 means the loss fell). Empty log -> steps 0 and
        NaN losses.
    """
    path = Path(out_dir) / "loss.csv"
    table = pd.read_csv(path) if path.exists() and path.stat().st_size > 0 else pd.DataFrame(columns=LOSS_COLUMNS)
    rows = len(table)
    if rows == 0:
        nan = float("nan")
        return {
            "steps": 0,
            "rows": 0,
            "window_rows": 0,
            "first_window_loss": nan,
            "last_window_loss": nan,
            "loss_ratio": nan,
            "wall_time_s": 0.0,
        }
    window = max(1, rows // 5)
    first = float(table["loss"].iloc[:window].mean())
    last = float(table["loss"].iloc[-window:].mean())
    return {
        "steps": int(table["step"].iloc[-1]),
        "rows": rows,
        "window_rows": window,
        "first_window_loss": first,
        "last_window_loss": last,
        "loss_ratio": last / first if first > 0 else float("nan"),
        "wall_time_s": float(table["elapsed_s"].iloc[-1]),
    }
