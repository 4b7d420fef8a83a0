r"""One verdict format for every script, the claims report and the notebooks.

A :class:`Verdict` states one claim, the measured value with its confidence interval, the
reference value it is judged against, and the outcome: ``AGREES``, ``DISAGREES`` or
``INCONCLUSIVE``. Scripts return a list of them from their ``verdicts`` stage; the runner prints
them with :func:`format_verdicts` and writes them as ``verdicts.csv`` (:func:`to_frame`), which
``simulations.report`` collects.

Examples
--------
>>> v = interval_verdict("slope of log E[KL] on log n", -0.977, (-0.996, -0.956), -1.0, tolerance=0.05)
>>> v.outcome
'AGREES'
>>> print(format_verdicts([v]))  # doctest: +NORMALIZE_WHITESPACE
AGREES        slope of log E[KL] on log n: -0.977 [-0.996, -0.956] vs -1 (within 0.05)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd

__all__ = ["Verdict", "AGREES", "DISAGREES", "INCONCLUSIVE", "OUTCOMES", "interval_verdict", "sign_verdict",
           "format_verdicts", "to_frame", "from_frame", "sig"]

AGREES = "AGREES"
DISAGREES = "DISAGREES"
INCONCLUSIVE = "INCONCLUSIVE"
OUTCOMES = (AGREES, DISAGREES, INCONCLUSIVE)


def sig(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures (``'nan'``, ``'inf'`` and ``'—'`` for None)."""
    if value is None:
        return "—"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


@dataclass(frozen=True)
class Verdict:
    """One claim and what the run measured about it.

    claim: what is claimed, in words (e.g. "PMLE: slope of log E[KL] on log n")
    measured: the measured value (None when nothing could be measured)
    ci_low: lower end of its 95% CI (None when no interval applies)
    ci_high: upper end of its 95% CI
    reference: the value the claim predicts, as a number or a short text
    outcome: AGREES, DISAGREES or INCONCLUSIVE
    note: how it was judged, or why it is inconclusive
    """

    claim: str
    measured: float | None
    ci_low: float | None
    ci_high: float | None
    reference: float | str | None
    outcome: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: expected one of {OUTCOMES}, got {self.outcome!r}")

    def line(self) -> str:
        """``OUTCOME  claim: measured [lo, hi] vs reference (note)``, numbers to 3 significant figures."""
        ci = f" [{sig(self.ci_low)}, {sig(self.ci_high)}]" if self.ci_low is not None and self.ci_high is not None else ""
        ref = self.reference if isinstance(self.reference, str) else sig(self.reference)
        vs = f" vs {ref}" if self.reference is not None else ""
        note = f" ({self.note})" if self.note else ""
        return f"{self.outcome:<13} {self.claim}: {sig(self.measured)}{ci}{vs}{note}"


def interval_verdict(claim: str, measured: float | None, ci: Sequence[float] | None, reference: float, *,
                     tolerance: float = 0.0, relative: bool = False, note: str = "") -> Verdict:
    """Judge ``measured`` (with ``ci``) against ``reference`` up to ``tolerance`` (absolute, or relative).

    AGREES when the CI (or the point, without a CI) meets ``[reference - tol, reference + tol]``;
    DISAGREES when it lies wholly outside; INCONCLUSIVE when nothing finite was measured.
    """
    tol = tolerance * abs(reference) if relative else tolerance
    lo, hi = (ci if ci is not None else (measured, measured))
    if measured is None or lo is None or hi is None or not all(math.isfinite(float(v)) for v in (measured, lo, hi)):
        return Verdict(claim, measured, None, None, reference, INCONCLUSIVE, note or "nothing finite was measured")
    outcome = AGREES if (lo <= reference + tol and hi >= reference - tol) else DISAGREES
    how = note or (f"within {sig(tolerance)}{' relative' if relative else ''}" if tolerance else "CI covers it")
    return Verdict(claim, float(measured), None if ci is None else float(lo), None if ci is None else float(hi),
                   reference, outcome, how)


def sign_verdict(claim: str, difference: float | None, ci: Sequence[float] | None, *, expected: str = "positive",
                 note: str = "") -> Verdict:
    """Judge a paired difference: AGREES when its CI lies wholly on the ``expected`` side of 0
    (``"positive"`` or ``"negative"``), DISAGREES when wholly on the other, else INCONCLUSIVE."""
    if expected not in ("positive", "negative"):
        raise ValueError(f"expected: 'positive' or 'negative', got {expected!r}")
    if difference is None or ci is None or not all(math.isfinite(float(v)) for v in (difference, *ci)):
        return Verdict(claim, difference, None, None, f"{expected} difference", INCONCLUSIVE,
                       note or "nothing finite was measured")
    lo, hi = float(ci[0]), float(ci[1])
    sign = 1.0 if expected == "positive" else -1.0
    if min(sign * lo, sign * hi) > 0:
        outcome = AGREES
    elif max(sign * lo, sign * hi) < 0:
        outcome = DISAGREES
    else:
        outcome = INCONCLUSIVE
    return Verdict(claim, float(difference), lo, hi, f"{expected} difference", outcome, note or "95% CI against 0")


def format_verdicts(verdicts: Iterable[Verdict]) -> str:
    """The verdict lines, one per claim."""
    return "\n".join(v.line() for v in verdicts)


def to_frame(verdicts: Iterable[Verdict], **columns) -> pd.DataFrame:
    """``verdicts.csv``: one row per claim (``columns`` add constant columns, e.g. ``script=...``)."""
    rows = [{**columns, **asdict(v)} for v in verdicts]
    names = [*columns, "claim", "measured", "ci_low", "ci_high", "reference", "outcome", "note"]
    return pd.DataFrame(rows, columns=names)


def from_frame(frame: pd.DataFrame) -> list[Verdict]:
    """Read verdicts back from :func:`to_frame`'s table (extra columns ignored)."""
    def clean(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    def number_or_text(value):  # a reference column mixing numbers and words is read back as text
        value = clean(value)
        try:
            return float(value) if isinstance(value, str) else value
        except ValueError:
            return value

    return [Verdict(str(r.claim), clean(r.measured), clean(r.ci_low), clean(r.ci_high), number_or_text(r.reference),
                    str(r.outcome), "" if clean(r.note) is None else str(r.note)) for r in frame.itertuples()]
