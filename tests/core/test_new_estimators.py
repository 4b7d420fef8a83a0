"""IPO (Azar et al. 2023) and chi-PO (Huang et al. 2024): losses, exact argmins, population limits.

Losses are compared with mpmath references (50 digits) on the exact float64 inputs, with
tolerances derived from float64 eps and the condition of the computation (as in test_losses.py).
Estimators are compared with a sample-by-sample brute-force evaluation of their empirical objective
written here independently in numpy. The closed-form population limits are checked twice: against
a numerical minimisation of the population loss over the simplex (scipy), and as the policy the
estimator picks at very large n when the limit is placed in the class.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import expit

import finitepref as fp
from finitepref import PreferenceData, ToyProblem, losses
from finitepref import registry as reg

est = fp.estimators
mp.mp.dps = 50
EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).tiny)
LN_1E300 = math.log(1e-300)

logp = st.floats(min_value=LN_1E300, max_value=0.0, allow_nan=False)


def t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def M(x: float) -> mp.mpf:
    return mp.mpf(float(x))


def neg_log_sigmoid(z):
    return mp.log1p(mp.exp(-z))


def sigmoid(z):
    return 1 / (1 + mp.exp(-z))


def assert_close(got: torch.Tensor, ref, dz_effect=0.0, k: float = 64.0) -> None:
    g = float(got)
    assert math.isfinite(g), f"non-finite loss {g} where the math gives {mp.nstr(ref, 17)}"
    err = abs(mp.mpf(g) - ref)
    bound = k * EPS * abs(ref) + mp.mpf(dz_effect) + TINY
    assert err <= bound, f"got {g!r}, reference {mp.nstr(ref, 20)}, error {mp.nstr(err, 5)} > {mp.nstr(bound, 5)}"


# ---------------------------------------------------------------------- IPO loss
@given(lp=logp, lm=logp, rp=logp, rm=logp, tau=st.floats(min_value=0.01, max_value=10.0))
@example(lp=0.0, lm=LN_1E300, rp=LN_1E300, rm=0.0, tau=0.01)   # margin +1381.6
@example(lp=LN_1E300, lm=0.0, rp=0.0, rm=LN_1E300, tau=10.0)   # margin -1381.6
@example(lp=-1.0, lm=-2.0, rp=-3.0, rm=-4.0, tau=0.5)          # margin 0: loss 1/(4 tau^2) = 1
def test_ipo_loss_azar_eq17(lp, lm, rp, rm, tau):
    h = (M(lp) - M(lm)) - (M(rp) - M(rm))
    u = h - 1 / (2 * M(tau))
    ref = u * u
    du = 8 * EPS * (abs(lp) + abs(lm) + abs(rp) + abs(rm) + 0.5 / tau)
    assert_close(losses.ipo_loss(t(lp), t(lm), t(rp), t(rm), tau), ref, dz_effect=float(2 * abs(u) * du + du * du))


def test_ipo_loss_minimised_at_target_margin_and_infinite_margin():
    tau = 0.25
    # log-ratio difference exactly 1/(2 tau) = 2: loss 0
    assert float(losses.ipo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), tau)) == 0.0
    assert float(losses.ipo_loss(t(-math.inf), t(-1.0), t(-1.0), t(-1.0), tau)) == math.inf
    # two zero probabilities compare as equal (margin 0), as in preference_logit
    assert float(losses.ipo_loss(t(-math.inf), t(-math.inf), t(-1.0), t(-1.0), tau)) == 4.0


# ---------------------------------------------------------------------- chi-PO loss
def chipo_ref(lp, lm, rp, rm, beta, r_max):
    up, um = M(lp) - M(rp), M(lm) - M(rm)
    margin = M(beta) * ((mp.exp(up) + up) - (mp.exp(um) + um))
    c = 2 * M(r_max)
    clipped = max(min(margin, c), -c)
    return neg_log_sigmoid(clipped), margin, clipped, up, um


@given(lp=logp, lm=logp, rp=logp, rm=logp, beta=st.floats(min_value=0.01, max_value=2.0),
       r_max=st.floats(min_value=0.1, max_value=400.0))
@example(lp=0.0, lm=LN_1E300, rp=LN_1E300, rm=0.0, beta=1.0, r_max=400.0)   # ratio e^{1381}: clipped at +800
@example(lp=LN_1E300, lm=0.0, rp=0.0, rm=LN_1E300, beta=1.0, r_max=400.0)   # clipped at -800
@example(lp=-2.0, lm=-3.0, rp=-2.0, rm=-3.0, beta=0.1, r_max=1.0)           # pi = pi0: ln 2
@example(lp=-1.0, lm=-1.5, rp=-1.2, rm=-1.1, beta=0.5, r_max=100.0)         # inside the clip
@example(lp=-1e-300, lm=-2e-300, rp=0.0, rm=0.0, beta=1.0, r_max=1.0)       # margin ~ 2e-300
def test_chipo_loss_huang_algorithm1(lp, lm, rp, rm, beta, r_max):
    ref, margin, clipped, up, um = chipo_ref(lp, lm, rp, rm, beta, r_max)
    # rounding of u = lp - ref (2 eps |.|) enters e^u relatively, plus a few roundings of each term
    du_p = 4 * EPS * (abs(lp) + abs(rp)) + 4 * EPS * abs(float(up))
    du_m = 4 * EPS * (abs(lm) + abs(rm)) + 4 * EPS * abs(float(um))
    dmargin = beta * ((mp.exp(up) + 1) * du_p + (mp.exp(um) + 1) * du_m) + 8 * EPS * abs(margin)
    got = losses.chipo_loss(t(lp), t(lm), t(rp), t(rm), beta, r_max)
    # the clip is 1-Lipschitz and |d(-ln sigma)/dz| = sigma(-z)
    assert_close(got, ref, dz_effect=float(sigmoid(-clipped) * dmargin))


@pytest.mark.parametrize("lp, rp, lm, rm", [(0.0, -800.0, -800.0, 0.0), (-800.0, 0.0, 0.0, -800.0),
                                            (0.0, -800.0, 0.0, -900.0), (-math.inf, -1.0, -1.0, -1.0),
                                            (-1.0, -1.0, -math.inf, -1.0)])
def test_chipo_loss_overflowing_ratios_are_clipped(lp, rp, lm, rm):
    """Ratios beyond e^709 (overflow) and zero probabilities: the margin is +-inf, the loss the clip's."""
    beta, r_max = 0.5, 3.0
    margin = float(losses.chi_link_margin(t(lp), t(lm), t(rp), t(rm), beta))
    assert math.isinf(margin)
    got = losses.chipo_loss(t(lp), t(lm), t(rp), t(rm), beta, r_max)
    assert_close(got, neg_log_sigmoid(math.copysign(6.0, margin) * mp.mpf(1)))


