"""Record (or recompute) the before/after reference of every shipped tiny config.

Each ``finitepref/llm/configs/tiny/<name>.yaml`` is trained for ``STEPS`` updates on one CPU thread;
the final weights are summarised (sum, sum of squares, a position-weighted sum, all in float64, and
the SHA-256 of the raw bytes) with the last logged metrics. The result is the JSON read by
``tests/llm/test_unchanged.py``.

Run it on a CPU-only machine (or with ``CUDA_VISIBLE_DEVICES=``): the trainer uses a visible GPU.
It only uses ``finitepref.llm.config.load_config`` and ``finitepref.llm.train.train``, which exist
in every version, so it runs against any tree::

    cd /work/wt/orig && PYTHONPATH=$PWD python tests/../<this file> --out /tmp/reference.json

The stored ``tests/llm/data/unchanged_reference.json`` was made from commit 8ff5bad (the code
before the registry refactor, issue 10) with::

    cd <checkout of 8ff5bad> && PYTHONPATH=$PWD OMP_NUM_THREADS=1 \
        python <this repo>/tests/llm/make_reference.py --out tests/llm/data/unchanged_reference.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STEPS = 2
"""Updates per config: enough to pass through every loss, sampling and optimiser path."""


def tiny_names() -> list[str]:
    from finitepref.llm.config import CONFIG_DIR

    return sorted(p.stem for p in (CONFIG_DIR / "tiny").glob("*.yaml") if p.stem != "base")


def fingerprint(name: str, out: Path) -> dict:
    """Train ``tiny/<name>`` for :data:`STEPS` updates into ``out``; summarise weights and metrics."""
    import torch
    from safetensors.torch import load_file

    from finitepref.llm.config import load_config
    from finitepref.llm.train import train

    torch.set_num_threads(1)
    cfg = load_config(f"tiny/{name}", [f"output_dir={out}", "log.tensorboard=false", "log.progress=false",
                                       f"train.max_steps={STEPS}"])
    summary = train(cfg)
    weights = load_file(str(out / "model" / "model.safetensors"))
    digest = hashlib.sha256()
    total = squares = positional = 0.0
    for key in sorted(weights):
        tensor = weights[key].detach().to(torch.float64).flatten()
        digest.update(key.encode())
        digest.update(weights[key].contiguous().numpy().tobytes())
        total += float(tensor.sum())
        squares += float((tensor * tensor).sum())
        positional += float((tensor * torch.linspace(-1.0, 1.0, tensor.numel(), dtype=torch.float64)).sum())
    metrics = {k: float(v) for k, v in summary["metrics"].items() if k not in ("tokens_per_s",)}
    return {"steps": summary["steps"], "weights_sum": total, "weights_sum_sq": squares,
            "weights_positional": positional, "weights_sha256": digest.hexdigest(), "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--only", nargs="*", default=None, help="config names (default: every tiny config)")
    args = ap.parse_args(argv)
    result = {"steps": STEPS, "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or tiny_names():
            result["configs"][name] = fingerprint(name, Path(tmp) / name)
            print(name, result["configs"][name]["weights_sha256"][:16], file=sys.stderr)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
