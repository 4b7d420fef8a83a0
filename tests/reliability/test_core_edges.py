"""Regression tests for the toy core and bounds at the edges (issue 11): each reproduction gives the right
answer or a clear error naming the argument, never a silent wrong index, a NaN or a false 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bounds
import finitepref as fp
from finitepref import PreferenceData, ToyProblem, _brute
from finitepref import registry as reg
from finitepref._argmin import TIE_RTOL, argmin_rows

est = fp.estimators
CHUNKS = (None, 1, 2, 3, 4)


def tie_rule(values: np.ndarray) -> int:
    """The documented rule: lowest index within TIE_RTOL (relative) of the global minimum."""
    best = values.min()
    return int(np.flatnonzero(values <= best + TIE_RTOL * abs(best))[0])


def _rebuilt(prob, **changes):
    args = {"prompt_probs": prob.prompt_probs, "mu": prob.mu, "policies": prob.log_policies, "star": prob.star,
            "gamma": prob.gamma, "rewards": prob.rewards, "reference": prob.log_reference}
    args.update(changes)
    return ToyProblem(args.pop("prompt_probs"), args.pop("mu"), args.pop("policies"), args.pop("star"),
                      args.pop("gamma"), log_space=True, **args)


@pytest.fixture(scope="module")
def base():
    return ToyProblem.random(n_prompts=2, n_responses=3, n_policies=6, n_rewards=3, seed=0)


# ---------------------------------------------------------------------- argmin: totality and chunking

def _pmle_at_every_chunk_size_is_the_brute_force(prob, data) -> list:
    """PMLE's indices at every chunk size: equal to each other and to the brute force's tie rule."""
    results = [est.pmle(prob, data, chunk_size=c) for c in CHUNKS]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    for t in range(data.trials):
        assert results[0][t] == tie_rule(_brute.pmle(prob, data.samples(t)))
    return results

def test_policy_with_log_probabilities_minus_1e308(base):
    """Was [0 0 0 0 0 0] by default and [1 3 3 5 5 5] with chunk_size=1 (index 0 has infinite KL)."""
    lp = base.log_policies.clone()
    lp[0] = torch.tensor([[0.0, -1e308, -1e308]] * 2, dtype=torch.float64)
    prob = _rebuilt(base, policies=lp, star=base.star or 1)
    data = prob.sample(50, trials=6, seed=0)
    results = _pmle_at_every_chunk_size_is_the_brute_force(prob, data)
    assert (results[0] != 0).all() and prob.forward_kl(0) > 1e300


def test_gamma_1e308_masks_zero_counts(base):
    """0 counts x infinite loss was NaN and dropped the chunk; now 0 * inf = 0 and the answer is the brute force's."""
    prob = _rebuilt(base, gamma=1e308)
    data = prob.sample(50, trials=4, seed=0)
    _pmle_at_every_chunk_size_is_the_brute_force(prob, data)


def test_rebel_is_invariant_to_scaling_rewards_against_eta():
    """Rewards x 1e155 with eta x 1e-155 is the same objective (was [0 0] instead of the right index)."""
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=12, n_rewards=3, seed=3)
    data = prob.sample(40, trials=2, seed=1)
    scaled = _rebuilt(prob, rewards=prob.rewards * 1e155)
    expected = est.rebel(prob, data, 1, 1.0)
    np.testing.assert_array_equal(est.rebel(scaled, data, 1, 1e-155), expected)
    for t in range(2):
        assert expected[t] == tie_rule(_brute.rebel(prob, data.samples(t), 1, 1.0))


def test_rewards_1e308_give_a_clear_error_or_the_brute_force_answer():
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=12, n_rewards=3, seed=3)
    huge = _rebuilt(prob, rewards=torch.sign(prob.rewards) * 1e308)
    data = prob.sample(40, trials=2, seed=1)
    for name in ("rebel", "rlhf", "reverse_kl"):
        with pytest.raises(ValueError, match=rf"{name}: .*expected finite statistics"):
            reg.fit(name, huge, data, 1, **{p: 1.0 for p in reg.get(name).params})
    chosen = est.distill(huge, data, 1)  # sigmoid(+-inf) is exact: a correct answer
    for t in range(2):
        assert chosen[t] == tie_rule(_brute.distill(huge, data.samples(t), 1))


