"""Loading policies, references, reward and value models; sampling; reward scoring.

* Policy: any ``AutoModelForCausalLM`` (hub id, a directory written by a previous stage, or a
  ``tiny:`` in-code model), optionally wrapped with LoRA adapters (peft).
* Reference pi_0: with LoRA, the same model with adapters disabled (:func:`reference_logprobs`);
  otherwise a frozen copy.
* Reward model: a scalar head read at the last non-pad token (found from the attention mask, so
  pad == EOS tokenizers such as Pythia's are handled), or a remote-code model (Eurus-RM-7b) whose
  forward returns the reward. If its tokenizer differs from the policy's, texts are decoded and
  re-encoded.
* Generation behind one interface (:class:`Sampler`): HF ``generate`` by default, vLLM on request.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import torch

from .config import Config, GenerationConfig, LoraConfig, RewardConfig
from .logprobs import concat, sequence_logprobs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
META = "finitepref_model.json"


def _is_tiny(name: str | None) -> bool:
    return bool(name) and name.startswith("tiny:")


def load_tokenizer(name: str | None):
    """Tokenizer by id or path (``tiny`` / ``tiny:*`` for the in-code one); a missing pad token
    is set to EOS (masks, not pad ids, mark padding everywhere in this package)."""
    if name is None or name == "tiny" or _is_tiny(name):
        from .tiny import tiny_tokenizer

        return tiny_tokenizer()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _read_meta(path: str) -> dict:
    p = Path(path) / META
    return json.loads(p.read_text()) if p.is_file() else {}


def load_causal_lm(name: str, dtype: str = "float32", revision: str | None = None,
                   trust_remote_code: bool = False, attn_implementation: str | None = None):
    """A causal LM; a directory holding LoRA adapters (written by this trainer) is loaded as base +
    adapters merged into the weights."""
    meta = _read_meta(name) if Path(name).is_dir() else {}
    if meta.get("adapters"):
        from peft import PeftModel

        base = load_causal_lm(meta["base"], dtype, None, trust_remote_code, attn_implementation)
        return PeftModel.from_pretrained(base, name).merge_and_unload()
    if _is_tiny(name):
        from .tiny import tiny_model

        return tiny_model(name, "causal_lm", seed=0).to(DTYPES[dtype])
    from transformers import AutoModelForCausalLM

    kw = dict(dtype=DTYPES[dtype], revision=revision, trust_remote_code=trust_remote_code)
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    return AutoModelForCausalLM.from_pretrained(name, **kw)


def add_lora(model, cfg: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    pcfg = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias=cfg.bias,
        target_modules="all-linear" if cfg.target_modules in (None, ["all-linear"]) else cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, pcfg)


def load_policy(cfg: Config):
    """(policy, reference or None, tokenizer). With LoRA the reference is None: use
    :func:`reference_logprobs`, which disables the adapters."""
    m = cfg.model
    tok = load_tokenizer(m.tokenizer or (m.name if not _is_tiny(m.name) else "tiny"))
    policy = load_causal_lm(m.name, m.dtype, m.revision, m.trust_remote_code, m.attn_implementation)
    if m.gradient_checkpointing:
        kw = {"use_reentrant": False}
        if hasattr(policy, "activation_checkpointing_enable"):  # transformers >= 5.x name
            policy.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    reference, frozen = None, []
    if m.unfrozen_layers and not cfg.lora.enabled:
        frozen = freeze_lower_layers(policy, m.unfrozen_layers)
    if cfg.lora.enabled:
        policy = add_lora(policy, cfg.lora)
    elif cfg.algorithm.record.needs_reference:
        reference = shared_copy(policy, frozen).eval().requires_grad_(False)
    return policy, reference, tok


def decoder_layers(model) -> torch.nn.ModuleList:
    """The model's list of decoder blocks (the ModuleList as long as ``config.num_hidden_layers``)."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"{type(model).__name__}: no list of {n} decoder layers found")


