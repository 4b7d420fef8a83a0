"""The documentation examples of the toy core and bounds run as tests: one per public loss and estimator."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["finitepref.losses", "finitepref.estimators", "finitepref.registry", "finitepref.preference",
           "finitepref.hypercube", "bounds.assouad"]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
    assert result.attempted > 0, f"{name}: no examples ran"


def test_every_public_loss_and_estimator_has_an_example():
    from finitepref import estimators, losses, registry
    finder = doctest.DocTestFinder()
    public = [(losses, name) for name in losses.__all__] + [(estimators, name) for name in estimators.__all__
                                                             if name != "objective_values"]
    assert set(registry.names()) <= {name for _, name in public}
    for module, name in public:
        tests = finder.find(getattr(module, name), name, globs=vars(module))
        assert sum(len(t.examples) for t in tests) > 0, f"{module.__name__}.{name} has no example"
