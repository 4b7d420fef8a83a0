r"""Exact evaluation of small language models whose response space can be enumerated.

The oracle-LM benchmark makes the target :math:`\pi^*` a real (tiny) causal LM. With responses
of fixed length :math:`L` over an alphabet :math:`V` of :math:`K` tokens there are :math:`K^L`
responses per prompt, few enough to enumerate; every quantity below is then an exact finite sum.

Convention on out-of-alphabet tokens. A causal LM puts some probability on tokens outside
:math:`V` (pad, EOS, unk). The *policy* that this module evaluates is the model's next-token
distribution renormalised over :math:`V` at every position (``restrict=True`` of
:func:`~finitepref.llm.logprobs.enumerate_logprobs`); this is exactly the law of generation with
the other tokens suppressed (``generation_config.suppress_tokens``), which is how the benchmark's
models sample. The mass that the unrestricted model puts outside the enumerated set,
:math:`1 - \sum_{a \in V^L} \pi_{\text{full}}(a \mid x)`, is reported separately as *leaked mass*.

Functions
---------
* :func:`enumerate_policy` -- restricted log-probs (X, A) and leaked mass (X,) in one pass.
* :func:`kl_rows`, :func:`entropy_rows` -- stable exact KL / entropy per prompt.
* :func:`preference_matrix` -- :math:`P_{\pi}(a \succ b \mid x)` of eq. (3), shape (A, A).
* :func:`exact_win_rate` -- :math:`E_{a\sim\pi, b\sim\pi_0} P_*(a \succ b \mid x)` per prompt.
* :func:`sample_preferences` -- n pairs (x, a+, a-) drawn exactly from the law of Section 2.
* :func:`sampled_win_rate` -- what a judge with access to :math:`P_*` would report, with a CI.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from finitepref.divergences import entropy, kl
from finitepref.losses import preference_logit

__all__ = [
    "enumerate_responses", "enumerate_policy", "kl_rows", "entropy_rows", "preference_matrix",
    "exact_win_rate", "sample_preferences", "sampled_win_rate", "check_size",
]


def check_size(alphabet_size: int, length: int, n_prompts: int = 1, max_responses: int = 4096) -> int:
    """Number of responses ``alphabet_size**length``; ``ValueError`` above ``max_responses``."""
    n_resp = int(alphabet_size) ** int(length)
    if n_resp > max_responses:
        raise ValueError(
            f"response space has {alphabet_size}**{length} = {n_resp} responses per prompt "
            f"(x {n_prompts} prompts), above max_responses={max_responses}; exact enumeration refused")
    return n_resp


def enumerate_responses(alphabet: list[int], length: int, max_responses: int = 4096) -> torch.Tensor:
    """All ``len(alphabet)**length`` responses, (A, L) int64, lexicographic in alphabet order
    (the order of :func:`~finitepref.llm.logprobs.enumerate_logprobs`)."""
    n = check_size(len(alphabet), length, max_responses=max_responses)
    return torch.tensor(list(itertools.product(list(alphabet), repeat=length)), dtype=torch.long).reshape(n, length)


@torch.no_grad()
def enumerate_policy(model, prompts: list[list[int]], length: int, alphabet: list[int],
                     max_responses: int = 4096, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact log-probabilities of every response, restricted to the alphabet, and the leaked mass.

    Parameters
    ----------
    model : causal LM (any ``transformers`` ``...ForCausalLM``).
    prompts : X lists of prompt token ids (no padding).
    length : response length L.
    alphabet : allowed token ids V.
    max_responses : refuse (``ValueError``) when ``len(V)**L`` exceeds it.

    Returns
    -------
    log_probs : (X, A) float64; row x is :math:`\ln\pi_V(a \mid x)` where :math:`\pi_V` renormalises
        each next-token distribution over V (rows sum to 1 in probability).
    leaked : (X,) float64, :math:`1 - \sum_{a\in V^L}\pi(a\mid x)` of the unrestricted model.
    """
    responses = enumerate_responses(alphabet, length, max_responses)
    n_resp = responses.shape[0]
    allowed = torch.tensor(list(alphabet), dtype=torch.long)
    col = torch.full((int(allowed.max()) + 1,), -1, dtype=torch.long)
    col[allowed] = torch.arange(len(allowed))
    target_v = col[responses]  # column of each token within the alphabet
    was_training = model.training
    model.eval()
    rows, leaks = [], []
    try:
        for prompt in prompts:
            lp_v, lp_full = [], []
            for s in range(0, n_resp, batch_size):
                r = responses[s: s + batch_size]
                B = r.shape[0]
                ids = torch.cat([torch.tensor(prompt, dtype=torch.long).expand(B, -1), r], dim=1)
                pos = torch.arange(ids.shape[1]).expand(B, -1)
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos,
                               use_cache=False).logits[:, len(prompt) - 1: len(prompt) + length - 1].double()
                full = F.log_softmax(logits, -1).gather(-1, r.unsqueeze(-1)).squeeze(-1).sum(-1)
                restricted = F.log_softmax(logits[..., allowed], -1)
                lp_v.append(restricted.gather(-1, target_v[s: s + B].unsqueeze(-1)).squeeze(-1).sum(-1))
                lp_full.append(full)
            rows.append(torch.cat(lp_v))
            leaks.append(-torch.expm1(torch.logsumexp(torch.cat(lp_full), 0)))
    finally:
        model.train(was_training)
    return torch.stack(rows).numpy(), torch.stack(leaks).numpy()


