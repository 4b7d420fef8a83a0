"""Section 5, prior smoothing: closed form vs a numerical minimiser over the simplex, and vs RLHF."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import softmax

import bounds

EPS = np.finfo(float).eps


@st.composite
def problem(draw):
    k = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p0 = rng.dirichlet(np.full(k, 0.7)) * 0.98 + 0.02 / k
    r = rng.normal(scale=draw(st.sampled_from([0.1, 1.0, 3.0])), size=k)
    beta = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0]))
    gamma = draw(st.sampled_from([0.05, 0.3, 1.0]))
    return p0, r, beta, gamma


def _kl(q, p):
    return float(np.sum(np.where(q > 0, q * (np.log(np.where(q > 0, q, 1.0)) - np.log(p)), 0.0)))


@settings(max_examples=60)
@given(problem())
def test_closed_form_is_the_numerical_minimiser(case):
    """Compared by objective values, not points: for every q on the simplex the objective obeys the exact
    identity f(q) - f(p_hat) = (beta + gamma) KL(q || p_hat), so p_hat is the unique minimiser; a numerical
    minimiser (BFGS, whose point is only accurate to ~sqrt(eps)) must not beat it."""
    p0, r, beta, gamma = case
    closed = bounds.reverse_kl_solution(p0, r, beta, gamma)
    f = lambda p: float(bounds.reverse_kl_objective(p, p0, r, beta, gamma))  # noqa: E731

    def fun(theta):
        p = softmax(theta)
        with np.errstate(divide="ignore", invalid="ignore"):  # BFGS may step to p_k = 0
            g = -r + (beta + gamma) * (np.log(p) + 1.0) - beta * np.log(p0)  # gradient in p
            return f(p), np.nan_to_num(p * (g - p @ g))

    res = minimize(fun, np.log(p0), jac=True, method="BFGS", options={"gtol": 1e-13, "maxiter": 10000})
    # the objective's terms are O(scale); rounding in f is a few eps * scale * K
    scale = np.abs(r).max() + (beta + gamma) * (np.abs(np.log(closed)).max() + 1) + beta * np.abs(np.log(p0)).max()
    tol = 64 * EPS * scale * len(p0)
    f_closed = f(closed)
    assert f_closed <= f(softmax(res.x)) + tol
    rng = np.random.default_rng(len(p0))
    for q in [softmax(res.x), p0, *rng.dirichlet(np.ones(len(p0)), size=5)]:
        gap = f(q) - f_closed
        assert gap >= -tol
        assert abs(gap - (beta + gamma) * _kl(q, closed)) <= tol
    # exact first-order condition on the simplex: -r + (beta+gamma) log p - beta log p0 is constant
    stationarity = -r + (beta + gamma) * np.log(closed) - beta * np.log(p0)
    assert np.ptp(stationarity) <= 64 * EPS * scale


@settings(max_examples=60)
@given(problem())
def test_differs_from_rlhf_unless_gamma_zero(case):
    p0, r, beta, gamma = case
    r = r * (beta + gamma) / np.abs(r).max()  # |r| / (beta + gamma) <= 1: neither solution degenerates
    ours = bounds.reverse_kl_solution(p0, r, beta, gamma)
    rlhf = bounds.rlhf_solution(p0, r, beta + gamma)
    f = lambda p: bounds.reverse_kl_objective(p, p0, r, beta, gamma)  # noqa: E731
    assert f(ours) < f(rlhf)  # p0 is never uniform here, so the solutions differ
    assert np.abs(ours - rlhf).max() > 1e-6
    np.testing.assert_allclose(bounds.reverse_kl_solution(p0, r, beta + gamma, 0.0), rlhf, rtol=16 * EPS)
    # smoothing: the ratio max/min of the implied prior shrinks from p0 to p0^alpha
    smooth = bounds.smoothed_prior(p0, beta, gamma)
    assert smooth.max() / smooth.min() <= p0.max() / p0.min() * (1 + 16 * EPS)


def test_prior_smoothing_edge_cases():
    p0 = np.array([0.5, 0.5, 0.0])
    r = np.array([0.0, 1.0, 2.0])
    out = bounds.reverse_kl_solution(p0, r, 1.0, 1.0)
    assert out[2] == 0.0 and np.isclose(out.sum(), 1.0)
    # beta = 0: the reference is forgotten (0^0 = 1), solution softmax(r / gamma)
    np.testing.assert_allclose(bounds.reverse_kl_solution(p0, r, 0.0, 2.0), softmax(r / 2.0), rtol=16 * EPS)
    batch = bounds.reverse_kl_solution(np.tile(p0 + 0.1, (4, 1)), r, 1.0, 0.5)
    assert batch.shape == (4, 3)
    with pytest.raises(ValueError, match="p0"):
        bounds.reverse_kl_solution(np.array([-0.1, 1.1]), r[:2], 1.0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        bounds.reverse_kl_solution(p0, r, -1.0, 1.0)
    with pytest.raises(ValueError, match="beta_total"):
        bounds.rlhf_solution(p0, r, 0.0)
    with pytest.raises(ValueError, match="beta"):
        bounds.reverse_kl_solution(p0, r, 0.0, 0.0)
