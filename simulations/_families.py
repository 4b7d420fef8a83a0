r"""Problem builders shared by several simulation scripts (no plotting, no I/O).

- :func:`centered_net`: an :math:`\varepsilon`-net of a log-linear family
  :math:`\pi_\theta(a\mid x)\propto\exp(\theta\cdot\phi(x,a))` on the box
  :math:`\theta^* + [-\rho, \rho]^d` with spacing ``resolution``, so that :math:`\theta^*` is a net
  point whatever the resolution (``ToyProblem.loglinear_grid`` redraws :math:`\theta^*` when the grid
  changes; sweeps over the resolution or over :math:`\gamma` need the same :math:`\theta^*`).
- :func:`with_mu`: the same class and :math:`\pi^*` under another data policy :math:`\mu`.
- :func:`tempered_mu`: :math:`\mu_\tau(\cdot\mid x) = \mathrm{softmax}(\tau\,\ell_x)` for fixed random
  logits :math:`\ell_x`; :math:`\tau = 0` is uniform and a larger :math:`\tau` concentrates
  :math:`\mu`, which raises the coverage coefficient :math:`C_\Pi` of Definition 3.
"""

from __future__ import annotations

import numpy as np
import torch

import finitepref as fp


def centered_net(features: np.ndarray, prompt_probs: np.ndarray, mu: np.ndarray, theta_star: np.ndarray,
                 gamma: float, resolution: float, radius: float, *, rewards: bool = False,
                 reference: np.ndarray | None = None) -> fp.ToyProblem:
    r"""The net :math:`\{\theta^* + h k : k\in\mathbb Z^d, \|hk\|_\infty\le\rho\}` as a :class:`ToyProblem`.

    With ``rewards=True`` the reward class is :math:`\{\gamma\ln\pi : \pi\in\Pi\}` (reward stride 1), so
    :math:`\mathcal P_\gamma(\mathcal R) = \Pi` (Assumption 5 with equality). ``meta`` carries
    ``features``, ``theta_star`` and ``thetas`` for :func:`finitepref.asymptotics.sandwich_constant`.
    """
    features = np.asarray(features, dtype=np.float64)
    theta_star = np.asarray(theta_star, dtype=np.float64)
    dim = features.shape[-1]
    half = int(round(radius / resolution))
    if half < 1:
        raise ValueError(f"resolution: must be smaller than radius ({radius}), got {resolution}")
    steps = np.arange(-half, half + 1)
    grid = np.stack(np.meshgrid(*([steps] * dim), indexing="ij"), -1).reshape(-1, dim)
    thetas = theta_star + grid * resolution
    star = int(np.flatnonzero(np.all(grid == 0, axis=1))[0])
    log_policies = torch.log_softmax(torch.einsum("kd,xad->kxa", torch.as_tensor(thetas), torch.as_tensor(features)),
                                     -1)
    meta = {"kind": "centered_net", "dim": dim, "resolution": resolution, "radius": radius,
            "features": features, "theta_star": theta_star, "thetas": thetas}
    ref = None if reference is None else torch.log(torch.as_tensor(reference, dtype=torch.float64))
    return fp.ToyProblem(prompt_probs, mu, log_policies, star, gamma,
                         rewards=gamma * log_policies if rewards else None, reference=ref, log_space=True, meta=meta)


def with_mu(prob: fp.ToyProblem, mu: np.ndarray) -> fp.ToyProblem:
    """The same prompts, class, pi*, gamma, rewards and reference under the data policy ``mu``."""
    return fp.ToyProblem(prob.prompt_probs, mu, prob.log_policies, prob.star, prob.gamma, rewards=prob.rewards,
                         reference=prob.log_reference, log_space=True, meta=dict(prob.meta))


def tempered_mu(logits: np.ndarray, tau: float) -> np.ndarray:
    r""":math:`\mathrm{softmax}(\tau\,\ell)` over the last axis."""
    z = tau * np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(-1, keepdims=True)
