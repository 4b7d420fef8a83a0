"""Issue 12: the trainer follows the paper and the reference code (each test failed before its fix)."""

import json

import pytest
import torch

from finitepref.llm.algorithms import kl_penalty_surrogate
from finitepref.llm.batches import OnlinePairBatch
from finitepref.llm.logprobs import enumerate_logprobs
from finitepref.llm.registry import REGISTRY
from finitepref.llm.run import Models
from finitepref.llm.tiny import tiny_model
from finitepref.losses import rebel_loss


def _online_pair(n: int = 3, length: int = 4, seed: int = 0) -> OnlinePairBatch:
    g = torch.Generator().manual_seed(seed)
    ids = lambda: torch.randint(3, 20, (n, length), generator=g)  # noqa: E731
    ones = torch.ones(n, length, dtype=torch.long)
    vec = lambda: torch.randn(n, generator=g)  # noqa: E731
    return OnlinePairBatch(ids(), ones, ids(), ones, ids(), ones, vec(), vec(), vec(), vec(), vec(), vec(),
                           temperature=1.0)


# --------------------------------------------------------------------------- D6


def test_rebel_reference_anchor_is_eq10_exactly():
    """``rebel_anchor: reference`` regresses log(pi/pi_0) differences on the plain scores (eq. 10)."""
    model = tiny_model("tiny:gpt-neox", seed=0)
    batch = _online_pair()
    record = REGISTRY["rebel"]
    settings = record.settings(beta=0.5, eta=1.0, rebel_anchor="reference")
    loss, _ = record.loss(Models(policy=model, tokenizer=None), batch, settings)
    from finitepref.llm.algorithms import online_pair_logprobs

    logp1, logp2 = online_pair_logprobs(model, batch)
    want = rebel_loss(logp1, logp2, batch.ref1, batch.ref2, batch.score1, batch.score2, 1.0).mean()
    torch.testing.assert_close(loss, want)


# --------------------------------------------------------------------------- D7

PROMPT, ALLOWED, LENGTH = [[6, 7, 8]], [3, 4, 5, 10], 2


@pytest.mark.parametrize("baseline", ["leave_one_out", "none"])
def test_distill_kl_gradient_is_unbiased_off_policy(baseline):
    """Samples from pi_t != pi_theta (after the first update of a rollout): the expectation of the
    score-function surrogate's gradient equals the exact gradient of beta * KL(pi_theta || pi_0)."""
    beta = 0.3
    theta = tiny_model("tiny:llama", seed=0).double()
    with torch.no_grad():
        sampler = enumerate_logprobs(tiny_model("tiny:llama", seed=1).double(), PROMPT, LENGTH, ALLOWED,
                                     restrict=True)[0][0]
        ref = enumerate_logprobs(tiny_model("tiny:llama", seed=2).double(), PROMPT, LENGTH, ALLOWED,
                                 restrict=True)[0][0]
    logp = enumerate_logprobs(theta, PROMPT, LENGTH, ALLOWED, restrict=True)[0][0]
    params = [p for p in theta.parameters() if p.requires_grad]
    exact = beta * (logp.exp() * (logp - ref)).sum()
    g_exact = torch.autograd.grad(exact, params, retain_graph=True, allow_unused=True)
    n = logp.shape[0]
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)
    weight = (sampler[i] + sampler[j]).exp()  # P(a1 = i, a2 = j) under pi_t
    pairs = torch.stack([i, j], 1).reshape(-1)
    expected = 0
    for k in range(n * n):  # one prompt, two samples: the surrogate of each (a1, a2), weighted
        rows = pairs[2 * k:2 * k + 2]
        sur, _ = kl_penalty_surrogate(logp[rows], ref[rows], beta, 2, baseline, old_logp=sampler[rows])
        expected = expected + weight[k] * sur
    g_est = torch.autograd.grad(expected, params, allow_unused=True)
    for a, b in zip(g_est, g_exact, strict=True):
        if a is None or b is None:
            continue
        # transformers' RMSNorm / rotary embeddings compute in float32 inside the float64 model
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * float(b.abs().max()) + 1e-12)


