"""The trainer's accelerator: the launcher's sharding honoured on GPUs and on CPU processes alike.

On a machine without a GPU, ``Accelerator(cpu=True)`` sets accelerate's distributed type to
``MULTI_CPU`` whatever the launcher's config file says (accelerate 1.15): ``accelerate launch
--config_file fsdp.yaml`` would silently train plain DDP. :func:`make_accelerator` applies the
launcher's FSDP plugin there (FSDP2's ``fully_shard`` on a gloo device mesh), and refuses a DeepSpeed
launch on CPU instead of running it as DDP (DeepSpeed's engines need GPUs here: use ``fsdp.yaml`` or
``ddp.yaml`` on CPU processes).
"""

from __future__ import annotations

import os

import torch

from .errors import ConfigError

__all__ = ["make_accelerator"]


def _launched_with(name: str) -> bool:
    """Whether ``accelerate launch`` set ``ACCELERATE_USE_<name>`` (from its config file or flags)."""
    return os.environ.get(f"ACCELERATE_USE_{name}", "false").lower() in ("1", "true", "yes")


def make_accelerator(**kwargs):
    """An ``accelerate.Accelerator`` for this machine: GPUs when present; else CPU processes (gloo), with
    the launcher's FSDP plugin really applied. ``kwargs`` go to ``Accelerator`` (e.g. ``mixed_precision``).

    Raises
    ------
    ConfigError
        A DeepSpeed launch on a machine without a GPU.
    """
    from accelerate import Accelerator

    if torch.cuda.is_available():
        return Accelerator(**kwargs)
    if _launched_with("DEEPSPEED"):
        raise ConfigError("accelerate launch with a DeepSpeed config on a machine without a GPU: accelerate would "
                          "run it as plain DDP; use configs/accelerate/fsdp.yaml or ddp.yaml on CPU processes")
    accelerator = Accelerator(cpu=True, **kwargs)
    if _launched_with("FSDP"):
        from accelerate.state import PartialState
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        if accelerator.distributed_type != DistributedType.FSDP:
            # the plugin reads the launcher's environment; both shared states carry the type
            accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin()
            accelerator.state.distributed_type = PartialState().distributed_type = DistributedType.FSDP
    return accelerator
