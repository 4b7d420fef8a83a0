"""Tests of the Bradley-Terry data model (finitepref.preference and ToyProblem.sample / law).

The exact law of (x, a+, a-) is derived independently here by enumerating Section 2's process
(x ~ D; a, b ~ mu(x) i.i.d.; a preferred with probability eq. (3) in its power form; ordered pair),
and the sampler is checked against it by chi-square tests at fixed seeds, plus an actual Monte
Carlo simulation of the process in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from finitepref import PreferenceData, ToyProblem
from finitepref.preference import preference_probs

P_MIN = 1e-3  # chi-square acceptance at fixed seeds


def law_by_enumeration(prob: ToyProblem) -> np.ndarray:
    d = prob.prompt_probs.numpy()
    mu = prob.mu.numpy()
    pi = np.exp(prob.log_pi_star.numpy())
    g = prob.gamma
    X, A = mu.shape
    law = np.zeros((X, A, A))
    for x in range(X):
        for a in range(A):
            for b in range(A):
                w = d[x] * mu[x, a] * mu[x, b]
                p_ab = pi[x, a] ** g / (pi[x, a] ** g + pi[x, b] ** g)  # eq. (3)
                law[x, a, b] += w * p_ab        # a preferred: (a+, a-) = (a, b)
                law[x, b, a] += w * (1 - p_ab)  # b preferred: (a+, a-) = (b, a)
    return law


def simulate_section2(prob: ToyProblem, n: int, seed: int) -> np.ndarray:
    """Draw n samples of Section 2's process literally, one by one (vectorised), return counts."""
    rng = np.random.default_rng(seed)
    d = prob.prompt_probs.numpy()
    mu = prob.mu.numpy()
    log_pi = prob.log_pi_star.numpy()
    X, A = mu.shape
    x = rng.choice(X, size=n, p=d)
    cdf = np.cumsum(mu, axis=1)
    cdf[:, -1] = 1.0
    a = (rng.random(n)[:, None] > cdf[x]).sum(1)
    b = (rng.random(n)[:, None] > cdf[x]).sum(1)
    p_ab = 1.0 / (1.0 + np.exp(-prob.gamma * (log_pi[x, a] - log_pi[x, b])))
    a_wins = rng.random(n) < p_ab
    win = np.where(a_wins, a, b)
    lose = np.where(a_wins, b, a)
    counts = np.zeros((X, A, A), dtype=np.int64)
    np.add.at(counts, (x, win, lose), 1)
    return counts


@pytest.fixture(scope="module")
def prob():
    return ToyProblem.random(n_prompts=3, n_responses=4, n_policies=10, gamma=0.7, seed=11)


def test_law_matches_independent_derivation(prob):
    law = prob.law()
    assert law.shape == (3, 4, 4)
    np.testing.assert_allclose(law, law_by_enumeration(prob), rtol=1e-13, atol=1e-17)
    assert law.sum() == pytest.approx(1.0, abs=1e-14)
    assert (law >= 0).all()
    # marginals: prompt law is D, and P(w) + P(l) counts each response of mu twice
    np.testing.assert_allclose(law.sum((1, 2)), prob.prompt_probs.numpy(), rtol=1e-13)
    np.testing.assert_allclose(law.sum(2) + law.sum(1), 2 * prob.prompt_probs.numpy()[:, None] * prob.mu.numpy(),
                               rtol=1e-13)


def test_law_on_a_hand_computed_case():
    # one prompt, two responses, mu uniform, pi* = (0.8, 0.2), gamma = 1: P(0 > 1) = 0.8
    prob = ToyProblem([1.0], [[0.5, 0.5]], [[[0.8, 0.2]], [[0.5, 0.5]]], star=0, gamma=1.0)
    expected = np.array([[[0.25, 0.25 * 2 * 0.8], [0.25 * 2 * 0.2, 0.25]]])
    np.testing.assert_allclose(prob.law(), expected, rtol=1e-14)


def test_preference_probs_eq3(prob):
    pp = preference_probs(prob.log_policies, prob.gamma).numpy()
    pi = np.exp(prob.log_policies.numpy())
    g = prob.gamma
    ref = pi[..., :, None] ** g / (pi[..., :, None] ** g + pi[..., None, :] ** g)
    np.testing.assert_allclose(pp, ref, rtol=1e-13)
    np.testing.assert_allclose(pp + np.swapaxes(pp, -1, -2), 1.0, rtol=1e-14)


def test_sample_chi_square_against_law(prob):
    n = 200_000
    data = prob.sample(n, trials=3, seed=1234)
    law = law_by_enumeration(prob).ravel()
    for t in range(3):
        counts = data.counts[t].ravel()
        assert counts.sum() == n
        stat, p = chisquare(counts, n * law / law.sum())
        assert p > P_MIN, (t, stat, p)


