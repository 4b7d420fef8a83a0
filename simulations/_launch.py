"""Every simulation script under ``torchrun``: launcher detection, the start check, the two splits.

``torchrun --nproc-per-node K -m simulations.<name> [flags]`` (or ``--nnodes``/``--rdzv-*`` across
machines; any launcher that sets ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) runs
the script's one main flow (:func:`simulations._runner.main`) on K processes. With ``WORLD_SIZE``
unset or 1 nothing changes: no process group is made.

Under a launcher (:func:`launched`)
    1. A gloo process group is made (the toy core computes in float64 on the CPU, so its tensors
       travel over gloo even on GPU machines), with a timeout of ``FINITEPREF_DIST_TIMEOUT`` seconds
       (default 300) on every collective.
    2. Start check (:func:`check_same_run`): every rank's script, config hash
       (:func:`simulations._runner.config_hash`: every setting, the seed included, but not the output
       folder), ``finitepref`` version, git commit and split are gathered; a rank that differs from
       rank 0 makes every rank refuse, with one message naming the ranks and what differs.
    3. The script's ``run(cfg)`` runs on every rank, split one of two ways:

       - ``rows`` (the default): inside :func:`finitepref.distributed.sharded`, so every exact argmin
         and class reduction splits the policy rows over the ranks and reduces to the one-process
         answer, bit for bit. Every rank draws the same data from the same seeds.
       - ``cells`` (``--shard``, for scripts whose sweep goes through :func:`map_cells`): rank r
         computes cells r, r + K, r + 2K, ... of the sweep alone, unsharded; the results are
         gathered to every rank and put back in the one-process order before anything is summarised.
    4. Rank 0 alone plots, writes the outputs (atomically, after the reduction) and prints the
       verdicts (:func:`on_rank0`); every rank learns whether that worked and exits accordingly.
       Only rank 0 draws progress bars (the package sets ``TQDM_DISABLE`` on the other ranks).

Failures: an error on one rank inside a sharded argmin, a cell or rank 0's writing is raised on every
rank; a rank that dies leaves the others failing at their next collective (gloo notices the closed
connection, or the timeout expires), each printing which rank it is and why, never hanging. As rank 0
writes only after the last reduction and writes atomically, the output folder then holds the previous
whole run or nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Job", "launched", "check_launch", "check_same_run", "map_cells", "on_rank0", "is_main", "world_size",
           "TIMEOUT_ENV", "DEFAULT_TIMEOUT_S"]

TIMEOUT_ENV = "FINITEPREF_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
"""Seconds a collective waits for the other ranks before failing (``FINITEPREF_DIST_TIMEOUT``)."""


@dataclass(frozen=True)
class Job:
    """One launched run of a script, as this process sees it.

    name: the script (``simulations.<name>``)
    rank: this process's global rank
    world: number of processes
    split: ``"one process"``, ``"rows"`` (policy rows of every argmin) or ``"cells"`` (``--shard``)
    """

    name: str
    rank: int
    world: int
    split: str


_JOB: contextvars.ContextVar[Job | None] = contextvars.ContextVar("finitepref_job", default=None)


def world_size() -> int:
    """``WORLD_SIZE`` as set by the launcher (1 without one)."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def _env_rank() -> int:
    return int(os.environ.get("RANK") or 0)


def is_main() -> bool:
    """Whether this process is rank 0 (always true without a launcher)."""
    job = _JOB.get()
    return (job.rank if job is not None else _env_rank()) == 0


def timeout_s() -> float:
    """The collective timeout in seconds, from ``FINITEPREF_DIST_TIMEOUT`` (must be > 0)."""
    text = os.environ.get(TIMEOUT_ENV) or str(DEFAULT_TIMEOUT_S)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{TIMEOUT_ENV}: must be a number of seconds > 0, got {text!r}")
    return value


