"""The algorithm registry: one frozen record per training stage of ``finitepref.llm``.

Everything that differs between algorithms is a field of :class:`Algorithm`; ``train``,
``memory``, ``models``, ``data``, ``config`` and the CLI read these fields and never compare
algorithm names. Adding an offline algorithm takes its batch loss (built from a function of
:mod:`finitepref.losses`), one entry in :data:`REGISTRY` and one YAML file (see ``docs/llm.md``,
"Anatomy").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from . import algorithms as losses
from . import batches
from . import settings as st
from .errors import ConfigError


class Loop(enum.Enum):
    """How a stage turns data into optimiser updates (see :mod:`finitepref.llm.steps`)."""

    OFFLINE = "offline pairs"
    """One update per global batch of dataset rows (SFT, reward model, DPO, PMLE)."""
    ONLINE_PAIRS = "online pairs"
    """Algorithm 1: two samples per prompt, scored by the reward model, then mini-batch updates."""
    PPO = "PPO"
    """One sample per prompt, per-token shaped rewards, GAE and clipped PPO updates."""


class DataKind(str, enum.Enum):
    """Which columns a stage reads from its data (see :func:`finitepref.llm.data.load_records`)."""

    SFT = "sft"
    """(prompt, reference response)."""
    PREFERENCE = "preference"
    """(prompt, chosen, rejected)."""
    PROMPT = "prompt"
    """Prompts (with a reference response when the schema has one)."""


@dataclass(frozen=True)
class Algorithm:
    """Everything the trainer needs to know about one algorithm."""

    name: str
    """The value of ``algorithm.name`` in a config."""
    label: str
    """One wording, with the paper's equation, for tables and figures."""
    loop: Loop
    """Which step function trains it."""
    data: DataKind
    """Which columns its data rows hold."""
    batch: type
    """The typed batch its loss takes (a :class:`finitepref.llm.batches.Batch` subclass)."""
    loss: Callable
    """``loss(models, batch, settings) -> (loss tensor, metrics dict)``."""
    settings: type
    """Its settings dataclass (validated in ``__post_init__``)."""
    needs_reference: bool = False
    """Uses pi_0 (a frozen copy, or the policy with LoRA adapters disabled)."""
    needs_reward_model: bool = False
    """Scores online samples with ``reward.model``."""
    needs_value_head: bool = False
    """Trains a value model (initialised from the reward model) next to the policy."""
    trains_reward_model: bool = False
    """The trained network is a scalar-head reward model, not the policy."""
    rows_per_example: int = 1
    """Sequences per example in a forward pass (memory model's activation term)."""
    pair_reference: bool = False
    """Its loss uses pi_0's log-probs of the offline pairs: computed once per batch, in one forward,
    before the micro-batch loop."""
    kl_samples_per_prompt: int = 0
    """Offline stages with an online KL term (eq. 5): policy samples per prompt when beta > 0."""

    @property
    def adapters(self) -> bool:
        """LoRA adapters apply (stages against pi_0; SFT and the reward model train all weights)."""
        return self.needs_reference

    def make_settings(self, values: dict):
        """Build and validate this algorithm's settings from the ``algorithm:`` section's fields."""
        return self.settings(**values)


_ENTRIES = (
    Algorithm("sft", "SFT", Loop.OFFLINE, DataKind.SFT, batches.SftBatch, losses.sft_loss, st.NoSettings),
    Algorithm("reward", "Reward model (eq. 9)", Loop.OFFLINE, DataKind.PREFERENCE, batches.PairBatch,
              losses.reward_loss, st.NoSettings, trains_reward_model=True, rows_per_example=2),
    Algorithm("dpo", "DPO (eq. 6)", Loop.OFFLINE, DataKind.PREFERENCE, batches.PairBatch, losses.dpo_batch_loss,
              st.DpoSettings, needs_reference=True, rows_per_example=2, pair_reference=True),
    # beyond the paper (issue 14): the toy core's IPO and chi-PO on the same offline pairs as DPO
    Algorithm("ipo", "IPO (Azar et al. 2023)", Loop.OFFLINE, DataKind.PREFERENCE, batches.PairBatch,
              losses.ipo_batch_loss, st.IpoSettings, needs_reference=True, rows_per_example=2, pair_reference=True),
    Algorithm("chipo", "χPO (Huang et al. 2024)", Loop.OFFLINE, DataKind.PREFERENCE, batches.PairBatch,
              losses.chipo_batch_loss, st.ChipoSettings, needs_reference=True, rows_per_example=2,
              pair_reference=True),
    Algorithm("pmle", "PMLE (eq. 5)", Loop.OFFLINE, DataKind.PREFERENCE, batches.OfflinePairBatch,
              losses.pmle_batch_loss, st.PmleSettings, needs_reference=True, rows_per_example=2,
              kl_samples_per_prompt=2),
    Algorithm("distill", "Preference distillation (eq. 12)", Loop.ONLINE_PAIRS, DataKind.PROMPT,
              batches.OnlinePairBatch, losses.distill_batch_loss, st.DistillSettings, needs_reference=True,
              needs_reward_model=True, rows_per_example=2),
    Algorithm("rebel", "REBEL (eq. 10)", Loop.ONLINE_PAIRS, DataKind.PROMPT, batches.OnlinePairBatch,
              losses.rebel_batch_loss, st.RebelSettings, needs_reference=True, needs_reward_model=True,
              rows_per_example=2),
    Algorithm("rlhf", "RLHF/PPO (eq. 1)", Loop.PPO, DataKind.PROMPT, batches.RolloutBatch, losses.ppo_batch_loss,
              st.PpoSettings, needs_reference=True, needs_reward_model=True, needs_value_head=True),
    Algorithm("reverse_kl", "Reverse KL (eq. 16)", Loop.PPO, DataKind.PROMPT, batches.RolloutBatch,
              losses.ppo_batch_loss, st.ReverseKlSettings, needs_reference=True, needs_reward_model=True,
              needs_value_head=True),
)

REGISTRY: dict[str, Algorithm] = {entry.name: entry for entry in _ENTRIES}
"""Every algorithm, by ``algorithm.name``, in the order of the paper's pipeline."""


def get(name: str) -> Algorithm:
    """The record of ``name``; :class:`ConfigError` naming the known algorithms otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"algorithm.name must be one of {', '.join(REGISTRY)}, got {name!r}") from None


def settings_fields() -> dict[str, list[str]]:
    """``field -> [algorithms whose settings have it]`` over the registry."""
    import dataclasses

    out: dict[str, list[str]] = {}
    for entry in REGISTRY.values():
        for f in dataclasses.fields(entry.settings):
            out.setdefault(f.name, []).append(entry.name)
    return out