def test_near_ties_do_not_depend_on_chunk_boundaries():
    """[1+1.5e-12, 1+0.8e-12, 1.0] gave 2, 0, 1 for chunk_size 1, 2, 3; the rule gives 1 (within 1e-12 of 1.0)."""
    values = torch.tensor([1 + 1.5e-12, 1 + 0.8e-12, 1.0], dtype=torch.float64)
    stats = torch.ones(1, 1, dtype=torch.float64)
    got = [int(argmin_rows(lambda s: values[s][:, None], 3, stats, c)[0]) for c in (1, 2, 3, None)]
    assert got == [1, 1, 1, 1]


@settings(max_examples=60)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=40), st.integers(1, 41), st.sampled_from([1.0, -3.0, 0.0]))
def test_tie_rule_is_a_function_of_the_values(offsets, chunk, level):
    """Random near-ties (steps of 0.3e-12 relative) against the reference rule, for every chunk size."""
    values = torch.tensor([level + abs(level or 1) * 0.3e-12 * o for o in offsets], dtype=torch.float64)
    stats = torch.ones(2, 1, dtype=torch.float64)
    got = argmin_rows(lambda s: values[s][:, None], len(offsets), stats, chunk)
    assert (got == tie_rule(values.numpy())).all()


@settings(max_examples=15)
@given(st.integers(0, 10_000), st.sampled_from(reg.names()))
def test_random_problems_agree_across_chunk_sizes(seed, name):
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=23, n_rewards=3, spread=0.3, seed=seed)
    data = prob.sample(30, trials=4, seed=seed)
    entry = reg.get(name)
    args = [np.arange(4) % 3] if entry.needs_reward else []
    params = {p: 0.7 for p in entry.params}
    first = entry.function(prob, data, *args, **params)
    for chunk in (1, 2, 5, 22, 23, 1000):
        np.testing.assert_array_equal(entry.function(prob, data, *args, chunk_size=chunk, **params), first)


@pytest.mark.parametrize("bad", [1.5, 0, -1, True, "2"])
def test_chunk_size_must_be_a_positive_integer(base, bad):
    with pytest.raises(ValueError, match=r"chunk_size: expected an integer >= 1 or None, got"):
        est.pmle(base, base.sample(5, seed=0), chunk_size=bad)


# ---------------------------------------------------------------------- coverage, R, KL: no false 0
def test_coverage_with_log_probabilities_below_minus_1e154():
    star = np.log([[0.5, 0.3, 0.2]])
    other = np.array([[0.0, -2e154, -2e154]])
    prob = ToyProblem([1.0], [[0.2, 0.3, 0.5]], np.stack([star, other]), 0, 1.0, log_space=True)
    # reference: the ratio is scale-free, so evaluate it on Delta R / 1e154
    mu, pi = np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.3, 0.2])
    centred = lambda lp: (lp - mu @ lp) / 1e154  # noqa: E731
    delta = centred(other[0]) - centred(star[0])
    expected = (pi @ delta**2) / (mu @ delta**2)
    assert prob.coverage() == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(prob.boundedness()) and prob.boundedness() > 1e154
    assert prob.forward_kl(1) > 1e153 and np.isfinite(prob.reverse_kl(1))


def test_loglinear_grid_at_radius_1e300():
    prob = ToyProblem.loglinear_grid(radius=1e300, resolution=1e299)
    assert 0 < prob.coverage() < np.inf
    assert np.isfinite(prob.boundedness())
    assert not np.isnan(prob.forward_kl_table()).any() and not np.isnan(prob.reverse_kl_table()).any()


