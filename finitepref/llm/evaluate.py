r"""Evaluation with Table 2's columns: win-rate against the reference responses, reward-model score,
and sequence-level :math:`\mathrm{KL}(\pi\|\pi_0)`.

For each evaluation prompt a response is sampled from the policy; its reward is the reward model's
score (missing-EOS rule and normalisation included); the KL estimate is
:math:`\ln\pi(a\mid x) - \ln\pi_0(a\mid x)` summed over tokens, averaged over prompts (an unbiased
estimate of the sequence-level KL); the win-rate compares the sampled response with the dataset's
reference response through a :class:`PairwiseJudge`:

* :class:`RewardModelJudge` -- the response with the higher reward wins (ties count one half);
* :class:`OpenAIJudge` -- an OpenAI-compatible chat-completions endpoint (e.g. GPT-4) with a
  comparison prompt read from a template file (``eval.judge_prompt``); A/B order is randomised per
  comparison (seeded) and the one-letter answer is parsed strictly. Uses :mod:`urllib` only.

Every algorithm is evaluated on the same prompts and reference responses (``eval.source``, by
default the TL;DR SFT set's test split), ``eval.num_samples`` of them drawn at random with the
recorded seed ``eval.seed``, at one temperature ``eval.temperature`` (default 0.01).

Results are written as CSV: one row per prompt (``samples.csv``) and a one-row summary.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .config import Config
from .data import TLDR_SFT, Encoded, load_records
from .logprobs import sequence_logprobs
from .models import Sampler, example_seed, load_causal_lm, load_reward_model, load_tokenizer
from .registry import DataKind

JUDGE_PROMPTS = Path(__file__).parent / "judge_prompts"
"""Shipped judge prompt templates (``eval.judge_prompt``)."""


def load_judge_prompt(name_or_path: str = "tldr") -> str:
    """The template ``judge_prompts/<name>.txt``, or the file at ``name_or_path``; it must hold
    ``{post}``, ``{a}`` and ``{b}``."""
    path = Path(name_or_path)
    if not path.is_file():
        path = JUDGE_PROMPTS / f"{name_or_path}.txt"
    if not path.is_file():
        shipped = ", ".join(sorted(q.stem for q in JUDGE_PROMPTS.glob("*.txt")))
        raise ValueError(f"eval.judge_prompt={name_or_path!r}: no such file; shipped: {shipped}")
    text = path.read_text(encoding="utf-8")
    missing = [k for k in ("{post}", "{a}", "{b}") if k not in text]
    if missing:
        raise ValueError(f"judge prompt {path} lacks {', '.join(missing)}")
    return text


class PairwiseJudge:
    """``judge(prompts, first, second) -> list of 1.0 (first wins), 0.0, 0.5 (tie) or None (failed)``."""

    def __call__(self, prompts: list[str], first: list[str], second: list[str]) -> list[float | None]:
        raise NotImplementedError


class RewardModelJudge(PairwiseJudge):
    """The response with the higher reward-model score wins (ties count one half).

    ``score_fn(prompts, responses) -> (B,) tensor`` scores texts; :func:`evaluate` instead compares
    the scores it has already computed (:meth:`compare`)."""

    def __init__(self, score_fn: Callable[[list[str], list[str]], torch.Tensor] | None = None):
        self.score_fn = score_fn

    @staticmethod
    def compare(s1: list[float], s2: list[float]) -> list[float]:
        return [1.0 if a > b else 0.0 if a < b else 0.5 for a, b in zip(s1, s2, strict=True)]

    def __call__(self, prompts, first, second):
        return self.compare(self.score_fn(prompts, first).tolist(), self.score_fn(prompts, second).tolist())


def parse_verdict(text: str) -> str | None:
    """'A' or 'B' when the judge's whole answer is that one letter (optionally followed by a period);
    anything else is unparseable (``None``: the comparison counts as unjudged)."""
    match = re.fullmatch(r"\s*([AB])\s*\.?\s*", text or "")
    return match.group(1) if match else None


def urllib_transport(url: str, headers: dict, body: bytes, timeout: float = 60.0) -> dict:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (user-configured endpoint)
        return json.loads(resp.read().decode("utf-8"))


@dataclass
class OpenAIJudge(PairwiseJudge):
    """An OpenAI-compatible ``/chat/completions`` judge.

    ``endpoint`` defaults to ``$FINITEPREF_JUDGE_URL`` or ``https://api.openai.com/v1``; the key is
    read from the environment variable ``api_key_env``. ``transport(url, headers, body) -> dict`` is
    injectable (tests use a fake one).
    """

    model: str = "gpt-4"
    endpoint: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    seed: int = 0
    transport: Callable[[str, dict, bytes], dict] = urllib_transport
    temperature: float = 0.0
    prompt: str | None = None
    """The template (``{post}``, ``{a}``, ``{b}``); ``None`` loads the shipped ``tldr`` one."""

    def build_request(self, post: str, a: str, b: str) -> tuple[str, dict, bytes]:
        base = (self.endpoint or os.environ.get("FINITEPREF_JUDGE_URL") or "https://api.openai.com/v1").rstrip("/")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": (self.prompt or load_judge_prompt()).format(
                post=post.strip(), a=a.strip(), b=b.strip())}],
        }
        return f"{base}/chat/completions", headers, json.dumps(body).encode("utf-8")

    def __call__(self, prompts, first, second):
        rng = random.Random(self.seed)
        out: list[float | None] = []
        for post, x, y in zip(prompts, first, second, strict=True):
            swap = rng.random() < 0.5
            shown_a, shown_b = (y, x) if swap else (x, y)
            url, headers, body = self.build_request(post, shown_a, shown_b)
            try:
                resp = self.transport(url, headers, body)
                verdict = parse_verdict(resp["choices"][0]["message"]["content"])
            except Exception:  # network / format failure: counted as unjudged
                verdict = None
            if verdict is None:
                out.append(None)
            else:
                first_won = (verdict == "A") != swap
                out.append(1.0 if first_won else 0.0)
        return out


def _load_any_policy(path: str, dtype: str = "float32"):
    """A run directory (its ``model/``), a model directory, a hub id or ``tiny:*``."""
    p = Path(path)
    name = str(p / "model") if (p / "model").is_dir() else path
    tok_name = name if Path(name).is_dir() else ("tiny" if name.startswith("tiny:") else name)
    return load_causal_lm(name, dtype).eval(), load_tokenizer(tok_name)


@torch.no_grad()
def _sample_and_score(cfg: Config, policy, reference, rm, sampler, tok, recs, enc, dev) -> list[dict]:
    """One row per prompt: the policy's sample at ``eval.temperature``, its RM score, the reference
    response's score, and the sequence log-ratio ln pi(a|x) - ln pi_0(a|x) at that temperature (whose
    mean estimates KL(pi_T || pi_0,T), the reference code's KL column)."""
    temp = cfg.eval.temperature
    rows = []
    for start in range(0, len(enc), cfg.eval.batch_size):
        idx = list(range(start, min(len(enc), start + cfg.eval.batch_size)))
        columns = {k: v.to(dev) for k, v in enc.batch(idx).items()}
        prompt_ids, prompt_mask = columns["prompt_ids"], columns["prompt_mask"]
        seeds = [example_seed(cfg.eval.seed, recs.rows[i]["row"]) for i in idx]
        r_ids, r_mask = sampler.sample(policy, prompt_ids, prompt_mask, temp, seeds=seeds)
        lp = sequence_logprobs(policy, prompt_ids, prompt_mask, r_ids, r_mask, temp)["logp"]
        lr = sequence_logprobs(reference, prompt_ids, prompt_mask, r_ids, r_mask, temp)["logp"]
        texts = [enc.prompt_texts[i] for i in idx]
        score = rm.scores(prompt_ids, prompt_mask, r_ids, r_mask, texts)
        ref_score = rm.scores(prompt_ids, prompt_mask, columns["response_ids"], columns["response_mask"], texts)
        for k, i in enumerate(idx):
            prompt = recs.rows[i]["prompt"]
            rows.append({
                "row": recs.rows[i]["row"],
                "prompt": prompt if isinstance(prompt, str) else json.dumps(prompt),
                "response": tok.decode(r_ids[k][r_mask[k].bool()], skip_special_tokens=True),
                "reference_response": recs.rows[i]["response"],
                "rm_score": float(score[k]), "reference_rm_score": float(ref_score[k]),
                "kl": float(lp[k] - lr[k]),
            })
    return rows


