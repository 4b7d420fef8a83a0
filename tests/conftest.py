"""Shared pytest configuration.

Hypothesis profiles: ``ci`` (derandomized, no example database: the same examples on every run and
every machine) is the default, with or without ``CI`` set, so the README's test command is the
suite CI runs. ``explore`` (random examples, a local database) is opt-in:
``HYPOTHESIS_PROFILE=explore python -m pytest``.
"""

import collections
import os

# Headless plotting, offline Hugging Face, deterministic tokenizers: the same under CI and by hand.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
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


# Outcome counts of the fuzz tests (tests/reliability/test_fuzz.py), printed at the end of the session
# whatever the capture mode: {target: Counter(outcome -> count)}.
_FUZZ_KEY = pytest.StashKey[dict]()


def pytest_configure(config):
    config.stash[_FUZZ_KEY] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="session")
def fuzz_counts(request):
    """A session-wide ``{target: Counter(outcome)}`` the fuzz tests add to; see pytest_terminal_summary."""
    return request.config.stash[_FUZZ_KEY]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = config.stash.get(_FUZZ_KEY, None)
    if not counts:
        return
    terminalreporter.section("fuzz outcomes")
    total = collections.Counter()
    for target, counter in sorted(counts.items()):
        total.update(counter)
        terminalreporter.write_line(f"{target:>22}: " + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())))
    terminalreporter.write_line(f"{'all':>22}: inputs {sum(total.values())}, "
                                + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