def test_kl_table_ignores_zero_probability_prompts():
    star = np.log([[0.5, 0.5], [0.5, 0.5]])
    other = np.array([[np.log(0.5)] * 2, [0.0, -1.7e308]])
    prob = ToyProblem([1.0, 0.0], [[0.5, 0.5]] * 2, np.stack([star, other]), 0, 1.0, log_space=True)
    assert prob.forward_kl(1) == 0.0 and prob.reverse_kl(1) == 0.0


# ---------------------------------------------------------------------- bounds: a value or a clear error
P0, R3 = np.array([0.2, 0.3, 0.5]), np.array([1.0, 2.0, 0.5])


@pytest.mark.parametrize("call", [
    lambda: bounds.rlhf_solution(P0, R3, 1e-310),
    lambda: bounds.smoothed_prior(P0, np.inf, 1.0),
    lambda: bounds.reverse_kl_solution(P0, R3, np.inf, 1.0),
    lambda: bounds.reverse_kl_solution(P0, np.array([1e308, -1e308, 0.0]), 1.0, 0.5),
    lambda: bounds.reverse_kl_solution(P0, np.array([1e308, -1e308, 1e308]), 0.3, 1e-300),
    lambda: bounds.rlhf_solution(np.array([0.5, 0.5, 0.0]), np.array([0.0, 1.0, 1e308]), 1e-300),
], ids=["rlhf-1e-310", "smoothed-beta-inf", "rkl-beta-inf", "rkl-r-1e308", "rkl-r-1e308-tiny-gamma", "rlhf-off-support"])
def test_prior_smoothing_extremes_are_distributions(call):
    out = call()
    assert np.isfinite(out).all() and (out >= 0).all() and out.sum() == pytest.approx(1.0, abs=1e-15)


