r"""Batch losses of every stage, as pure functions of models and token tensors.

Every formula comes from :mod:`finitepref.losses`; this module only computes the sequence
log-probabilities and rewards those functions take, and averages over the batch.

* ``sft_loss``: token-averaged negative log-likelihood of reference responses.
* ``reward_loss``: Bradley-Terry, eq. (9), on the reward model's scalar scores.
* ``dpo_batch_loss``: eq. (6).
* ``pmle_batch_loss``: eq. (4) on offline pairs, plus the KL regularizer of eq. (5) on responses
  sampled online from the policy (see :func:`kl_penalty_surrogate`).
* ``distill_batch_loss``: eq. (11) on two online samples per prompt, plus eq. (12)'s KL term.
* ``rebel_batch_loss``: eq. (10).
* ``ppo_losses``: clipped PPO on per-token rewards :func:`finitepref.losses.shaped_reward`
  (eq. 1 with ``gamma = 0``; eq. 16's reverse KL with ``gamma > 0``) plus the score at the last token.
"""

from __future__ import annotations

import torch

from finitepref.losses import (
    bradley_terry_loss,
    distill_loss,
    dpo_loss,
    pmle_loss,
    rebel_loss,
    shaped_reward,
)

from .logprobs import sequence_logprobs

Tensor = torch.Tensor


def sft_loss(model, b: dict) -> tuple[Tensor, dict]:
    out = sequence_logprobs(model, b["prompt_ids"], b["prompt_mask"], b["response_ids"], b["response_mask"])
    n_tok = out["mask"].sum().clamp(min=1)
    loss = -out["token_logp"].sum() / n_tok
    return loss, {"loss": loss.detach(), "nll_per_token": loss.detach()}


def reward_loss(reward_model, b: dict) -> tuple[Tensor, dict]:
    """Bradley-Terry loss, eq. (9); ``reward_model`` is a :class:`~.models.RewardModel`."""
    r_plus = reward_model.raw_scores(b["prompt_ids"], b["prompt_mask"], b["chosen_ids"], b["chosen_mask"])
    r_minus = reward_model.raw_scores(b["prompt_ids"], b["prompt_mask"], b["rejected_ids"], b["rejected_mask"])
    loss = bradley_terry_loss(r_plus, r_minus).mean()
    acc = (r_plus > r_minus).float().mean()
    return loss, {"loss": loss.detach(), "accuracy": acc, "reward": ((r_plus + r_minus) / 2).mean().detach()}


