"""Peak resident memory of a short training run, for the memory-estimate test (run as a script).

``python tests/llm/measure_memory.py MODEL_DIR OUT_DIR CONFIG [--set key=value ...]`` prints one JSON
line: the ``--dry-run`` estimate (``total_gib``) and the measured increase of the peak resident set
(VmHWM) over the resident set just before training, in GiB. Also used by ``make_pythia160m`` to write
a randomly initialised Pythia-160M-shaped GPT-NeoX (published configuration) into MODEL_DIR.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GIB = 1024**3


def status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


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


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    model_dir, out, config, *rest = argv
    from finitepref.llm.config import load_config
    from finitepref.llm.memory import estimate
    from finitepref.llm.train import train

    sets = [s for flag, s in zip(rest[::2], rest[1::2], strict=True) if flag == "--set"]
    cfg = load_config(config, [f"output_dir={out}", f"model.name={model_dir}", "model.tokenizer=tiny",
                               f"reward.model={model_dir}", "reward.tokenizer=tiny", "log.tensorboard=false",
                               "log.progress=false", "log.csv=false", *sets])
    est = estimate(cfg)
    import accelerate  # noqa: F401  (imported before the baseline is read)

    before = status_kib("VmRSS")
    train(cfg)
    peak = status_kib("VmHWM")
    print(json.dumps({"estimate_gib": est["host_peak_gib"], "device_gib": est["total_gib"], "parts_gib": est["parts_gib"],
                      "measured_gib": (peak - before) * 1024 / GIB}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make_pythia160m(sys.argv[2])
    else:
        main(sys.argv[1:])
