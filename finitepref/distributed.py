r"""Opt-in sharding of the exact argmin over ``torch.distributed`` ranks (DESIGN.md, "Scale-out").

Never implicit: pass ``group=`` to :func:`finitepref._argmin.argmin_rows` or run the estimators
inside ``with finitepref.distributed.sharded(group):`` (``group`` a process group, or ``"world"``
for the default one). Every rank must make the same calls with the same arguments and data.

How it stays exact
    The policy rows are split into contiguous per-rank ranges (:func:`row_range`; uneven splits
    are fine, a rank may hold no row). Each rank runs the usual chunked, fused argmin on its range;
    the per-trial minimum is all-reduced (MIN), every rank resolves the tie rule of
    :mod:`finitepref._argmin` against that *global* minimum on its own rows, and the resulting
    indices are all-reduced (MIN): the lowest global index within tolerance of the global minimum,
    the answer of one process, bit for bit. Per trial this moves one float64 and one int64 per
    rank (plus one flag per call, so that an error on one rank is raised on all of them instead of
    leaving the others waiting). This module is the only place that talks to ``torch.distributed``.

Class reductions
    R, :math:`C_\Pi` and :math:`\ell_\infty` concentrability are maxima over the policies
    (:func:`max_over_rows`: each rank its rows, then MAX: exact); the KL tables are per-policy values
    (:func:`table_over_rows`: each rank fills its rows of a zero vector, then SUM: exact, as
    :math:`x + 0 = x`).
"""

from __future__ import annotations

import contextlib
import contextvars
import time

import torch

Tensor = torch.Tensor

__all__ = ["sharded", "current_group", "row_range", "all_min", "any_error", "shared_errors", "bytes_per_trial",
           "max_over_rows", "table_over_rows"]

TIMING = {"reduce_s": 0.0, "calls": 0}
"""Seconds spent in this module's collectives (waiting for the slowest rank included), for the benchmark."""

_GROUP: contextvars.ContextVar = contextvars.ContextVar("finitepref_group", default=None)


def _resolve(group):
    import torch.distributed as dist

    if isinstance(group, str):
        if group != "world":
            raise ValueError(f"group: expected a process group or 'world', got {group!r}")
        group = dist.group.WORLD
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("group: expected an initialised torch.distributed process group, got none initialised")
    return group


@contextlib.contextmanager
def sharded(group="world"):
    """Within the block, every exact argmin is sharded over ``group``."""
    token = _GROUP.set(_resolve(group))
    try:
        yield
    finally:
        _GROUP.reset(token)


def current_group(group=None):
    """``group`` when given (resolved), else the one of the enclosing :func:`sharded` block, else ``None``."""
    if group is not None:
        return _resolve(group)
    return _GROUP.get()


def _rank_world(group) -> tuple[int, int]:
    import torch.distributed as dist

    return dist.get_rank(group), dist.get_world_size(group)


def row_range(n_rows: int, group) -> tuple[int, int]:
    """The contiguous rows ``[lo, hi)`` of this rank: rank r of w holds ``[r n / w, (r + 1) n / w)``."""
    if group is None:
        return 0, n_rows
    rank, world = _rank_world(group)
    return rank * n_rows // world, (rank + 1) * n_rows // world


def all_min(t: Tensor, group) -> Tensor:
    """Elementwise minimum over the ranks (in place; returns ``t``)."""
    if group is not None:
        import torch.distributed as dist

        t0 = time.perf_counter()
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=group)
        TIMING["reduce_s"] += time.perf_counter() - t0
        TIMING["calls"] += 1
    return t


def any_error(failed: bool, group) -> bool:
    """True on every rank when any rank failed (one collective, so no rank is left waiting)."""
    if group is None:
        return failed
    import torch.distributed as dist

    flag = torch.tensor([1 if failed else 0], dtype=torch.int64)
    t0 = time.perf_counter()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    TIMING["reduce_s"] += time.perf_counter() - t0
    return bool(flag.item())


class shared_errors:
    """``with shared_errors(group, name):`` a ``ValueError`` raised in the block on one rank is raised on every rank.

    The rank that failed raises its own error; the others raise ``ValueError("<name>: another rank failed (see
    its error)")``. The cost is one collective (:func:`any_error`) as the block ends, so no rank is left waiting
    in the next one. Other exceptions pass through without it. ``group``: a process group, ``"world"``, or
    ``None`` for a plain block.

    A class, not a caught-and-stored exception: an exception kept in a local of a frame that its own traceback
    holds is a reference cycle (frame -> exception -> traceback -> frame), which keeps the frame's process group
    alive after ``destroy_process_group``. Gloo's threads are then torn down at interpreter exit, and the
    process aborts (SIGABRT, "terminate called without an active exception"). Of two-rank runs whose rank 1
    failed and rank 0 waited (2 CPUs, one kept busy), 7 of 89 aborted at exit before this class, 0 of 203 with it.
    """

    def __init__(self, group, name: str = ""):
        self.group, self.name = (None if group is None else _resolve(group)), name

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb) -> bool:
        if typ is not None and not issubclass(typ, ValueError):
            return False
        failed_somewhere = any_error(typ is not None, self.group)  # the collective, on every path
        if failed_somewhere and typ is None:
            prefix = f"{self.name}: " if self.name else ""
            raise ValueError(f"{prefix}another rank failed (see its error)")
        return False


def bytes_per_trial() -> int:
    """Bytes each rank contributes per trial to the reduction: one float64 minimum and one int64 index."""
    return 16


def _chunks(lo: int, hi: int, chunk: int):
    return (slice(start, min(start + chunk, hi)) for start in range(lo, hi, chunk))


def max_over_rows(n_rows: int, chunk: int, fn, group=None, initial: float = 0.0) -> float:
    """``max(initial, fn(rows) for the chunks of rows)`` over this rank's rows, then over the ranks.

    ``fn(slice) -> float``; the scan stops at ``+inf``. A ``ValueError`` on one rank is raised on all."""
    group = current_group(group)
    lo, hi = row_range(n_rows, group)
    best = initial
    with shared_errors(group):
        for rows in _chunks(lo, hi, chunk):
            best = max(best, fn(rows))
            if best == float("inf"):
                break
    if group is None:
        return best
    import torch.distributed as dist

    t = torch.tensor([best], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return float(t.item())


def table_over_rows(out: Tensor, chunk: int, fn, group=None) -> Tensor:
    """Fill ``out[rows] = fn(rows)`` over this rank's rows, zeros elsewhere, then sum over the ranks (exact).

    A ``ValueError`` on one rank is raised on all."""
    group = current_group(group)
    lo, hi = row_range(out.shape[0], group)
    if group is not None:
        out.zero_()
    with shared_errors(group):
        for rows in _chunks(lo, hi, chunk):
            out[rows] = fn(rows)
    if group is not None:
        import torch.distributed as dist

        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out
