r"""A memory-bounded LRU cache of loss tables, shared by every estimator.

A loss table depends on the problem (the class, the reference, :math:`\gamma`) and on the
estimator's parameters (:math:`\beta, \eta, \tau, R_{\max}`), never on the data. An estimator that
passes a :class:`TableKey` to :func:`finitepref._argmin.argmin_rows` has its table kept after the
first call (built in full, chunk by chunk, each chunk checked, into one ``(rows, columns)`` tensor
before the scan), so repeated calls on the same problem (new data, more trials, another fitted reward) skip
the table build and read the rows straight from memory.

Keys and invalidation
    A key is the estimator's name, its parameters, :math:`\gamma` and, for each tensor the table is
    built from (``log_policies``, ``log_reference``), its identity *and* its in-place version
    counter (``Tensor._version``). The cache entry holds a reference to those tensors, so an
    identity cannot be reused by another tensor while the entry lives; an in-place change of a
    tensor bumps its version, so a stale table is never found (it ages out of the LRU).
    Reassigning ``prob.log_policies`` gives a new identity, hence a new key.

Budget
    The tables held never exceed :func:`budget` bytes (default 1 GiB; environment variable
    ``FINITEPREF_TABLE_CACHE_BYTES``; :func:`set_budget`; 0 disables the cache). A table larger
    than the budget is streamed chunk by chunk (built again in every call), as without the cache.
    Least recently used tables are evicted first. :func:`clear` empties the cache.

The cache changes no value: a cached chunk is a copy of the chunk the builder returns, so the
matrix products, ties and argmins are bit-for-bit those of an uncached call. A table enters the
cache only once every chunk has been checked (no NaN), so a cached table is not checked again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

import torch

Tensor = torch.Tensor

__all__ = ["TableKey", "table_key", "budget", "set_budget", "clear", "info"]


class TableKey:
    """Hashable key of one loss table: ``parts`` decide equality; ``refs`` keep the source tensors alive."""

    __slots__ = ("parts", "refs")

    def __init__(self, parts: tuple, refs: tuple) -> None:
        self.parts, self.refs = parts, refs

    def __hash__(self) -> int:
        return hash(self.parts)

    def __eq__(self, other) -> bool:
        return isinstance(other, TableKey) and self.parts == other.parts

    def __repr__(self) -> str:
        return f"TableKey{self.parts!r}"


def _identity(t) -> tuple:
    if t is None:
        return (None,)
    return (id(t), getattr(t, "_version", 0), str(getattr(t, "device", "")))


def table_key(name: str, params: tuple, gamma: float, *tensors) -> TableKey:
    """Key of the table of estimator ``name`` with ``params`` (hashable), built from ``tensors``."""
    return TableKey((name, params, float(gamma), *(_identity(t) for t in tensors)), tuple(tensors))


_TABLES: OrderedDict[TableKey, Tensor] = OrderedDict()
_STATE = {"budget": int(os.environ.get("FINITEPREF_TABLE_CACHE_BYTES", 2**30)), "bytes": 0, "hits": 0,
          "misses": 0}


def budget() -> int:
    """The most bytes the cached tables may hold together."""
    return _STATE["budget"]


def set_budget(nbytes: int) -> int:
    """Set the budget (``0`` disables caching), evict down to it, and return the previous one."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"nbytes: expected an integer >= 0, got {nbytes!r}")
    old, _STATE["budget"] = _STATE["budget"], nbytes
    _evict(0)
    return old


def clear() -> None:
    """Drop every cached table and reset the hit and miss counters."""
    _TABLES.clear()
    _STATE.update(bytes=0, hits=0, misses=0)


def info() -> dict:
    """Entries, bytes held, budget, hits and misses (for tests and the benchmark)."""
    return {"entries": len(_TABLES), "bytes": _STATE["bytes"], "budget": _STATE["budget"],
            "hits": _STATE["hits"], "misses": _STATE["misses"]}


def _evict(incoming: int) -> None:
    while _TABLES and _STATE["bytes"] + incoming > _STATE["budget"]:
        _, table = _TABLES.popitem(last=False)
        _STATE["bytes"] -= table.numel() * table.element_size()


def _lookup(key) -> Tensor | None:
    if key is None or key not in _TABLES:
        return None
    _TABLES.move_to_end(key)
    _STATE["hits"] += 1
    return _TABLES[key]


def _store(key, table: Tensor) -> None:
    nbytes = table.numel() * table.element_size()
    if nbytes > _STATE["budget"]:
        return
    _evict(nbytes)
    _TABLES[key] = table
    _STATE["bytes"] += nbytes


class Source:
    """The rows ``[lo, hi)`` of a table: from the cache, or from ``build``.

    Called with a slice of global row indices inside ``[lo, hi)``; returns ``(rows, columns)``. A table that
    may be cached is built in full by :meth:`fill` before the scan; ``cached`` then says every row comes from
    a checked table in the cache.
    """

    def __init__(self, build: Callable[[slice], Tensor], lo: int, hi: int, key: TableKey | None) -> None:
        self.build, self.lo, self.hi = build, lo, hi
        self.key = None if key is None or budget() == 0 or hi <= lo else (key, lo, hi)
        self.table = _lookup(self.key)
        self.cached = self.table is not None
        if self.key is not None and self.table is None:
            _STATE["misses"] += 1

    def fill(self, chunk: int, check: Callable[[Tensor, int], object]) -> None:
        """Build a table that may be cached, ``chunk`` rows at a time in order, ``check(rows, start)`` each
        (it raises on a bad chunk: such a table is never cached), copy the chunks into one tensor and cache it.

        Building first and scanning after (as a cached table) keeps the build's temporaries out of the
        scan's cache-sized blocks. A table over the budget is left to be streamed by the scan.
        """
        if self.key is None or self.table is not None:
            return
        store = None
        for start in range(self.lo, self.hi, chunk):
            part = self(slice(start, min(start + chunk, self.hi)))
            check(part, start)
            if store is None:
                if part.ndim != 2 or (self.hi - self.lo) * part[0].numel() * part.element_size() > budget():
                    self.key = None
                    return
                store = part.new_empty((self.hi - self.lo, part.shape[1]))
            store[start - self.lo:start - self.lo + part.shape[0]] = part
        _store(self.key, store)
        self.table, self.cached = store, True

    def __call__(self, rows: slice) -> Tensor:
        if self.table is not None:
            return self.table[rows.start - self.lo:rows.stop - self.lo]
        return self.build(rows).contiguous()  # the layout of a cached chunk: the same products bit for bit
