"""One look for every figure: colours, markers and line styles keyed by the registries' names.

Labels come from :mod:`finitepref.registry` (one wording, with the paper's equation). An estimator
run with a KL term toward :math:`\\pi_0` (:math:`\\beta > 0`) is the paper's next equation: PMLE (4) ->
(5), preference distillation (11) -> (12), reverse KL (15) -> (16); :func:`label` derives that here,
once. Names the registries do not know (the oracle-LM's ``pmle_nokl``, the problems of a script)
get a colour from the same cycle, in a fixed order.

Examples
--------
>>> label("reverse_kl")
'Reverse KL (eq. 15)'
>>> label("reverse_kl", beta=0.1)
'Reverse KL (eq. 16)'
>>> line("pmle")["color"]
'C0'
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np

from finitepref import registry

RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
      "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 9,
      "lines.linewidth": 1.4, "lines.markersize": 4, "savefig.dpi": 200}
"""Sizes that read at a paper's width (figures are 7 in wide or less) and PDFs that embed TrueType fonts."""
matplotlib.rcParams.update(RC)
WIDTH = 7.0
"""Width in inches of a full-width figure (a two-column paper's text width)."""

__all__ = ["COLORS", "MARKERS", "LINESTYLES", "WITH_KL", "RC", "WIDTH", "color", "marker", "linestyle", "label",
           "line", "short_label", "mean_with_band", "mark_zeros", "offsets", "identical_note", "finish"]

COLORS = {"pmle": "C0", "distill": "C1", "reverse_kl": "C2", "dpo": "C3", "rlhf": "C4", "rebel": "C5",
          "ipo": "C6", "chipo": "C8", "online_pmle": "C9", "pmle_nokl": "C7", "tight": "C0", "default": "C3"}
"""Colour per registry name (estimators, LLM algorithms) and per problem name."""
MARKERS = {"pmle": "o", "distill": "s", "reverse_kl": "^", "dpo": "v", "rlhf": "D", "rebel": "P", "ipo": "<",
           "chipo": ">", "online_pmle": "*", "pmle_nokl": "x"}
"""Marker per registry name."""
LINESTYLES = {"forward": "-", "reverse": "--"}
"""Line style per divergence direction (a registry field)."""
WITH_KL = {"4": "5", "11": "12", "15": "16"}
"""The paper's equation of an estimator when it carries a KL term toward pi0 (beta > 0)."""
_FALLBACK_COLORS = ("C8", "C9", "C6", "C7")
_FALLBACK_MARKERS = ("*", "h", "X", "p")


def _fallback(name: str, options: tuple[str, ...]) -> str:
    known = list(registry.ESTIMATORS)
    position = known.index(name) if name in known else sum(map(ord, name))
    return options[position % len(options)]


def color(name: str) -> str:
    """Colour of ``name`` (a registry name or a problem name)."""
    return COLORS.get(name) or _fallback(name, _FALLBACK_COLORS)


def marker(name: str) -> str:
    """Marker of ``name``."""
    return MARKERS.get(name) or _fallback(name, _FALLBACK_MARKERS)


def linestyle(name: str) -> str:
    """Line style of an estimator: by the divergence its error is measured in."""
    entry = registry.ESTIMATORS.get(name)
    return LINESTYLES[entry.divergence] if entry is not None else "-"


def label(name: str, *, beta: float = 0.0) -> str:
    """The registry's label of ``name``; with ``beta > 0`` the equation of the KL-regularised form."""
    entry = registry.get(name)
    if beta > 0 and entry.equation in WITH_KL:
        return entry.label.replace(f"(eq. {entry.equation})", f"(eq. {WITH_KL[entry.equation]})")
    return entry.label


def short_label(name: str) -> str:
    """The label without its equation (``"PMLE"``), for compact text."""
    return label(name).split(" (")[0]


def line(name: str, *, beta: float = 0.0, estimator: str | None = None) -> dict[str, Any]:
    """``plot`` keywords (``color``, ``marker``, ``label``) of ``name``.

    ``estimator`` is the registry name when ``name`` is a column value of its own (degeneracy's
    ``pmle_kl`` is ``pmle`` with ``beta > 0``).
    """
    key = estimator or name
    return {"color": color(key), "marker": marker(key), "label": label(key, beta=beta)}


