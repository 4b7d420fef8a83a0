r"""The Bradley-Terry preference model on tilted likelihoods, eqs. (2)-(3), and its data.

Section 2 of the paper draws each sample as: :math:`x\sim\mathcal D`; :math:`a, b \sim \mu(x)`
independently; :math:`a` is preferred with probability
:math:`\mathbb P_*(a\succ b\mid x) = \sigma(\gamma\ln\pi^*(a\mid x) - \gamma\ln\pi^*(b\mid x))`;
then :math:`(a^+, a^-)` is the ordered pair. The exact law of :math:`(x, a^+, a^-)` is therefore

.. math:: \mathbb P(x, w, l) = 2\,\mathcal D(x)\,\mu(w\mid x)\,\mu(l\mid x)\,\mathbb P_*(w\succ l\mid x)

(for :math:`w\ne l` the pair :math:`\{w, l\}` is drawn in two orders; a tie :math:`w = l` is drawn in
one, but then either label gives the same ordered pair, and :math:`2\cdot\mathbb P_*(w\succ w) = 1`). A data set of size ``n`` is summarised without loss by its counts over the
``X*A*A`` cells, which one multinomial draw per trial produces at a cost free of ``n``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import MAX_COUNT, check_count
from .losses import preference_logit

__all__ = ["PreferenceData", "preference_probs", "pair_law", "sample_counts"]


def preference_probs(log_pi: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""Matrix of :math:`\mathbb P_\pi(a\succ b\mid x)`, eq. (3), shape ``(..., X, A, A)``.

    Parameters
    ----------
    log_pi : Tensor, shape (..., X, A)
        Log-probabilities :math:`\ln\pi(a\mid x)`.
    gamma : float
        The tilt :math:`\gamma > 0`.
    """
    return torch.sigmoid(preference_logit(log_pi[..., :, None], log_pi[..., None, :], gamma))


