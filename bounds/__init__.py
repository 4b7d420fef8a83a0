"""The statements of Appendix B of "Alignment as Distribution Learning", with explicit constants.

One function per statement, named after the paper's numbering, taking plain numbers (numpy arrays
broadcast). Where the paper's constant is wrong, a ``*_corrected`` function sits beside it; the
derivations are in ``bounds/FINDINGS.md``. Depends on numpy and scipy only.
"""

from .lemmas import (
    lemma8,
    lemma8_corrected,
    lemma9_factor,
    lemma9_upper_factor,
    lemma10_factor,
    log_sigmoid_gap,
    psi,
    sigmoid_gap,
)
from .prior_smoothing import reverse_kl_objective, reverse_kl_solution, rlhf_solution, smoothed_prior
from .propositions import eq18, eq18_corrected, proposition12, proposition14_factor
from .theorems import (
    theorem4,
    theorem4_corrected,
    theorem6,
    theorem6_corrected,
    theorem7,
    theorem7_corrected,
)

__all__ = [
    "eq18",
    "eq18_corrected",
    "lemma8",
    "lemma8_corrected",
    "lemma9_factor",
    "lemma9_upper_factor",
    "lemma10_factor",
    "log_sigmoid_gap",
    "proposition12",
    "proposition14_factor",
    "psi",
    "reverse_kl_objective",
    "reverse_kl_solution",
    "rlhf_solution",
    "sigmoid_gap",
    "smoothed_prior",
    "theorem4",
    "theorem4_corrected",
    "theorem6",
    "theorem6_corrected",
    "theorem7",
    "theorem7_corrected",
]
