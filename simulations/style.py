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

from finitepref import registry

__all__ = ["COLORS", "MARKERS", "LINESTYLES", "WITH_KL", "color", "marker", "linestyle", "label", "line",
           "short_label"]

COLORS = {"pmle": "C0", "distill": "C1", "reverse_kl": "C2", "dpo": "C3", "rlhf": "C4", "rebel": "C5",
          "pmle_nokl": "C7", "tight": "C0", "default": "C3"}
"""Colour per registry name (estimators, LLM algorithms) and per problem name."""
MARKERS = {"pmle": "o", "distill": "s", "reverse_kl": "^", "dpo": "v", "rlhf": "D", "rebel": "P", "pmle_nokl": "x"}
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


def mean_with_band(ax, x, mean, low, high, *, log_y: bool = True, **kwargs) -> None:
    """A mean line with its CI band; on a log axis only the positive means are drawn (band floored at 1e-300)."""
    keep = (mean > 0) if log_y else (mean == mean)
    kwargs.setdefault("ms", 4)
    ax.plot(x[keep], mean[keep], **kwargs)
    ax.fill_between(x[keep], low[keep].clip(lower=1e-300) if log_y else low[keep], high[keep], color=kwargs["color"],
                    alpha=0.2)


def finish(fig, title: str | None = None, *, legends: bool = True, legend_size: float = 8):
    """A grid on every panel, a legend on every panel with labelled artists and none yet, the title; returns ``fig``."""
    for ax in fig.axes:
        ax.grid(True, which="major", alpha=0.3)
        if legends and ax.get_legend() is None and ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=legend_size)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
