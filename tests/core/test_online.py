"""finitepref.online: on-policy rounds, refits on pooled data, seeds, per-trial laws, reference updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import finitepref as fp
from finitepref import PreferenceData, ToyProblem
from finitepref import online as onl
from finitepref import registry as reg
from finitepref.preference import pair_law

est = fp.estimators


@pytest.fixture(scope="module")
def prob():
    return ToyProblem.random(n_prompts=2, n_responses=4, n_policies=40, n_rewards=4, gamma=1.0, spread=0.6, seed=3)


def round_one_generator(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


@pytest.mark.parametrize("name, params", [("pmle", {}), ("dpo", {"beta": 0.5}), ("ipo", {"tau": 0.5}),
                                          ("chipo", {"beta": 0.5}), ("distill", {})])
def test_one_round_is_the_offline_estimator(prob, name, params):
    data = prob.sample(300, trials=5, seed=round_one_generator(7))
    reward_index = est.fit_reward(prob, data) if reg.get(name).needs_reward else None
    offline = reg.fit(name, prob, data, reward_index, **params)
    np.testing.assert_array_equal(onl.online(prob, name, 300, 1, 5, seed=7, **params), offline)


@pytest.mark.parametrize("name, params", [("pmle", {}), ("dpo", {"beta": 0.5}), ("chipo", {"beta": 1.0})])
def test_every_round_refits_on_all_data_so_far(prob, name, params):
    res = onl.online(prob, name, 503, 4, 6, seed=11, return_details=True, **params)
    assert res.path.shape == (4, 6) and res.round_counts.shape == (4, 6, 2, 4, 4)
    sizes = onl.round_sizes(503, 4)
    np.testing.assert_array_equal(sizes, [126, 126, 126, 125])
    np.testing.assert_array_equal(res.round_counts.sum(axis=(2, 3, 4)), np.repeat(sizes[:, None], 6, 1))
    for t in range(4):
        pooled = PreferenceData(res.round_counts[: t + 1].sum(axis=0))
        np.testing.assert_array_equal(reg.fit(name, prob, pooled, **params), res.path[t])
    np.testing.assert_array_equal(res.index, res.path[-1])
    assert res.data.n == 503


def test_same_seed_same_result_and_round_one_shared(prob):
    a = onl.online(prob, "pmle", 400, 5, 8, seed=3, return_details=True)
    b = onl.online(prob, "pmle", 400, 5, 8, seed=3, return_details=True)
    np.testing.assert_array_equal(a.round_counts, b.round_counts)
    np.testing.assert_array_equal(a.path, b.path)
    c = onl.online(prob, "pmle", 400, 5, 8, seed=4, return_details=True)
    assert not np.array_equal(a.round_counts, c.round_counts)
    # round 1 depends on the seed and its size only, not on the number of rounds
    d = onl.online(prob, "pmle", 160, 2, 8, seed=3, return_details=True)
    np.testing.assert_array_equal(a.round_counts[0], d.round_counts[0])


def test_policy_pair_law_is_pair_law_with_mu_replaced(prob):
    for k in (0, prob.star, prob.n_policies - 1):
        ref = pair_law(prob.prompt_probs, prob.policies[k], prob.log_pi_star, prob.gamma).numpy()
        np.testing.assert_allclose(onl.policy_pair_law(prob, k)[0], ref, rtol=1e-15, atol=0)
    laws = onl.policy_pair_law(prob, [1, 2])
    assert laws.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(laws.sum(axis=(1, 2, 3)), 1.0, rtol=1e-13)
    with pytest.raises(ValueError, match="index"):
        onl.policy_pair_law(prob, [prob.n_policies])


def test_on_policy_counts_follow_each_trials_policy_law(prob):
    """Huge rounds: each trial's frequencies match the pair law of its own policy (within 6 binomial
    standard deviations, a fixed seed)."""
    current = np.array([0, 5, 5, prob.star, 9])
    size = 10**7
    counts = onl._on_policy_counts(prob, current, size, np.random.default_rng(0))
    assert counts.shape == (5, 2, 4, 4) and (counts.sum(axis=(1, 2, 3)) == size).all()
    for trial, k in enumerate(current):
        law = onl.policy_pair_law(prob, k)[0]
        sd = np.sqrt(law * (1 - law) / size)
        assert np.all(np.abs(counts[trial] / size - law) <= 6 * sd + 1e-12)
    assert not np.array_equal(counts[0], counts[1])


def test_later_rounds_are_drawn_from_each_trials_previous_estimate(prob):
    """Round t's counts are exactly the on-policy draw from path[t - 1] with round t's generator."""
    rounds, seed = 4, 9
    res = onl.online(prob, "dpo", 80, rounds, 10, seed=seed, return_details=True, beta=0.5)
    assert len(np.unique(res.path[0])) > 1  # trials disagree: their laws differ
    children = np.random.SeedSequence(seed).spawn(rounds)
    for t in range(1, rounds):
        rng = np.random.default_rng(children[t])
        expected = onl._on_policy_counts(prob, res.path[t - 1], 20, rng)
        np.testing.assert_array_equal(res.round_counts[t], expected)


def test_on_policy_rounds_reach_responses_mu_never_draws():
    """mu puts zero mass on response 0; offline data never contain it, on-policy rounds do."""
    base = ToyProblem.random(n_prompts=1, n_responses=3, n_policies=10, seed=2)
    prob = ToyProblem(base.prompt_probs, [[0.0, 0.5, 0.5]], base.log_policies, base.star, base.gamma,
                      reference=base.log_reference, log_space=True)
    res = onl.online(prob, "pmle", 3000, 3, 4, seed=0, return_details=True)
    assert res.round_counts[0][:, 0, 0, :].sum() + res.round_counts[0][:, 0, :, 0].sum() == 0
    assert res.round_counts[1:, :, 0, 0, :].sum() + res.round_counts[1:, :, 0, :, 0].sum() > 0


def test_update_reference_uses_each_trials_previous_estimate(prob):
    res = onl.online(prob, "dpo", 600, 3, 6, seed=2, update_reference=True, return_details=True, beta=0.7)
    for t in (1, 2):
        pooled = res.round_counts[: t + 1].sum(axis=0)
        for trial in range(6):
            k = int(res.path[t - 1, trial])
            moved = ToyProblem(prob.prompt_probs, prob.mu, prob.log_policies, prob.star, prob.gamma,
                               reference=prob.log_policies[k], log_space=True)
            assert est.dpo(moved, PreferenceData(pooled[trial][None]), 0.7)[0] == res.path[t, trial]
    # round 1 keeps pi0
    np.testing.assert_array_equal(res.path[0], est.dpo(prob, PreferenceData(res.round_counts[0]), 0.7))
    # PMLE without a regulariser ignores the reference: the flag changes nothing
    np.testing.assert_array_equal(onl.online(prob, "pmle", 600, 3, 6, seed=2, update_reference=True),
                                  onl.online(prob, "pmle", 600, 3, 6, seed=2))


def test_bad_inputs(prob):
    for n, rounds in ((3, 4), (0, 1), (10, 0)):
        with pytest.raises(ValueError, match="n|rounds"):
            onl.online(prob, "pmle", n, rounds, 2, seed=0)
    with pytest.raises(ValueError, match="trials"):
        onl.online(prob, "pmle", 10, 2, 0, seed=0)
    with pytest.raises(ValueError, match="expected one of"):
        onl.online(prob, "nope", 10, 2, 2, seed=0)
    with pytest.raises(ValueError, match="estimator"):
        onl.online(prob, 3, 10, 2, 2, seed=0)
    for seed in (True, 1.5, "a"):
        with pytest.raises(ValueError, match="seed"):
            onl.online(prob, "pmle", 10, 2, 2, seed=seed)
    with pytest.raises(TypeError):
        onl.online(prob, "pmle", 10, 2, 2, seed=0, tau=1.0)
    with pytest.raises(ValueError, match="beta"):
        onl.online(prob, "dpo", 10, 2, 2, seed=0, beta=-1.0)


def test_online_pmle_beats_offline_when_mu_misses_the_mode():
    """mu puts 1e-3 on pi*'s mode in every prompt. At n = 1000 (5 rounds, 200 trials) online PMLE's
    exact E[KL] is well below offline's (factor 1.8 to 5.7 over 8 instance seeds; checked here at 1.5
    on one instance with fixed seeds), and close to offline PMLE under a mu that covers pi* well."""
    base = ToyProblem.random(n_prompts=2, n_responses=4, n_policies=200, spread=0.5, gamma=1.0, seed=0)

    def with_mode_mass(eps):
        mu = np.full((2, 4), (1 - eps) / 3)
        mu[np.arange(2), base.policies[base.star].argmax(-1).numpy()] = eps
        return ToyProblem(base.prompt_probs, mu, base.log_policies, base.star, 1.0, log_space=True)

    bad, good = with_mode_mass(1e-3), with_mode_mass(0.25)
    kl_offline = bad.forward_kl(onl.online(bad, "pmle", 1000, 1, 200, seed=1)).mean()
    kl_online = bad.forward_kl(onl.online(bad, "pmle", 1000, 5, 200, seed=1)).mean()
    kl_good = good.forward_kl(onl.online(good, "pmle", 1000, 1, 200, seed=1)).mean()
    assert bad.single_policy_coverage().linf > 100 * good.single_policy_coverage().linf
    assert kl_online * 1.5 < kl_offline
    assert kl_online < 2 * kl_good
    assert torch.isfinite(torch.tensor(kl_online))