def test_chi_link_margin_exact_zero_and_antisymmetry():
    for lp, rp in [(-1.0, -2.0), (-700.0, 0.0), (0.0, -700.0), (-math.inf, -1.0)]:
        assert float(losses.chi_link_margin(t(lp), t(lp), t(rp), t(rp), 0.3)) == 0.0
    assert float(losses.chi_link_margin(t(-math.inf), t(-math.inf), t(-1.0), t(-1.0), 0.3)) == 0.0
    a = losses.chi_link_margin(t(-0.3), t(-2.0), t(-1.0), t(-0.5), 0.7)
    b = losses.chi_link_margin(t(-2.0), t(-0.3), t(-0.5), t(-1.0), 0.7)
    assert float(a) == -float(b)
    # no cancellation: u+ - u- = 1e-12 gives beta * 2e-12 to full relative precision (e^u - e^v ~ u - v at u ~ 0)
    got = float(losses.chi_link_margin(t(-1e-12), t(-2e-12), t(0.0), t(0.0), 1.0))
    ref = (mp.exp(M(-1e-12)) - mp.exp(M(-2e-12))) + M(1e-12)
    assert abs(got - ref) <= 8 * EPS * abs(ref)


def test_chipo_huge_r_max_is_unclipped_and_tiny_r_max_flattens():
    lp, lm, rp, rm = t(-0.5), t(-1.5), t(-1.0), t(-1.0)
    margin = losses.chi_link_margin(lp, lm, rp, rm, 0.4)
    assert float(losses.chipo_loss(lp, lm, rp, rm, 0.4, 1e6)) == float(-torch.nn.functional.logsigmoid(margin))
    assert float(losses.chipo_loss(lp, lm, rp, rm, 0.4, 1e-3)) == pytest.approx(math.log1p(math.exp(-2e-3)),
                                                                            rel=4 * EPS)


def _extreme_grid():
    lps = torch.tensor([0.0, -1e-300, -1.0, -30.0, -700.0, LN_1E300], dtype=torch.float64)
    a, b, c, d = torch.meshgrid(lps, lps, lps, lps, indexing="ij")
    return a.reshape(-1), b.reshape(-1), c.reshape(-1), d.reshape(-1)


