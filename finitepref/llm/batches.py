"""Typed batches: the tensors one step hands to a batch loss, with field names written once.

Token tensors are ``(rows, length)``: prompts left-padded, responses right-padded; masks are 1 on
real tokens. Per-row tensors are ``(rows,)``. Every batch can be moved to a device, sliced by
rows (:meth:`Batch.rows`) and counts its tokens (:meth:`Batch.n_tokens`); scalar fields (the
sampling temperature) are kept as they are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, TypeVar

import torch

Tensor = torch.Tensor
B = TypeVar("B", bound="Batch")


@dataclass
class Batch:
    """Prompts only (online stages)."""

    prompt_ids: Tensor
    prompt_mask: Tensor

    @classmethod
    def from_mapping(cls: type[B], columns: Mapping[str, Tensor]) -> B:
        """Pick this batch's fields out of :meth:`finitepref.llm.data.Encoded.batch`'s columns."""
        return cls(**{f.name: columns[f.name] for f in dataclasses.fields(cls) if f.name in columns})

    def _map(self: B, fn) -> B:
        return dataclasses.replace(self, **{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)
                                            if torch.is_tensor(getattr(self, f.name))})

    def to(self: B, device) -> B:
        return self._map(lambda t: t.to(device))

    def rows(self: B, index) -> B:
        """The rows ``index`` (a slice or an index tensor) of every tensor field."""
        return self._map(lambda t: t[index])

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]

    def n_tokens(self) -> int:
        """Real tokens in every ``*_mask`` field."""
        return int(self.token_count())

    def token_count(self) -> Tensor:
        """:meth:`n_tokens` as a tensor on the batch's device (no host-device synchronisation)."""
        return sum(getattr(self, f.name).sum() for f in dataclasses.fields(self) if f.name.endswith("_mask"))


@dataclass
class SftBatch(Batch):
    """(prompt, reference response) rows."""

    response_ids: Tensor
    response_mask: Tensor


@dataclass
class PairBatch(Batch):
    """Offline preference pairs: ``chosen`` preferred to ``rejected``."""

    chosen_ids: Tensor
    chosen_mask: Tensor
    rejected_ids: Tensor
    rejected_mask: Tensor
    ref_chosen: Tensor | None = None
    """pi_0's sequence log-probs of the chosen responses, when computed once for the whole batch."""
    ref_rejected: Tensor | None = None
    """pi_0's sequence log-probs of the rejected responses (with ``ref_chosen``)."""


@dataclass
class SampleGroup(Batch):
    """``group`` responses per prompt sampled from the policy (prompts repeated), with pi_0's
    sequence and token log-probs at the sampling ``temperature``."""

    response_ids: Tensor
    response_mask: Tensor
    ref_logp: Tensor
    ref_token_logp: Tensor
    temperature: float = 1.0
    group: int = 1


@dataclass
class OfflinePairBatch(PairBatch):
    """Offline pairs plus, when the loss has an online KL term, samples of the policy (eq. 5)."""

    online: SampleGroup | None = None

    def token_count(self) -> Tensor:
        """Real tokens of the pairs, plus those of the sampled responses."""
        extra = self.online.response_mask.sum() if self.online is not None else 0
        return super().token_count() + extra


@dataclass
class OnlinePairBatch(Batch):
    """Algorithm 1: two responses per prompt sampled from pi_t, with their reward-model scores
    and the sequence log-probs of pi_0 (``ref*``) and of the sampler pi_t (``old*``)."""

    response1_ids: Tensor
    response1_mask: Tensor
    response2_ids: Tensor
    response2_mask: Tensor
    score1: Tensor
    score2: Tensor
    ref1: Tensor
    ref2: Tensor
    old1: Tensor
    old2: Tensor
    temperature: float = 1.0


@dataclass
class RolloutBatch(Batch):
    """One PPO rollout: sampled responses with the sampler's token log-probs, the value model's
    values, GAE advantages and returns."""

    response_ids: Tensor
    response_mask: Tensor
    old_logp: Tensor
    old_values: Tensor
    adv: Tensor
    returns: Tensor
    temperature: float = 1.0
