"""Offline memory estimate for ``--dry-run`` (no download).

Parameter counts come from a table of the paper's architectures (hidden size, layers, MLP width,
vocabulary, key/value width, gated MLP, tied embeddings), from a local ``config.json`` when the model
is a directory, or from building a ``tiny:`` model. The estimate counts weights, gradients and AdamW
moments of trainable parameters (fp32 master moments), the frozen reference (a copy unless LoRA),
reward and value models, and a rough activation term; it is a planning number, not a measurement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import Config


@dataclass(frozen=True)
class Arch:
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    kv_dim: int
    gated: bool
    tied: bool


ARCHS = {
    # Biderman et al. (2023), Table 1 / model cards; vocab padded to 50304.
    "EleutherAI/pythia-1.4b-deduped": Arch(2048, 24, 8192, 50304, 2048, False, False),
    "EleutherAI/pythia-2.8b-deduped": Arch(2560, 32, 10240, 50304, 2560, False, False),
    "EleutherAI/pythia-1b-deduped": Arch(2048, 16, 8192, 50304, 2048, False, False),
    "EleutherAI/pythia-410m-deduped": Arch(1024, 24, 4096, 50304, 1024, False, False),
    # Llama-3-8B: 32 layers, hidden 4096, MLP 14336, 8 KV heads x 128.
    "meta-llama/Meta-Llama-3-8B-Instruct": Arch(4096, 32, 14336, 128256, 1024, True, False),
    # Eurus-RM-7b is Mistral-7B based: 32 layers, hidden 4096, MLP 14336, 8 KV heads, vocab 32000.
    "openbmb/Eurus-RM-7b": Arch(4096, 32, 14336, 32000, 1024, True, False),
}

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def param_count(arch: Arch, lm_head: bool = True) -> int:
    attn = arch.hidden * (arch.hidden + 2 * arch.kv_dim) + arch.hidden * arch.hidden
    mlp = (3 if arch.gated else 2) * arch.hidden * arch.intermediate
    per_layer = attn + mlp + 4 * arch.hidden
    emb = arch.vocab * arch.hidden
    head = 0 if (arch.tied or not lm_head) else arch.vocab * arch.hidden
    return emb + arch.layers * per_layer + head + 2 * arch.hidden


def lora_count(arch: Arch, r: int) -> int:
    """Adapters on every linear layer of the blocks (peft ``all-linear``)."""
    hidden, kv = arch.hidden, arch.kv_dim
    shapes = [(hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden)]
    shapes += [(arch.hidden, arch.intermediate)] * (2 if arch.gated else 1) + [(arch.intermediate, arch.hidden)]
    return arch.layers * sum(r * (i + o) for i, o in shapes)


def _arch_of(name: str | None) -> Arch | None:
    if not name:
        return None
    if name in ARCHS:
        return ARCHS[name]
    if name.startswith("tiny:"):
        from .tiny import tiny_model_config

        c = tiny_model_config(name.split(":", 1)[1])
        return Arch(c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size,
                    c.hidden_size * getattr(c, "num_key_value_heads", c.num_attention_heads) // c.num_attention_heads,
                    name.endswith("llama"), False)
    cfg_file = Path(name) / "config.json"
    if cfg_file.is_file():
        c = json.loads(cfg_file.read_text())
        heads = c.get("num_attention_heads", 1)
        kv = c.get("num_key_value_heads", heads)
        return Arch(c["hidden_size"], c["num_hidden_layers"], c.get("intermediate_size", 4 * c["hidden_size"]),
                    c["vocab_size"], c["hidden_size"] * kv // heads, c.get("model_type") in ("llama", "mistral"),
                    bool(c.get("tie_word_embeddings", False)))
    meta = Path(name) / "finitepref_model.json"
    if meta.is_file():
        return _arch_of(json.loads(meta.read_text()).get("base"))
    return None


def estimate(cfg: Config, num_processes: int = 1) -> dict:
    """Per-process memory estimate (GiB) without ZeRO sharding; ``None`` fields are unknown."""
    arch = _arch_of(cfg.model.name) or _arch_of(cfg.model.family)
    out: dict = {"policy_params": None, "trainable_params": None, "total_gib": None}
    if arch is None:
        out["note"] = f"unknown architecture {cfg.model.name!r}: add it to finitepref.llm.memory.ARCHS"
        return out
    wb = BYTES[cfg.model.dtype]
    n = param_count(arch)
    record = cfg.algorithm.record
    train_n = lora_count(arch, cfg.lora.r) if (cfg.lora.enabled and record.adapters) else n
    gib = 1024**3
    parts = {
        "policy_weights": (n + (train_n if train_n != n else 0)) * wb / gib,
        "gradients": train_n * wb / gib,
        "adam_states": train_n * 8 / gib,
    }
    if record.needs_reference and not cfg.lora.enabled:
        parts["reference_weights"] = n * wb / gib
    if record.needs_reward_model:
        ra = _arch_of(cfg.reward.model) or _arch_of(cfg.model.family) or arch
        rn = param_count(ra, lm_head=False)
        parts["reward_model_weights"] = rn * BYTES[cfg.reward.dtype] / gib
        if record.needs_value_head:
            parts["value_model_weights+grads+adam"] = rn * (2 * BYTES[cfg.reward.dtype] + 8) / gib
    seq = cfg.data.max_prompt_length + max(cfg.generation.max_new_tokens, cfg.data.max_response_length)
    rows = cfg.train.micro_batch_size * record.rows_per_example
    act_layers = 1 if cfg.model.gradient_checkpointing else arch.layers
    parts["activations(rough)"] = rows * seq * (arch.hidden * 16 * act_layers + 2 * arch.vocab) * wb / gib
    out.update(policy_params=n, trainable_params=train_n, parts_gib={k: round(v, 2) for k, v in parts.items()},
               total_gib=round(sum(parts.values()), 2), num_processes=num_processes,
               note="per process, without ZeRO/FSDP sharding of gradients and optimiser states")
    return out
