"""Exact evaluation of a trained policy: every metric of the paper's Table 2 as a finite sum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from finitepref.llm import oracle

from .world import World


@torch.no_grad()
def rm_scores(world: World, rm_dir: Path, remote: bool = False) -> np.ndarray:
    """R-hat(x, a) on every enumerated response, (X, A), scored and normalised as the trainer does
    (``remote``: with custom code, :mod:`.logprob_reward`)."""
    from finitepref.llm.config import RewardConfig
    from finitepref.llm.models import load_reward_model

    rm = load_reward_model(RewardConfig(model=str(rm_dir), missing_eos_penalty=None, trust_remote_code=remote),
                           world.tok)
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


def evaluate_policy(world: World, logp: np.ndarray, leak: np.ndarray, rng: np.random.Generator | None,
                    rm: np.ndarray | None) -> dict:
    """Exact KLs, entropy, exact win-rate against pi0 and RM score of the enumerated policy, and a sampled
    win-rate (NaN without ``rng``)."""
    c = world.cfg
    D = world.prompt_probs
    wr = oracle.exact_win_rate(logp, world.logp0, world.logp_star, c.gamma)
    judge = (oracle.sampled_win_rate(rng, D, logp, world.logp0, world.logp_star, c.gamma, c.judge_samples)
             if rng is not None else {"rate": np.nan, "ci_low": np.nan, "ci_high": np.nan})
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
    """Load a trained model and enumerate its laws (log-probabilities and leaked mass per prompt)."""
    from finitepref.llm.models import load_causal_lm

    model = load_causal_lm(str(model_dir))
    return oracle.enumerate_policy(model, world.prompts, world.cfg.length, world.alphabet, world.cfg.max_responses)


def load_checkpoint_and_enumerate(world: World, checkpoint: Path) -> tuple[np.ndarray, np.ndarray]:
    """The policy weights of a trainer checkpoint (``model.safetensors`` of accelerate's state), enumerated."""
    from safetensors.torch import load_file

    from finitepref.llm.models import load_causal_lm

    model = load_causal_lm(str(world.pi0_dir))
    model.load_state_dict(load_file(str(Path(checkpoint) / "model.safetensors")))
    return oracle.enumerate_policy(model.eval(), world.prompts, world.cfg.length, world.alphabet,
                                   world.cfg.max_responses)


def reference_rows(world: World, rm_rng: np.random.Generator) -> list[dict]:
    """pi0 itself (the SFT model) and pi* (the oracle) as rows of the table."""
    rows = []
    for name, lp in (("pi0 (SFT)", world.logp0), ("pi* (oracle)", world.logp_star)):
        ev = evaluate_policy(world, lp, world.leak0 if name.startswith("pi0") else np.zeros(len(world.prompts)),
                             rm_rng, None)
        rows.append({"algorithm": name, **ev})
    return rows