def test_distill_loss_uses_the_sampler_logprobs():
    """The batch loss passes pi_t's log-probs (``old*``) to the importance weight."""
    model = tiny_model("tiny:gpt-neox", seed=0)
    batch = _online_pair()
    record = REGISTRY["distill"]
    settings = record.settings(beta=0.5, gamma=0.1)
    from dataclasses import replace

    g = []
    for old in (batch.old1, batch.old1 + 1.0):
        model.zero_grad()
        loss, _ = record.loss(Models(policy=model, tokenizer=None), replace(batch, old1=old), settings)
        loss.backward()
        g.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert not torch.allclose(g[0], g[1])


# --------------------------------------------------------------------------- D4


def test_reward_scale_before_the_missing_eos_penalty(tok):
    from finitepref.llm.config import RewardConfig
    from finitepref.llm.models import RewardModel

    cfg = RewardConfig(model="tiny:gpt-neox", missing_eos_penalty=-4.0, scale=1e-3)
    net = tiny_model("tiny:gpt-neox", "seq_cls", seed=0)
    rm = RewardModel(net, tok, cfg, tok, bias=0.25)
    prompt = torch.tensor([[5, 6], [5, 7]])
    response = torch.tensor([[8, 1], [8, 9]])  # row 0 ends in EOS (id 1), row 1 has none
    ones = torch.ones_like(prompt)
    raw = rm.raw_scores(prompt, ones, response, ones)
    got = rm.scores(prompt, ones, response, ones)
    torch.testing.assert_close(got[0], (raw[0] - 0.25) * 1e-3)
    assert float(got[1]) == -4.0


def test_ultrafeedback_configs_scale_eurus_scores():
    from finitepref.llm.config import load_config

    for name in ("distill", "rebel"):
        cfg = load_config(f"ultrafeedback/llama-3-8b/{name}")
        assert cfg.reward.scale == 1e-3 and cfg.reward.missing_eos_penalty == -4.0


# --------------------------------------------------------------------------- D8


def test_ppo_critic_starts_with_the_reward_normalisation(tmp_path, tok, make_cfg):
    from finitepref.llm.logprobs import concat
    from finitepref.llm.run import build_models

    rm_dir = tmp_path / "rm"
    tiny_model("tiny:gpt-neox", "seq_cls", seed=0).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    (rm_dir / "reward_normalization.json").write_text(json.dumps({"mean_reference_score": 2.5}))
    cfg = make_cfg("tiny/rlhf", tmp_path / "out", f"reward.model={rm_dir}")
    models = build_models(cfg, cfg.algorithm.record, torch.device("cpu"))
    assert models.reward_model.bias == 2.5
    p, r = torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9, 1]])
    ids, mask, pos, _, _ = concat(p, torch.ones_like(p), r, torch.ones_like(r))
    with torch.no_grad():
        values = models.critic(ids, mask, pos)
        raw = models.reward_model.scorer(ids, mask, pos)
    torch.testing.assert_close(values, raw - 2.5)
    assert not any("bias" == n for n, _ in models.critic.named_parameters())


# --------------------------------------------------------------------------- D1, D3, D10


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tiny_text_files(tmp_path):
    from finitepref.llm.tiny import tiny_rows

    pref = _write_jsonl(tmp_path / "pref.jsonl", tiny_rows("tiny_preference", 16, seed=0))
    sft = _write_jsonl(tmp_path / "sft_test.jsonl", tiny_rows("tiny_sft", 40, seed=1))
    return pref, sft


