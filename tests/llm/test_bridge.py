"""The shared-loss bridge: the trainer's PMLE / distillation / IPO / chi-PO batch loss on a tiny language model has
the same parameter gradient as the toy core's exact objective evaluated on the model's enumerated
log-probabilities, with counts built from the same samples (beta = 0)."""

import numpy as np
import pytest
import torch

from finitepref.estimators import distill_objective, pmle_objective
from finitepref.llm.batches import OfflinePairBatch, OnlinePairBatch
from finitepref.llm.data import pad
from finitepref.llm.logprobs import enumerate_logprobs
from finitepref.llm.registry import REGISTRY
from finitepref.llm.run import Models
from finitepref.llm.tiny import tiny_model

PROMPTS = [[6, 7, 8], [9]]
ALLOWED = [3, 4, 5, 10]
LENGTH = 2


def _setup(seed: int, n: int = 24):
    model = tiny_model("tiny:llama", seed=seed).double()
    rng = np.random.default_rng(seed)
    n_responses = len(ALLOWED) ** LENGTH
    xs = rng.integers(0, len(PROMPTS), n)
    winners = rng.integers(0, n_responses, n)
    losers = rng.integers(0, n_responses, n)
    counts = np.zeros((len(PROMPTS), n_responses, n_responses))
    np.add.at(counts, (xs, winners, losers), 1)
    return model, xs, winners, losers, counts


def _columns(xs, winners, losers, responses, names=("chosen", "rejected")):
    p_ids, p_mask = pad([PROMPTS[x] for x in xs], 0, "left")
    columns = {"prompt_ids": p_ids, "prompt_mask": p_mask}
    for name, idx in zip(names, (winners, losers), strict=True):
        r = responses[torch.as_tensor(idx)]
        columns[f"{name}_ids"], columns[f"{name}_mask"] = r, torch.ones_like(r)
    return columns


def _grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def _assert_same(g1, g2):
    """Equal up to float32 round-off: the model is float64, but transformers' RMSNorm and rotary
    embeddings compute internally in float32, so batches of different composition differ by a few
    float32 ulps of each gradient tensor's scale."""
    eps32 = torch.finfo(torch.float32).eps
    n_nonzero = 0
    for a, b in zip(g1, g2, strict=True):
        if a is None or b is None:
            assert (a is None or torch.all(a == 0)) and (b is None or torch.all(b == 0))
            continue
        torch.testing.assert_close(a, b, rtol=0, atol=16 * eps32 * float(b.abs().max()) + 1e-300)
        n_nonzero += int(torch.any(a != 0))
    assert n_nonzero > 5


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_pmle_gradient_matches_exact_objective(seed, gamma):
    model, xs, winners, losers, counts = _setup(seed)
    log_probs, responses = enumerate_logprobs(model, PROMPTS, LENGTH, ALLOWED)
    exact = pmle_objective(log_probs, torch.as_tensor(counts), gamma)
    record = REGISTRY["pmle"]
    batch = OfflinePairBatch.from_mapping(_columns(xs, winners, losers, responses))
    loss, _ = record.loss(Models(policy=model, tokenizer=None), batch, record.settings(gamma=gamma, beta=0.0))
    torch.testing.assert_close(loss, exact, rtol=1e-12, atol=1e-12)
    _assert_same(_grads(model, loss), _grads(model, exact))


@pytest.mark.parametrize("seed", [0, 1])
def test_distill_gradient_matches_exact_objective(seed):
    gamma = 0.5
    model, xs, winners, losers, counts = _setup(seed)
    rewards = torch.as_tensor(np.random.default_rng(seed + 10).normal(size=(len(PROMPTS), len(ALLOWED) ** LENGTH)))
    log_probs, responses = enumerate_logprobs(model, PROMPTS, LENGTH, ALLOWED)
    exact = distill_objective(log_probs, torch.as_tensor(counts), rewards, gamma)
    columns = _columns(xs, winners, losers, responses, names=("response1", "response2"))
    unused = torch.zeros(len(xs), dtype=torch.float64)
    columns.update(score1=rewards[torch.as_tensor(xs), torch.as_tensor(winners)],
                   score2=rewards[torch.as_tensor(xs), torch.as_tensor(losers)],
                   ref1=unused, ref2=unused, old1=unused, old2=unused)
    record = REGISTRY["distill"]
    loss, _ = record.loss(Models(policy=model, tokenizer=None), OnlinePairBatch.from_mapping(columns),
                          record.settings(gamma=gamma, beta=0.0))
    torch.testing.assert_close(loss, exact, rtol=1e-12, atol=1e-12)
    _assert_same(_grads(model, loss), _grads(model, exact))


@pytest.mark.parametrize("name,settings", [("ipo", {"tau": 0.1}), ("ipo", {"tau": 1.0}),
                                           ("chipo", {"beta": 0.1, "r_max": 5.0}),
                                           ("chipo", {"beta": 1.0, "r_max": 0.05})])  # the clip active
@pytest.mark.parametrize("seed", [0, 1])
def test_ipo_chipo_gradient_matches_exact_objective(name, settings, seed):
    """The trainer's IPO / chi-PO batch loss against pi_0 equals the toy core's empirical objective
    (finitepref.estimators' per-pair table, the argmin's objective) on enumerated log-probs."""
    from finitepref.estimators import _chipo_table, _ipo_table

    model, xs, winners, losers, counts = _setup(seed)
    reference = tiny_model("tiny:llama", seed=seed + 5).double().requires_grad_(False)
    log_probs, responses = enumerate_logprobs(model, PROMPTS, LENGTH, ALLOWED)
    with torch.no_grad():
        ref_log_probs, _ = enumerate_logprobs(reference, PROMPTS, LENGTH, ALLOWED)
    table = (_ipo_table(log_probs, ref_log_probs, settings["tau"]) if name == "ipo"
             else _chipo_table(log_probs, ref_log_probs, settings["beta"], settings["r_max"]))
    counts = torch.as_tensor(counts)
    exact = (table @ counts.reshape(-1)) / counts.sum()  # the per-pair table weighted by the data's pair counts
    record = REGISTRY[name]
    batch = record.batch.from_mapping(_columns(xs, winners, losers, responses))
    loss, _ = record.loss(Models(policy=model, tokenizer=None, reference=reference), batch,
                          record.settings(**settings))
    torch.testing.assert_close(loss, exact, rtol=1e-10, atol=1e-10)
    _assert_same(_grads(model, loss), _grads(model, exact))