def check_launch(cls: type, shard: bool) -> None:
    """Refuse, before any computing, a launch the script cannot honour; raise ``ValueError`` (a parser error).

    A script whose config sets ``ONE_PROCESS`` (its reason) refuses ``WORLD_SIZE > 1``; ``--shard``
    needs a script whose config sets ``SHARD_CELLS`` (its sweep goes through :func:`map_cells`).
    """
    if world_size() > 1 and getattr(cls, "ONE_PROCESS", ""):
        raise ValueError(f"simulations.{cls.NAME} runs in one process only ({cls.ONE_PROCESS}); launched with "
                         f"WORLD_SIZE={world_size()}: run it with plain python, not torchrun")
    if shard and not getattr(cls, "SHARD_CELLS", False):
        raise ValueError(f"--shard: simulations.{cls.NAME} has no sweep of independent cells to split over the "
                         "ranks; under torchrun without --shard it splits the policy rows of every argmin")
    if world_size() > 1:
        timeout_s()
    elif shard:
        print(f"simulations.{cls.NAME}: --shard splits the sweep's cells over the ranks of a launcher; without "
              "one (WORLD_SIZE=1) it runs as one process: use torchrun --nproc-per-node K -m "
              f"simulations.{cls.NAME} --shard", file=sys.stderr, flush=True)


def _fingerprint(job: Job, cfg: Any) -> dict[str, Any]:
    import finitepref
    from simulations import _runner

    settings = _runner.to_jsonable(cfg)
    return {"script": f"simulations.{job.name}", "config_hash": _runner.config_hash(cfg),
            "finitepref": finitepref.__version__, "git_commit": _runner.git_commit(), "split": job.split,
            "settings": {k: v for k, v in settings.items() if k != "out"} if isinstance(settings, dict) else {}}


def _differences(mine: dict[str, Any], first: dict[str, Any]) -> list[str]:
    """What differs from rank 0's fingerprint: each entry, and for the config each differing field."""
    out = [f"{k} {mine.get(k)!r} (rank 0: {first.get(k)!r})" for k in mine
           if k not in ("settings", "config_hash") and mine.get(k) != first.get(k)]
    if mine["config_hash"] != first["config_hash"]:
        fields = sorted(k for k in {**mine["settings"], **first["settings"]}
                        if mine["settings"].get(k) != first["settings"].get(k))
        out.append("config " + ", ".join(f"{k}={mine['settings'].get(k)!r} (rank 0: {first['settings'].get(k)!r})"
                                         for k in fields))
    return out


def check_same_run(job: Job, cfg: Any) -> None:
    """Every rank runs the same script, config (seed included), code version and split, or every rank refuses.

    Each rank's fingerprint (script, :func:`simulations._runner.config_hash`, ``finitepref`` version,
    git commit, split) is gathered to all; a difference from rank 0 ends every rank with
    ``SystemExit`` naming the ranks and what differs.
    """
    import torch.distributed as dist

    every: list[Any] = [None] * job.world
    dist.all_gather_object(every, _fingerprint(job, cfg))
    differ = {r: _differences(fp, every[0]) for r, fp in enumerate(every)}
    what = "; ".join(f"rank {r}: {', '.join(d)}" for r, d in differ.items() if d)
    if what:
        raise SystemExit(f"simulations.{job.name}: rank {job.rank} of {job.world} refuses to start, the ranks differ "
                         f"from rank 0: {what}. Launch every rank with the same code, flags and seed.")


