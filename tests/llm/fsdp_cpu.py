"""FSDP on CPU processes: ``accelerate launch --config_file fsdp.yaml ... tests/llm/fsdp_cpu.py ARGS``
runs ``python -m finitepref.llm ARGS`` with the launcher's FSDP plugin really applied.

On a machine without GPUs, ``accelerate launch --config_file fsdp.yaml`` (or a DeepSpeed file) starts
the processes with the FSDP settings in the environment, but ``Accelerator(cpu=True)`` (the
trainer's choice without a GPU) sets the distributed type to ``MULTI_CPU`` and ignores them: the
model is wrapped in DDP (accelerate 1.15). :func:`fsdp_on_cpu` returns an accelerator whose
``prepare`` applies FSDP2's ``fully_shard`` on a CPU device mesh (gloo) instead.
"""

import sys


def fsdp_on_cpu():
    """An accelerator whose ``prepare`` applies the launcher's FSDP plugin on CPU processes: the FSDP
    type and plugin are set in both of accelerate's shared states (``AcceleratorState`` copies
    ``PartialState``'s fields whenever it is instantiated)."""
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    accelerator = Accelerator(cpu=True)
    if accelerator.distributed_type != DistributedType.FSDP:
        accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # read from the launcher's environment
        accelerator.state.distributed_type = PartialState().distributed_type = DistributedType.FSDP
    return accelerator


if __name__ == "__main__":
    import finitepref.llm.train as trainer

    plain = trainer.train

    def train(cfg, accelerator=None):
        return plain(cfg, accelerator or fsdp_on_cpu())

    trainer.train = train
    from finitepref.llm.__main__ import main

    sys.exit(main(sys.argv[1:]))
