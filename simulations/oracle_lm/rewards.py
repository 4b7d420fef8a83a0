r"""The three reward models of the benchmark, and their exact fidelity.

* *standard*: a scalar head on pi0's network trained by eq. (9) (the trainer's ``reward`` stage),
  early-stopped on held-out pairs carved out of the same n;
* *realizable*: :math:`\hat R = \gamma \log \pi_\phi`, with :math:`\pi_\phi` of pi*'s architecture fitted by
  eq. (9) on the same pairs (eq. 9 with this reward class is PMLE without its KL term, eq. 4, which the
  trainer's ``pmle`` stage with beta = 0 minimises), early-stopped the same way;
* *oracle*: :math:`\hat R = \gamma \ln \pi^*`.

The last two are served to the trainer as sequence-classification reward models with custom code
(:mod:`.logprob_reward`), so that PPO can initialise its critic from them.
Fidelity is exact: the population preference log-loss of eq. (9) under the world's pair law,
beside its Bayes-optimal value (that of :math:`\gamma\ln\pi^*`), and the correlation of
:math:`\hat R` with :math:`\gamma\ln\pi^*`, both centred per prompt under :math:`\mu`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, log_expit

from finitepref.llm import oracle

from . import logprob_reward
from .world import World

STANDARD, REALIZABLE, ORACLE = "standard", "realizable", "oracle"


@dataclass(frozen=True)
class RewardSpec:
    """A reward model as the trainer reads it: its folder and kind."""

    path: Path
    remote: bool
    """Custom code (:mod:`.logprob_reward`), loaded with ``trust_remote_code``."""

    def section(self) -> dict:
        """The trainer config's ``reward:`` section."""
        return {"model": str(self.path), "kind": "sequence_classification", "trust_remote_code": self.remote,
                "missing_eos_penalty": None, "normalize": True}


# ---------------------------------------------------------------------------- exact fidelity
def _pair_terms(world: World, reward: np.ndarray | None, chunk: int = 256) -> float:
    """Sum over x, a, b of D mu_a mu_b times the log-loss of eq. (9) (reward) or the binary entropy of P* (None)."""
    g = world.cfg.gamma
    total = 0.0
    for x, d in enumerate(world.prompt_probs):
        mu = np.exp(world.logp0[x] - np.logaddexp.reduce(world.logp0[x]))
        s = g * world.logp_star[x]
        for i in range(0, len(mu), chunk):
            z_star = s[i:i + chunk, None] - s[None, :]  # logit of P*(a > b)
            p = expit(z_star)
            if reward is None:
                loss = -(p * log_expit(z_star) + (1 - p) * log_expit(-z_star))
            else:
                z = reward[x, i:i + chunk, None] - reward[x, None, :]
                loss = -(p * log_expit(z) + (1 - p) * log_expit(-z))
            total += d * float(mu[i:i + chunk] @ loss @ mu)
    return total


def bayes_logloss(world: World) -> float:
    r"""The Bayes-optimal preference log-loss of the world: :math:`E_{x,a,b}[h(P^*(a \succ b|x))]`, h the binary entropy."""
    return _pair_terms(world, None)


def pair_logloss(world: World, reward: np.ndarray) -> float:
    """Exact population log-loss of eq. (9) of a reward table (X, A) under the world's pair law."""
    return _pair_terms(world, np.asarray(reward, dtype=np.float64))


def heldout_logloss(reward: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """Mean log-loss of eq. (9) on sampled (x, winner, loser) pairs."""
    x, w, lo = pairs
    return float(-log_expit(reward[x, w] - reward[x, lo]).mean())


def centred_correlation(world: World, reward: np.ndarray) -> float:
    r"""Correlation of :math:`\hat R` with :math:`\gamma\ln\pi^*` under :math:`D\times\mu`, each centred per prompt."""
    mu = np.exp(world.logp0 - np.logaddexp.reduce(world.logp0, axis=1, keepdims=True))
    w = world.prompt_probs[:, None] * mu
    r = reward - (mu * reward).sum(1, keepdims=True)
    s = world.cfg.gamma * world.logp_star
    s = s - (mu * s).sum(1, keepdims=True)
    return float((w * r * s).sum() / np.sqrt((w * r * r).sum() * (w * s * s).sum()))


def implied_kl(world: World, reward: np.ndarray) -> float:
    r"""KL(pi*||pi~) of the LM the reward model implies, :math:`\tilde\pi \propto e^{\hat R/\gamma}` (eq. 8)."""
    implied = reward / world.cfg.gamma
    implied = implied - np.logaddexp.reduce(implied, axis=1, keepdims=True)
    return float(world.prompt_probs @ oracle.kl_rows(world.logp_star, implied))


def fidelity(world: World, reward: np.ndarray, heldout) -> dict:
    """Every fidelity number of one reward table."""
    return {"rm_logloss": pair_logloss(world, reward), "rm_heldout_logloss": heldout_logloss(reward, heldout),
            "rm_corr": centred_correlation(world, reward), "rm_implied_kl": implied_kl(world, reward)}


# ---------------------------------------------------------------------------- log-prob reward models
def save_logprob_reward(world: World, lm_dir: Path, out: Path) -> RewardSpec:
    """Folder of R-hat = gamma log pi for the causal LM in ``lm_dir`` (``remote_code``), normalised like the
    standard one: the mean reward of pi0's responses (a constant) is subtracted."""
    from finitepref.llm.models import load_causal_lm

    lm = load_causal_lm(str(lm_dir))
    config = lm.config
    config.auto_map = {"AutoModelForSequenceClassification": "logprob_reward.LogProbReward"}
    config.num_labels = 1
    config.response_length, config.alphabet, config.reward_gamma = world.cfg.length, world.alphabet, world.cfg.gamma
    model = logprob_reward.LogProbReward(config)
    missing, unexpected = model.load_state_dict({f"trunk.{k}": v for k, v in lm.state_dict().items()}, strict=False)
    assert missing == ["score.weight"] and not unexpected, (missing, unexpected)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    world.tok.save_pretrained(out)
    shutil.copy(logprob_reward.__file__, out / "logprob_reward.py")
    logp, _ = oracle.enumerate_policy(lm, world.prompts, world.cfg.length, world.alphabet, world.cfg.max_responses)
    mu = np.exp(world.logp0)
    bias = float(world.prompt_probs @ (mu * world.cfg.gamma * logp).sum(1) / world.prompt_probs.sum())
    (out / "reward_normalization.json").write_text(json.dumps({"mean_reference_score": bias}))
    return RewardSpec(out, remote=True)
