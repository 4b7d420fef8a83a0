"""Side-by-side DPO throughput: ``finitepref.llm`` against TRL's DPOTrainer and a bare PyTorch loop.

``python -m finitepref.llm.bench [--quick] [--out DIR]``

The anchor (issue 15, item 4): a GPT-NeoX with hidden size 128, 4 layers, 4 heads, MLP width 512,
a 256-word WordLevel tokenizer with ``<pad>`` and ``</s>`` built in code, 512 rows of 28-36-word
prompts and responses, sigmoid DPO with beta 0.1, lr 1e-6 with linear decay, fused AdamW (foreach
where a device has no fused kernel, the same for all three), gradient clipping 1.0, max length 96,
batch 8, float32, 2 threads, 40 timed steps after 3 untimed warm-up steps. Each repetition builds
every contender from the same saved weights and runs them step by step in turn (the order rotating
every step; TRL's ``train()`` is held between steps by a callback), so a change of the machine's load
hits every contender alike; a ratio is the median over repetitions of the ratio within one. Pair-tokens/s counts the real tokens of prompt+chosen and prompt+rejected (responses end
with ``</s>``) from the dataset's mean, the same for every contender.

* ``bare``: one right-padded forward of [prompt+chosen; prompt+rejected], a full-vocabulary float32
  log-softmax at every position, a frozen reference copy under ``no_grad``.
* ``trl``: ``trl.DPOTrainer`` with an explicit frozen reference, float32, no gradient checkpointing
  (skipped, and said so, when ``trl`` is not installed: ``pip install -e ".[bench]"``).
* ``finitepref:<algo>``: the trainer's own loop (:func:`finitepref.llm.train.run_loop`) for ``dpo``,
  ``ipo`` and ``chipo``.

It also reports, for a small run of the online algorithms ``distill`` and ``rlhf`` on the anchor's
model, the share of time spent generating (sampling and pi_0's log-probs), scoring (reward model and
the sampler's log-probs) and updating. Writes ``bench.csv`` (one row per repetition and contender)
and ``summary.json`` atomically into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import io
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from finitepref import atomic, provenance

VOCAB, HIDDEN, LAYERS, HEADS, INTER = 256, 128, 4, 4, 512
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
WORDS = [f"w{i}" for i in range(VOCAB - 3)]
TARGET_TRL, TARGET_BARE = 1.2, 1.0


@dataclass(frozen=True)
class Setting:
    rows: int = 512
    steps: int = 40
    warmup: int = 3
    reps: int = 3
    batch: int = 8
    max_length: int = 96
    lr: float = 1e-6
    beta: float = 0.1
    threads: int = 2
    online_iterations: int = 3
    online_new_tokens: int = 32


@dataclass(frozen=True)
class Stepper:
    """One contender: ``step(k)`` runs its training step ``k``; ``close()`` ends it."""

    step: Callable[[int], None]
    close: Callable[[], None] = lambda: None


QUICK = Setting(rows=16, steps=2, warmup=1, reps=1, batch=4, online_iterations=1, online_new_tokens=4)


def anchor_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, EOS: 1, UNK: 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   padding_side="left")


def anchor_model(seed: int = 0):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=INTER, max_position_embeddings=128, rotary_pct=0.25, pad_token_id=0,
                        eos_token_id=1, bos_token_id=1, tie_word_embeddings=False, attention_dropout=0.0,
                        hidden_dropout=0.0)
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(cfg)


def anchor_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(28, 36)))

    return [{"query": text(), "chosen": " " + text(), "rejected": " " + text(),
             "reference_response": " " + text()} for _ in range(n)]


def pair_tokens(rows: list[dict]) -> float:
    """Mean real tokens of [prompt+chosen</s>] + [prompt+rejected</s>] per row."""
    def words(s: str) -> int:
        return len(s.split())

    return statistics.fmean(2 * words(r["query"]) + words(r["chosen"]) + words(r["rejected"]) + 2 for r in rows)


def prepare(folder: Path, s: Setting) -> dict:
    """Save the anchor's model, tokenizer and data under ``folder``."""
    model_dir, data = folder / "model", folder / "rows.jsonl"
    anchor_model().save_pretrained(model_dir)
    anchor_tokenizer().save_pretrained(model_dir)
    rows = anchor_rows(s.rows)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"model": str(model_dir), "data": str(data), "rows": rows, "pair_tokens": pair_tokens(rows)}


