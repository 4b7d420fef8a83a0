"""Sequence log-probs: one padded forward equals a brute-force per-token loop, for any padding."""

import pytest
import torch

from finitepref.llm.data import pad
from finitepref.llm.logprobs import enumerate_logprobs, sequence_logprobs


def brute_force(model, prompt, response, temperature):
    """Sum over t of log softmax(logits(x, a_<t) / T)[a_t], each prefix run unpadded."""
    total = 0.0
    for t in range(len(response)):
        ids = torch.tensor([prompt + response[:t]])
        logits = model(input_ids=ids).logits[0, -1].double() / temperature
        total += float(torch.log_softmax(logits, -1)[response[t]])
    return total


PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
RESPONSES = [[3, 4, 1], [15, 16, 17, 18, 19], [20]]


@pytest.mark.parametrize("prompt_side", ["left", "right"])
@pytest.mark.parametrize("response_side", ["right", "left"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("arch", ["tiny:gpt-neox", "tiny:llama"])
def test_matches_brute_force(prompt_side, response_side, temperature, arch):
    from finitepref.llm.tiny import tiny_model

    model = tiny_model(arch, seed=3).double().eval()
    p_ids, p_mask = pad(PROMPTS, 0, prompt_side)
    r_ids, r_mask = pad(RESPONSES, 0, response_side)
    with torch.no_grad():
        out = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, temperature, with_entropy=True)
        expected = [brute_force(model, p, r, temperature) for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    torch.testing.assert_close(out["logp"], torch.tensor(expected, dtype=out["logp"].dtype), rtol=1e-9, atol=1e-9)
    # per-token values are in right-padded response order and zero at padding
    assert torch.all(out["token_logp"][out["mask"] == 0] == 0)
    assert torch.all(out["entropy"][out["mask"] == 1] > 0)


def test_float32_close_to_float64():
    from finitepref.llm.tiny import tiny_model

    model = tiny_model("tiny:gpt-neox", seed=1).eval()
    p_ids, p_mask = pad(PROMPTS, 0, "left")
    r_ids, r_mask = pad(RESPONSES, 0, "right")
    with torch.no_grad():
        lp32 = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask)["logp"]
        lp64 = sequence_logprobs(model.double(), p_ids, p_mask, r_ids, r_mask)["logp"]
    torch.testing.assert_close(lp32.double(), lp64, rtol=1e-5, atol=1e-5)


def test_enumeration_matches_trainer_and_refuses_large_spaces(tiny_lm):
    model = tiny_lm.double().eval()
    allowed = [3, 4, 5]
    with torch.no_grad():
        logp, responses = enumerate_logprobs(model, [[6, 7], [8]], 2, allowed)
    assert logp.shape == (2, 9) and responses.shape == (9, 2)
    for x, prompt in enumerate([[6, 7], [8]]):
        p_ids, p_mask = pad([prompt] * 9, 0, "left")
        with torch.no_grad():
            ref = sequence_logprobs(model, p_ids, p_mask, responses, torch.ones_like(responses))["logp"]
        torch.testing.assert_close(logp[x], ref, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        restricted, _ = enumerate_logprobs(model, [[6, 7]], 2, [5, 3, 4], restrict=True)
    torch.testing.assert_close(restricted.exp().sum(-1), torch.ones(1, dtype=torch.float64))
    assert torch.all(logp.exp().sum(-1) < 1)
    with pytest.raises(ValueError, match="response space"):
        enumerate_logprobs(model, [[6]], 5, allowed, max_responses=100)
