"""The hypercube class: streamed rows, its closed-form constants, and the brute-force argmin against the product.

The class is a product of d two-policy classes, so every objective of eqs. (4), (9), (11), (16) splits
into one two-policy objective per prompt. The reference below solves each coordinate on its own
(numpy, from the equations, ties to bit 0) and the brute-force streamed argmin over all 2^d rows
(one process, and two gloo processes) must give the same vertex, for several d, seeds, chunk sizes,
targets and tilts. The reference is only a test: the package and the script use the brute force.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import log_expit

import bounds
from finitepref import registry as reg
from finitepref.estimators import fit_reward
from finitepref.hypercube import HypercubeClass, hypercube_problem
from finitepref.streamed import InducedClass
from tests.core.gloo_ranks import run_sharded

NAMES = ("pmle", "distill", "reverse_kl")


# ---------------------------------------------------------------------- the product reference (tests only)
def _bit_logs(eps: float) -> np.ndarray:
    """``(2, A)``: log-probabilities of one prompt at bit 0 and bit 1."""
    return np.log(np.array([[0.5 - eps, 0.5 + eps], [0.5 + eps, 0.5 - eps]]))


def _pair_logit(lp: np.ndarray, gamma: float) -> np.ndarray:
    """``(A, A)``: gamma ln pi(w) / pi(l)."""
    return gamma * (lp[:, None] - lp[None, :])


def _coordinate_objectives(name: str, counts: np.ndarray, eps: float, gamma: float, reward_bit: int) -> np.ndarray:
    """Objective of bit 0 and bit 1 of one prompt, from its counts ``(A, A)`` (eqs. 4, 9, 11, 16)."""
    logs = _bit_logs(eps)
    out = np.empty(2)
    for b in (0, 1):
        z = _pair_logit(logs[b], gamma)
        if name in ("pmle", "fit_reward"):  # eq. 9 with R = gamma ln pi is eq. 4
            out[b] = -(counts * log_expit(z)).sum()
        elif name == "distill":
            label = np.exp(log_expit(_pair_logit(logs[reward_bit], gamma)))
            out[b] = (counts * (-label * log_expit(z) - (1 - label) * log_expit(-z))).sum()
        else:  # reverse KL: m_x (-E_pi[R_hat] - gamma H(pi))
            p = np.exp(logs[b])
            out[b] = counts.sum() * (p * (-gamma * logs[reward_bit] + gamma * logs[b])).sum()
    return out


def _decomposed(name: str, prob, data, reward_index=None) -> np.ndarray:
    """The vertex index each trial's product argmin picks (per coordinate; an exact tie goes to bit 0)."""
    cube, d, eps, gamma = prob.log_policies, prob.n_prompts, prob.meta["eps"], prob.gamma
    reward_bits = None if reward_index is None else cube.bits(torch.as_tensor(reward_index)).numpy()
    out = np.empty(data.trials, dtype=np.int64)
    for t in range(data.trials):
        bits = []
        for j in range(d):
            r = 0 if reward_bits is None else int(reward_bits[t, j])
            v = _coordinate_objectives(name, data.counts[t, j].astype(float), eps, gamma, r)
            bits.append(1 if v[1] < v[0] - 1e-9 * max(abs(v[0]), 1.0) else 0)
        out[t] = cube.index_of(bits)
    return out


def _check_against_product(prob, data, chunk) -> None:
    reward = fit_reward(prob, data, chunk_size=chunk)
    np.testing.assert_array_equal(reward, _decomposed("fit_reward", prob, data))
    for name in NAMES:
        entry = reg.get(name)
        args = (reward,) if entry.needs_reward else ()
        got = entry.function(prob, data, *args, chunk_size=chunk)
        np.testing.assert_array_equal(got, _decomposed(name, prob, data, reward if entry.needs_reward else None),
                                      err_msg=f"{name}, chunk {chunk}")


CASES = [  # d, eps, gamma, star (None: all ones), n, seed
    (1, 0.2, 1.0, None, 7, 0), (2, 0.1, 0.5, 0, 30, 1), (5, 0.05, 1.0, None, 40, 2), (5, 0.3, 2.0, 13, 25, 3),
    (8, 0.15, 1.0, None, 120, 4), (9, 0.1, 0.7, 300, 200, 5),
]


@pytest.mark.parametrize("chunk", [1, 7, None])
@pytest.mark.parametrize(("d", "eps", "gamma", "star", "n", "seed"), CASES)
def test_brute_force_equals_the_product_argmin(d, eps, gamma, star, n, seed, chunk):
    chunk = 3 if chunk == 1 and d > 5 else chunk  # row-by-row chunks on the small classes only (Python loop cost)
    prob = hypercube_problem(d, eps, gamma, star=star)
    _check_against_product(prob, prob.sample(n, trials=12, seed=seed), chunk)