@pytest.mark.parametrize("name", ["ipo", "chipo", "chipo_wide"])
def test_new_losses_and_gradients_finite_at_extremes(name):
    inputs = [v.clone().requires_grad_(True) for v in _extreme_grid()]
    lp, lm, rp, rm = inputs
    out = {"ipo": lambda: losses.ipo_loss(lp, lm, rp, rm, 0.1),
           "chipo": lambda: losses.chipo_loss(lp, lm, rp, rm, 0.1, 1.0),
           "chipo_wide": lambda: losses.chipo_loss(lp, lm, rp, rm, 1.0, 1e300)}[name]()
    assert torch.isfinite(out).all() and (out >= 0).all()
    for g in torch.autograd.grad(out.sum(), inputs):
        assert torch.isfinite(g).all()


# ---------------------------------------------------------------------- brute force
def nls(z):
    return np.logaddexp(0.0, -z)


def brute_objective(prob: ToyProblem, samples, method: str, coef: float, r_max: float | None = None) -> np.ndarray:
    """Mean loss of every policy over the explicit sample list, straight from the equations."""
    lp = prob.log_policies.numpy()
    lref = prob.log_reference.numpy()
    total = np.zeros(lp.shape[0])
    for x, win, lose in samples:
        g_win = lp[:, x, win] - lref[x, win]
        g_lose = lp[:, x, lose] - lref[x, lose]
        if method == "ipo":
            total += (g_win - g_lose - 1.0 / (2.0 * coef)) ** 2
        else:
            z_win, z_lose = np.exp(g_win), np.exp(g_lose)
            margin = coef * ((z_win + np.log(z_win)) - (z_lose + np.log(z_lose)))
            total += nls(np.clip(margin, -2.0 * r_max, 2.0 * r_max))
    return total / len(samples)


def run(prob, data, method, coef, r_max=None, **kw):
    return est.ipo(prob, data, coef, **kw) if method == "ipo" else est.chipo(prob, data, coef, r_max, **kw)


def assert_attains_min(obj: np.ndarray, chosen: int) -> None:
    best = obj.min()
    assert obj[chosen] <= best + 1e-10 * (1.0 + abs(best)), f"chosen {chosen} {obj[chosen]!r} > min {best!r}"


CASES = [("ipo", 0.1, None), ("ipo", 1.0, None), ("ipo", 10.0, None),
         ("chipo", 0.05, 0.2), ("chipo", 0.5, None), ("chipo", 2.0, 50.0)]