def kl_rows(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    r"""Exact :math:`\mathrm{KL}(p\|q)` per row from log-probabilities: :func:`finitepref.divergences.kl`."""
    return kl(torch.as_tensor(np.asarray(logp, dtype=np.float64)),
              torch.as_tensor(np.asarray(logq, dtype=np.float64))).numpy()


def entropy_rows(logp: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) per row, with 0 ln 0 = 0: :func:`finitepref.divergences.entropy`."""
    return entropy(torch.as_tensor(np.asarray(logp, dtype=np.float64))).numpy()


def _pref_prob(logp_a: np.ndarray, logp_b: np.ndarray, gamma: float) -> np.ndarray:
    r""":math:`\mathbb P(a\succ b) = \sigma(\gamma(\ln\pi^*(a) - \ln\pi^*(b)))`, eq. (3), via :mod:`finitepref.losses`."""
    z = preference_logit(torch.as_tensor(logp_a, dtype=torch.float64), torch.as_tensor(logp_b, dtype=torch.float64),
                         gamma)
    return torch.sigmoid(z).numpy()


def preference_matrix(logp_star_row: np.ndarray, gamma: float) -> np.ndarray:
    r""":math:`P_*(a \succ b \mid x) = \sigma(\gamma(\ln\pi^*(a) - \ln\pi^*(b)))`, eq. (3); (A, A)."""
    row = np.asarray(logp_star_row, dtype=np.float64)
    return _pref_prob(row[:, None], row[None, :], gamma)


def exact_win_rate(logp_pi: np.ndarray, logp_ref: np.ndarray, logp_star: np.ndarray, gamma: float,
                   chunk: int = 512) -> np.ndarray:
    r"""Exact oracle win-rate per prompt :math:`\sum_{a,b}\pi(a)\pi_0(b)P_*(a\succ b\mid x)`.

    All inputs (X, A) log-probabilities; chunked over a so memory is O(chunk * A).
    ``exact_win_rate(l, l, s, g)`` is exactly 1/2 for any ``l`` by the antisymmetry of eq. (3).
    """
    X, A = logp_star.shape
    out = np.zeros(X)
    for x in range(X):
        p, q, s = np.exp(logp_pi[x]), np.exp(logp_ref[x]), logp_star[x]
        acc = 0.0
        for c in range(0, A, chunk):
            P = _pref_prob(s[c:c + chunk, None], s[None, :], gamma)
            acc += float(p[c:c + chunk] @ (P @ q))
        out[x] = acc
    return out


def _draw_pairs(rng: np.random.Generator, prompt_probs: np.ndarray, logp_a: np.ndarray, logp_b: np.ndarray,
                n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` prompts from ``prompt_probs``, then per prompt a response from ``exp(logp_a[x])`` and one from
    ``exp(logp_b[x])`` (normalised), drawn prompt by prompt in this order."""
    prompt_probs = np.asarray(prompt_probs, dtype=np.float64)
    x = rng.choice(len(prompt_probs), size=n, p=prompt_probs / prompt_probs.sum())
    a = np.empty(n, dtype=np.int64)
    b = np.empty(n, dtype=np.int64)
    for i in range(len(prompt_probs)):
        idx = np.flatnonzero(x == i)
        p, q = np.exp(logp_a[i]), np.exp(logp_b[i])
        a[idx] = rng.choice(len(p), size=len(idx), p=p / p.sum())
        b[idx] = rng.choice(len(q), size=len(idx), p=q / q.sum())
    return x, a, b


def sample_preferences(rng: np.random.Generator, prompt_probs: np.ndarray, logp_mu: np.ndarray,
                       logp_star: np.ndarray, gamma: float, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""n preference triples drawn exactly from Section 2's law.

    :math:`x \sim \mathcal D`, :math:`a, b \sim \mu(x)` independently, then :math:`a \succ b` with
    probability :math:`P_*(a \succ b \mid x)` of eq. (3). Returns (x, winner, loser) index arrays.
    """
    x, a, b = _draw_pairs(rng, prompt_probs, logp_mu, logp_mu, n)
    a_wins = rng.random(n) < _pref_prob(logp_star[x, a], logp_star[x, b], gamma)
    return x, np.where(a_wins, a, b), np.where(a_wins, b, a)


def sampled_win_rate(rng: np.random.Generator, prompt_probs: np.ndarray, logp_pi: np.ndarray,
                     logp_ref: np.ndarray, logp_star: np.ndarray, gamma: float, m: int,
                     level: float = 0.95) -> dict:
    r"""Judge-style estimate of the win-rate: m prompts, :math:`a\sim\pi`, :math:`b\sim\pi_0`, a
    Bernoulli(:math:`P_*(a\succ b\mid x)`) verdict each; returns ``wins``, ``m``, ``rate`` and the
    Clopper-Pearson ``level`` interval ``ci_low``, ``ci_high``."""
    from scipy import stats

    xs, a, b = _draw_pairs(rng, prompt_probs, logp_pi, logp_ref, m)
    pwin = _pref_prob(logp_star[xs, a], logp_star[xs, b], gamma)
    wins = int((rng.random(m) < pwin).sum())
    ci = stats.binomtest(wins, m).proportion_ci(confidence_level=level, method="exact")
    return {"wins": wins, "m": m, "rate": wins / m, "ci_low": float(ci.low), "ci_high": float(ci.high)}
