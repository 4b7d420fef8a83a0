"""Tests of ToyProblem: validation (every bad input raises ValueError naming the argument),
constructors (random, loglinear_grid) with Assumption 5, input types, device copies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from finitepref import ToyProblem


def base():
    """A valid 2-prompt, 3-response problem as numpy arrays."""
    rng = np.random.default_rng(0)
    d = np.array([0.4, 0.6])
    mu = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    pols = rng.dirichlet(np.ones(3), size=(4, 2))
    ref = np.array([[0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    rewards = rng.standard_normal((2, 2, 3))
    return dict(prompt_probs=d, mu=mu, policies=pols, star=1, gamma=0.5, rewards=rewards, reference=ref)


def make(**over):
    kw = base()
    kw.update(over)
    return ToyProblem(**kw)


def test_base_is_valid():
    prob = make()
    assert (prob.n_prompts, prob.n_responses, prob.n_policies, prob.n_rewards) == (2, 3, 4, 2)
    assert prob.log_policies.dtype == torch.float64
    assert "|Pi|=4" in repr(prob)


# ---------------------------------------------------------------------- distributions
@pytest.mark.parametrize("name", ["prompt_probs", "mu", "policies", "reference"])
def test_negative_probability_raises(name):
    kw = base()
    arr = np.array(kw[name], dtype=float)
    flat = arr.reshape(-1, arr.shape[-1])
    # a row that sums to exactly 1 but has a negative entry
    flat[0] = [1.1, -0.1] if flat.shape[1] == 2 else [0.625, 0.5, -0.125]
    assert flat[0].sum() == 1.0
    assert (arr < 0).any()
    with pytest.raises(ValueError, match=name):
        make(**{name: arr})


@pytest.mark.parametrize("name", ["prompt_probs", "mu", "policies", "reference"])
@pytest.mark.parametrize("err, raises", [(1e-8, True), (-1e-8, True), (1e-11, False), (-1e-11, False)])
def test_sum_to_one_tolerance(name, err, raises):
    kw = base()
    arr = np.array(kw[name], dtype=float)
    flat = arr.reshape(-1, arr.shape[-1])
    flat[-1, 0] += err
    arr = flat.reshape(arr.shape)
    if raises:
        with pytest.raises(ValueError, match=name):
            make(**{name: arr})
    else:
        make(**{name: arr})


@pytest.mark.parametrize("name", ["policies", "reference"])
def test_log_space_sum_tolerance(name):
    kw = base()
    kw["policies"] = np.log(kw["policies"])
    kw["reference"] = np.log(kw["reference"])
    arr = kw[name].copy()
    arr.reshape(-1, 3)[0, 0] += 1e-8
    kw[name] = arr
    with pytest.raises(ValueError, match=name):
        ToyProblem(**kw, log_space=True)
    arr.reshape(-1, 3)[0, 0] -= 1e-8 - 1e-11
    ToyProblem(**kw, log_space=True)


def test_policy_without_full_support_names_index():
    kw = base()
    pols = kw["policies"].copy()
    pols[2, 1] = [0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match=r"policies\[2\]"):
        make(policies=pols)
    with pytest.raises(ValueError, match=r"policies\[2\]"):
        with np.errstate(divide="ignore"):
            ToyProblem(kw["prompt_probs"], kw["mu"], np.log(pols), 1, 0.5, log_space=True)
    ref = kw["reference"].copy()
    ref[0] = [0.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="reference"):
        make(reference=ref)


def test_mu_zeros_allowed_but_nan_inf_rejected():
    mu = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    make(mu=mu)
    with pytest.raises(ValueError, match="mu"):
        make(mu=np.array([[np.nan, 0.5, 0.5], [1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="prompt_probs"):
        make(prompt_probs=np.array([np.inf, 0.0]))
    r = base()["rewards"].copy()
    r[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="rewards"):
        make(rewards=r)


# ---------------------------------------------------------------------- shapes and scalars
def test_shape_mismatches():
    kw = base()
    with pytest.raises(ValueError, match="mu"):
        make(prompt_probs=np.array([0.2, 0.3, 0.5]))
    with pytest.raises(ValueError, match="prompt_probs"):
        make(prompt_probs=np.array([[0.4, 0.6]]))
    with pytest.raises(ValueError, match="policies"):
        make(policies=kw["policies"][:, :, :2] / kw["policies"][:, :, :2].sum(-1, keepdims=True))
    with pytest.raises(ValueError, match="policies"):
        make(policies=kw["policies"][0])
    with pytest.raises(ValueError, match="rewards"):
        make(rewards=kw["rewards"][:, :1])
    with pytest.raises(ValueError, match="rewards"):
        make(rewards=np.zeros((0, 2, 3)))
    with pytest.raises(ValueError, match="reference"):
        make(reference=kw["reference"][:1])
    with pytest.raises(ValueError, match="mu"):
        make(mu=np.ones((2, 1)), policies=np.ones((1, 2, 1)), reference=None, rewards=None, star=0)


@pytest.mark.parametrize("star", [-1, 4, 10, 1.0, True, "1"])
def test_star_out_of_range_or_not_integer(star):
    with pytest.raises(ValueError, match="star"):
        make(star=star)


def test_star_numpy_integer_ok():
    assert make(star=np.int64(3)).star == 3


@pytest.mark.parametrize("gamma", [0.0, -0.5, math.inf, math.nan, "1"])
def test_gamma_must_be_positive(gamma):
    with pytest.raises(ValueError, match="gamma"):
        make(gamma=gamma)


def test_sample_counts_validated():
    prob = make()
    for n in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="n"):
            prob.sample(n)
    for trials in (0, -1, 2.0):
        with pytest.raises(ValueError, match="trials"):
            prob.sample(10, trials=trials)


# ---------------------------------------------------------------------- constructors
@pytest.mark.parametrize("dim, resolution, radius", [(1, 0.1, 1.0), (2, 0.25, 1.0), (2, 0.2, 0.6), (3, 0.5, 1.0)])
def test_loglinear_grid_size_and_assumption5(dim, resolution, radius):
    prob = ToyProblem.loglinear_grid(n_prompts=3, n_responses=4, dim=dim, resolution=resolution, radius=radius,
                                     gamma=0.5, reward_stride=2, seed=3)
    K = (2 * round(radius / resolution) + 1) ** dim
    assert prob.n_policies == K
    thetas, feats = prob.meta["thetas"], prob.meta["features"]
    assert thetas.shape == (K, dim)
    # every policy is log_softmax(theta . phi)
    logits = np.einsum("kd,xad->kxa", thetas, feats)
    ref = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(prob.log_policies.numpy(), ref, rtol=0, atol=1e-12)
    # pi* is in the class, at theta_star
    np.testing.assert_array_equal(prob.meta["theta_star"], thetas[prob.star])
    star_direct = np.einsum("d,xad->xa", prob.meta["theta_star"], feats)
    star_direct -= np.log(np.exp(star_direct).sum(-1, keepdims=True))
    np.testing.assert_allclose(prob.log_pi_star.numpy(), star_direct, rtol=0, atol=1e-12)
    # Assumption 5: log_softmax(R / gamma) equals the policies at reward_policy_index
    idx = np.asarray(prob.meta["reward_policy_index"])
    assert len(idx) == prob.n_rewards >= 1
    r = prob.rewards.numpy() / prob.gamma
    induced = r - np.log(np.exp(r).sum(-1, keepdims=True))
    np.testing.assert_allclose(induced, prob.log_policies.numpy()[idx], rtol=0, atol=1e-12)
    assert prob.reward_coverage() <= prob.coverage() * (1 + 1e-12) + 1e-12
    assert prob.log_reference is not None
    assert prob.forward_kl(prob.star) == 0.0


def test_random_with_rewards_assumption5():
    for seed in range(3):
        prob = ToyProblem.random(n_prompts=3, n_responses=4, n_policies=15, n_rewards=5, gamma=0.7, seed=seed)
        idx = np.asarray(prob.meta["reward_policy_index"])
        assert len(idx) == 5 and len(set(idx.tolist())) == 5 and idx[0] == prob.star
        r = prob.rewards.numpy() / prob.gamma
        induced = r - np.log(np.exp(r).sum(-1, keepdims=True))
        np.testing.assert_allclose(induced, prob.log_policies.numpy()[idx], rtol=0, atol=1e-12)
        np.testing.assert_allclose(prob.induced_log_policies().numpy(), prob.log_policies.numpy()[idx],
                                   rtol=0, atol=1e-12)
        assert prob.reward_coverage() <= prob.coverage() * (1 + 1e-12) + 1e-12
    with pytest.raises(ValueError, match="n_rewards"):
        ToyProblem.random(n_policies=3, n_rewards=4)
    with pytest.raises(ValueError, match="mu"):
        ToyProblem.random(mu="bogus")


def test_random_is_reproducible_and_seed_dependent():
    a = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=8, n_rewards=3, seed=4)
    b = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=8, n_rewards=3, seed=4)
    c = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=8, n_rewards=3, seed=5)
    assert torch.equal(a.log_policies, b.log_policies) and torch.equal(a.rewards, b.rewards)
    assert not torch.equal(a.log_policies, c.log_policies)


def _assert_same(p: ToyProblem, q: ToyProblem) -> None:
    for name in ("prompt_probs", "mu", "log_policies", "rewards", "log_reference"):
        a, b = getattr(p, name), getattr(q, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype == torch.float64
            assert torch.equal(a, b), name
    assert (p.star, p.gamma) == (q.star, q.gamma)


def test_numpy_torch_and_list_inputs_give_identical_problems():
    kw = base()
    from_np = ToyProblem(**kw)
    from_torch = ToyProblem(**{k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()})
    from_list = ToyProblem(**{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in kw.items()})
    _assert_same(from_np, from_torch)
    _assert_same(from_np, from_list)
    logs = ToyProblem(kw["prompt_probs"], kw["mu"], np.log(kw["policies"]), 1, 0.5, rewards=kw["rewards"],
                      reference=torch.log(torch.as_tensor(kw["reference"])), log_space=True)
    np.testing.assert_allclose(logs.log_policies.numpy(), from_np.log_policies.numpy(), rtol=0, atol=0)
    np.testing.assert_array_equal(logs.law(), from_np.law())
    # a torch tensor that requires grad is accepted and stored detached
    pols = torch.as_tensor(kw["policies"]).clone().requires_grad_(True)
    assert not ToyProblem(kw["prompt_probs"], kw["mu"], pols, 1, 0.5).log_policies.requires_grad


def test_to_cpu_copy_and_properties():
    prob = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=6, n_rewards=2, seed=1)
    c0 = prob.coverage()
    moved = prob.to("cpu")
    assert isinstance(moved, ToyProblem) and moved is not prob
    assert moved.device == torch.device("cpu")
    _assert_same(prob, moved)
    assert moved.coverage() == c0
    np.testing.assert_array_equal(moved.forward_kl_table(), prob.forward_kl_table())
    np.testing.assert_array_equal(moved.law(), prob.law())
    np.testing.assert_allclose(prob.policies.numpy(), np.exp(prob.log_policies.numpy()), rtol=1e-15)
    np.testing.assert_allclose(prob.reference.numpy().sum(-1), 1.0, rtol=1e-14)
    desc = prob.describe()
    assert desc["n_policies"] == 6 and desc["C_pi"] == c0 and desc["R"] == prob.boundedness()
    assert "C_r" in desc
    import json
    json.dumps(desc)


def test_loglinear_grid_validation():
    with pytest.raises(ValueError, match="resolution"):
        ToyProblem.loglinear_grid(resolution=2.0, radius=0.5)
    with pytest.raises(ValueError, match="resolution"):
        ToyProblem.loglinear_grid(resolution=0.0)
    with pytest.raises(ValueError, match="radius"):
        ToyProblem.loglinear_grid(radius=-1.0)
    with pytest.raises(ValueError, match="dim"):
        ToyProblem.loglinear_grid(dim=0)