def mean_with_band(ax, x, mean, low, high, *, log_y: bool = True, floor: float | None = None, **kwargs) -> int:
    """A mean line with its CI band; returns how many means are 0.

    On a log axis a mean of 0 cannot be drawn: with ``floor`` given, those points are drawn as open
    markers at ``floor`` (the axis floor, clip off) by :func:`mark_zeros`, never dropped.
    """
    x, mean, low, high = (np.asarray(v, dtype=float) for v in (x, mean, low, high))
    keep = (mean > 0) if log_y else np.isfinite(mean)
    kwargs.setdefault("ms", 4)
    ax.plot(x[keep], mean[keep], **kwargs)
    ax.fill_between(x[keep], low[keep].clip(min=1e-300) if log_y else low[keep], high[keep], color=kwargs["color"],
                    alpha=0.15, lw=0)
    zeros = ~keep & (mean == 0)
    if floor is not None and zeros.any():
        mark_zeros(ax, x[zeros], floor, color=kwargs["color"], marker=kwargs.get("marker", "o"))
    return int(zeros.sum())


def mark_zeros(ax, x, floor: float, *, color: str, marker: str = "o") -> None:
    """Open markers at ``y = floor`` for values that are exactly 0 on a log axis (unclipped, on the floor)."""
    ax.plot(np.asarray(x, dtype=float), np.full(len(x), floor), ls="none", marker=marker, mfc="white", mec=color,
            ms=5, clip_on=False, zorder=5)


def identical_note(series: dict[str, Any], digits: int = 10) -> str:
    """``"A = B (identical)"`` for labels whose series are equal (to ``digits`` decimals); ``""`` if none."""
    groups: dict[tuple, list[str]] = {}
    for text, values in series.items():
        groups.setdefault(tuple(np.round(np.asarray(values, dtype=float), digits)), []).append(text)
    return "; ".join(" = ".join(g) + " (identical)" for g in groups.values() if len(g) > 1)


def offsets(names, spread: float = 0.04) -> dict[str, float]:
    """Multiplicative x offsets (``10**k``) that separate curves drawn at the same n on a log axis."""
    names = list(names)
    centre = (len(names) - 1) / 2
    return {name: 10 ** (spread * (i - centre)) for i, name in enumerate(names)}


def _minor_label(value: float, _position=None) -> str:
    mantissa = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
    return f"{value:g}" if np.isclose(mantissa, 2) or np.isclose(mantissa, 5) else ""


def _tidy_log_ticks(ax) -> None:
    """Log axes: no crowded minor labels (none beyond two decades; only 2 and 5 times a power of ten within)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()), (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
        if scale != "log" or min(limits) <= 0:
            continue
        wide = np.log10(max(limits) / min(limits)) > 2
        axis.set_minor_formatter(NullFormatter() if wide else FuncFormatter(_minor_label))


def finish(fig, title: str | None = None, *, legends: bool | str = "figure", legend_size: float = 8, ncol: int = 4):
    """A grid on every panel, one legend, the title; returns ``fig``.

    ``legends="figure"`` (default) puts one legend for the whole figure below the panels, with each
    label once; ``True`` a legend on every panel with labelled artists and none yet; ``False`` none.
    """
    for ax in fig.axes:
        ax.grid(True, which="major", alpha=0.3)
        _tidy_log_ticks(ax)
    if legends == "figure":
        seen: dict[str, Any] = {}
        for ax in fig.axes:
            if ax.get_legend() is not None:
                continue
            for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
                if not text.startswith("_"):
                    seen.setdefault(text, handle)
        if seen:
            fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=min(ncol, len(seen)),
                       fontsize=legend_size, frameon=False)
    elif legends:
        for ax in fig.axes:
            if ax.get_legend() is None and ax.get_legend_handles_labels()[1]:
                ax.legend(fontsize=legend_size)
    if title:
        import textwrap

        fig.suptitle("\n".join(textwrap.wrap(title, 120)), fontsize=legend_size + 0.5)
    return fig
