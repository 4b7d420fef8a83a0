"""The typed state of one training run: accelerator, models, optimiser, schedule, data, progress.

:func:`build_run` assembles a :class:`Run` from a validated :class:`~.config.Config` and the
algorithm's registry record; the step functions of :mod:`finitepref.llm.steps` read it.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .data import Encoded, Records, load_records
from .registry import Algorithm, Loop


@dataclass
class Models:
    """The networks a batch loss may use; ``None`` where the algorithm needs none."""

    policy: Any
    """The trained network (accelerate-wrapped): the policy, or the reward model's scorer."""
    tokenizer: Any
    reference: Any = None
    """A frozen pi_0, or ``None`` (no reference, or LoRA: the policy with adapters disabled)."""
    reward_model: Any = None
    """The :class:`~.models.RewardModel` scoring samples, or (reward stage) the one being trained."""
    critic: Any = None
    """PPO's value model (a :class:`~.models.TokenScorer`)."""
    sampler: Any = None
    """The :class:`~.models.Sampler` of online responses."""


class Progress:
    """Checkpointed loop position (registered with accelerate)."""

    def __init__(self):
        self.step = 0

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = int(state["step"])


class RowOrder:
    """Rows of global batch ``step``: positions [step*batch, (step+1)*batch) of the concatenation of
    per-epoch seeded permutations (a pure function of the step, so resuming needs only the step)."""

    def __init__(self, n_rows: int, seed: int):
        self.n_rows, self.seed, self.permutations = n_rows, seed, {}

    def rows(self, step: int, batch: int) -> list[int]:
        out = []
        for pos in range(step * batch, (step + 1) * batch):
            epoch, i = divmod(pos, self.n_rows)
            if epoch not in self.permutations:
                generator = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
                self.permutations[epoch] = torch.randperm(self.n_rows, generator=generator).tolist()
            out.append(self.permutations[epoch][i])
        return out


@dataclass
class Run:
    """Everything one stage's loop reads and updates."""

    cfg: Config
    record: Algorithm
    settings: Any
    accelerator: Any
    models: Models
    optimizer: torch.optim.Optimizer
    scheduler: Any
    params: list
    records: Records
    data: Encoded
    order: RowOrder
    progress: Progress
    out: Path
    iterations: int
    """Global batches (offline) or rollouts (online) of the whole run."""
    total_updates: int
    """Optimiser updates of the whole run (the schedule's length)."""
    rows: list = None
    """Dataset rows of this process in the current iteration (set by the loop)."""
    positions: list = None
    """Positions in the global batch of this process's rows in the current iteration (set by the
    loop): with the seed and the step, they seed each example's sampling
    (:func:`~.models.example_seed`), so a response does not depend on the number of processes."""

    @property
    def device(self):
        return self.accelerator.device

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def per_process(self) -> int:
        """Rows of each global batch handled by this process."""
        return self.cfg.train.batch_size // self.world_size

    @property
    def n_micro(self) -> int:
        """Micro-batches per process per global batch (gradient accumulation)."""
        return self.per_process // self.cfg.train.micro_batch_size

    def no_sync(self, last: bool):
        """Skip the gradient all-reduce of the trained modules except on the ``last`` micro-batch."""
        if last:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for module in self.trained_modules():
            stack.enter_context(self.accelerator.no_sync(module))
        return stack

    def trained_modules(self) -> list:
        return [self.models.policy] + ([self.models.critic] if self.models.critic is not None else [])

    def optimizer_step(self) -> None:
        """Clip, step the optimiser and the schedule, clear the gradients."""
        if self.cfg.train.max_grad_norm is not None:
            self.accelerator.clip_grad_norm_(self.params, self.cfg.train.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (third-party code may use the global state)
    torch.manual_seed(seed)


def make_scheduler(opt, cfg: Config, total_updates: int):
    """Linear warm-up, then linear or cosine decay to 0 (or constant) over ``total_updates``."""
    train = cfg.train

    def factor(step: int) -> float:
        if step < train.warmup_steps:
            return (step + 1) / max(1, train.warmup_steps)
        frac = min(1.0, (step - train.warmup_steps) / max(1, total_updates - train.warmup_steps))
        if train.schedule == "linear":
            return 1.0 - frac
        if train.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * frac))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def adam_kwargs(impl: str, device) -> dict:
    """AdamW's ``fused``/``foreach`` flags for ``train.adam_impl`` (fused falls back to foreach on a device
    without a fused kernel)."""
    if impl == "fused":
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        if torch.device(device).type in _get_fused_kernels_supported_devices():
            return {"fused": True}
        return {"foreach": True}
    return {"foreach": True} if impl == "foreach" else {}