# --------------------------------------------------------------------------------------- bare loop
def _bare_batches(rows: list[dict], tok, s: Setting) -> list[list[tuple]]:
    """Token lists (prompt, chosen+eos, rejected+eos) in a seeded order, ``batch`` rows a batch."""
    enc = [(tok(r["query"])["input_ids"], tok(r["chosen"])["input_ids"] + [1], tok(r["rejected"])["input_ids"] + [1])
           for r in rows]
    order = torch.randperm(len(enc), generator=torch.Generator().manual_seed(0)).tolist()
    needed = (s.steps + s.warmup) * s.batch
    order = (order * math.ceil(needed / len(order)))[:needed]
    return [[enc[i] for i in order[k:k + s.batch]] for k in range(0, needed, s.batch)]


def _bare_collate(batch: list[tuple], max_length: int):
    seqs, masks = [], []
    for prompt, chosen, rejected in batch:
        for resp in (chosen, rejected):
            seqs.append((prompt + resp)[:max_length])
            masks.append(([0] * len(prompt) + [1] * len(resp))[:max_length])
    width = max(map(len, seqs))
    ids = torch.tensor([x + [0] * (width - len(x)) for x in seqs])
    attn = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in seqs])
    loss_mask = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    return ids, attn, loss_mask


def _bare_logps(model, ids, attn, loss_mask):
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (logp * loss_mask[:, 1:]).sum(-1)


def bare_stepper(env: dict, s: Setting, workdir: Path) -> Stepper:
    """The bare loop, one step per call."""
    from transformers import AutoModelForCausalLM

    from .run import adam_kwargs

    tok = anchor_tokenizer()
    policy = AutoModelForCausalLM.from_pretrained(env["model"]).train()
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=s.lr, **adam_kwargs("fused", "cpu"))
    total = s.steps + s.warmup
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 - k / total)
    batches = _bare_batches(env["rows"], tok, s)

    def step(k: int) -> None:
        ids, attn, loss_mask = _bare_collate(batches[k], s.max_length)
        with torch.no_grad():
            ref = _bare_logps(reference, ids, attn, loss_mask)
        pol = _bare_logps(policy, ids, attn, loss_mask)
        h = (pol[0::2] - ref[0::2]) - (pol[1::2] - ref[1::2])
        loss = -torch.nn.functional.logsigmoid(s.beta * h).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    return Stepper(step)


