"""Shared pytest configuration.

Hypothesis profiles: ``ci`` (derandomized, no example database: the same examples on every run and
every machine) is the default, with or without ``CI`` set, so the README's test command is the
suite CI runs. ``explore`` (random examples, a local database) is opt-in:
``HYPOTHESIS_PROFILE=explore python -m pytest``.
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
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