def make_optimizer(params: list, train, device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=train.lr, betas=tuple(train.adam_betas), eps=train.adam_eps,
                             weight_decay=train.weight_decay, **adam_kwargs(train.adam_impl, device))


def check_processes(cfg: Config, record: Algorithm, world_size: int) -> None:
    """Batch sizes that split over ``world_size`` processes; rollouts with the HF backend."""
    train = cfg.train
    if cfg.generation.backend == "vllm" and record.loop is not Loop.OFFLINE:
        raise ValueError("generation.backend=vllm is supported by `evaluate` only; training rollouts need the "
                         "current weights and use generation.backend=hf")
    mini = getattr(cfg.algorithm.settings, "num_mini_batches", 1)
    if record.loop is not Loop.OFFLINE and (train.batch_size // world_size) % mini:
        raise ValueError(f"train.batch_size={train.batch_size} / {world_size} processes must be divisible by "
                         f"algorithm.num_mini_batches={mini}")
    if train.batch_size % (world_size * train.micro_batch_size):
        raise ValueError(f"train.batch_size={train.batch_size} must be a multiple of processes x micro_batch_size "
                         f"= {world_size} x {train.micro_batch_size}: launch fewer processes (accelerate launch "
                         f"--num_processes N overrides the config file's count; the shipped ddp/fsdp/deepspeed "
                         f"files start 4), or set --micro-batch-size / --batch-size to fit")


def build_models(cfg: Config, record: Algorithm, device) -> Models:
    """The trained network and the frozen ones this algorithm needs (unwrapped, before ``prepare``)."""
    from . import models as hub

    if record.trains_reward_model:
        tok = hub.load_tokenizer(cfg.model.tokenizer or (cfg.model.name if not cfg.model.name.startswith("tiny:")
                                                         else "tiny"))
        rcfg = replace(cfg.reward, missing_eos_penalty=None, normalize=False, dtype=cfg.model.dtype,
                       kind="sequence_classification")
        trainee = hub.RewardModel(hub.load_reward_backbone(rcfg, init_from=cfg.model.name), tok, rcfg, tok)
        return Models(policy=trainee.scorer, tokenizer=tok, reward_model=trainee)
    policy, reference, tok = hub.load_policy(cfg)
    if reference is not None:
        reference.to(device)
    models = Models(policy=policy, tokenizer=tok, reference=reference)
    if record.needs_reward_model:
        models.reward_model = hub.load_reward_model(cfg.reward, tok)
        models.reward_model.model.to(device)
    if record.needs_value_head:
        # the value model starts from the reward model, normalisation included, trained in the policy's dtype
        backbone = hub.load_reward_backbone(replace(cfg.reward, dtype=cfg.model.dtype))
        models.critic = hub.TokenScorer(backbone, bias=models.reward_model.bias).train()
    return models


def schedule_length(cfg: Config, record: Algorithm, n_rows: int) -> tuple[int, int]:
    """(iterations, optimiser updates) of the whole run over ``n_rows`` usable rows."""
    train = cfg.train
    if record.loop is Loop.OFFLINE:
        iterations, updates_per_iteration = int(train.epochs * n_rows) // train.batch_size, 1
    else:
        episodes = train.total_episodes if train.total_episodes is not None else int(train.epochs * n_rows)
        iterations = episodes // train.batch_size
        updates_per_iteration = cfg.algorithm.settings.num_ppo_epochs * cfg.algorithm.settings.num_mini_batches
    if iterations <= 0:
        raise ValueError(f"no complete batch of train.batch_size={train.batch_size}: increase the data, "
                         "train.epochs or train.total_episodes")
    return iterations, iterations * updates_per_iteration


def _check_shared_trunk(cfg: Config, accelerator) -> None:
    """``model.unfrozen_layers`` shares the frozen trunk with pi_0, which needs whole parameters."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    stage = getattr(getattr(accelerator.state, "deepspeed_plugin", None), "zero_stage", 0)
    if cfg.model.unfrozen_layers and (kind == DistributedType.FSDP or (kind == DistributedType.DEEPSPEED
                                                                        and stage == 3)):
        raise ValueError("model.unfrozen_layers shares the frozen trunk between the policy and pi_0, which needs "
                         "unsharded parameters: use ddp.yaml or deepspeed_zero2.yaml, not FSDP or ZeRO-3")


def _warn_low_precision(cfg: Config, record: Algorithm, accelerator) -> None:
    from accelerate.utils import DistributedType

    if (accelerator.is_main_process and cfg.model.dtype != "float32" and not (cfg.lora.enabled and record.adapters)
            and accelerator.distributed_type != DistributedType.DEEPSPEED):
        print(f"warning: training {cfg.model.dtype} weights without fp32 master copies; small updates may "
              "round to zero (use model.dtype=float32 with mixed precision, or DeepSpeed)")


def build_run(cfg: Config, accelerator) -> Run:
    """Models, optimiser, data, schedule, prepared by ``accelerator`` (the order fixes the RNG stream)."""
    from .models import Sampler

    record, train = cfg.algorithm.record, cfg.train
    check_processes(cfg, record, accelerator.num_processes)
    _check_shared_trunk(cfg, accelerator)
    models = build_models(cfg, record, accelerator.device)
    _warn_low_precision(cfg, record, accelerator)
    params = [p for p in models.policy.parameters() if p.requires_grad]
    if models.critic is not None:
        params += list(models.critic.parameters())
    opt = make_optimizer(params, train, accelerator.device)
    records = load_records(cfg.data, record.data, seed=train.seed)
    data = Encoded(records, models.tokenizer, cfg.data, record.data)
    if len(data) < train.batch_size:
        raise ValueError(f"{records.origin}: {len(data)} usable rows < train.batch_size={train.batch_size}")
    iterations, total_updates = schedule_length(cfg, record, len(data))
    sched = make_scheduler(opt, cfg, total_updates)
    if models.critic is not None:
        models.policy, models.critic, opt = accelerator.prepare(models.policy, models.critic, opt)
    else:
        models.policy, opt = accelerator.prepare(models.policy, opt)
    # FSDP2 replaces the prepared modules' parameters by sharded ones: clip those (accelerate copes with the
    # pre-prepare list too, but does not need to)
    params = [p for p in models.policy.parameters() if p.requires_grad]
    if models.critic is not None:
        params += list(models.critic.parameters())
    if record.trains_reward_model:
        models.reward_model.scorer = models.policy
    progress = Progress()
    accelerator.register_for_checkpointing(sched)
    accelerator.register_for_checkpointing(progress)
    models.sampler = Sampler(cfg.generation, models.tokenizer)
    return Run(cfg=cfg, record=record, settings=cfg.algorithm.settings, accelerator=accelerator, models=models,
               optimizer=opt, scheduler=sched, params=params, records=records, data=data,
               order=RowOrder(len(data), train.seed), progress=progress, out=Path(cfg.output_dir),
               iterations=iterations, total_updates=total_updates)