def test_prior_smoothing_limits_are_right():
    np.testing.assert_array_equal(bounds.rlhf_solution(P0, R3, 1e-310), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(bounds.smoothed_prior(P0, np.inf, 1.0), P0, rtol=1e-15)
    np.testing.assert_allclose(bounds.reverse_kl_solution(P0, R3, np.inf, 1.0), P0, rtol=1e-15)
    # gamma = inf forgets the reference: alpha = 0
    np.testing.assert_allclose(bounds.smoothed_prior(P0, 1.0, np.inf), np.full(3, 1 / 3), rtol=1e-15)
    with pytest.raises(ValueError, match="both be inf"):
        bounds.smoothed_prior(P0, np.inf, np.inf)


@pytest.mark.parametrize("p, match", [(np.array([-0.1, 0.6, 0.5]), "p must be finite and >= 0, got -0.1"),
                                      (np.array([0.2, 0.2, 0.2]), "p must sum to 1"),
                                      (np.array([np.inf, 0.0, 0.0]), "p must be finite"),
                                      (np.float64(1.0), "p must have at least one axis")])
def test_reverse_kl_objective_validates_p(p, match):
    with pytest.raises(ValueError, match=match):
        bounds.reverse_kl_objective(p, P0, R3, 1.0, 1.0)


def test_reverse_kl_objective_infinite_weights():
    assert bounds.reverse_kl_objective(P0, P0, R3, np.inf, 1.0) == pytest.approx(
        bounds.reverse_kl_objective(P0, P0, R3, 0.0, 1.0))  # inf * KL(p0||p0) = inf * 0 = 0
    assert bounds.reverse_kl_objective(np.array([1.0, 0.0, 0.0]), P0, R3, np.inf, 1.0) == np.inf


# ---------------------------------------------------------------------- differentiable objectives
def test_pmle_objective_rejects_an_empty_data_set_and_negative_gamma():
    lp = torch.log(torch.full((1, 2), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="counts: expected at least one sample, got a total of 0"):
        est.pmle_objective(lp, np.zeros((1, 2, 2)), 1.0)
    with pytest.raises(ValueError, match="gamma: expected a number > 0, got -1.0"):
        est.pmle_objective(lp, np.ones((1, 2, 2)), -1.0)
    with pytest.raises(ValueError, match="gamma"):
        est.distill_objective(lp, np.ones((1, 2, 2)), torch.zeros(1, 2), -1.0)


def test_pmle_objective_masks_zero_counts_against_infinite_losses():
    lp = torch.tensor([[0.0, -np.inf]], dtype=torch.float64, requires_grad=True)
    counts = np.array([[[0, 0], [0, 0]]])
    counts[0, 0, 1] = 2  # only the certain response preferred: loss 0; the (1, 0) cell has infinite loss
    value = est.pmle_objective(lp, counts, 1.0)
    assert float(value.detach()) == 0.0


# ---------------------------------------------------------------------- data validation and messages
def test_from_samples_rejects_fractional_and_complex_indices():
    with pytest.raises(ValueError, match="samples: expected integer indices, got 1.5"):
        PreferenceData.from_samples([(0, 1.5, 0)], 1, 2)
    with pytest.raises(ValueError, match="samples: expected integer indices, got dtype complex128"):
        PreferenceData.from_samples([(0, 1, 0j)], 1, 2)
    assert PreferenceData.from_samples([(0.0, 1.0, 0.0)], 1, 2).counts[0, 0, 1, 0] == 1  # integral floats are fine
    with pytest.raises(ValueError, match=r"samples: expected response indices in \[0, 2\), got 2"):
        PreferenceData.from_samples([(0, 2, 0)], 1, 2)


@pytest.mark.parametrize("counts, match", [
    (np.full((1, 1, 2, 2), 1e20), r"counts: expected integers in \[0, 2\*\*53\], got 1e\+20"),
    (np.zeros((0, 1, 2, 2)), "counts: expected at least one trial, prompt and response, got shape"),
    (np.ones((1, 1, 2, 2)) * 1j, "counts: expected an integer array, got dtype complex128"),
    (np.full((1, 1, 2, 2), 0.5), "counts: expected integer values, got 0.5"),
    (-np.ones((1, 1, 2, 2)), r"counts: expected integers in \[0, 2\*\*53\], got -1"),
    (np.zeros((2, 1, 2, 2)), r"counts: expected every trial to hold the same number n in \[1, 2\*\*53\]"),
])
def test_preference_data_messages(counts, match):
    with pytest.raises(ValueError, match=match):
        PreferenceData(counts)


def test_float32_probabilities_are_accepted_within_their_precision():
    mu = np.array([[0.3954619765281677, 0.5930180549621582, 0.011519950814545155]], dtype=np.float32)
    assert 1.5e-8 < 1.0 - float(mu.sum(dtype=np.float64)) < 2e-8  # sum 0.99999998: beyond the float64 tolerance 1e-9
    prob = ToyProblem(np.array([1.0], dtype=np.float32), mu, mu[None], 0, 1.0)
    assert prob.n_policies == 1
    with pytest.raises(ValueError, match="mu: expected rows summing to 1"):
        ToyProblem([1.0], np.array([[0.3, 0.3, 0.39]], dtype=np.float32), mu[None], 0, 1.0)


def test_sample_sizes_and_devices_give_clear_errors(base):
    with pytest.raises(ValueError, match=r"n: expected an integer in \[1, 2\*\*53\], got 9223372036854775808"):
        base.sample(2**63)
    with pytest.raises(ValueError, match="trials: expected an integer"):
        base.sample(10, trials=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: expected an available torch device, got 'cuda'"):
            ToyProblem.random(device="cuda")
        with pytest.raises(ValueError, match="device"):
            base.to("cuda")


def test_deprecated_private_aliases_still_work(base):
    with pytest.warns(DeprecationWarning, match="require_reference"):
        assert base._need_reference() is base.require_reference()
    with pytest.warns(DeprecationWarning, match="require_rewards"):
        assert base._need_rewards() is base.require_rewards()
