"""Single-policy concentrability coefficients of pi* under mu, on problems computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from finitepref import ToyProblem
from finitepref import coverage as cov


def one_policy(prompt_probs, mu, pi_star) -> ToyProblem:
    return ToyProblem(prompt_probs, mu, [pi_star], star=0, gamma=1.0)


def test_one_prompt_two_responses_by_hand():
    # mu = (1/2, 1/2), pi* = (3/4, 1/4): ratios (3/2, 1/2)
    # linf = 3/2; chi2 = 3/4 * 3/2 + 1/4 * 1/2 = 5/4; pairwise: (3/2)^2 = 9/4 and (5/4)^2 = 25/16
    c = one_policy([1.0], [[0.5, 0.5]], [[0.75, 0.25]]).single_policy_coverage()
    assert c.linf == pytest.approx(1.5, rel=1e-15)
    assert c.chi2 == pytest.approx(1.25, rel=1e-15)
    assert c.pairwise_linf == pytest.approx(2.25, rel=1e-15)
    assert c.pairwise_chi2 == pytest.approx(25 / 16, rel=1e-15)


def test_two_prompts_by_hand():
    # D = (1/4, 3/4); prompt 0: pi* = mu = (1/2, 1/2), ratios 1, 1 + chi^2 = 1
    # prompt 1: mu = (4/5, 1/5), pi* = (2/5, 3/5): ratios (1/2, 3), 1 + chi^2 = 2/5*1/2 + 3/5*3 = 2
    # linf = 3; chi2 = 1/4 * 1 + 3/4 * 2 = 7/4; pairwise_linf = 9; pairwise_chi2 = 1/4 * 1 + 3/4 * 4 = 13/4
    c = one_policy([0.25, 0.75], [[0.5, 0.5], [0.8, 0.2]], [[0.5, 0.5], [0.4, 0.6]]).single_policy_coverage()
    assert c.as_dict() == pytest.approx({"linf": 3.0, "chi2": 1.75, "pairwise_linf": 9.0, "pairwise_chi2": 3.25},
                                        rel=1e-14)


def test_three_responses_by_hand_and_pi_star_equal_to_mu():
    # mu = (1/2, 1/4, 1/4), pi* = (1/4, 1/4, 1/2): ratios (1/2, 1, 2)
    # linf = 2; 1 + chi^2 = 1/4*1/2 + 1/4*1 + 1/2*2 = 11/8
    c = one_policy([1.0], [[0.5, 0.25, 0.25]], [[0.25, 0.25, 0.5]]).single_policy_coverage()
    assert (c.linf, c.chi2) == pytest.approx((2.0, 11 / 8), rel=1e-15)
    assert (c.pairwise_linf, c.pairwise_chi2) == pytest.approx((4.0, 121 / 64), rel=1e-15)
    same = one_policy([1.0], [[0.5, 0.25, 0.25]], [[0.5, 0.25, 0.25]]).single_policy_coverage()
    assert same.as_dict() == pytest.approx({"linf": 1.0, "chi2": 1.0, "pairwise_linf": 1.0, "pairwise_chi2": 1.0},
                                           rel=1e-15)


def test_zero_mu_gives_inf_and_zero_probability_prompts_are_ignored():
    pi_star = [[0.75, 0.25], [0.5, 0.5]]
    blind = one_policy([0.5, 0.5], [[0.5, 0.5], [1.0, 0.0]], pi_star).single_policy_coverage()
    assert all(math.isinf(v) and v > 0 for v in blind.as_dict().values())
    # the same mu, but the prompt where mu misses a response never occurs
    hidden = one_policy([1.0, 0.0], [[0.5, 0.5], [1.0, 0.0]], pi_star).single_policy_coverage()
    assert hidden.as_dict() == pytest.approx({"linf": 1.5, "chi2": 1.25, "pairwise_linf": 2.25,
                                              "pairwise_chi2": 25 / 16}, rel=1e-15)


def test_log_space_extremes_stay_exact():
    """pi*(a) = e^-700-scale and mu(a) = 1e-300: the ratio e^{-700}/1e-300 is formed in logs."""
    log_star = torch.log_softmax(torch.tensor([[0.0, -700.0]], dtype=torch.float64), -1)
    mu = torch.tensor([[1.0 - 1e-300, 1e-300]], dtype=torch.float64)
    prob = ToyProblem([1.0], mu, log_star[None], star=0, gamma=1.0, log_space=True)
    c = prob.single_policy_coverage()
    ratio_small = math.exp(-700.0 - math.log(1e-300))  # e^-700 / 1e-300 ~ 9.9e-5
    assert c.linf == pytest.approx(1.0 / (1.0 - 1e-300), rel=1e-15)
    assert c.chi2 == pytest.approx(1.0 + math.exp(-700.0) * ratio_small, rel=1e-15)
    # the reverse: mu misses pi*'s mode by 1e-300 -> linf ~ 1e300, pairwise ~ 1e600 -> inf
    prob2 = ToyProblem([1.0], torch.flip(mu, [-1]), log_star[None], star=0, gamma=1.0, log_space=True)
    c2 = prob2.single_policy_coverage()
    assert c2.linf == pytest.approx(1e300, rel=1e-13) and c2.chi2 == pytest.approx(1e300, rel=1e-13)
    assert math.isinf(c2.pairwise_linf) and math.isinf(c2.pairwise_chi2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_direct_formula_and_orderings(seed):
    prob = ToyProblem.random(n_prompts=3, n_responses=5, n_policies=7, seed=seed)
    d, mu, star = prob.prompt_probs.numpy(), prob.mu.numpy(), prob.policies[prob.star].numpy()
    ratio = star / mu
    chi_x = (star * ratio).sum(-1)
    c = prob.single_policy_coverage()
    assert c.linf == pytest.approx(ratio.max(), rel=1e-13)
    assert c.chi2 == pytest.approx(d @ chi_x, rel=1e-13)
    assert c.pairwise_chi2 == pytest.approx(d @ chi_x**2, rel=1e-13)
    assert c.pairwise_linf == pytest.approx(ratio.max() ** 2, rel=1e-13)
    assert 1.0 - 1e-12 <= c.chi2 <= c.linf <= c.pairwise_linf
    assert c.chi2**2 <= c.pairwise_chi2 * (1 + 1e-12)  # Jensen
    # the function behind the method, and the log ratio it uses
    assert cov.single_policy_coverage(prob.log_pi_star, prob.prompt_probs, prob.mu) == c
    np.testing.assert_allclose(cov.single_policy_log_ratio(prob.log_pi_star, prob.mu).numpy(), np.log(ratio),
                               rtol=1e-13)


def test_log_ratio_conventions():
    log_star = torch.tensor([[0.0, -math.inf, -1.0]], dtype=torch.float64)
    mu = torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64)
    rho = cov.single_policy_log_ratio(log_star, mu)
    assert rho[0, 0] == pytest.approx(math.log(2.0), rel=1e-15)
    assert rho[0, 1] == -math.inf  # pi* = 0: contributes nothing, whatever mu
    assert rho[0, 2] == math.inf   # mu = 0 < pi*
    c = cov.single_policy_coverage(torch.tensor([[0.0, -math.inf]], dtype=torch.float64), torch.tensor([1.0]),
                                   torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert c.as_dict() == {"linf": 1.0, "chi2": 1.0, "pairwise_linf": 1.0, "pairwise_chi2": 1.0}