def freeze_lower_layers(model, unfrozen: int) -> list:
    """Freeze the input embeddings and all decoder blocks but the top ``unfrozen`` (the final norm
    and an untied output layer stay trainable, as in Gao et al.'s ``freeze_bottom_causal_layers``);
    returns the frozen modules."""
    layers = decoder_layers(model)
    if not 1 <= unfrozen <= len(layers):
        raise ValueError(f"model.unfrozen_layers={unfrozen} must be in [1, {len(layers)}]")
    frozen = [model.get_input_embeddings(), *layers[:len(layers) - unfrozen]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def shared_copy(model, shared: list):
    """A deep copy of ``model`` that shares the modules ``shared`` (and their tensors) with it: pi_0
    as a copy of the trained top only, on the same frozen trunk (no second copy of the frozen part)."""
    memo = {}
    for module in shared:
        for sub in module.modules():
            memo[id(sub)] = sub
        for tensor in [*module.parameters(), *module.buffers()]:
            memo[id(tensor)] = tensor
    return copy.deepcopy(model, memo)


@contextlib.contextmanager
def adapters_disabled(model):
    """Run ``model`` as pi_0: a peft model with adapters disabled, anything else unchanged."""
    inner = getattr(model, "module", model)  # DDP wrapper
    if hasattr(inner, "disable_adapter"):
        with inner.disable_adapter():
            yield inner
    else:
        yield model


@contextlib.contextmanager
def reference_of(policy, reference):
    """pi_0 under ``no_grad``: the frozen copy, or (``reference`` None) the policy with adapters disabled."""
    with torch.no_grad():
        if reference is not None:
            yield reference
        else:
            with adapters_disabled(policy) as ref:
                yield ref


def reference_logprobs(policy, reference, batch_p, batch_pm, resp, resp_m, temperature: float) -> dict:
    """Log-probs under pi_0 (:func:`reference_of`)."""
    with reference_of(policy, reference) as ref:
        return sequence_logprobs(ref, batch_p, batch_pm, resp, resp_m, temperature)


# --------------------------------------------------------------------------- reward / value


class RewardModel:
    """R-hat(x, a) as a callable on token tensors of the *policy* tokenizer.

    ``scores(prompt_ids, prompt_mask, response_ids, response_mask)`` returns (B,) rewards:
    the head is read at the last real token; responses without EOS get ``missing_eos_penalty``;
    ``bias`` (the mean score of reference responses, when normalising) is subtracted.
    """

    def __init__(self, model, tokenizer, cfg: RewardConfig, policy_tokenizer, bias: float = 0.0):
        self.model = model
        self.scorer = TokenScorer(model) if cfg.kind == "sequence_classification" else None
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.policy_tokenizer = policy_tokenizer
        self.bias = bias
        self.same_tokenizer = tokenizer.get_vocab() == policy_tokenizer.get_vocab()

    def _retokenize(self, prompt_ids, prompt_mask, response_ids, response_mask):
        pt, rt = self.policy_tokenizer, self.tokenizer
        from .data import pad

        ps, rs = [], []
        for i in range(prompt_ids.shape[0]):
            p_text = pt.decode(prompt_ids[i][prompt_mask[i].bool()], skip_special_tokens=True)
            r_text = pt.decode(response_ids[i][response_mask[i].bool()], skip_special_tokens=True)
            ps.append(rt(p_text, add_special_tokens=False)["input_ids"] or [rt.eos_token_id])
            rs.append(rt(r_text, add_special_tokens=False)["input_ids"] + [rt.eos_token_id])
        pid, pm = pad(ps, rt.pad_token_id, "left")
        rid, rm = pad(rs, rt.pad_token_id, "right")
        return pid, pm, rid, rm

    def eurus_inputs(self, prompt_ids, prompt_mask, response_ids, response_mask, prompt_texts=None):
        """Right-padded ``(ids, mask)`` of ``<s>[INST] {prompt} [/INST] {response}`` in the reward
        tokenizer: BOS, no EOS (Eurus-RM-7b's model card; Gao et al. append no EOS either). The
        prompt is the raw text (``prompt_texts``) or, without it, the policy prompt decoded without
        special tokens; the response is decoded without special tokens (EOS and pad dropped)."""
        from .data import pad

        pt, rt = self.policy_tokenizer, self.tokenizer
        seqs = []
        for i in range(response_ids.shape[0]):
            prompt = (prompt_texts[i] if prompt_texts is not None
                      else pt.decode(prompt_ids[i][prompt_mask[i].bool()], skip_special_tokens=True))
            response = pt.decode(response_ids[i][response_mask[i].bool()], skip_special_tokens=True)
            ids = rt(f"[INST] {prompt.strip()} [/INST] {response.strip()}", add_special_tokens=False)["input_ids"]
            bos = [rt.bos_token_id] if rt.bos_token_id is not None else []
            seqs.append(bos + list(ids)[-(self.cfg.max_length - len(bos)):])
        return pad(seqs, rt.pad_token_id if rt.pad_token_id is not None else 0, "right")

    def raw_scores(self, prompt_ids, prompt_mask, response_ids, response_mask, prompt_texts=None) -> torch.Tensor:
        dev = next((self.scorer or self.model).parameters()).device
        if self.cfg.input_format == "eurus":
            ids, mask = (t.to(dev) for t in self.eurus_inputs(prompt_ids, prompt_mask, response_ids, response_mask,
                                                               prompt_texts))
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            return self._read(ids, mask, pos)
        if not self.same_tokenizer:
            prompt_ids, prompt_mask, response_ids, response_mask = self._retokenize(
                prompt_ids, prompt_mask, response_ids, response_mask)
        ids, mask, pos, _, _ = concat(prompt_ids.to(dev), prompt_mask.to(dev), response_ids.to(dev),
                                      response_mask.to(dev))
        return self._read(ids, mask, pos)

    def _read(self, ids, mask, pos) -> torch.Tensor:
        """The reward at the last attended position of each row."""
        if self.cfg.kind == "remote_code":
            out = self.model(input_ids=ids, attention_mask=mask)
            out = out if torch.is_tensor(out) else getattr(out, "logits", out[0])
            return out.reshape(-1).float()
        per_token = token_scores(self.scorer, ids, mask, pos)
        last = mask.shape[1] - 1 - mask.flip(-1).argmax(-1)
        return per_token.gather(-1, last.unsqueeze(-1)).squeeze(-1).float()

    @torch.no_grad()
    def scores(self, prompt_ids, prompt_mask, response_ids, response_mask, prompt_texts=None) -> torch.Tensor:
        """(raw - bias) * ``reward.scale``; then responses without EOS score ``missing_eos_penalty``
        (in the scaled units, as in Gao et al.'s code). ``prompt_texts``: the raw prompts, used by
        ``reward.input_format: eurus``."""
        raw = self.raw_scores(prompt_ids, prompt_mask, response_ids, response_mask, prompt_texts)
        r = (raw - self.bias) * self.cfg.scale
        pen = self.cfg.missing_eos_penalty
        if pen is not None:
            eos = self.policy_tokenizer.eos_token_id
            has_eos = ((response_ids == eos) & response_mask.bool()).any(-1).to(r.device)
            r = torch.where(has_eos, r, torch.full_like(r, pen))
        return r


class TokenScorer(torch.nn.Module):
    """Per-token scalar outputs of a sequence-classification model: its ``score`` head applied to
    every hidden state (the reward is read at the last real token; PPO's values at every token).
    A module of its own so that DDP / FSDP wrap it and gradients synchronise."""

    def __init__(self, net, bias: float = 0.0):
        super().__init__()
        self.net = net
        # subtracted at every token (not trained, not saved): PPO's value model starts from the reward
        # model *with* its normalisation, as ScalarModel.forward does in the reference code
        self.register_buffer("bias", torch.tensor(float(bias)), persistent=False)

    def forward(self, input_ids, attention_mask, position_ids):
        h = self.net.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                use_cache=False).last_hidden_state
        head = getattr(self.net, "score", None) or self.net.classifier
        out = head(h).squeeze(-1)
        return out - self.bias.to(out.dtype)  # exact when the bias is 0


