"""GPU acceptance run, one command (issue 15, item 6): ``python -m finitepref.llm.device_check``.

On CUDA it

(a) runs the toy core (:func:`finitepref.estimators.pmle`) at |Pi| = 10^6 and 10^7 on the GPU and
    checks that the argmin equals the CPU's on a subsample of the trials, with timings (a size
    whose policy table does not fit the GPU is reported as skipped, with a note);
(b) builds a Pythia-1.4B-shaped GPT-NeoX from its published architecture (hidden 2048, 24 layers,
    16 heads, MLP 8192, vocabulary 50304, rotary pct 0.25; random weights, no download), and runs
    every algorithm of :data:`finitepref.llm.registry.REGISTRY` from its shipped
    ``tldr/pythia-1.4b`` config (Table 5's LoRA, r 1024, alpha 2048 on the shipped target modules;
    micro-batch sizes and gradient checkpointing as shipped; bf16 mixed precision as
    ``configs/accelerate`` sets it) with prompts of 512 tokens and 53 new tokens: two optimiser
    steps offline, one rollout of 64 prompts then two updates online;
(c) launches ``dpo`` (two updates) under the shipped DeepSpeed ZeRO-2 and ZeRO-3 files with
    ``accelerate launch``, one process per visible GPU, as a user would (``--skip-deepspeed`` to leave
    them out; DeepSpeed ships as a source distribution: ``pip install deepspeed`` builds its ops just in
    time and needs the CUDA toolkit's ``nvcc`` matching torch's CUDA);
(d) prints a table of tokens/s, peak GPU memory against ``--dry-run``'s estimate, and a NaN check,
    and exits non-zero on any failure.

``--cpu`` runs the same checks with tiny shapes on the CPU (the test suite runs it). Writes
``device_check.json`` to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import random
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from finitepref import atomic, provenance

GIB = 1024**3


@dataclass(frozen=True)
class Shape:
    """The model, data and batch shapes of one mode."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    prompt_len: int
    new_tokens: int
    online_prompts: int
    offline_batch: int | None  # None: the shipped micro-batch size
    micro_batch: int | None  # None: as shipped (Table 5: 8)
    toy_sizes: tuple[int, ...]
    toy_trials: int
    toy_subsample: int
    mixed_precision: str
    lora_r: int | None = None  # None: as shipped (Table 5: r 1024, alpha 2048)


GPU = Shape(2048, 24, 16, 8192, 50304, 512, 53, 64, None, None, (10**6, 10**7), 64, 8, "bf16")
CPU = Shape(32, 2, 4, 64, 64, 8, 4, 4, 4, 2, (10**4,), 16, 4, "no", lora_r=4)


# ------------------------------------------------------------------------------------------ toy core
def _grid(size: int) -> tuple[int, float, int]:
    """(dim, resolution, |Pi|) of the log-linear grid with about ``size`` policies."""
    dim = 2 if size <= 4 * 10**6 else 3
    half = round((size ** (1 / dim) - 1) / 2)  # the grid has 2 half + 1 points per axis (radius 1)
    return dim, 1.0 / half, (2 * half + 1) ** dim


def toy_check(shape: Shape, device: str) -> list[dict]:
    """pmle's argmin on ``device`` against the CPU's on a subsample of trials, per class size."""
    import finitepref as fp
    from finitepref.preference import PreferenceData

    out = []
    for size in shape.toy_sizes:
        dim, resolution, n_pol = _grid(size)
        row = {"check": f"toy pmle |Pi|={n_pol:.2e}", "ok": False}
        try:
            start = time.perf_counter()
            prob = fp.ToyProblem.loglinear_grid(dim=dim, resolution=resolution, seed=0)
            data = prob.sample(1000, trials=shape.toy_trials, seed=1)
            row["build_s"] = time.perf_counter() - start
            dev = prob.to(device)
            start = time.perf_counter()
            got = fp.estimators.pmle(dev, data)
            _sync(device)
            row["device_s"] = time.perf_counter() - start
            sub = PreferenceData(data.counts[: shape.toy_subsample])
            start = time.perf_counter()
            want = fp.estimators.pmle(prob, sub)
            row["cpu_subsample_s"] = time.perf_counter() - start
            row["ok"] = bool((got[: shape.toy_subsample] == want).all())
            row["note"] = f"{shape.toy_trials} trials on {device}, {shape.toy_subsample} on the CPU"
            del dev, prob
        except torch.cuda.OutOfMemoryError:
            row.update(ok=True, note="skipped: the policy table does not fit the GPU (streamed classes needed)")
        except Exception as e:  # a failure of the check itself
            row["note"] = f"{type(e).__name__}: {e}"
        out.append(row)
        _free()
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------- models
def word_tokenizer(vocab: int):
    """A WordLevel tokenizer of ``vocab`` ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f"w{i}": i + 3 for i in range(vocab - 3)}}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   padding_side="left")


def build_model_dir(shape: Shape, folder: Path) -> Path:
    """A randomly initialised GPT-NeoX of ``shape`` (Pythia's published architecture) and a tokenizer."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                        num_attention_heads=shape.heads, intermediate_size=shape.intermediate, rotary_pct=0.25,
                        rotary_emb_base=10000, max_position_embeddings=2048, use_parallel_residual=True,
                        tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=1,
                        attention_dropout=0.0, hidden_dropout=0.0)
    torch.manual_seed(0)
    path = folder / "model"
    GPTNeoXForCausalLM(cfg).save_pretrained(path)
    word_tokenizer(shape.vocab).save_pretrained(path)
    return path


