"""Fuzz the public toy-core and bounds API with random, often malformed, inputs (issue 11, deliverable 8).

Every call must end in one of two ways:

* ``clear_error``: a ``ValueError`` or ``TypeError`` whose message names the argument (or the
  estimator) and shows what was expected;
* ``correct``: an answer checked independently: an estimator's index attains the minimum of its
  brute-force objective (:mod:`finitepref._brute`), a distribution is finite, non-negative and
  normalised, a bound or constant is a number in its range or ``inf`` (never NaN).

Anything else (NaN, a wrong index, an exception of another type, an error message that names
nothing) fails the test. The counts per target and outcome are printed at the end of the run
(``pytest_terminal_summary`` in ``tests/conftest.py``). Derandomized like the whole suite.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bounds
import finitepref as fp
from finitepref import PreferenceData, ToyProblem
from finitepref import registry as reg

FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# numbers a careless caller passes
ODD = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-310, 1e308, -1e308, 1e155, 1e-155, 0.5, 2, 0, -3, 2**63]),
    st.integers(-5, 5),
    st.sampled_from(["1", None, True, 1j, [1.0, float("nan")], [], [[1.0], [2.0, 3.0]]]),
)
GOOD = st.sampled_from([0.1, 0.5, 1.0, 2.0])
NAMED = re.compile(r"^[A-Za-z_][\w\[\]\.]*[ :]")  # "name: ..." or "name must ..."


def classify(call, check) -> str:
    """Run ``call``; a ValueError/TypeError that names its argument is clear, else ``check`` the answer."""
    try:
        out = call()
    except (ValueError, TypeError) as err:
        message = str(err)
        assert NAMED.match(message), f"unclear error message: {message!r}"
        return "clear_error"
    check(out)
    return "correct"


def finite_or_inf(value) -> None:
    arr = np.asarray(value, dtype=np.float64)
    assert not np.isnan(arr).any(), f"NaN answer: {value!r}"


def distribution(value) -> None:
    arr = np.asarray(value, dtype=np.float64)
    assert np.isfinite(arr).all() and (arr >= 0).all(), f"not a distribution: {value!r}"
    np.testing.assert_allclose(arr.sum(-1), 1.0, atol=1e-12)


# ---------------------------------------------------------------------- estimators
def _problem(seed: int, scale: float, gamma: float, reward_scale: float) -> ToyProblem:
    base = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=7, n_rewards=3, spread=1.0, seed=seed)
    lp = base.log_policies.clone()
    lp[seed % 7] = torch.log_softmax(lp[seed % 7] * scale, -1)  # one policy pushed to the extremes
    rewards = base.rewards / base.rewards.abs().max() * reward_scale  # |R| <= reward_scale: finite
    return ToyProblem(base.prompt_probs, base.mu, lp, base.star, gamma, rewards=rewards,
                      reference=base.log_reference, log_space=True)


def _check_index(entry, prob, data, reward_index, params):
    def check(chosen):
        assert chosen.shape == (data.trials,) and chosen.dtype == np.int64
        for t in range(data.trials):
            r = int(np.broadcast_to(reward_index, (data.trials,))[t]) if entry.needs_reward else None
            obj = entry.objective(prob, data.samples(t), r, **params)
            best = np.nanmin(obj) if not np.isnan(obj).all() else np.nan
            assert np.isfinite(best) or best == np.inf, f"{entry.name}: an answer where the objective is {best}"
            value = obj[chosen[t]]
            assert value <= best + 1e-9 * (1 + abs(best)), f"{entry.name}: index {chosen[t]} ({value}) > min {best}"
    return check


@FUZZ
@given(seed=st.integers(0, 50), scale=st.sampled_from([1.0, 1e3, 1e150, 1e300]),
       gamma=st.sampled_from([1.0, 1e-300, 1e300, 1e308]), reward_scale=st.sampled_from([1.0, 1e155, 1e308]),
       name=st.sampled_from(reg.names()), value=st.one_of(GOOD, ODD),
       reward_index=st.one_of(st.integers(-1, 3), st.sampled_from([np.array([0, 2]), np.array([0.5, 1.0])])),
       chunk=st.one_of(st.none(), st.integers(1, 8), st.sampled_from([0, 1.5, True])))
def test_fuzz_estimators(fuzz_counts, seed, scale, gamma, reward_scale, name, value, reward_index, chunk):
    entry = reg.get(name)
    params = {p: value for p in entry.params}
    args = [reward_index] if entry.needs_reward else []
    with np.errstate(all="ignore"):
        prob = _problem(seed, scale, gamma, reward_scale)
        data = prob.sample(12, trials=2, seed=seed)
        outcome = classify(lambda: entry.function(prob, data, *args, chunk_size=chunk, **params),
                           _check_index(entry, prob, data, reward_index, params))
    fuzz_counts["estimators"][outcome] += 1


# ---------------------------------------------------------------------- problems and their constants
ODD_ENTRY = st.sampled_from([math.nan, math.inf, -math.inf, -0.5, 1.5, 1e-320, 1e308, -1e308, 1j, "x"])


@st.composite
def corrupted(draw, valid: np.ndarray):
    """``valid``, or a copy with one entry replaced, scaled, reshaped or cast to float32 (half the time valid)."""
    how = draw(st.sampled_from(["valid", "valid", "entry", "scale", "shape", "float32"]))
    arr = np.array(valid)
    if how == "entry":
        arr = arr.astype(object)
        arr.flat[draw(st.integers(0, arr.size - 1))] = draw(ODD_ENTRY)
        return arr.tolist()
    if how == "scale":
        return arr * draw(st.sampled_from([0.0, -1.0, 2.0, 1e300]))
    if how == "shape":
        return arr.reshape(-1) if arr.ndim > 1 else arr[None]
    return arr.astype(np.float32) if how == "float32" else arr


VALID = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=4, seed=3)


@FUZZ
@given(data=st.data(), log_space=st.booleans(), star=st.one_of(st.integers(-1, 4), ODD),
       gamma=st.one_of(GOOD, GOOD, ODD))
def test_fuzz_problem_constants(fuzz_counts, data, log_space, star, gamma):
    prompt = data.draw(corrupted(VALID.prompt_probs.numpy()))
    mu = data.draw(corrupted(VALID.mu.numpy()))
    pol = data.draw(corrupted(VALID.log_policies.numpy() if log_space else VALID.policies.numpy()))

    def build():
        prob = ToyProblem(prompt, mu, pol, star, gamma, log_space=log_space)
        return prob.coverage(), prob.boundedness(), prob.forward_kl_table(), prob.reverse_kl_table()

    def check(out):
        for v in out:
            finite_or_inf(v)
            assert (np.asarray(v) >= 0).all()

    with np.errstate(all="ignore"):
        fuzz_counts["problem+constants"][classify(build, check)] += 1


@FUZZ
@given(data=st.data(), n=st.one_of(st.integers(1, 100), ODD), chunk=st.one_of(st.none(), st.integers(0, 3),
                                                                              st.sampled_from([1.5])))
def test_fuzz_preference_data(fuzz_counts, data, n, chunk):
    prob = ToyProblem.random(n_prompts=2, n_responses=2, n_policies=5, seed=1)
    counts = data.draw(corrupted(np.arange(8).reshape(1, 2, 2, 2) % 3))

    def run():
        data = PreferenceData(counts)
        return data, fp.estimators.pmle(prob, data, chunk_size=chunk)

    def check(out):
        data, chosen = out
        obj = reg.get("pmle").objective(prob, data.samples(0))
        assert obj[chosen[0]] <= obj.min() + 1e-9 * (1 + abs(obj.min()))

    def check_sample(sample):
        assert sample.n == n and sample.counts.sum() == n

    with np.errstate(all="ignore"):
        fuzz_counts["data+pmle"][classify(run, check)] += 1
        fuzz_counts["sample"][classify(lambda: prob.sample(n, seed=0), check_sample)] += 1


@FUZZ
@given(data=st.data(), gamma=st.one_of(GOOD, GOOD, ODD), beta=st.one_of(st.just(0.0), GOOD, ODD),
       extreme=st.booleans())
def test_fuzz_differentiable_objectives(fuzz_counts, data, gamma, beta, extreme):
    lp = torch.log_softmax(torch.tensor([[700.0 if extreme else 0.3, -700.0 if extreme else 0.1]],
                                        dtype=torch.float64), -1)
    ref = torch.log(torch.full((1, 2), 0.5, dtype=torch.float64))
    counts = data.draw(corrupted(np.array([[[0.0, 2.0], [1.0, 0.0]]])))

    def run():
        return (fp.estimators.pmle_objective(lp, counts, gamma, beta, ref),
                fp.estimators.distill_objective(lp, counts, torch.zeros(1, 2), gamma, beta, ref))

    def check(out):
        for v in out:
            finite_or_inf(float(v))

    with np.errstate(all="ignore"):
        fuzz_counts["objectives"][classify(run, check)] += 1


# ---------------------------------------------------------------------- bounds
ARRAYS = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=6),
    st.lists(st.floats(0, 1), min_size=2, max_size=3),
    st.sampled_from([[0.5, 0.5], [1.0, 0.0], [-0.5, 1.5], [1e-320, 1.0], [1j, 1.0], "ab"]),
)
PROB_VECTORS = st.one_of(st.sampled_from([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]), ARRAYS)


@FUZZ
@given(p0=PROB_VECTORS, r=st.one_of(st.sampled_from([[1.0, 2.0, 0.5], [1e308, -1e308, 0.0], [0.0, 0.0, 0.0]]), ARRAYS),
       beta=st.one_of(GOOD, ODD), gamma=st.one_of(GOOD, ODD), p=PROB_VECTORS)
def test_fuzz_prior_smoothing(fuzz_counts, p0, r, beta, gamma, p):
    calls = {
        "smoothed_prior": (lambda: bounds.smoothed_prior(p0, beta, gamma), distribution),
        "reverse_kl_solution": (lambda: bounds.reverse_kl_solution(p0, r, beta, gamma), distribution),
        "rlhf_solution": (lambda: bounds.rlhf_solution(p0, r, beta), distribution),
        "reverse_kl_objective": (lambda: bounds.reverse_kl_objective(p, p0, r, beta, gamma), finite_or_inf),
    }
    with np.errstate(all="ignore"):
        for call, check in calls.values():
            fuzz_counts["bounds.prior_smoothing"][classify(call, check)] += 1


BOUND_ARGS = {
    "proposition12": 3, "eq18": 5, "eq18_corrected": 5, "proposition14_factor": 1, "theorem4": 6,
    "theorem4_corrected": 6, "theorem6": 7, "theorem6_corrected": 7, "theorem7": 7, "theorem7_corrected": 7,
    "lemma8": 2, "lemma8_corrected": 2, "lemma9_factor": 1, "lemma9_upper_factor": 1, "lemma10_factor": 1,
    "log_sigmoid_gap": 2, "sigmoid_gap": 2, "psi": 1, "hypercube_coordinate_kl": 1, "hypercube_win_probability": 2,
    "hypercube_lower_bound": 4, "hypercube_lower_bound_bh": 4,
}


@FUZZ
@given(name=st.sampled_from(sorted(BOUND_ARGS)), args=st.lists(st.one_of(GOOD, ODD), min_size=7, max_size=7))
def test_fuzz_bounds(fuzz_counts, name, args):
    fn = getattr(bounds, name)
    with np.errstate(all="ignore"):
        outcome = classify(lambda: fn(*args[:BOUND_ARGS[name]]), finite_or_inf)
    fuzz_counts["bounds"][outcome] += 1


def test_fuzz_targets_cover_the_bounds_api():
    public = {n for n in bounds.__all__ if callable(getattr(bounds, n))}
    smoothing = {"smoothed_prior", "reverse_kl_solution", "rlhf_solution", "reverse_kl_objective"}
    assert public - smoothing <= set(BOUND_ARGS), sorted(public - smoothing - set(BOUND_ARGS))


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, "x"])
def test_classify_counts_a_clear_error(value, fuzz_counts):
    """The classifier itself: a bad gamma to ToyProblem is a clear error."""
    outcome = classify(lambda: ToyProblem.random(gamma=value), lambda out: None)
    assert outcome == "clear_error"
