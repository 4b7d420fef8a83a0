"""Sharded exact argmin and class reductions: two gloo processes on CPU give the one-process answer, bit for bit.

Every registered estimator (each of its test_params) and the reward fit, on classes of 1, 2 and 31
policies (uneven splits, an empty rank) and on a class holding every policy twice (exact ties across
the two ranks: the lowest global index must win), for several chunk sizes; and R, C_Pi, C_R,
concentrability and both exact KL tables. An error on one rank's rows is raised on every rank, and a
failed call leaves no reference cycle that would keep a process group alive past its destruction.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from finitepref import _argmin, distributed
from finitepref import registry as reg
from finitepref.estimators import fit_reward
from finitepref.problem import ToyProblem
from tests.core.gloo_ranks import run_sharded

CHUNKS = (1, 3, None)


def _problems():
    probs = {f"K{k}": ToyProblem.random(n_prompts=3, n_responses=4, n_policies=k, n_rewards=min(k, 5), gamma=0.8,
                                        spread=0.7, seed=k) for k in (1, 2, 31)}
    base = probs["K31"]
    probs["dup"] = ToyProblem(base.prompt_probs, base.mu, torch.cat([base.log_policies, base.log_policies]),
                              base.star, base.gamma, rewards=torch.cat([base.rewards, base.rewards]),
                              reference=base.log_reference, log_space=True)
    return probs


def _all_results() -> dict:
    """Every (problem, estimator, params, chunk) -> chosen indices, in this process's sharding context."""
    out = {}
    for pname, prob in _problems().items():
        data = prob.sample(30, trials=5, seed=7)
        out[f"{pname}/constants"] = [prob.boundedness(), prob.coverage(), prob.concentrability(),
                                     prob.reward_coverage()]
        out[f"{pname}/kl"] = prob.forward_kl_table().tolist() + prob.reverse_kl_table().tolist()
        for chunk in CHUNKS:
            rewards = fit_reward(prob, data, chunk_size=chunk)
            out[f"{pname}/fit_reward/{chunk}"] = rewards.tolist()
            for name, entry in reg.ESTIMATORS.items():
                for i, params in enumerate(entry.test_params):
                    args = [rewards] if entry.needs_reward else []
                    idx = entry.function(prob, data, *args, **params, chunk_size=chunk)
                    out[f"{pname}/{name}/{i}/{chunk}"] = idx.tolist()
    return out


def _fails_on_row_3(rows: slice) -> torch.Tensor:
    if rows.start <= 3 < rows.stop:
        raise ValueError("row 3 is bad")
    return torch.ones(rows.stop - rows.start, dtype=torch.float64)


def _raised(call) -> str:
    try:
        call()
    except ValueError as exc:
        return "raised: " + str(exc)[:40]
    return "none"


def _results_and_error() -> dict:
    """:func:`_all_results`, and whether an error on one rank's rows (rank 1 holds rows 2 and 3 of 4) is raised on
    every rank, none left waiting: an estimator, a class maximum and a per-policy table."""
    from finitepref.estimators import pmle

    out = _all_results()
    bad = ToyProblem.random(n_prompts=2, n_responses=3, n_policies=4, seed=0)
    bad.log_policies[3, 0, 0] = float("nan")
    out["error"] = _raised(lambda: pmle(bad, bad.sample(10, trials=2, seed=0)))
    out["max_error"] = _raised(lambda: distributed.max_over_rows(4, 1, lambda r: float(_fails_on_row_3(r).sum())))
    out["table_error"] = _raised(lambda: distributed.table_over_rows(torch.zeros(4, dtype=torch.float64), 1,
                                                                      _fails_on_row_3))
    return out


def test_two_gloo_processes_equal_one(tmp_path):
    single = _all_results()
    sharded = run_sharded(_results_and_error, tmp_path)
    assert sharded.pop("error").startswith("raised: pmle: another rank failed")
    assert sharded.pop("max_error") == sharded.pop("table_error") == "raised: another rank failed (see its error)"
    assert sharded.keys() == single.keys()
    diffs = [k for k in single if sharded[k] != single[k]]
    assert not diffs, f"sharded differs from one process at {diffs[:5]}"
    dup = [v for k, v in single.items() if k.startswith("dup/")]
    assert all(max(v) < 31 for v in dup if v), "ties across ranks must go to the lowest global index"


def test_row_ranges_cover_uneven_splits():
    for n in (0, 1, 2, 7, 31):
        for world in (1, 2, 3, 5):
            ranges = [(r * n // world, (r + 1) * n // world) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert distributed.row_range(7, None) == (0, 7)
    assert distributed.current_group() is None
    with pytest.raises(ValueError, match="group"):
        distributed.current_group("nope")
    np.testing.assert_equal(distributed.bytes_per_trial(), 16)


def _failed_call_frees_its_frames(call) -> bool:
    """Whether everything a failed ``call(fn)`` held is freed by reference counting alone (gc off): a reference
    cycle through the exception would keep its frames, ``fn`` and, under a launcher, the process group alive."""
    def fn(rows):
        return _fails_on_row_3(rows)

    probe = weakref.ref(fn)
    gc.collect()
    gc.disable()
    try:
        try:
            call(fn)
        except ValueError as exc:
            assert "row 3" in str(exc)
        del fn
        return probe() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("call", [
    lambda fn: distributed.max_over_rows(4, 2, lambda rows: float(fn(rows).sum())),
    lambda fn: distributed.table_over_rows(torch.zeros(4, dtype=torch.float64), 2, fn),
    lambda fn: _argmin.argmin_rows(lambda rows: fn(rows)[:, None], 4, torch.ones(3, 1, dtype=torch.float64),
                                   chunk_size=2, name="probe"),
], ids=["max_over_rows", "table_over_rows", "argmin_rows"])
def test_a_failed_call_leaves_no_reference_cycle(call):
    assert _failed_call_frees_its_frames(call)


def test_shared_errors_in_one_process_is_a_plain_block():
    with pytest.raises(ValueError, match="mine"), distributed.shared_errors(None, "x"):
        raise ValueError("mine")
    with pytest.raises(KeyError), distributed.shared_errors(None, "x"):
        raise KeyError("other errors pass through")
    with distributed.shared_errors(None, "x"):
        pass
    for bad in ("nope", "world"):  # not a group name; no process group initialised here
        with pytest.raises(ValueError, match="group"):
            distributed.shared_errors(bad, "x")