def test_dpo_run_is_evaluated_on_the_sft_prompts_and_reference_summaries(tmp_path, make_cfg):
    """A preference-trained run (no reference summaries in its data) is evaluated on the SFT set."""
    from finitepref.llm.evaluate import evaluate

    pref, sft = _tiny_text_files(tmp_path)
    cfg = make_cfg("tiny/dpo", tmp_path / "e", f"data.source={pref}", "data.schema=tldr_preference",
                   f"eval.source={sft}", "eval.schema=tldr_sft", "eval.num_samples=12", "eval.batch_size=6")
    s = evaluate(cfg, "tiny:gpt-neox", "tiny:gpt-neox", judge="reward-model", out_csv=str(tmp_path / "e.csv"))
    import pandas as pd

    rows = pd.read_csv(tmp_path / "e_samples.csv")
    assert rows["reference_rm_score"].notna().all() and (rows["reference_response"].str.len() > 0).all()
    assert set(rows["win"]) != {0.5}
    assert s["eval_source"] == str(sft) and s["temperature"] == 0.01


@pytest.mark.parametrize("algo", [name for name, r in REGISTRY.items() if not r.trains_reward_model])
def test_every_policy_algorithm_gets_a_table2_row(algo, tmp_path, make_cfg):
    """Train one update, then evaluate the run with its own config.yaml (as the CLI does)."""
    import pandas as pd

    from finitepref.llm.config import load_config
    from finitepref.llm.evaluate import evaluate
    from finitepref.llm.train import train

    train(make_cfg(f"tiny/{algo}", tmp_path / "run", "train.max_steps=1"))
    cfg = load_config(str(tmp_path / "run" / "config.yaml"), ["eval.num_samples=6", "eval.batch_size=6"])
    s = evaluate(cfg, str(tmp_path / "run"), "tiny:gpt-neox", judge="reward-model")
    rows = pd.read_csv(tmp_path / "run" / "eval_samples.csv")
    assert s["n"] == 6 and rows["reference_rm_score"].notna().all() and set(rows["win"]) != {0.5}
    assert s["temperature"] == 0.01 and pd.read_csv(tmp_path / "run" / "eval.csv")["temperature"][0] == 0.01


def test_eval_prompts_are_a_seeded_random_sample(tmp_path, make_cfg):
    from finitepref.llm.evaluate import eval_records

    _, sft = _tiny_text_files(tmp_path)
    picks = []
    for seed in (0, 0, 1):
        cfg = make_cfg("tiny/dpo", tmp_path / "e", f"eval.source={sft}", "eval.schema=tldr_sft",
                       "eval.num_samples=10", f"eval.seed={seed}")
        picks.append([r["row"] for r in eval_records(cfg)[0].rows])
    assert picks[0] == picks[1] != picks[2]
    assert picks[0] != list(range(10)) and picks[0] == sorted(picks[0]) and len(set(picks[0])) == 10


def test_judge_prompt_is_a_template_file_and_answers_parse_strictly(tmp_path):
    from finitepref.llm.evaluate import OpenAIJudge, load_judge_prompt, parse_verdict

    text = load_judge_prompt("tldr")
    assert all(k in text for k in ("{post}", "{a}", "{b}")) and "A or B" in text
    assert [parse_verdict(t) for t in ("A", " B\n", "B.", "Preferred: A", "A or B", "a", "")] == \
        ["A", "B", "B", None, None, None, None]
    custom = tmp_path / "mine.txt"
    custom.write_text("POST {post} FIRST {a} SECOND {b}")
    seen = []

    def transport(url, headers, body):
        seen.append(json.loads(body)["messages"][0]["content"])
        return {"choices": [{"message": {"content": "A"}}]}

    OpenAIJudge(transport=transport, prompt=load_judge_prompt(str(custom)))(["p"], ["x"], ["y"])
    assert seen[0].startswith("POST p FIRST")


# --------------------------------------------------------------------------- D2


@pytest.mark.parametrize("size", ["1.4b", "2.8b"])
def test_table5_temperatures(size):
    from finitepref.llm.config import load_config

    for algo in ("dpo", "pmle", "distill", "rebel", "rlhf", "reverse_kl"):
        cfg = load_config(f"tldr/pythia-{size}/{algo}")
        assert cfg.eval.temperature == 0.01, algo  # one evaluation temperature for every row
        if algo != "dpo":  # DPO samples nothing while training
            assert cfg.generation.temperature == (1.0 if algo == "pmle" else 0.7), algo


