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

import numbers
from collections.abc import Callable

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = ["TIE_RTOL", "argmin_rows", "chunk_rows", "check_stats"]

TIE_RTOL = 1e-12
_TARGET_BYTES = 256 * 2**20


def chunk_rows(n_columns: int, n_trials: int, chunk_size) -> int:
    """Rows per chunk: ``chunk_size`` (an integer >= 1) or a cache-sized default."""
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size: expected an integer >= 1 or None, got {chunk_size!r}")
        return int(chunk_size)
    return max(1024, _TARGET_BYTES // (8 * max(n_columns, n_trials, 1)))


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


def _values(name: str, stats: Tensor, table: Tensor, start: int) -> Tensor:
    """Objective values ``stats @ table.T`` (trials, rows), with ``0 * inf = 0``; NaN is an error."""
    peak = table.abs().amax() if table.numel() else table.new_zeros(())
    if torch.isnan(peak):
        k = int(torch.nonzero(torch.isnan(table))[0][0])
        raise ValueError(f"{name}: the loss table of policy {start + k} holds NaN; check gamma, beta, eta and the "
                         "class's log-probabilities")
    if torch.isinf(peak):
        return _masked_values(stats, table)
    return stats @ table.T  # (trials, rows): the reductions below run along contiguous memory


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
                name: str = "argmin") -> np.ndarray:
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

    Returns
    -------
    ndarray of int64, shape (trials,)
    """
    chunk = chunk_rows(stats.shape[1], stats.shape[0], chunk_size)
    stats = _power_of_two_scale(stats)
    starts = list(range(0, n_rows, chunk))
    mins, firsts, first_vals = [], [], []
    best = torch.full((stats.shape[0],), np.inf, dtype=torch.float64, device=stats.device)
    for start in starts:
        values = _values(name, stats, build(slice(start, min(start + chunk, n_rows))), start)
        cmin = values.min(dim=1).values
        _check_values(name, cmin, start, values)
        best = torch.minimum(best, cmin)
        first = (values <= _threshold(best)[:, None]).to(torch.uint8).argmax(dim=1)
        mins.append(cmin)
        firsts.append(first + start)
        first_vals.append(values.gather(1, first[:, None])[:, 0])
    return _resolve(name, build, n_rows, stats, chunk, starts, best, mins, firsts, first_vals)


def _resolve(name, build, n_rows, stats, chunk, starts, best, mins, firsts, first_vals) -> np.ndarray:
    """Pick each trial's first candidate chunk; re-examine only those whose recorded index misses the final tolerance."""
    if torch.isinf(best).any():
        t = int(torch.nonzero(torch.isinf(best))[0])
        raise ValueError(f"{name}: every objective is +inf for trial {t}; no policy explains the data")
    thr = _threshold(best)
    mins_t, firsts_t, vals_t = torch.stack(mins), torch.stack(firsts), torch.stack(first_vals)
    cand = (mins_t <= thr[None, :]).to(torch.uint8).argmax(dim=0)  # lowest candidate chunk per trial
    trial = torch.arange(stats.shape[0], device=stats.device)
    out = firsts_t[cand, trial]
    recheck = vals_t[cand, trial] > thr
    for c in torch.unique(cand[recheck]).tolist():
        rows = trial[recheck & (cand == c)]
        start = starts[c]
        # the same product as in pass 1 (all trials), so the values are bit-identical to those judged there
        values = _values(name, stats, build(slice(start, min(start + chunk, n_rows))), start)[rows]
        out[rows] = (values <= thr[rows][:, None]).to(torch.uint8).argmax(dim=1) + start
    return out.cpu().numpy()
