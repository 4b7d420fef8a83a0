"""The training loop shared by every stage.

``train(cfg)`` runs one stage (``cfg.algorithm.name``) under :mod:`accelerate` (one process on CPU,
or ``accelerate launch`` for DDP / DeepSpeed / FSDP):

* offline stages (SFT, reward model, DPO, PMLE) take one optimiser update per global batch of
  ``train.batch_size`` rows; the row order is a seeded permutation per epoch, a pure function of the
  update index, so resuming needs only the step;
* online stages (distillation, REBEL, RLHF, reverse KL) roll out ``train.batch_size`` prompts per
  iteration (two samples per prompt for distillation/REBEL, Algorithm 1; one for PPO) and take
  ``num_ppo_epochs x num_mini_batches`` updates on them.

Each process takes its slice of the global batch and accumulates gradients over micro-batches of
``train.micro_batch_size``; losses are means over the global batch. Resumable checkpoints
(``accelerator.save_state``: weights or adapters, optimiser, scheduler, RNG states, and the step,
which fixes the data position) go to ``<output_dir>/checkpoints/step-N``; the final model to
``<output_dir>/model``; metrics to ``metrics.csv`` and TensorBoard; the resolved config to
``config.yaml``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from finitepref.losses import shaped_reward

from . import algorithms as A
from .config import Config, to_dict, validate
from .data import TLDR_SFT, Encoded, load_records
from .logprobs import sequence_logprobs
from .models import (
    RewardModel,
    Sampler,
    TokenScorer,
    load_policy,
    load_reward_backbone,
    load_reward_model,
    load_tokenizer,
    reference_logprobs,
    save_model,
    token_scores,
)

OFFLINE = ("sft", "reward", "dpo", "pmle")
ONLINE_PAIR = ("distill", "rebel")
PPO = ("rlhf", "reverse_kl")


class Progress:
    """Checkpointed loop position (registered with accelerate)."""

    def __init__(self):
        self.step = 0

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, d):
        self.step = int(d["step"])


class MetricsLogger:
    """CSV + TensorBoard (if importable) on the main process."""

    def __init__(self, out: Path, cfg: Config, main: bool):
        self.main = main
        self.path = out / "metrics.csv"
        self.fields: list[str] | None = None
        self.tb = None
        if main and cfg.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(out / "tensorboard"))
            except Exception:  # tensorboard missing or broken: CSV only
                self.tb = None
        self.csv = cfg.log.csv

    def log(self, step: int, metrics: dict) -> None:
        if not self.main:
            return
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        if self.csv:
            new = not self.path.exists()
            if self.fields is None:
                if not new:
                    with open(self.path) as f:
                        self.fields = next(csv.reader(f))
                else:
                    self.fields = list(row)
            with open(self.path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (third-party code may use the global state)
    torch.manual_seed(seed)


def make_scheduler(opt, cfg: Config, total_updates: int):
    t = cfg.train

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / max(1, t.warmup_steps)
        frac = min(1.0, (step - t.warmup_steps) / max(1, total_updates - t.warmup_steps))
        if t.schedule == "linear":
            return 1.0 - frac
        if t.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * frac))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class _PermCache:
    """Rows of global batch ``step``: positions [step*batch, (step+1)*batch) of the concatenation of
    per-epoch seeded permutations (a pure function of the step, so resuming needs only the step)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.cache = n, seed, {}

    def rows(self, step: int, batch: int) -> list[int]:
        out = []
        for pos in range(step * batch, (step + 1) * batch):
            epoch, i = divmod(pos, self.n)
            if epoch not in self.cache:
                g = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
                self.cache[epoch] = torch.randperm(self.n, generator=g).tolist()
            out.append(self.cache[epoch][i])
        return out


def _to(b: dict, device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in b.items()}


def _slice(b: dict, sl: slice) -> dict:
    return {k: (v[sl] if torch.is_tensor(v) else v) for k, v in b.items()}


