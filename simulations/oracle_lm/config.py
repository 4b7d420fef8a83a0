"""The oracle-LM benchmark's configuration, its algorithms, reward models and stored choices.

What differs between algorithms comes from the trainer's registry (``finitepref.llm.registry``):
the loop kind, whether a reward model is needed, the settings an algorithm takes and its label. The
benchmark adds one variant, ``pmle_nokl`` (PMLE with beta = 0, eq. 4), declared in :data:`VARIANTS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from finitepref.llm import oracle
from finitepref.llm.registry import REGISTRY, Algorithm
from simulations import _runner, common

VARIANTS = {"pmle_nokl": ("pmle", {"beta": 0.0}, "PMLE, beta=0 (eq. 4)")}
"""Benchmark-only variants: name -> (registry name, settings overrides, label)."""
ALGORITHMS = ("pmle", "pmle_nokl", "distill", "reverse_kl", "dpo", "rebel", "rlhf")
"""The algorithms of the benchmark (registry names, plus the variants)."""
REWARD_MODELS = ("standard", "realizable", "oracle")
"""standard: scalar head on pi0's network (eq. 9); realizable: gamma log pi_phi, pi_phi of pi*'s
architecture fitted by eq. (9); oracle: gamma ln pi*."""
NO_RM = "none"
"""``reward_model`` of the algorithms that read no reward model (PMLE, DPO)."""

STORED_LR = {"pmle": 1.2e-5, "pmle_nokl": 3.3e-5, "distill": 3.3e-5, "reverse_kl": 3.7e-5, "dpo": 1.1e-5,
             "rebel": 1.1e-5, "rlhf": 1.1e-5}
"""Centres of the pilot's learning-rate grids (and the rates used with ``--no-pilot``): the choices of the
pilots in ``docs/results/`` (default world): REBEL's and RLHF's centre moved up threefold, since their win-rate
settles within the budget only at the upper part of the earlier grid."""
STORED_BUDGET = {"pmle": 168, "pmle_nokl": 144, "distill": 144, "reverse_kl": 120, "dpo": 192, "rebel": 168,
                 "rlhf": 120}
"""Gradient steps per algorithm used with ``--no-pilot``: the budgets of the full run's pilot
(``docs/results/oracle_full_lr_choice.csv``, commit d93de37). That pilot chose other rates than the
centres for PMLE beta=0, distillation, REBEL and RLHF: pass them with ``--lrs`` to reproduce its choices."""
QUICK_LR = {"pmle": 1e-3, "pmle_nokl": 3e-4, "distill": 3e-4, "reverse_kl": 1e-3, "dpo": 3e-4, "rebel": 3e-4,
            "rlhf": 3e-4}
"""``--quick``'s grid centres: larger rates, so that 10 steps move the policies."""


def record(algo: str) -> Algorithm:
    """The trainer's registry record of ``algo`` (of its base algorithm for a variant)."""
    return REGISTRY[VARIANTS[algo][0] if algo in VARIANTS else algo]


def label(algo: str) -> str:
    """The registry's label (a variant's own label)."""
    return VARIANTS[algo][2] if algo in VARIANTS else REGISTRY[algo].label


def needs_reward_model(algo: str) -> bool:
    return record(algo).needs_reward_model


