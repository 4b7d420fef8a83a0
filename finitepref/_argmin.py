r"""The chunked exact argmin shared by every estimator: total, and independent of the chunking.

An estimator's objective for policy :math:`k` and trial :math:`t` is the inner product of a
table row :math:`T_k` (losses, built chunk by chunk over :math:`k`) and a statistics row
:math:`s_t` (counts, or counts times functions of a fitted reward).

Totality
    * :math:`0\times\infty = 0` by construction: a ``±inf`` table entry contributes only where the
      statistic is non-zero (with the product's sign); finite entries go through the matrix product.
    * Overflow cannot occur: the statistics are scaled by one power of two so that every trial's
      :math:`\sum|s_t|\le 1/2`; a power of two is exact, so values, ties and the argmin are those of
      the unscaled objective (barring subnormals).
    * Anything left undefined raises ``ValueError`` naming the estimator: NaN in the table, non-finite
      statistics, :math:`\infty-\infty` within one objective, or a trial whose every objective is
      ``±inf``.

Tie rule (a function of the values alone)
    The result is the **lowest index whose value is within** ``TIE_RTOL`` **(relative) of the global
    minimum** :math:`v^* = \min_k v_k`, i.e. :math:`\min\{k : v_k \le v^* + 10^{-12}|v^*|\}`. The
    tolerance absorbs the rounding of the matrix product (two identical rows may round differently).
    Pass 1 keeps, per chunk and trial, the chunk minimum and the first index within tolerance of the
    running minimum; a trial whose first candidate chunk was judged against a larger running minimum
    than the final one, and whose recorded index is then not within tolerance, gets a second look at
    that one chunk (pass 2). The common case is one pass.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = ["TIE_RTOL", "argmin_rows", "chunk_rows", "check_stats"]

TIE_RTOL = 1e-12
GROUP = 32
"""Rows per group of the minima in pass 1 (a multiple of it is the default chunk size)."""


def chunk_rows(n_columns: int, n_trials: int, chunk_size, device_type: str = "cpu") -> int:
    """Rows per chunk: ``chunk_size`` (an integer >= 1) or a cache-sized default (:func:`_default_chunk`; on an
    accelerator, blocks of about 256 MiB, where large products are what keeps it busy)."""
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size: expected an integer >= 1 or None, got {chunk_size!r}")
        return int(chunk_size)
    if device_type != "cpu":
        return max(1024, 256 * 2**20 // (8 * max(n_columns, n_trials, 1)))
    return _default_chunk(n_columns, n_trials)


def _cache_bytes(level: int, default: int) -> int:
    """Size of the data or unified cache of ``level`` that cpu0 reports (sysfs), or ``default``."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(root.glob("index*")):
            if int((index / "level").read_text()) == level and (index / "type").read_text().strip() != "Instruction":
                text = (index / "size").read_text().strip().upper()
                unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
                return int(text.rstrip("KMG")) * unit
    except (OSError, ValueError):
        pass
    return default


