"""Typed run configuration of the language-model trainer.

A run is described by one YAML file mapped onto :class:`Config` (nested dataclasses, one per
section). Shipped files live in ``finitepref/llm/configs/`` and are found by name
(``tiny/distill``) or by path. A file may name a ``base:`` file (relative to itself or a shipped
name) whose values it overrides. Every field can be overridden on the command line with
``--set section.field=value`` (or ``--section.field value``); values are parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"

ALGORITHMS = ("sft", "reward", "dpo", "pmle", "distill", "rebel", "rlhf", "reverse_kl")
SCHEMAS = ("tldr_sft", "tldr_preference", "ultrafeedback", "tiny_sft", "tiny_preference")


@dataclass
class ModelConfig:
    """The policy network."""

    name: str = "tiny:gpt-neox"
    """Hugging Face hub id, local directory (e.g. a previous stage's ``<output>/model``), or
    ``tiny:gpt-neox`` / ``tiny:llama`` for the in-code CPU test models."""
    tokenizer: str | None = None
    """Tokenizer id or path; ``None`` uses ``name`` (``tiny`` for the in-code tokenizer)."""
    revision: str | None = None
    """Hub revision of ``name``."""
    dtype: str = "float32"
    """Parameter dtype: ``float32``, ``bfloat16`` or ``float16``."""
    gradient_checkpointing: bool = False
    """Trade compute for activation memory."""
    trust_remote_code: bool = False
    """Passed to ``from_pretrained``."""
    attn_implementation: str | None = None
    """e.g. ``flash_attention_2``; ``None`` lets transformers choose."""
    family: str | None = None
    """Hub id of the architecture (e.g. ``EleutherAI/pythia-1.4b-deduped``), used by ``--dry-run``'s
    memory estimate when ``name`` is a local directory that does not exist yet."""


@dataclass
class LoraConfig:
    """LoRA adapters (Table 5: r 1024, alpha 2048, dropout 0, bias none)."""

    enabled: bool = False
    """Train adapters only; the reference is then the same model with adapters disabled."""
    r: int = 1024
    """Adapter rank."""
    alpha: int = 2048
    """Scaling numerator (``lora_alpha``)."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    bias: str = "none"
    """Which biases to train: ``none``, ``all`` or ``lora_only``."""
    target_modules: list[str] | None = None
    """Module names to adapt; ``None`` means all linear layers (peft's ``all-linear``)."""


@dataclass
class RewardConfig:
    """The reward model R-hat used by online algorithms, RLHF and evaluation."""

    model: str | None = None
    """Hub id or directory (the ``reward`` stage writes ``<output>/model``), or ``tiny:gpt-neox``."""
    tokenizer: str | None = None
    """Tokenizer of the reward model; ``None`` uses ``model``. If it differs from the policy's,
    responses are decoded and re-encoded."""
    kind: str = "sequence_classification"
    """``sequence_classification`` (a scalar head read at the last non-pad token) or
    ``remote_code`` (a model whose forward returns the reward, e.g. ``openbmb/Eurus-RM-7b``)."""
    dtype: str = "float32"
    """Parameter dtype of the reward model."""
    trust_remote_code: bool = False
    """Passed to ``from_pretrained`` (Eurus-RM-7b needs it)."""
    missing_eos_penalty: float | None = -1.0
    """Score given to responses without EOS (TL;DR: -1, Huang et al. 2024; Table 6's Gamma: -4).
    ``None`` disables the rule."""
    normalize: bool = True
    """Subtract the mean score on reference responses, stored by the ``reward`` stage in
    ``reward_normalization.json`` next to the model."""
    seed: int = 0
    """Initialisation seed of a ``tiny:`` reward model."""


@dataclass
class DataConfig:
    """Training data."""

    source: str = "tiny"
    """Hub dataset id, a local ``.jsonl``/``.json``/``.parquet`` file, or ``tiny`` (synthetic)."""
    schema: str | None = None
    """Row schema: ``tldr_sft``, ``tldr_preference``, ``ultrafeedback``, ``tiny_sft``,
    ``tiny_preference``; ``None`` infers it from the algorithm (preference data for DPO/PMLE/RM)."""
    split: str = "train"
    """Split of a hub dataset."""
    eval_split: str | None = None
    """Split used by ``evaluate``; ``None`` means ``test``-like default of the schema."""
    max_samples: int | None = None
    """Use only the first rows (after loading)."""
    max_prompt_length: int = 512
    """Queries are left-truncated and left-padded to this many tokens (TL;DR: 512)."""
    max_response_length: int = 53
    """Offline responses are truncated to this many tokens (TL;DR: 53)."""
    skip_malformed: bool = False
    """Skip and count malformed rows instead of raising an error naming file and row."""
    tiny_size: int = 64
    """Number of synthetic rows when ``source`` is ``tiny``."""
    reference_prompts: str | None = None
    """Dataset with reference responses used to normalise the reward model (``reward`` stage);
    ``None`` uses the TL;DR SFT set for hub data and ``tiny`` for tiny data."""


@dataclass
class GenerationConfig:
    """Sampling of online responses (Table 5/6 "Generation Config")."""

    backend: str = "hf"
    """``hf`` (``model.generate``) or ``vllm`` (if installed)."""
    max_new_tokens: int = 53
    """Response length budget (TL;DR: 53; UltraFeedback: 1024)."""
    min_new_tokens: int = 53
    """With ``disable_eos`` the sampler never stops early and always emits exactly this many."""
    temperature: float = 0.7
    """Sampling temperature; log-probs are computed from logits divided by it."""
    top_k: int = 0
    """0 disables top-k."""
    top_p: float = 1.0
    """1 disables nucleus sampling."""
    disable_eos: bool = True
    """Sample exactly ``max_new_tokens`` tokens, ignoring EOS (Huang et al. 2024)."""
    truncate_after_eos: bool = True
    """Replace everything after the first EOS with padding."""


@dataclass
class AlgorithmConfig:
    """Which objective, and its coefficients (paper notation)."""

    name: str = "distill"
    """One of ``sft``, ``reward``, ``dpo`` (eq. 6), ``pmle`` (eq. 5), ``distill`` (eqs. 11-12),
    ``rebel`` (eq. 10), ``rlhf`` (eq. 1, PPO), ``reverse_kl`` (eq. 16, PPO)."""
    beta: float = 0.05
    """KL coefficient beta (DPO: its inverse temperature; Table 5's "kl coefficient")."""
    gamma: float = 0.1
    """gamma of eq. (3) (PMLE, distillation) or the entropy coefficient of eq. (16)."""
    eta: float = 1.0
    """REBEL's reward scale eta, eq. (10)."""
    rebel_anchor: str = "sampler"
    """Ratio anchor of REBEL: ``sampler`` (pi_t, as in Gao et al.'s code, with the KL folded into
    the reward) or ``reference`` (pi_0, eq. 10 as printed)."""
    kl_baseline: str = "leave_one_out"
    """Baseline of the score-function KL gradient on online samples: ``leave_one_out`` or ``none``."""
    num_ppo_epochs: int = 4
    """Optimisation epochs over each online batch (Table 5 "num epochs")."""
    num_mini_batches: int = 1
    """Mini-batches per online batch and epoch."""
    clip_ratio: float = 0.2
    """PPO clip range."""
    vf_coef: float = 0.1
    """PPO value-loss coefficient."""
    cliprange_value: float = 0.2
    """PPO value clip range."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    discount: float = 1.0
    """Discount factor."""
    whiten_advantages: bool = True
    """Normalise advantages per batch."""


@dataclass
class TrainConfig:
    """Optimisation."""

    seed: int = 1
    """Seeds python, numpy, torch (each process adds its rank for sampling)."""
    lr: float = 3e-6
    """Peak learning rate (AdamW)."""
    schedule: str = "linear"
    """``linear`` or ``cosine`` decay to 0, or ``constant``."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_eps: float = 1e-5
    """AdamW epsilon."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping; ``None`` disables."""
    batch_size: int = 64
    """Global batch: pairs (offline) or prompts (online) per optimiser update (or per rollout)."""
    micro_batch_size: int = 8
    """Rows per forward per process; gradient accumulation fills the global batch."""
    epochs: float = 1.0
    """Passes over the data (offline) or over the prompts (online), unless ``total_episodes``."""
    total_episodes: int | None = None
    """Online: number of prompts to roll out in total (Table 5: 1e6); overrides ``epochs``."""
    max_steps: int | None = None
    """Stop after this many updates (the schedule still spans the full run): for interruption."""
    save_every: int = 0
    """Save a resumable checkpoint every this many updates (0: only at the end)."""
    resume: bool = False
    """Resume from the newest checkpoint in the output directory."""


@dataclass
class LogConfig:
    """Logging."""

    csv: bool = True
    """Write ``metrics.csv``."""
    tensorboard: bool = True
    """Write TensorBoard events (skipped if tensorboard is missing)."""
    progress: bool = True
    """Show a tqdm progress bar."""
    every: int = 1
    """Log every this many updates."""


@dataclass
class EvalConfig:
    """Evaluation (Table 2's columns)."""

    num_samples: int = 600
    """Prompts to evaluate."""
    judge: str = "reward-model"
    """``reward-model`` or ``openai`` (an OpenAI-compatible chat endpoint)."""
    judge_model: str = "gpt-4"
    """Model name sent to the judge endpoint."""
    judge_endpoint: str | None = None
    """Base URL; ``None`` reads ``FINITEPREF_JUDGE_URL`` or uses https://api.openai.com/v1."""
    judge_api_key_env: str = "OPENAI_API_KEY"
    """Environment variable that holds the API key."""
    batch_size: int = 16
    """Prompts per generation batch."""
    seed: int = 0
    """Seed for sampling and the A/B order."""


@dataclass
class Config:
    """A complete run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs/default"
    """Where checkpoints, the final model, metrics and the resolved config go."""


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


def resolve_config_path(name_or_path: str) -> Path:
    """Find a config by path, or by shipped name (``tiny/distill``, with or without ``.yaml``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / name_or_path, CONFIG_DIR / f"{name_or_path}.yaml"):
        if cand.is_file():
            return cand
    shipped = sorted(str(q.relative_to(CONFIG_DIR).with_suffix("")) for q in CONFIG_DIR.rglob("*.yaml")
                     if "accelerate" not in q.parts)
    raise ConfigError(f"no config file {name_or_path!r}; shipped configs: {', '.join(shipped)}")


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple = ()) -> dict:
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular 'base'")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = raw.pop("base", None)
    if base is not None:
        rel = path.parent / base
        base_path = rel if rel.is_file() else resolve_config_path(base)
        raw = _deep_merge(_read_yaml(base_path, seen + (path.resolve(),)), raw)
    return raw


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def from_dict(raw: dict) -> Config:
    """Build a :class:`Config` from a nested mapping, rejecting unknown keys and wrong types."""
    kwargs = {}
    hints = _hints(Config)
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"unknown config section {key!r}; known: {', '.join(hints)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping")
            sub = _hints(tp)
            fields = {}
            for k, v in value.items():
                if k not in sub:
                    raise ConfigError(f"unknown field {key}.{k}; known: {', '.join(sub)}")
                fields[k] = _coerce(v, sub[k], f"{key}.{k}")
            kwargs[key] = tp(**fields)
        else:
            kwargs[key] = _coerce(value, tp, key)
    return Config(**kwargs)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.lr=1e-6'`` -> (['train', 'lr'], 1e-6); the value is parsed as a YAML scalar."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value")
    key, val = text.split("=", 1)
    value = yaml.safe_load(val) if val.strip() else None
    # YAML 1.1 reads '1e-6' as a string; accept it as a float.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in "eE.") and not value.isalpha() else value
        except ValueError:
            pass
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = _deep_merge({}, raw)
    for ov in overrides:
        path, value = parse_override(ov)
        node = raw
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: {p} is not a section")
        node[path[-1]] = value
    return raw


