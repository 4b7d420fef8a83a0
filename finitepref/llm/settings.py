r"""Per-algorithm settings: one small dataclass per algorithm, validated in ``__post_init__``.

Fields use the paper's notation: :math:`\beta` the KL coefficient, :math:`\gamma` the
regulariser of eq. (3) (or the entropy coefficient of eq. 16), :math:`\eta` REBEL's reward scale
(eq. 10). In a YAML file they sit flat in the ``algorithm:`` section next to ``name``. The
docstring under each field is what ``--help-config`` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError


def _check(ok: bool, field: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"algorithm.{field} must be {expected}, got {value!r}")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(settings, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        _check(_finite(value) and value > 0, name, value, "a finite number > 0")


def _non_negative(settings, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        _check(_finite(value) and value >= 0, name, value, "a finite number >= 0")


def _one_of(settings, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(settings, name)
    _check(value in choices, name, value, f"one of {', '.join(choices)}")


@dataclass(frozen=True)
class NoSettings:
    """SFT and the reward model (eq. 9) take no algorithm settings."""


@dataclass(frozen=True)
class DpoSettings:
    """DPO, eq. (6)."""

    beta: float = 0.05
    """Inverse temperature beta of eq. (6) (> 0)."""

    def __post_init__(self):
        _positive(self, "beta")


@dataclass(frozen=True)
class IpoSettings:
    """IPO (Azar et al. 2023, eq. 17)."""

    tau: float = 0.1
    """Regularisation tau: the target log-ratio margin is 1/(2 tau) (> 0)."""

    def __post_init__(self):
        _positive(self, "tau")


@dataclass(frozen=True)
class ChipoSettings:
    """chi-PO (Huang et al. 2024, Algorithm 1): DPO's link with phi(z) = z + ln z, margin clipped."""

    beta: float = 0.1
    """Coefficient beta of the link beta phi(pi/pi_0) (> 0)."""
    r_max: float = 5.0
    """Reward bound R_max: the margin is clipped to [-2 R_max, 2 R_max] (> 0)."""

    def __post_init__(self):
        _positive(self, "beta", "r_max")


@dataclass(frozen=True)
class PmleSettings:
    """Preference MLE, eq. (5): eq. (4) on offline pairs plus beta * KL on online samples."""

    beta: float = 0.05
    """KL coefficient beta of eq. (5) (>= 0; 0 skips the online samples)."""
    gamma: float = 0.1
    """gamma of eq. (3) (> 0)."""
    kl_baseline: str = "leave_one_out"
    """Baseline of the score-function KL gradient on online samples: ``leave_one_out`` or ``none``."""

    def __post_init__(self):
        _non_negative(self, "beta")
        _positive(self, "gamma")
        _one_of(self, "kl_baseline", ("leave_one_out", "none"))


@dataclass(frozen=True)
class OnlineLoopSettings:
    """The optimisation loop over each online batch (Algorithm 1; Table 5 "num epochs")."""

    num_ppo_epochs: int = 4
    """Optimisation epochs over each online batch (Table 5 "num epochs")."""
    num_mini_batches: int = 1
    """Mini-batches per online batch and epoch."""

    def __post_init__(self):
        for name in ("num_ppo_epochs", "num_mini_batches"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")


@dataclass(frozen=True)
class DistillSettings(OnlineLoopSettings):
    """Preference distillation, eqs. (11)-(12), on two online samples per prompt."""

    beta: float = 0.05
    """KL coefficient beta of eq. (12) (>= 0)."""
    gamma: float = 0.1
    """gamma of eq. (3) (> 0)."""
    kl_baseline: str = "leave_one_out"
    """Baseline of the score-function KL gradient on online samples: ``leave_one_out`` or ``none``."""

    def __post_init__(self):
        super().__post_init__()
        _non_negative(self, "beta")
        _positive(self, "gamma")
        _one_of(self, "kl_baseline", ("leave_one_out", "none"))


@dataclass(frozen=True)
class RebelSettings(OnlineLoopSettings):
    """REBEL, eq. (10), with the KL folded into the rewards."""

    beta: float = 0.05
    """KL coefficient beta of the shaped reward (eq. 1, >= 0; ``rebel_anchor: sampler`` only)."""
    eta: float = 1.0
    """REBEL's reward scale eta, eq. (10) (> 0)."""
    rebel_anchor: str = "sampler"
    """Ratio anchor: ``sampler`` (pi_t, as in Gao et al.'s code, with the KL folded into the reward:
    R - beta (ln pi_t - ln pi_0)) or ``reference`` (pi_0 and the plain score R: eq. 10 as printed;
    beta unused)."""

    def __post_init__(self):
        super().__post_init__()
        _non_negative(self, "beta")
        _positive(self, "eta")
        _one_of(self, "rebel_anchor", ("sampler", "reference"))


@dataclass(frozen=True)
class PpoSettings(OnlineLoopSettings):
    """RLHF, eq. (1), optimised by PPO on per-token shaped rewards."""

    beta: float = 0.05
    """KL coefficient beta of eq. (1) (>= 0)."""
    clip_ratio: float = 0.2
    """PPO clip range."""
    vf_coef: float = 0.1
    """PPO value-loss coefficient."""
    cliprange_value: float = 0.2
    """PPO value clip range."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    discount: float = 1.0
    """Discount factor."""
    whiten_advantages: bool = True
    """Normalise advantages per batch."""

    def __post_init__(self):
        super().__post_init__()
        _non_negative(self, "beta", "clip_ratio", "vf_coef", "cliprange_value", "gae_lambda", "discount")

    @property
    def entropy_coef(self) -> float:
        """gamma of the shaped reward: 0 for eq. (1)."""
        return 0.0


@dataclass(frozen=True)
class ReverseKlSettings(PpoSettings):
    """Reverse-KL regularised RLHF, eq. (16), optimised by PPO."""

    gamma: float = 0.1
    """Entropy coefficient gamma of eq. (16) (> 0)."""

    def __post_init__(self):
        super().__post_init__()
        _positive(self, "gamma")

    @property
    def entropy_coef(self) -> float:
        """gamma of eq. (16)."""
        return self.gamma
