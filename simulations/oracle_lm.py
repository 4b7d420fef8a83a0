"""Oracle-LM benchmark: the paper's Table 2 with a known target LM, exact KL and exact win-rate.

The target pi* is a real tiny GPT-NeoX whose responses (fixed length L over an alphabet of K word
tokens) can be enumerated, so every metric is an exact finite sum:

* pi0 = mu (the "SFT model"): a randomly initialised tiny GPT-NeoX whose output head is scaled so
  its next-token laws are far from uniform; pi* is the same network with a perturbed output head
  (so pi* is in the policy class: realizable).
* Both are defined on the enumerated set: each next-token law renormalised over the alphabet
  (``finitepref.llm.oracle``; generation suppresses pad/EOS/unk through the saved
  ``generation_config.suppress_tokens``, which samples exactly that law). The mass a trained model
  puts outside the alphabet is reported as ``leaked_mass``.
* Preferences: x uniform over the prompts, a, b ~ mu(x), a > b with probability
  sigma(gamma ln pi*(a|x)/pi*(b|x)) (eq. 2/3), sampled exactly from the enumerated laws and written
  as JSONL in the trainer's TL;DR preference schema (the tiny tokenizer's words as text).
* Every algorithm runs through ``finitepref.llm.train.train(cfg)`` (reward model eq. 9 first for
  the online ones), with the same number of gradient steps (``steps``) and the same batch size:
  offline stages (PMLE, DPO) take ``steps`` updates over the n pairs (epochs = steps*batch/n);
  online stages roll out ``batch_size`` prompts per update (one PPO/REBEL epoch, one mini-batch),
  with two samples per prompt (distillation, REBEL; PMLE's KL term also draws two) or one (PPO).
  Sampling temperature is 1, so the sampler is the policy itself.
* Learning rates: one per algorithm, from a sweep (``--sweep``) on held-out seeds, criterion the
  mean exact KL(pi*||pi-hat); the choice is stored in ``STORED_LR`` and used without ``--sweep``.
* Evaluation enumerates all K^L responses per prompt: forward KL(pi*||pi), reverse KL(pi||pi*),
  KL(pi||pi0), entropy, the exact oracle win-rate E_{a~pi, b~pi0} P*(a > b | x), the exact RM score
  E_{a~pi} R-hat(x, a), and a judge-style sampled win-rate with a Clopper-Pearson CI.

Run ``python -m simulations.oracle_lm [--quick]``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from finitepref.llm import oracle  # noqa: E402
from simulations import common  # noqa: E402

ALGORITHMS = ("pmle", "pmle_nokl", "distill", "reverse_kl", "dpo", "rebel", "rlhf")
TRAINER_NAME = {"pmle_nokl": "pmle"}
STYLE = {
    "pmle": ("PMLE (eq. 5)", "C0", "o"), "pmle_nokl": ("PMLE, beta=0 (eq. 4)", "C7", "x"),
    "distill": ("Pref. distillation (eq. 12)", "C1", "s"), "reverse_kl": ("Reverse KL (eq. 16)", "C2", "^"),
    "dpo": ("DPO (eq. 6)", "C3", "v"), "rebel": ("REBEL (eq. 10)", "C5", "P"), "rlhf": ("RLHF/PPO (eq. 1)", "C4", "D"),
}
# Learning rates chosen by the documented sweep (``--sweep``, criterion: mean exact KL(pi*||pi-hat)
# on held-out seed 1000 at n = 256, default world, 64 steps). Two sweeps were run: grid
# (1e-3, 3e-3, 1e-2) chose 1e-3 for every algorithm (the grid's lower edge), so the grid was extended
# to (3e-4, 1e-3): PMLE and reverse KL keep 1e-3 (interior), the others pick 3e-4 (again the lower
# edge: for them, moving less from pi0 is what lowers KL to pi*). Per-lr results: sweep.csv.
STORED_LR = {"pmle": 1e-3, "pmle_nokl": 3e-4, "distill": 3e-4, "reverse_kl": 1e-3, "dpo": 3e-4,
             "rebel": 3e-4, "rlhf": 3e-4}


@dataclass(frozen=True)
class Config:
    """Configuration of the oracle-LM benchmark. Every field is a command-line flag (``--field-name``).

    seed: master seed (data and training seeds come from SeedSequence(seed).spawn)
    out: output folder
    world_seed: initialisation seed of pi0 and of pi*'s perturbation (fixed across replicate seeds)
    alphabet_size: K, number of word tokens responses are made of
    length: L, response length (K**L responses per prompt)
    n_prompts: X, number of prompts (uniform prompt distribution D)
    head_scale: std of pi0's output-head weights times sqrt(hidden) (sets how peaked pi0 is)
    perturb: std of pi*'s head perturbation relative to head_scale
    gamma: gamma of eq. (3); also PMLE's/distillation's gamma and reverse KL's entropy coefficient
    beta: KL(pi||pi0) coefficient of PMLE, distillation, reverse KL, REBEL and RLHF
    dpo_beta: DPO's inverse temperature (eq. 6 uses gamma)
    n_grid: numbers of preference pairs n
    seeds: replicate seeds per n
    steps: gradient steps per algorithm (identical for all)
    batch_size: pairs (offline) or prompts (online) per gradient step
    rm_steps: gradient steps of the reward model (eq. 9)
    rm_lr: reward-model learning rate
    algorithms: algorithms to run
    lrs: learning rate per algorithm (from the sweep)
    sweep: run the learning-rate sweep first (on held-out seeds) and use its choice
    sweep_lrs: learning-rate grid of the sweep
    sweep_n: n at which the sweep is run
    sweep_seeds: held-out seeds of the sweep
    sweep_seed_offset: held-out seeds are offset + 0, 1, ...
    judge_samples: m pairs of the sampled (judge-style) win-rate, as the paper's 600
    max_responses: refuse exact enumeration above this many responses per prompt
    threads: torch intra-op threads (1 is fastest for these tiny matrices on shared cores)
    keep_runs: keep the trainer's run folders (models) under out/runs
    """

    seed: int = 0
    out: Path = Path("results/oracle_lm")
    world_seed: int = 0
    alphabet_size: int = 8
    length: int = 4
    n_prompts: int = 4
    head_scale: float = 2.0
    perturb: float = 0.7
    gamma: float = 1.0
    beta: float = 0.05
    dpo_beta: float = 1.0
    n_grid: tuple[int, ...] = (64, 256, 1024)
    seeds: int = 2
    steps: int = 64
    batch_size: int = 16
    rm_steps: int = 256
    rm_lr: float = 1e-2
    algorithms: tuple[str, ...] = ALGORITHMS
    lrs: dict = field(default_factory=lambda: dict(STORED_LR))
    sweep: bool = False
    sweep_lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
    sweep_n: int = 256
    sweep_seeds: int = 1
    sweep_seed_offset: int = 1000
    judge_samples: int = 600
    max_responses: int = 4096
    threads: int = 1
    keep_runs: bool = False

    @classmethod
    def quick(cls) -> Config:
        """CI: K=4, L=3 (64 responses), 2 prompts, n in {32, 256}, 1 seed, 16 steps, 4 algorithms."""
        return cls(alphabet_size=4, length=3, n_prompts=2, n_grid=(32, 256), seeds=1, steps=16, rm_steps=32,
                   algorithms=("pmle", "distill", "reverse_kl", "dpo"), judge_samples=600,
                   out=Path("results/oracle_lm_quick"))

    def validate(self) -> None:
        unknown = set(self.algorithms) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"algorithms: unknown {sorted(unknown)}; choose from {ALGORITHMS}")
        if min(self.n_grid) < self.batch_size:
            raise ValueError(f"n_grid: every n must be >= batch_size={self.batch_size}")
        oracle.check_size(self.alphabet_size, self.length, self.n_prompts, self.max_responses)
        if self.alphabet_size > 30:
            raise ValueError("alphabet_size: at most 30 words of the tiny vocabulary")


# ---------------------------------------------------------------------- the world: pi0, pi*, data
@dataclass
class World:
    cfg: Config
    tok: object
    words: list[str]
    alphabet: list[int]
    prompts: list[list[int]]
    prompt_texts: list[str]
    prompt_probs: np.ndarray
    pi0_dir: Path
    logp0: np.ndarray
    logp_star: np.ndarray
    leak0: np.ndarray


def _word_list(k: int) -> list[str]:
    from finitepref.llm.tiny import WORDS

    return [w for w in WORDS if w.isalpha()][:k]


def build_world(cfg: Config, root: Path) -> World:
    """pi0 (saved as a trainer-loadable model directory) and pi*, both enumerated."""
    from finitepref.llm.models import save_model
    from finitepref.llm.tiny import tiny_model, tiny_tokenizer

    words = _word_list(cfg.alphabet_size)
    tok = tiny_tokenizer(words)
    alphabet = [tok.convert_tokens_to_ids(w) for w in words]
    vocab = 3 + len(words)
    g = torch.Generator().manual_seed(cfg.world_seed)
    # prompts: distinct 2-word sequences of the alphabet
    pairs = [(i, j) for i in range(len(words)) for j in range(len(words)) if i != j]
    order = torch.randperm(len(pairs), generator=g)[: cfg.n_prompts].tolist()
    prompt_texts = [f"{words[pairs[o][0]]} {words[pairs[o][1]]}" for o in order]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in prompt_texts]

    pi0 = tiny_model("tiny:gpt-neox", seed=cfg.world_seed, vocab_size=vocab)
    head = pi0.get_output_embeddings().weight
    hidden = head.shape[1]
    special = [tok.pad_token_id, tok.eos_token_id, tok.unk_token_id]
    # Output head: alphabet rows ~ N(0, head_scale^2/hidden) (non-uniform next-token laws); one hidden
    # unit (index 0) is made a constant by the final layer norm's bias and pushes pad/EOS/unk down,
    # so pi0 leaks little mass outside the alphabet (it is reported either way).
    mask = torch.ones(head.shape)
    mask[special] = 0.0
    mask[:, 0] = 0.0
    with torch.no_grad():
        head.copy_(torch.randn(head.shape, generator=g) * cfg.head_scale / hidden**0.5 * mask)
        head[special, 0] = -3.0
        pi0.gpt_neox.final_layer_norm.bias[0] = 4.0
    pi0.generation_config.suppress_tokens = special
    pi0_dir = root / "pi0"
    save_model(pi0, tok, pi0_dir / "model", {"algorithm": "oracle_pi0", "base": "tiny:gpt-neox"})
    pi_star = tiny_model("tiny:gpt-neox", seed=cfg.world_seed, vocab_size=vocab)
    pi_star.load_state_dict(pi0.state_dict())
    with torch.no_grad():
        pi_star.get_output_embeddings().weight.add_(
            torch.randn(head.shape, generator=g) * cfg.perturb * cfg.head_scale / hidden**0.5 * mask)
    logp0, leak0 = oracle.enumerate_policy(pi0, prompts, cfg.length, alphabet, cfg.max_responses)
    logp_star, _ = oracle.enumerate_policy(pi_star, prompts, cfg.length, alphabet, cfg.max_responses)
    return World(cfg, tok, words, alphabet, prompts, prompt_texts, np.full(cfg.n_prompts, 1.0 / cfg.n_prompts),
                 pi0_dir / "model", logp0, logp_star, leak0)


def response_text(world: World, idx: int) -> str:
    """Text of enumerated response ``idx`` (lexicographic order of the alphabet)."""
    K, L = len(world.words), world.cfg.length
    digits = []
    for _ in range(L):
        idx, r = divmod(idx, K)
        digits.append(r)
    return " " + " ".join(world.words[d] for d in reversed(digits))


def write_preferences(world: World, rng: np.random.Generator, n: int, path: Path) -> None:
    x, w, lo = oracle.sample_preferences(rng, world.prompt_probs, world.logp0, world.logp_star, world.cfg.gamma, n)
    with open(path, "w") as f:
        for xi, wi, li in zip(x, w, lo, strict=True):
            f.write(json.dumps({"query": world.prompt_texts[xi], "chosen": response_text(world, wi),
                                "rejected": response_text(world, li)}) + "\n")


def write_prompts(world: World, rng: np.random.Generator, rows: int, path: Path) -> None:
    """Prompt set of the online stages (tldr_sft schema); reference responses sampled from pi0
    (used only for the reward model's normalisation constant)."""
    x = rng.choice(len(world.prompts), size=rows, p=world.prompt_probs)
    with open(path, "w") as f:
        for xi in x:
            a = rng.choice(world.logp0.shape[1], p=np.exp(world.logp0[xi]) / np.exp(world.logp0[xi]).sum())
            f.write(json.dumps({"query": world.prompt_texts[xi], "reference_response": response_text(world, a)}) + "\n")


# ---------------------------------------------------------------------- trainer configs
def trainer_config(world: World, algo: str, run_dir: Path, data: Path, n_rows: int, lr: float, seed: int,
                   rm_dir: Path | None, prompts_file: Path):
    """A :class:`finitepref.llm.config.Config` for one stage, built in code."""
    from finitepref.llm.config import Config as TConfig
    from finitepref.llm.config import from_dict

    cfg = world.cfg
    name = TRAINER_NAME.get(algo, algo)
    B = cfg.batch_size
    offline = name in ("pmle", "dpo", "reward")
    steps = cfg.rm_steps if name == "reward" else cfg.steps
    beta = {"pmle_nokl": 0.0, "dpo": cfg.dpo_beta}.get(algo, cfg.beta)
    raw = {
        "model": {"name": str(world.pi0_dir)},
        "reward": {"model": str(rm_dir) if rm_dir else None, "missing_eos_penalty": None, "normalize": True},
        "data": {"source": str(data), "schema": "tldr_preference" if offline else "tldr_sft",
                 "max_prompt_length": 8, "max_response_length": cfg.length,
                 "reference_prompts": str(prompts_file)},
        "generation": {"max_new_tokens": cfg.length, "min_new_tokens": cfg.length, "temperature": 1.0,
                       "disable_eos": True},
        "algorithm": {"name": name, "beta": beta if name != "reward" else 0.05, "gamma": cfg.gamma,
                      "eta": 1.0 / cfg.gamma, "num_ppo_epochs": 1, "num_mini_batches": 1},
        "train": {"seed": seed, "lr": lr, "schedule": "linear", "batch_size": B, "micro_batch_size": B,
                  "max_grad_norm": 1.0},
        "log": {"csv": False, "tensorboard": False, "progress": False},
        "output_dir": str(run_dir),
    }
    if offline:
        raw["train"]["epochs"] = steps * B / n_rows  # exactly `steps` updates over n rows
    else:
        raw["train"]["total_episodes"] = steps * B  # one update per rollout batch of B prompts
    out = from_dict(raw)
    assert isinstance(out, TConfig)
    return out


def run_stage(tcfg) -> Path:
    from finitepref.llm.train import train

    res = train(tcfg)
    return Path(res["output_dir"]) / "model"


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def rm_scores(world: World, rm_dir: Path) -> np.ndarray:
    """R-hat(x, a) on every enumerated response, (X, A), normalised as the trainer uses it."""
    from finitepref.llm.config import RewardConfig
    from finitepref.llm.models import load_reward_model

    rm = load_reward_model(RewardConfig(model=str(rm_dir), missing_eos_penalty=None), world.tok)
    resp = oracle.enumerate_responses(world.alphabet, world.cfg.length, world.cfg.max_responses)
    out = []
    for p in world.prompts:
        row = []
        for s in range(0, resp.shape[0], 1024):
            r = resp[s:s + 1024]
            pid = torch.tensor(p).expand(r.shape[0], -1)
            row.append(rm.scores(pid, torch.ones_like(pid), r, torch.ones_like(r)))
        out.append(torch.cat(row).double())
    return torch.stack(out).numpy()


def evaluate_policy(world: World, logp: np.ndarray, leak: np.ndarray, rng: np.random.Generator,
                    rm: np.ndarray | None) -> dict:
    c = world.cfg
    D = world.prompt_probs
    wr = oracle.exact_win_rate(logp, world.logp0, world.logp_star, c.gamma)
    judge = oracle.sampled_win_rate(rng, D, logp, world.logp0, world.logp_star, c.gamma, c.judge_samples)
    out = {
        "kl_star_pi": float(D @ oracle.kl_rows(world.logp_star, logp)),
        "kl_pi_star": float(D @ oracle.kl_rows(logp, world.logp_star)),
        "kl_pi_pi0": float(D @ oracle.kl_rows(logp, world.logp0)),
        "entropy": float(D @ oracle.entropy_rows(logp)),
        "win_rate_exact": float(D @ wr),
        "win_rate_sampled": judge["rate"], "win_ci_low": judge["ci_low"], "win_ci_high": judge["ci_high"],
        "win_in_ci": bool(judge["ci_low"] <= D @ wr <= judge["ci_high"]),
        "leaked_mass": float(D @ leak),
    }
    out["rm_score"] = float(D @ (np.exp(logp) * rm).sum(-1)) if rm is not None else np.nan
    return out


def load_and_enumerate(world: World, model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from finitepref.llm.models import load_causal_lm

    model = load_causal_lm(str(model_dir))
    return oracle.enumerate_policy(model, world.prompts, world.cfg.length, world.alphabet, world.cfg.max_responses)


# ---------------------------------------------------------------------- one replicate
def run_replicate(world: World, algos, n: int, lrs: dict, seed_seq: np.random.SeedSequence, root: Path,
                  seed_label: int, bar=None) -> list[dict]:
    """Sample n pairs, train the reward model (if needed) and every algorithm, evaluate exactly."""
    c = world.cfg
    data_ss, train_ss, judge_ss = seed_seq.spawn(3)
    rng = np.random.default_rng(data_ss)
    tseed = int(train_ss.generate_state(1)[0] % 2**31)
    work = root / f"n{n}_s{seed_label}"
    work.mkdir(parents=True, exist_ok=True)
    prefs, prompts_file = work / "prefs.jsonl", work / "prompts.jsonl"
    write_preferences(world, rng, n, prefs)
    write_prompts(world, rng, max(4 * c.batch_size, 64), prompts_file)
    jrng = np.random.default_rng(judge_ss)
    rows = []
    rm_dir = rm = None
    rm_time = 0.0
    if any(a in ("distill", "reverse_kl", "rebel", "rlhf") for a in algos):
        t0 = time.perf_counter()
        rm_dir = run_stage(trainer_config(world, "reward", work / "reward", prefs, n, c.rm_lr, tseed, None,
                                          prompts_file))
        rm_time = time.perf_counter() - t0
        rm = rm_scores(world, rm_dir)
        # the LM implied by the reward model, pi~ ∝ exp(R/gamma) (eq. 8), against pi*
        implied = rm / c.gamma
        implied = implied - np.logaddexp.reduce(implied, axis=1, keepdims=True)
        rm_kl = float(world.prompt_probs @ oracle.kl_rows(world.logp_star, implied))
    for algo in algos:
        t0 = time.perf_counter()
        online = algo in ("distill", "reverse_kl", "rebel", "rlhf")
        data = prompts_file if online else prefs
        tcfg = trainer_config(world, algo, work / algo, data, n, lrs[algo], tseed, rm_dir if online else None,
                              prompts_file)
        model_dir = run_stage(tcfg)
        logp, leak = load_and_enumerate(world, model_dir)
        ev = evaluate_policy(world, logp, leak, jrng, rm)
        rows.append({"algorithm": algo, "n": n, "seed": seed_label, "lr": lrs[algo], "steps": c.steps,
                     "batch_size": c.batch_size, **ev, "rm_kl_star_implied": rm_kl if rm is not None else np.nan,
                     "train_s": time.perf_counter() - t0 + (rm_time if online else 0.0)})
        if not c.keep_runs:
            shutil.rmtree(work / algo, ignore_errors=True)
        if bar is not None:
            bar.update(1)
    return rows


def reference_rows(world: World, rm_rng: np.random.Generator) -> list[dict]:
    """pi0 itself (the SFT model) and pi* (the oracle) as rows of the table."""
    rows = []
    for name, lp in (("pi0 (SFT)", world.logp0), ("pi* (oracle)", world.logp_star)):
        ev = evaluate_policy(world, lp, world.leak0 if name.startswith("pi0") else np.zeros(len(world.prompts)),
                             rm_rng, None)
        rows.append({"algorithm": name, **ev})
    return rows


# ---------------------------------------------------------------------- sweep
def lr_sweep(world: World, cfg: Config, root: Path) -> tuple[dict, pd.DataFrame]:
    rows = []
    ss = np.random.SeedSequence(cfg.seed + cfg.sweep_seed_offset).spawn(cfg.sweep_seeds)
    for lr in cfg.sweep_lrs:
        lrs = {a: lr for a in cfg.algorithms}
        for s in range(cfg.sweep_seeds):
            for r in run_replicate(world, cfg.algorithms, cfg.sweep_n, lrs, ss[s], root / f"sweep_lr{lr:g}",
                                   cfg.sweep_seed_offset + s):
                rows.append(r)
    df = pd.DataFrame(rows)
    best = df.groupby(["algorithm", "lr"])["kl_star_pi"].mean().reset_index()
    choice = {a: float(g.sort_values("kl_star_pi").iloc[0]["lr"]) for a, g in best.groupby("algorithm")}
    return choice, df


# ---------------------------------------------------------------------- summary, table, figure
def summarize(world: World, cfg: Config, table: pd.DataFrame, refs: list[dict], timing: dict) -> dict:
    rng = np.random.default_rng(cfg.seed)
    out: dict = {"world": {"responses_per_prompt": world.logp0.shape[1], "prompts": world.prompt_texts,
                           "kl_star_pi0": float(world.prompt_probs @ oracle.kl_rows(world.logp_star, world.logp0)),
                           "kl_pi0_star": float(world.prompt_probs @ oracle.kl_rows(world.logp0, world.logp_star)),
                           "entropy_pi0": float(world.prompt_probs @ oracle.entropy_rows(world.logp0)),
                           "entropy_star": float(world.prompt_probs @ oracle.entropy_rows(world.logp_star)),
                           "leaked_mass_pi0": float(world.prompt_probs @ world.leak0)},
                 "references": refs, "algorithms": {}, "timing_s": timing}
    ns = np.array(sorted(table["n"].unique()))
    for algo, g in table.groupby("algorithm"):
        errs = np.stack([g[g["n"] == n].sort_values("seed")["kl_star_pi"].to_numpy() for n in ns])
        slope = common.loglog_slope(ns, errs, rng, resamples=200) if len(ns) > 1 else {"slope": None}
        means = {int(n): float(e.mean()) for n, e in zip(ns, errs, strict=True)}
        # "falls" only when the slope's CI (resampling seeds) lies below 0; else the last n vs the first
        falls = (slope["ci_high"] < 0) if slope.get("slope") is not None else bool(errs[-1].mean() < errs[0].mean())
        out["algorithms"][algo] = {"slope_kl_star_pi": slope, "mean_kl_star_pi": means, "falls_with_n": bool(falls)}
    out["sampled_win_in_ci_fraction"] = float(table["win_in_ci"].mean())
    rm = table.dropna(subset=["rm_kl_star_implied"])
    out["rm_implied_kl_star"] = {int(n): float(v) for n, v in rm.groupby("n")["rm_kl_star_implied"].mean().items()}
    return out


def table2(table: pd.DataFrame, refs: list[dict]) -> pd.DataFrame:
    """Table 2's columns (win-rate, RM score, KL(pi||pi0)) + exact KLs to pi*, at the largest n."""
    nmax = table["n"].max()
    g = table[table["n"] == nmax].groupby("algorithm", sort=False)
    cols = ["win_rate_exact", "win_rate_sampled", "rm_score", "kl_pi_pi0", "kl_star_pi", "kl_pi_star", "entropy",
            "leaked_mass"]
    t = g[cols].mean()
    t.insert(0, "n", nmax)
    t["seeds"] = g.size()
    ref = pd.DataFrame(refs).set_index("algorithm")[[c for c in cols if c in refs[0]]]
    return pd.concat([t, ref]).reset_index().rename(columns={"index": "algorithm"})


def plot(table: pd.DataFrame, world: World, cfg: Config):
    """KL to pi* and exact win-rate against n; the band is the range over seeds (dots: single seeds).

    With a handful of seeds a t-interval is uninformative (and leaves [0, 1] for the win-rate), so
    the figure shows the spread it actually measured.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    kl0 = float(world.prompt_probs @ oracle.kl_rows(world.logp_star, world.logp0))
    for algo, g in table.groupby("algorithm", sort=False):
        label, color, marker = STYLE[algo]
        for ax, col in zip(axes, ("kl_star_pi", "win_rate_exact"), strict=True):
            stats = g.groupby("n")[col].agg(["mean", "min", "max"]).reset_index()
            ax.plot(stats["n"], stats["mean"], marker=marker, color=color, label=label)
            ax.fill_between(stats["n"], stats["min"], stats["max"], color=color, alpha=0.15)
            ax.scatter(g["n"], g[col], color=color, s=8, alpha=0.4)
    axes[0].axhline(kl0, color="k", ls="--", lw=1, label="pi0 (SFT)")
    axes[0].set(xscale="log", yscale="log", xlabel="preference pairs n", ylabel="exact KL(pi* || pi-hat)",
                title=f"Oracle LM: K={cfg.alphabet_size}, L={cfg.length}, X={cfg.n_prompts}")
    axes[1].axhline(0.5, color="k", ls="--", lw=1)
    wr_star = float(world.prompt_probs @ oracle.exact_win_rate(world.logp_star, world.logp0, world.logp_star,
                                                                 cfg.gamma))
    axes[1].axhline(wr_star, color="k", ls=":", lw=1, label="pi* vs pi0")
    axes[1].set(xscale="log", xlabel="preference pairs n", ylabel="exact oracle win-rate vs pi0", ylim=(0, 1),
                title=f"{cfg.seeds} seed(s), {cfg.steps} steps; band: range over seeds")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def verdicts(summary: dict, t2: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    lines = []
    A = summary["algorithms"]
    kl0 = summary["world"]["kl_star_pi0"]
    for a, e in A.items():
        s = e["slope_kl_star_pi"]
        sl = f"{s['slope']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}]" if s.get("slope") is not None else "n/a"
        lines.append(f"{a:11s} KL(pi*||pi) by n {e['mean_kl_star_pi']}  slope {sl}  "
                     f"({'falls' if e['falls_with_n'] else 'no significant fall'} with n; toy log-linear PMLE slope ~ -1)")
    by = t2.set_index("algorithm")
    nmin = table["n"].min()
    if "pmle_nokl" in A and "pmle" in A:
        small = table[table["n"] == nmin].groupby("algorithm")["kl_star_pi"].mean()
        lines.append(f"PMLE beta=0 at n={nmin}: KL(pi*||pi) {small['pmle_nokl']:.4f} vs pi0's {kl0:.4f} -> "
                     f"{'overfits (above pi0)' if small['pmle_nokl'] > kl0 else 'no overfitting beyond pi0'}; "
                     f"with the KL term {small['pmle']:.4f} ({'better' if small['pmle'] < small['pmle_nokl'] else 'not better'})")
    if "dpo" in by.index and "pmle" in by.index:
        d, p = by.loc["dpo", "kl_pi_pi0"], by.loc["pmle", "kl_pi_pi0"]
        lines.append(f"KL(pi||pi0): DPO {d:.4f} vs PMLE {p:.4f} -> DPO drifts {'further' if d > p else 'less'} "
                     f"(paper's Table 2: further)")
    if "distill" in by.index and "rebel" in by.index:
        d, r = by.loc["distill", "win_rate_exact"], by.loc["rebel", "win_rate_exact"]
        lines.append(f"exact win-rate: distillation {d:.4f} vs REBEL {r:.4f} -> "
                     f"{'distillation wins (paper)' if d > r else 'REBEL wins (paper claims the opposite)'}")
    if "reverse_kl" in by.index and "rlhf" in by.index:
        lines.append(f"reverse KL vs RLHF: win-rate {by.loc['reverse_kl', 'win_rate_exact']:.4f} vs "
                     f"{by.loc['rlhf', 'win_rate_exact']:.4f}; KL(pi*||pi) {by.loc['reverse_kl', 'kl_star_pi']:.4f} vs "
                     f"{by.loc['rlhf', 'kl_star_pi']:.4f}")
    if summary["rm_implied_kl_star"]:
        lines.append(f"reward model (eq. 9): KL(pi*||pi~), pi~ = exp(R-hat/gamma)/Z (eq. 8, what distillation and reverse "
                     f"KL learn), by n {summary['rm_implied_kl_star']} vs pi0's {kl0:.4f}")
    f = summary["sampled_win_in_ci_fraction"]
    lines.append(f"sampled judge win-rate: exact value inside its "
                 f"95% Clopper-Pearson CI in {f:.0%} of {len(table)} runs (expected ~95%)")
    return lines


def main(argv: list[str] | None = None) -> dict:
    cfg = common.parse_config(Config, argv, description=__doc__.split("\n\n")[0])
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    root = Path(cfg.out) / "runs" if cfg.keep_runs else Path(tempfile.mkdtemp(prefix="oracle_lm_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        world = build_world(cfg, root)
        lrs = {a: float(cfg.lrs.get(a, STORED_LR[a])) for a in cfg.algorithms}
        sweep_df = None
        t_sweep = 0.0
        if cfg.sweep:
            t0 = time.perf_counter()
            lrs, sweep_df = lr_sweep(world, cfg, root)
            t_sweep = time.perf_counter() - t0
            print("sweep choice:", lrs)
        from tqdm.auto import tqdm

        ss = np.random.SeedSequence(cfg.seed).spawn(len(cfg.n_grid) * cfg.seeds)
        rows = []
        bar = tqdm(total=len(cfg.n_grid) * cfg.seeds * len(cfg.algorithms), desc="oracle_lm", dynamic_ncols=True)
        t0 = time.perf_counter()
        for i, n in enumerate(cfg.n_grid):
            for s in range(cfg.seeds):
                rows += run_replicate(world, cfg.algorithms, int(n), lrs, ss[i * cfg.seeds + s], root, s, bar)
        bar.close()
        t_main = time.perf_counter() - t0
    finally:
        if not cfg.keep_runs:
            shutil.rmtree(root, ignore_errors=True)
    table = pd.DataFrame(rows)
    timing = {"sweep": t_sweep, "main": t_main, "total": time.perf_counter() - t_start}
    return report(cfg, world, table, lrs, sweep_df, timing)


def report(cfg: Config, world: World, table: pd.DataFrame, lrs: dict, sweep_df: pd.DataFrame | None,
           timing: dict) -> dict:
    """Summary, Table 2, figure and verdicts from the per-run table; writes every output file."""
    refs = reference_rows(world, np.random.default_rng(cfg.seed + 7))
    summary = summarize(world, cfg, table, refs, timing)
    t2 = table2(table, refs)
    summary["lrs"] = lrs
    summary["verdicts"] = verdicts(summary, t2, table)
    fig = plot(table, world, cfg)
    used = replace(cfg, lrs=lrs)
    paths = common.write_outputs(cfg.out, "oracle_lm", used, table, summary, fig,
                                 extra={"lr_choice": lrs, "sweep_grid": list(cfg.sweep_lrs) if cfg.sweep else None})
    plt.close(fig)
    t2.to_csv(Path(cfg.out) / "table2.csv", index=False, float_format="%.6g")
    if sweep_df is not None:
        sweep_df.to_csv(Path(cfg.out) / "sweep.csv", index=False, float_format="%.6g")
    w = summary["world"]
    print(f"world: {w['responses_per_prompt']} responses/prompt x {len(world.prompts)} prompts; "
          f"KL(pi*||pi0) = {w['kl_star_pi0']:.4f}, H(pi0) = {w['entropy_pi0']:.3f}, H(pi*) = {w['entropy_star']:.3f}, "
          f"pi0 leaked mass = {w['leaked_mass_pi0']:.3g}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(t2.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for line in summary["verdicts"]:
        print("  " + line)
    print(f"time: {timing['total']:.1f} s; wrote " + ", ".join(str(p) for p in paths.values()))
    return summary


if __name__ == "__main__":
    main()