def test_sample_counts_shape_sum_dtype_and_seeds(prob):
    data = prob.sample(1000, trials=7, seed=5)
    assert isinstance(data, PreferenceData)
    assert data.counts.shape == (7, 3, 4, 4)
    assert data.counts.dtype == np.int64
    assert (data.counts.reshape(7, -1).sum(1) == 1000).all()
    assert data.n == 1000 and data.trials == 7
    assert data.n_prompts == 3 and data.n_responses == 4
    np.testing.assert_array_equal(data.prompt_counts, data.counts.sum((2, 3)))
    np.testing.assert_array_equal(data.flat, data.counts.reshape(7, -1))
    again = prob.sample(1000, trials=7, seed=5)
    np.testing.assert_array_equal(data.counts, again.counts)
    other = prob.sample(1000, trials=7, seed=6)
    assert not np.array_equal(data.counts, other.counts)
    # trials within one call are independent data sets, not copies
    assert not np.array_equal(data.counts[0], data.counts[1])
    # a Generator is accepted and consumed
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(prob.sample(1000, trials=7, seed=rng).counts, data.counts)


def test_monte_carlo_simulation_of_section2_matches_law(prob):
    n = 60_000
    counts = simulate_section2(prob, n, seed=2024).ravel()
    law = prob.law().ravel()
    stat, p = chisquare(counts, n * law / law.sum())
    assert p > P_MIN, (stat, p)
    # and the library's sampler and the literal simulation agree with each other (two-sample test)
    lib = prob.sample(n, seed=99).counts[0].ravel()
    table = np.stack([counts, lib])
    keep = table.sum(0) > 0
    from scipy.stats import chi2_contingency
    _, p2, _, _ = chi2_contingency(table[:, keep])
    assert p2 > P_MIN


def test_sampler_detects_a_wrong_law(prob):
    """The chi-square check has power: counts from a different gamma are rejected."""
    wrong = ToyProblem(prob.prompt_probs, prob.mu, prob.log_policies, prob.star, gamma=2.0,
                       log_space=True)
    n = 200_000
    counts = wrong.sample(n, seed=1234).counts[0].ravel()
    law = prob.law().ravel()
    _, p = chisquare(counts, n * law / law.sum())
    assert p < 1e-6


def test_from_samples_round_trip(prob):
    data = prob.sample(50, trials=2, seed=3)
    for t in range(2):
        samples = data.samples(t)
        assert len(samples) == 50
        assert samples == sorted(samples)
        back = PreferenceData.from_samples(samples, 3, 4)
        assert back.trials == 1
        np.testing.assert_array_equal(back.counts[0], data.counts[t])
    # order of an explicit list does not matter; duplicates are counted
    s = [(0, 1, 2), (2, 3, 0), (0, 1, 2)]
    d = PreferenceData.from_samples(s[::-1], 3, 4)
    assert d.counts[0, 0, 1, 2] == 2 and d.counts[0, 2, 3, 0] == 1 and d.n == 3
    assert d.samples() == sorted(s)


def test_preference_data_validation():
    with pytest.raises(ValueError, match="counts"):
        PreferenceData(np.zeros((1, 2, 3, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="counts"):
        PreferenceData(-np.ones((1, 2, 2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="counts"):
        PreferenceData(np.zeros((1, 2, 2, 2), dtype=np.int64))  # n = 0
    c = np.zeros((2, 1, 2, 2), dtype=np.int64)
    c[0, 0, 0, 1] = 1
    c[1, 0, 0, 1] = 2
    with pytest.raises(ValueError, match="counts"):
        PreferenceData(c)  # different n per trial
    with pytest.raises(ValueError, match="counts"):
        PreferenceData(np.full((1, 1, 2, 2), 0.5))
    ok = PreferenceData(np.full((1, 1, 2, 2), 2.0))
    assert ok.counts.dtype == np.int64 and ok.n == 8
    with pytest.raises(ValueError, match="samples"):
        PreferenceData.from_samples([], 2, 2)
    with pytest.raises(ValueError, match="prompt"):
        PreferenceData.from_samples([(2, 0, 1)], 2, 2)
    with pytest.raises(ValueError, match="response"):
        PreferenceData.from_samples([(0, 0, 2)], 2, 2)
    with pytest.raises(ValueError, match="samples"):
        PreferenceData.from_samples([(0, 1)], 2, 2)


def test_law_with_zero_in_mu_and_zero_prompt():
    mu = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    pol = torch.softmax(torch.tensor(np.random.default_rng(1).standard_normal((3, 2, 3))), -1)
    prob = ToyProblem([1.0, 0.0], mu, pol, star=1, gamma=1.3)
    law = prob.law()
    np.testing.assert_allclose(law, law_by_enumeration(prob), rtol=1e-13, atol=1e-300)
    assert (law[1] == 0).all() and (law[0, 2] == 0).all() and (law[0, :, 2] == 0).all()
    counts = prob.sample(10_000, trials=2, seed=0).counts
    assert (counts[:, 1] == 0).all() and (counts[:, 0, 2] == 0).all()