SHAPES = [(2, 3, 5, 0), (3, 4, 30, 1), (3, 3, 12, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"X{s[0]}A{s[1]}K{s[2]}s{s[3]}")
@pytest.mark.parametrize("method, coef, r_max", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_estimator_attains_brute_force_minimum(shape, method, coef, r_max):
    X, A, K, seed = shape
    prob = ToyProblem.random(n_prompts=X, n_responses=A, n_policies=K, gamma=0.8, spread=0.7, seed=seed)
    data = prob.sample(25, trials=3, seed=100 + seed)
    chosen = run(prob, data, method, coef, r_max)
    assert chosen.shape == (3,) and chosen.dtype == np.int64
    brute_r_max = est.chipo_default_r_max(prob) if r_max is None else r_max
    for trial in range(3):
        assert_attains_min(brute_objective(prob, data.samples(trial), method, coef, brute_r_max), int(chosen[trial]))
    np.testing.assert_array_equal(run(prob, data, method, coef, r_max, chunk_size=3), chosen)


@pytest.mark.parametrize("method, coef, r_max", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_estimator_from_explicit_samples_and_ties(method, coef, r_max):
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=9, seed=21)
    samples = [(0, 0, 1), (0, 0, 1), (0, 2, 1), (1, 1, 0), (1, 2, 0), (1, 2, 1), (0, 1, 2), (1, 1, 1)]
    data = PreferenceData.from_samples(samples, 2, 3)
    chosen = int(run(prob, data, method, coef, r_max)[0])
    brute_r_max = est.chipo_default_r_max(prob) if r_max is None else r_max
    assert_attains_min(brute_objective(prob, samples, method, coef, brute_r_max), chosen)
    # every policy twice, and a copy of the winner first: the lowest index wins, across chunks too
    lp = prob.log_policies
    dup = ToyProblem(prob.prompt_probs, prob.mu, torch.cat([lp, lp]), prob.star, prob.gamma,
                     reference=prob.log_reference, log_space=True)
    first = ToyProblem(prob.prompt_probs, prob.mu, torch.cat([lp[chosen][None], lp]), prob.star + 1, prob.gamma,
                       reference=prob.log_reference, log_space=True)
    # the duplicated class has a larger R: pass chi-PO's clip explicitly so that the objective is unchanged
    fixed = est.chipo_default_r_max(prob) if r_max is None else r_max
    for chunk in (None, 2):
        assert run(dup, data, method, coef, fixed, chunk_size=chunk)[0] == chosen
        assert run(first, data, method, coef, fixed, chunk_size=chunk)[0] == 0


def test_chipo_default_r_max_is_two_gamma_r():
    prob = ToyProblem.random(n_prompts=2, n_responses=4, n_policies=10, gamma=0.7, seed=5)
    assert est.chipo_default_r_max(prob) == 2 * 0.7 * prob.boundedness()
    data = prob.sample(50, trials=4, seed=2)
    np.testing.assert_array_equal(est.chipo(prob, data, 0.3), est.chipo(prob, data, 0.3, 2 * 0.7 * prob.boundedness()))
    # the default clip holds every true reward difference gamma*ln(pi*(a)/pi*(b)) strictly inside
    reward = prob.gamma * prob.log_pi_star
    assert float((reward.max(-1).values - reward.min(-1).values).max()) <= est.chipo_default_r_max(prob)


def test_reproducible_and_registry():
    prob = ToyProblem.random(n_prompts=3, n_responses=4, n_policies=25, seed=17)
    data = prob.sample(40, trials=6, seed=123)
    np.testing.assert_array_equal(reg.fit("ipo", prob, data, tau=0.3), est.ipo(prob, data, 0.3))
    np.testing.assert_array_equal(reg.fit("chipo", prob, data, beta=0.3), est.chipo(prob, data, 0.3))
    np.testing.assert_array_equal(reg.fit("chipo", prob, data, beta=0.3, r_max=2.0), est.chipo(prob, data, 0.3, 2.0))
    for name in ("ipo", "chipo"):
        entry = reg.get(name)
        assert not entry.learns_pi_star and entry.population_limit is not None and entry.divergence == "forward"
    with pytest.raises(TypeError):
        reg.fit("ipo", prob, data, beta=0.3)


# ---------------------------------------------------------------------- bad inputs
def test_bad_inputs():
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=5, seed=0)
    data = prob.sample(10, trials=2, seed=0)
    for bad in (0.0, -1.0, math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match="tau"):
            est.ipo(prob, data, bad)
        with pytest.raises(ValueError, match="beta"):
            est.chipo(prob, data, bad)
        with pytest.raises(ValueError, match="r_max"):
            est.chipo(prob, data, 0.5, bad)
        with pytest.raises(ValueError, match="tau"):
            est.ipo_population_limit(prob, bad)
        with pytest.raises(ValueError, match="beta"):
            est.chipo_population_limit(prob, bad)
    bare = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=5, reference=False, seed=0)
    d = bare.sample(10, seed=0)
    for f in (lambda: est.ipo(bare, d, 0.5), lambda: est.chipo(bare, d, 0.5), lambda: est.ipo_population_limit(bare, 1.0),
              lambda: est.chipo_population_limit(bare, 1.0)):
        with pytest.raises(ValueError, match="reference"):
            f()
    other = PreferenceData.from_samples([(0, 0, 1)], 3, 3)
    for f in (lambda: est.ipo(prob, other, 0.5), lambda: est.chipo(prob, other, 0.5)):
        with pytest.raises(ValueError, match="data"):
            f()
    with pytest.raises(ValueError, match="r_max"):  # a clip that cuts a true reward difference
        est.chipo_population_limit(prob, 0.5, r_max=1e-3)


# ---------------------------------------------------------------------- population limits
def population_loss(log_pi: np.ndarray, prob: ToyProblem, method: str, coef: float, r_max: float) -> float:
    """Expected loss under the exact pair law of Section 2, written out over (x, w, l)."""
    law = prob.law()
    lref = prob.log_reference.numpy()
    g = log_pi - lref
    total = 0.0
    for x, win, lose in np.argwhere(law > 0):
        if method == "ipo":
            val = (g[x, win] - g[x, lose] - 0.5 / coef) ** 2
        else:
            phi = np.exp(g[x]) + g[x]
            val = nls(np.clip(coef * (phi[win] - phi[lose]), -2 * r_max, 2 * r_max))
        total += law[x, win, lose] * val
    return float(total)


