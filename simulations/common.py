"""Shared plumbing of the simulation scripts: config <-> command line, results files, statistics.

Every script defines one typed config dataclass (a docstring per field in its class docstring),
parses it from the command line with :func:`parse_config`, and writes its outputs through
:func:`write_outputs`, which records the config, seed and package versions next to the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "parse_config", "versions", "write_outputs", "bootstrap_mean_ci", "loglog_slope", "clopper_pearson_upper",
    "log_grid", "to_jsonable",
]


# ---------------------------------------------------------------------- configuration
def _field_help(cls: type) -> dict[str, str]:
    """Per-field help from a numpydoc-like 'Attributes'-free docstring: lines 'name: text'."""
    out: dict[str, str] = {}
    for line in (cls.__doc__ or "").splitlines():
        line = line.strip()
        if ":" in line:
            name, _, text = line.partition(":")
            if name.isidentifier():
                out[name] = text.strip()
    return out


def parse_config(cls: type, argv: list[str] | None = None, description: str | None = None) -> Any:
    """Build a config dataclass from the command line: one ``--field`` per field, ``--quick`` applies ``cls.quick()``."""
    hints = typing.get_type_hints(cls)
    helps = _field_help(cls)
    parser = argparse.ArgumentParser(description=description or (cls.__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small, fast settings (CI and a first look)")
    defaults = cls()
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        origin = typing.get_origin(hint)
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        kwargs: dict[str, Any] = {"help": helps.get(field.name, ""), "default": None, "dest": field.name}
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if origin in (tuple, list):
            inner = typing.get_args(hint)[0]
            kwargs.update(nargs="+", type=inner)
        elif hint in (int, float, str):
            kwargs["type"] = hint
        elif hint is Path:
            kwargs["type"] = Path
        else:
            kwargs["type"] = str
        kwargs["help"] += f" (default: {default})"
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args(argv)
    cfg = cls.quick() if args.quick else cls()
    updates = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    for name, value in updates.items():
        if typing.get_origin(hints[name]) is tuple:
            updates[name] = tuple(value)
    cfg = dataclasses.replace(cfg, **updates)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, paths and dataclasses to JSON-friendly values (inf -> 'inf')."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def versions() -> dict[str, str]:
    """Versions of Python and of every package that produced a result."""
    import matplotlib
    import scipy
    import torch

    import finitepref

    return {
        "python": platform.python_version(), "platform": platform.platform(), "finitepref": finitepref.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "torch": torch.__version__,
        "pandas": pd.__version__, "matplotlib": matplotlib.__version__,
    }


def write_outputs(out: Path, name: str, cfg: Any, table: pd.DataFrame, summary: dict[str, Any],
                  figure=None, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``{name}.csv``, ``summary.json``, ``config.json`` and (if given) ``{name}.png``/``.pdf``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "summary": out / "summary.json", "config": out / "config.json"}
    table.to_csv(paths["csv"], index=False, float_format="%.10g")
    meta = {"script": f"simulations.{name}", "argv": sys.argv, "seed": getattr(cfg, "seed", None),
            "config": to_jsonable(cfg), "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if extra:
        meta.update(to_jsonable(extra))
    paths["config"].write_text(json.dumps(meta, indent=2) + "\n")
    paths["summary"].write_text(json.dumps(to_jsonable(summary), indent=2) + "\n")
    if figure is not None:
        for ext in ("png", "pdf"):
            paths[ext] = out / f"{name}.{ext}"
            figure.savefig(paths[ext], dpi=150, bbox_inches="tight", metadata={"CreationDate": None}
                           if ext == "pdf" else None)
    return paths


# ---------------------------------------------------------------------- statistics
def log_grid(n_min: float, n_max: float, points: int) -> np.ndarray:
    """``points`` integers log-spaced from ``n_min`` to ``n_max`` (inclusive, deduplicated)."""
    return np.unique(np.round(np.logspace(np.log10(n_min), np.log10(n_max), points)).astype(np.int64))


def bootstrap_mean_ci(values: np.ndarray, rng: np.random.Generator, level: float = 0.95,
                      resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (``scipy.stats.bootstrap``); a constant sample gives a point."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=resamples,
                          method="percentile", vectorized=True, random_state=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def loglog_slope(n: np.ndarray, errors: np.ndarray, rng: np.random.Generator, resamples: int = 1000,
                 level: float = 0.95) -> dict[str, Any]:
    """OLS slope of log E[err] on log n, with a CI from resampling trials at each n.

    ``errors`` has shape ``(len(n), trials)``. Returns ``slope``, ``ci_low``, ``ci_high`` (None
    with a ``reason`` when some mean is 0, i.e. the estimator recovered pi* exactly in every trial).
    """
    n = np.asarray(n, dtype=np.float64)
    means = errors.mean(axis=1)
    if len(n) < 2:
        return {"slope": None, "ci_low": None, "ci_high": None, "reason": "fewer than two n in the window"}
    if np.any(means <= 0):
        return {"slope": None, "ci_low": None, "ci_high": None,
                "reason": "E[KL] = 0 at some n of the window (exact recovery: the finite-class regime)"}
    x = np.log(n)
    slope = float(np.polyfit(x, np.log(means), 1)[0])
    trials = errors.shape[1]
    boots = np.empty(resamples)
    for b in range(resamples):
        idx = rng.integers(trials, size=(len(n), trials))
        m = np.take_along_axis(errors, idx, axis=1).mean(axis=1)
        boots[b] = np.polyfit(x, np.log(np.maximum(m, np.finfo(float).tiny)), 1)[0]
    alpha = (1 - level) / 2
    return {"slope": slope, "ci_low": float(np.quantile(boots, alpha)), "ci_high": float(np.quantile(boots, 1 - alpha))}


def clopper_pearson_upper(k: int, trials: int, level: float = 0.95) -> float:
    """Upper limit of the exact (Clopper-Pearson) two-sided ``level`` CI for a binomial proportion."""
    return float(stats.binomtest(int(k), int(trials)).proportion_ci(confidence_level=level, method="exact").high)