def test_pmle_kl_samples_at_the_training_temperature(tmp_path, make_cfg, monkeypatch):
    from finitepref.llm import models
    from finitepref.llm.train import train

    seen = []
    original = models.Sampler.sample

    def spy(self, model, ids, mask, temperature=None, seeds=None):
        seen.append(temperature)
        return original(self, model, ids, mask, temperature, seeds)

    monkeypatch.setattr(models.Sampler, "sample", spy)
    train(make_cfg("tiny/pmle", tmp_path / "p", "generation.temperature=1.0", "train.max_steps=1"))
    assert seen and set(seen) == {1.0}


# --------------------------------------------------------------------------- D9


def test_sampling_is_seeded_per_example(tok):
    from finitepref.llm.config import GenerationConfig
    from finitepref.llm.data import pad
    from finitepref.llm.models import Sampler, example_seed

    model = tiny_model("tiny:gpt-neox", seed=0)
    sampler = Sampler(GenerationConfig(max_new_tokens=6, min_new_tokens=6, temperature=1.0), tok)
    prompts = [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14]]
    seeds = [example_seed(1, 0, i) for i in range(4)]
    ids, mask = pad(prompts, 0, "left")
    whole = sampler.sample(model, ids, mask, seeds=seeds)[0]
    parts = []
    for rows in ([0, 1], [2, 3]):
        ids, mask = pad([prompts[i] for i in rows], 0, "left")
        parts.append(sampler.sample(model, ids, mask, seeds=[seeds[i] for i in rows])[0])
    assert torch.equal(whole, torch.cat(parts))
    ids, mask = pad(prompts, 0, "left")
    other = sampler.sample(model, ids, mask, seeds=[s + 1 for s in seeds])[0]
    assert not torch.equal(whole, other)


def test_gumbel_sampling_has_the_tempered_law():
    from finitepref.llm.models import SeededGumbel

    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    n = 4000
    proc = SeededGumbel(list(range(n)), temperature=0.7)
    draws = proc(None, logits.expand(n, -1)).argmax(-1)
    freq = torch.bincount(draws, minlength=4).double() / n
    torch.testing.assert_close(freq, torch.softmax(logits[0].double() / 0.7, -1), atol=0.03, rtol=0)


# --------------------------------------------------------------------------- D5


