r"""Population limits of the biased estimators (the policy each converges to as n -> inf), in closed form.

The registry records ``population_limit`` where the core provides it (IPO, chi-PO); the three
baselines of the paper have the closed forms of Section 4: DPO (eq. 6) and RLHF (eq. 1) with a
realisable reward converge to :math:`\pi_0\,\pi^{*\gamma/\beta}`, REBEL (eq. 10) to
:math:`\pi_0\,\pi^{*\eta\gamma}` (normalised per prompt).
"""

from __future__ import annotations

import numpy as np
import torch

from finitepref import registry
from finitepref.divergences import kl

__all__ = ["limit", "describe", "population_data", "class_limits", "exact_recovery_n"]

_DESCRIPTIONS = {"dpo": "pi0 * pi*^(gamma/beta)", "rlhf": "pi0 * pi*^(gamma/beta)", "rebel": "pi0 * pi*^(eta*gamma)",
                 "ipo": "pi0 * exp(p*(a > mu)/tau)", "chipo": "pi0 * omega((gamma ln pi* + c)/beta)"}


def describe(name: str) -> str:
    """The closed form of ``name``'s limit, in words (``"pi*"`` for a distribution-learning estimator)."""
    return "pi*" if registry.get(name).learns_pi_star else _DESCRIPTIONS.get(name, "a biased limit")


def limit(name: str, prob, params: dict) -> torch.Tensor | None:
    """Log-probabilities ``(X, A)`` of ``name``'s population limit over all policies (None if unknown)."""
    entry = registry.get(name)
    if entry.learns_pi_star:
        return prob.log_pi_star
    if entry.population_limit is not None:
        return entry.population_limit(prob, **params)
    exponent = {"dpo": lambda: prob.gamma / params["beta"], "rlhf": lambda: prob.gamma / params["beta"],
                "rebel": lambda: params["eta"] * prob.gamma}.get(name)
    if exponent is None:
        return None
    return torch.log_softmax(prob.reference.to(prob.log_pi_star) + exponent() * prob.log_pi_star, -1)


def population_data(prob, total: float = 1e12):
    """One data set of ``total`` pairs whose counts are the exact law, rounded: the population, for an argmin."""
    from finitepref.preference import PreferenceData, pair_law

    law = pair_law(prob.prompt_probs, prob.mu, prob.log_pi_star, prob.gamma).cpu().numpy()
    counts = np.rint(law * total).astype(np.int64)
    return PreferenceData(counts[None])


def class_limits(prob, names, params: dict[str, dict]) -> dict[str, dict[str, float]]:
    r"""Per estimator: the KL to :math:`\pi^*` of its population minimiser over the class (the exact argmin on
    :func:`population_data`) and of its closed-form limit over all policies (:func:`limit_kl`'s ``limit``)."""
    from simulations import common

    chosen = common.fit_estimators(prob, population_data(prob), list(names), params)
    out = {}
    for name in names:
        table = registry.get(name).error_table(prob)
        entry = {"class_argmin": int(chosen[name][0]), "class_kl": float(table[chosen[name][0]]),
                 "form": describe(name)}
        if not registry.get(name).learns_pi_star:
            log_lim = limit(name, prob, params.get(name, {}))
            w = prob.prompt_probs.to(prob.log_pi_star)
            entry["limit_kl"] = None if log_lim is None else float(kl(prob.log_pi_star, log_lim) @ w)
        out[name] = entry
    return out


def exact_recovery_n(prob, constant: float) -> dict[str, float]:
    r"""Where the :math:`\varepsilon`-net's exact-recovery regime starts: :math:`n \approx c/\Delta`, with :math:`c`
    the asymptotic :math:`n\,\mathbb E[\mathrm{KL}]` and :math:`\Delta` the least nonzero KL between :math:`\pi^*`
    and another member of the net (the policy net, and the reward-induced net of eq. 8). Below it the
    estimate wanders over many net points (the 1/n regime); above it it sits on :math:`\pi^*`."""
    out = {}
    w = prob.prompt_probs.to(prob.log_pi_star)
    nets = {"policy": prob.forward_kl_table()}
    if getattr(prob, "rewards", None) is not None:
        induced = prob.induced_log_policies()
        nets["reward"] = (kl(prob.log_pi_star.expand_as(induced), induced) @ w).cpu().numpy()
    for which, table in nets.items():
        gap = float(np.min(table[table > 1e-15])) if (table > 1e-15).any() else float("nan")
        out[which] = {"min_kl_gap": gap, "n_exact": constant / gap}
    return out