def load_config(name_or_path: str | None, overrides: list[str] | None = None) -> Config:
    """Read a config (shipped name or path), apply ``section.field=value`` overrides, validate."""
    raw = _read_yaml(resolve_config_path(name_or_path)) if name_or_path else {}
    raw = apply_overrides(raw, overrides or [])
    cfg = from_dict(raw)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` on inconsistent settings."""
    a, t, g = cfg.algorithm, cfg.train, cfg.generation
    if a.name not in ALGORITHMS:
        raise ConfigError(f"algorithm.name must be one of {ALGORITHMS}, got {a.name!r}")
    if cfg.data.schema is not None and cfg.data.schema not in SCHEMAS:
        raise ConfigError(f"data.schema must be one of {SCHEMAS}, got {cfg.data.schema!r}")
    if t.batch_size <= 0 or t.micro_batch_size <= 0 or t.batch_size % t.micro_batch_size:
        raise ConfigError("train.batch_size must be a positive multiple of train.micro_batch_size")
    if t.lr <= 0:
        raise ConfigError("train.lr must be positive")
    if t.schedule not in ("linear", "cosine", "constant"):
        raise ConfigError("train.schedule must be linear, cosine or constant")
    if a.beta < 0 or a.gamma < 0 or a.eta <= 0:
        raise ConfigError("algorithm.beta, gamma must be >= 0 and eta > 0")
    if a.name in ("pmle", "distill") and a.gamma <= 0:
        raise ConfigError(f"{a.name} needs algorithm.gamma > 0 (eq. 3)")
    if a.name == "dpo" and a.beta <= 0:
        raise ConfigError("dpo needs algorithm.beta > 0 (eq. 6)")
    if a.rebel_anchor not in ("sampler", "reference"):
        raise ConfigError("algorithm.rebel_anchor must be sampler or reference")
    if a.kl_baseline not in ("leave_one_out", "none"):
        raise ConfigError("algorithm.kl_baseline must be leave_one_out or none")
    if g.temperature <= 0:
        raise ConfigError("generation.temperature must be positive (log-probs divide logits by it)")
    if g.backend not in ("hf", "vllm"):
        raise ConfigError("generation.backend must be hf or vllm")
    if g.min_new_tokens > g.max_new_tokens:
        raise ConfigError("generation.min_new_tokens must be <= max_new_tokens")
    if a.name in ("distill", "rebel", "rlhf", "reverse_kl") and not cfg.reward.model:
        raise ConfigError(f"{a.name} needs reward.model")
    if cfg.reward.kind not in ("sequence_classification", "remote_code"):
        raise ConfigError("reward.kind must be sequence_classification or remote_code")
    if cfg.model.dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError("model.dtype must be float32, bfloat16 or float16")
    if a.name in ("rlhf", "reverse_kl", "distill", "rebel") and t.batch_size % (a.num_mini_batches) != 0:
        raise ConfigError("train.batch_size must be divisible by algorithm.num_mini_batches")
    if a.name == "reverse_kl" and a.gamma <= 0:
        raise ConfigError("reverse_kl needs algorithm.gamma > 0 (entropy coefficient of eq. 16)")


def field_docs() -> dict[str, str]:
    """``section.field`` -> docstring, read from this module's source (for ``--help-config``)."""
    import ast
    import inspect

    out = {}
    tree = ast.parse(inspect.getsource(__import__(__name__, fromlist=["x"])))
    section_of = {tp.__name__: name for name, tp in _hints(Config).items() if dataclasses.is_dataclass(tp)}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in section_of:
            body = node.body
            for i, st in enumerate(body):
                if isinstance(st, ast.AnnAssign) and i + 1 < len(body):
                    nxt = body[i + 1]
                    if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
                        out[f"{section_of[node.name]}.{st.target.id}"] = " ".join(nxt.value.value.split())
    return out
