"""One ``step(run, batch) -> (metrics, tokens)`` per loop kind of :class:`~.registry.Loop`.

* :func:`offline_step`: one optimiser update per global batch of dataset rows, accumulated over
  micro-batches (SFT, reward model eq. 9, DPO eq. 6, PMLE eq. 5);
* :func:`online_pair_step`: Algorithm 1 -- two samples per prompt from pi_t, reward-model scores,
  then ``num_ppo_epochs x num_mini_batches`` updates (distillation eq. 12, REBEL eq. 10);
* :func:`ppo_step`: one sample per prompt, per-token shaped rewards (eq. 1 / eq. 16), GAE, clipped
  PPO updates of policy and value model.

Each calls the algorithm's batch loss ``record.loss(models, batch, settings)``.
"""

from __future__ import annotations

import dataclasses

import torch

from .algorithms import gae, masked_whiten, per_token_rewards, token_values
from .batches import Batch, OnlinePairBatch, RolloutBatch, SampleGroup
from .logprobs import sequence_logprobs
from .models import example_seed, reference_logprobs
from .registry import Loop
from .run import Run


def mean_metrics(per_micro_batch: list[dict]) -> dict:
    """Mean of each metric over micro-batches (in float64), keeping the first batch's key order."""
    keys = per_micro_batch[0].keys()
    return {k: float(torch.stack([torch.as_tensor(m[k], dtype=torch.float64) for m in per_micro_batch]).mean())
            for k in keys}


def sample_seeds(run: Run, positions: list[int], group: int) -> list[int]:
    """One sampling seed per response: (train.seed, step, position in the global batch, sample)."""
    return [example_seed(run.cfg.train.seed, run.progress.step, pos, k) for pos in positions for k in range(group)]


def sample_group(run: Run, batch: Batch, group: int, positions: list[int] | None = None) -> SampleGroup:
    """``group`` samples per prompt from the current policy (at the training temperature
    ``generation.temperature``), with pi_0's log-probs at that temperature. ``positions``: the rows'
    positions in the global batch (default: this process's, :attr:`Run.positions`)."""
    temperature = run.cfg.generation.temperature
    prompt_ids = batch.prompt_ids.repeat_interleave(group, 0)
    prompt_mask = batch.prompt_mask.repeat_interleave(group, 0)
    seeds = sample_seeds(run, run.positions if positions is None else positions, group)
    parts = []
    for rows in chunks(prompt_ids.shape[0], run.cfg.generation.batch_size):  # generation micro-batches
        r_ids, r_mask = run.models.sampler.sample(run.models.policy, prompt_ids[rows], prompt_mask[rows],
                                                  temperature, seeds=seeds[rows])
        ref = reference_logprobs(run.models.policy, run.models.reference, prompt_ids[rows], prompt_mask[rows],
                                 r_ids, r_mask, temperature)
        parts.append((r_ids, r_mask, ref["logp"], ref["token_logp"]))
    response_ids, response_mask, ref_logp, ref_token_logp = (cat_rows([p[k] for p in parts]) for k in range(4))
    return SampleGroup(prompt_ids, prompt_mask, response_ids, response_mask, ref_logp, ref_token_logp,
                       temperature, group)