def settings(algo: str, common_values: dict, overrides: dict) -> dict:
    """The values of ``common_values`` (and ``overrides[algo]``, then the variant's) that ``algo``'s
    settings dataclass has: nothing else is passed to the trainer."""
    own = {f.name for f in dataclasses.fields(record(algo).settings)}
    values = {**common_values, **overrides.get(algo, {}), **(VARIANTS[algo][1] if algo in VARIANTS else {})}
    return {k: v for k, v in values.items() if k in own}


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Configuration of the oracle-LM benchmark. Every field is a command-line flag (``--field-name``).

    seed: master seed (data and training seeds come from SeedSequence(seed).spawn)
    world_seed: initialisation seed of pi0 and of pi*'s perturbation (fixed across replicate seeds)
    alphabet_size: K, number of word tokens responses are made of
    length: L, response length (K**L responses per prompt)
    n_prompts: X, number of prompts (uniform prompt distribution D)
    n_grid: numbers of preference pairs n
    head_scale: std of pi0's output-head weights times sqrt(hidden) (sets how peaked pi0 is)
    perturb: std of pi*'s head perturbation relative to head_scale
    gamma: gamma of eq. (3); also PMLE's/distillation's gamma and reverse KL's entropy coefficient
    beta: KL(pi||pi0) coefficient of PMLE, distillation, reverse KL, REBEL and RLHF
    dpo_beta: DPO's inverse temperature (eq. 6 uses gamma)
    algorithms: algorithms to run
    reward_models: reward models of the reward-based algorithms (standard, realizable, oracle)
    seeds: paired replicate seeds per n (all algorithms share data and reward models within a seed)
    batch_size: pairs (offline) or prompts (online) per gradient step
    max_steps: largest budget the pilot tries per algorithm
    eval_every: the pilot evaluates every this many steps (convergence curves)
    converge_fraction: converged when the change over the last fifth of the steps is <= this times the across-seed spread
    converge_floor: ... or <= this many nats for the KLs (where seeds barely differ, e.g. under the oracle reward model, the spread is ~0.003)
    converge_floor_win: ... or <= this for the win-rate
    rm_holdout: fraction of the n pairs held out for the reward models' early stopping
    rm_max_steps: most steps of a reward model (eq. 9), early-stopped on the held-out pairs
    rm_eval_every: reward models are evaluated on the held-out pairs every this many steps
    rm_patience: evaluations without improvement before a reward model stops
    rm_lr: learning rate of the standard reward model and of pi_phi (the realizable one)
    lrs: learning-rate centre per algorithm, as name=value (defaults: stored)
    budgets: steps per algorithm without the pilot, as name=value (defaults: stored)
    pilot: choose each learning rate and budget by a pilot on held-out seeds (else lrs and budgets)
    pilot_n: n of the pilot
    pilot_seeds: held-out seeds of the pilot
    pilot_seed_offset: held-out seeds are offset + 0, 1, ...
    pilot_reward_model: reward model the reward-based algorithms use in the pilot
    lr_factors: the pilot's initial grid, as multiples of each algorithm's centre
    lr_extend: factor of each grid extension
    lr_extensions: at most this many extensions until the best learning rate is interior
    win_margin: "matches" in win-rate: the paired difference's CI lies above -win_margin
    judge_samples: m pairs of the sampled (judge-style) win-rate, as the paper's 600
    max_responses: refuse exact enumeration above this many responses per prompt
    threads: torch intra-op threads (1 is fastest for these tiny matrices on shared cores)
    keep_runs: keep the trainer's run folders (models) under out/runs
    """

    world_seed: int = 0
    alphabet_size: int = 6
    length: int = 4
    n_prompts: int = 4
    n_grid: tuple[int, ...] = (64, 256, 1024)
    head_scale: float = 2.0
    perturb: float = 0.7
    gamma: float = 1.0
    beta: float = 0.05
    dpo_beta: float = 1.0
    algorithms: tuple[str, ...] = ALGORITHMS
    reward_models: tuple[str, ...] = REWARD_MODELS
    seeds: int = 8
    batch_size: int = 16
    max_steps: int = 192
    eval_every: int = 24
    converge_fraction: float = 0.25
    converge_floor: float = 0.01
    converge_floor_win: float = 0.005
    rm_holdout: float = 0.2
    rm_max_steps: int = 400
    rm_eval_every: int = 20
    rm_patience: int = 3
    rm_lr: float = 1e-2
    lrs: dict = field(default_factory=lambda: dict(STORED_LR))
    budgets: dict = field(default_factory=lambda: dict(STORED_BUDGET))
    pilot: bool = True
    pilot_n: int = 256
    pilot_seeds: int = 2
    pilot_seed_offset: int = 1000
    pilot_reward_model: str = "oracle"
    lr_factors: tuple[float, ...] = (1 / 3, 1.0, 3.0)
    lr_extend: float = 3.0
    lr_extensions: int = 3
    win_margin: float = 0.01
    judge_samples: int = 600
    max_responses: int = 4096
    threads: int = 1
    keep_runs: bool = False

    NAME = "oracle_lm"
    ONE_PROCESS = ("it trains one small model per stage through finitepref.llm's trainer, whose accelerate loop "
                   "would take the launcher's ranks for data parallelism of that one model; the trainer itself scales "
                   "out with `accelerate launch -m finitepref.llm train`")
    QUICK = {"alphabet_size": 4, "length": 3, "n_prompts": 2, "n_grid": (32, 128), "seeds": 2, "batch_size": 8,
             "max_steps": 10, "eval_every": 2, "rm_max_steps": 16, "rm_eval_every": 8, "rm_patience": 1,
             "pilot_n": 64, "pilot_seeds": 2, "lr_factors": (1.0, 3.0), "lr_extensions": 0,
             "algorithms": ("pmle", "distill", "reverse_kl", "dpo", "rebel", "rlhf"), "judge_samples": 200,
             "lrs": dict(QUICK_LR)}
    """CI: K=4, L=3 (64 responses), 2 prompts, n in {32, 128}, 2 seeds, batches of 8, <= 10 steps, 6 algorithms,
    a 2-point learning-rate grid without extensions."""
    POSITIVE = ("alphabet_size", "length", "n_prompts", "head_scale", "gamma", "dpo_beta", "n_grid", "seeds",
                "batch_size", "max_steps", "eval_every", "converge_fraction", "rm_holdout", "rm_max_steps",
                "rm_eval_every", "rm_patience", "rm_lr", "pilot_n", "pilot_seeds", "lr_factors", "lr_extend",
                "judge_samples", "max_responses", "threads")

    def check(self) -> None:
        common.check_names("algorithms", self.algorithms, ALGORITHMS)
        common.check_names("reward_models", self.reward_models, REWARD_MODELS)
        common.check_names("pilot_reward_model", (self.pilot_reward_model,), REWARD_MODELS)
        for name, what in (("lrs", "learning rate"), ("budgets", "budget")):
            common.check_names(name, tuple(getattr(self, name)), ALGORITHMS)
            if any(not v > 0 for v in getattr(self, name).values()):
                raise ValueError(f"{name}: every {what} must be > 0, got {getattr(self, name)}")
        if self.converge_floor < 0 or self.converge_floor_win < 0:
            raise ValueError(f"converge_floor, converge_floor_win: must be >= 0, got {self.converge_floor}, "
                             f"{self.converge_floor_win}")
        if self.beta < 0 or self.perturb < 0 or self.pilot_seed_offset < 0 or self.world_seed < 0:
            raise ValueError(f"beta, perturb, pilot_seed_offset, world_seed: must be >= 0, got {self.beta}, "
                             f"{self.perturb}, {self.pilot_seed_offset}, {self.world_seed}")
        if not self.rm_holdout < 0.5:
            raise ValueError(f"rm_holdout: must be < 0.5, got {self.rm_holdout}")
        if min(*self.n_grid, self.pilot_n) * (1 - self.rm_holdout) < self.batch_size:
            raise ValueError(f"n_grid: every n (and pilot_n) times 1 - rm_holdout must be >= batch_size={self.batch_size}")
        if self.max_steps < 5 * self.eval_every:
            raise ValueError(f"max_steps: must be >= 5 * eval_every (the last 20% holds two evaluations), got "
                             f"{self.max_steps} < 5 * {self.eval_every}")
        if self.pilot and self.pilot_seeds < 2:
            raise ValueError("pilot_seeds: the pilot's across-seed spread needs >= 2 seeds")
        oracle.check_size(self.alphabet_size, self.length, self.n_prompts, self.max_responses)
        if self.alphabet_size > 30:
            raise ValueError("alphabet_size: at most 30 words of the tiny vocabulary")
