"""``metrics.csv`` and TensorBoard logging of a training run (main process only).

A fresh run starts a new ``metrics.csv`` (its header is this stage's metric names); a resumed run
keeps the rows up to the step it resumes from and drops the later ones, so a kill + resume never
repeats steps.
"""

from __future__ import annotations

import csv
from pathlib import Path


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the rows of ``path`` with ``step <= last_step`` (remove the file when none is left)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        path.unlink()
        return
    header, body = rows[0], [r for r in rows[1:] if r and int(float(r[0])) <= last_step]
    if not body:
        path.unlink()
        return
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)


class MetricsLogger:
    """Appends one row per logged step to ``metrics.csv`` and TensorBoard (if importable)."""

    def __init__(self, out: Path, csv_on: bool, tensorboard_on: bool, main: bool, resume_step: int):
        self.main = main
        self.path = out / "metrics.csv"
        self.csv_on = csv_on
        self.fields: list[str] | None = None
        self.tensorboard = None
        if not main:
            return
        if resume_step > 0:
            truncate_metrics(self.path, resume_step)
        elif self.path.exists():
            self.path.unlink()
        if tensorboard_on:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(log_dir=str(out / "tensorboard"))
            except Exception:  # tensorboard missing or broken: CSV only
                self.tensorboard = None

    def _write_csv(self, row: dict) -> None:
        if self.fields is None and self.path.exists():
            with open(self.path, newline="") as f:
                old = list(csv.DictReader(f))
            self.fields = list(dict.fromkeys([*row, *(old[0] if old else {})]))
            with open(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(old)
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def log(self, step: int, metrics: dict) -> None:
        if not self.main:
            return
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        if self.csv_on:
            self._write_csv(row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step":
                    self.tensorboard.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
