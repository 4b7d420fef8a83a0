"""The statements of Appendix B of "Alignment as Distribution Learning", with explicit constants.

One function per statement, named after the paper's numbering, taking plain numbers (numpy arrays
broadcast). Where the paper's constant is wrong, a ``*_corrected`` function sits beside it; the
derivations are in ``bounds/FINDINGS.md``. :mod:`bounds.assouad` adds a bound that is not the paper's:
the minimax lower bound of the hypercube class (is Theorem 4's ln|Pi| needed?). Depends on numpy and
scipy only.
"""

from . import assouad, lemmas, prior_smoothing, propositions, theorems
from .assouad import *  # noqa: F403
from .lemmas import *  # noqa: F403
from .prior_smoothing import *  # noqa: F403
from .propositions import *  # noqa: F403
from .theorems import *  # noqa: F403

__all__ = sorted([*assouad.__all__, *lemmas.__all__, *prior_smoothing.__all__, *propositions.__all__, *theorems.__all__])