def _mean_metrics(ms: list[dict]) -> dict:
    keys = ms[0].keys()
    return {k: float(torch.stack([torch.as_tensor(m[k], dtype=torch.float64) for m in ms]).mean()) for k in keys}


def _stage_kind(name: str) -> str:
    return {"sft": "sft", "reward": "preference", "dpo": "preference", "pmle": "preference"}.get(name, "prompt")


def _latest_checkpoint(out: Path) -> Path | None:
    ck = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return ck[-1] if ck else None


def train(cfg: Config, accelerator=None) -> dict:
    """Run one stage; returns a summary dict (final metrics, steps, output paths)."""
    from accelerate import Accelerator

    validate(cfg)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    out = Path(cfg.output_dir)
    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    accelerator.wait_for_everyone()
    seed_everything(cfg.train.seed)
    algo = cfg.algorithm.name
    dev = accelerator.device
    W, rank = accelerator.num_processes, accelerator.process_index
    t = cfg.train
    if cfg.generation.backend == "vllm" and algo not in OFFLINE:
        raise ValueError("generation.backend=vllm is supported by `evaluate` only; training rollouts need the "
                         "current weights and use generation.backend=hf")
    if algo not in OFFLINE and (t.batch_size // W) % cfg.algorithm.num_mini_batches:
        raise ValueError("train.batch_size / processes must be divisible by algorithm.num_mini_batches")
    if t.batch_size % (W * t.micro_batch_size):
        raise ValueError(f"train.batch_size={t.batch_size} must be a multiple of processes x micro_batch_size "
                         f"= {W} x {t.micro_batch_size}")

    # ---- models
    reward_trainee = critic = reference = rm = None
    if algo == "reward":
        tok = load_tokenizer(cfg.model.tokenizer or (cfg.model.name if not cfg.model.name.startswith("tiny:")
                                                     else "tiny"))
        from dataclasses import replace

        rcfg = replace(cfg.reward, missing_eos_penalty=None, normalize=False, dtype=cfg.model.dtype,
                       kind="sequence_classification")
        net = load_reward_backbone(rcfg, init_from=cfg.model.name)
        reward_trainee = RewardModel(net, tok, rcfg, tok)
        policy = reward_trainee.scorer
    else:
        policy, reference, tok = load_policy(cfg)
        if reference is not None:
            reference.to(dev)
    if algo in ONLINE_PAIR + PPO:
        rm = load_reward_model(cfg.reward, tok)
        rm.model.to(dev)
    if algo in PPO:
        if cfg.reward.kind != "sequence_classification":
            raise ValueError("PPO's value model is initialised from a sequence-classification reward model")
        from dataclasses import replace as _replace

        # the value model starts from the reward model, trained in the policy's dtype
        critic = TokenScorer(load_reward_backbone(_replace(cfg.reward, dtype=cfg.model.dtype))).train()
    from accelerate.utils import DistributedType

    if (main and cfg.model.dtype != "float32" and not (cfg.lora.enabled and algo not in ("sft", "reward"))
            and accelerator.distributed_type != DistributedType.DEEPSPEED):
        print(f"warning: training {cfg.model.dtype} weights without fp32 master copies; small updates may "
              "round to zero (use model.dtype=float32 with mixed precision, or DeepSpeed)")
    params = [p for p in policy.parameters() if p.requires_grad]
    if critic is not None:
        params += list(critic.parameters())
    opt = torch.optim.AdamW(params, lr=t.lr, eps=t.adam_eps, weight_decay=t.weight_decay)

    # ---- data
    kind = _stage_kind(algo)
    records = load_records(cfg.data, kind, seed=t.seed)
    data = Encoded(records, tok, cfg.data, kind)
    N = len(data)
    if N < t.batch_size:
        raise ValueError(f"{records.origin}: {N} usable rows < train.batch_size={t.batch_size}")
    if algo in OFFLINE:
        iterations = int(t.epochs * N) // t.batch_size
        updates_per_iter = 1
    else:
        episodes = t.total_episodes if t.total_episodes is not None else int(t.epochs * N)
        iterations = episodes // t.batch_size
        updates_per_iter = cfg.algorithm.num_ppo_epochs * cfg.algorithm.num_mini_batches
    total_updates = iterations * updates_per_iter
    if iterations <= 0:
        raise ValueError("no complete batch: increase data, epochs or total_episodes")
    sched = make_scheduler(opt, cfg, total_updates)

    if critic is not None:
        policy, critic, opt = accelerator.prepare(policy, critic, opt)
    else:
        policy, opt = accelerator.prepare(policy, opt)
    if reward_trainee is not None:
        reward_trainee.scorer = policy
    progress = Progress()
    accelerator.register_for_checkpointing(sched)
    accelerator.register_for_checkpointing(progress)
    if t.resume:
        ck = _latest_checkpoint(out)
        if ck is not None:
            accelerator.load_state(str(ck))
        elif main:
            print(f"train.resume: no checkpoint under {out / 'checkpoints'}; starting from step 0")
    perm = _PermCache(N, t.seed)
    sampler = Sampler(cfg.generation, tok)
    logger = MetricsLogger(out, cfg, main)
    per_proc = t.batch_size // W
    n_micro = per_proc // t.micro_batch_size
    stop_at = iterations if t.max_steps is None else min(iterations, t.max_steps)
    models = [policy] + ([critic] if critic is not None else [])

    def no_sync(last: bool):
        if last:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for m in models:
            stack.enter_context(accelerator.no_sync(m))
        return stack

    def optim_step():
        if t.max_grad_norm is not None:
            accelerator.clip_grad_norm_(params, t.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    ctx = dict(cfg=cfg, policy=policy, reference=reference, rm=rm, critic=critic, sampler=sampler,
               reward_trainee=reward_trainee, dev=dev, n_micro=n_micro, no_sync=no_sync, optim_step=optim_step,
               accelerator=accelerator)
    bar = None
    if cfg.log.progress and main:
        from tqdm.auto import tqdm

        bar = tqdm(total=stop_at, initial=progress.step, desc=f"{algo}", dynamic_ncols=True)
    last_metrics: dict = {}
    policy.train()
    while progress.step < stop_at:
        t0 = time.perf_counter()
        rows = perm.rows(progress.step, t.batch_size)[rank * per_proc:(rank + 1) * per_proc]
        b = _to(data.batch(rows), dev)
        ctx["step"] = progress.step
        if algo in OFFLINE:
            metrics, n_tokens = _offline_update(ctx, b)
        elif algo in ONLINE_PAIR:
            metrics, n_tokens = _online_pair_iteration(ctx, b)
        else:
            metrics, n_tokens = _ppo_iteration(ctx, b)
        dt = time.perf_counter() - t0
        metrics["tokens_per_s"] = n_tokens * W / dt
        metrics["lr"] = sched.get_last_lr()[0]
        if W > 1:  # average the per-process metrics
            keys = list(metrics)
            vals = accelerator.reduce(torch.tensor([float(metrics[k]) for k in keys], device=dev), "mean")
            metrics = dict(zip(keys, vals.tolist(), strict=True))
        progress.step += 1
        if progress.step % cfg.log.every == 0 or progress.step == stop_at:
            logger.log(progress.step, metrics)
        last_metrics = metrics
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}")
        if t.save_every and progress.step % t.save_every == 0 and progress.step < stop_at:
            accelerator.save_state(str(out / "checkpoints" / f"step-{progress.step}"))
    if bar is not None:
        bar.close()
    logger.close()
    accelerator.wait_for_everyone()
    finished = progress.step >= iterations
    if not finished or t.save_every:
        accelerator.save_state(str(out / "checkpoints" / f"step-{progress.step}"))
    state = accelerator.get_state_dict(policy)  # collective under ZeRO-3 / FSDP
    if main:
        unwrapped = accelerator.unwrap_model(policy)
        if algo == "reward":
            unwrapped = unwrapped.net
            state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
        meta = {"algorithm": algo, "base": cfg.model.name, "adapters": bool(cfg.lora.enabled and algo != "reward"),
                "steps": progress.step, "finished": finished}
        save_model(unwrapped, tok, out / "model", meta, state_dict=state)
        if algo == "reward":
            _save_reward_normalization(cfg, reward_trainee, tok, out / "model", dev)
        (out / "summary.json").write_text(json.dumps({"steps": progress.step, "iterations": iterations,
                                                      "num_processes": W, "skipped_rows": records.skipped,
                                                      "total_updates": total_updates, **last_metrics}, indent=2))
    accelerator.wait_for_everyone()
    return {"steps": progress.step, "iterations": iterations, "metrics": last_metrics, "output_dir": str(out),
            "skipped_rows": records.skipped}


# --------------------------------------------------------------------------- stage bodies


def _offline_update(ctx, b) -> tuple[dict, int]:
    cfg, policy, mb = ctx["cfg"], ctx["policy"], ctx["cfg"].train.micro_batch_size
    a = cfg.algorithm
    ms = []
    n_tokens = 0
    for j in range(ctx["n_micro"]):
        sb = _slice(b, slice(j * mb, (j + 1) * mb))
        n_tokens += int(sum(v.sum() for k, v in sb.items() if k.endswith("_mask")))
        with ctx["no_sync"](j == ctx["n_micro"] - 1):
            if a.name == "sft":
                loss, m = A.sft_loss(policy, sb)
            elif a.name == "reward":
                loss, m = A.reward_loss(ctx["reward_trainee"], sb)
            elif a.name == "dpo":
                ref_p = reference_logprobs(policy, ctx["reference"], sb["prompt_ids"], sb["prompt_mask"],
                                           sb["chosen_ids"], sb["chosen_mask"], 1.0)["logp"]
                ref_m = reference_logprobs(policy, ctx["reference"], sb["prompt_ids"], sb["prompt_mask"],
                                           sb["rejected_ids"], sb["rejected_mask"], 1.0)["logp"]
                loss, m = A.dpo_batch_loss(policy, sb, ref_p, ref_m, a.beta)
            else:  # pmle
                online = None
                if a.beta != 0:
                    online = _sample_group(ctx, sb["prompt_ids"], sb["prompt_mask"], group=2)
                    n_tokens += int(online["response_mask"].sum())
                loss, m = A.pmle_batch_loss(policy, sb, a.gamma, a.beta, online, a.kl_baseline)
            ctx["accelerator"].backward(loss / ctx["n_micro"])
        ms.append(m)
    ctx["optim_step"]()
    return _mean_metrics(ms), n_tokens


def _sample_group(ctx, prompt_ids, prompt_mask, group: int) -> dict:
    """``group`` samples per prompt from the current policy, with pi_0 log-probs."""
    cfg, policy = ctx["cfg"], ctx["policy"]
    temp = cfg.generation.temperature
    p_ids = prompt_ids.repeat_interleave(group, 0)
    p_mask = prompt_mask.repeat_interleave(group, 0)
    r_ids, r_mask = ctx["sampler"].sample(policy, p_ids, p_mask)
    ref = reference_logprobs(policy, ctx["reference"], p_ids, p_mask, r_ids, r_mask, temp)
    return {"prompt_ids": p_ids, "prompt_mask": p_mask, "response_ids": r_ids, "response_mask": r_mask,
            "ref_logp": ref["logp"], "ref_token_logp": ref["token_logp"], "temperature": temp, "group": group}


def _minibatch_updates(ctx, data: dict, n: int, loss_of) -> list[dict]:
    """``num_ppo_epochs`` passes over a shuffled batch of ``n`` rows in ``num_mini_batches`` optimiser
    steps, each accumulated over micro-batches (gradient sync on the last); returns per-micro-batch metrics.

    ``loss_of(sub_batch) -> (loss, metrics)``; each micro-batch's loss is weighted by its share of the
    mini-batch. The shuffling stream is a function of seed, step and process, so resume is exact.
    """
    cfg = ctx["cfg"]
    a = cfg.algorithm
    mb = cfg.train.micro_batch_size
    n_mb = n // a.num_mini_batches
    ms = []
    g = torch.Generator().manual_seed((cfg.train.seed * 7919 + ctx["step"]) * 64 + ctx["accelerator"].process_index)
    for _ in range(a.num_ppo_epochs):
        order = torch.randperm(n, generator=g).to(ctx["dev"])
        for k in range(a.num_mini_batches):
            idx = order[k * n_mb:(k + 1) * n_mb]
            n_micro = -(-n_mb // mb)
            for j in range(n_micro):
                rows = idx[j * mb:(j + 1) * mb]
                sb = {kk: v[rows] for kk, v in data.items()}
                with ctx["no_sync"](j == n_micro - 1):
                    loss, m = loss_of(sb)
                    ctx["accelerator"].backward(loss * (rows.shape[0] / n_mb))
                ms.append(m)
            ctx["optim_step"]()
    return ms


def _online_pair_iteration(ctx, b) -> tuple[dict, int]:
    """Algorithm 1: two samples per prompt from pi_t, rewards, then epochs x mini-batches of updates."""
    cfg, policy, rm = ctx["cfg"], ctx["policy"], ctx["rm"]
    a = cfg.algorithm
    temp = cfg.generation.temperature
    s = _sample_group(ctx, b["prompt_ids"], b["prompt_mask"], group=2)
    with torch.no_grad():
        scores = rm.scores(s["prompt_ids"], s["prompt_mask"], s["response_ids"], s["response_mask"]).to(ctx["dev"])
        old = sequence_logprobs(policy, s["prompt_ids"], s["prompt_mask"], s["response_ids"], s["response_mask"],
                                temp, with_entropy=True)
    n = b["prompt_ids"].shape[0]
    T = s["response_ids"].shape[1]
    pair = {"prompt_ids": b["prompt_ids"], "prompt_mask": b["prompt_mask"],
            "response1_ids": s["response_ids"].view(n, 2, T)[:, 0], "response1_mask": s["response_mask"].view(n, 2, T)[:, 0],
            "response2_ids": s["response_ids"].view(n, 2, T)[:, 1], "response2_mask": s["response_mask"].view(n, 2, T)[:, 1],
            "score1": scores.view(n, 2)[:, 0], "score2": scores.view(n, 2)[:, 1],
            "ref1": s["ref_logp"].view(n, 2)[:, 0], "ref2": s["ref_logp"].view(n, 2)[:, 1],
            "old1": old["logp"].view(n, 2)[:, 0], "old2": old["logp"].view(n, 2)[:, 1]}
    kl_seq = (old["logp"] - s["ref_logp"])
    def loss_of(sb):
        if a.name == "distill":
            return A.distill_batch_loss(policy, sb, sb["score1"], sb["score2"], a.gamma, a.beta,
                                        sb["ref1"], sb["ref2"], temp, a.kl_baseline)
        r1 = shaped_reward(sb["score1"], sb["old1"], sb["ref1"], a.beta, 0.0)
        r2 = shaped_reward(sb["score2"], sb["old2"], sb["ref2"], a.beta, 0.0)
        anc1, anc2 = (sb["old1"], sb["old2"]) if a.rebel_anchor == "sampler" else (sb["ref1"], sb["ref2"])
        return A.rebel_batch_loss(policy, sb, r1, r2, anc1, anc2, a.eta, temp)

    ms = _minibatch_updates(ctx, pair, n, loss_of)
    metrics = _mean_metrics(ms)
    metrics.update(reward=float(scores.mean()), kl=float(kl_seq.mean()),
                   entropy=float(old["entropy"].sum(-1).mean()),
                   eos_rate=float((s["response_mask"].sum(-1) < T).float().mean()))
    n_tokens = int(s["prompt_mask"].sum() + s["response_mask"].sum())
    return metrics, n_tokens


def _ppo_iteration(ctx, b) -> tuple[dict, int]:
    """PPO on per-token shaped rewards (eq. 1 with gamma=0: RLHF; eq. 16: reverse KL)."""
    cfg, policy, rm, critic = ctx["cfg"], ctx["policy"], ctx["rm"], ctx["critic"]
    a = cfg.algorithm
    temp = cfg.generation.temperature
    gamma = a.gamma if a.name == "reverse_kl" else 0.0
    s = _sample_group(ctx, b["prompt_ids"], b["prompt_mask"], group=1)
    from .logprobs import concat

    def values_of(model, sb):
        ids, mask, pos, _, _ = concat(sb["prompt_ids"], sb["prompt_mask"], sb["response_ids"], sb["response_mask"])
        P, T = sb["prompt_ids"].shape[1], sb["response_ids"].shape[1]
        return token_scores(model, ids, mask, pos)[:, P - 1:P + T - 1].float()

    with torch.no_grad():
        scores = rm.scores(s["prompt_ids"], s["prompt_mask"], s["response_ids"], s["response_mask"]).to(ctx["dev"])
        old = sequence_logprobs(policy, s["prompt_ids"], s["prompt_mask"], s["response_ids"], s["response_mask"],
                                temp, with_entropy=True)
        old_values = values_of(critic, s)
        rewards = A.per_token_rewards(scores, old["token_logp"], s["ref_token_logp"], old["mask"], a.beta, gamma)
        adv, returns = A.gae(rewards, old_values, old["mask"], a.discount, a.gae_lambda)
        if a.whiten_advantages:
            adv = A.masked_whiten(adv, old["mask"])
    data = {**s, "old_logp": old["token_logp"], "old_values": old_values, "adv": adv, "returns": returns}
    data = {k: v for k, v in data.items() if torch.is_tensor(v)}
    def loss_of(sb):
        new = sequence_logprobs(policy, sb["prompt_ids"], sb["prompt_mask"], sb["response_ids"],
                                sb["response_mask"], temp)
        v = values_of(critic, sb)
        pg, vf, m = A.ppo_losses(new["token_logp"], sb["old_logp"], sb["adv"], v, sb["old_values"],
                                 sb["returns"], new["mask"], a.clip_ratio, a.cliprange_value)
        loss = pg + a.vf_coef * vf
        m.update(loss=loss.detach(), pg_loss=pg.detach(), vf_loss=vf.detach())
        return loss, m

    ms = _minibatch_updates(ctx, data, s["prompt_ids"].shape[0], loss_of)
    metrics = _mean_metrics(ms)
    seq_shaped = rewards.sum(-1)
    T = s["response_ids"].shape[1]
    metrics.update(reward=float(scores.mean()), kl=float((old["logp"] - s["ref_logp"]).mean()),
                   entropy=float(old["entropy"].sum(-1).mean()), shaped_reward=float(seq_shaped.mean()),
                   eos_rate=float((s["response_mask"].sum(-1) < T).float().mean()))
    n_tokens = int(s["prompt_mask"].sum() + s["response_mask"].sum())
    return metrics, n_tokens


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
        recs = load_records(dcfg, "sft", seed=cfg.train.seed)
    except Exception as e:  # no reference data available: record zero and say why
        (path / "reward_normalization.json").write_text(json.dumps({"mean_reference_score": 0.0,
                                                                    "note": f"not normalised: {e}"}))
        return
    enc = Encoded(recs, tok, dcfg, "sft")
    rmodel.scorer.eval()
    scores = []
    for s in range(0, len(enc), cfg.train.micro_batch_size):
        bb = _to(enc.batch(list(range(s, min(len(enc), s + cfg.train.micro_batch_size)))), dev)
        scores.append(rmodel.raw_scores(bb["prompt_ids"], bb["prompt_mask"], bb["response_ids"], bb["response_mask"]))
    mean = float(torch.cat(scores).mean())
    (path / "reward_normalization.json").write_text(json.dumps({"mean_reference_score": mean,
                                                                "n": len(enc), "source": src}))


__all__ = ["train"]
