"""The training loop shared by every stage.

``train(cfg)`` runs one stage (``cfg.algorithm.name``, a key of :mod:`finitepref.llm.registry`)
under :mod:`accelerate` (one process on CPU, or ``accelerate launch`` for DDP / DeepSpeed / FSDP):
:func:`~finitepref.llm.run.build_run` assembles the run, then each iteration takes this process's
rows of a global batch (a seeded permutation per epoch, a pure function of the step, so resuming
needs only the step) and calls the step of the algorithm's loop kind
(:data:`finitepref.llm.steps.STEPS`).

Each process takes its slice of the global batch and accumulates gradients over micro-batches of
``train.micro_batch_size``; losses are means over the global batch. Resumable checkpoints
(weights or adapters, optimiser, scheduler, RNG states, and the step) go to
``<output_dir>/checkpoints/step-N`` (:mod:`finitepref.llm.checkpoints`); the final model to
``<output_dir>/model``; metrics to ``metrics.csv`` and TensorBoard; the resolved config to
``config.yaml``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
import yaml

from finitepref import atomic, provenance

from .checkpoints import checkpoint_root, latest_checkpoint, save_checkpoint
from .config import Config, ConfigError, to_dict, validate
from .data import TLDR_SFT, Encoded, load_records
from .metrics_log import MetricsLogger
from .models import RewardModel, save_model
from .registry import DataKind
from .run import Run, build_run, seed_everything
from .steps import STEPS, input_batch

OUTPUTS = ("metrics.csv", "summary.json", "model", "checkpoints", "tensorboard")
"""What a finished run leaves in its output directory (replaced by ``train.overwrite``)."""


def _finished(out: Path) -> bool:
    """Whether ``out`` holds a run that completed all its iterations."""
    try:
        summary = json.loads((out / "summary.json").read_text())
        return int(summary["steps"]) >= int(summary["iterations"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def prepare_output_dir(cfg: Config, main: bool) -> None:
    """Refuse to start over a previous run's results unless ``train.overwrite`` (or ``train.resume``).

    A fresh run into a folder holding a finished run, or an unfinished run's checkpoints, would mix
    two runs (and a later ``--resume`` could pick the other run's checkpoint); with ``overwrite``
    the previous results (:data:`OUTPUTS`) are removed first.
    """
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir={str(out)!r} is a file, expected a directory")
    if cfg.train.resume:
        return
    previous = ("a finished run (summary.json)" if _finished(out) else
                "checkpoints of an unfinished run" if latest_checkpoint(out) is not None else None)
    if previous is not None and not cfg.train.overwrite:
        raise ConfigError(f"output_dir={str(out)!r} holds {previous}; pass --overwrite (train.overwrite=true) "
                          "to replace it, --resume to continue it, or another --output-dir")
    if main and cfg.train.overwrite:
        for name in OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def resume(run: Run) -> None:
    """Load the newest complete checkpoint, saying which (or that there is none)."""
    main = run.accelerator.is_main_process
    folder = latest_checkpoint(run.out, report=print if main else None)
    if folder is not None:
        run.accelerator.load_state(str(folder))
        if main:
            print(f"train.resume: resuming from {folder} (step {run.progress.step})")
    elif main:
        print(f"train.resume: no complete checkpoint under {checkpoint_root(run.out)}; starting from step 0")


def _reduce(run: Run, metrics: dict) -> dict:
    """Average the per-process metrics."""
    if run.world_size == 1:
        return metrics
    keys = list(metrics)
    values = run.accelerator.reduce(torch.tensor([float(metrics[k]) for k in keys], device=run.device), "mean")
    return dict(zip(keys, values.tolist(), strict=True))


def _progress_bar(run: Run, stop_at: int):
    if not (run.cfg.log.progress and run.accelerator.is_main_process):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=stop_at, initial=run.progress.step, desc=run.record.name, dynamic_ncols=True)


def run_loop(run: Run, stop_at: int, logger: MetricsLogger) -> dict:
    """Iterate until ``progress.step == stop_at``; returns the last metrics."""
    train, step_fn = run.cfg.train, STEPS[run.record.loop]
    rank, bar, last = run.accelerator.process_index, _progress_bar(run, stop_at), {}
    run.models.policy.train()
    while run.progress.step < stop_at:
        start = time.perf_counter()
        rows = run.order.rows(run.progress.step, train.batch_size)[rank * run.per_process:(rank + 1) * run.per_process]
        batch = input_batch(run, run.data.batch(rows)).to(run.device)
        run.rows, run.positions = rows, list(range(rank * run.per_process, (rank + 1) * run.per_process))
        metrics, n_tokens = step_fn(run, batch)
        metrics["tokens_per_s"] = n_tokens * run.world_size / (time.perf_counter() - start)
        metrics["lr"] = run.scheduler.get_last_lr()[0]
        last = metrics = _reduce(run, metrics)
        run.progress.step += 1
        if run.progress.step % run.cfg.log.every == 0 or run.progress.step == stop_at:
            logger.log(run.progress.step, metrics)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}")
        if train.save_every and run.progress.step % train.save_every == 0 and run.progress.step < stop_at:
            save_checkpoint(run.accelerator, run.out, run.progress.step, train.keep_last)
    if bar is not None:
        bar.close()
    return last


def save_final(run: Run, last_metrics: dict) -> None:
    """The last checkpoint (if unfinished or checkpointing), the model, and ``summary.json``."""
    accelerator, cfg, record = run.accelerator, run.cfg, run.record
    finished = run.progress.step >= run.iterations
    if not finished or cfg.train.save_every:
        save_checkpoint(accelerator, run.out, run.progress.step, cfg.train.keep_last)
    state = accelerator.get_state_dict(run.models.policy)  # collective under ZeRO-3 / FSDP
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(run.models.policy)
        if record.trains_reward_model:
            unwrapped = unwrapped.net
            state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
        meta = {"algorithm": record.name, "base": cfg.model.name,
                "adapters": bool(cfg.lora.enabled and not record.trains_reward_model),
                "steps": run.progress.step, "finished": finished}
        save_model(unwrapped, run.models.tokenizer, run.out / "model", meta, state_dict=state)
        if record.trains_reward_model:
            _save_reward_normalization(cfg, run.models.reward_model, run.models.tokenizer, run.out / "model",
                                       run.device)
        summary = {"steps": run.progress.step, "iterations": run.iterations, "num_processes": run.world_size,
                   "skipped_rows": run.records.skipped, "total_updates": run.total_updates, **last_metrics,
                   "versions": provenance.versions(provenance.LLM), "git_commit": provenance.git_commit()}
        atomic.write_text(run.out / "summary.json", json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()


def train(cfg: Config, accelerator=None) -> dict:
    """Run one stage; returns a summary dict (final metrics, steps, output paths)."""
    from .accelerators import make_accelerator

    validate(cfg)
    accelerator = accelerator or make_accelerator()
    out, main = Path(cfg.output_dir), accelerator.is_main_process
    prepare_output_dir(cfg, main)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    accelerator.wait_for_everyone()
    seed_everything(cfg.train.seed)
    run = build_run(cfg, accelerator)
    if cfg.train.resume:
        resume(run)
    logger = MetricsLogger(out, cfg.log.csv, cfg.log.tensorboard, main, run.progress.step)
    stop_at = run.iterations if cfg.train.max_steps is None else min(run.iterations, cfg.train.max_steps)
    if run.progress.step >= stop_at and _finished(out):
        logger.close()
        if main:
            print(f"train.resume: {out} already finished at step {run.progress.step}; nothing to do")
        summary = {k: v for k, v in json.loads((out / "summary.json").read_text()).items()
                   if k not in ("versions", "git_commit")}
        return {"steps": run.progress.step, "iterations": run.iterations, "metrics": summary,
                "output_dir": str(out), "skipped_rows": run.records.skipped}
    last_metrics = run_loop(run, stop_at, logger)
    logger.close()
    accelerator.wait_for_everyone()
    save_final(run, last_metrics)
    return {"steps": run.progress.step, "iterations": run.iterations, "metrics": last_metrics,
            "output_dir": str(out), "skipped_rows": run.records.skipped}


@torch.no_grad()
def _save_reward_normalization(cfg: Config, rmodel: RewardModel, tok, path: Path, dev) -> None:
    """Mean raw score of reference responses (TL;DR SFT set), subtracted at use (Huang et al. 2024)."""
    from dataclasses import replace

    from .data import HUB_SCHEMAS

    src = cfg.data.reference_prompts or ("tiny" if cfg.data.source == "tiny" else TLDR_SFT)
    schema = None if (src == "tiny" or src in HUB_SCHEMAS) else "tldr_sft"
    dcfg = replace(cfg.data, source=src, schema=schema, split="train",
                   max_samples=min(cfg.data.max_samples or 1024, 1024))
    try:
        recs = load_records(dcfg, DataKind.SFT, seed=cfg.train.seed)
    except Exception as e:  # no reference data available: record zero and say why
        (path / "reward_normalization.json").write_text(json.dumps({"mean_reference_score": 0.0,
                                                                    "note": f"not normalised: {e}"}))
        return
    enc = Encoded(recs, tok, dcfg, DataKind.SFT)
    rmodel.scorer.eval()
    scores = []
    size = cfg.train.micro_batch_size
    for start in range(0, len(enc), size):
        columns = {k: v.to(dev) for k, v in enc.batch(list(range(start, min(len(enc), start + size)))).items()}
        scores.append(rmodel.raw_scores(columns["prompt_ids"], columns["prompt_mask"], columns["response_ids"],
                                        columns["response_mask"]))
    mean = float(torch.cat(scores).mean())
    (path / "reward_normalization.json").write_text(json.dumps({"mean_reference_score": mean,
                                                                "n": len(enc), "source": src}))


__all__ = ["train"]