def test_small_n_has_ties_and_they_go_to_bit_zero():
    """With few samples many coordinates tie (W = L, or no informative pair): the lowest index sets them to 0."""
    prob = hypercube_problem(6, 0.1)
    data = prob.sample(12, trials=40, seed=9)
    idx = reg.get("pmle").function(prob, data)
    wins, losses = data.counts[:, :, 0, 1], data.counts[:, :, 1, 0]
    ties = wins == losses
    assert ties.any()
    bits = prob.log_policies.bits(torch.as_tensor(idx)).numpy()
    assert (bits[ties] == 0).all() and (bits[wins > losses] == 1).all() and (bits[wins < losses] == 0).all()


# ---------------------------------------------------------------------- the class itself
def test_rows_are_the_closed_form_in_every_indexing():
    eps, d = 0.2, 4
    cube = HypercubeClass([[0.5, 0.5]] * d, [[1.0, -1.0]] * d, eps)
    full = cube.cpu()
    assert full.shape == (16, 4, 2) and full.dtype == torch.float64
    for k in range(16):
        v = [(k >> (d - 1 - j)) & 1 for j in range(d)]
        expect = torch.tensor([[0.5 + eps, 0.5 - eps] if b else [0.5 - eps, 0.5 + eps] for b in v], dtype=torch.float64)
        torch.testing.assert_close(full[k].exp(), expect, rtol=0, atol=1e-15)
        assert cube.index_of(v) == k
    torch.testing.assert_close(cube[np.array([[3, 5]])][0], full[[3, 5]], rtol=0, atol=0)
    torch.testing.assert_close(cube[-1], full[15], rtol=0, atol=0)
    torch.testing.assert_close(cube[2:9, 1:], full[2:9, 1:], rtol=0, atol=0)
    with pytest.raises(IndexError):
        cube[16]


