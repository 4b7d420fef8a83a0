"""Tests of R (Assumption 2), C_Pi (Definition 3), C_R and l_inf concentrability on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from finitepref import ToyProblem
from finitepref import coverage as cov


def direct_coverage(log_pols: np.ndarray, star: np.ndarray, d: np.ndarray, mu: np.ndarray) -> float:
    """Definition 3 written out per policy, with 0/0 -> 0 and positive/0 -> inf."""
    gamma = 1.0  # cancels
    rbar_star = gamma * (star - (mu * star).sum(-1, keepdims=True))
    best = 0.0
    for lp in log_pols:
        rbar = gamma * (lp - (mu * lp).sum(-1, keepdims=True))
        delta = rbar - rbar_star
        delta[np.abs(delta) < 1e-12] = 0.0
        num = float(np.sum(d[:, None] * np.exp(star) * delta**2))
        den = float(np.sum(d[:, None] * mu * delta**2))
        if num == 0:
            continue
        best = max(best, math.inf if den == 0 else num / den)
    return best


def two_response_problem(m: float, p: float, others) -> ToyProblem:
    pols = [[[p, 1 - p]]] + [[[q, 1 - q]] for q in others]
    return ToyProblem([1.0], [[m, 1 - m]], pols, star=0, gamma=0.5)


@pytest.mark.parametrize("m, p, others", [(0.25, 0.5, [0.9]), (0.25, 0.5, [0.1, 0.7]), (0.5, 0.8, [0.3]),
                                          (0.1, 0.9, [0.2, 0.5, 0.99])])
def test_coverage_two_responses_closed_form(m, p, others):
    # Delta Rbar = gamma*delta*((1-m), -m) with delta the logit difference, so
    # C = [p(1-m)^2 + (1-p) m^2] / [m(1-m)], the same for every policy != pi*
    prob = two_response_problem(m, p, others)
    expected = (p * (1 - m) ** 2 + (1 - p) * m**2) / (m * (1 - m))
    assert prob.coverage() == pytest.approx(expected, rel=1e-12)
    # R = max over policies of max((1-m), m) * |logit(q)|
    logits = [math.log(q / (1 - q)) for q in [p, *others]]
    assert prob.boundedness() == pytest.approx(max(max(m, 1 - m) * abs(L) for L in logits), rel=1e-12)


def test_coverage_worked_example_5_over_3():
    prob = two_response_problem(0.25, 0.5, [0.9])
    assert prob.coverage() == pytest.approx(5.0 / 3.0, rel=1e-13)
    assert prob.boundedness() == pytest.approx(0.75 * math.log(9.0), rel=1e-13)
    assert prob.concentrability() == pytest.approx(0.9 / 0.25, rel=1e-13)


def test_coverage_three_responses_by_hand():
    # mu uniform on 3 responses; pi* uniform, pi = (1/2, 1/4, 1/4)
    # Rbar_* = 0; Rbar_pi = ln pi - mean ln pi = (2/3 ln 2, -1/3 ln 2, -1/3 ln 2)
    # num = E_{pi*} = mean of squares = den (pi* = mu) -> C = 1; R = 2/3 ln 2
    third = 1.0 / 3.0
    prob = ToyProblem([1.0], [[third] * 3], [[[third] * 3], [[0.5, 0.25, 0.25]]], star=0, gamma=1.0)
    assert prob.coverage() == pytest.approx(1.0, rel=1e-12)
    assert prob.boundedness() == pytest.approx(2.0 / 3.0 * math.log(2.0), rel=1e-12)
    # now pi* = (1/2, 1/4, 1/4) and the other policy uniform, mu uniform:
    # Delta = (-2/3, 1/3, 1/3) ln 2; num = (1/2*4/9 + 1/4*1/9 + 1/4*1/9) ln2^2 = 5/18 ln2^2,
    # den = (4/9 + 1/9 + 1/9)/3 ln2^2 = 4/18 ln2^2; C = 5/4
    prob2 = ToyProblem([1.0], [[third] * 3], [[[third] * 3], [[0.5, 0.25, 0.25]]], star=1, gamma=1.0)
    assert prob2.coverage() == pytest.approx(1.25, rel=1e-12)


def test_coverage_infinite_off_support_policy():
    # mu puts no mass on response 2; pi equals pi* up to scale on {0, 1} and differs on response 2
    mu = [[0.5, 0.5, 0.0]]
    star = [0.2, 0.3, 0.5]
    c = 1.5
    pi = [0.2 * c, 0.3 * c, 1 - 0.5 * c]
    prob = ToyProblem([1.0], mu, [[star], [pi]], star=0, gamma=1.0)
    assert prob.coverage() == math.inf
    assert prob.concentrability() == math.inf
    # a policy that differs on supp mu as well gives a finite ratio; only pi* -> C = 0
    other = [0.5, 0.1, 0.4]
    prob2 = ToyProblem([1.0], mu, [[star], [other]], star=0, gamma=1.0)
    lp = np.log(np.array([[star], [other]]))
    expected = direct_coverage(lp, lp[0], np.array([1.0]), np.array(mu))
    assert math.isfinite(expected) and expected > 0
    assert prob2.coverage() == pytest.approx(expected, rel=1e-12)
    # by hand: Delta on supp mu is +-u/2 with u the change of the log-odds of 0 vs 1
    u = math.log(0.5 / 0.2) - math.log(0.1 / 0.3)  # difference of log ratios on {0,1}
    d0, d1 = u / 2, -u / 2
    d2 = math.log(0.4 / 0.5) - 0.5 * (math.log(0.5 / 0.2) + math.log(0.1 / 0.3))
    assert prob2.coverage() == pytest.approx((0.2 * d0**2 + 0.3 * d1**2 + 0.5 * d2**2) / (0.5 * d0**2 + 0.5 * d1**2),
                                             rel=1e-12)


def test_coverage_zero_for_singleton_and_duplicates():
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=1, seed=0)
    assert prob.coverage() == 0.0
    lp = prob.log_policies
    dup = ToyProblem(prob.prompt_probs, prob.mu, torch.cat([lp, lp, lp]), star=1, gamma=1.0, log_space=True)
    assert dup.coverage() == 0.0
    # pi* with mu having a zero: still 0 (numerator 0 everywhere)
    z = ToyProblem([1.0], [[1.0, 0.0]], [[[0.3, 0.7]]], star=0, gamma=1.0)
    assert z.coverage() == 0.0
    assert z.concentrability() == math.inf


def test_coverage_and_boundedness_against_direct_formula_on_random_problems():
    for seed in range(4):
        prob = ToyProblem.random(n_prompts=3, n_responses=4, n_policies=20, n_rewards=4, seed=seed)
        lp = prob.log_policies.numpy()
        d, mu = prob.prompt_probs.numpy(), prob.mu.numpy()
        expected = direct_coverage(lp, lp[prob.star], d, mu)
        assert prob.coverage() == pytest.approx(expected, rel=1e-10)
        centered = lp - (mu * lp).sum(-1, keepdims=True)
        assert prob.boundedness() == pytest.approx(np.abs(centered).max(), rel=1e-13)
        np.testing.assert_allclose(cov.centered_log_probs(prob.log_policies, prob.mu).numpy(), centered,
                                   rtol=1e-13, atol=1e-14)
        induced = np.log(np.exp(prob.rewards.numpy() / prob.gamma)
                         / np.exp(prob.rewards.numpy() / prob.gamma).sum(-1, keepdims=True))
        assert prob.reward_coverage() == pytest.approx(direct_coverage(induced, lp[prob.star], d, mu), rel=1e-10)
        assert prob.reward_coverage() <= prob.coverage() * (1 + 1e-12)
        conc = max(float(np.max(np.exp(lp[:, x]) / mu[x])) for x in range(3) if d[x] > 0)
        assert prob.concentrability() == pytest.approx(conc, rel=1e-12)


def test_concentrability_hand_case_ignores_zero_weight_prompts():
    # prompt 1 has D = 0 and a huge ratio; it must not count
    mu = [[0.5, 0.5], [0.999, 0.001]]
    pols = [[[0.8, 0.2], [0.5, 0.5]], [[0.3, 0.7], [0.1, 0.9]]]
    prob = ToyProblem([1.0, 0.0], mu, pols, star=0, gamma=1.0)
    assert prob.concentrability() == pytest.approx(1.6, rel=1e-13)
    prob2 = ToyProblem([0.5, 0.5], mu, pols, star=0, gamma=1.0)
    assert prob2.concentrability() == pytest.approx(900.0, rel=1e-12)


def test_reward_coverage_hand_case():
    # rewards gamma*ln pi + c(x) induce exactly the policies; C_R over {pi*, pi(0.9)} = 5/3
    gamma = 0.5
    m = 0.25
    pols = np.array([[[0.5, 0.5]], [[0.9, 0.1]], [[0.2, 0.8]]])
    rewards = gamma * np.log(pols[:2]) + np.array([[[3.0]], [[-1.0]]])
    prob = ToyProblem([1.0], [[m, 1 - m]], pols, star=0, gamma=gamma, rewards=rewards)
    np.testing.assert_allclose(prob.induced_log_policies().numpy(), np.log(pols[:2]), rtol=0, atol=1e-14)
    assert prob.reward_coverage() == pytest.approx(5.0 / 3.0, rel=1e-12)
    # reward class containing only pi*'s reward: C_R = 0
    prob0 = ToyProblem([1.0], [[m, 1 - m]], pols, star=0, gamma=gamma, rewards=rewards[:1])
    assert prob0.reward_coverage() == 0.0
    with pytest.raises(ValueError, match="rewards"):
        ToyProblem([1.0], [[m, 1 - m]], pols, star=0, gamma=gamma).reward_coverage()


def test_coverage_chunking_matches(monkeypatch):
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=30, seed=9)
    full = cov.coverage(prob.log_policies, prob.log_pi_star, prob.prompt_probs, prob.mu)
    r = cov.boundedness(prob.log_policies, prob.mu)
    c = cov.concentrability(prob.log_policies, prob.prompt_probs, prob.mu)
    monkeypatch.setattr(cov, "_CHUNK", 4)
    assert cov.coverage(prob.log_policies, prob.log_pi_star, prob.prompt_probs, prob.mu) == full
    assert cov.boundedness(prob.log_policies, prob.mu) == r
    assert cov.concentrability(prob.log_policies, prob.prompt_probs, prob.mu) == c