def _mistral_like_tokenizer():
    """A word-level tokenizer with Mistral's special tokens (<s> BOS, </s> EOS, <unk>), built in code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from finitepref.llm.tiny import WORDS

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.pad_token = fast.unk_token
    return fast


def test_eurus_input_format(tok):
    from finitepref.llm.config import RewardConfig
    from finitepref.llm.data import pad
    from finitepref.llm.models import RewardModel

    rt = _mistral_like_tokenizer()
    cfg = RewardConfig(model="tiny:llama", kind="remote_code", input_format="eurus")
    rm = RewardModel(tiny_model("tiny:llama", "seq_cls", seed=0, vocab_size=len(rt)), rt, cfg, tok)
    p_ids, p_mask = pad([tok("the cat sat")["input_ids"]], 0, "left")
    r_ids, r_mask = pad([tok("a dog ran")["input_ids"] + [tok.eos_token_id]], 0, "right")
    ids, mask = rm.eurus_inputs(p_ids, p_mask, r_ids, r_mask, ["the cat sat on my mat"])
    real = ids[0][mask[0].bool()].tolist()
    assert real[0] == rt.bos_token_id and rt.eos_token_id not in real
    assert rt.decode(real[1:]) == "[INST] the cat sat on my mat [/INST] a dog ran"
    ids, mask = rm.eurus_inputs(p_ids, p_mask, r_ids, r_mask)  # no raw text: the decoded policy prompt
    assert rt.decode(ids[0][mask[0].bool()].tolist()[1:]) == "[INST] the cat sat [/INST] a dog ran"


def test_ultrafeedback_configs_use_the_eurus_format():
    from finitepref.llm.config import load_config

    assert load_config("ultrafeedback/llama-3-8b/distill").reward.input_format == "eurus"


def test_eurus_format_scores_at_the_last_attended_token(tok):
    from finitepref.llm.config import RewardConfig
    from finitepref.llm.data import pad
    from finitepref.llm.models import RewardModel

    rt = _mistral_like_tokenizer()
    cfg = RewardConfig(model="tiny:llama", input_format="eurus", missing_eos_penalty=None)
    rm = RewardModel(tiny_model("tiny:llama", "seq_cls", seed=0, vocab_size=len(rt)), rt, cfg, tok)
    p_ids, p_mask = pad([tok("the cat")["input_ids"], tok("a dog sat on the mat")["input_ids"]], 0, "left")
    r_ids, r_mask = pad([tok("big red dog")["input_ids"], tok("it")["input_ids"]], 0, "right")
    both = rm.scores(p_ids, p_mask, r_ids, r_mask)
    one = rm.scores(p_ids[1:], p_mask[1:], r_ids[1:], r_mask[1:])
    torch.testing.assert_close(both[1:], one, rtol=1e-5, atol=1e-6)  # padding does not move the readout


# --------------------------------------------------------------------------- item 11


def test_table5_lora_targets_and_adapter_counts():
    from finitepref.llm.config import load_config
    from finitepref.llm.memory import ARCHS, lora_count

    assert load_config("tldr/pythia-1.4b/distill").lora.target_modules == ["query_key_value"]
    arch = ARCHS["EleutherAI/pythia-1.4b-deduped"]
    assert lora_count(arch, 1024, ["query_key_value"]) == pytest.approx(201.3e6, rel=1e-3)
    assert lora_count(arch, 1024, ["all-linear"]) == pytest.approx(805.3e6, rel=1e-3)


def test_dry_run_reports_each_sharding_for_pythia_2p8b_ppo(capsys):
    from finitepref.llm.__main__ import main
    from finitepref.llm.config import load_config
    from finitepref.llm.memory import sharding_table

    table = sharding_table(load_config("tldr/pythia-2.8b/rlhf"))
    assert set(table["per_gpu_gib"]) == {"ddp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "fsdp.yaml"}
    assert table["per_gpu_gib"]["fsdp.yaml"] < table["per_gpu_gib"]["ddp.yaml"]
    assert "fsdp.yaml" in table["fits"] and "DeepSpeed configs unusable" in table["verdict"]
    assert main(["train", "--config", "tldr/pythia-2.8b/rlhf", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "per-GPU memory by sharding" in out and '"verdict"' in out


# --------------------------------------------------------------------------- item 12


def test_unfrozen_layers_share_the_frozen_trunk_with_the_reference(tmp_path, make_cfg):
    from accelerate import Accelerator

    from finitepref.llm.run import build_run

    cfg = make_cfg("tiny/distill", tmp_path / "u", "model.unfrozen_layers=1", "train.adam_betas=[0.9, 0.95]")
    run = build_run(cfg, Accelerator(cpu=True))
    policy, reference = run.accelerator.unwrap_model(run.models.policy), run.models.reference
    trained = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("gpt_neox.layers.1.", "gpt_neox.final_layer_norm", "lm_head", "embed_out"))
                           for n in trained)
    assert policy.gpt_neox.embed_in.weight is reference.gpt_neox.embed_in.weight
    assert policy.gpt_neox.layers[0] is reference.gpt_neox.layers[0]
    assert policy.gpt_neox.layers[1] is not reference.gpt_neox.layers[1]
    assert not any(p.requires_grad for p in reference.parameters())
    assert run.optimizer.param_groups[0]["betas"] == (0.9, 0.95)


def test_ultrafeedback_configs_follow_the_reference_optimiser():
    from finitepref.llm.config import load_config
    from finitepref.llm.memory import sharding_table

    cfg = load_config("ultrafeedback/llama-3-8b/rebel")
    assert cfg.model.unfrozen_layers == 4 and cfg.train.adam_betas == [0.9, 0.95]
    assert (cfg.train.adam_eps, cfg.train.weight_decay) == (1e-8, 1e-6)
    assert "verdict" in sharding_table(cfg)


# --------------------------------------------------------------------------- issue 15, item 4


@pytest.mark.parametrize("algo", ["distill", "rlhf", "pmle"])
def test_generation_and_scoring_micro_batches_do_not_change_the_run(algo, tmp_path, make_cfg):
    from safetensors.torch import load_file

    from finitepref.llm.train import train

    train(make_cfg(f"tiny/{algo}", tmp_path / "a", "train.max_steps=2"))
    train(make_cfg(f"tiny/{algo}", tmp_path / "b", "train.max_steps=2", "generation.batch_size=3",
                   "reward.batch_size=2"))
    a, b = (load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in ("a", "b"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)


def test_pair_logprobs_in_one_forward_equal_two_forwards():
    from finitepref.llm.algorithms import pair_logprobs
    from finitepref.llm.batches import PairBatch
    from finitepref.llm.data import pad
    from finitepref.llm.logprobs import sequence_logprobs

    model = tiny_model("tiny:gpt-neox", seed=0)
    p_ids, p_mask = pad([[5, 6, 7], [8]], 0, "left")
    c_ids, c_mask = pad([[9, 10, 1], [11, 1]], 0, "right")
    r_ids, r_mask = pad([[12, 1], [13, 14, 15, 16, 1]], 0, "right")
    batch = PairBatch(p_ids, p_mask, c_ids, c_mask, r_ids, r_mask)
    plus, minus = pair_logprobs(model, batch)
    torch.testing.assert_close(plus, sequence_logprobs(model, p_ids, p_mask, c_ids, c_mask)["logp"])
    torch.testing.assert_close(minus, sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask)["logp"])


def test_output_layer_runs_on_response_positions_only():
    from finitepref.llm.logprobs import sequence_logprobs

    model = tiny_model("tiny:gpt-neox", seed=0)
    shapes = []
    model.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.logits.shape)))
    prompt, response = torch.randint(3, 20, (2, 11)), torch.randint(3, 20, (2, 4))
    sequence_logprobs(model, prompt, torch.ones_like(prompt), response, torch.ones_like(response))
    assert shapes == [(2, 5, model.config.vocab_size)]  # response length + 1, not 15 positions


@pytest.mark.parametrize("algo", ["dpo", "ipo", "chipo"])
def test_reference_logprobs_once_per_batch(algo, tmp_path, make_cfg):
    from accelerate import Accelerator

    from finitepref.llm.run import build_run
    from finitepref.llm.steps import STEPS, input_batch

    run = build_run(make_cfg(f"tiny/{algo}", tmp_path / "r"), Accelerator(cpu=True))
    calls = []
    run.models.reference.register_forward_hook(lambda module, args, out: calls.append(1))
    rows = run.order.rows(0, run.cfg.train.batch_size)
    run.rows, run.positions = rows, list(range(len(rows)))
    STEPS[run.record.loop](run, input_batch(run, run.data.batch(rows)))
    assert run.n_micro == 2 and len(calls) == 1  # one forward of every chosen and rejected response


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_chunked_log_softmax_equals_the_whole(chunk, monkeypatch):
    from finitepref.llm import logprobs

    model = tiny_model("tiny:gpt-neox", seed=0)
    prompt, response = torch.randint(3, 20, (3, 7)), torch.randint(3, 20, (3, 5))
    ones_p, ones_r = torch.ones_like(prompt), torch.ones_like(response)

    def run():
        model.zero_grad()
        out = logprobs.sequence_logprobs(model, prompt, ones_p, response, ones_r, 0.7, with_entropy=True)
        (out["logp"].sum() + out["entropy"].sum()).backward()
        return out, [p.grad.clone() for p in model.parameters()]

    whole, g_whole = run()
    monkeypatch.setattr(logprobs, "LOGPROB_CHUNK", chunk)
    parts, g_parts = run()
    for key in ("token_logp", "logp", "entropy"):
        torch.testing.assert_close(parts[key], whole[key], rtol=1e-6, atol=1e-6)
    for a, b in zip(g_parts, g_whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