def write_rows(shape: Shape, folder: Path, n: int) -> Path:
    """Synthetic TL;DR rows (all columns) with prompts of ``prompt_len`` words."""
    rng = random.Random(0)
    n_words = min(shape.vocab - 3, 1000)

    def text(k: int) -> str:
        return " ".join(f"w{rng.randrange(n_words)}" for _ in range(k))

    path = folder / "rows.jsonl"
    with path.open("w") as f:
        for _ in range(n):
            f.write(json.dumps({"query": text(shape.prompt_len), "chosen": " " + text(shape.new_tokens - 1),
                                "rejected": " " + text(shape.new_tokens - 1),
                                "reference_response": " " + text(shape.new_tokens - 1)}) + "\n")
    return path


def algorithm_sets(name: str, shape: Shape, model: Path, data: Path, out: Path) -> list[str]:
    """The ``--set`` overrides that put the shipped ``tldr/pythia-1.4b/<name>`` config on the random model
    and synthetic rows (two updates)."""
    from .config import load_config
    from .registry import REGISTRY, DataKind, Loop

    record = REGISTRY[name]
    base = load_config(f"tldr/pythia-1.4b/{name}")
    micro = shape.micro_batch or base.train.micro_batch_size
    sets = [f"output_dir={out}", f"model.name={model}", f"model.tokenizer={model}", "model.family=null",
            f"reward.model={model}", f"reward.tokenizer={model}", f"data.source={data}",
            f"data.schema={'tldr_sft' if record.data is not DataKind.PREFERENCE else 'tldr_preference'}",
            f"data.max_prompt_length={shape.prompt_len}", f"data.max_response_length={shape.new_tokens}",
            f"generation.max_new_tokens={shape.new_tokens}", f"generation.min_new_tokens={shape.new_tokens}",
            f"train.micro_batch_size={micro}", "train.save_every=0", "log.tensorboard=false", "log.progress=false",
            "log.csv=false", "eval.judge=reward-model"]
    if shape.lora_r is not None:
        sets += [f"lora.r={shape.lora_r}", f"lora.alpha={2 * shape.lora_r}"]
    if record.loop is Loop.OFFLINE:
        batch = shape.offline_batch or micro
        # exactly two updates, so the run finishes (no resumable checkpoint is written)
        sets += [f"train.batch_size={batch}", f"train.epochs={2 * batch / data_rows(shape)}", "train.max_steps=2",
                 "train.total_episodes=null"]
    else:  # one rollout of a reduced batch, then two updates
        sets += [f"train.batch_size={shape.online_prompts}", f"train.total_episodes={shape.online_prompts}",
                 "algorithm.num_ppo_epochs=2", "algorithm.num_mini_batches=1",
                 f"generation.batch_size={micro}", f"reward.batch_size={micro}"]
    return sets


def algorithm_config(name: str, shape: Shape, model: Path, data: Path, out: Path):
    """The shipped ``tldr/pythia-1.4b/<name>`` config on the random model and synthetic rows."""
    from .config import load_config

    return load_config(f"tldr/pythia-1.4b/{name}", algorithm_sets(name, shape, model, data, out))


DEEPSPEED_FILES = ("deepspeed_zero2.yaml", "deepspeed_zero3.yaml")
"""The shipped DeepSpeed launcher files the GPU run launches ``dpo`` under (one process per GPU)."""


def deepspeed_check(config_file: str, shape: Shape, model: Path, data: Path, folder: Path) -> dict:
    """``accelerate launch --config_file <config_file> -m finitepref.llm train`` of ``dpo`` (two updates) on
    every visible GPU, as a user launches it; ok when it exits 0 with finite final metrics."""
    from .config import CONFIG_DIR

    row = {"check": f"dpo under {config_file}", "ok": False}
    if importlib.util.find_spec("deepspeed") is None:
        row["note"] = "deepspeed is not installed: pip install deepspeed (built from source, needs nvcc)"
        return row
    out = folder / f"dpo-{config_file.split('.')[0]}"
    sets = [x for s in algorithm_sets("dpo", shape, model, data, out) for x in ("--set", s)]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(Path(CONFIG_DIR) / "accelerate" / config_file), "--num_processes", str(torch.cuda.device_count()),
           "-m", "finitepref.llm", "train", "--config", "tldr/pythia-1.4b/dpo", *sets]
    start = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        row["seconds"] = time.perf_counter() - start
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
        row["tokens_per_s"] = summary.get("tokens_per_s")
        row["ok"] = r.returncode == 0 and bool(summary) and _finite(summary)
        if not row["ok"]:
            row["note"] = f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}"
    except subprocess.TimeoutExpired:
        row["note"] = "timed out after 300 s"
    return row




