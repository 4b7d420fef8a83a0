r"""Batch losses of every stage, as pure functions of models and typed batches.

Every formula comes from :mod:`finitepref.losses`; this module only computes the sequence
log-probabilities and rewards those functions take, and averages over the batch. Every batch
loss has one signature, read by :mod:`finitepref.llm.registry`::

    loss(models: run.Models, batch: batches.<Batch>, settings: settings.<Settings>)
        -> (scalar loss with gradient, {metric name: detached value})

* ``sft_loss``: token-averaged negative log-likelihood of reference responses.
* ``reward_loss``: Bradley-Terry, eq. (9), on the reward model's scalar scores.
* ``dpo_batch_loss``: eq. (6).
* ``ipo_batch_loss``: IPO (Azar et al. 2023, eq. 17); ``chipo_batch_loss``: chi-PO (Huang et al.
  2024, Algorithm 1). Beyond the paper (issue 14), on the same offline pairs as DPO.
* ``pmle_batch_loss``: eq. (4) on offline pairs, plus the KL regularizer of eq. (5) on responses
  sampled online from the policy (see :func:`kl_penalty_surrogate`).
* ``distill_batch_loss``: eq. (11) on two online samples per prompt, plus eq. (12)'s KL term.
* ``rebel_batch_loss``: eq. (10).
* ``ppo_batch_loss`` / ``ppo_losses``: clipped PPO on per-token rewards :func:`finitepref.losses.shaped_reward`
  (eq. 1 with ``gamma = 0``; eq. 16's reverse KL with ``gamma > 0``) plus the score at the last token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from finitepref.losses import (
    bradley_terry_loss,
    chi_link_margin,
    chipo_loss,
    distill_loss,
    dpo_loss,
    ipo_loss,
    pmle_loss,
    rebel_loss,
    shaped_reward,
)

from .batches import Batch, OfflinePairBatch, OnlinePairBatch, PairBatch, RolloutBatch, SftBatch
from .logprobs import concat, pair_sequence_logprobs, sequence_logprobs, stack_responses
from .settings import (
    ChipoSettings,
    DistillSettings,
    DpoSettings,
    IpoSettings,
    NoSettings,
    PmleSettings,
    PpoSettings,
    RebelSettings,
)

if TYPE_CHECKING:
    from .run import Models

Tensor = torch.Tensor


def sft_loss(models: Models, batch: SftBatch, settings: NoSettings) -> tuple[Tensor, dict]:
    """Token-averaged negative log-likelihood of the reference responses."""
    out = sequence_logprobs(models.policy, batch.prompt_ids, batch.prompt_mask, batch.response_ids,
                            batch.response_mask)
    n_tok = out["mask"].sum().clamp(min=1)
    loss = -out["token_logp"].sum() / n_tok
    return loss, {"loss": loss.detach(), "nll_per_token": loss.detach()}


def reward_loss(models: Models, batch: PairBatch, settings: NoSettings) -> tuple[Tensor, dict]:
    """Bradley-Terry loss, eq. (9), of ``models.reward_model`` (the :class:`~.models.RewardModel`
    being trained)."""
    rm = models.reward_model
    r_plus, r_minus = rm.raw_scores(*_pair_rows(batch)).chunk(2)
    loss = bradley_terry_loss(r_plus, r_minus).mean()
    acc = (r_plus > r_minus).float().mean()
    return loss, {"loss": loss.detach(), "accuracy": acc, "reward": ((r_plus + r_minus) / 2).mean().detach()}


def _pair_rows(batch: PairBatch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return stack_responses(batch.prompt_ids, batch.prompt_mask, batch.chosen_ids, batch.chosen_mask,
                           batch.rejected_ids, batch.rejected_mask)


def pair_logprobs(model, batch: PairBatch) -> tuple[Tensor, Tensor]:
    """Sequence log-probs of the chosen and the rejected responses (one forward of both, the prompt
    read once: :func:`~.logprobs.pair_sequence_logprobs`)."""
    return pair_sequence_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.chosen_ids, batch.chosen_mask,
                                  batch.rejected_ids, batch.rejected_mask)


def reference_pair_logprobs(models: Models, batch: PairBatch) -> tuple[Tensor, Tensor]:
    """pi_0's sequence log-probs of the chosen and the rejected responses: the batch's own
    (``ref_chosen``, ``ref_rejected``, computed once per batch by the step) or one forward of both."""
    from .models import reference_of  # models imports config, which imports the registry

    if batch.ref_chosen is not None:
        return batch.ref_chosen, batch.ref_rejected
    with reference_of(models.policy, models.reference) as ref:
        return pair_logprobs(ref, batch)


def dpo_batch_loss(models: Models, batch: PairBatch, settings: DpoSettings) -> tuple[Tensor, dict]:
    r"""DPO, eq. (6), averaged over the pairs.

    Parameters
    ----------
    models : Models
        ``policy`` (trained) and ``reference`` (pi_0; ``None`` with LoRA: adapters disabled).
    batch : PairBatch
        Prompts with chosen :math:`a^+` and rejected :math:`a^-` responses.
    settings : DpoSettings
        :math:`\beta`.

    Returns
    -------
    loss : Tensor
        Mean of :math:`-\ln\sigma(\beta[(\ln\pi(a^+) - \ln\pi_0(a^+)) - (\ln\pi(a^-) - \ln\pi_0(a^-))])`.
    metrics : dict
        ``loss``, ``margin`` (the bracket without beta) and ``accuracy`` (share of positive margins).
    """
    return _log_ratio_pair_loss(models, batch, lambda *logps: dpo_loss(*logps, settings.beta))


def _log_ratio_pair_loss(models: Models, batch: PairBatch, per_pair) -> tuple[Tensor, dict]:
    r"""Mean of ``per_pair(logp_plus, logp_minus, ref_plus, ref_minus)`` with the log-ratio margin
    :math:`(\ln\pi(a^+) - \ln\pi_0(a^+)) - (\ln\pi(a^-) - \ln\pi_0(a^-))` as metrics (DPO, IPO)."""
    ref_plus, ref_minus = reference_pair_logprobs(models, batch)
    logp_plus, logp_minus = pair_logprobs(models.policy, batch)
    losses = per_pair(logp_plus, logp_minus, ref_plus, ref_minus)
    margin = (logp_plus - ref_plus) - (logp_minus - ref_minus)
    return losses.mean(), {"loss": losses.mean().detach(), "margin": margin.mean().detach(),
                           "accuracy": (margin > 0).float().mean()}


def ipo_batch_loss(models: Models, batch: PairBatch, settings: IpoSettings) -> tuple[Tensor, dict]:
    """IPO, mean over pairs of (h - 1/(2 tau))^2 with h the policy/pi_0 log-ratio margin (sequence
    log-probs, no length normalisation, as eq. 17 and SFFD's ``dpo.py --ipo``)."""
    return _log_ratio_pair_loss(models, batch, lambda *logps: ipo_loss(*logps, settings.tau))


def chipo_batch_loss(models: Models, batch: PairBatch, settings: ChipoSettings) -> tuple[Tensor, dict]:
    """chi-PO, mean over pairs of -ln sigma(clip_{2 r_max}[beta phi(pi/pi_0)(a+) - beta phi(pi/pi_0)(a-)]),
    phi(z) = z + ln z."""
    ref_plus, ref_minus = reference_pair_logprobs(models, batch)
    logp_plus, logp_minus = pair_logprobs(models.policy, batch)
    losses = chipo_loss(logp_plus, logp_minus, ref_plus, ref_minus, settings.beta, settings.r_max)
    margin = chi_link_margin(logp_plus.detach(), logp_minus.detach(), ref_plus, ref_minus, settings.beta)
    return losses.mean(), {"loss": losses.mean().detach(), "margin": margin.mean(),
                           "accuracy": (margin > 0).float().mean(),
                           "clipped": (margin.abs() > 2 * settings.r_max).float().mean()}


def kl_penalty_surrogate(logp: Tensor, ref_logp: Tensor, beta: float, group: int, baseline: str,
                         old_logp: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""Score-function surrogate of :math:`\beta\,\mathrm{KL}(\pi(x)\|\pi_0(x))` on online samples.

    ``logp`` (N,) are sequence log-probs (with gradient) of responses sampled from the policy,
    ``group`` consecutive samples per prompt. The per-sample penalty is
    :math:`c = -\mathrm{shaped\_reward}(0, \ln\pi, \ln\pi_0, \beta, 0) = \beta(\ln\pi - \ln\pi_0)`,
    whose mean estimates :math:`\beta\,\mathrm{KL}`; since the samples depend on :math:`\pi`, the
    gradient of :math:`\mathbb{E}_\pi[c]` is :math:`\mathbb{E}_\pi[(c - b)\nabla\ln\pi]` for any
    baseline :math:`b` independent of the sample (here: the mean penalty of the other samples of the
    same prompt, ``leave_one_out``; or 0). Returns (surrogate whose gradient is that estimate,
    detached mean KL estimate :math:`\ln\pi - \ln\pi_0`).

    ``old_logp`` are the log-probs of the policy :math:`\pi_t` that drew the samples. After the
    first update of a rollout :math:`\pi \ne \pi_t`; each term is then weighted by the exact
    importance ratio :math:`w = \pi/\pi_t` (detached), so the gradient
    :math:`\mathbb{E}_{\pi_t}[w(c - b)\nabla\ln\pi]` stays unbiased for
    :math:`\nabla\beta\,\mathrm{KL}(\pi\|\pi_0)`. ``None`` means the samples come from
    :math:`\pi` itself (:math:`w = 1`).
    """
    c = -shaped_reward(torch.zeros_like(logp), logp.detach(), ref_logp, beta, 0.0)
    if baseline == "leave_one_out" and group > 1:
        grouped = c.view(-1, group)
        base = (grouped.sum(-1, keepdim=True) - grouped) / (group - 1)
        adv = (grouped - base).view(-1)
    else:
        adv = c
    if old_logp is not None:
        adv = adv * torch.exp(logp.detach() - old_logp)
    surrogate = (adv * logp).mean()
    kl = (logp.detach() - ref_logp).mean()
    return surrogate, kl


def pmle_batch_loss(models: Models, batch: OfflinePairBatch, settings: PmleSettings) -> tuple[Tensor, dict]:
    """Eq. (5): mean of eq. (4) over offline pairs + beta * KL estimated on ``batch.online``
    (samples of the policy; ignored when ``beta == 0``)."""
    logp_plus, logp_minus = pair_logprobs(models.policy, batch)
    loss = pmle_loss(logp_plus, logp_minus, settings.gamma).mean()
    metrics = {"pref_loss": loss.detach(), "margin": (logp_plus - logp_minus).mean().detach()}
    online = batch.online
    if settings.beta != 0 and online is not None:
        out = sequence_logprobs(models.policy, online.prompt_ids, online.prompt_mask, online.response_ids,
                                online.response_mask, online.temperature)
        sur, kl = kl_penalty_surrogate(out["logp"], online.ref_logp, settings.beta, online.group,
                                       settings.kl_baseline)
        loss = loss + sur
        metrics["kl"] = kl
    metrics["loss"] = loss.detach()
    return loss, metrics


def online_pair_logprobs(model, batch: OnlinePairBatch) -> tuple[Tensor, Tensor]:
    """Sequence log-probs of both sampled responses at the sampling temperature (one forward)."""
    return pair_sequence_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.response1_ids,
                                  batch.response1_mask, batch.response2_ids, batch.response2_mask, batch.temperature)


def distill_batch_loss(models: Models, batch: OnlinePairBatch, settings: DistillSettings) -> tuple[Tensor, dict]:
    r"""Eq. (12): eq. (11) on the pairs ``(a1, a2)`` with rewards ``score1, score2``, plus beta * KL
    estimated on the same online samples."""
    logp1, logp2 = online_pair_logprobs(models.policy, batch)
    loss = distill_loss(logp1, logp2, batch.score1, batch.score2, settings.gamma).mean()
    metrics = {"distill_loss": loss.detach()}
    if settings.beta != 0:
        logp = torch.stack([logp1, logp2], dim=1).view(-1)
        ref = torch.stack([batch.ref1, batch.ref2], dim=1).view(-1)
        old = torch.stack([batch.old1, batch.old2], dim=1).view(-1)
        sur, kl = kl_penalty_surrogate(logp, ref, settings.beta, 2, settings.kl_baseline, old_logp=old)
        loss = loss + sur
        metrics["kl"] = kl
    metrics["loss"] = loss.detach()
    return loss, metrics


def rebel_batch_loss(models: Models, batch: OnlinePairBatch, settings: RebelSettings) -> tuple[Tensor, dict]:
    """REBEL. ``rebel_anchor: sampler`` (Gao et al.'s code): log-ratios against pi_t regressed on the
    KL-shaped rewards R - beta (ln pi_t - ln pi_0) (eq. 1). ``reference``: eq. (10) as printed,
    log-ratios against pi_0 regressed on the plain scores (beta unused)."""
    if settings.rebel_anchor == "sampler":
        r1 = shaped_reward(batch.score1, batch.old1, batch.ref1, settings.beta, 0.0)
        r2 = shaped_reward(batch.score2, batch.old2, batch.ref2, settings.beta, 0.0)
        anchor1, anchor2 = batch.old1, batch.old2
    else:
        r1, r2, anchor1, anchor2 = batch.score1, batch.score2, batch.ref1, batch.ref2
    logp1, logp2 = online_pair_logprobs(models.policy, batch)
    loss = rebel_loss(logp1, logp2, anchor1, anchor2, r1, r2, settings.eta).mean()
    return loss, {"loss": loss.detach()}


# --------------------------------------------------------------------------- PPO


def per_token_rewards(score: Tensor, token_logp: Tensor, ref_token_logp: Tensor, mask: Tensor,
                      beta: float, gamma: float) -> Tensor:
    r"""Per-token rewards whose sum over the response is the shaped reward of eq. (1) / (16):
    :func:`~finitepref.losses.shaped_reward` applied token by token (the KL and entropy estimates
    are sums over tokens, i.e. sequence-level), with the score ``R(x, a)`` added at the last real
    token."""
    m = mask.to(token_logp.dtype)
    rew = shaped_reward(torch.zeros_like(token_logp), token_logp, ref_token_logp, beta, gamma) * m
    last = (mask.sum(-1) - 1).clamp(min=0)
    return rew.scatter_add(1, last.unsqueeze(-1), score.to(rew.dtype).unsqueeze(-1))


def gae(rewards: Tensor, values: Tensor, mask: Tensor, discount: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over right-padded responses; returns (advantages, returns)."""
    m = mask.to(rewards.dtype)
    values = values * m
    length = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for pos in reversed(range(length)):
        next_v = values[:, pos + 1] if pos + 1 < length else torch.zeros_like(last)
        delta = rewards[:, pos] + discount * next_v - values[:, pos]
        last = delta + discount * lam * last * (m[:, pos + 1] if pos + 1 < length else 0.0)
        adv[:, pos] = last * m[:, pos]
    return adv, adv + values


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Advantages normalised to mean 0 and variance 1 over the real tokens."""
    m = mask.to(x.dtype)
    mean = (x * m).sum() / m.sum()
    var = (((x - mean) * m) ** 2).sum() / m.sum().clamp(min=1)
    return (x - mean) * torch.rsqrt(var + eps) * m


def token_values(critic, batch: Batch) -> Tensor:
    """The value model's prediction at each response position, ``(rows, response length)``."""
    from .models import token_scores

    ids, mask, pos, _, _ = concat(batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    n_prompt, n_response = batch.prompt_ids.shape[1], batch.response_ids.shape[1]
    return token_scores(critic, ids, mask, pos)[:, n_prompt - 1:n_prompt + n_response - 1].float()


def ppo_losses(new_logp: Tensor, old_logp: Tensor, adv: Tensor, values: Tensor, old_values: Tensor,
               returns: Tensor, mask: Tensor, clip: float, vclip: float) -> tuple[Tensor, Tensor, dict]:
    """Clipped policy-gradient and value losses, token-averaged."""
    m = mask.to(new_logp.dtype)
    n = m.sum().clamp(min=1)
    ratio = torch.exp(new_logp - old_logp)
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    pg_loss = (pg * m).sum() / n
    v_clipped = old_values + (values - old_values).clamp(-vclip, vclip)
    vf = 0.5 * torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2)
    vf_loss = (vf * m).sum() / n
    return pg_loss, vf_loss, {"clipfrac": ((((ratio - 1).abs() > clip).float() * m).sum() / n).detach(),
                              "approx_kl": ((0.5 * (new_logp - old_logp) ** 2 * m).sum() / n).detach()}


def ppo_batch_loss(models: Models, batch: RolloutBatch, settings: PpoSettings) -> tuple[Tensor, dict]:
    """PPO's loss on one mini-batch of a rollout: policy gradient + ``vf_coef`` x value loss."""
    new = sequence_logprobs(models.policy, batch.prompt_ids, batch.prompt_mask, batch.response_ids,
                            batch.response_mask, batch.temperature)
    values = token_values(models.critic, batch)
    pg, vf, metrics = ppo_losses(new["token_logp"], batch.old_logp, batch.adv, values, batch.old_values,
                                 batch.returns, new["mask"], settings.clip_ratio, settings.cliprange_value)
    loss = pg + settings.vf_coef * vf
    metrics.update(loss=loss.detach(), pg_loss=pg.detach(), vf_loss=vf.detach())
    return loss, metrics