@pytest.mark.parametrize("method, coef", [("ipo", 0.2), ("ipo", 2.0), ("chipo", 0.1), ("chipo", 1.0)])
def test_population_limit_minimises_population_loss_over_simplex(method, coef):
    """Numerical minimisation over all policies (logits, scipy BFGS) lands on the closed form."""
    prob = ToyProblem.random(n_prompts=2, n_responses=4, n_policies=6, gamma=1.3, seed=11)
    r_max = est.chipo_default_r_max(prob)
    limit = (est.ipo_population_limit(prob, coef) if method == "ipo" else est.chipo_population_limit(prob, coef)).numpy()
    shape = limit.shape

    def objective(theta):
        log_pi = theta.reshape(shape) - np.logaddexp.reduce(theta.reshape(shape), axis=-1, keepdims=True)
        return population_loss(log_pi, prob, method, coef, r_max)

    start = prob.log_reference.numpy().ravel()
    res = minimize(objective, start, method="BFGS", options={"gtol": 1e-11, "maxiter": 5000})
    found = res.x.reshape(shape) - np.logaddexp.reduce(res.x.reshape(shape), axis=-1, keepdims=True)
    np.testing.assert_allclose(found, limit, atol=2e-5)
    assert objective(limit.ravel()) <= res.fun + 1e-12
    # the limit is a biased target: not pi*
    assert np.abs(limit - prob.log_pi_star.numpy()).max() > 1e-2


def test_ipo_limit_closed_form_by_hand():
    """One prompt, two responses, mu uniform, pi0 uniform: p(a>mu) = (1/2 + sigma(gamma*d))/2 with
    d = ln(pi*(0)/pi*(1)), so ln(pi(0)/pi(1)) = (p(0>mu) - p(1>mu))/tau = (sigma(gamma d) - 1/2)/tau."""
    p_star, gamma, tau = 0.8, 0.5, 0.25
    prob = ToyProblem([1.0], [[0.5, 0.5]], [[[p_star, 1 - p_star]], [[0.5, 0.5]]], star=0, gamma=gamma,
                      reference=[[0.5, 0.5]])
    limit = est.ipo_population_limit(prob, tau).numpy()[0]
    d = math.log(p_star / (1 - p_star))
    assert limit[0] - limit[1] == pytest.approx((expit(gamma * d) - 0.5) / tau, rel=1e-13)


def test_chipo_limit_solves_the_link_equation():
    """beta*phi(pi/pi0) - gamma*ln pi* is constant in a, and pi sums to one, to rounding."""
    prob = ToyProblem.random(n_prompts=3, n_responses=5, n_policies=4, gamma=2.0, seed=9)
    for beta in (0.01, 0.3, 5.0):
        lim = est.chipo_population_limit(prob, beta)
        g = lim - prob.log_reference
        shift = beta * (torch.exp(g) + g) - prob.gamma * prob.log_pi_star
        spread = (shift.max(-1).values - shift.min(-1).values).abs().max()
        assert float(spread) <= 1e-9 * (1 + float(shift.abs().max()))
        np.testing.assert_allclose(torch.logsumexp(lim, -1).numpy(), 0.0, atol=1e-14)


@pytest.mark.parametrize("method, coef", [("ipo", 0.5), ("chipo", 0.5), ("chipo", 0.05)])
def test_large_n_estimator_converges_to_population_limit(method, coef):
    """Place pi*, the closed-form limit, DPO's limit and random policies in one class: at n = 1e9 the
    estimator picks the limit (the class's population minimiser), not pi*."""
    base = ToyProblem.random(n_prompts=2, n_responses=4, n_policies=8, gamma=1.0, spread=0.5, seed=4)
    limit_fn = est.ipo_population_limit if method == "ipo" else est.chipo_population_limit
    r_max = est.chipo_default_r_max(base)
    limit = limit_fn(base, coef) if method == "ipo" else limit_fn(base, coef, r_max)
    dpo_limit = torch.log_softmax(base.log_reference + base.gamma / coef * base.log_pi_star, -1)
    pols = torch.cat([base.log_policies, dpo_limit[None], limit[None]])
    prob = ToyProblem(base.prompt_probs, base.mu, pols, base.star, base.gamma, reference=base.log_reference,
                      log_space=True)
    target = prob.n_policies - 1
    data = prob.sample(10**9, trials=3, seed=0)
    chosen = est.ipo(prob, data, coef) if method == "ipo" else est.chipo(prob, data, coef, r_max)
    assert (chosen == target).all()
    assert prob.forward_kl(target) > 1e-3  # the limit is not pi*
    # and it is the exact argmin of the population loss over the class
    pop = [population_loss(p.numpy(), prob, method, coef, r_max) for p in prob.log_policies]
    assert int(np.argmin(pop)) == target
