"""Sampling (EOS disabled, truncation after the first EOS) and reward scoring (last real token,
missing-EOS score, decode + re-encode for a different reward tokenizer)."""

import torch

from finitepref.llm.config import GenerationConfig, RewardConfig
from finitepref.llm.data import pad
from finitepref.llm.models import RewardModel, Sampler, postprocess
from finitepref.llm.tiny import WORDS, tiny_model, tiny_tokenizer


def test_postprocess_truncates_after_first_eos():
    ids = torch.tensor([[5, 1, 7, 1], [5, 6, 7, 8], [1, 4, 4, 4]])
    out, mask = postprocess(ids, eos_id=1, pad_id=0, truncate_after_eos=True)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert out.tolist() == [[5, 1, 0, 0], [5, 6, 7, 8], [1, 0, 0, 0]]


def test_sampler_exact_length_with_eos_disabled(tok):
    model = tiny_model("tiny:gpt-neox", seed=0)
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()  # uniform next-token law: EOS is sampled often
    sampler = Sampler(GenerationConfig(max_new_tokens=40, min_new_tokens=40, temperature=1.0), tok)
    p_ids, p_mask = pad([[5, 6, 7], [8]] * 4, tok.pad_token_id, "left")
    torch.manual_seed(0)
    ids, mask = sampler.sample(model, p_ids, p_mask)
    assert ids.shape == (8, 40)
    lengths = mask.sum(-1)
    assert (lengths < 40).any(), "some responses should be cut after a sampled EOS"
    for i in range(8):
        n = int(lengths[i])
        if n < 40:
            assert ids[i, n - 1] == tok.eos_token_id and (ids[i, n:] == tok.pad_token_id).all()
    assert model.generation_config.eos_token_id == tok.eos_token_id  # restored


def _rm(policy_tok, rm_tok, penalty=-1.0):
    net = tiny_model("tiny:gpt-neox", "seq_cls", seed=4, vocab_size=len(rm_tok)).eval()
    return RewardModel(net, rm_tok, RewardConfig(missing_eos_penalty=penalty), policy_tok)


def test_reward_read_at_last_token_and_missing_eos(tok):
    rm = _rm(tok, tok)
    prompts, responses = [[5, 6, 7], [8]], [[9, 10, 1], [11, 12]]
    p1, pm1 = pad(prompts, 0, "left")
    r1, rm1 = pad(responses, 0, "right")
    p2, pm2 = pad(prompts, 0, "right", length=6)
    r2, rm2 = pad(responses, 0, "left", length=5)
    s1, s2 = rm.scores(p1, pm1, r1, rm1), rm.scores(p2, pm2, r2, rm2)
    torch.testing.assert_close(s1, s2)
    assert s1[1] == -1.0  # no EOS
    with torch.no_grad():
        ids = torch.tensor([prompts[0] + responses[0]])
        direct = rm.scorer(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None])[0, -1]
    torch.testing.assert_close(s1[0], direct)


def test_reward_model_with_another_tokenizer_decodes_and_reencodes(tok):
    other = tiny_tokenizer(tuple(reversed(WORDS)))  # same words, different ids
    rm = _rm(tok, other, penalty=None)
    assert not rm.same_tokenizer
    prompt_text, response_text = "the cat sat", "on the mat"
    p, pm = pad([tok(prompt_text)["input_ids"]], 0, "left")
    r, rmask = pad([tok(response_text)["input_ids"] + [tok.eos_token_id]], 0, "right")
    got = rm.scores(p, pm, r, rmask)
    ids = torch.tensor([other(prompt_text)["input_ids"] + other(response_text)["input_ids"] + [other.eos_token_id]])
    with torch.no_grad():
        want = rm.scorer(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None])[0, -1]
    torch.testing.assert_close(got[0], want)