@functools.lru_cache(maxsize=None)
def _default_chunk(n_columns: int, n_trials: int) -> int:
    """Rows per chunk from the problem's shape and the cache: the ``(trials, rows)`` block of values plus the
    ``(rows, columns)`` table chunk take an eighth of the last-level cache (a share of a shared L3; L2 when no L3
    is reported), at least 64 rows (the matrix product keeps its efficiency), at most 2**16, rounded down to a
    multiple of ``GROUP``.

    Measured (one thread, K = 40,401, 104 columns, 1000 trials, L2 = 1 MiB, L3 = 32 MiB): 256-1024 rows are
    within noise of each other; 64 rows (an L2-sized block) is 20% slower, 4096 rows 25% slower.
    """
    per_row = 8 * (max(n_trials, 1) + max(n_columns, 1))
    rows = int(min(max(max(_cache_bytes(3, 0), _cache_bytes(2, 2**20)) // (8 * per_row), 64), 2**16))
    return rows - rows % GROUP  # whole groups of the pass-1 minima


def check_stats(name: str, stats: Tensor, source: str) -> Tensor:
    """Reject non-finite statistics (e.g. rewards times counts beyond the float64 range)."""
    bad = ~torch.isfinite(stats)
    if bad.any():
        t, j = (int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"{name}: {source}: expected finite statistics, got {float(stats[t, j])} "
                         f"(trial {t}, column {j}); rescale the rewards or eta")
    return stats


def _power_of_two_scale(stats: Tensor) -> Tensor:
    """Scale every statistic by one power of two so that each trial's ``sum |s|`` is at most 1/2."""
    norm = float(stats.abs().sum(1).max()) if stats.numel() else 0.0
    if norm == 0.0:
        return stats
    _, exponent = np.frexp(norm)  # norm < 2**exponent
    return stats * float(np.ldexp(1.0, -int(exponent) - 1))


def _table_has_inf(name: str, table: Tensor, start: int) -> bool:
    """Whether a chunk of the table holds ``±inf`` (NaN is an error). A finite sum (one pass) rules both out;
    otherwise (or on overflow, which then only costs the masked product) the entries are looked at."""
    if bool(torch.isfinite(table.sum())):
        return False
    peak = table.abs().amax()
    if torch.isnan(peak):
        k = int(torch.nonzero(torch.isnan(table))[0][0])
        raise ValueError(f"{name}: the loss table of policy {start + k} holds NaN; check gamma, beta, eta and the "
                         "class's log-probabilities")
    return bool(torch.isinf(peak))


def _chunk_values(name: str, stats: Tensor, table: Tensor, start: int, checked: bool, out: Tensor | None = None):
    """Objective values ``stats @ table.T`` (trials, rows), with ``0 * inf = 0``, their minima over groups of
    ``GROUP`` rows and the chunk minimum per trial; NaN, ``inf - inf`` and ``-inf`` minima are errors.

    A chunk not yet ``checked`` (freshly built) is checked first: NaN is an error, ``±inf`` takes the masked
    product. A checked chunk (a cached table: no NaN) takes the plain product, which equals the masked one
    unless some minimum is NaN or ``-inf`` (a ``±inf`` entry meets a zero statistic, or the other sign); only
    then is the chunk multiplied with the mask. ``out``: a reused ``(trials, rows)`` buffer (no new pages per
    chunk; the product is the same call)."""
    if not checked and _table_has_inf(name, table, start):
        values = _masked_values(stats, table)
    elif out is not None and out.shape == (stats.shape[0], table.shape[0]):
        values = torch.mm(stats, table.T, out=out)
    else:
        values = stats @ table.T  # (trials, rows): the reductions below run along contiguous memory
    groups = _group_mins(values)
    cmin = torch.amin(groups, dim=1)
    if bool((cmin > -np.inf).all()):  # one test (NaN fails it too) in the common case
        return values, groups, cmin
    if checked and _table_has_inf(name, table, start):
        values = _masked_values(stats, table)
        groups = _group_mins(values)
        cmin = torch.amin(groups, dim=1)
    _check_values(name, cmin, start, values)
    return values, groups, cmin


def _masked_values(stats: Tensor, table: Tensor) -> Tensor:
    """``stats @ table.T`` where a ``±inf`` entry counts only against a non-zero statistic."""
    finite = torch.where(torch.isfinite(table), table, torch.zeros_like(table))
    values = stats @ finite.T
    pos_t, neg_t = (table == np.inf).to(stats.dtype), (table == -np.inf).to(stats.dtype)
    pos_s, neg_s = (stats > 0).to(stats.dtype), (stats < 0).to(stats.dtype)
    up = (pos_s @ pos_t.T + neg_s @ neg_t.T) > 0
    down = (pos_s @ neg_t.T + neg_s @ pos_t.T) > 0
    values = torch.where(up, torch.full_like(values, np.inf), values)
    values = torch.where(down, torch.full_like(values, -np.inf), values)
    return torch.where(up & down, torch.full_like(values, np.nan), values)


def _threshold(best: Tensor) -> Tensor:
    return best + TIE_RTOL * best.abs()


def _check_values(name: str, cmin: Tensor, start: int, values: Tensor) -> None:
    if torch.isnan(cmin).any():
        t = int(torch.nonzero(torch.isnan(cmin))[0])
        k = start + int(torch.nonzero(torch.isnan(values[t]))[0])
        raise ValueError(f"{name}: the objective of policy {k} is undefined (inf - inf) for trial {t}; the loss "
                         "table holds +-inf where the statistics have both signs")
    if torch.isneginf(cmin).any():
        t = int(torch.nonzero(torch.isneginf(cmin))[0])
        raise ValueError(f"{name}: the objective is -inf for trial {t}; the minimum is not attained by a unique "
                         "finite value")


def argmin_rows(build: Callable[[slice], Tensor], n_rows: int, stats: Tensor, chunk_size=None, *,
                name: str = "argmin", key=None, group=None) -> np.ndarray:
    """Row index minimising ``build(rows) @ stats.T`` for every trial, by the module's tie rule.

    Parameters
    ----------
    build : callable
        ``build(slice) -> Tensor (rows, columns)``: the table rows of a chunk (rebuilt in pass 2).
    n_rows : int
        Number of table rows (policies or rewards).
    stats : Tensor (trials, columns)
        Statistics, finite (see :func:`check_stats`).
    chunk_size : int, optional
        Rows per chunk; the result does not depend on it.
    name : str
        Estimator name for error messages.
    key : finitepref._tablecache.TableKey, optional
        Cache the table under this key (:mod:`finitepref._tablecache`); ``None`` streams it.
    group : process group or "world", optional
        Shard the rows over ranks (:mod:`finitepref.distributed`); default: the enclosing
        ``distributed.sharded`` block, else one process. The result is the same bit for bit.

    Returns
    -------
    ndarray of int64, shape (trials,)
    """
    from . import _tablecache, distributed

    group = distributed.current_group(group)
    lo, hi = distributed.row_range(n_rows, group)
    chunk = chunk_rows(stats.shape[1], stats.shape[0], chunk_size, stats.device.type)
    stats = _power_of_two_scale(stats)
    source = _tablecache.Source(build, lo, hi, key)
    starts = list(range(lo, hi, chunk))
    with distributed.shared_errors(group, name):
        source.fill(chunk, lambda table, start: _table_has_inf(name, table, start))
        scan = _scan(name, source, hi, stats, chunk, starts)
    best = distributed.all_min(scan[0], group)
    out = _resolve(name, source, hi, stats, chunk, starts, best, *scan[1:], n_rows)
    return distributed.all_min(out, group).cpu().numpy()


def _scan(name: str, source, hi: int, stats: Tensor, chunk: int, starts: list[int]):
    """Pass 1, fused per chunk: one matrix product into a reused block, its minima over groups of ``GROUP``
    rows, and, when the chunk reaches the running threshold of some trial, the first index within tolerance of
    the running minimum (:func:`_first_within`, a small gather, not a pass over the block)."""
    trials = stats.shape[0]
    best = torch.full((trials,), np.inf, dtype=torch.float64, device=stats.device)
    mins = torch.full((len(starts), trials), np.inf, dtype=torch.float64, device=stats.device)
    firsts = torch.zeros((len(starts), trials), dtype=torch.int64, device=stats.device)
    first_vals = torch.full((len(starts), trials), np.inf, dtype=torch.float64, device=stats.device)
    block = stats.new_empty((trials, min(chunk, max(hi - starts[0], 0) if starts else 0)))
    ranges = (torch.arange(trials, device=stats.device), torch.arange(GROUP, device=stats.device))
    for c, start in enumerate(starts):
        table = source(slice(start, min(start + chunk, hi)))
        values, groups, cmin = _chunk_values(name, stats, table, start, source.cached, block)
        torch.minimum(best, cmin, out=best)
        mins[c] = cmin
        thr = _threshold(best)
        if bool((cmin <= thr).any()):  # a trial whose chunk minimum is above its running threshold never picks it
            _first_within(values, groups, thr, start, firsts[c], first_vals[c], ranges)
    return best, mins, firsts, first_vals


def _group_mins(values: Tensor) -> Tensor:
    """Minima of ``values`` (trials, rows) over consecutive groups of ``GROUP`` rows (the last group may be
    shorter), shape (trials, ceil(rows / GROUP)): one vectorised pass, the chunk minimum in a second tiny one."""
    trials, rows = values.shape
    full = rows - rows % GROUP
    parts = [values[:, :full].view(trials, full // GROUP, GROUP).amin(2)] if full else []
    if rows > full:
        parts.append(values[:, full:].amin(1, keepdim=True))
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _first_within(values: Tensor, groups: Tensor, thr: Tensor, start: int, firsts: Tensor, first_vals: Tensor,
                  ranges: tuple[Tensor, Tensor]) -> None:
    """Record, for every trial, the first index within ``thr`` (and its value); only the trials whose chunk
    minimum is within ``thr`` are read later, the others' entries are never used.

    The first group whose minimum is within ``thr`` holds that index (an earlier index within ``thr`` would put
    its own group's minimum within it), so only that group's ``GROUP`` values per trial are compared, read from
    the flat block (a short last group reads on into the next trial's row, past every row of its own group, so
    those values never come first; indices past the block are clamped to its last entry). ``ranges``: the
    trial indices and ``arange(GROUP)``."""
    trials, rows = values.shape
    group_start = (groups <= thr[:, None]).view(torch.uint8).argmax(dim=1).mul_(GROUP)
    flat = (torch.add(group_start, ranges[0], alpha=rows)[:, None] + ranges[1]).clamp_(max=values.numel() - 1)
    sub = values.reshape(-1).index_select(0, flat.view(-1)).view(trials, GROUP)
    first = (sub <= thr[:, None]).view(torch.uint8).argmax(dim=1)
    torch.add(group_start, first, out=firsts).add_(start)
    torch.gather(sub, 1, first[:, None], out=first_vals[:, None])


def _resolve(name, source, hi, stats, chunk, starts, best, mins, firsts, first_vals, n_rows) -> Tensor:
    """Pick each trial's first candidate chunk; re-examine only those whose recorded index misses the final
    tolerance. Trials without a candidate on this rank's rows get ``n_rows`` (the sharded reduction's identity)."""
    if torch.isinf(best).any():
        t = int(torch.nonzero(torch.isinf(best))[0])
        raise ValueError(f"{name}: every objective is +inf for trial {t}; no policy explains the data")
    thr = _threshold(best)
    trial = torch.arange(stats.shape[0], device=stats.device)
    if not starts:
        return torch.full_like(trial, n_rows)
    hit = mins <= thr[None, :]
    cand = hit.to(torch.uint8).argmax(dim=0)  # lowest candidate chunk per trial
    found = hit.any(dim=0)
    out = torch.where(found, firsts[cand, trial], torch.full_like(trial, n_rows))
    recheck = found & (first_vals[cand, trial] > thr)
    for c in torch.unique(cand[recheck]).tolist():
        rows = trial[recheck & (cand == c)]
        start = starts[c]
        # the same product as in pass 1 (all trials), so the values are bit-identical to those judged there
        table = source(slice(start, min(start + chunk, hi)))
        values = _chunk_values(name, stats, table, start, source.cached)[0][rows]
        out[rows] = (values <= thr[rows][:, None]).view(torch.uint8).argmax(dim=1) + start
    return out
