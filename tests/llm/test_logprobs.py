"""Sequence log-probs: one padded forward equals a brute-force per-token loop, for any padding; a
pair packed as one row [prompt; first; second] equals the two responses run on their own."""

import pytest
import torch

from finitepref.llm import logprobs
from finitepref.llm.data import pad
from finitepref.llm.logprobs import (
    enumerate_logprobs,
    pair_sequence_logprobs,
    sequence_logprobs,
    stack_responses,
)


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


SECOND = [[21, 22], [], [23, 24, 25, 26, 1]]  # an empty response sums to 0


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("sides", [("left", "right"), ("right", "left")])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("arch", ["tiny:gpt-neox", "tiny:llama"])
def test_packed_pair_matches_brute_force(attention, sides, temperature, arch):
    from finitepref.llm.tiny import tiny_model

    model = tiny_model(arch, seed=3).double().eval()
    model.config._attn_implementation = attention
    p_ids, p_mask = pad(PROMPTS, 0, sides[0])
    a_ids, a_mask = pad(RESPONSES, 0, sides[1])
    b_ids, b_mask = pad(SECOND, 0, sides[1])
    with torch.no_grad():
        first, second = pair_sequence_logprobs(model, p_ids, p_mask, a_ids, a_mask, b_ids, b_mask, temperature)
        expected = [[brute_force(model, p, r, temperature) for p, r in zip(PROMPTS, rs, strict=True)]
                    for rs in (RESPONSES, SECOND)]
    torch.testing.assert_close(first, torch.tensor(expected[0], dtype=torch.float64), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(second, torch.tensor(expected[1], dtype=torch.float64), rtol=1e-9, atol=1e-9)


def _pair_inputs():
    p_ids, p_mask = pad(PROMPTS, 0, "left")
    return (p_ids, p_mask, *pad(RESPONSES, 0, "right"), *pad(SECOND, 0, "right"))


def _grads(model, first, second):
    model.zero_grad()
    (first.sum() + 2 * second.sum()).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_packed_pair_gradients_equal_two_rows():
    """GPT-NeoX runs in float64 throughout (LLaMA's RMSNorm computes in float32: agreement to ~1e-7 only)."""
    from finitepref.llm.tiny import tiny_model

    model = tiny_model("tiny:gpt-neox", seed=2).double()
    inputs = _pair_inputs()
    packed = _grads(model, *pair_sequence_logprobs(model, *inputs, 0.8))
    two_rows = _grads(model, *sequence_logprobs(model, *stack_responses(*inputs), 0.8)["logp"].chunk(2))
    for g, h in zip(packed, two_rows, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)


def _forward_shapes(model) -> list:
    shapes = []
    model.register_forward_hook(lambda m, args, kwargs, out: shapes.append(
        (tuple(kwargs["input_ids"].shape), tuple(out.logits.shape))), with_kwargs=True)
    return shapes


def test_packed_pair_reads_the_prompt_once():
    """One row per pair, as wide as the longest prompt + first + second; logits for the responses only."""
    from finitepref.llm.tiny import tiny_model

    model = tiny_model("tiny:gpt-neox", seed=0)
    shapes = _forward_shapes(model)
    pair_sequence_logprobs(model, *_pair_inputs())
    widest = max(len(p) + len(a) + len(b) for p, a, b in zip(PROMPTS, RESPONSES, SECOND, strict=True))
    longest = max(len(a) + len(b) for a, b in zip(RESPONSES, SECOND, strict=True))
    assert shapes == [((3, widest), (3, longest + 1, model.config.vocab_size))]


def test_pair_falls_back_to_two_rows_without_custom_masks(monkeypatch):
    from finitepref.llm.tiny import tiny_model

    model = tiny_model("tiny:gpt-neox", seed=0).double()
    inputs = _pair_inputs()
    with torch.no_grad():
        packed = pair_sequence_logprobs(model, *inputs)
        monkeypatch.setattr(logprobs, "PACKED_ATTENTION", ())
        shapes = _forward_shapes(model)
        two_rows = pair_sequence_logprobs(model, *inputs)
    assert shapes[0][0][0] == 6  # [prompts; prompts] x [first; second]
    for x, y in zip(packed, two_rows, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_packed_pair_in_bfloat16_and_through_lora():
    """Half precision: float32 log-softmax, close to the two-row answer; a peft model packs too."""
    from peft import LoraConfig, get_peft_model

    from finitepref.llm.tiny import tiny_model

    model = get_peft_model(tiny_model("tiny:llama", seed=1),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    assert logprobs.attention_implementation(model) == "sdpa"
    inputs = _pair_inputs()
    model = model.to(torch.bfloat16)
    packed = pair_sequence_logprobs(model, *inputs)
    assert all(x.dtype == torch.float32 for x in packed)
    with torch.no_grad():
        two_rows = sequence_logprobs(model, *stack_responses(*inputs))["logp"].chunk(2)
    for x, y in zip(packed, two_rows, strict=True):
        torch.testing.assert_close(x.detach(), y, rtol=0.02, atol=0.05)
    sum(x.sum() for x in packed).backward()  # float32 chunks recomputed in backward