def pair_law(prompt_probs: torch.Tensor, mu: torch.Tensor, log_pi_star: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""Exact law of :math:`(x, a^+, a^-)` under Section 2's sampling, shape ``(X, A, A)``.

    .. math:: \mathbb P(x, w, l) = 2\,\mathcal D(x)\,\mu(w\mid x)\,\mu(l\mid x)\,\mathbb P_*(w\succ l\mid x).

    (Ties :math:`w = l` get :math:`\mathcal D(x)\mu(w\mid x)^2`, since :math:`\mathbb P_*(w\succ w) = 1/2`.)
    """
    pref = preference_probs(log_pi_star, gamma)
    return 2.0 * prompt_probs[:, None, None] * mu[:, :, None] * mu[:, None, :] * pref


def sample_counts(law: np.ndarray, n: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """Counts of ``n`` i.i.d. draws from ``law`` for each of ``trials`` data sets.

    One call to :meth:`numpy.random.Generator.multinomial`, whose cost grows with the number of
    cells and trials, not with ``n``. Returns int64 ``(trials, *law.shape)``.
    """
    flat = np.asarray(law, dtype=np.float64).ravel()
    flat = np.clip(flat, 0.0, None)
    flat = flat / flat.sum()
    counts = rng.multinomial(n, flat, size=trials)
    return counts.reshape((trials, *np.shape(law))).astype(np.int64, copy=False)


def _as_int64_counts(c: np.ndarray) -> np.ndarray:
    """Integer-valued real counts as int64 (NaN, inf, fractions, >= 2**63, complex and bool rejected)."""
    if np.iscomplexobj(c) or c.dtype == bool or not (np.issubdtype(c.dtype, np.integer)
                                                     or np.issubdtype(c.dtype, np.floating)):
        raise ValueError(f"counts: expected an integer array, got dtype {c.dtype}")
    if np.issubdtype(c.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(c) | (np.mod(c, 1) != 0)
        if bad.any():
            raise ValueError(f"counts: expected integer values, got {c[bad].flat[0]}")
    if c.size and (c.max() > MAX_COUNT or c.min() < 0):
        value = c.max() if c.max() > MAX_COUNT else c.min()
        raise ValueError(f"counts: expected integers in [0, 2**53], got {value}")
    return c.astype(np.int64)


def _as_counts(counts) -> np.ndarray:
    """Validate ``counts`` of shape (trials, X, A, A): integers, at least one trial, equal n in [1, 2**53]."""
    try:
        c = np.asarray(counts)
    except (TypeError, ValueError) as err:
        raise ValueError(f"counts: expected an integer array, got {type(counts).__name__} ({err})") from None
    if c.ndim != 4 or c.shape[2] != c.shape[3]:
        raise ValueError(f"counts: expected shape (trials, X, A, A), got {c.shape}")
    if c.shape[0] < 1 or 0 in c.shape[1:]:
        raise ValueError(f"counts: expected at least one trial, prompt and response, got shape {c.shape}")
    c = _as_int64_counts(c)
    totals = c.reshape(c.shape[0], -1).sum(1, dtype=np.float64)
    if (totals < 1).any() or (totals != totals[0]).any() or totals[0] > MAX_COUNT:
        raise ValueError(f"counts: expected every trial to hold the same number n in [1, 2**53] of samples, "
                         f"got n = {totals[:5].astype(np.int64).tolist()}")
    return c


def _as_samples(samples, n_prompts: int, n_responses: int) -> np.ndarray:
    """A non-empty (N, 3) int64 array of integer-valued real triples inside the index ranges."""
    try:
        arr = np.asarray(list(samples))
    except TypeError as err:
        raise ValueError(f"samples: expected an iterable of (x, a_plus, a_minus) triples ({err})") from None
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < 1:
        raise ValueError(f"samples: expected a non-empty list of (x, a_plus, a_minus) triples, got shape {arr.shape}")
    if np.iscomplexobj(arr) or arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                                         or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"samples: expected integer indices, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (np.mod(arr, 1) != 0)
        if bad.any():
            raise ValueError(f"samples: expected integer indices, got {arr[bad].flat[0]}")
    for col, (label, size) in enumerate([("prompt", n_prompts), ("response", n_responses), ("response", n_responses)]):
        bad = (arr[:, col] < 0) | (arr[:, col] >= size)
        if bad.any():
            raise ValueError(f"samples: expected {label} indices in [0, {size}), got {arr[:, col][bad][0]}")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class PreferenceData:
    r"""Sufficient statistics of ``trials`` independent preference data sets of size ``n``.

    Attributes
    ----------
    counts : ndarray of int64, shape (trials, X, A, A)
        ``counts[t, x, w, l]`` is the number of samples of data set ``t`` with prompt ``x``,
        preferred response ``w`` (:math:`a^+`) and dispreferred response ``l`` (:math:`a^-`).
    """

    counts: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", _as_counts(self.counts))

    @property
    def trials(self) -> int:
        """Number of independent data sets."""
        return int(self.counts.shape[0])

    @property
    def n(self) -> int:
        """Samples per data set."""
        return int(self.counts[0].sum())

    @property
    def n_prompts(self) -> int:
        return int(self.counts.shape[1])

    @property
    def n_responses(self) -> int:
        return int(self.counts.shape[2])

    @property
    def prompt_counts(self) -> np.ndarray:
        """``m[t, x]``: number of samples with prompt ``x`` in data set ``t``."""
        return self.counts.sum(axis=(2, 3))

    @property
    def flat(self) -> np.ndarray:
        """Counts reshaped to ``(trials, X*A*A)``, the layout of the loss tables."""
        return self.counts.reshape(self.trials, -1)

    def samples(self, trial: int = 0) -> list[tuple[int, int, int]]:
        """Expand one data set back into an explicit list of ``(x, a_plus, a_minus)`` (sorted)."""
        idx = np.argwhere(self.counts[trial] > 0)
        out: list[tuple[int, int, int]] = []
        for x, win, lose in idx:
            out.extend([(int(x), int(win), int(lose))] * int(self.counts[trial, x, win, lose]))
        return out

    @classmethod
    def from_samples(
        cls, samples: Iterable[tuple[int, int, int]], n_prompts: int, n_responses: int
    ) -> PreferenceData:
        """Build one data set (``trials = 1``) from a list of ``(x, a_plus, a_minus)``.

        Examples
        --------
        >>> PreferenceData.from_samples([(0, 1, 0), (0, 1, 0)], n_prompts=1, n_responses=2).counts.tolist()
        [[[[0, 0], [2, 0]]]]
        """
        n_prompts = check_count("n_prompts", n_prompts)
        n_responses = check_count("n_responses", n_responses)
        arr = _as_samples(samples, n_prompts, n_responses)
        counts = np.zeros((1, n_prompts, n_responses, n_responses), dtype=np.int64)
        np.add.at(counts, (0, arr[:, 0], arr[:, 1], arr[:, 2]), 1)
        return cls(counts)
