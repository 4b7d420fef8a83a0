"""Shared pytest configuration.

Hypothesis profiles: ``ci`` (derandomized, fixed database-free runs; selected when the ``CI``
environment variable is set) and ``dev`` (random exploration). Select explicitly with
``HYPOTHESIS_PROFILE=dev pytest``.
"""

import os

# Headless plotting, offline Hugging Face, deterministic tokenizers: the same under CI and by hand.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
