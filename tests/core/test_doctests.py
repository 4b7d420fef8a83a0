"""The documentation examples of the toy core and bounds run as tests: one per public loss and estimator."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["finitepref.losses", "finitepref.estimators", "finitepref.registry", "finitepref.preference"]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
    assert result.attempted > 0, f"{name}: no examples ran"


@pytest.mark.parametrize("module_name, names", [
    ("finitepref.losses", ["preference_logit", "pmle_loss", "dpo_loss", "bradley_terry_loss", "distill_loss",
                           "rebel_loss", "shaped_reward"]),
    ("finitepref.estimators", ["pmle", "fit_reward", "distill", "reverse_kl", "dpo", "rlhf", "rebel",
                               "pmle_objective", "distill_objective"]),
])
def test_every_public_loss_and_estimator_has_an_example(module_name, names):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    for name in names:
        tests = finder.find(getattr(module, name), name, globs=vars(module))
        assert sum(len(t.examples) for t in tests) > 0, f"{module_name}.{name} has no example"
