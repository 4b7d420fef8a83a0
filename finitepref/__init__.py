"""finitepref: exact finite-class verification of "Alignment as Distribution Learning".

The toy core: :class:`ToyProblem` (a finite instance of Section 2), :class:`PreferenceData`
(sufficient statistics of preference data sets), :mod:`finitepref.losses` (the one
implementation of every loss), :mod:`finitepref.estimators` (exact argmins),
:mod:`finitepref.divergences`, :mod:`finitepref.coverage` and :mod:`finitepref.asymptotics`.
The language-model trainer lives in :mod:`finitepref.llm` and is imported on demand only.
"""

from . import coverage, divergences, estimators, losses, preference
from .preference import PreferenceData
from .problem import ToyProblem

__version__ = "0.1.0"

__all__ = ["ToyProblem", "PreferenceData", "losses", "estimators", "divergences", "coverage", "preference",
           "__version__"]

from . import online  # noqa: E402  (issue 14: on-policy estimators; appended for an easy merge)

__all__ += ["online"]
