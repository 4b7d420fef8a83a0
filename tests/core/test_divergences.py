"""Tests of finitepref.divergences (exact, stable KL and entropy) against mpmath at 50 digits.

The reference KL is the generalised (I-)divergence sum_a p ln(p/q) - p + q evaluated exactly on the
float64 inputs: it equals KL(p||q) for normalised p, q and is the quantity that stays non-negative
when float64 log-probabilities normalise only to within an ulp.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from finitepref import ToyProblem
from finitepref.divergences import entropy, kl

mp.mp.dps = 50
EPS = float(np.finfo(np.float64).eps)


def kl_ref(log_p, log_q) -> mp.mpf:
    total = mp.mpf(0)
    for a, b in zip(np.asarray(log_p, dtype=float).tolist(), np.asarray(log_q, dtype=float).tolist(), strict=True):
        if a == -math.inf:
            total += mp.exp(mp.mpf(b)) if b != -math.inf else 0
            continue
        if b == -math.inf:
            return mp.inf
        p, q = mp.exp(mp.mpf(a)), mp.exp(mp.mpf(b))
        total += p * (mp.mpf(a) - mp.mpf(b)) - p + q
    return total


def entropy_ref(log_p) -> mp.mpf:
    return -mp.fsum(mp.exp(mp.mpf(a)) * mp.mpf(a) for a in np.asarray(log_p).tolist() if a != -math.inf)


def T(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


@pytest.mark.parametrize("seed", range(12))
def test_kl_tiny_values_relative_error(seed):
    """KL ~ 1e-15 between nearly equal distributions: relative error < 1e-10; the naive sum fails."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(6)
    v = rng.standard_normal(6)
    log_p = torch.log_softmax(T(z), -1)
    log_q = torch.log_softmax(T(z + 3e-8 * v), -1)
    ref = kl_ref(log_p, log_q)
    assert 1e-17 < ref < 1e-14
    got = float(kl(log_p, log_q))
    assert abs(got - ref) / ref < 1e-10, f"KL {got!r} vs {mp.nstr(ref, 17)}"
    # the textbook formula on probabilities loses most digits here (what the stable form is for)
    p, q = np.exp(log_p.numpy()), np.exp(log_q.numpy())
    naive = float(np.sum(p * np.log(p / q)))
    assert abs(naive - ref) / ref > 1e-10


def test_kl_tiny_single_term_closed_form():
    # p = (1/2, 1/2), q = (1/2 + d, 1/2 - d) with d = 1e-8: KL = 2 d^2 + O(d^4) = 2e-16
    d = 1e-8
    log_p = T([math.log(0.5), math.log(0.5)])
    log_q = T([math.log1p(2 * d) + math.log(0.5), math.log1p(-2 * d) + math.log(0.5)])
    ref = kl_ref(log_p, log_q)
    assert abs(ref - 2 * d * d) < 1e-3 * 2 * d * d
    got = float(kl(log_p, log_q))
    assert abs(got - ref) / ref < 1e-10


@pytest.mark.parametrize(
    "log_p, log_q",
    [
        ([0.0 - 1e-300, -700.0], [-700.0, -1e-300]),                   # p = (1, e^-700) vs reversed
        ([-1e-300, math.log(1e-300)], [math.log(1e-300), -1e-300]),
        ([math.log(0.5), math.log(0.5)], [-1e-300, -700.0]),          # q tiny where p is 1/2
        ([-700.0, -1e-300], [-1e-300, -700.0]),
        ([math.log(0.3), math.log(0.7)], [math.log(0.3), math.log(0.7)]),  # exactly 0
    ],
)
def test_kl_large_values(log_p, log_q):
    ref = kl_ref(log_p, log_q)
    got = float(kl(T(log_p), T(log_q)))
    assert math.isfinite(got)
    assert abs(got - ref) <= 64 * EPS * max(abs(ref), 1.0) * 8, (got, mp.nstr(ref, 17))
    if ref > 0:
        assert abs(got - ref) / ref < 64 * EPS * 10


