r"""The hypercube class: :math:`|\Pi| = 2^d` policies, one bit per prompt, streamed from the row index.

For :math:`d` prompts :math:`x_0,\dots,x_{d-1}`, a base conditional :math:`b_j\in\Delta(\mathcal A)` and a
direction :math:`u_j` (:math:`\sum_a u_j(a) = 0`) per prompt, and a size :math:`\varepsilon > 0`,

.. math:: \Pi = \{\pi_v : v\in\{0,1\}^d\},\qquad \pi_v(\cdot\mid x_j) = b_j + (2v_j - 1)\,\varepsilon\,u_j .

Policy :math:`v` is row :math:`k = \sum_j v_j 2^{d-1-j}` (first prompt slowest, as the grid order of
:class:`finitepref.streamed.LogLinearClass`), so the lowest index of a tie sets each tied bit to 0.
Prompt :math:`j` of a row depends on bit :math:`v_j` alone: the class is a product of :math:`d`
two-policy classes, and so is every objective of the paper summed over prompts (eqs. 4, 9, 11, 16),
which is what makes the class a test of how an error grows with :math:`\ln|\Pi| = d\ln 2`
(Theorem 4, eq. 7) and what gives its minimax risk in closed form (:mod:`bounds.assouad`).

:func:`hypercube_problem` is the two-response instance of ``simulations.log_class_size``:
:math:`\mathcal D` and :math:`\mu(x)` uniform, :math:`b_j = (\tfrac12,\tfrac12)`, :math:`u_j = (1, -1)`,
so :math:`\pi_v(a_0\mid x_j) = \tfrac12 \pm \varepsilon`, and the reward class :math:`\gamma\ln\Pi`
(Assumption 5 with equality, :math:`\mathcal P_\gamma(\mathcal R) = \Pi`), streamed the same way.
There, with :math:`\kappa(\varepsilon)` the KL of one wrong coordinate,

.. math:: \mathbb E_x\mathrm{KL}(\pi_v(x)\|\pi_w(x)) = \frac{\kappa(\varepsilon)}{d}\,\#\{j: v_j\ne w_j\},\qquad
          \kappa(\varepsilon) = \mathrm{KL}\bigl(\mathrm{Ber}(\tfrac12+\varepsilon)\|\mathrm{Ber}(\tfrac12-\varepsilon)\bigr)
          = 4\varepsilon\,\mathrm{artanh}(2\varepsilon),

the same in both directions; :math:`R = \mathrm{artanh}(2\varepsilon)` (Assumption 2) and
:math:`C_\Pi = C_{\mathcal R} = 1` (Definition 3: :math:`\Delta\bar R_\pi` has the same square at both
responses). Memory stays one chunk: a row costs its index's bits and one gather.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validate import as_float64, check_count, check_device, check_distribution, check_positive
from .problem import ToyProblem
from .streamed import StreamedClass

Tensor = torch.Tensor

__all__ = ["HypercubeClass", "hypercube_problem", "MAX_DIM"]

MAX_DIM = 62
"""Largest d: row indices are int64."""


class HypercubeClass(StreamedClass):
    r""":math:`\{\pi_v: v\in\{0,1\}^d\}` with :math:`\pi_v(\cdot\mid x_j) = b_j + (2v_j-1)\varepsilon u_j`, streamed.

    Parameters
    ----------
    base : array (d, A)
        Base conditionals :math:`b_j`, one distribution per prompt.
    direction : array (d, A)
        Directions :math:`u_j`, each summing to 0 and not all zero.
    eps : float
        :math:`\varepsilon > 0`, small enough that :math:`b_j\pm\varepsilon u_j > 0` everywhere (full
        support, Assumption 2); :attr:`eps_max` is the bound.
    scale : float
        Rows are ``scale`` times the log-probabilities: 1 for the policy class, :math:`\gamma` for the
        reward class :math:`\gamma\ln\Pi` (eq. 8 maps it back onto :math:`\Pi`).

    Examples
    --------
    >>> cube = HypercubeClass([[0.5, 0.5]] * 3, [[1.0, -1.0]] * 3, eps=0.25)
    >>> len(cube), cube.bits(torch.tensor([6])).tolist()
    (8, [[1, 1, 0]])
    >>> cube[6].exp().tolist()  # prompts 0, 1 perturbed up, prompt 2 down
    [[0.75, 0.25], [0.75, 0.25], [0.25, 0.75]]
    """

    def __init__(self, base, direction, eps: float, scale: float = 1.0) -> None:
        device = base.device if isinstance(base, Tensor) else torch.device("cpu")
        self.base = as_float64("base", base, 2, device)
        check_distribution("base", self.base)
        self.direction = as_float64("direction", direction, 2, device)
        if self.direction.shape != self.base.shape:
            raise ValueError(f"direction: expected the shape of base {tuple(self.base.shape)}, "
                             f"got {tuple(self.direction.shape)}")
        self._check_direction()
        dim = self.base.shape[0]
        if not 1 <= dim <= MAX_DIM:
            raise ValueError(f"base: expected d in [1, {MAX_DIM}] prompts (rows), got {dim}")
        self.eps = check_positive("eps", eps)
        if not self.eps < self.eps_max:
            raise ValueError(f"eps: expected a value in (0, {self.eps_max:.6g}) (every probability base +- eps * "
                             f"direction must stay > 0), got {eps!r}")
        self.scale = check_positive("scale", scale)
        self.shape = torch.Size((2 ** dim, *self.base.shape))
        self.device = self.base.device
        self._logs = self._vertex_logs()

    def _check_direction(self) -> None:
        if not torch.isfinite(self.direction).all():
            raise ValueError("direction: expected finite values, got +-inf")
        sums = self.direction.sum(-1).abs()
        if (sums > 1e-12 * (1 + self.direction.abs().sum(-1))).any():
            j = int(torch.nonzero(sums > 1e-12 * (1 + self.direction.abs().sum(-1)))[0])
            raise ValueError(f"direction: expected every row to sum to 0, got {float(self.direction[j].sum()):.6g} "
                             f"at row {j}")
        if (self.direction.abs().amax(-1) == 0).any():
            j = int(torch.nonzero(self.direction.abs().amax(-1) == 0)[0])
            raise ValueError(f"direction: expected a nonzero direction on every prompt, got zeros at row {j}")

    @property
    def dim(self) -> int:
        """d: the number of prompts (coordinates)."""
        return int(self.base.shape[0])

    @property
    def eps_max(self) -> float:
        r"""Supremum of admissible :math:`\varepsilon`: :math:`\min_{j,a: u_j(a)\ne0} b_j(a)/|u_j(a)|`."""
        moving = self.direction != 0
        return float((self.base[moving] / self.direction[moving].abs()).min())

    def _vertex_logs(self) -> Tensor:
        """``(2, d, A)``: scale x log-probabilities of bit 0 (``b - eps u``) and bit 1 (``b + eps u``), float64."""
        logs = torch.stack([torch.log(self.base - self.eps * self.direction),
                            torch.log(self.base + self.eps * self.direction)])
        return self.scale * logs

    def bits(self, index: Tensor) -> Tensor:
        """The vertex ``v`` of each row, ``(len(index), d)`` int64 (first prompt = most significant bit)."""
        index = torch.as_tensor(index, dtype=torch.int64, device=self.device).reshape(-1)
        shifts = torch.arange(self.dim - 1, -1, -1, device=self.device)
        return (index[:, None] >> shifts) & 1

    def index_of(self, bits) -> int:
        """The row of vertex ``bits`` (a sequence of d zeros and ones)."""
        v = np.asarray(bits)
        if v.shape != (self.dim,) or not np.isin(v, (0, 1)).all():
            raise ValueError(f"bits: expected {self.dim} values in {{0, 1}}, got {bits!r}")
        return int(sum(int(b) << (self.dim - 1 - j) for j, b in enumerate(v)))

    def rows(self, index: Tensor) -> Tensor:
        bit = self.bits(index).bool()[:, :, None]
        return torch.where(bit, self._logs[1], self._logs[0])

    def to(self, device) -> HypercubeClass:
        return HypercubeClass(self.base.to(device), self.direction.to(device), self.eps, self.scale)


def hypercube_problem(d: int, eps: float, gamma: float = 1.0, *, star: int | None = None,
                      device: str | torch.device = "cpu") -> ToyProblem:
    r"""The two-response hypercube instance (module docstring) with :math:`\mathcal R = \gamma\ln\Pi`, streamed.

    Parameters
    ----------
    d : int
        Number of prompts and of bits, :math:`1\le d\le 62`; :math:`|\Pi| = |\mathcal R| = 2^d`.
    eps : float
        Perturbation :math:`\varepsilon\in(0, \tfrac12)`: :math:`\pi_v(a_0\mid x_j) = \tfrac12 + (2v_j-1)\varepsilon`.
    gamma : float
        Tilt :math:`\gamma > 0` of eq. (2).
    star : int, optional
        Row of :math:`\pi^*`; default :math:`2^d - 1`, the all-ones vertex. Under the lowest-index tie rule
        every tie sets a bit to 0, so for any estimator that is equivariant under flipping a
        coordinate except for its ties (PMLE, and distillation and reverse KL, which return PMLE's
        policy on this class) this is the vertex of largest risk: the risk that Assouad's lemma bounds
        from below (:func:`bounds.hypercube_lower_bound`).
    device : str or torch.device
        Where the problem lives.

    Examples
    --------
    >>> prob = hypercube_problem(3, eps=0.1)
    >>> prob.n_policies, prob.n_rewards, prob.star
    (8, 8, 7)
    >>> round(prob.coverage(), 12), round(prob.boundedness(), 12) == round(float(np.arctanh(0.2)), 12)
    (1.0, True)
    """
    d = check_count("d", d, upper=MAX_DIM)
    gamma = check_positive("gamma", gamma)
    device = check_device(device)
    base = torch.full((d, 2), 0.5, dtype=torch.float64, device=device)
    direction = torch.tensor([[1.0, -1.0]] * d, dtype=torch.float64, device=device)
    policies = HypercubeClass(base, direction, eps)
    rewards = HypercubeClass(base, direction, eps, scale=gamma)
    star = policies.shape[0] - 1 if star is None else star
    prob = ToyProblem(torch.full((d,), 1.0 / d, dtype=torch.float64), torch.full((d, 2), 0.5, dtype=torch.float64),
                      policies, star, gamma, rewards=rewards, device=device, log_space=True,
                      meta={"kind": "hypercube", "dim": d, "eps": policies.eps})
    prob.meta["star_bits"] = "".join(str(int(b)) for b in policies.bits(torch.tensor([prob.star]))[0])
    return prob