def token_scores(scorer, ids, mask, pos) -> torch.Tensor:
    return scorer(input_ids=ids, attention_mask=mask, position_ids=pos)


def load_reward_backbone(cfg: RewardConfig, init_from: str | None = None):
    """A sequence-classification model with one output (for training or scoring)."""
    name = init_from or cfg.model
    if _is_tiny(name):
        from .tiny import tiny_model

        return tiny_model(name, "seq_cls", seed=cfg.seed).to(DTYPES[cfg.dtype])
    if cfg.kind == "remote_code" and not init_from:
        from transformers import AutoModel

        return AutoModel.from_pretrained(name, dtype=DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        name, num_labels=1, dtype=DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    return model


def load_reward_model(cfg: RewardConfig, policy_tokenizer) -> RewardModel:
    model = load_reward_backbone(cfg).eval().requires_grad_(False)
    tok_name = cfg.tokenizer or (cfg.model if not _is_tiny(cfg.model) else "tiny")
    tok = load_tokenizer(tok_name)
    bias = 0.0
    norm = Path(cfg.model) / "reward_normalization.json" if cfg.model else None
    if cfg.normalize and norm is not None and norm.is_file():
        bias = float(json.loads(norm.read_text())["mean_reference_score"])
    return RewardModel(model, tok, cfg, policy_tokenizer, bias)


# --------------------------------------------------------------------------- generation


def _pretrained(model):
    inner = getattr(model, "module", model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


@contextlib.contextmanager
def _eos_not_stopping(model, enabled: bool):
    gc = _pretrained(model).generation_config
    saved = gc.eos_token_id
    if enabled:
        gc.eos_token_id = None
    try:
        yield
    finally:
        gc.eos_token_id = saved


def postprocess(response_ids: torch.Tensor, eos_id: int, pad_id: int, truncate_after_eos: bool):
    """Mask of kept tokens: everything up to and including the first EOS; the rest becomes pad."""
    is_eos = response_ids == eos_id
    after = (is_eos.long().cumsum(-1) - is_eos.long()) > 0  # strictly after the first EOS
    mask = (~after).long() if truncate_after_eos else torch.ones_like(response_ids)
    ids = torch.where(mask.bool(), response_ids, torch.full_like(response_ids, pad_id))
    return ids, mask


_M64 = (1 << 64) - 1


def example_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (splitmix64 steps): the sampling stream of one example,
    e.g. ``(train.seed, iteration, global row position, sample index)``."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = ((h ^ (int(part) & _M64)) * 0xBF58476D1CE4E5B9) & _M64
        h = ((h ^ (h >> 31)) * 0x94D049BB133111EB) & _M64
        h ^= h >> 29
    return h & ((1 << 63) - 1)


class SeededGumbel:
    """A logits processor that samples each row from its own generator (Gumbel-max).

    Greedy decoding of ``logits / T`` (restricted by top-k / top-p) plus Gumbel noise drawn from a
    per-row :class:`torch.Generator` is an exact sample of the tempered distribution. The noise of
    a row depends only on its seed, so a response does not depend on which other rows share its
    batch, or on which process samples it.
    """

    def __init__(self, seeds: list[int], temperature: float, top_k: int = 0, top_p: float = 1.0):
        self.seeds, self.temperature, self.top_k, self.top_p = list(seeds), temperature, top_k, top_p
        self.generators = None

    def __call__(self, input_ids, scores):
        from transformers import TopKLogitsWarper, TopPLogitsWarper

        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        scores = scores.float() / self.temperature
        if self.top_k:
            scores = TopKLogitsWarper(self.top_k)(input_ids, scores)
        if self.top_p < 1.0:
            scores = TopPLogitsWarper(self.top_p)(input_ids, scores)
        u = torch.stack([torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators])
        u = u.clamp(min=torch.finfo(u.dtype).tiny, max=1.0 - torch.finfo(u.dtype).eps)
        return scores - torch.log(-torch.log(u))


class Sampler:
    """Sample responses: ``sample(model, prompt_ids, prompt_mask) -> (response_ids, response_mask)``.

    With ``disable_eos`` exactly ``max_new_tokens`` tokens are sampled (EOS may be sampled but does
    not stop the sampler), then everything after the first EOS is masked (Huang et al. 2024).
    With ``seeds`` (one per row, see :func:`example_seed`) each row is sampled from its own stream
    (:class:`SeededGumbel`); without, from torch's global generator.
    """

    def __init__(self, cfg: GenerationConfig, tokenizer):
        self.cfg = cfg
        self.tok = tokenizer
        self._vllm = None

    @torch.no_grad()
    def sample(self, model, prompt_ids, prompt_mask, temperature: float | None = None,
               seeds: list[int] | None = None):
        if self.cfg.backend == "vllm":
            return self._sample_vllm(model, prompt_ids, prompt_mask, temperature)
        from transformers import GenerationConfig as HFGen

        c = self.cfg
        temperature = temperature or c.temperature
        seeded = seeds is not None
        gen = HFGen(
            max_new_tokens=c.max_new_tokens, min_new_tokens=0 if c.disable_eos else c.min_new_tokens,
            do_sample=not seeded, temperature=1.0 if seeded else temperature, top_k=0 if seeded else c.top_k,
            top_p=1.0 if seeded else c.top_p, pad_token_id=self.tok.pad_token_id,
            eos_token_id=None if c.disable_eos else self.tok.eos_token_id,
        )
        extra = {"logits_processor": [SeededGumbel(seeds, temperature, c.top_k, c.top_p)]} if seeded else {}
        target = getattr(model, "module", model)
        was_training = target.training
        target.eval()
        with _eos_not_stopping(target, c.disable_eos):
            out = target.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=gen, **extra)
        target.train(was_training)
        resp = out[:, prompt_ids.shape[1]:]
        if resp.shape[1] < c.max_new_tokens and c.disable_eos:
            raise RuntimeError("generation stopped early although EOS was disabled")
        return postprocess(resp, self.tok.eos_token_id, self.tok.pad_token_id, c.truncate_after_eos)

    def _sample_vllm(self, model, prompt_ids, prompt_mask, temperature):
        try:
            import vllm  # noqa: F401
        except ImportError as e:
            raise ImportError("generation.backend=vllm needs the 'vllm' package") from e
        from .data import pad

        c = self.cfg
        if self._vllm is None:
            raise NotImplementedError(
                "vLLM sampling needs a vLLM engine holding the current policy weights; pass one with "
                "Sampler.attach_vllm(llm) (weights are synced by the caller)")
        params = vllm.SamplingParams(
            n=1, max_tokens=c.max_new_tokens, min_tokens=c.max_new_tokens if c.disable_eos else c.min_new_tokens,
            temperature=temperature or c.temperature, top_k=c.top_k if c.top_k > 0 else -1, top_p=c.top_p,
            ignore_eos=c.disable_eos)
        prompts = [{"prompt_token_ids": prompt_ids[i][prompt_mask[i].bool()].tolist()}
                   for i in range(prompt_ids.shape[0])]
        outs = self._vllm.generate(prompts, params, use_tqdm=False)
        seqs = [list(o.outputs[0].token_ids) for o in outs]
        ids, _ = pad(seqs, self.tok.pad_token_id, "right", length=c.max_new_tokens)
        return postprocess(ids.to(prompt_ids.device), self.tok.eos_token_id, self.tok.pad_token_id,
                           c.truncate_after_eos)

    def attach_vllm(self, llm) -> None:
        self._vllm = llm


def save_model(model, tokenizer, path: Path, meta: dict, state_dict: dict | None = None) -> None:
    """``save_pretrained`` (adapters only for a peft model) + tokenizer + a small metadata file."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, state_dict=state_dict)
    tokenizer.save_pretrained(path)
    (path / META).write_text(json.dumps(meta, indent=2))
