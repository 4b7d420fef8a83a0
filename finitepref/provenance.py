"""Where a result came from: the versions of the packages that produced it and the source commit.

Every results file of the package carries them (the simulations' ``config.json``, the LLM trainer's
``summary.json``, the throughput benchmark's ``summary.json``), so a number can be traced to the code
and the libraries that made it.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

SCIENTIFIC = ("numpy", "scipy", "torch", "pandas", "matplotlib")
"""The toy core's and the simulations' packages."""

LLM = ("torch", "transformers", "accelerate", "peft", "tokenizers", "trl", "deepspeed")
"""The LLM trainer's packages (the optional ones are left out when not installed)."""


def versions(packages: tuple[str, ...] = SCIENTIFIC) -> dict[str, str]:
    """Python's, the platform's, finitepref's and each installed package's version."""
    from finitepref import __version__

    out = {"python": platform.python_version(), "platform": platform.platform(), "finitepref": __version__}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The commit of the source tree that ran; with uncommitted changes to tracked files, ``+dirty.<hash of the
    diff>`` (so two runs of the same edited tree match, and an edit does not); None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD"], cwd=root, capture_output=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (f"+dirty.{hashlib.sha256(diff).hexdigest()[:12]}" if diff else "")
