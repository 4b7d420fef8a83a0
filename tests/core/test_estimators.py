"""Tests of finitepref.estimators: each exact argmin against a brute-force evaluation of its objective.

For every policy (or reward) the objective is computed sample by sample in numpy straight from the
paper's equation over the explicit list ``data.samples(t)``; the estimator's choice must attain the
minimum (up to a float64 summation tolerance) and exact ties must go to the lowest index.
Regularizers follow the estimators' documented form: beta times the mean over the samples' prompts
of KL(pi(x)||pi0(x)); eq. (16) as the mean over the samples' prompts of
-E_pi[R] - gamma H(pi) + beta KL(pi||pi0); eq. (1) the same with gamma = 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit

import finitepref as fp
from finitepref import PreferenceData, ToyProblem

est = fp.estimators


def nls(z):
    """-ln sigma(z), written as ln(1 + e^{-z})."""
    return np.logaddexp(0.0, -z)


def kl_to_ref(lp: np.ndarray, lref: np.ndarray) -> np.ndarray:
    """KL(pi_k(x) || pi0(x)) for every policy and prompt, (K, X)."""
    return np.sum(np.exp(lp) * (lp - lref[None]), -1)


def objectives(prob: ToyProblem, samples, method: str, beta: float = 0.0, m: int | None = None,
               eta: float = 1.0) -> np.ndarray:
    """Brute-force objective of every candidate (policies; rewards for fit_reward), sample by sample."""
    lp = prob.log_policies.numpy()
    g = prob.gamma
    lref = None if prob.log_reference is None else prob.log_reference.numpy()
    R = None if prob.rewards is None else prob.rewards.numpy()
    n_cand = R.shape[0] if method == "fit_reward" else lp.shape[0]
    total = np.zeros(n_cand)
    kl = kl_to_ref(lp, lref) if (lref is not None and beta > 0) else np.zeros(lp.shape[:2])
    ent = -np.sum(np.exp(lp) * lp, -1)
    for x, w, l in samples:
        if method == "pmle":
            val = nls(g * (lp[:, x, w] - lp[:, x, l])) + beta * kl[:, x]
        elif method == "fit_reward":
            val = nls(R[:, x, w] - R[:, x, l])
        elif method == "distill":
            dr = R[m, x, w] - R[m, x, l]
            z = g * (lp[:, x, w] - lp[:, x, l])
            val = expit(dr) * nls(z) + expit(-dr) * nls(-z) + beta * kl[:, x]
        elif method == "reverse_kl":
            val = -np.exp(lp[:, x]) @ R[m, x] - g * ent[:, x] + beta * kl[:, x]
        elif method == "rlhf":
            val = -np.exp(lp[:, x]) @ R[m, x] + beta * kl[:, x]
        elif method == "dpo":
            val = nls(beta * ((lp[:, x, w] - lp[:, x, l]) - (lref[x, w] - lref[x, l])))
        elif method == "rebel":
            val = ((lp[:, x, w] - lp[:, x, l]) - (lref[x, w] - lref[x, l]) - eta * (R[m, x, w] - R[m, x, l])) ** 2
        else:
            raise AssertionError(method)
        total += val
    return total / len(samples)


def run(prob, data, method, beta=0.0, m=0, eta=1.0, **kw):
    if method == "pmle":
        return est.pmle(prob, data, beta, **kw)
    if method == "fit_reward":
        return est.fit_reward(prob, data, **kw)
    if method == "distill":
        return est.distill(prob, data, m, beta, **kw)
    if method == "reverse_kl":
        return est.reverse_kl(prob, data, m, beta, **kw)
    if method == "rlhf":
        return est.rlhf(prob, data, m, beta, **kw)
    if method == "dpo":
        return est.dpo(prob, data, beta, **kw)
    if method == "rebel":
        return est.rebel(prob, data, m, eta, **kw)
    raise AssertionError(method)


def assert_attains_min(obj: np.ndarray, chosen: int) -> None:
    best = obj.min()
    tol = 1e-10 * (1.0 + abs(best))
    assert obj[chosen] <= best + tol, f"chosen {chosen} objective {obj[chosen]!r} > min {best!r} at {obj.argmin()}"


# (method, beta, eta); DPO needs beta > 0
CASES = [
    ("pmle", 0.0, None), ("pmle", 0.3, None),
    ("fit_reward", 0.0, None),
    ("distill", 0.0, None), ("distill", 0.5, None),
    ("reverse_kl", 0.0, None), ("reverse_kl", 0.4, None),
    ("rlhf", 0.0, None), ("rlhf", 0.7, None),
    ("dpo", 0.1, None), ("dpo", 2.0, None),
    ("rebel", 0.0, 1.0), ("rebel", 0.0, 2.5),
]
SHAPES = [(2, 3, 5, 3, 0), (3, 4, 30, 5, 1), (3, 3, 12, 4, 2)]


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"X{s[0]}A{s[1]}K{s[2]}M{s[3]}s{s[4]}")
def problem_and_data(request):
    X, A, K, M, seed = request.param
    prob = ToyProblem.random(n_prompts=X, n_responses=A, n_policies=K, n_rewards=M, gamma=0.8, spread=0.7,
                             seed=seed)
    data = prob.sample(25, trials=3, seed=100 + seed)
    return prob, data


@pytest.mark.parametrize("method, beta, eta", CASES, ids=[f"{c[0]}-b{c[1]}-e{c[2]}" for c in CASES])
def test_estimator_attains_brute_force_minimum(problem_and_data, method, beta, eta):
    prob, data = problem_and_data
    M = prob.n_rewards
    reward_index = np.arange(data.trials) % M  # a different reward per trial
    uses_reward = method in ("distill", "reverse_kl", "rlhf", "rebel")
    kw = {"eta": eta} if eta is not None else {}
    chosen = run(prob, data, method, beta, m=reward_index if uses_reward else 0, **kw)
    assert chosen.shape == (data.trials,) and chosen.dtype == np.int64
    for t in range(data.trials):
        m = int(reward_index[t])
        obj = objectives(prob, data.samples(t), method, beta, m=m, eta=eta or 1.0)
        assert_attains_min(obj, int(chosen[t]))
    if uses_reward:  # the single-index call agrees with the per-trial array
        single = run(prob, data, method, beta, m=int(reward_index[1]), **kw)
        assert single[1] == chosen[1]
    small = run(prob, data, method, beta, m=reward_index if uses_reward else 0, chunk_size=3, **kw)
    np.testing.assert_array_equal(small, chosen)


@pytest.mark.parametrize("method, beta, eta", CASES, ids=[f"{c[0]}-b{c[1]}-e{c[2]}" for c in CASES])
def test_estimator_from_explicit_samples(method, beta, eta):
    """A hand-written sample list through PreferenceData.from_samples."""
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=9, n_rewards=3, seed=21)
    samples = [(0, 0, 1), (0, 0, 1), (0, 2, 1), (1, 1, 0), (1, 2, 0), (1, 2, 1), (0, 1, 2)]
    data = PreferenceData.from_samples(samples, 2, 3)
    kw = {"eta": eta} if eta is not None else {}
    chosen = int(run(prob, data, method, beta, m=2, **kw)[0])
    obj = objectives(prob, samples, method, beta, m=2, eta=eta or 1.0)
    assert_attains_min(obj, chosen)


@pytest.mark.parametrize("method, beta, eta", CASES, ids=[f"{c[0]}-b{c[1]}-e{c[2]}" for c in CASES])
def test_ties_go_to_lowest_index(method, beta, eta):
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=7, n_rewards=3, seed=8)
    data = prob.sample(30, trials=3, seed=1)
    kw = {"eta": eta} if eta is not None else {}
    base = run(prob, data, method, beta, m=1, **kw)
    lp = prob.log_policies
    if method == "fit_reward":
        R = prob.rewards
        dup = ToyProblem(prob.prompt_probs, prob.mu, lp, prob.star, prob.gamma, rewards=torch.cat([R, R]),
                         reference=prob.log_reference, log_space=True)
        out = run(dup, data, method, beta, m=1, **kw)
        np.testing.assert_array_equal(out, base)
        for t in range(2):  # a copy of the winner placed first wins
            first = ToyProblem(prob.prompt_probs, prob.mu, lp, prob.star, prob.gamma,
                               rewards=torch.cat([R[base[t]][None], R]), reference=prob.log_reference,
                               log_space=True)
            assert run(first, data, method, beta, m=1, **kw)[t] == 0
        return
    # every policy twice: the first copy must win, also across chunk boundaries
    dup = ToyProblem(prob.prompt_probs, prob.mu, torch.cat([lp, lp]), prob.star, prob.gamma,
                     rewards=prob.rewards, reference=prob.log_reference, log_space=True)
    np.testing.assert_array_equal(run(dup, data, method, beta, m=1, **kw), base)
    np.testing.assert_array_equal(run(dup, data, method, beta, m=1, chunk_size=3, **kw), base)
    for t in range(2):
        # a copy of the winner placed at index 0: index 0 wins, not the original at base[t] + 1
        first = ToyProblem(prob.prompt_probs, prob.mu, torch.cat([lp[base[t]][None], lp]), prob.star + 1,
                           prob.gamma, rewards=prob.rewards, reference=prob.log_reference, log_space=True)
        assert run(first, data, method, beta, m=1, **kw)[t] == 0
        assert run(first, data, method, beta, m=1, chunk_size=2, **kw)[t] == 0


def test_tie_between_distinct_policies_with_equal_objective():
    """Two different policies with equal PMLE objective: they swap responses 1 and 2, and the data
    compare 0 with 1 once and 0 with 2 once, so their objectives are the same two terms."""
    star = [[0.2, 0.3, 0.5]]
    pol_b = [[0.5, 0.2, 0.3]]
    pol_a = [[0.5, 0.3, 0.2]]
    prob = ToyProblem([1.0], [[0.5, 0.25, 0.25]], [star, pol_b, pol_a], star=0, gamma=1.0)
    samples = [(0, 0, 1), (0, 0, 2)]
    data = PreferenceData.from_samples(samples, 1, 3)
    obj = objectives(prob, samples, "pmle")
    assert obj[1] == obj[2] < obj[0]
    assert est.pmle(prob, data)[0] == 1
    assert est.pmle(prob, data, chunk_size=1)[0] == 1


def test_reproducible_outputs():
    def go():
        prob = ToyProblem.random(n_prompts=3, n_responses=4, n_policies=25, n_rewards=4, seed=17)
        data = prob.sample(40, trials=6, seed=123)
        r = est.fit_reward(prob, data)
        return np.concatenate([est.pmle(prob, data), est.pmle(prob, data, 0.2), r, est.distill(prob, data, r),
                               est.reverse_kl(prob, data, r, 0.1), est.rlhf(prob, data, r, 0.5),
                               est.dpo(prob, data, 0.5), est.rebel(prob, data, r, 1.25)])
    np.testing.assert_array_equal(go(), go())


def test_large_n_recovers_pi_star():
    """With a finite class and a gap, PMLE and distillation with the true reward pick pi* at large n."""
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=6, n_rewards=3, spread=2.0, seed=4)
    data = prob.sample(200_000, trials=3, seed=0)
    assert (est.pmle(prob, data) == prob.star).all()
    assert (est.distill(prob, data, 0) == prob.star).all()  # reward 0 is gamma ln pi* + shift
    assert (est.fit_reward(prob, data) == 0).all()
    assert (est.reverse_kl(prob, data, 0) == prob.star).all()


# ---------------------------------------------------------------------- differentiable objectives
@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_pmle_and_distill_objective_values_and_gradients(beta):
    prob = ToyProblem.random(n_prompts=3, n_responses=4, n_policies=10, n_rewards=3, seed=2)
    data = prob.sample(40, seed=7)
    samples = data.samples(0)
    counts = data.counts[0]
    ref = prob.log_reference
    pm = objectives(prob, samples, "pmle", beta)
    di = objectives(prob, samples, "distill", beta, m=1)
    for k in (0, prob.star, prob.n_policies - 1):
        x = prob.log_policies[k].clone().requires_grad_(True)
        v = est.pmle_objective(x, counts, prob.gamma, beta, ref if beta > 0 else None)
        assert float(v.detach()) == pytest.approx(pm[k], rel=1e-12)
        (g,) = torch.autograd.grad(v, x)
        assert torch.isfinite(g).all() and g.abs().sum() > 0
        x = prob.log_policies[k].clone().requires_grad_(True)
        v = est.distill_objective(x, counts, prob.rewards[1], prob.gamma, beta, ref if beta > 0 else None)
        assert float(v.detach()) == pytest.approx(di[k], rel=1e-12)
        (g,) = torch.autograd.grad(v, x)
        assert torch.isfinite(g).all()
    # batched log_probs (K, X, A) give every policy's value
    vals = est.pmle_objective(prob.log_policies, counts, prob.gamma, beta, ref if beta > 0 else None)
    np.testing.assert_allclose(vals.numpy(), pm, rtol=1e-12)


def test_differentiable_objectives_finite_gradient_at_extremes():
    lp = torch.log_softmax(torch.tensor([[700.0, 0.0, -700.0]], dtype=torch.float64), -1).requires_grad_(True)
    counts = np.zeros((1, 3, 3))
    counts[0, 2, 0] = 3  # the least likely response preferred
    counts[0, 0, 2] = 1
    v = est.pmle_objective(lp, counts, 1.0)
    (g,) = torch.autograd.grad(v, lp)
    assert torch.isfinite(v) and torch.isfinite(g).all()
    r = torch.tensor([[-700.0, 0.0, 700.0]], dtype=torch.float64)
    v = est.distill_objective(lp, counts, r, 1.0)
    (g,) = torch.autograd.grad(v, lp)
    assert torch.isfinite(v) and torch.isfinite(g).all()


def test_objective_values_helper():
    table = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    stats = torch.tensor([[1.0, 1.0], [0.0, 2.0], [5.0, 0.0]], dtype=torch.float64)
    np.testing.assert_array_equal(est.objective_values(table, stats).numpy(), [[3, 4, 5], [7, 8, 15]])


# ---------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def full():
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=5, n_rewards=3, seed=0)
    return prob, prob.sample(10, trials=2, seed=0)


def test_negative_beta_raises(full):
    prob, data = full
    with pytest.raises(ValueError, match="beta"):
        est.pmle(prob, data, -0.1)
    with pytest.raises(ValueError, match="beta"):
        est.distill(prob, data, 0, -0.1)
    with pytest.raises(ValueError, match="beta"):
        est.reverse_kl(prob, data, 0, -0.1)
    with pytest.raises(ValueError, match="beta"):
        est.rlhf(prob, data, 0, -0.1)
    for b in (0.0, -1.0):
        with pytest.raises(ValueError, match="beta"):
            est.dpo(prob, data, b)
    for e in (0.0, -1.0):
        with pytest.raises(ValueError, match="eta"):
            est.rebel(prob, data, 0, e)


@pytest.mark.parametrize("method", ["distill", "reverse_kl", "rlhf", "rebel"])
def test_reward_index_validated(full, method):
    prob, data = full
    for bad in (3, -1, np.array([0, 3]), np.array([0, 1, 2]), np.array([0.0, 1.0]), np.array([[0, 1]])):
        with pytest.raises(ValueError, match="reward_index"):
            run(prob, data, method, 0.0, m=bad, eta=1.0)


def test_missing_reference_or_rewards(full):
    prob, data = full
    bare = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=5, n_rewards=0, reference=False, seed=0)
    d = bare.sample(10, seed=0)
    with pytest.raises(ValueError, match="reference"):
        est.pmle(bare, d, 0.5)
    est.pmle(bare, d, 0.0)
    with pytest.raises(ValueError, match="reference"):
        est.dpo(bare, d, 0.5)
    with pytest.raises(ValueError, match="reference"):
        est.rebel(bare, d, 0, 1.0)
    for f in (lambda: est.distill(bare, d, 0), lambda: est.reverse_kl(bare, d, 0), lambda: est.rlhf(bare, d, 0, 0.0),
              lambda: est.fit_reward(bare, d)):
        with pytest.raises(ValueError, match="rewards"):
            f()
    # rewards but no reference: regularized reward-based estimators need pi0
    no_ref = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=5, n_rewards=2, reference=False, seed=0)
    d2 = no_ref.sample(10, seed=0)
    for f in (lambda: est.distill(no_ref, d2, 0, 0.5), lambda: est.reverse_kl(no_ref, d2, 0, 0.5),
              lambda: est.rlhf(no_ref, d2, 0, 0.5), lambda: est.rebel(no_ref, d2, 0, 1.0)):
        with pytest.raises(ValueError, match="reference"):
            f()
    est.reverse_kl(no_ref, d2, 0)
    est.rlhf(no_ref, d2, 0, 0.0)
    # rewards missing but reference present: rebel names rewards
    with pytest.raises(ValueError, match="rewards"):
        est.rebel(ToyProblem.random(n_prompts=2, n_responses=3, n_policies=5, seed=0), d, 0, 1.0)


def test_data_validated(full):
    prob, _ = full
    other = PreferenceData.from_samples([(0, 0, 1)], 3, 3)
    with pytest.raises(ValueError, match="data"):
        est.pmle(prob, other)
    with pytest.raises(ValueError, match="data"):
        est.pmle(prob, np.zeros((1, 2, 3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="chunk_size"):
        est.pmle(prob, prob.sample(5, seed=0), chunk_size=0)
