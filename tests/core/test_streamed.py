"""A streamed log-linear class gives the materialised class's answers: every estimator, R, C, concentrability, KL."""

import numpy as np
import pytest
import torch

from finitepref import registry as reg
from finitepref.estimators import fit_reward
from finitepref.problem import ToyProblem
from finitepref.streamed import LogLinearClass


@pytest.fixture(scope="module")
def pair():
    kw = {"n_prompts": 3, "n_responses": 4, "dim": 3, "resolution": 0.25, "reward_stride": 2, "seed": 3}
    return ToyProblem.loglinear_grid(**kw), ToyProblem.loglinear_grid(**kw, stream=True)


def test_same_rows_and_constants(pair):
    full, streamed = pair
    assert isinstance(streamed.log_policies, LogLinearClass)
    assert streamed.n_policies == full.n_policies == 9 ** 3 and streamed.star == full.star
    torch.testing.assert_close(streamed.log_policies[:], full.log_policies, rtol=0, atol=1e-13)
    torch.testing.assert_close(streamed.log_policies[5], full.log_policies[5], rtol=0, atol=1e-13)
    torch.testing.assert_close(streamed.log_policies[np.array([[1, 7]])], full.log_policies[np.array([[1, 7]])],
                               rtol=0, atol=1e-13)
    torch.testing.assert_close(streamed.log_policies[3:9, 1:], full.log_policies[3:9, 1:], rtol=0, atol=1e-13)
    assert streamed.boundedness() == pytest.approx(full.boundedness(), rel=1e-12)
    assert streamed.coverage() == pytest.approx(full.coverage(), rel=1e-9)
    assert streamed.concentrability() == pytest.approx(full.concentrability(), rel=1e-12)
    np.testing.assert_allclose(streamed.forward_kl_table(), full.forward_kl_table(), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(streamed.reverse_kl_table(), full.reverse_kl_table(), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(streamed.meta["theta_star"], full.meta["theta_star"])
    with pytest.raises(IndexError):
        streamed.log_policies[streamed.n_policies]


@pytest.mark.parametrize("chunk", [100, None])
def test_every_estimator_same_index(pair, chunk):
    full, streamed = pair
    data = full.sample(200, trials=6, seed=1)
    rewards = fit_reward(full, data)
    np.testing.assert_array_equal(fit_reward(streamed, data), rewards)
    for name, entry in reg.ESTIMATORS.items():
        for params in entry.test_params:
            args = [rewards] if entry.needs_reward else []
            a = entry.function(full, data, *args, **params, chunk_size=chunk)
            b = entry.function(streamed, data, *args, **params, chunk_size=chunk)
            np.testing.assert_array_equal(a, b, err_msg=f"{name} {params}")
