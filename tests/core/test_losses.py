"""Tests of finitepref.losses against the paper's equations written out independently.

References are evaluated in mpmath at 50 significant digits on the exact float64 inputs. The
tolerance of every comparison is derived from float64 eps: the loss may be off by a few roundings
of its own value plus the effect of rounding its argument, |f'(z)| * dz, with dz a small multiple
of eps times the magnitudes that enter z (the condition number of the computation, not slack).
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import example, given, target
from hypothesis import strategies as st

from finitepref import losses

mp.mp.dps = 50
EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).tiny)
LN_1E300 = math.log(1e-300)  # about -690.8

logp = st.floats(min_value=LN_1E300, max_value=0.0, allow_nan=False)
logit = st.floats(min_value=-700.0, max_value=700.0, allow_nan=False)
gammas = st.floats(min_value=0.05, max_value=2.0, allow_nan=False)


def t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def M(x: float) -> mp.mpf:
    return mp.mpf(float(x))


def neg_log_sigmoid(z: mp.mpf) -> mp.mpf:
    r"""-ln sigma(z) = ln(1 + e^{-z}), exact in mpmath."""
    return mp.log1p(mp.exp(-z))


def sigmoid(z: mp.mpf) -> mp.mpf:
    return 1 / (1 + mp.exp(-z))


def assert_close(got: torch.Tensor, ref: mp.mpf, dz_effect: float = 0.0, k: float = 64.0) -> None:
    """|got - ref| <= k*eps*|ref| + dz_effect (argument rounding propagated), plus float64 tiny."""
    g = float(got)
    assert math.isfinite(g), f"non-finite loss {g} where the math gives {mp.nstr(ref, 17)}"
    err = abs(mp.mpf(g) - ref)
    bound = k * EPS * abs(ref) + mp.mpf(dz_effect) + TINY
    assert err <= bound, f"got {g!r}, reference {mp.nstr(ref, 20)}, error {mp.nstr(err, 5)} > {mp.nstr(bound, 5)}"


# ---------------------------------------------------------------------- eq. (3)
@given(a=logp, b=logp, gamma=gammas)
@example(a=0.0, b=LN_1E300, gamma=2.0)
@example(a=LN_1E300, b=0.0, gamma=2.0)
@example(a=-1.0, b=-1.0, gamma=0.5)
def test_preference_logit_eq3(a, b, gamma):
    got = losses.preference_logit(t(a), t(b), gamma)
    ref = M(gamma) * (M(a) - M(b))
    assert_close(got, ref, k=4.0)
    # sigma of the logit is eq. (3) written with powers: pi(a)^g / (pi(a)^g + pi(b)^g)
    pa, pb = mp.exp(M(a)) ** M(gamma), mp.exp(M(b)) ** M(gamma)
    prob = pa / (pa + pb)
    # relative sensitivity of sigma(z) to z is sigma(-z) <= 1: error <= (a few eps) * (1 + |z|)
    assert abs(sigmoid(mp.mpf(float(got))) - prob) <= 8 * EPS * (1 + abs(float(ref))) * prob + TINY


def test_preference_logit_two_zero_probabilities_gives_half():
    ninf = t(-math.inf)
    z = losses.preference_logit(ninf, ninf, 0.7)
    assert float(z) == 0.0
    assert float(losses.pmle_loss(ninf, ninf, 0.7)) == pytest.approx(math.log(2.0), rel=4 * EPS)


def test_preference_logit_zero_probability_against_positive():
    z = losses.preference_logit(t(-math.inf), t(-1.0), 1.0)
    assert float(z) == -math.inf
    assert float(losses.pmle_loss(t(-math.inf), t(-1.0), 1.0)) == math.inf
    assert float(losses.pmle_loss(t(-1.0), t(-math.inf), 1.0)) == 0.0


# ---------------------------------------------------------------------- eq. (4) PMLE
@given(lp=logp, lm=logp, gamma=gammas)
@example(lp=0.0, lm=LN_1E300, gamma=2.0)       # z = +1381.6
@example(lp=LN_1E300, lm=0.0, gamma=2.0)       # z = -1381.6
@example(lp=LN_1E300, lm=LN_1E300, gamma=1.0)  # z = 0 from two tiny probabilities
@example(lp=-1e-300, lm=-1e-300 * 2, gamma=1.0)
def test_pmle_loss_eq4(lp, lm, gamma):
    z = M(gamma) * (M(lp) - M(lm))
    ref = neg_log_sigmoid(z)
    dz = 4 * EPS * abs(z)  # rounding of (lp - lm) and of the product with gamma
    got = losses.pmle_loss(t(lp), t(lm), gamma)
    target(float(abs(z)))
    assert_close(got, ref, dz_effect=float(sigmoid(-z)) * dz)


@pytest.mark.parametrize("z", [-1400.0, -700.0, -40.0, -1e-300, 0.0, 1e-300, 36.0, 700.0, 745.0, 1400.0])
def test_pmle_loss_extreme_logits(z):
    # log-probs (z, 0) with gamma = 1: the logit is exactly z
    got = losses.pmle_loss(t(z), t(0.0), 1.0)
    assert_close(got, neg_log_sigmoid(M(z)))


# ---------------------------------------------------------------------- eq. (6) DPO
@given(lp=logp, lm=logp, rp=logp, rm=logp, beta=st.floats(min_value=0.01, max_value=1.0))
@example(lp=0.0, lm=LN_1E300, rp=LN_1E300, rm=0.0, beta=1.0)   # margin +1381.6
@example(lp=LN_1E300, lm=0.0, rp=0.0, rm=LN_1E300, beta=1.0)   # margin -1381.6
@example(lp=-3.0, lm=-5.0, rp=-3.0, rm=-5.0, beta=0.1)         # pi = pi0: loss ln 2
def test_dpo_loss_eq6(lp, lm, rp, rm, beta):
    z = M(beta) * ((M(lp) - M(lm)) - (M(rp) - M(rm)))
    ref = neg_log_sigmoid(z)
    dz = 8 * EPS * beta * (abs(lp) + abs(lm) + abs(rp) + abs(rm))
    got = losses.dpo_loss(t(lp), t(lm), t(rp), t(rm), beta)
    assert_close(got, ref, dz_effect=float(sigmoid(-z)) * dz)


# ---------------------------------------------------------------------- eq. (9) Bradley-Terry
@given(rp=logit, rm=logit)
@example(rp=700.0, rm=-700.0)
@example(rp=-700.0, rm=700.0)
@example(rp=5.0, rm=5.0)
def test_bradley_terry_loss_eq9(rp, rm):
    z = M(rp) - M(rm)
    ref = neg_log_sigmoid(z)
    got = losses.bradley_terry_loss(t(rp), t(rm))
    assert_close(got, ref, dz_effect=float(sigmoid(-z)) * 2 * EPS * float(abs(z)))


# ---------------------------------------------------------------------- eq. (11) distillation
def distill_ref(lp, lm, rp, rm, gamma):
    z = M(gamma) * (M(lp) - M(lm))
    dr = M(rp) - M(rm)
    # P_pi~(a- > a+) = sigma(-dr) written directly (1 - sigma(dr) would lose digits even at 50)
    return sigmoid(dr) * neg_log_sigmoid(z) + sigmoid(-dr) * neg_log_sigmoid(-z), z, dr


@given(lp=logp, lm=logp, rp=logit, rm=logit, gamma=gammas)
@example(lp=0.0, lm=LN_1E300, rp=700.0, rm=-700.0, gamma=2.0)     # both +1400: loss ~ e^-1400
@example(lp=0.0, lm=LN_1E300, rp=-700.0, rm=700.0, gamma=2.0)     # disagree: loss ~ 1381.6
@example(lp=LN_1E300, lm=0.0, rp=700.0, rm=-700.0, gamma=1.0)
@example(lp=-2.0, lm=-2.0, rp=0.0, rm=0.0, gamma=1.0)             # ln 2
def test_distill_loss_eq11(lp, lm, rp, rm, gamma):
    ref, z, dr = distill_ref(lp, lm, rp, rm, gamma)
    # d loss/dz = sigma(z) - sigma(dr); d loss/d dr = -sigma'(dr) * z. The difference of sigmoids is taken
    # at 700 digits: both may lie within e^-1400 of 1 (or of 0 relative to a loss of that size), where 50
    # digits give 0 and the rounding of z (up to 4 eps |z| relative on e^-|z|) would go unaccounted.
    dz = 4 * EPS * abs(z)
    ddr = 2 * EPS * abs(dr)
    with mp.workdps(700):
        slope = abs(sigmoid(z) - sigmoid(dr))
    effect = slope * dz + sigmoid(dr) * sigmoid(-dr) * abs(z) * ddr
    got = losses.distill_loss(t(lp), t(lm), t(rp), t(rm), gamma)
    assert_close(got, ref, dz_effect=float(effect))


@given(lp=logp, lm=logp, rp=logit, rm=logit, gamma=gammas)
@example(lp=0.0, lm=LN_1E300, rp=700.0, rm=-700.0, gamma=2.0)
def test_distill_loss_symmetric_under_swap(lp, lm, rp, rm, gamma):
    a = losses.distill_loss(t(lp), t(lm), t(rp), t(rm), gamma)
    b = losses.distill_loss(t(lm), t(lp), t(rm), t(rp), gamma)
    assert float(abs(a - b)) <= 4 * EPS * float(abs(a)) + TINY


@given(lp=st.floats(min_value=-50.0, max_value=0.0), lm=st.floats(min_value=-50.0, max_value=0.0), gamma=gammas)
@example(lp=0.0, lm=-30.0, gamma=1.0)
@example(lp=-1.0, lm=-1.0, gamma=0.5)
def test_distill_minimised_at_matching_reward(lp, lm, gamma):
    """With Delta R = gamma * ln(pi(a+)/pi(a-)) the policy logit is stationary (derivative zero)."""
    rp, rm = gamma * lp, gamma * lm
    x = torch.tensor(lp, dtype=torch.float64, requires_grad=True)
    loss = losses.distill_loss(x, t(lm), t(rp), t(rm), gamma)
    (g,) = torch.autograd.grad(loss, x)
    z = gamma * (lp - lm)
    # gradient is gamma*(sigma(z) - sigma(dr)); dr and z differ only by rounding
    assert abs(float(g)) <= 16 * EPS * gamma * (1.0 + abs(z))
    # and it is a minimum in the policy logit: moving lp either way does not decrease (mpmath)
    ref0, _, _ = distill_ref(lp, lm, rp, rm, gamma)
    for h in (-1e-3, 1e-3):
        ref_h, _, _ = distill_ref(lp + h, lm, rp, rm, gamma)
        assert ref_h >= ref0


# ---------------------------------------------------------------------- eq. (10) REBEL
@given(lp=logp, lm=logp, fp=logp, fm=logp, rp=logit, rm=logit, eta=st.floats(min_value=0.01, max_value=10.0))
@example(lp=0.0, lm=LN_1E300, fp=LN_1E300, fm=0.0, rp=-700.0, rm=700.0, eta=1.0)
@example(lp=-1.0, lm=-2.0, fp=-1.0, fm=-2.0, rp=3.0, rm=3.0, eta=2.0)   # exactly 0
def test_rebel_loss_eq10(lp, lm, fp, fm, rp, rm, eta):
    u = (M(lp) - M(fp)) - (M(lm) - M(fm)) - M(eta) * (M(rp) - M(rm))
    ref = u * u
    du = 16 * EPS * (abs(lp) + abs(lm) + abs(fp) + abs(fm) + eta * (abs(rp) + abs(rm)))
    got = losses.rebel_loss(t(lp), t(lm), t(fp), t(fm), t(rp), t(rm), eta)
    assert_close(got, ref, dz_effect=float(2 * abs(u) * du + du * du))


# ---------------------------------------------------------------------- eqs. (1)/(16) shaped reward
@given(r=logit, lp=logp, lr=logp, beta=st.floats(min_value=0.0, max_value=10.0), gamma=st.floats(0.0, 2.0))
@example(r=700.0, lp=LN_1E300, lr=0.0, beta=10.0, gamma=2.0)
@example(r=0.0, lp=-1.0, lr=-1.0, beta=1.0, gamma=0.0)
def test_shaped_reward_eq1_eq16(r, lp, lr, beta, gamma):
    ref = M(r) - M(beta) * (M(lp) - M(lr)) - M(gamma) * M(lp)
    bound = 8 * EPS * (abs(r) + beta * (abs(lp) + abs(lr)) + gamma * abs(lp))
    got = losses.shaped_reward(t(r), t(lp), t(lr), beta, gamma)
    assert_close(got, ref, dz_effect=bound, k=0.0)


def test_shaped_reward_expectation_is_rlhf_objective():
    """E_{a~pi}[shaped] = E_pi[R] - beta KL(pi||pi0) + gamma H(pi) (eq. 16 sign conventions)."""
    rng = np.random.default_rng(3)
    lp = torch.log_softmax(torch.tensor(rng.standard_normal(5)), -1)
    lr = torch.log_softmax(torch.tensor(rng.standard_normal(5)), -1)
    r = torch.tensor(rng.standard_normal(5))
    beta, gamma = 0.3, 0.7
    p = np.exp(lp.numpy())
    kl = float(np.sum(p * (lp.numpy() - lr.numpy())))
    h = float(-np.sum(p * lp.numpy()))
    ref = float(np.sum(p * r.numpy())) - beta * kl + gamma * h
    got = float((torch.exp(lp) * losses.shaped_reward(r, lp, lr, beta, gamma)).sum())
    assert got == pytest.approx(ref, rel=64 * EPS, abs=64 * EPS)


def test_shaped_reward_needs_reference_when_beta_positive():
    with pytest.raises(ValueError, match="ref_logp"):
        losses.shaped_reward(t(0.0), t(-1.0), None, 0.5, 1.0)
    # beta = 0: no reference needed, gamma = 0 gives the reward itself
    assert float(losses.shaped_reward(t(2.5), t(-1.0), None, 0.0, 0.0)) == 2.5


# ---------------------------------------------------------------------- vectorised extremes, gradients
def _extreme_grid():
    lps = torch.tensor([0.0, -1e-300, -1.0, -30.0, -700.0, LN_1E300], dtype=torch.float64)
    rs = torch.tensor([-700.0, -1.0, 0.0, 1.0, 700.0], dtype=torch.float64)
    a, b, c, d = torch.meshgrid(lps, lps, rs, rs, indexing="ij")
    return a.reshape(-1), b.reshape(-1), c.reshape(-1), d.reshape(-1)


@pytest.mark.parametrize("name", ["pmle", "dpo", "bt", "distill", "rebel", "shaped"])
def test_losses_and_gradients_finite_at_extremes(name):
    lp, lm, rp, rm = _extreme_grid()
    lp = lp.clone().requires_grad_(True)
    lm = lm.clone().requires_grad_(True)
    rp = rp.clone().requires_grad_(True)
    rm = rm.clone().requires_grad_(True)
    ref_p, ref_m = lm.detach().flip(0), lp.detach().flip(0)
    fn = {
        "pmle": lambda: losses.pmle_loss(lp, lm, 2.0),
        "dpo": lambda: losses.dpo_loss(lp, lm, ref_p, ref_m, 1.0),
        "bt": lambda: losses.bradley_terry_loss(rp, rm),
        "distill": lambda: losses.distill_loss(lp, lm, rp, rm, 2.0),
        "rebel": lambda: losses.rebel_loss(lp, lm, ref_p, ref_m, rp, rm, 1.0),
        "shaped": lambda: losses.shaped_reward(rp, lp, ref_p, 0.5, 1.0),
    }[name]
    out = fn()
    assert torch.isfinite(out).all()
    inputs = [v for v in (lp, lm, rp, rm)]
    grads = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    for g in grads:
        if g is not None:
            assert torch.isfinite(g).all()
    if name != "shaped":
        assert (out >= 0).all()