def _verdicts(cfg: Config, rows: list[dict], judge: str, transport) -> list:
    if judge == "reward-model":
        return RewardModelJudge.compare([r["rm_score"] for r in rows], [r["reference_rm_score"] for r in rows])
    if judge == "openai":
        j = OpenAIJudge(model=cfg.eval.judge_model, endpoint=cfg.eval.judge_endpoint,
                        api_key_env=cfg.eval.judge_api_key_env, seed=cfg.eval.seed,
                        prompt=load_judge_prompt(cfg.eval.judge_prompt),
                        **({"transport": transport} if transport else {}))
        return j([r["prompt"] for r in rows], [r["response"] for r in rows], [r["reference_response"] for r in rows])
    raise ValueError(f"unknown judge {judge!r}; use reward-model or openai")


def _write_csvs(out: Path, summary: dict, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary))
        writer.writeheader()
        writer.writerow(summary)
    with open(out.with_name(out.stem + "_samples.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def eval_records(cfg: Config):
    """(records, data config) of the evaluation prompts: ``eval.num_samples`` rows of ``eval.source``
    (default: the TL;DR SFT set, whatever the algorithm trained on) drawn at random with
    ``eval.seed``, in their dataset order; each row keeps its dataset index as ``row``."""
    from dataclasses import replace

    tiny = cfg.data.source == "tiny"
    source = cfg.eval.source or ("tiny" if tiny else TLDR_SFT)
    split = cfg.eval.split or cfg.data.eval_split or ("eval" if source == "tiny" else "test")
    dcfg = replace(cfg.data, source=source, schema=cfg.eval.schema, max_samples=None)
    recs = load_records(dcfg, DataKind.SFT, split=split, seed=cfg.train.seed)
    n = len(recs.rows)
    chosen = range(n) if n <= cfg.eval.num_samples else sorted(random.Random(cfg.eval.seed).sample(range(n),
                                                                                                 cfg.eval.num_samples))
    recs.rows = [{**recs.rows[i], "row": i} for i in chosen]
    return recs, dcfg


@torch.no_grad()
def evaluate(cfg: Config, policy_path: str, reference_path: str, judge: str = "reward-model",
             out_csv: str | None = None, transport=None) -> dict:
    """Sample, score and judge ``cfg.eval.num_samples`` prompts; write CSVs; return the summary (Table 2)."""
    torch.manual_seed(cfg.eval.seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    policy, tok = _load_any_policy(policy_path, cfg.model.dtype)
    reference, _ = _load_any_policy(reference_path, cfg.model.dtype)
    policy.to(dev)
    reference.to(dev)
    rm = load_reward_model(cfg.reward, tok)
    rm.model.to(dev)
    recs, dcfg = eval_records(cfg)
    enc = Encoded(recs, tok, dcfg, DataKind.SFT)
    sampler = Sampler(cfg.generation, tok)
    if cfg.generation.backend == "vllm":
        import vllm  # lazily: optional dependency

        p = Path(policy_path)
        sampler.attach_vllm(vllm.LLM(model=str(p / "model") if (p / "model").is_dir() else policy_path,
                                     dtype=cfg.model.dtype))
    rows = _sample_and_score(cfg, policy, reference, rm, sampler, tok, recs, enc, dev)
    verdicts = _verdicts(cfg, rows, judge, transport)
    for r, v in zip(rows, verdicts, strict=True):
        r["win"] = "" if v is None else v
    judged = [v for v in verdicts if v is not None]
    summary = {
        "policy": policy_path, "reference": reference_path, "judge": judge, "n": len(rows),
        "eval_source": recs.origin, "selection_seed": cfg.eval.seed, "temperature": cfg.eval.temperature,
        "win_rate": sum(judged) / len(judged) if judged else float("nan"), "n_judged": len(judged),
        "rm_score": sum(r["rm_score"] for r in rows) / len(rows),
        "kl": sum(r["kl"] for r in rows) / len(rows),
    }
    _write_csvs(Path(out_csv) if out_csv else Path(policy_path) / "eval.csv", summary, rows)
    return summary
