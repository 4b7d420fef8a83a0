"""Offline memory estimate for ``--dry-run`` (no download).

Parameter counts come from a table of the paper's architectures (hidden size, layers, MLP width,
vocabulary, key/value width, gated MLP, tied embeddings), from a local ``config.json`` when the model
is a directory, or from building a ``tiny:`` model. The estimate counts weights, gradients and AdamW
moments of trainable parameters (in the trained weights' dtype; LoRA adapters in float32), the frozen reference (a copy unless LoRA),
reward and value models, and a rough activation term; it is a planning number, not a measurement.
:func:`sharding_table` divides it per process under each shipped accelerate config, adding DDP's
gradient buckets and FSDP's largest unsharded unit, and :func:`cpu_run_phases` follows one process
through loading, ``prepare``, training and saving (checked on two CPU processes under FSDP by
``tests/llm/test_fsdp.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .logprobs import PACKED_ATTENTION
from .registry import Loop


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


def _linear_shapes(arch: Arch) -> dict[str, tuple[int, int]]:
    """(in, out) of each linear layer of a block, by module name (GPT-NeoX or LLaMA/Mistral)."""
    h, kv, inter = arch.hidden, arch.kv_dim, arch.intermediate
    if arch.gated:
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    return {"query_key_value": (h, h + 2 * kv), "dense": (h, h), "dense_h_to_4h": (h, inter),
            "dense_4h_to_h": (inter, h)}


def lora_count(arch: Arch, r: int, target_modules: list[str] | None = None) -> int:
    """Adapter parameters: r (in + out) per adapted linear layer of every block. ``None`` or
    ``["all-linear"]`` adapts every linear layer of the blocks (peft's ``all-linear``, which leaves
    the output layer out)."""
    shapes = _linear_shapes(arch)
    names = list(shapes) if target_modules in (None, ["all-linear"]) else [n for n in target_modules if n in shapes]
    return arch.layers * sum(r * sum(shapes[n]) for n in names)


def layer_count(arch: Arch) -> int:
    """Parameters of one decoder block."""
    return sum(i * o for i, o in _linear_shapes(arch).values()) + 4 * arch.hidden


def top_layers_count(arch: Arch, n_layers: int) -> int:
    """Trainable parameters with ``model.unfrozen_layers = n``: the top blocks, the final norm and
    the output layer (embeddings and the lower blocks frozen, as in Gao et al.'s LLaMA runs)."""
    head = 0 if arch.tied else arch.vocab * arch.hidden
    return n_layers * layer_count(arch) + head + 2 * arch.hidden


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


def _trainable(cfg: Config, arch: Arch, n: int) -> int:
    record = cfg.algorithm.record
    if cfg.lora.enabled and record.adapters:
        return lora_count(arch, cfg.lora.r, cfg.lora.target_modules)
    if cfg.model.unfrozen_layers and record.adapters:
        return top_layers_count(arch, cfg.model.unfrozen_layers)
    return n


def _trained_bytes(cfg: Config) -> int:
    """Bytes per trained parameter: LoRA adapters are float32 (peft casts bf16/fp16 adapters up),
    full weights keep the model's dtype; gradients and both AdamW moments take the same width."""
    return 4 if (cfg.lora.enabled and cfg.algorithm.record.adapters) else BYTES[cfg.model.dtype]


def _activations(cfg: Config, arch: Arch, processes: int = 1) -> float:
    """Bytes of the larger of the training activations (rough) and an online rollout's peak (KV cache
    of the generation micro-batch, its last float32 logits, and the scoring forward)."""
    wb, record = BYTES[cfg.model.dtype], cfg.algorithm.record
    response = max(cfg.generation.max_new_tokens, cfg.data.max_response_length)
    seq = cfg.data.max_prompt_length + response
    act_layers = 1 if cfg.model.gradient_checkpointing else arch.layers
    if _packs_pairs(cfg):  # one row [prompt; first; second], logits of the response positions only
        positions, logit_positions = cfg.data.max_prompt_length + 2 * response, 2 * response + 1
    else:
        positions = logit_positions = record.rows_per_example * seq
    micro = cfg.train.micro_batch_size
    train = micro * (positions * arch.hidden * 16 * act_layers + logit_positions * 2 * arch.vocab) * wb
    if record.loop is Loop.OFFLINE and not record.kl_samples_per_prompt:
        return train
    per_process = max(1, cfg.train.batch_size // processes) * (record.kl_samples_per_prompt or record.rows_per_example)
    gen_rows = min(cfg.generation.batch_size or per_process, per_process)
    kv = gen_rows * seq * arch.layers * 2 * arch.kv_dim * wb
    score_rows = cfg.reward.batch_size or gen_rows
    rollout = kv + gen_rows * arch.vocab * 4 + score_rows * seq * arch.hidden * 4 * wb
    return max(train, rollout)


def _packs_pairs(cfg: Config) -> bool:
    """Whether the training forward packs each pair as one row (:func:`~.logprobs.pair_sequence_logprobs`):
    two policy responses per example (not the reward model's scores) under an attention implementation
    that takes a custom mask (transformers' default is SDPA)."""
    record = cfg.algorithm.record
    return (record.rows_per_example == 2 and not record.trains_reward_model
            and (cfg.model.attn_implementation or "sdpa") in PACKED_ATTENTION)


def _parts(cfg: Config, arch: Arch, processes: int = 1) -> tuple[int, int, dict]:
    """(policy parameters, trainable parameters, GiB per part before any sharding)."""
    wb, gib, record = BYTES[cfg.model.dtype], 1024**3, cfg.algorithm.record
    n = param_count(arch)
    train_n, tb = _trainable(cfg, arch, n), _trained_bytes(cfg)
    adapters = train_n if (cfg.lora.enabled and record.adapters) else 0
    parts = {"policy_weights": (n * wb + adapters * tb) / gib, "gradients": train_n * tb / gib,
             "adam_states": train_n * 2 * tb / gib}
    if record.needs_reference and not cfg.lora.enabled:
        shared = cfg.model.unfrozen_layers and record.adapters  # frozen trunk shared: copy of the top only
        parts["reference_weights"] = (train_n if shared else n) * wb / gib
    if record.needs_reward_model:
        ra = _arch_of(cfg.reward.model) or _arch_of(cfg.model.family) or arch
        rn = param_count(ra, lm_head=False)
        parts["reward_model_weights"] = rn * BYTES[cfg.reward.dtype] / gib
        if record.needs_value_head:  # trained in the policy's dtype, all weights
            parts["value_model_weights"] = rn * wb / gib
            parts["value_model_grads+adam"] = rn * 3 * wb / gib
    parts["activations(rough)"] = _activations(cfg, arch, processes) / gib
    return n, train_n, parts


def _checkpoint_bytes(name: str | None, default: int) -> int:
    """Bytes per weight of a local checkpoint (``config.json``'s ``dtype``), else ``default``."""
    cfg_file = Path(name) / "config.json" if name else None
    if cfg_file is not None and cfg_file.is_file():
        c = json.loads(cfg_file.read_text())
        return BYTES.get(str(c.get("dtype") or c.get("torch_dtype")), default)
    return default


def host_load_peak(cfg: Config, arch: Arch) -> float:
    """GiB of host memory while the policy loads: the model in ``model.dtype`` plus, when the
    checkpoint is stored in another dtype, the checkpoint's tensors being converted."""
    wb = BYTES[cfg.model.dtype]
    cb = _checkpoint_bytes(cfg.model.name, wb)
    n = param_count(arch)
    return n * (wb + (cb if cb != wb else 0)) / 1024**3


def estimate(cfg: Config, num_processes: int = 1) -> dict:
    """Per-process memory estimate (GiB) without ZeRO sharding; ``None`` fields are unknown.

    ``total_gib`` is the training peak on the device (weights, gradients, AdamW moments, frozen
    models, activations or the rollout's peak); ``host_peak_gib`` adds the host's load transient
    (the larger of the two on a CPU-only run)."""
    arch = _arch_of(cfg.model.name) or _arch_of(cfg.model.family)
    out: dict = {"policy_params": None, "trainable_params": None, "total_gib": None}
    if arch is None:
        out["note"] = f"unknown architecture {cfg.model.name!r}: add it to finitepref.llm.memory.ARCHS"
        return out
    n, train_n, parts = _parts(cfg, arch, num_processes)
    total = sum(parts.values())
    out.update(policy_params=n, trainable_params=train_n, parts_gib={k: round(v, 2) for k, v in parts.items()},
               total_gib=round(total, 2), host_peak_gib=round(max(total, host_load_peak(cfg, arch)), 2),
               num_processes=num_processes,
               note="per process, without ZeRO/FSDP sharding of gradients and optimiser states")
    return out


SHARDINGS = {
    # accelerate config file -> which parts are divided by the number of processes
    "ddp.yaml": (),
    "deepspeed_zero2.yaml": ("gradients", "adam_states", "value_model_grads+adam"),
    "deepspeed_zero3.yaml": ("policy_weights", "gradients", "adam_states", "value_model_weights",
                             "value_model_grads+adam"),
    "fsdp.yaml": ("policy_weights", "gradients", "adam_states", "value_model_weights", "value_model_grads+adam"),
}
"""The shipped shardings (``configs/accelerate``): the parts of :func:`estimate` each one splits
across processes. Frozen copies (a reference without LoRA, the reward model) are not prepared by
accelerate and stay whole on every process."""

WEIGHTS = ("policy_weights", "reference_weights", "reward_model_weights", "value_model_weights")
"""The parts of :func:`estimate` that are weights (held from loading to the end of the run)."""


def fsdp_unit_count(arch: Arch) -> int:
    """Parameters of the largest FSDP unit: accelerate's FSDP2 wraps each decoder block, the input
    embedding, and [final norm, output layer] (with tied weights, embedding and output layer
    together)."""
    head = arch.vocab * arch.hidden + 2 * arch.hidden
    return max(layer_count(arch), arch.vocab * arch.hidden, head)


def _transients(cfg: Config, arch: Arch) -> dict:
    """GiB each sharding adds to the training state, by name.

    DDP keeps a second copy of every trained gradient in its all-reduce buckets (accelerate leaves
    ``gradient_as_bucket_view`` off). FSDP gathers one unit's whole weights for its forward and
    backward and holds the unit's whole gradient until the reduce-scatter: the largest unit's
    weights and, when it is trained in full, its gradient. DeepSpeed's buckets are not modelled.
    """
    wb, tb, gib, record = BYTES[cfg.model.dtype], _trained_bytes(cfg), 1024**3, cfg.algorithm.record
    n = param_count(arch)
    buckets = _trainable(cfg, arch, n) * tb
    unit = fsdp_unit_count(arch)
    unit_bytes = unit * wb + (0 if (cfg.lora.enabled and record.adapters) else unit * tb)
    if record.needs_value_head:
        ra = _arch_of(cfg.reward.model) or _arch_of(cfg.model.family) or arch
        buckets += param_count(ra, lm_head=False) * wb
    return {"ddp.yaml": {"ddp_grad_buckets": buckets / gib},
            "fsdp.yaml": {"fsdp_unsharded_unit": unit_bytes / gib}}


def _per_process(parts: dict, split: tuple, num_processes: int, extra: dict) -> float:
    """GiB per process of ``parts`` with the ``split`` ones divided over the processes, plus ``extra``."""
    return sum(v / num_processes if k in split else v for k, v in parts.items()) + sum(extra.values())


def cpu_run_phases(cfg: Config, sharding: str = "fsdp.yaml", num_processes: int = 2) -> dict:
    """GiB of memory of the largest process (rank 0) in each phase of a run under ``sharding`` on
    ``num_processes`` processes, when the device is the host (a CPU run; on GPUs, ``load`` and the
    gathered copy of ``save`` are host RAM and ``train`` is device memory).

    ``load``: every process builds the whole policy and frozen models (``fsdp_cpu_ram_efficient_loading:
    false``), or the policy while a checkpoint of another dtype converts. ``prepare``: the sharded
    copies of the split weights are made while the whole ones are still referenced (FSDP2's
    ``fully_shard``), or DDP's buckets are allocated. ``train``: the per-process training state
    (:func:`sharding_table`'s number). ``save``: the state at rest (weights and optimiser states;
    gradients are cleared) plus, when the policy's weights are split, its whole state dict gathered
    on rank 0 for ``<output_dir>/model`` and the largest tensor (the embedding) in flight while it is
    gathered. ``peak``: the largest phase.
    """
    arch = _arch_of(cfg.model.name) or _arch_of(cfg.model.family)
    if arch is None:
        return {}
    parts, split = _parts(cfg, arch, num_processes)[2], SHARDINGS[sharding]
    extra = _transients(cfg, arch).get(sharding, {})
    weights = sum(v for k, v in parts.items() if k in WEIGHTS)
    shards = sum(v / num_processes for k, v in parts.items() if k in WEIGHTS and k in split)
    at_rest = {k: v for k, v in parts.items() if k not in ("gradients", "activations(rough)")}
    gathered = 0.0
    if "policy_weights" in split and num_processes > 1:  # whole state dict + the tensor being gathered
        gathered = parts["policy_weights"] + arch.vocab * arch.hidden * BYTES[cfg.model.dtype] / 1024**3
    phases = {"load": max(weights, host_load_peak(cfg, arch)),
              "prepare": weights + shards + extra.get("ddp_grad_buckets", 0.0),
              "train": _per_process(parts, split, num_processes, extra),
              "save": _per_process(at_rest, split, num_processes, {"ddp_grad_buckets": extra.get(
                  "ddp_grad_buckets", 0.0)}) + gathered}
    phases["peak"] = max(phases.values())
    return {k: round(v, 2) for k, v in phases.items()}


def sharding_table(cfg: Config, num_gpus: int = 4, gpu_gib: float = 40.0) -> dict:
    """Per-GPU GiB under each shipped sharding on ``num_gpus`` GPUs of ``gpu_gib`` (the paper: 4 x
    A100 40 GB), which of them fit, and a one-line verdict.

    ``per_gpu_gib`` is the training state per process (:data:`SHARDINGS` splits the parts of
    :func:`estimate`) plus the sharding's own buffers (``transients_gib``: DDP's gradient buckets,
    FSDP's unsharded unit). ``cpu_run_gib_by_phase`` is :func:`cpu_run_phases` for each sharding:
    the memory of rank 0 while loading, preparing, training and saving.
    """
    arch = _arch_of(cfg.model.name) or _arch_of(cfg.model.family)
    if arch is None:
        return {"verdict": f"unknown architecture {cfg.model.name!r}"}
    parts, transients = _parts(cfg, arch, num_gpus)[2], _transients(cfg, arch)
    per_gpu = {name: round(_per_process(parts, split, num_gpus, transients.get(name, {})), 2)
               for name, split in SHARDINGS.items()}
    deepspeed_ok = not cfg.algorithm.record.needs_value_head  # one model per DeepSpeed engine
    sharded_ok = not cfg.model.unfrozen_layers  # the shared frozen trunk needs whole parameters
    usable = {k: v for k, v in per_gpu.items() if (deepspeed_ok or "deepspeed" not in k)
              and (sharded_ok or k in ("ddp.yaml", "deepspeed_zero2.yaml"))}
    fits = [k for k, v in sorted(usable.items(), key=lambda kv: kv[1]) if v <= gpu_gib]
    if fits:
        verdict = f"fits {num_gpus} x {gpu_gib:g} GiB with {', '.join(fits)} (best first)"
    else:
        best = min(usable, key=usable.get)
        verdict = (f"exceeds {gpu_gib:g} GiB per GPU under every usable sharding (lowest: {best}, "
                   f"{usable[best]} GiB); reduce train.micro_batch_size, LoRA targets or rank")
    if not deepspeed_ok:
        verdict += "; DeepSpeed configs unusable (PPO prepares two trained models)"
    if not sharded_ok:
        verdict += "; ZeRO-3 and FSDP unusable (model.unfrozen_layers shares the frozen trunk with pi_0)"
    return {"num_gpus": num_gpus, "gpu_gib": gpu_gib, "per_gpu_gib": per_gpu,
            "transients_gib": {k: {n: round(v, 2) for n, v in d.items()} for k, d in transients.items()},
            "cpu_run_gib_by_phase": {name: cpu_run_phases(cfg, name, num_gpus) for name in SHARDINGS},
            "fits": fits, "verdict": verdict}