@contextlib.contextmanager
def launched(name: str, cfg: Any, shard: bool = False):
    """The run of ``simulations.<name>`` in this process: a :class:`Job` (see the module docstring).

    Without a launcher, a one-process job (nothing else happens). Under one, the gloo group is made
    (or, when an enclosing script made it, reused: ``report`` running the experiments), the start
    check done, and the group destroyed at the end. An error is reported with this rank's number.
    """
    if world_size() == 1:
        token = _JOB.set(Job(name, 0, 1, "one process"))
        try:
            yield _JOB.get()
        finally:
            _JOB.reset(token)
        return
    import torch.distributed as dist

    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s()))
    job = Job(name, dist.get_rank(), dist.get_world_size(), "cells" if shard else "rows")
    token = _JOB.set(job)
    try:
        check_same_run(job, cfg)
        yield job
    except Exception as exc:
        _explain(job, exc)
        raise
    finally:
        _JOB.reset(token)
    if owner:
        dist.destroy_process_group()


def _explain(job: Job, exc: BaseException) -> None:
    """One line on stderr saying which rank stopped and what that means for the outputs."""
    print(f"simulations.{job.name}: rank {job.rank} of {job.world} stopped ({type(exc).__name__}: "
          f"{str(exc).splitlines()[0] if str(exc) else ''}). A rank that dies or stalls makes the others fail at their "
          f"next collective, within {timeout_s():g} s ({TIMEOUT_ENV}); outputs are written by rank 0 alone, whole "
          "or not at all.", file=sys.stderr, flush=True)


def compute(job: Job, run: Callable[[Any], Any], cfg: Any) -> Any:
    """``run(cfg)`` under the job's split: sharded policy rows (``rows``), or as is (``cells``, one process)."""
    if job.split != "rows":
        return run(cfg)
    from finitepref import distributed

    with distributed.sharded("world"):
        return run(cfg)


def on_rank0(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on rank 0 only; every rank returns its result, or raises when it failed there.

    Rank 0 re-raises its own error; the others raise ``RuntimeError`` quoting it. Under no launcher,
    plainly ``fn(*args)``.
    """
    job = _JOB.get()
    if job is None or job.world == 1:
        return fn(*args)
    import torch.distributed as dist

    box: list[Any] = [None]
    if job.rank == 0:
        try:
            box[0] = ("ok", fn(*args))
        except Exception as exc:  # re-raised as it is, not kept: see finitepref.distributed.shared_errors
            dist.broadcast_object_list([("error", f"{type(exc).__name__}: {exc}")], src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status != "ok":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def map_cells(fn: Callable[[Any], Any], cells: Iterable[Any], *, desc: str, unit: str = "cell") -> list[Any]:
    """``[fn(c) for c in cells]``, with a progress bar; under ``--shard``, split over the ranks.

    Rank r computes cells r, r + K, ... (round robin: neighbouring cells of a sweep cost alike);
    the results (and any error) are gathered to every rank and returned in the order of ``cells``,
    so what follows is the one-process computation. ``fn`` must depend on its cell only (its own
    seed), not on state an earlier cell changed. Fault point ``cell`` (tests) before each cell.
    """
    from tqdm.auto import tqdm

    from simulations import _runner

    cells = list(cells)
    job = _JOB.get()
    rank, world = (job.rank, job.world) if job is not None and job.split == "cells" else (0, 1)
    mine = range(rank, len(cells), world)
    label = desc if world == 1 else f"{desc} (rank {rank}: {len(mine)} of {len(cells)})"
    done: dict[int, Any] = {}
    error = None
    for i in tqdm(mine, desc=label, unit=unit, disable=not is_main()):
        _runner.fault_point("cell")
        if world == 1:
            done[i] = fn(cells[i])
            continue
        try:
            done[i] = fn(cells[i])
        except Exception as exc:
            error = f"cell {i} on rank {rank}: {type(exc).__name__}: {exc}"
            break
    if world > 1:
        done = _gather_cells(done, error, world)
    return [done[i] for i in range(len(cells))]


def _gather_cells(done: dict[int, Any], error: str | None, world: int) -> dict[int, Any]:
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, (done, error))
    errors = [e for _, e in parts if e is not None]
    if errors:
        raise RuntimeError("; ".join(errors))
    merged: dict[int, Any] = {}
    for part, _ in parts:
        merged.update(part)
    return merged
