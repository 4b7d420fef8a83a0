"""Resumable checkpoints: written atomically, found by completeness, pruned to ``keep_last``.

A checkpoint is written by ``accelerator.save_state`` into ``checkpoints/step-N.tmp``; the main
process then records the files it holds in ``complete.json`` and renames the folder to
``step-N``. ``--resume`` takes the newest folder named ``step-N`` whose ``complete.json`` lists
files that all exist with their recorded sizes, and says which; anything else (temporary folders,
empty or partial folders, stray names such as ``step-final``) is skipped with a reason.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .faults import fault_point

MARKER = "complete.json"
_NAME = re.compile(r"step-(\d+)")


def checkpoint_root(out: Path) -> Path:
    return Path(out) / "checkpoints"


def _problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint, or ``None``."""
    if not _NAME.fullmatch(folder.name):
        return "not named step-<number>"
    if not folder.is_dir():
        return "not a folder"
    marker = folder / MARKER
    if not marker.is_file():
        return f"no {MARKER} (interrupted while saving)"
    try:
        sizes = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return f"unreadable {MARKER}"
    for name, size in sizes.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{name} missing or truncated"
    return None


def complete_checkpoints(out: Path, report=None) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every complete checkpoint, oldest first; ``report(msg)`` hears each skip."""
    found = []
    root = checkpoint_root(out)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        problem = _problem(folder)
        if problem is None:
            found.append((int(_NAME.fullmatch(folder.name).group(1)), folder))
        elif report is not None:
            report(f"skipping {folder}: {problem}")
    return sorted(found)


def latest_checkpoint(out: Path, report=None) -> Path | None:
    """The newest complete checkpoint under ``out``, or ``None``."""
    found = complete_checkpoints(out, report)
    return found[-1][1] if found else None


def save_checkpoint(accelerator, out: Path, step: int, keep_last: int) -> Path:
    """Save a resumable state atomically as ``checkpoints/step-<step>``; keep the newest ``keep_last``."""
    root = checkpoint_root(out)
    final, tmp = root / f"step-{step}", root / f"step-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    fault_point("checkpoint-save", step)
    if accelerator.is_main_process:
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / MARKER).write_text(json.dumps({"step": step, "files": files}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        prune(out, keep_last)
    accelerator.wait_for_everyone()
    return final


def prune(out: Path, keep_last: int) -> None:
    """Delete complete checkpoints older than the newest ``keep_last``."""
    for _, folder in complete_checkpoints(out)[:-keep_last]:
        shutil.rmtree(folder)
