"""Typed run configuration of the language-model trainer.

A run is described by one YAML file mapped onto :class:`Config` (nested dataclasses, one per
section). Shipped files live in ``finitepref/llm/configs/`` and are found by name
(``tiny/distill``) or by path. A file may name a ``base:`` file (relative to itself or a shipped
name) whose values it overrides. Every field can be overridden on the command line with
``--set section.field=value`` (or ``--section.field value``); values are parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import registry
from .errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"

ALGORITHMS = tuple(registry.REGISTRY)
"""Deprecated: use :data:`finitepref.llm.registry.REGISTRY`."""
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
    unfrozen_layers: int | None = None
    """Train only the top N decoder blocks (with the final norm and the output layer); embeddings
    and the lower blocks are frozen and shared with the reference pi_0, which copies only the
    trained modules (Gao et al.'s LLaMA-3 runs: 4). ``None`` trains every weight."""
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
    """Module names to adapt; ``None`` or ``[all-linear]`` means every linear layer of the blocks
    (peft's ``all-linear``). The Table 5 configs use ``[query_key_value]``, peft's default for
    GPT-NeoX, which Gao et al.'s TL;DR code (REBEL) leaves in place."""


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
    input_format: str = "auto"
    """How (prompt, response) reach the reward model: ``auto`` (the policy's tokens when the
    tokenizers match; otherwise both texts decoded and re-encoded with the reward tokenizer, EOS
    appended) or ``eurus`` (Eurus-RM-7b's model-card form ``<s>[INST] {prompt} [/INST] {response}``:
    the raw prompt text, BOS, no EOS, as Gao et al.'s UltraFeedback code scores it)."""
    max_length: int = 2048
    """Longest reward-model input with ``input_format: eurus`` (left-truncated; reference: 2048)."""
    trust_remote_code: bool = False
    """Passed to ``from_pretrained`` (Eurus-RM-7b needs it)."""
    scale: float = 1.0
    """Factor applied to the (normalised) score before the missing-EOS rule. UltraFeedback: 1/1000,
    as Gao et al.'s code divides Eurus-RM scores by ``reward_reg = 1000`` before Gamma and the KL
    term (REBEL ``src/ultrafeedback/rebel.py``)."""
    missing_eos_penalty: float | None = -1.0
    """Score given to responses without EOS (TL;DR: -1, Huang et al. 2024; Table 6's Gamma: -4).
    ``None`` disables the rule."""
    normalize: bool = True
    """Subtract the mean score on reference responses, stored by the ``reward`` stage in
    ``reward_normalization.json`` next to the model."""
    seed: int = 0
    """Initialisation seed of a ``tiny:`` reward model."""
    batch_size: int | None = None
    """Rows per reward-model forward when scoring rollouts; ``None``: all at once."""


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
    """Deprecated: use ``eval.split`` (read when ``eval.split`` is unset)."""
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
    batch_size: int | None = None
    """Rows per generation call (and per forward of the rollout's log-probs); ``None``: all of a
    process's rollout at once. Samples do not depend on it (seeded per example)."""


@dataclass
class AlgorithmConfig:
    """Which objective, and its settings (paper notation).

    In YAML the settings sit flat next to ``name`` (``algorithm: {name: dpo, beta: 0.05}``); they
    are the fields of the algorithm's settings dataclass in :mod:`finitepref.llm.registry`.
    ``cfg.algorithm.beta`` reads ``cfg.algorithm.settings.beta``.
    """

    name: str = "distill"
    """One of ``sft``, ``reward`` (eq. 9), ``dpo`` (eq. 6), ``ipo`` (Azar et al. 2023), ``chipo``
    (Huang et al. 2024), ``pmle`` (eq. 5), ``distill`` (eqs. 11-12), ``rebel`` (eq. 10), ``rlhf``
    (eq. 1, PPO), ``reverse_kl`` (eq. 16, PPO)."""
    settings: Any = None
    """The algorithm's settings dataclass; ``None`` takes its defaults."""

    def __post_init__(self):
        if self.settings is None:
            self.settings = registry.get(self.name).settings()

    @property
    def record(self) -> registry.Algorithm:
        """The registry record of ``name``."""
        return registry.get(self.name)

    def __getattr__(self, item: str):
        if item.startswith("__") or item in ("name", "settings"):
            raise AttributeError(item)
        try:
            return getattr(self.settings, item)
        except AttributeError:
            raise AttributeError(f"algorithm {self.name!r} has no setting {item!r}") from None


@dataclass
class TrainConfig:
    """Optimisation."""

    seed: int = 1
    """Seeds python, numpy, torch (the same on every process). Online sampling is seeded per example by
    (seed, iteration, position in the global batch, sample), so a run samples the same responses on
    any number of processes."""
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
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW (beta1, beta2); Gao et al.'s LLaMA-3 runs: [0.9, 0.95]."""
    adam_impl: str = "default"
    """AdamW implementation: ``default`` (torch's choice), ``foreach``, or ``fused`` (one kernel for all
    parameters; falls back to ``foreach`` where the device has no fused AdamW)."""
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
    """Resume from the newest complete checkpoint in the output directory."""
    keep_last: int = 2
    """Resumable checkpoints kept (the newest ones; the final model is always kept)."""
    overwrite: bool = False
    """Train into an output directory that holds a finished run, replacing it (refused otherwise)."""


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
    """Prompts to evaluate, drawn at random (seed ``eval.seed``) from the evaluation split; the rows
    drawn are written to ``eval_samples.csv`` (Section 6.1: "600 randomly selected samples")."""
    source: str | None = None
    """Prompts with reference responses, the same for every algorithm: hub id or local file; ``None``
    means the TL;DR SFT set (``tiny`` for tiny data)."""
    schema: str | None = None
    """Row schema of ``eval.source`` (``None`` infers it, as for ``data.schema``)."""
    split: str | None = None
    """Split of ``eval.source``; ``None`` means ``test`` (``eval`` for tiny data)."""
    temperature: float = 0.01
    """Sampling temperature of the evaluated responses, and of the log-probs of the KL column, for
    every algorithm (the reference code evaluates at 0.01; Table 5's 0.7 / 0.01 are training
    temperatures)."""
    judge_prompt: str = "tldr"
    """Judge prompt template: a file name in ``finitepref/llm/judge_prompts`` (without ``.txt``) or a
    path; it holds ``{post}``, ``{a}`` and ``{b}`` and asks for a one-letter answer."""
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise ConfigError(f"{mark.name}: line {mark.line + 1}: key {key!r} appears twice in one mapping")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _read_yaml(path: Path, seen: tuple = ()) -> dict:
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular 'base'")
    with open(path, encoding="utf-8") as f:
        raw = yaml.load(f, Loader=_UniqueKeyLoader) or {}  # noqa: S506 (a SafeLoader subclass)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = raw.pop("base", None)
    if base is not None:
        rel = path.parent / base
        base_path = rel if rel.is_file() else resolve_config_path(base)
        raw = _deep_merge(_read_yaml(base_path, seen + (path.resolve(),)), raw)
    return raw


def _coerce_optional(value: Any, tp: Any, where: str) -> Any:
    if value is None and type(None) in typing.get_args(tp):
        return None
    inner = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    return _coerce(value, inner[0], where)


def _coerce_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: expected true/false, got {value!r}")


def _coerce_int(value: Any, where: str) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: expected an integer, got {value!r}")


def _coerce_float(value: Any, where: str) -> float:
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return number


def _coerce_str(value: Any, where: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: expected a string, got {value!r}")


_SCALARS = {bool: _coerce_bool, int: _coerce_int, float: _coerce_float, str: _coerce_str}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (YAML scalars, optional and list types); :class:`ConfigError` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_optional(value, tp, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(item, typing.get_args(tp)[0], where) for item in value]
    if tp in _SCALARS:
        return _SCALARS[tp](value, where)
    return value


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _section(name: str, tp: type, value: Any):
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping, got {value!r}")
    known = _hints(tp)
    fields = {}
    for key, item in value.items():
        if key not in known:
            raise ConfigError(f"unknown field {name}.{key}; known: {', '.join(known)}")
        fields[key] = _coerce(item, known[key], f"{name}.{key}")
    return tp(**fields)


def _algorithm_section(value: Any) -> AlgorithmConfig:
    """``{name, **settings}`` -> :class:`AlgorithmConfig`; settings of other algorithms are ignored
    with a :class:`DeprecationWarning` (the flat section of earlier versions held all of them)."""
    if not isinstance(value, dict):
        raise ConfigError(f"algorithm: expected a mapping, got {value!r}")
    values = dict(value)
    record = registry.get(_coerce_str(values.pop("name", AlgorithmConfig.name), "algorithm.name"))
    own = _hints(record.settings)
    anywhere = registry.settings_fields()
    settings = {}
    for key, item in values.items():
        if key in own:
            settings[key] = _coerce(item, own[key], f"algorithm.{key}")
        elif key in anywhere:
            warnings.warn(f"algorithm.{key} is not a setting of {record.name} (only of {', '.join(anywhere[key])}); "
                          "ignored", DeprecationWarning, stacklevel=3)
        else:
            raise ConfigError(f"unknown field algorithm.{key}; {record.name} takes: {', '.join(own) or 'nothing'}")
    return AlgorithmConfig(name=record.name, settings=record.make_settings(settings))


def from_dict(raw: dict) -> Config:
    """Build a :class:`Config` from a nested mapping, rejecting unknown keys and wrong types."""
    kwargs = {}
    hints = _hints(Config)
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"unknown config section {key!r}; known: {', '.join(hints)}")
        if key == "algorithm":
            kwargs[key] = _algorithm_section(value)
        elif dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _section(key, hints[key], value)
        else:
            kwargs[key] = _coerce(value, hints[key], key)
    return Config(**kwargs)


def to_dict(cfg: Config) -> dict:
    """The nested mapping :func:`from_dict` reads back (the algorithm's settings flat in its section)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "algorithm":
            out[f.name] = {"name": value.name, **dataclasses.asdict(value.settings)}
        else:
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


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


def _at_least(low):
    return lambda v: v is None or (v >= low), f">= {low}"


def _above(low):
    return lambda v: v is None or (v > low), f"> {low}"


def _among(*choices):
    return lambda v: v in choices, f"one of {', '.join(map(str, choices))}"


_RULES = {
    "model.dtype": _among("float32", "bfloat16", "float16"), "model.unfrozen_layers": _at_least(1),
    "lora.r": _at_least(1), "lora.alpha": _above(0), "lora.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "reward.kind": _among("sequence_classification", "remote_code"),
    "reward.input_format": _among("auto", "eurus"), "reward.max_length": _at_least(2),
    "reward.dtype": _among("float32", "bfloat16", "float16"), "reward.scale": _above(0),
    "data.max_samples": _at_least(1), "data.max_prompt_length": _at_least(1),
    "data.max_response_length": _at_least(1), "data.tiny_size": _at_least(1),
    "generation.backend": _among("hf", "vllm"), "generation.max_new_tokens": _at_least(1),
    "generation.min_new_tokens": _at_least(0), "generation.temperature": _above(0),
    "generation.top_k": _at_least(0), "generation.batch_size": _at_least(1), "reward.batch_size": _at_least(1),
    "generation.top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "train.lr": _above(0), "train.schedule": _among("linear", "cosine", "constant"),
    "train.warmup_steps": _at_least(0), "train.weight_decay": _at_least(0), "train.adam_eps": _above(0), "train.adam_impl": _among("default", "foreach", "fused"),
    "train.max_grad_norm": _above(0), "train.batch_size": _at_least(1), "train.micro_batch_size": _at_least(1),
    "train.epochs": _above(0), "train.total_episodes": _at_least(1), "train.max_steps": _at_least(0),
    "train.save_every": _at_least(0), "train.keep_last": _at_least(1),
    "log.every": _at_least(1), "eval.num_samples": _at_least(1), "eval.batch_size": _at_least(1),
    "eval.temperature": _above(0),
}
"""``section.field -> (check, what is expected)``, applied by :func:`validate`."""


def _check_ranges(cfg: Config) -> None:
    for path, (ok, expected) in _RULES.items():
        section, name = path.split(".")
        owner = getattr(cfg, section)
        if not hasattr(owner, name):
            continue
        value = getattr(owner, name)
        if not ok(value):
            raise ConfigError(f"{path} must be {expected}, got {value!r}")


def _check_consistency(cfg: Config) -> None:
    record, train, gen = cfg.algorithm.record, cfg.train, cfg.generation
    if cfg.data.schema is not None and cfg.data.schema not in SCHEMAS:
        raise ConfigError(f"data.schema must be one of {SCHEMAS}, got {cfg.data.schema!r}")
    if train.batch_size % train.micro_batch_size:
        raise ConfigError(f"train.batch_size={train.batch_size} must be a multiple of "
                          f"train.micro_batch_size={train.micro_batch_size}")
    if gen.min_new_tokens > gen.max_new_tokens:
        raise ConfigError(f"generation.min_new_tokens={gen.min_new_tokens} must be <= "
                          f"max_new_tokens={gen.max_new_tokens}")
    if record.needs_reward_model and not cfg.reward.model:
        raise ConfigError(f"{record.name} needs reward.model (the reward model that scores its samples)")
    if record.needs_value_head and cfg.reward.kind != "sequence_classification":
        raise ConfigError(f"{record.name}'s value model is initialised from a sequence-classification reward "
                          f"model; got reward.kind={cfg.reward.kind!r}")
    if len(train.adam_betas) != 2 or not all(0 <= b < 1 for b in train.adam_betas):
        raise ConfigError(f"train.adam_betas must be two numbers in [0, 1), got {train.adam_betas!r}")
    if cfg.model.unfrozen_layers and cfg.lora.enabled:
        raise ConfigError("model.unfrozen_layers and lora.enabled exclude each other")
    mini = getattr(cfg.algorithm.settings, "num_mini_batches", 1)
    if train.batch_size % mini:
        raise ConfigError(f"train.batch_size={train.batch_size} must be divisible by algorithm.num_mini_batches={mini}")


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` (naming the field, showing the value) on invalid settings.

    The algorithm's own settings validate themselves when built (:mod:`finitepref.llm.settings`).
    """
    registry.get(cfg.algorithm.name)
    _check_ranges(cfg)
    _check_consistency(cfg)


def _class_field_docs(cls) -> dict[str, str]:
    """``field -> docstring`` of a dataclass and its dataclass bases, read from their source."""
    import ast
    import inspect

    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(inspect.getsource(klass)).body[0].body
        for i, stmt in enumerate(body[:-1]):
            nxt = body[i + 1]
            if (isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr)
                    and isinstance(getattr(nxt, "value", None), ast.Constant)):
                out[stmt.target.id] = " ".join(str(nxt.value.value).split())
    return out


def field_docs() -> dict[str, str]:
    """``section.field`` -> docstring (for ``--help-config``); algorithm settings name their algorithms."""
    out = {}
    for section, tp in _hints(Config).items():
        if not dataclasses.is_dataclass(tp):
            continue
        for name, doc in _class_field_docs(tp).items():
            if section != "algorithm" or name == "name":
                out[f"{section}.{name}"] = doc
    by_doc: dict[str, dict[str, list[str]]] = {}
    for record in registry.REGISTRY.values():
        for name, doc in _class_field_docs(record.settings).items():
            by_doc.setdefault(name, {}).setdefault(doc, []).append(record.name)
    for name, docs in by_doc.items():
        out[f"algorithm.{name}"] = " | ".join(f"[{', '.join(users)}] {doc}" for doc, users in docs.items())
    return out
