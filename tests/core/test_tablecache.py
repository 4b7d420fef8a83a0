"""The loss-table cache: same answers as streaming, hits on repeated calls, safe invalidation, bounded memory."""

import numpy as np
import pytest

from finitepref import _tablecache
from finitepref import registry as reg
from finitepref.estimators import fit_reward, pmle
from finitepref.problem import ToyProblem


@pytest.fixture()
def fresh_cache():
    _tablecache.clear()
    old = _tablecache.set_budget(2**30)
    yield
    _tablecache.set_budget(old)
    _tablecache.clear()


def _problem(seed=0):
    return ToyProblem.random(n_prompts=3, n_responses=4, n_policies=40, n_rewards=5, gamma=0.8, spread=0.7, seed=seed)


def test_cached_equals_streamed_for_every_estimator(fresh_cache):
    prob = _problem()
    data = prob.sample(50, trials=6, seed=1)
    rewards = fit_reward(prob, data)
    for name, entry in reg.ESTIMATORS.items():
        for params in entry.test_params:
            args = [rewards] if entry.needs_reward else []
            first = entry.function(prob, data, *args, **params, chunk_size=7)  # builds and caches
            again = entry.function(prob, data, *args, **params, chunk_size=7)  # reads the cache
            other = entry.function(prob, data, *args, **params, chunk_size=None)
            _tablecache.set_budget(0)
            streamed = entry.function(prob, data, *args, **params, chunk_size=7)
            _tablecache.set_budget(2**30)
            for got in (again, other):
                np.testing.assert_array_equal(got, first, err_msg=name)
            np.testing.assert_array_equal(streamed, first, err_msg=name)
    assert _tablecache.info()["hits"] > 0


def test_hit_on_new_data_and_invalidation(fresh_cache):
    prob = _problem()
    pmle(prob, prob.sample(50, trials=2, seed=1))
    info = _tablecache.info()
    assert info["entries"] == 1 and info["misses"] == 1
    pmle(prob, prob.sample(500, trials=3, seed=2))  # other data, same table
    assert _tablecache.info()["hits"] == info["hits"] + 1
    pmle(prob, prob.sample(50, trials=2, seed=1), beta=0.5)  # other parameter: other table
    assert _tablecache.info()["entries"] == 2
    # an in-place change of the class bumps its version: the stale table is never used
    data = prob.sample(20_000, trials=2, seed=3)
    before = pmle(prob, data)
    prob.log_policies[[prob.star, (prob.star + 1) % 40]] = prob.log_policies[[(prob.star + 1) % 40, prob.star]]
    after = pmle(prob, data)
    _tablecache.set_budget(0)
    np.testing.assert_array_equal(after, pmle(prob, data))
    assert (before != after).all()


def test_budget_bounds_memory(fresh_cache):
    prob = _problem()
    data = prob.sample(50, trials=2, seed=1)
    one = 40 * (3 * 16 + 3) * 8  # rows x (X*A*A + X) float64
    _tablecache.set_budget(2 * one)
    for beta in (0.0, 0.1, 0.2, 0.3):
        pmle(prob, data, beta=beta)
        assert _tablecache.info()["bytes"] <= 2 * one
    assert _tablecache.info()["entries"] == 2  # least recently used evicted
    _tablecache.set_budget(one - 1)  # smaller than one table: streamed, nothing kept
    assert _tablecache.info()["entries"] == 0
    pmle(prob, data, beta=0.7)
    assert _tablecache.info()["entries"] == 0
    with pytest.raises(ValueError, match="nbytes"):
        _tablecache.set_budget(-1)