# --------------------------------------------------------------------------------------------- TRL
def trl_available() -> bool:
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def trl_stepper(env: dict, s: Setting, workdir: Path) -> Stepper:
    """TRL's DPOTrainer, one step per call: ``train()`` runs in a thread that a callback holds at the end of
    every step until the next call (the steps themselves never overlap anything)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    gate = _Gate()

    class Hold(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            gate.yield_turn()

    tok = PreTrainedTokenizerFast.from_pretrained(env["model"])
    policy = AutoModelForCausalLM.from_pretrained(env["model"])
    reference = AutoModelForCausalLM.from_pretrained(env["model"]).eval().requires_grad_(False)
    data = Dataset.from_list([{"prompt": r["query"], "chosen": r["chosen"], "rejected": r["rejected"]}
                              for r in env["rows"]])
    args = DPOConfig(output_dir=str(workdir / "trl"), per_device_train_batch_size=s.batch, learning_rate=s.lr,
                     beta=s.beta, loss_type=["sigmoid"], max_length=s.max_length, max_steps=s.steps + s.warmup,
                     lr_scheduler_type="linear", optim="adamw_torch_fused", max_grad_norm=1.0,
                     gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=not torch.cuda.is_available(),
                     save_strategy="no", report_to=[], logging_steps=10**6, dataloader_num_workers=0,
                     disable_tqdm=True, seed=0)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=data, processing_class=tok,
                         callbacks=[Hold()])
    return gate.stepper(trainer.train)


class _Stopped(Exception):
    """Ends a gated function at its next turn (:meth:`_Gate.stepper`'s ``close``)."""


class _Gate:
    """Runs a function in a thread, one turn at a time: :meth:`yield_turn` (called by the thread) hands control
    back to the caller of a step and waits for the next step, or ends the function once the stepper is closed."""

    def __init__(self) -> None:
        self.turn, self.back = threading.Semaphore(0), threading.Semaphore(0)
        self.error: BaseException | None = None
        self.stopping = False
        self.thread: threading.Thread | None = None

    def yield_turn(self) -> None:
        self.back.release()
        self.turn.acquire()
        if self.stopping:
            raise _Stopped

    def stepper(self, fn) -> Stepper:
        def target() -> None:
            try:
                fn()
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the caller of the step
                self.error = exc
            finally:
                self.back.release()

        def step(k: int) -> None:
            if self.thread is None:
                self.thread = threading.Thread(target=target, daemon=True)
                self.thread.start()
            else:
                self.turn.release()
            self.back.acquire()
            if self.error is not None:
                raise self.error

        def close() -> None:
            if self.thread is not None and self.thread.is_alive():
                self.stopping = True
                self.turn.release()
                self.thread.join()

        return Stepper(step, close)


# ------------------------------------------------------------------------------------- finitepref
def finitepref_config(env: dict, s: Setting, algo: str, out: Path, extra: tuple = ()):
    import dataclasses

    from .config import load_config
    from .registry import REGISTRY, Loop

    record = REGISTRY[algo]
    offline = record.loop is Loop.OFFLINE
    has_beta = "beta" in {f.name for f in dataclasses.fields(record.settings)}
    settings = [f"algorithm.beta={s.beta}"] if has_beta and offline else []
    overrides = [
        f"output_dir={out}", f"model.name={env['model']}", "model.dtype=float32", f"data.source={env['data']}",
        f"data.schema={'tldr_preference' if offline else 'tldr_sft'}", "data.max_prompt_length=40",
        "data.max_response_length=40", f"train.lr={s.lr}", "train.schedule=linear", f"train.batch_size={s.batch}",
        f"train.micro_batch_size={s.batch}", "train.adam_impl=fused", "train.max_grad_norm=1.0",
        "log.tensorboard=false", "log.progress=false", "log.csv=false", *settings, *extra,
    ]
    return load_config(f"tiny/{algo}", overrides)


def finitepref_stepper(env: dict, s: Setting, algo: str, workdir: Path) -> Stepper:
    """The trainer's own loop (:func:`finitepref.llm.train.run_loop`), one step per call."""
    from accelerate import Accelerator

    from .metrics_log import MetricsLogger
    from .run import build_run, seed_everything
    from .train import run_loop

    epochs = (s.steps + s.warmup) * s.batch / s.rows  # the schedule spans exactly the timed run, as in the others
    cfg = finitepref_config(env, s, algo, workdir / f"fp-{algo}", (f"train.epochs={epochs}",))
    seed_everything(cfg.train.seed)
    run = build_run(cfg, Accelerator(cpu=True))
    logger = MetricsLogger(run.out, False, False, False, 0)
    return Stepper(lambda k: run_loop(run, k + 1, logger))


# ------------------------------------------------------------------------------------------ online
@contextlib.contextmanager
def phase_timers(totals: dict):
    """Time ``steps.sample_group`` (generation) and ``steps._score_samples`` (scoring) while inside."""
    from . import steps

    saved = {"generation": steps.sample_group, "scoring": steps._score_samples}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    steps.sample_group, steps._score_samples = (timed(k, v) for k, v in saved.items())
    try:
        yield totals
    finally:
        steps.sample_group, steps._score_samples = saved["generation"], saved["scoring"]


def online_shares(env: dict, s: Setting, algo: str, workdir: Path) -> dict:
    """Share of a small online run's time in generation, scoring and updates (the rest)."""
    from accelerate import Accelerator

    from .metrics_log import MetricsLogger
    from .run import build_run, seed_everything
    from .train import run_loop

    extra = (f"reward.model={env['model']}", "reward.dtype=float32", f"generation.max_new_tokens={s.online_new_tokens}",
             f"generation.min_new_tokens={s.online_new_tokens}", f"train.total_episodes={s.batch * (s.online_iterations + 1)}")
    cfg = finitepref_config(env, s, algo, workdir / f"online-{algo}", extra)
    seed_everything(cfg.train.seed)
    run = build_run(cfg, Accelerator(cpu=True))
    logger = MetricsLogger(run.out, False, False, False, 0)
    run_loop(run, 1, logger)  # warm-up iteration, untimed
    totals: dict = {}
    with phase_timers(totals):
        start = time.perf_counter()
        run_loop(run, 1 + s.online_iterations, logger)
        total = time.perf_counter() - start
    gen, score = totals.get("generation", 0.0), totals.get("scoring", 0.0)
    return {"algorithm": algo, "iterations": s.online_iterations, "seconds": total,
            "generation_share": gen / total, "scoring_share": score / total,
            "update_share": max(0.0, total - gen - score) / total}


# -------------------------------------------------------------------------------------------- main
def contenders(algorithms: list[str], with_trl: bool) -> list[str]:
    return ["bare", *(["trl"] if with_trl else []), *(f"finitepref:{a}" for a in algorithms)]


def stepper(name: str, env: dict, s: Setting, workdir: Path) -> Stepper:
    if name == "bare":
        return bare_stepper(env, s, workdir)
    if name == "trl":
        return trl_stepper(env, s, workdir)
    return finitepref_stepper(env, s, name.split(":", 1)[1], workdir)


def summarise(rows: list[dict], names: list[str]) -> dict:
    """Median pair-tokens/s of each contender, and each trainer's ratios to the bare loop and TRL: the median
    over repetitions of the ratio within a repetition (the contenders of one repetition ran in turn, under the
    same load)."""
    rate = {(r["repetition"], r["contender"]): r["pair_tokens_per_s"] for r in rows}
    reps = sorted({r["repetition"] for r in rows})
    med = {n: statistics.median(rate[rep, n] for rep in reps) for n in names}
    out: dict = {"median_pair_tokens_per_s": med, "ratios": {}}
    others = [o for o in ("bare", "trl") if o in names]
    for n in names:
        if n.startswith("finitepref:"):
            out["ratios"][n] = {f"vs_{o}": statistics.median(rate[rep, n] / rate[rep, o] for rep in reps)
                                for o in others}
    return out


def measure(env: dict, s: Setting, names: list[str], workdir: Path) -> list[dict]:
    """Seconds of the timed steps of every contender, per repetition. Each repetition builds every contender
    from the saved weights, then runs them step by step in turn (the order rotating every step), so a change of
    the machine's load hits all of them alike; the warm-up steps are untimed."""
    rows = []
    for rep in range(s.reps):
        steppers = {name: stepper(name, env, s, workdir / f"rep{rep}") for name in names}
        seconds = dict.fromkeys(names, 0.0)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # TRL prints while it trains
                for k in range(s.warmup + s.steps):
                    for name in names[(k + rep) % len(names):] + names[:(k + rep) % len(names)]:
                        start = time.perf_counter()
                        steppers[name].step(k)
                        if k >= s.warmup:
                            seconds[name] += time.perf_counter() - start
        finally:
            for st in steppers.values():
                st.close()
        for name in names:
            rate = env["pair_tokens"] * s.batch * s.steps / seconds[name]
            rows.append({"repetition": rep, "contender": name, "seconds": seconds[name], "pair_tokens_per_s": rate})
            print(f"  rep {rep}  {name:<18} {rate:10.0f} pair-tokens/s  ({seconds[name]:.2f} s)", flush=True)
    return rows


def report(summary: dict, with_trl: bool, trl_installed: bool = False) -> list[str]:
    lines = []
    for name, r in summary["ratios"].items():
        vs_trl = f"{r['vs_trl']:.2f}x TRL (target >= {TARGET_TRL})" if "vs_trl" in r else "TRL skipped"
        lines.append(f"{name}: {summary['median_pair_tokens_per_s'][name]:.0f} pair-tokens/s, "
                     f"{r['vs_bare']:.2f}x bare loop (target >= {TARGET_BARE}), {vs_trl}")
    if not with_trl:
        lines.append("TRL was skipped: " + ("--no-trl" if trl_installed else
                                            "trl is not installed (pip install -e '.[bench]')"))
    for o in summary.get("online", []):
        lines.append(f"{o['algorithm']}: generation {o['generation_share']:.0%}, scoring {o['scoring_share']:.0%}, "
                     f"updates {o['update_share']:.0%} of {o['seconds']:.2f} s ({o['iterations']} rollouts)")
    return lines


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m finitepref.llm.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps, one repetition (smoke test)")
    p.add_argument("--out", default="results/llm_bench", help="folder for bench.csv and summary.json")
    p.add_argument("--reps", type=_at_least_one, help="interleaved repetitions (default 3)")
    p.add_argument("--steps", type=_at_least_one, help="timed steps (default 40)")
    p.add_argument("--algorithms", default="dpo,ipo,chipo", help="finitepref offline algorithms to time")
    p.add_argument("--no-trl", action="store_true", help="skip TRL even when installed")
    p.add_argument("--no-online", action="store_true", help="skip the online time shares")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    s = QUICK if args.quick else Setting()
    s = Setting(**{**s.__dict__, **{k: v for k, v in (("reps", args.reps), ("steps", args.steps)) if v is not None}})
    torch.set_num_threads(s.threads)
    trl_installed = trl_available()
    with_trl = trl_installed and not args.no_trl
    names = contenders([a for a in args.algorithms.split(",") if a], with_trl)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"finitepref.llm.bench: {', '.join(names)}; {s.reps} reps x {s.steps} steps (+{s.warmup} warm-up), "
          f"batch {s.batch}, {torch.get_num_threads()} threads" + ("" if with_trl else "; TRL skipped"), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = prepare(Path(tmp), s)
        rows = measure(env, s, names, Path(tmp))
        summary = {"setting": s.__dict__, "trl": with_trl, "pair_tokens_per_row": env["pair_tokens"],
                   "versions": provenance.versions(provenance.LLM), "git_commit": provenance.git_commit(),
                   "threads": torch.get_num_threads(), **summarise(rows, names)}
        if not args.no_online:
            summary["online"] = [online_shares(env, s, a, Path(tmp)) for a in ("distill", "rlhf")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(out / "bench.csv", buf.getvalue())
    summary["report"] = report(summary, with_trl, trl_installed)
    atomic.write_text(out / "summary.json", json.dumps(summary, indent=2))
    print("\n".join(summary["report"]))
    print(f"wrote {out / 'bench.csv'} and {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
