"""The skeleton every simulation script shares: its config base, its command line, its one ``main`` flow.

A script defines a frozen config dataclass (a subclass of :class:`ScriptConfig`, or of
:class:`SweepConfig` when it sweeps a log grid of n), a ``run(cfg) -> Outcome`` that sweeps and
summarizes, a ``plot(outcome, cfg)`` and a ``verdicts(outcome, cfg)``; its ``main`` is one line::

    main = _runner.entry(Config, __doc__, run=run, plot=plot, verdicts=verdicts)

which parses, validates (before any computing; a bad value ends in ``parser.error``: one line,
exit status 2), sweeps, summarizes, plots, writes every output atomically and prints the verdicts
(:func:`main`).

Atomic outputs
--------------
``config.json`` records the script, the config and its hash (:func:`config_hash`), the git commit
(:func:`git_commit`) and the package versions; the verdicts (:mod:`simulations.verdicts`) go to
``verdicts.csv`` with the rest. Everything is written into a fresh folder ``.<out>.tmp-XXXX`` beside ``out`` and renamed into place
when complete, so ``out`` holds one whole run or the previous run, never a mix. Replacing an existing
``out`` takes two renames (``out -> .<out>.old-XXXX``, then the new folder ``-> out``) and removes
the old folder; between the two renames (one system call) ``out`` does not exist, and a kill exactly
there leaves the previous complete run in ``.<out>.old-XXXX``. A kill at any other point leaves
``out`` as it was (plus, at worst, a stale ``.tmp-`` folder). Because a run replaces its whole
folder, ``out`` must be new, empty, or a previous run of the same script (:func:`check_output_folder`).

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same flow runs on every rank, split over the ranks
(:mod:`simulations._launch`: the policy rows of every argmin, or with ``--shard`` the cells of the
sweep); rank 0 alone plots, writes and prints, after the last reduction.

Fault injection (tests only): ``FINITEPREF_FAULT=<point>`` raises :class:`InjectedFault` at the named
point of the writer (``after-csv``, ``before-publish``, ``after-old-moved``) or of a sweep (``cell``,
before each cell of :func:`simulations._launch.map_cells`); ``<point>:exit`` ends the process there
with ``os._exit(86)`` instead, as a kill would (no clean-up runs); ``<point>@<rank>`` fires in that
rank of a launched job only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from finitepref import provenance

__all__ = [
    "ScriptConfig", "SweepConfig", "Outcome", "parse_config", "write_outputs", "main", "entry", "sweep_then_summarize",
    "versions", "to_jsonable", "InjectedFault", "fault_point", "MAX_N", "check_sample_grid", "check_output_folder",
    "holds_a_run_of", "config_hash", "git_commit", "parse_command_line",
]

MAX_N = 10**18
"""Largest sample size a sweep accepts (sample sizes are int64)."""

FAULT_ENV = "FINITEPREF_FAULT"


# ---------------------------------------------------------------------- config base classes
@dataclass(frozen=True)
class ScriptConfig:
    """Fields every script has. Every field is a command-line flag (``--field-name``).

    seed: master seed (independent streams via SeedSequence.spawn)
    out: output folder, replaced as a whole by each run (atomically: it holds one whole run or the previous one)
    """

    seed: int = 0
    out: Path | None = None

    NAME: ClassVar[str] = "run"
    """Script name: the default output folder is ``results/NAME`` (``results/NAME_quick`` with ``--quick``)."""
    QUICK: ClassVar[dict[str, Any]] = {}
    """Field values of ``--quick`` (small, fast settings for CI and a first look)."""
    POSITIVE: ClassVar[tuple[str, ...]] = ()
    """Numeric fields (or tuples of numbers) whose values must be > 0."""
    AT_LEAST_ONE: ClassVar[tuple[str, ...]] = ("trials", "bootstrap", "repeats")
    """Integer fields whose values must be >= 1 (when the config has them)."""
    PROBABILITIES: ClassVar[tuple[str, ...]] = ("delta",)
    """Fields whose values must lie in the open interval (0, 1) (when the config has them)."""
    SHARD_CELLS: ClassVar[bool] = False
    """Whether ``--shard`` may split the sweep's cells over torchrun's ranks (its cell loop is
    :func:`simulations._launch.map_cells`); without it, ranks split the policy rows of every argmin."""
    ONE_PROCESS: ClassVar[str] = ""
    """Why the script refuses to run under a launcher with more than one process (empty: it runs there)."""

    def __post_init__(self) -> None:
        if self.out is None:
            object.__setattr__(self, "out", Path(f"results/{self.NAME}"))

    @classmethod
    def quick(cls):
        """The ``--quick`` settings: ``QUICK`` and the folder ``results/NAME_quick``."""
        return cls(**{"out": Path(f"results/{cls.NAME}_quick"), **cls.QUICK})

    def validate(self) -> None:
        """Range-check every numeric field (finite; the declared positive, >= 1 and (0, 1) ones), then :meth:`check`."""
        self._check_ranges()
        self.check()

    def _check_ranges(self) -> None:
        for f in dataclasses.fields(self):
            _check_finite(f.name, getattr(self, f.name))
        for name in self.POSITIVE:
            for v in np.atleast_1d(getattr(self, name)):
                if not v > 0:
                    raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in self.AT_LEAST_ONE:
            if hasattr(self, name) and getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in self.PROBABILITIES:
            if hasattr(self, name) and not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name}: must be in (0, 1), got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0, got {self.seed}")

    def check(self) -> None:
        """Script-specific checks (cross-field rules); raise ``ValueError('field: ...')``."""


@dataclass(frozen=True)
class SweepConfig(ScriptConfig):
    """A sweep over a log grid of sample sizes. Every field is a command-line flag (``--field-name``).

    n_min: smallest sample size
    n_max: largest sample size
    n_points: number of log-spaced sample sizes
    trials: independent data sets per sample size
    bootstrap: bootstrap resamples for CIs
    """

    n_min: float = 10
    n_max: float = 1e5
    n_points: int = 5
    trials: int = 1000
    bootstrap: int = 1000

    def _check_ranges(self) -> None:
        """The base checks, then ``1 <= n_min <= n_max <= MAX_N`` and ``n_points >= 1``."""
        super()._check_ranges()
        check_sample_grid(self.n_min, self.n_max, self.n_points)


def check_sample_grid(n_min: float, n_max: float, n_points: int) -> None:
    """``1 <= n_min <= n_max <= MAX_N`` (finite) and ``n_points >= 1``; raise ``ValueError`` naming the field."""
    if not 1 <= n_min <= n_max <= MAX_N:
        raise ValueError(f"n_min, n_max: need 1 <= n_min <= n_max <= {MAX_N:.0e}, got n_min={n_min}, n_max={n_max}")
    if n_points < 1:
        raise ValueError(f"n_points: must be >= 1, got {n_points}")


def _check_finite(name: str, value: Any) -> None:
    values = value if isinstance(value, (tuple, list)) else value.values() if isinstance(value, dict) else [value]
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v):
            raise ValueError(f"{name}: must be finite, got {value}")


# ---------------------------------------------------------------------- command line
def _field_help(cls: type) -> dict[str, str]:
    """Per-field help from the class docstrings of ``cls`` and its bases: lines ``name: text``."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for line in (klass.__doc__ or "").splitlines():
            name, sep, text = line.strip().partition(":")
            if sep and name.isidentifier():
                out[name] = text.strip()
    return out


