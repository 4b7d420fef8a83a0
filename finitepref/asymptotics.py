r"""Asymptotic (sandwich) constant of :math:`n\,\mathbb E[\mathrm{KL}]` for log-linear classes.

For :math:`\pi_\theta(a\mid x)\propto\exp(\theta\cdot\phi(x,a))` and the preference MLE
(eq. 4, :math:`\beta = 0`) over the whole family, classical M-estimation gives
:math:`\sqrt n(\hat\theta - \theta^*)\to\mathcal N(0, I^{-1})` with the per-sample Fisher
information of the preference likelihood

.. math:: I = \gamma^2\,\mathbb E_{x\sim\mathcal D,\,a,b\sim\mu(x)}
          \bigl[\sigma'(z^*)\,(\phi(x,a)-\phi(x,b))(\phi(x,a)-\phi(x,b))^\top\bigr],
          \qquad z^* = \gamma\,\theta^*\cdot(\phi(x,a)-\phi(x,b)),

and a second-order expansion of the forward KL,
:math:`\mathbb E_x\mathrm{KL}(\pi^*\|\pi_\theta) \approx \tfrac12(\theta-\theta^*)^\top H(\theta-\theta^*)`
with :math:`H = \mathbb E_{x\sim\mathcal D}\mathrm{Cov}_{a\sim\pi^*(x)}[\phi(x,a)]` (the Fisher
information of the policy itself; the reverse KL has the same Hessian at :math:`\theta^*`). Hence

.. math:: n\,\mathbb E[\mathrm{KL}] \to \tfrac12\,\mathrm{tr}(H I^{-1}).

The likelihood is well specified, so the sandwich :math:`I^{-1} J I^{-1}` collapses to
:math:`I^{-1}`. An :math:`\varepsilon`-net of the family follows this limit while the net's
spacing is small against the estimator's spread, :math:`\sqrt{\mathrm{tr}(I^{-1})/n}`; beyond, the
argmin lands on :math:`\pi^*` itself and the error falls faster than :math:`1/n`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax

__all__ = ["policy_fisher", "preference_fisher", "sandwich_constant"]


def policy_fisher(features: np.ndarray, theta: np.ndarray, prompt_probs: np.ndarray) -> np.ndarray:
    r""":math:`H = \mathbb E_{x\sim\mathcal D}\mathrm{Cov}_{a\sim\pi_\theta(x)}[\phi(x,a)]`, shape (d, d).

    The Hessian at :math:`\theta` of :math:`\theta'\mapsto\mathbb E_x\mathrm{KL}(\pi_\theta(x)\|\pi_{\theta'}(x))`.
    """
    pi = np.exp(log_softmax(features @ theta, axis=-1))  # (X, A)
    mean = np.einsum("xa,xad->xd", pi, features)
    centered = features - mean[:, None, :]
    cov = np.einsum("xa,xad,xae->xde", pi, centered, centered)
    return np.einsum("x,xde->de", prompt_probs, cov)


def preference_fisher(features: np.ndarray, theta: np.ndarray, prompt_probs: np.ndarray, mu: np.ndarray,
                      gamma: float) -> np.ndarray:
    r"""Per-sample Fisher information :math:`I` of the preference likelihood (3) at :math:`\theta`, shape (d, d)."""
    diff = features[:, :, None, :] - features[:, None, :, :]  # (X, A, A, d)
    z = gamma * diff @ theta
    s = expit(z)
    weight = prompt_probs[:, None, None] * mu[:, :, None] * mu[:, None, :] * s * (1.0 - s)
    return gamma**2 * np.einsum("xab,xabd,xabe->de", weight, diff, diff)


def sandwich_constant(features: np.ndarray, theta_star: np.ndarray, prompt_probs: np.ndarray, mu: np.ndarray,
                      gamma: float) -> float:
    r"""Limit of :math:`n\,\mathbb E[\mathrm{KL}(\pi^*\|\hat\pi)]` for the preference MLE: :math:`\tfrac12\mathrm{tr}(H I^{-1})`.

    Parameters
    ----------
    features : ndarray (X, A, d)
        :math:`\phi(x, a)`.
    theta_star : ndarray (d,)
    prompt_probs : ndarray (X,)
    mu : ndarray (X, A)
    gamma : float
    """
    h = policy_fisher(features, theta_star, prompt_probs)
    info = preference_fisher(features, theta_star, prompt_probs, mu, gamma)
    return 0.5 * float(np.trace(np.linalg.solve(info, h)))