def test_general_base_and_direction_and_scale():
    base = [[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]]
    direction = [[1.0, 0.0, -1.0], [-0.5, 1.0, -0.5]]
    cube = HypercubeClass(base, direction, 0.15, scale=0.5)
    assert cube.eps_max == pytest.approx(0.2)  # 0.2 / |1| on prompt 0
    rows = cube.cpu()
    torch.testing.assert_close((2 * rows[2]).exp(), torch.tensor([[0.35, 0.3, 0.35], [0.675, 0.05, 0.275]],
                                                                 dtype=torch.float64), rtol=1e-14, atol=0)
    assert torch.allclose(torch.logsumexp(2 * rows, -1), torch.zeros(4, 2, dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"eps": 0.0}, "eps"), ({"eps": 0.5}, "eps: expected a value in"), ({"eps": float("nan")}, "eps"),
    ({"direction": [[1.0, 1.0]] * 3}, "sum to 0"), ({"direction": [[0.0, 0.0]] * 3}, "nonzero direction"),
    ({"direction": [[1.0, -1.0]] * 2}, "shape of base"), ({"base": [[0.5, 0.6]] * 3}, "base"),
    ({"base": np.zeros((0, 2)), "direction": np.zeros((0, 2))}, "d in"),
    ({"base": [[0.5, 0.5]] * 63, "direction": [[1.0, -1.0]] * 63}, "d in"), ({"scale": -1.0}, "scale"),
])
def test_bad_input_is_a_clear_value_error(kwargs, message):
    args = {"base": [[0.5, 0.5]] * 3, "direction": [[1.0, -1.0]] * 3, "eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        HypercubeClass(**args)


@pytest.mark.parametrize(("args", "message"), [((0, 0.1), "d"), ((63, 0.1), "d"), ((3, 0.5), "eps"),
                                               ((3, -0.1), "eps"), ((3, 0.1, 0.0), "gamma")])
def test_problem_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        hypercube_problem(*args)


def test_bad_star_and_bits_are_value_errors():
    with pytest.raises(ValueError, match="star"):
        hypercube_problem(3, 0.1, star=8)
    cube = hypercube_problem(3, 0.1).log_policies
    with pytest.raises(ValueError, match="bits"):
        cube.index_of([1, 2, 0])


@pytest.mark.parametrize(("d", "eps", "gamma"), [(1, 0.1, 1.0), (4, 0.02, 0.5), (6, 0.45, 2.0)])
def test_constants_and_kl_are_the_closed_forms(d, eps, gamma):
    prob = hypercube_problem(d, eps, gamma, star=5 % 2**d)
    assert prob.coverage() == pytest.approx(1.0, rel=1e-12)
    assert prob.reward_coverage() == pytest.approx(1.0, rel=1e-12)
    assert prob.boundedness() == pytest.approx(np.arctanh(2 * eps), rel=1e-13)
    assert isinstance(prob.induced_log_policies(), InducedClass)
    torch.testing.assert_close(prob.induced_log_policies()[:], prob.log_policies[:], rtol=0, atol=1e-14)
    torch.testing.assert_close(prob.rewards[:], gamma * prob.log_policies[:], rtol=0, atol=0)
    hamming = (prob.log_policies.bits(torch.arange(2**d)) != prob.log_policies.bits(torch.tensor([prob.star]))).sum(1)
    kappa = bounds.hypercube_coordinate_kl(eps)
    np.testing.assert_allclose(prob.forward_kl_table(), kappa * hamming.numpy() / d, rtol=1e-12, atol=1e-17)
    np.testing.assert_allclose(prob.reverse_kl_table(), prob.forward_kl_table(), rtol=1e-12, atol=1e-17)


def test_memory_stays_chunk_sized():
    """A class of 2^40 policies: reading a few rows costs those rows only."""
    cube = hypercube_problem(40, 0.01).log_policies
    assert len(cube) == 2**40
    rows = cube[torch.tensor([0, 2**40 - 1, 12345])]
    assert rows.shape == (3, 40, 2)
    assert (cube.bits(torch.tensor([2**40 - 1])) == 1).all()


# ---------------------------------------------------------------------- measured risk, exact risk, lower bound
def _exact_pmle_risk(n: int, d: int, eps: float, gamma: float) -> float:
    """E_x KL of PMLE at the all-ones vertex: kappa E_m[P(W < m/2) + P(W = m/2)] (a tie sets the bit to 0: wrong)."""
    q = float(bounds.hypercube_win_probability(eps, gamma))
    m = np.arange(n + 1)
    wrong = stats.binom.cdf(np.floor(m / 2), m, q)  # P(W <= m/2): below, or tied
    return float(bounds.hypercube_coordinate_kl(eps) * (stats.binom.pmf(m, n, 1 / (2 * d)) * wrong).sum())


@pytest.mark.parametrize(("d", "n", "eps", "gamma"), [(3, 120, 0.12, 1.0), (5, 400, 0.09, 0.8)])
def test_measured_risk_matches_the_exact_risk_and_lies_above_the_lower_bound(d, n, eps, gamma):
    prob = hypercube_problem(d, eps, gamma)
    data = prob.sample(n, trials=4000, seed=11)
    kl = prob.forward_kl(reg.get("pmle").function(prob, data))
    exact = _exact_pmle_risk(n, d, eps, gamma)
    lower = bounds.hypercube_lower_bound(n, d, eps, gamma)
    se = kl.std(ddof=1) / np.sqrt(kl.size)
    assert abs(kl.mean() - exact) < 4 * se
    assert lower < exact and lower < kl.mean() + 4 * se
    assert bounds.hypercube_lower_bound_bh(n, d, eps, gamma) <= lower


# ---------------------------------------------------------------------- two gloo processes
def _sharded_results() -> dict:
    out = {}
    for d, eps, gamma, star, n, seed in CASES[2:]:
        prob = hypercube_problem(d, eps, gamma, star=star)
        data = prob.sample(n, trials=6, seed=seed)
        for chunk in (5, None):
            reward = fit_reward(prob, data, chunk_size=chunk)
            out[f"{d}/{seed}/{chunk}/fit_reward"] = reward.tolist()
            for name in NAMES:
                args = (reward,) if reg.get(name).needs_reward else ()
                out[f"{d}/{seed}/{chunk}/{name}"] = reg.get(name).function(prob, data, *args, chunk_size=chunk).tolist()
        out[f"{d}/{seed}/constants"] = [prob.coverage(), prob.boundedness(), prob.reward_coverage()]
    return out


@pytest.mark.slow
def test_two_gloo_processes_equal_the_product_argmin(tmp_path):
    sharded = run_sharded(_sharded_results, tmp_path)
    for d, eps, gamma, star, n, seed in CASES[2:]:
        prob = hypercube_problem(d, eps, gamma, star=star)
        data = prob.sample(n, trials=6, seed=seed)
        for chunk in (5, None):
            reward = np.array(sharded[f"{d}/{seed}/{chunk}/fit_reward"])
            np.testing.assert_array_equal(reward, _decomposed("fit_reward", prob, data))
            for name in NAMES:
                expect = _decomposed(name, prob, data, reward if reg.get(name).needs_reward else None)
                np.testing.assert_array_equal(sharded[f"{d}/{seed}/{chunk}/{name}"], expect, err_msg=name)
        np.testing.assert_allclose(sharded[f"{d}/{seed}/constants"], [1.0, np.arctanh(2 * eps), 1.0], rtol=1e-12)