def pair_logprobs(model, b: dict, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    lp = sequence_logprobs(model, b["prompt_ids"], b["prompt_mask"], b["chosen_ids"], b["chosen_mask"], temperature)
    lm = sequence_logprobs(model, b["prompt_ids"], b["prompt_mask"], b["rejected_ids"], b["rejected_mask"],
                           temperature)
    return lp["logp"], lm["logp"]


def dpo_batch_loss(model, b: dict, ref_plus: Tensor, ref_minus: Tensor, beta: float) -> tuple[Tensor, dict]:
    """Eq. (6): ``ref_*`` are the reference's sequence log-probs of the same pairs."""
    logp_plus, logp_minus = pair_logprobs(model, b)
    losses = dpo_loss(logp_plus, logp_minus, ref_plus, ref_minus, beta)
    margin = (logp_plus - ref_plus) - (logp_minus - ref_minus)
    return losses.mean(), {"loss": losses.mean().detach(), "margin": margin.mean().detach(),
                           "accuracy": (margin > 0).float().mean()}


def kl_penalty_surrogate(logp: Tensor, ref_logp: Tensor, beta: float, group: int, baseline: str) -> tuple[Tensor, Tensor]:
    r"""Score-function surrogate of :math:`\beta\,\mathrm{KL}(\pi(x)\|\pi_0(x))` on online samples.

    ``logp`` (N,) are sequence log-probs (with gradient) of responses sampled from the policy,
    ``group`` consecutive samples per prompt. The per-sample penalty is
    :math:`c = -\mathrm{shaped\_reward}(0, \ln\pi, \ln\pi_0, \beta, 0) = \beta(\ln\pi - \ln\pi_0)`,
    whose mean estimates :math:`\beta\,\mathrm{KL}`; since the samples depend on :math:`\pi`, the
    gradient of :math:`\mathbb{E}_\pi[c]` is :math:`\mathbb{E}_\pi[(c - b)\nabla\ln\pi]` for any
    baseline :math:`b` independent of the sample (here: the mean penalty of the other samples of the
    same prompt, ``leave_one_out``; or 0). Returns (surrogate whose gradient is that estimate,
    detached mean KL estimate :math:`\ln\pi - \ln\pi_0`).
    """
    c = -shaped_reward(torch.zeros_like(logp), logp.detach(), ref_logp, beta, 0.0)
    if baseline == "leave_one_out" and group > 1:
        g = c.view(-1, group)
        base = (g.sum(-1, keepdim=True) - g) / (group - 1)
        adv = (g - base).view(-1)
    else:
        adv = c
    surrogate = (adv * logp).mean()
    kl = (logp.detach() - ref_logp).mean()
    return surrogate, kl


def pmle_batch_loss(model, b: dict, gamma: float, beta: float = 0.0, online: dict | None = None,
                    kl_baseline: str = "leave_one_out") -> tuple[Tensor, dict]:
    """Eq. (5): mean of eq. (4) over offline pairs + beta * KL estimated on ``online`` samples.

    ``online`` holds ``prompt_ids/mask`` (each prompt repeated ``group`` times), sampled
    ``response_ids/mask``, ``ref_logp``, ``temperature`` and ``group``; ignored when ``beta == 0``.
    """
    logp_plus, logp_minus = pair_logprobs(model, b)
    losses = pmle_loss(logp_plus, logp_minus, gamma)
    loss = losses.mean()
    metrics = {"pref_loss": loss.detach(), "margin": (logp_plus - logp_minus).mean().detach()}
    if beta != 0 and online is not None:
        out = sequence_logprobs(model, online["prompt_ids"], online["prompt_mask"], online["response_ids"],
                                online["response_mask"], online["temperature"])
        sur, kl = kl_penalty_surrogate(out["logp"], online["ref_logp"], beta, online["group"], kl_baseline)
        loss = loss + sur
        metrics["kl"] = kl
    metrics["loss"] = loss.detach()
    return loss, metrics


def distill_batch_loss(model, b: dict, r1: Tensor, r2: Tensor, gamma: float, beta: float = 0.0,
                       ref1: Tensor | None = None, ref2: Tensor | None = None, temperature: float = 1.0,
                       kl_baseline: str = "leave_one_out") -> tuple[Tensor, dict]:
    r"""Eq. (12): eq. (11) on pairs ``(a1, a2)`` (``response1_*``, ``response2_*`` in ``b``) with
    rewards ``r1, r2``, plus beta * KL estimated on the same online samples (needs ``ref1, ref2``).
    Log-probs use ``temperature`` (the sampling temperature)."""
    o1 = sequence_logprobs(model, b["prompt_ids"], b["prompt_mask"], b["response1_ids"], b["response1_mask"],
                           temperature)
    o2 = sequence_logprobs(model, b["prompt_ids"], b["prompt_mask"], b["response2_ids"], b["response2_mask"],
                           temperature)
    losses = distill_loss(o1["logp"], o2["logp"], r1, r2, gamma)
    loss = losses.mean()
    metrics = {"distill_loss": loss.detach()}
    if beta != 0:
        logp = torch.stack([o1["logp"], o2["logp"]], dim=1).view(-1)
        ref = torch.stack([ref1, ref2], dim=1).view(-1)
        sur, kl = kl_penalty_surrogate(logp, ref, beta, 2, kl_baseline)
        loss = loss + sur
        metrics["kl"] = kl
    metrics["loss"] = loss.detach()
    return loss, metrics


def rebel_batch_loss(model, b: dict, r1: Tensor, r2: Tensor, anchor1: Tensor, anchor2: Tensor, eta: float,
                     temperature: float = 1.0) -> tuple[Tensor, dict]:
    """Eq. (10) with anchors (pi_0's or the sampler's log-probs) and (KL-shaped) rewards given."""
    o1 = sequence_logprobs(model, b["prompt_ids"], b["prompt_mask"], b["response1_ids"], b["response1_mask"],
                           temperature)
    o2 = sequence_logprobs(model, b["prompt_ids"], b["prompt_mask"], b["response2_ids"], b["response2_mask"],
                           temperature)
    loss = rebel_loss(o1["logp"], o2["logp"], anchor1, anchor2, r1, r2, eta).mean()
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
    T = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_v = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + discount * next_v - values[:, t]
        last = delta + discount * lam * last * (m[:, t + 1] if t + 1 < T else 0.0)
        adv[:, t] = last * m[:, t]
    return adv, adv + values


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    m = mask.to(x.dtype)
    mean = (x * m).sum() / m.sum()
    var = (((x - mean) * m) ** 2).sum() / m.sum().clamp(min=1)
    return (x - mean) * torch.rsqrt(var + eps) * m


def ppo_losses(new_logp: Tensor, old_logp: Tensor, adv: Tensor, values: Tensor, old_values: Tensor,
               returns: Tensor, mask: Tensor, clip: float, vclip: float) -> tuple[Tensor, Tensor, dict]:
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
