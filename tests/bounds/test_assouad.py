"""Assouad's lower bound for the hypercube class: it is the Bayes risk of the uniform prior (checked by enumerating
every data set), its closed form lies below it, it scales like d / n, and bad input is a clear ValueError."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

import bounds
from finitepref.hypercube import hypercube_problem


def _bayes_risk_by_enumeration(n: int, d: int, eps: float, gamma: float) -> float:
    r"""min over proper decision rules of the uniform-prior average of E_x KL, summing over every count table.

    The laws come from ``ToyProblem.law`` of each vertex (independent of the formula under test)."""
    laws = np.stack([hypercube_problem(d, eps, gamma, star=v).law().reshape(-1) for v in range(2**d)])
    bits = np.array([[(v >> (d - 1 - j)) & 1 for j in range(d)] for v in range(2**d)])
    loss = bounds.hypercube_coordinate_kl(eps) / d * (bits[:, None, :] != bits[None, :, :]).sum(-1)  # (guess, truth)
    cells = laws.shape[1]
    risk = 0.0
    for combo in itertools.combinations_with_replacement(range(cells), n):
        counts = np.bincount(combo, minlength=cells)
        p = stats.multinomial.pmf(counts, n, laws)  # (truth,)
        risk += (loss @ p).min() / 2**d
    return risk


@pytest.mark.parametrize(("n", "d", "eps", "gamma"), [(6, 1, 0.2, 1.0), (5, 2, 0.15, 0.7), (4, 2, 0.35, 2.0),
                                                      (3, 3, 0.1, 1.0)])
def test_lower_bound_is_the_bayes_risk_of_the_uniform_prior(n, d, eps, gamma):
    exact = _bayes_risk_by_enumeration(n, d, eps, gamma)
    assert bounds.hypercube_lower_bound(n, d, eps, gamma) == pytest.approx(exact, rel=1e-12, abs=1e-16)


def test_closed_forms():
    assert bounds.hypercube_coordinate_kl(0.1) == pytest.approx(0.1 * np.log(0.6 / 0.4) * 2, rel=1e-14)
    assert bounds.hypercube_win_probability(0.1, 1.0) == pytest.approx(0.6, rel=1e-14)
    q = bounds.hypercube_win_probability(0.1, 0.5)
    assert q == pytest.approx(1 / (1 + (0.4 / 0.6) ** 0.5), rel=1e-14)  # eq. (3)
    # one sample, one prompt: m = 1 with probability 1/2; a single informative pair is wrong w.p. 1 - q
    q = bounds.hypercube_win_probability(0.2, 1.0)
    expect = bounds.hypercube_coordinate_kl(0.2) * (0.5 * 0.5 + 0.5 * (1 - q))
    assert bounds.hypercube_lower_bound(1, 1, 0.2, 1.0) == pytest.approx(expect, rel=1e-14)


@pytest.mark.parametrize("n", [10, 1_000, 100_000])
@pytest.mark.parametrize("d", [1, 7, 30])
def test_order_of_the_bounds(n, d):
    eps = np.linspace(0.001, 0.49, 25)
    lower = bounds.hypercube_lower_bound(n, d, eps, 1.0)
    bh = bounds.hypercube_lower_bound_bh(n, d, eps, 1.0)
    assert lower.shape == eps.shape and np.isfinite(lower).all()
    assert (bh <= lower * (1 + 1e-12)).all()
    assert (lower <= bounds.hypercube_coordinate_kl(eps) / 2 * (1 + 1e-12)).all()  # at best a fair coin per bit
    more_data = bounds.hypercube_lower_bound(4 * n, d, eps, 1.0)
    assert (more_data <= lower * (1 + 1e-12)).all()


def test_worst_case_grows_linearly_in_d():
    """max over eps of n L is about 0.663 d / gamma^2 once n >> d (the constant of simulations.log_class_size)."""
    n, scales = 10**6, np.linspace(0.6, 1.1, 51)
    for gamma in (0.5, 1.0):
        per_d = [max(n * bounds.hypercube_lower_bound(n, d, scales * np.sqrt(d / n) / gamma, gamma)) / d
                 for d in (2, 10, 30)]
        np.testing.assert_allclose(np.array(per_d) * gamma**2, 0.663, rtol=0.01)


@pytest.mark.parametrize(("args", "message"), [
    ((10, 2, 0.0, 1.0), "eps must be in"), ((10, 2, 0.5, 1.0), "eps must be in"), ((10, 2, np.nan, 1.0), "eps"),
    ((10, 0, 0.1, 1.0), "d must be an integer"), ((10, 1.5, 0.1, 1.0), "d must be an integer"),
    ((0.5, 2, 0.1, 1.0), "n must be"), ((np.inf, 2, 0.1, 1.0), "n must be"), ((2.5, 2, 0.1, 1.0), "n must be an integ"),
    ((10, 2, 0.1, 0.0), "gamma must be"), ((10, 2, 0.1, -np.inf), "gamma must be"),
])
def test_bad_input_is_a_value_error(args, message):
    with pytest.raises(ValueError, match=message):
        bounds.hypercube_lower_bound(*args)
    if "integ" not in message:  # the closed form takes any real n >= 1
        with pytest.raises(ValueError, match=message.split(" ")[0]):
            bounds.hypercube_lower_bound_bh(*args)