def test_kl_conventions():
    ninf = -math.inf
    # 0 log 0 = 0: p has a zero where q is positive -> contributes q_a (generalised), here 0 since q=0 too
    assert float(kl(T([0.0, ninf]), T([0.0, ninf]))) == 0.0
    # p_a = 0 < q_a: term 0 * log(0/q) = 0; KL of (1, 0) vs (1/2, 1/2) is ln 2
    got = float(kl(T([0.0, ninf]), T([math.log(0.5), math.log(0.5)])))
    assert got == pytest.approx(math.log(2.0), rel=16 * EPS)
    # p_a > 0 = q_a: +inf, never NaN
    got = kl(T([math.log(0.5), math.log(0.5)]), T([0.0, ninf]))
    assert float(got) == math.inf
    out = kl(T([[0.0, ninf], [math.log(0.5), math.log(0.5)], [ninf, 0.0]]),
             T([[0.0, ninf], [0.0, ninf], [0.0, ninf]]))
    assert not torch.isnan(out).any()
    assert out.tolist() == [0.0, math.inf, math.inf]


@st.composite
def pair_of_log_dists(draw):
    n = draw(st.integers(2, 6))
    scale = draw(st.sampled_from([1e-9, 1e-3, 1.0, 30.0, 300.0]))
    z = draw(st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n))
    w = draw(st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n))
    lp = torch.log_softmax(T(z) * scale, -1)
    lq = torch.log_softmax(T(w) * scale, -1)
    return lp.numpy(), lq.numpy()


@given(pair=pair_of_log_dists())
@example(pair=(np.array([0.0, -1400.0]), np.array([-1400.0, 0.0])))
def test_kl_property_against_mpmath(pair):
    lp, lq = pair
    ref = kl_ref(lp, lq)
    got = float(kl(T(lp), T(lq)))
    assert math.isfinite(got) and got >= 0.0
    # every term of the stable form is >= 0, so relative accuracy holds at every magnitude
    assert abs(got - ref) <= 1e-10 * ref + 1e-300, (got, mp.nstr(ref, 17))


def test_kl_broadcasts_class_against_star():
    rng = np.random.default_rng(0)
    lp = torch.log_softmax(T(rng.standard_normal((4, 3, 5))), -1)
    ls = torch.log_softmax(T(rng.standard_normal((3, 5))), -1)
    out = kl(ls, lp)
    assert out.shape == (4, 3)
    p = np.exp(ls.numpy())
    direct = np.sum(p[None] * (ls.numpy()[None] - lp.numpy()), -1)
    np.testing.assert_allclose(out.numpy(), direct, rtol=1e-12, atol=1e-15)


@given(lp=pair_of_log_dists())
def test_entropy_against_mpmath(lp):
    log_p = lp[0]
    ref = entropy_ref(log_p)
    got = float(entropy(T(log_p)))
    scale = float(np.sum(np.exp(log_p) * np.abs(log_p)))
    assert abs(got - ref) <= 16 * EPS * (scale + 1e-300)


def test_entropy_conventions_and_values():
    assert float(entropy(T([0.0, -math.inf]))) == 0.0
    assert float(entropy(T([math.log(0.25)] * 4))) == pytest.approx(math.log(4.0), rel=4 * EPS)
    assert not torch.isnan(entropy(T([-math.inf, 0.0, -math.inf])))


def test_problem_forward_and_reverse_kl_tables():
    prob = ToyProblem.random(n_prompts=3, n_responses=4, n_policies=12, seed=5)
    lp = prob.log_policies.numpy()
    ls = lp[prob.star]
    d = prob.prompt_probs.numpy()
    ps, pk = np.exp(ls), np.exp(lp)
    fwd = np.einsum("x,kxa->k", d, ps[None] * (ls[None] - lp))
    rev = np.einsum("x,kxa->k", d, pk * (lp - ls[None]))
    idx = np.arange(prob.n_policies)
    np.testing.assert_allclose(prob.forward_kl(idx), fwd, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(prob.reverse_kl(idx), rev, rtol=1e-12, atol=1e-15)
    assert prob.forward_kl(prob.star) == 0.0
    assert prob.reverse_kl(prob.star) == 0.0
    k = int(np.argmax(fwd))
    assert isinstance(prob.forward_kl(k), float)
    assert prob.forward_kl(k) == pytest.approx(fwd[k], rel=1e-12)
    np.testing.assert_allclose(prob.forward_kl([k, 0, k]), fwd[[k, 0, k]], rtol=1e-12)
    with pytest.raises(ValueError, match="index"):
        prob.forward_kl(prob.n_policies)
    with pytest.raises(ValueError, match="index"):
        prob.reverse_kl(-1)
    with pytest.raises(ValueError, match="index"):
        prob.forward_kl(np.array([0.5]))
