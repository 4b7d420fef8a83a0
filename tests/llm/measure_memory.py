"""Peak resident memory of a short training run, for the memory-estimate tests (run as a script).

``python tests/llm/measure_memory.py MODEL_DIR OUT_DIR CONFIG [--set key=value ...]`` prints one JSON
line: the ``--dry-run`` estimate (``total_gib``) and the measured increase of the peak resident set
(VmHWM) over the resident set just before training, in GiB. Also used by ``make_pythia160m`` to write
a randomly initialised Pythia-160M-shaped GPT-NeoX (published configuration) into MODEL_DIR.

``accelerate launch ... tests/llm/measure_memory.py phases MODEL_DIR OUT_DIR CONFIG [--set ...]``
trains under the launcher (under an FSDP config file, FSDP is really applied on CPU processes:
:func:`finitepref.llm.accelerators.make_accelerator`) and writes, per rank, ``OUT_DIR/memory-rank-<rank>.json``: the peak and final
resident-set increase of each phase of the run (:class:`Phases`), over the resident set just before
training. Each phase's peak is read from VmHWM after resetting it (``/proc/self/clear_refs``) when
the phase starts, so it does not depend on sampling times.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GIB = 1024**3


def status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> None:
    """Set VmHWM to the current resident set (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class Phases:
    """Per-phase resident-set peaks of this process, in GiB over a baseline.

    :meth:`wrap` makes a function a phase: entering it closes the running phase (its peak is read
    and the peak is reset), leaving it closes the function's phase and resumes the enclosing one.
    A phase entered several times keeps its largest peak; time outside every wrapped function is
    the phase ``"other"``.
    """

    def __init__(self):
        self.base = status_kib("VmRSS")
        self.stack, self.peak, self.end = ["other"], {}, {}
        reset_peak()

    def _close(self) -> None:
        name = self.stack[-1]
        self.peak[name] = max(self.peak.get(name, 0.0), (status_kib("VmHWM") - self.base) * 1024 / GIB)
        self.end[name] = (status_kib("VmRSS") - self.base) * 1024 / GIB
        reset_peak()

    def wrap(self, owner, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def phase(*args, **kwargs):
            self._close()
            self.stack.append(name)
            try:
                return inner(*args, **kwargs)
            finally:
                self._close()
                self.stack.pop()

        setattr(owner, attr, phase)

    def result(self) -> dict:
        self._close()
        return {"peak_gib": self.peak, "end_gib": self.end, "max_gib": max(self.peak.values())}


def make_pythia160m(path: str) -> None:
    """Pythia-160M's published architecture (hidden 768, 12 layers, 12 heads, MLP 3072, vocabulary
    50304, rotary pct 0.25), random weights."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, rotary_pct=0.25, max_position_embeddings=2048,
                        use_parallel_residual=True, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                        bos_token_id=1)
    torch.manual_seed(0)
    GPTNeoXForCausalLM(cfg).save_pretrained(path)


def _config(argv: list[str]):
    """The config of ``MODEL_DIR OUT_DIR CONFIG [--set key=value ...]``: the model in MODEL_DIR, the
    tiny tokenizer, no logs."""
    from finitepref.llm.config import load_config

    model_dir, out, config, *rest = argv
    sets = [s for flag, s in zip(rest[::2], rest[1::2], strict=True) if flag == "--set"]
    return load_config(config, [f"output_dir={out}", f"model.name={model_dir}", "model.tokenizer=tiny",
                                f"reward.model={model_dir}", "reward.tokenizer=tiny", "log.tensorboard=false",
                                "log.progress=false", "log.csv=false", *sets])


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    from finitepref.llm.memory import estimate
    from finitepref.llm.train import train

    cfg = _config(argv)
    est = estimate(cfg)
    import accelerate  # noqa: F401  (imported before the baseline is read)

    before = status_kib("VmRSS")
    train(cfg)
    peak = status_kib("VmHWM")
    print(json.dumps({"estimate_gib": est["host_peak_gib"], "device_gib": est["total_gib"], "parts_gib": est["parts_gib"],
                      "measured_gib": (peak - before) * 1024 / GIB}))


def _local_bytes(module) -> int:
    """Bytes of this process's part of ``module``'s parameters (a DTensor's local shard)."""
    return sum(getattr(p, "_local_tensor", p).untyped_storage().nbytes() for p in module.parameters())


def phases_main(argv: list[str]) -> None:
    """Train under the launcher with the phases of :class:`Phases` wrapped; one JSON file per rank
    (with the distributed type and the GiB of this process's policy parameters when training starts).
    Under an FSDP launch the accelerator is :func:`fsdp_on_cpu`'s."""
    import torch

    torch.set_num_threads(1)
    import accelerate

    from finitepref.llm import run, train

    cfg = _config(argv)
    seen = {}
    loop = train.run_loop

    def run_loop(r, *args):
        seen["policy_local_gib"] = _local_bytes(r.models.policy) / GIB
        return loop(r, *args)

    train.run_loop = run_loop
    phases = Phases()
    for owner, attr, name in [(run, "build_models", "load"), (accelerate.Accelerator, "prepare", "prepare"),
                              (train, "run_loop", "train"), (train, "save_final", "save"),
                              (train, "save_checkpoint", "checkpoint"),
                              (accelerate.Accelerator, "get_state_dict", "gather")]:
        phases.wrap(owner, attr, name)
    train.train(cfg)
    from accelerate.state import AcceleratorState

    result = {**phases.result(), **seen, "distributed_type": str(AcceleratorState().distributed_type)}
    Path(cfg.output_dir, f"memory-rank-{os.environ.get('RANK', '0')}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make_pythia160m(sys.argv[2])
    elif sys.argv[1] == "phases":
        phases_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
