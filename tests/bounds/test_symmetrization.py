"""Lemma 11 (symmetrization) and Proposition 12 by simulation on a small explicit finite class.

One prompt, three actions, mu uniform, gamma = 1, a class of K = 6 policies containing pi*. The data
enter only through the counts of the 18 cells (a, b, y), drawn as one multinomial per trial. With
C(pi, D) = 1/2 sum log P_pi(y|a,b) / P_*(y|a,b) (proof of Proposition 12), E over a fresh dataset is
exact: E exp C(pi, D~) = (sum_cells p*_cell sqrt(P_pi / P_*))^n.
"""

import math

import numpy as np
from scipy import stats
from scipy.special import log_expit, log_softmax

import bounds

GAMMA, N, TRIALS, DELTA = 1.0, 60, 20000, 0.1


def make_problem(seed=3):
    rng = np.random.default_rng(seed)
    logits = np.zeros((6, 3))
    logits[1:] = rng.normal(scale=0.6, size=(5, 3))  # policy 0 is pi* = uniform
    log_pi = log_softmax(logits, axis=1)
    a, b = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    s = GAMMA * (log_pi[:, a] - log_pi[:, b])  # [K, 3, 3]
    log_p = np.stack([log_expit(s), log_expit(-s)], axis=-1).reshape(6, -1)  # y = 1: a wins
    mu_ab = np.full(9, 1 / 9)
    cell_star = (np.repeat(mu_ab, 2) * np.exp(log_p[0]))
    return log_p, cell_star


def simulate(seed=7):
    log_p, cell_star = make_problem()
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(N, cell_star / cell_star.sum(), size=TRIALS)  # [T, 18]
    loglik = counts @ log_p.T  # [T, K]
    hat = np.argmax(loglik, axis=1)  # ties: lowest index (pi* first)
    c_hat = 0.5 * (loglik[np.arange(TRIALS), hat] - loglik[:, 0])
    log_affinity = np.log(np.exp(0.5 * (log_p - log_p[0])) @ cell_star)  # [K]
    lhs = -N * log_affinity[hat]  # -log E_{D~} exp C(pi_hat, D~)
    # E_{x, a, b ~ mu}[(P_pi(a > b) - P_*(a > b))^2] for each policy
    p = np.exp(log_p[:, ::2])
    sq_err = ((p - p[0]) ** 2).mean(axis=1)
    return lhs, c_hat, hat, sq_err


def clopper_pearson_upper(k, n, level=0.999):
    return stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact").high


def test_lemma11_event_frequency():
    lhs, c_hat, hat, _ = simulate()
    assert np.mean(hat != 0) > 0.2  # the class is hard enough for wrong picks to happen
    fails = int(np.sum(lhs > -c_hat + math.log(6 / DELTA)))
    assert clopper_pearson_upper(fails, TRIALS) <= DELTA


def test_proposition12_event_frequency():
    _, _, hat, sq_err = simulate()
    fails = int(np.sum(sq_err[hat] > bounds.proposition12(6, N, DELTA)))
    assert clopper_pearson_upper(fails, TRIALS) <= DELTA


def test_harness_detects_a_false_event():
    """Power check: dropping ln(|Pi|/delta) (a false 'bound') is flagged by the same harness."""
    lhs, c_hat, _, _ = simulate()
    fails = int(np.sum(lhs > -c_hat))
    low = stats.binomtest(fails, TRIALS).proportion_ci(confidence_level=0.999, method="exact").low
    assert low > DELTA