def _output_folder(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text)


def _mapping(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected name=number, got {text!r}")
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected name=number, got {text!r}") from None


def holds_a_run_of(folder: Path, name: str) -> bool:
    """Whether ``folder`` is empty or holds results of ``simulations.<name>`` (so that a new run may replace it)."""
    folder = Path(folder)
    if not any(folder.iterdir()):
        return True
    if (folder / f"{name}.csv").is_file() or (folder / f"{name}.json").is_file():
        return True
    try:
        return json.loads((folder / "config.json").read_text()).get("script") == f"simulations.{name}"
    except (OSError, ValueError, AttributeError):
        return False


def check_output_folder(out: Path, name: str | None = None) -> None:
    """``out`` must be new, empty or a previous run of ``name``, in a writable folder, not a file.

    A run replaces the whole folder, so a folder holding anything else (``--out .``, ``--out ~``)
    is refused. Raises ``ValueError`` naming ``out``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder")
    if name is not None and out.is_dir() and not holds_a_run_of(out, name):
        raise ValueError(f"out: {str(out)!r} holds files that are not a run of simulations.{name}, and a run replaces "
                         "its whole folder; choose a new or empty folder")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"out: cannot create {str(out)!r}: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"out: cannot create {str(out)!r}: {str(parent)!r} is not writable")


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, hint: Any, default: Any, help_: str) -> None:
    flag = "--" + f.name.replace("_", "-")
    kwargs: dict[str, Any] = {"default": None, "dest": f.name}
    shown = ", ".join(f"{k}={v:g}" for k, v in default.items()) if isinstance(default, dict) else default
    kwargs["help"] = f"{help_} (default: {shown})"
    if hint is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        kwargs.update(nargs="+", type=typing.get_args(hint)[0])
    elif hint is dict or origin is dict:
        kwargs.update(nargs="+", type=_mapping, metavar="NAME=VALUE")
    elif f.name == "out":
        kwargs["type"] = _output_folder
    elif hint in (int, float, str, Path):
        kwargs["type"] = hint
    else:
        kwargs["type"] = str
    parser.add_argument(flag, **kwargs)


def build_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    """One ``--field`` per field of ``cls`` (help from the docstrings, each default shown once) and ``--quick``."""
    hints = typing.get_type_hints(cls)
    helps = _field_help(cls)
    parser = argparse.ArgumentParser(prog=f"python -m simulations.{cls.NAME}",
                                     description=description or (cls.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, fast settings (CI and a first look)")
    parser.add_argument("--shard", action="store_true",
                        help="under torchrun: split the sweep's cells over the ranks instead of the policy rows of "
                             "every argmin (scripts with a sweep of independent cells; see the README)")
    defaults = cls()
    for f in dataclasses.fields(cls):
        _add_field(parser, f, hints[f.name], getattr(defaults, f.name), helps.get(f.name, ""))
    return parser


def parse_config(cls: type, argv: list[str] | None = None, description: str | None = None) -> Any:
    """Build and validate a config from the command line; any invalid value ends in ``parser.error`` (exit 2).

    ``--quick`` starts from ``cls.quick()``; every given flag overrides a field. Validation (the
    config's ``validate`` and the output folder) happens here, before any computing.
    """
    return parse_command_line(cls, argv, description)[0]


def parse_command_line(cls: type, argv: list[str] | None = None, description: str | None = None) -> tuple[Any, bool]:
    """:func:`parse_config` and the ``--shard`` flag, checked against the launcher (:func:`simulations._launch.check_launch`)."""
    from simulations import _launch

    parser = build_parser(cls, description)
    args = parser.parse_args(argv)
    hints = typing.get_type_hints(cls)
    updates = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name)
        if value is None:
            continue
        origin = typing.get_origin(hints[f.name])
        updates[f.name] = tuple(value) if origin is tuple else dict(value) if hints[f.name] is dict else value
    try:
        cfg = dataclasses.replace(cls.quick() if args.quick else cls(), **updates)
        if hasattr(cfg, "validate"):
            cfg.validate()
        if hasattr(cfg, "out"):
            check_output_folder(cfg.out, cls.NAME)
        _launch.check_launch(cls, args.shard)
    except (ValueError, TypeError) as err:
        parser.error(str(err).splitlines()[0])
    return cfg, args.shard


# ---------------------------------------------------------------------- results files
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
    """Versions of Python and of every package that produced a result (:func:`finitepref.provenance.versions`)."""
    return provenance.versions(provenance.SCIENTIFIC)


def config_hash(cfg: Any) -> str:
    """SHA-256 (first 16 hex digits) of the config without its output folder: equal settings, equal hash."""
    import hashlib

    fields = to_jsonable(cfg) if cfg is not None else {}
    if isinstance(fields, dict):
        fields = {k: v for k, v in fields.items() if k != "out"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


git_commit = provenance.git_commit


class InjectedFault(RuntimeError):
    """Raised by :func:`fault_point` when ``FINITEPREF_FAULT`` names the point (tests only)."""


def fault_point(name: str) -> None:
    """Fail here if ``FINITEPREF_FAULT`` is ``name`` (raise) or ``name:exit`` (``os._exit(86)``, like a kill).

    ``name@R`` (``name@R:exit``) fails only in the process of rank ``R`` of a launcher (``RANK``), so a
    test can make one rank of a torchrun job die.
    """
    wanted, _, how = os.environ.get(FAULT_ENV, "").partition(":")
    point, _, rank = wanted.partition("@")
    if point != name or how not in ("", "exit") or (rank and rank != (os.environ.get("RANK") or "0")):
        return
    if how == "exit":
        os._exit(86)
    raise InjectedFault(f"injected fault at {name!r} ({FAULT_ENV})")


def _publish(staging: Path, out: Path) -> None:
    """Rename the complete ``staging`` folder to ``out``, replacing a previous ``out`` (see the module docstring)."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.rename(out, old)  # replaces the empty folder just made
    fault_point("after-old-moved")
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_file(path: Path, content: Any) -> None:
    if isinstance(content, pd.DataFrame):
        content.to_csv(path, index=False, float_format="%.10g")
    elif isinstance(content, tuple):  # (DataFrame, float_format)
        content[0].to_csv(path, index=False, float_format=content[1])
    elif isinstance(content, Path):
        shutil.move(str(content), str(path))
    else:
        path.write_text(content)


def write_outputs(out: Path, name: str, cfg: Any, table: pd.DataFrame | None, summary: dict[str, Any],
                  figure=None, extra: dict[str, Any] | None = None,
                  files: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``{name}.csv``, ``summary.json``, ``config.json``, the figure and ``files``, atomically.

    ``out`` is replaced as a whole; it must be new, empty or a previous run of ``name``
    (:func:`check_output_folder`).

    ``files`` maps more file names to a DataFrame (CSV, ``%.10g``), a ``(DataFrame, float_format)``
    pair, a string, or a path to move in (a file or a folder). Returns the final paths.
    """
    out = Path(out).absolute()
    check_output_folder(out, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    names: dict[str, str] = {} if table is None else {"csv": f"{name}.csv"}
    try:
        if table is not None:
            _write_file(staging / names["csv"], table)
        fault_point("after-csv")
        meta = {"script": f"simulations.{name}", "argv": sys.argv, "seed": getattr(cfg, "seed", None),
                "config": to_jsonable(cfg), "config_hash": config_hash(cfg), "git_commit": git_commit(),
                "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        meta.update(to_jsonable(extra or {}))
        names.update(summary="summary.json", config="config.json")
        _write_file(staging / names["config"], json.dumps(meta, indent=2) + "\n")
        _write_file(staging / names["summary"], json.dumps(to_jsonable(summary), indent=2) + "\n")
        for ext in ("png", "pdf") if figure is not None else ():
            names[ext] = f"{name}.{ext}"
            figure.savefig(staging / names[ext], dpi=150, bbox_inches="tight",
                           metadata={"CreationDate": None} if ext == "pdf" else None)
        for file_name, content in (files or {}).items():
            names[file_name] = file_name
            _write_file(staging / file_name, content)
        fault_point("before-publish")
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {key: out / value for key, value in names.items()}


# ---------------------------------------------------------------------- the one main flow
@dataclass
class Outcome:
    """What a script's ``run`` returns: the table and summary it writes, and what its figure needs.

    table: the per-row results, written as ``{name}.csv``
    summary: the summary, written as ``summary.json`` and returned by ``main``
    extra: more entries of ``config.json``
    files: more files to write (see :func:`write_outputs`)
    data: anything else ``plot`` and ``verdicts`` read
    config: the config to record in ``config.json`` when it differs from the parsed one (e.g. a chosen setting)
    """

    table: pd.DataFrame | None
    summary: dict[str, Any]
    extra: dict[str, Any] | None = None
    files: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    config: Any = None


def sweep_then_summarize(sweep: Callable[[Any], tuple[pd.DataFrame, Any]],
                         summarize: Callable[[Any, pd.DataFrame, Any], dict]) -> Callable[[Any], Outcome]:
    """The ``run`` of a script whose ``sweep(cfg)`` returns ``(table, raw)`` and ``summarize(cfg, table, raw)`` the summary."""

    def run(cfg: Any) -> Outcome:
        table, raw = sweep(cfg)
        return Outcome(table, summarize(cfg, table, raw))

    return run


def entry(cls: type, doc: str | None, *, run: Callable[[Any], Outcome], plot: Callable[[Outcome, Any], Any] | None,
          verdicts: Callable[[Outcome, Any], list[Any]]) -> Callable[[list[str] | None], dict]:
    """A script's ``main(argv=None) -> summary``: :func:`main` with the script's config and stages."""

    def script_main(argv: list[str] | None = None) -> dict:
        return main(cls.NAME, cls, argv, doc, run=run, plot=plot, verdicts=verdicts)

    script_main.__doc__ = f"Run simulations.{cls.NAME} from the command line (see its module docstring); returns the summary."
    return script_main


def main(name: str, cls: type, argv: list[str] | None, doc: str | None, *, run: Callable[[Any], Outcome],
         plot: Callable[[Outcome, Any], Any] | None, verdicts: Callable[[Outcome, Any], list[Any]]) -> dict:
    """Parse and validate ``cls`` from ``argv``, ``run`` (sweep + summarize), ``plot``, write atomically, print verdicts.

    Under ``torchrun`` (:mod:`simulations._launch`) every rank runs ``run``, split over the ranks,
    and rank 0 alone plots, writes and prints; every rank returns the summary.
    """
    from simulations import _launch

    cfg, shard = parse_command_line(cls, argv, description=(doc or "").split("\n\n")[0])
    with _launch.launched(name, cfg, shard) as job:
        outcome = _launch.compute(job, run, cfg)
        launch = {"launch": {"world_size": job.world, "split": job.split}}
        return _launch.on_rank0(_finish, name, cfg, outcome, launch, plot, verdicts)


def _finish(name: str, cfg: Any, outcome: Outcome, launch: dict, plot: Callable[[Outcome, Any], Any] | None,
            verdicts: Callable[[Outcome, Any], list[Any]]) -> dict:
    """Plot, write every output atomically, print the verdicts; returns the summary."""
    import matplotlib.pyplot as plt

    from simulations import verdicts as _verdicts

    figure = plot(outcome, cfg) if plot is not None else None
    stated = list(verdicts(outcome, cfg))
    judged = [v for v in stated if isinstance(v, _verdicts.Verdict)]
    files = dict(outcome.files)
    if judged:
        files["verdicts.csv"] = _verdicts.to_frame(judged, script=name)
    try:
        paths = write_outputs(cfg.out, name, outcome.config or cfg, outcome.table, outcome.summary, figure,
                              {**(outcome.extra or {}), **launch}, files)
    finally:
        if figure is not None:
            plt.close(figure)
    for item in stated:
        print(item.line() if isinstance(item, _verdicts.Verdict) else item)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return outcome.summary
