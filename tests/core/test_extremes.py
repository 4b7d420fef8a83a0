"""End to end at the numeric extremes: logits of +-700, probabilities of 1e-300, rewards of +-700.

Every public quantity must come out finite where the math is finite (no NaN, no overflow), and the
estimators must still pick the policy the objective prefers.
"""

import math

import numpy as np
import torch

import finitepref as fp


def extreme_problem() -> fp.ToyProblem:
    logits = torch.tensor([
        [[700.0, 0.0, -700.0], [0.0, 0.0, 0.0]],
        [[-700.0, 0.0, 700.0], [700.0, -700.0, 0.0]],
        [[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]],
        [[300.0, -300.0, 0.0], [-700.0, 700.0, 350.0]],
    ], dtype=torch.float64)
    log_policies = torch.log_softmax(logits, -1)
    rewards = torch.tensor([[[700.0, 0.0, -700.0], [1.0, 0.0, -1.0]],
                            [[-700.0, 700.0, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    reference = torch.log_softmax(torch.tensor([[0.0, 5.0, -5.0], [1.0, 0.0, 0.0]], dtype=torch.float64), -1)
    return fp.ToyProblem([0.5, 0.5], [[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]], log_policies, star=2, gamma=0.5,
                         rewards=rewards, reference=reference, log_space=True)


def test_constants_and_divergences_are_finite():
    prob = extreme_problem()
    assert prob.policies.min() == 0.0  # exp(-1400) underflows, the log stays exact
    # policy 0, prompt 0: ln pi = (0, -700, -1400), E_mu ln pi = -525, so R = 1400 - 525
    assert prob.boundedness() == 875.0
    for value in (prob.coverage(), prob.reward_coverage(), prob.concentrability()):
        assert not math.isnan(value)
    for table in (prob.forward_kl_table(), prob.reverse_kl_table()):
        assert np.all(np.isfinite(table)) and np.all(table >= 0)
    assert prob.forward_kl(prob.star) == 0.0 and prob.reverse_kl(prob.star) == 0.0


def test_every_estimator_runs_and_attains_its_minimum():
    prob = extreme_problem()
    data = prob.sample(500, trials=8, seed=3)
    reward = fp.estimators.fit_reward(prob, data)
    chosen = {
        "pmle": fp.estimators.pmle(prob, data, 0.1),
        "distill": fp.estimators.distill(prob, data, reward, 0.1),
        "reverse_kl": fp.estimators.reverse_kl(prob, data, reward, 0.1),
        "dpo": fp.estimators.dpo(prob, data, 0.5),
        "rlhf": fp.estimators.rlhf(prob, data, reward, 0.5),
        "rebel": fp.estimators.rebel(prob, data, reward, 2.0),
    }
    for name, idx in chosen.items():
        assert idx.shape == (8,) and idx.min() >= 0 and idx.max() < prob.n_policies, name
    counts = torch.as_tensor(data.counts[0], dtype=torch.float64)
    values = torch.stack([fp.estimators.pmle_objective(prob.log_policies[k], counts, prob.gamma, 0.1,
                                                       prob.log_reference) for k in range(prob.n_policies)])
    assert torch.isfinite(values).all()
    assert values[chosen["pmle"][0]] <= values.min() * (1 + 1e-12)


def test_probabilities_down_to_1e_300():
    p = np.array([[[1 - 2e-300, 1e-300, 1e-300]], [[1 / 3, 1 / 3, 1 / 3]], [[0.5, 0.5 - 1e-300, 1e-300]]])
    prob = fp.ToyProblem([1.0], [[1 / 3, 1 / 3, 1 / 3]], p, star=1, gamma=1.0)
    assert math.isfinite(prob.boundedness())
    kl = prob.forward_kl([0, 1, 2])
    assert np.all(np.isfinite(kl)) and kl[1] == 0.0 and kl[0] > kl[2] > 0
    idx = fp.estimators.pmle(prob, prob.sample(1000, 5, seed=0))
    assert np.all(idx == 1)
