"""Tests of finitepref.estimators through the registry: each exact argmin against its brute-force reference.

Every registered estimator (:data:`finitepref.registry.ESTIMATORS`) is run through its record and
checked against its ``reference`` (:mod:`finitepref._brute`: the objective computed sample by sample
in numpy straight from the paper's equation over ``data.samples(t)``): the choice must attain the
minimum (up to a float64 summation tolerance), exact ties go to the lowest index, and the result
does not depend on ``chunk_size``. The reward model (eq. 9), not a policy estimator, is tested the
same way beside them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import finitepref as fp
from finitepref import PreferenceData, ToyProblem, _brute
from finitepref import registry as reg

est = fp.estimators


def assert_attains_min(obj: np.ndarray, chosen: int) -> None:
    best = obj.min()
    tol = 1e-10 * (1.0 + abs(best))
    assert obj[chosen] <= best + tol, f"chosen {chosen} objective {obj[chosen]!r} > min {best!r} at {obj.argmin()}"


# (name, parameters) from each record's test_params
CASES = [(name, params) for name, e in reg.ESTIMATORS.items() for params in e.test_params]
IDS = [f"{n}-{'-'.join(f'{k}{v}' for k, v in p.items())}" for n, p in CASES]
SHAPES = [(2, 3, 5, 3, 0), (3, 4, 30, 5, 1), (3, 3, 12, 4, 2)]


def fit(name, prob, data, params, reward_index, **kw):
    entry = reg.get(name)
    args = [reward_index] if entry.needs_reward else []
    return entry.function(prob, data, *args, **params, **kw)


def reference(name, prob, samples, params, reward_index):
    entry = reg.get(name)
    return entry.objective(prob, samples, reward_index if entry.needs_reward else None, **params)


def test_registry_is_complete():
    for entry in reg.ESTIMATORS.values():
        assert entry.reference is not None, f"{entry.name}: no brute-force reference"
        assert not entry.equation or f"eq. {entry.equation}" in entry.label
        assert entry.function.__name__ == entry.name and entry.test_params
        assert all(set(p) == set(entry.params) for p in entry.test_params)


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"X{s[0]}A{s[1]}K{s[2]}M{s[3]}s{s[4]}")
def problem_and_data(request):
    X, A, K, M, seed = request.param
    prob = ToyProblem.random(n_prompts=X, n_responses=A, n_policies=K, n_rewards=M, gamma=0.8, spread=0.7,
                             seed=seed)
    data = prob.sample(25, trials=3, seed=100 + seed)
    return prob, data


@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_estimator_attains_brute_force_minimum(problem_and_data, name, params):
    prob, data = problem_and_data
    reward_index = np.arange(data.trials) % prob.n_rewards  # a different reward per trial
    chosen = fit(name, prob, data, params, reward_index)
    assert chosen.shape == (data.trials,) and chosen.dtype == np.int64
    for t in range(data.trials):
        assert_attains_min(reference(name, prob, data.samples(t), params, int(reward_index[t])), int(chosen[t]))
    if reg.get(name).needs_reward:  # the single-index call agrees with the per-trial array
        assert fit(name, prob, data, params, int(reward_index[1]))[1] == chosen[1]
    for chunk in (1, 3, 7):
        np.testing.assert_array_equal(fit(name, prob, data, params, reward_index, chunk_size=chunk), chosen)


def test_fit_reward_attains_brute_force_minimum(problem_and_data):
    prob, data = problem_and_data
    chosen = est.fit_reward(prob, data)
    for t in range(data.trials):
        assert_attains_min(_brute.fit_reward(prob, data.samples(t)), int(chosen[t]))
    np.testing.assert_array_equal(est.fit_reward(prob, data, chunk_size=1), chosen)


@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_estimator_from_explicit_samples(name, params):
    """A hand-written sample list through PreferenceData.from_samples."""
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=9, n_rewards=3, seed=21)
    samples = [(0, 0, 1), (0, 0, 1), (0, 2, 1), (1, 1, 0), (1, 2, 0), (1, 2, 1), (0, 1, 2)]
    data = PreferenceData.from_samples(samples, 2, 3)
    chosen = int(fit(name, prob, data, params, 2)[0])
    assert_attains_min(reference(name, prob, samples, params, 2), chosen)


def _with_policies(prob, log_policies, star):
    return ToyProblem(prob.prompt_probs, prob.mu, log_policies, star, prob.gamma, rewards=prob.rewards,
                      reference=prob.log_reference, log_space=True)


@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_ties_go_to_lowest_index(name, params):
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=7, n_rewards=3, seed=8)
    data = prob.sample(30, trials=3, seed=1)
    base = fit(name, prob, data, params, 1)
    lp = prob.log_policies
    # every policy twice: the first copy must win, also across chunk boundaries
    dup = _with_policies(prob, torch.cat([lp, lp]), prob.star)
    np.testing.assert_array_equal(fit(name, dup, data, params, 1), base)
    np.testing.assert_array_equal(fit(name, dup, data, params, 1, chunk_size=3), base)
    for t in range(2):
        # a copy of the winner placed at index 0: index 0 wins, not the original at base[t] + 1
        first = _with_policies(prob, torch.cat([lp[base[t]][None], lp]), prob.star + 1)
        assert fit(name, first, data, params, 1)[t] == 0
        assert fit(name, first, data, params, 1, chunk_size=2)[t] == 0


def test_fit_reward_ties_go_to_lowest_index():
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=7, n_rewards=3, seed=8)
    data = prob.sample(30, trials=3, seed=1)
    base = est.fit_reward(prob, data)
    R, lp = prob.rewards, prob.log_policies
    dup = ToyProblem(prob.prompt_probs, prob.mu, lp, prob.star, prob.gamma, rewards=torch.cat([R, R]),
                     reference=prob.log_reference, log_space=True)
    np.testing.assert_array_equal(est.fit_reward(dup, data), base)
    for t in range(2):  # a copy of the winner placed first wins
        first = ToyProblem(prob.prompt_probs, prob.mu, lp, prob.star, prob.gamma,
                           rewards=torch.cat([R[base[t]][None], R]), reference=prob.log_reference, log_space=True)
        assert est.fit_reward(first, data)[t] == 0


def test_tie_between_distinct_policies_with_equal_objective():
    """Two different policies with equal PMLE objective: they swap responses 1 and 2, and the data
    compare 0 with 1 once and 0 with 2 once, so their objectives are the same two terms."""
    star = [[0.2, 0.3, 0.5]]
    pol_b = [[0.5, 0.2, 0.3]]
    pol_a = [[0.5, 0.3, 0.2]]
    prob = ToyProblem([1.0], [[0.5, 0.25, 0.25]], [star, pol_b, pol_a], star=0, gamma=1.0)
    samples = [(0, 0, 1), (0, 0, 2)]
    data = PreferenceData.from_samples(samples, 1, 3)
    obj = _brute.pmle(prob, samples)
    assert obj[1] == obj[2] < obj[0]
    assert est.pmle(prob, data)[0] == 1
    assert est.pmle(prob, data, chunk_size=1)[0] == 1


def test_reproducible_outputs():
    def go():
        prob = ToyProblem.random(n_prompts=3, n_responses=4, n_policies=25, n_rewards=4, seed=17)
        data = prob.sample(40, trials=6, seed=123)
        r = est.fit_reward(prob, data)
        return np.concatenate([r] + [fit(name, prob, data, params, r) for name, params in CASES])
    np.testing.assert_array_equal(go(), go())


def test_large_n_recovers_pi_star():
    """With a finite class and a gap, the distribution learners pick pi* at large n (reward 0 is the true one)."""
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=6, n_rewards=3, spread=2.0, seed=4)
    data = prob.sample(200_000, trials=3, seed=0)
    assert (est.fit_reward(prob, data) == 0).all()  # reward 0 is gamma ln pi* + shift
    for name in reg.names(learns_pi_star=True):
        assert (reg.fit(name, prob, data, 0) == prob.star).all(), name


LIMIT_CASES = [("pmle", {}), ("distill", {}), ("reverse_kl", {}), ("reverse_kl", {"beta": 0.4}),
               ("dpo", {"beta": 0.5}), ("dpo", {"beta": 2.0}), ("rlhf", {"beta": 0.5}), ("rebel", {"eta": 0.7})]


@pytest.mark.parametrize("name, params", LIMIT_CASES, ids=[f"{n}-{p}" for n, p in LIMIT_CASES])
def test_population_limit_is_the_large_n_choice(name, params):
    """The registered population limit, added to a class of perturbations of pi*, is chosen at n = 1e9
    (with the true reward, index 0, as the fitted one); when the limit is pi* the first copy, pi*, wins."""
    entry = reg.get(name)
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=8, n_rewards=2, spread=0.5, mu="uniform",
                             seed=5)
    limit = entry.population_limit(prob, **params)
    assert torch.allclose(torch.logsumexp(limit, -1), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    with_limit = _with_policies(prob, torch.cat([prob.log_policies, limit[None]]), prob.star)
    data = with_limit.sample(10**9, trials=3, seed=2)
    chosen = entry.fit(with_limit, data, 0 if entry.needs_reward else None, **params)
    is_pi_star = torch.equal(limit, prob.log_pi_star)
    assert is_pi_star == (entry.learns_pi_star and not params.get("beta"))
    np.testing.assert_array_equal(chosen, prob.star if is_pi_star else prob.n_policies)


def test_population_limit_without_closed_form_is_an_error():
    prob = ToyProblem.random(n_rewards=2)
    for name in ("pmle", "distill"):
        with pytest.raises(ValueError, match="beta"):
            reg.get(name).population_limit(prob, beta=0.5)


# ---------------------------------------------------------------------- differentiable objectives
@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_pmle_and_distill_objective_values_and_gradients(beta):
    prob = ToyProblem.random(n_prompts=3, n_responses=4, n_policies=10, n_rewards=3, seed=2)
    data = prob.sample(40, seed=7)
    samples = data.samples(0)
    counts = data.counts[0]
    ref = prob.log_reference
    pm = _brute.pmle(prob, samples, beta)
    di = _brute.distill(prob, samples, 1, beta)
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


@pytest.mark.parametrize("name", [n for n in reg.names() if reg.get(n).needs_reward])
def test_reward_index_validated(full, name):
    prob, data = full
    for bad in (3, -1, np.array([0, 3]), np.array([0, 1, 2]), np.array([0.0, 1.0]), np.array([[0, 1]])):
        with pytest.raises(ValueError, match="reward_index"):
            fit(name, prob, data, reg.get(name).test_params[-1], bad)


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
