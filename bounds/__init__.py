"""The statements of Appendix B of "Alignment as Distribution Learning", with explicit constants.

One function per statement, named after the paper's numbering, taking plain numbers (numpy arrays
broadcast). Where the paper's constant is wrong, a ``*_corrected`` function sits beside it; the
derivations are in ``bounds/FINDINGS.md``. Depends on numpy and scipy only.
"""

from . import lemmas, prior_smoothing, propositions, theorems
from .lemmas import *  # noqa: F403
from .prior_smoothing import *  # noqa: F403
from .propositions import *  # noqa: F403
from .theorems import *  # noqa: F403

__all__ = sorted([*lemmas.__all__, *prior_smoothing.__all__, *propositions.__all__, *theorems.__all__])