def chunks(n: int, size: int | None) -> list[slice]:
    """Row slices of at most ``size`` rows (one slice of all ``n`` when ``size`` is ``None``)."""
    size = size or max(n, 1)
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def cat_rows(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along rows, right-padding 2-d tensors with zeros to the widest."""
    if len(tensors) == 1:
        return tensors[0]
    if tensors[0].dim() == 2:
        width = max(t.shape[1] for t in tensors)
        tensors = [torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in tensors]
    return torch.cat(tensors)


def _with_kl_samples(run: Run, batch: Batch, positions: list[int]) -> Batch:
    """Offline pairs plus policy samples when the loss has an online KL term with beta > 0 (eq. 5)."""
    group = run.record.kl_samples_per_prompt
    if group and getattr(run.settings, "beta", 0) != 0:
        return dataclasses.replace(batch, online=sample_group(run, batch, group, positions))
    return batch


def _with_pair_reference(run: Run, batch: Batch) -> Batch:
    """pi_0's log-probs of every pair of this process's batch, in one forward, when the loss uses them."""
    if not run.record.pair_reference:
        return batch
    from .algorithms import reference_pair_logprobs

    ref_chosen, ref_rejected = reference_pair_logprobs(run.models, batch)
    return dataclasses.replace(batch, ref_chosen=ref_chosen, ref_rejected=ref_rejected)


def offline_step(run: Run, batch: Batch) -> tuple[dict, int]:
    """One optimiser update on this process's share of a global batch of dataset rows."""
    batch = _with_pair_reference(run, batch)
    size = run.cfg.train.micro_batch_size
    per_micro, n_tokens = [], 0
    for j in range(run.n_micro):
        micro = batch.rows(slice(j * size, (j + 1) * size))
        with run.no_sync(j == run.n_micro - 1):
            micro = _with_kl_samples(run, micro, run.positions[j * size:(j + 1) * size])
            loss, metrics = run.record.loss(run.models, micro, run.settings)
            run.accelerator.backward(loss / run.n_micro)
        n_tokens = n_tokens + micro.token_count()  # a device tensor: read once, after the loop
        per_micro.append(metrics)
    run.optimizer_step()
    return mean_metrics(per_micro), int(n_tokens)


def minibatch_updates(run: Run, batch: Batch) -> list[dict]:
    """``num_ppo_epochs`` passes over a shuffled online batch in ``num_mini_batches`` optimiser steps,
    each accumulated over micro-batches (gradient sync on the last); returns per-micro-batch metrics.

    Each micro-batch's loss is weighted by its share of the mini-batch. The shuffling stream is a
    function of seed, step and process, so resuming is exact.
    """
    settings, size, n_rows = run.settings, run.cfg.train.micro_batch_size, len(batch)
    per_mini = n_rows // settings.num_mini_batches
    per_micro = []
    generator = torch.Generator().manual_seed((run.cfg.train.seed * 7919 + run.progress.step) * 64
                                              + run.accelerator.process_index)
    for _ in range(settings.num_ppo_epochs):
        order = torch.randperm(n_rows, generator=generator).to(run.device)
        for k in range(settings.num_mini_batches):
            mini = order[k * per_mini:(k + 1) * per_mini]
            n_micro = -(-per_mini // size)
            for j in range(n_micro):
                rows = mini[j * size:(j + 1) * size]
                with run.no_sync(j == n_micro - 1):
                    loss, metrics = run.record.loss(run.models, batch.rows(rows), settings)
                    run.accelerator.backward(loss * (rows.shape[0] / per_mini))
                per_micro.append(metrics)
            run.optimizer_step()
    return per_micro


def _rollout_metrics(scores, old, samples: SampleGroup) -> dict:
    length = samples.response_ids.shape[1]
    return {"reward": float(scores.mean()), "kl": float((old["logp"] - samples.ref_logp).mean()),
            "entropy": float(old["entropy"].sum(-1).mean()),
            "eos_rate": float((samples.response_mask.sum(-1) < length).float().mean())}


@torch.no_grad()
def _score_samples(run: Run, samples: SampleGroup) -> tuple[torch.Tensor, dict]:
    """Reward-model scores and the sampler's (pi_t's) log-probs of ``samples``."""
    texts = [run.data.prompt_texts[r] for r in run.rows for _ in range(samples.group)] if run.rows else None
    scores = []
    for rows in chunks(len(samples), run.cfg.reward.batch_size):  # scoring micro-batches
        scores.append(run.models.reward_model.scores(samples.prompt_ids[rows], samples.prompt_mask[rows],
                                                     samples.response_ids[rows], samples.response_mask[rows],
                                                     texts[rows] if texts else None).to(run.device))
    parts = [sequence_logprobs(run.models.policy, samples.prompt_ids[rows], samples.prompt_mask[rows],
                               samples.response_ids[rows], samples.response_mask[rows], samples.temperature,
                               with_entropy=True) for rows in chunks(len(samples), run.cfg.generation.batch_size)]
    return torch.cat(scores), {key: cat_rows([p[key] for p in parts]) for key in parts[0]}


def online_pair_step(run: Run, batch: Batch) -> tuple[dict, int]:
    """Algorithm 1: two samples per prompt from pi_t, rewards, then epochs x mini-batches of updates."""
    samples = sample_group(run, batch, group=2)
    scores, old = _score_samples(run, samples)
    n, length = len(batch), samples.response_ids.shape[1]

    def first_second(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        paired = t.view(n, 2, length) if t.dim() == 2 else t.view(n, 2)
        return paired[:, 0], paired[:, 1]

    ids1, ids2 = first_second(samples.response_ids)
    mask1, mask2 = first_second(samples.response_mask)
    pair = OnlinePairBatch(batch.prompt_ids, batch.prompt_mask, ids1, mask1, ids2, mask2, *first_second(scores),
                           *first_second(samples.ref_logp), *first_second(old["logp"]),
                           temperature=samples.temperature)
    metrics = mean_metrics(minibatch_updates(run, pair))
    metrics.update(_rollout_metrics(scores, old, samples))
    return metrics, int(samples.prompt_mask.sum() + samples.response_mask.sum())


def ppo_step(run: Run, batch: Batch) -> tuple[dict, int]:
    """PPO on per-token shaped rewards (eq. 1 with gamma = 0: RLHF; eq. 16: reverse KL)."""
    settings = run.settings
    samples = sample_group(run, batch, group=1)
    scores, old = _score_samples(run, samples)
    with torch.no_grad():
        old_values = token_values(run.models.critic, samples)
        rewards = per_token_rewards(scores, old["token_logp"], samples.ref_token_logp, old["mask"], settings.beta,
                                    settings.entropy_coef)
        adv, returns = gae(rewards, old_values, old["mask"], settings.discount, settings.gae_lambda)
        if settings.whiten_advantages:
            adv = masked_whiten(adv, old["mask"])
    rollout = RolloutBatch(samples.prompt_ids, samples.prompt_mask, samples.response_ids, samples.response_mask,
                           old["token_logp"], old_values, adv, returns, temperature=samples.temperature)
    metrics = mean_metrics(minibatch_updates(run, rollout))
    rollout_metrics = _rollout_metrics(scores, old, samples)
    metrics.update(reward=rollout_metrics["reward"], kl=rollout_metrics["kl"], entropy=rollout_metrics["entropy"],
                   shaped_reward=float(rewards.sum(-1).mean()), eos_rate=rollout_metrics["eos_rate"])
    return metrics, int(samples.prompt_mask.sum() + samples.response_mask.sum())


STEPS = {Loop.OFFLINE: offline_step, Loop.ONLINE_PAIRS: online_pair_step, Loop.PPO: ppo_step}
"""The step function of each loop kind."""


def input_batch(run: Run, columns: dict) -> Batch:
    """The typed batch a step takes from dataset columns: the loss's batch offline, prompts online."""
    batch_type = run.record.batch if run.record.loop is Loop.OFFLINE else Batch
    return batch_type.from_mapping(columns)