def _finite(metrics: dict) -> bool:
    return all(math.isfinite(v) for v in metrics.values() if isinstance(v, (int, float)))


def algorithm_check(name: str, shape: Shape, model: Path, data: Path, folder: Path) -> dict:
    """Train ``name`` for two updates; tokens/s, peak memory against the estimate, NaN check."""
    from .accelerators import make_accelerator
    from .memory import estimate
    from .train import train

    row = {"check": name, "ok": False}
    try:
        cfg = algorithm_config(name, shape, model, data, folder / name)
        row["estimate_gib"] = estimate(cfg)["total_gib"]
        _free()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        accelerator = make_accelerator(mixed_precision=shape.mixed_precision)
        result = train(cfg, accelerator)
        accelerator.free_memory()  # drop the prepared models and optimiser before the next algorithm
        row["seconds"] = time.perf_counter() - start
        metrics = result["metrics"]
        row["tokens_per_s"] = metrics.get("tokens_per_s")
        row["finite"] = _finite(metrics)
        if torch.cuda.is_available():
            row["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        row["ok"] = row["finite"] and result["steps"] >= 1
    except Exception as e:
        row["note"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    _free()
    return row


def data_rows(shape: Shape) -> int:
    return max(shape.online_prompts, 2 * (shape.offline_batch or 8))


def llm_checks(shape: Shape, names: list[str], folder: Path) -> list[dict]:
    model = build_model_dir(shape, folder)
    data = write_rows(shape, folder, data_rows(shape))
    return [algorithm_check(name, shape, model, data, folder) for name in names]


# ---------------------------------------------------------------------------------------------- main
def table(rows: list[dict]) -> str:
    head = f"{'check':<28} {'ok':<4} {'tokens/s':>10} {'peak GiB':>9} {'est. GiB':>9} {'seconds':>8}  note"
    lines = [head, "-" * len(head)]
    def num(r, key, fmt):
        return format(r[key], fmt) if r.get(key) is not None else "-"

    for r in rows:
        seconds = r.get("seconds", r.get("device_s"))
        lines.append(f"{r['check']:<28} {'yes' if r['ok'] else 'NO':<4} {num(r, 'tokens_per_s', '10.0f'):>10} "
                     f"{num(r, 'peak_gib', '9.2f'):>9} {num(r, 'estimate_gib', '9.2f'):>9} "
                     f"{format(seconds, '8.2f') if seconds is not None else '-':>8}  {r.get('note', '')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from .registry import REGISTRY

    p = argparse.ArgumentParser(prog="python -m finitepref.llm.device_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU (the test suite's mode)")
    p.add_argument("--algorithms", default=",".join(REGISTRY), help="comma-separated registry names")
    p.add_argument("--skip-toy", action="store_true", help="skip the toy-core check")
    p.add_argument("--skip-deepspeed", action="store_true", help="skip the DeepSpeed ZeRO-2/3 launches (GPU mode)")
    p.add_argument("--out", help="folder for device_check.json")
    args = p.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("device_check: no CUDA device; use --cpu for the tiny CPU mode")
        return 2
    shape, device = (CPU, "cpu") if args.cpu else (GPU, "cuda")
    start = time.perf_counter()
    rows = [] if args.skip_toy else toy_check(shape, device)
    with tempfile.TemporaryDirectory() as tmp:
        rows += llm_checks(shape, [a for a in args.algorithms.split(",") if a], Path(tmp))
        if not args.cpu and not args.skip_deepspeed:  # DeepSpeed is refused on CPU processes
            model, data = Path(tmp) / "model", Path(tmp) / "rows.jsonl"  # written by llm_checks
            rows += [deepspeed_check(f, shape, model, data, Path(tmp)) for f in DEEPSPEED_FILES]
    print(table(rows))
    failed = [r["check"] for r in rows if not r["ok"]]
    total = time.perf_counter() - start
    print(f"device_check: {len(rows) - len(failed)}/{len(rows)} passed in {total:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        record = {"rows": rows, "seconds": total, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                  "versions": provenance.versions(provenance.LLM), "git_commit": provenance.git_commit()}
        atomic.write_text(Path(args.out) / "device_check.json", json.dumps(record, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
