"""finitepref: exact finite-class verification of "Alignment as Distribution Learning".

The toy core: :class:`ToyProblem` (a finite instance of Section 2), :class:`PreferenceData`
(sufficient statistics of preference data sets), :mod:`finitepref.losses` (the one
implementation of every loss), :mod:`finitepref.estimators` (exact argmins),
:mod:`finitepref.registry` (the estimator records), :mod:`finitepref.divergences`, :mod:`finitepref.coverage` and :mod:`finitepref.asymptotics`.
The language-model trainer lives in :mod:`finitepref.llm` and is imported on demand only.
"""

from . import coverage, divergences, estimators, hypercube, losses, online, preference, registry
from .preference import PreferenceData
from .problem import ToyProblem

__version__ = "0.1.0"

__all__ = ["ToyProblem", "PreferenceData", "losses", "estimators", "registry", "online", "divergences", "coverage",
           "hypercube", "preference", "__version__"]
