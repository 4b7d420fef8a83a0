"""Two gloo processes for the sharding tests: every rank runs ``results()`` inside
``finitepref.distributed.sharded("world")``; rank 0's answer comes back as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from finitepref import distributed


def _worker(rank: int, world: int, store: str, result: str, results: Callable[[], dict]) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    dist.barrier()  # every connection of the mesh is up on both sides before a rank may finish and close its own
    try:
        with distributed.sharded("world"):
            out = results()
        if rank == 0:
            Path(result).write_text(json.dumps(out))
        dist.barrier()  # no rank tears down while another still talks
    finally:
        dist.destroy_process_group()  # on an error too: a peer left waiting then fails at once


def run_sharded(results: Callable[[], dict], folder: Path, world: int = 2) -> dict:
    """``results()`` (a module-level function, so that the spawned ranks can import it) on ``world`` gloo ranks."""
    import torch.multiprocessing as mp

    result = folder / "result.json"
    mp.spawn(_worker, args=(world, str(folder / "store"), str(result), results), nprocs=world, join=True)
    return json.loads(result.read_text())
