"""Report of the oracle-LM benchmark: summary, Table 2, verdicts (``verdicts.csv``) and the figure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from finitepref.llm import oracle  # noqa: E402
from simulations import _runner, style  # noqa: E402
from simulations.verdicts import (  # noqa: E402
    INCONCLUSIVE,
    Verdict,
    format_verdicts,
    interval_verdict,
    sign_verdict,
    to_frame,
)

from . import rewards, stats  # noqa: E402
from .config import NO_RM, Config, label  # noqa: E402
from .evaluation import reference_rows  # noqa: E402
from .world import World  # noqa: E402

PAIRS = {"claim 1": ("distill", "rebel"), "claim 2": ("reverse_kl", "rlhf")}
"""Reward-based claims: (paper's estimator, baseline), decided under every reward model."""
SLOPES = (("pmle", "dpo"), ("distill", "rebel"), ("reverse_kl", "rlhf"))
"""Claim 4: (distribution-learning estimator, its baseline)."""


def _excluded(failing: set, cells: list[tuple[str, str, int | None]], metric: str) -> str:
    """Note naming the cells of ``cells`` whose ``metric`` failed the convergence check (n None: any n)."""
    bad = [f"{a}/{k}/n={n}" for a, k, n, m in failing
           if m == metric and any(a == c[0] and k == c[1] and c[2] in (None, n) for c in cells)]
    return f"excluded: {metric} of {', '.join(sorted(bad))} failed the convergence check" if bad else ""


def _inconclusive(claim: str, note: str) -> Verdict:
    return Verdict(claim, None, None, None, None, INCONCLUSIVE, note)


def _pairwise(table, failing, cfg, nmax) -> list[tuple[str, Verdict]]:
    """Claims 1-3: paired differences at the largest n."""
    out = []
    have = set(table["algorithm"])
    for name, (a, b) in PAIRS.items():
        if not {a, b} <= have:
            continue
        for kind in cfg.reward_models:
            claim = f"{name}: {label(a)} beats {label(b)} in exact win-rate (n={nmax})"
            bad = _excluded(failing, [(a, kind, nmax), (b, kind, nmax)], "win_rate_exact")
            if bad:
                out.append((kind, _inconclusive(claim, bad)))
                continue
            d, lo, hi, S = stats.paired(table, (a, kind), (b, kind), "win_rate_exact", nmax)
            rm = stats.paired(table, (a, kind), (b, kind), "rm_score", nmax)[0]
            kl = stats.paired(table, (a, kind), (b, kind), "kl_pi_pi0", nmax)[0]
            note = f"paired over {S} seeds, 95% t-CI; RM-score diff {rm:+.3g}, KL(pi||pi0) diff {kl:+.3g}"
            out.append((kind, sign_verdict(claim, d, None if lo is None else (lo, hi), note=note)))
    if {"pmle", "dpo"} <= have:
        out += _pmle_dpo(table, failing, cfg, nmax)
    return out


def _pmle_dpo(table, failing, cfg, nmax) -> list[tuple[str, Verdict]]:
    """Claim 3: PMLE beats or matches DPO in win-rate (CI above -win_margin), with lower KL(pi||pi0)."""
    a, b = ("pmle", NO_RM), ("dpo", NO_RM)
    c1 = f"claim 3: {label('pmle')} beats or matches {label('dpo')} in exact win-rate (n={nmax})"
    c2 = f"claim 3: {label('pmle')} has lower KL(pi||pi0) than {label('dpo')} (n={nmax}; DPO - PMLE)"
    d, lo, hi, S = stats.paired(table, a, b, "win_rate_exact", nmax)
    m = cfg.win_margin
    bad1 = _excluded(failing, [(*a, nmax), (*b, nmax)], "win_rate_exact")
    bad2 = _excluded(failing, [(*a, nmax), (*b, nmax)], "kl_pi_pi0")
    if bad1:
        v1 = _inconclusive(c1, bad1)
    elif lo is None:
        v1 = _inconclusive(c1, "fewer than two seeds")
    else:
        outcome = "AGREES" if lo > -m else ("DISAGREES" if hi < -m else INCONCLUSIVE)
        v1 = Verdict(c1, d, lo, hi, f"> -{m:g}", outcome, f"paired over {S} seeds, 95% t-CI; matches = CI above -{m:g}")
    k, klo, khi, _ = stats.paired(table, b, a, "kl_pi_pi0", nmax)
    ratio = _cell_mean(table, b, nmax, "kl_pi_pi0") / max(_cell_mean(table, a, nmax, "kl_pi_pi0"), 1e-300)
    v2 = (_inconclusive(c2, bad2) if bad2 else
          sign_verdict(c2, k, None if klo is None else (klo, khi), note=f"paired over {S} seeds; DPO/PMLE = {ratio:.3g}"))
    return [(NO_RM, v1), (NO_RM, v2)]


def _cell_mean(table, cell, n, metric) -> float:
    g = table[(table["algorithm"] == cell[0]) & (table["reward_model"] == cell[1]) & (table["n"] == n)]
    return float(g[metric].mean())


def _slope_verdicts(table, failing, cfg, rng) -> list[tuple[str, Verdict]]:
    """Claim 4: each estimator's slope (< 0), the baseline's (plateau: within 0.1 of 0), and the paired difference."""
    out = []
    have = set(table["algorithm"])
    for a, b in SLOPES:
        if not {a, b} <= have or table["n"].nunique() < 2:
            continue
        kinds = (NO_RM,) if table.loc[table["algorithm"] == a, "reward_model"].iloc[0] == NO_RM else cfg.reward_models
        for kind in kinds:
            claims = (f"claim 4: {label(a)}: slope of log KL(pi*||pi) on log n is negative",
                      f"claim 4: {label(b)} plateaus: slope of log KL(pi*||pi) on log n near 0",
                      f"claim 4: {label(a)} minus {label(b)}: slope difference is negative")
            s = stats.slopes(table, (a, kind), (b, kind), rng)
            note = "seed bootstrap, 95%"
            decided = (sign_verdict(claims[0], s["a"][0], s["a"][1:], expected="negative", note=note),
                       interval_verdict(claims[1], s["b"][0], s["b"][1:], 0.0, tolerance=0.1, note=note),
                       sign_verdict(claims[2], s["diff"][0], s["diff"][1:], expected="negative", note=note))
            # each verdict reads its own cells: a failing cell excludes only the verdicts that use it
            for v, used in zip(decided, ([a], [b], [a, b]), strict=True):
                bad = _excluded(failing, [(x, kind, None) for x in used], "kl_star_pi")
                out.append((kind, _inconclusive(v.claim, bad) if bad else v))
    return out


def decide(table: pd.DataFrame, conv: pd.DataFrame, cfg: Config) -> list[tuple[str, Verdict]]:
    """Every claim under every reward model: ``(reward_model, Verdict)``; failing cells excluded."""
    failing = {(r.algorithm, r.reward_model, int(r.n), r.metric) for r in conv.itertuples() if not r.converged}
    nmax = int(table["n"].max())
    rng = np.random.default_rng(cfg.seed)
    return _pairwise(table, failing, cfg, nmax) + _slope_verdicts(table, failing, cfg, rng)


def verdict_frame(decided: list[tuple[str, Verdict]]) -> pd.DataFrame:
    """``verdicts.csv``: :func:`simulations.verdicts.to_frame` rows with a ``reward_model`` column."""
    frames = [to_frame([v], reward_model=kind) for kind, v in decided]
    return pd.concat(frames, ignore_index=True) if frames else to_frame([], reward_model=NO_RM)


def reward_model_summary(world: World, rm: pd.DataFrame) -> pd.DataFrame:
    """Mean fidelity per (reward model, n), with the world's Bayes log-loss."""
    if rm.empty:
        return rm
    cols = ["rm_logloss", "rm_heldout_logloss", "rm_corr", "rm_implied_kl", "rm_steps"]
    t = rm.groupby(["reward_model", "n"], sort=False)[cols].mean().reset_index()
    t.insert(2, "bayes_logloss", rewards.bayes_logloss(world))
    return t


def table2(table: pd.DataFrame, refs: list[dict]) -> pd.DataFrame:
    """Table 2's columns (win-rate, RM score, KL(pi||pi0)) + exact KLs to pi*, mean over seeds at the largest n."""
    nmax = table["n"].max()
    g = table[table["n"] == nmax].groupby(["algorithm", "reward_model"], sort=False)
    cols = ["win_rate_exact", "win_rate_sampled", "rm_score", "kl_pi_pi0", "kl_star_pi", "kl_pi_star", "entropy",
            "leaked_mass"]
    t = g[cols].mean().reset_index()
    t.insert(2, "n", nmax)
    t["seeds"] = g.size().to_numpy()
    ref = pd.DataFrame(refs)[["algorithm", *[c for c in cols if c in refs[0]]]]
    return pd.concat([t, ref], ignore_index=True)


def summarize(world: World, cfg: Config, result: dict, refs: list[dict], conv: pd.DataFrame,
              rm_table: pd.DataFrame) -> dict:
    """The world's constants, the choices (learning rates, budgets), reward-model fidelity, failing cells, timing."""
    D = world.prompt_probs
    failing = conv[~conv["converged"]][["algorithm", "reward_model", "n", "metric"]].to_dict("records")
    return {"world": {"responses_per_prompt": world.logp0.shape[1], "prompts": world.prompt_texts,
                      "kl_star_pi0": float(D @ oracle.kl_rows(world.logp_star, world.logp0)),
                      "kl_pi0_star": float(D @ oracle.kl_rows(world.logp0, world.logp_star)),
                      "entropy_pi0": float(D @ oracle.entropy_rows(world.logp0)),
                      "entropy_star": float(D @ oracle.entropy_rows(world.logp_star)),
                      "leaked_mass_pi0": float(D @ world.leak0), "bayes_logloss": rewards.bayes_logloss(world),
                      "win_rate_star": float(D @ oracle.exact_win_rate(world.logp_star, world.logp0, world.logp_star,
                                                                       cfg.gamma))},
            "references": refs, "lrs": result["lrs"], "budgets": result["budgets"], "pilot": result["choice"],
            "reward_models": rm_table.to_dict("records"), "failing_cells": failing,
            "cells_checked": len(conv), "timing_s": result["timing"],
            "sampled_win_in_ci_fraction": float(result["table"]["win_in_ci"].mean())}


def outcome(cfg: Config, result: dict, runs: Path | None = None) -> _runner.Outcome:
    """Summary, Table 2, the convergence check and the verdicts, with every file the runner writes."""
    world, timing = result["world"], result["table"][["algorithm", "reward_model", "n", "seed", "steps", "train_s"]]
    table = result["table"].drop(columns="train_s")  # timings apart: the main CSV is reproducible bit for bit
    refs = reference_rows(world, np.random.default_rng(cfg.seed + 7))
    conv = stats.convergence_check(table, cfg)
    rm_table = reward_model_summary(world, result["rm"])
    decided = decide(table, conv, cfg)
    summary = summarize(world, cfg, result, refs, conv, rm_table)
    summary["verdicts"] = [format_verdicts([v]) + f"  [{k}]" for k, v in decided]
    files = {"table2.csv": (table2(table, refs), "%.6g"), "convergence.csv": (conv, "%.6g"),
             "verdicts.csv": verdict_frame(decided), "reward_models.csv": (result["rm"].drop(columns="rm_s", errors="ignore"), "%.10g"),
             "timing.csv": (pd.concat([timing, result["rm"].reindex(columns=["reward_model", "n", "seed", "rm_steps",
                                                                             "rm_s"])]), "%.4g")}
    if result["curves"] is not None:
        files["curves.csv"] = (result["curves"], "%.10g")
        files["lr_choice.csv"] = pd.DataFrame([{"algorithm": a, **{k: (v if not isinstance(v, list) else
                                                                        " ".join(f"{x:g}" for x in v))
                                                                    for k, v in c.items()}}
                                               for a, c in result["choice"].items()])
    if runs is not None:
        files["runs"] = runs
    return _runner.Outcome(table, summary, extra={"lr_choice": result["lrs"], "budgets": result["budgets"]},
                           files=files, data={"world": world, "decided": decided, "curves": result["curves"],
                                              "conv": conv, "rm_table": rm_table, "table2": files["table2.csv"][0]},
                           config=replace(cfg, lrs=result["lrs"], budgets=result["budgets"]))


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list[str]:
    """The world, the reward models, Table 2, the failing cells, the verdicts and the time, as printed lines."""
    s, t2 = outcome.summary, outcome.data["table2"]
    w = s["world"]
    lines = [f"world: {w['responses_per_prompt']} responses/prompt x {len(w['prompts'])} prompts; "
             f"KL(pi*||pi0) = {w['kl_star_pi0']:.4f}, H(pi0) = {w['entropy_pi0']:.3f}, H(pi*) = {w['entropy_star']:.3f}, "
             f"Bayes log-loss = {w['bayes_logloss']:.4f}, win-rate of pi* = {w['win_rate_star']:.4f}",
             f"learning rates: {s['lrs']}", f"budgets (steps): {s['budgets']}"]
    fmt = {"float_format": lambda v: f"{v:.4f}", "index": False}
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        if not outcome.data["rm_table"].empty:
            lines.append(outcome.data["rm_table"].to_string(**fmt))
        lines.append(t2.to_string(**fmt))
    bad = [f"{c['metric']} of {c['algorithm']}/{c['reward_model']}/n={c['n']}" for c in s["failing_cells"]]
    lines.append(f"convergence check: {s['cells_checked'] - len(bad)}/{s['cells_checked']} (cell, metric) pairs pass"
                 + (f"; failing (excluded from the verdicts that read them): {', '.join(bad)}" if bad else ""))
    lines += [f"  {line}" for line in s["verdicts"]]
    lines.append(f"time: {s['timing_s']['total']:.1f} s (pilot {s['timing_s']['pilot']:.1f} s)")
    return lines


# ---------------------------------------------------------------------------- figure
def _tradeoff(ax, table: pd.DataFrame, kind: str, nmax: int) -> None:
    """Win-rate against KL(pi||pi0) at the largest n: seeds (dots) and mean with t-CI bars."""
    g = table[(table["n"] == nmax) & table["reward_model"].isin([kind, NO_RM])]
    for (algo, k), c in g.groupby(["algorithm", "reward_model"], sort=False):
        m_x, lo_x, hi_x = stats.t_interval(c["kl_pi_pi0"].to_numpy())
        m_y, lo_y, hi_y = stats.t_interval(c["win_rate_exact"].to_numpy())
        ax.scatter(c["kl_pi_pi0"], c["win_rate_exact"], color=style.color(algo), s=8, alpha=0.35)
        err = None if lo_x is None else ([[m_x - lo_x], [hi_x - m_x]], [[m_y - lo_y], [hi_y - m_y]])
        ax.errorbar(m_x, m_y, xerr=err and err[0], yerr=err and err[1], color=style.color(algo),
                    marker=style.marker(algo), mfc="none" if k == NO_RM else style.color(algo), label=label(algo))
    ax.set(xlabel="exact KL(pi || pi0)", ylabel="exact win-rate vs pi0", title=f"reward model: {kind} (n={nmax})")


def _kl_by_n(ax, table: pd.DataFrame, kind: str, kl0: float) -> None:
    g = table[table["reward_model"].isin([kind, NO_RM])]
    for (algo, k), c in g.groupby(["algorithm", "reward_model"], sort=False):
        st = [stats.t_interval(v.to_numpy()) for _, v in c.groupby("n")["kl_star_pi"]]
        ns = sorted(c["n"].unique())
        ax.plot(ns, [s[0] for s in st], marker=style.marker(algo), color=style.color(algo), label=label(algo),
                ls=":" if k == NO_RM else "-")
        if all(s[1] is not None for s in st):  # a log axis: the band is clipped at a tenth of the smallest mean
            floor = min(s[0] for s in st) / 10
            ax.fill_between(ns, [max(s[1], floor) for s in st], [s[2] for s in st], color=style.color(algo), alpha=0.12)
    ax.axhline(kl0, color="k", ls="--", lw=1, label="pi0")
    ax.set(xscale="log", yscale="log", xlabel="preference pairs n", ylabel="exact KL(pi* || pi-hat)",
           title=f"reward model: {kind}; mean, 95% t-CI over seeds")


def _curves(axes, curves: pd.DataFrame | None, lrs: dict, budgets: dict) -> None:
    if curves is None:
        for ax in axes:
            ax.text(0.5, 0.5, "no pilot (--no-pilot): stored choices", ha="center", transform=ax.transAxes)
        return
    for algo, c in curves.groupby("algorithm", sort=False):
        chosen = c[c["lr"] == lrs[algo]].groupby("step")[["kl_star_pi", "win_rate_exact"]].mean()
        for ax, col in zip(axes[:2], ("kl_star_pi", "win_rate_exact"), strict=True):
            ax.plot(chosen.index, chosen[col], color=style.color(algo), marker=style.marker(algo), ms=3,
                    label=label(algo))
            ax.axvline(budgets[algo], color=style.color(algo), lw=0.6, ls=":")
        final = c[c["step"] == c["step"].max()].groupby("lr")["kl_star_pi"].mean()
        axes[2].plot(final.index, final.to_numpy(), color=style.color(algo), marker=style.marker(algo))
        axes[2].scatter([lrs[algo]], [final[lrs[algo]]], color=style.color(algo), s=60, facecolor="none")
    axes[0].set(yscale="log", xlabel="gradient steps", ylabel="exact KL(pi* || pi)",
                title="pilot convergence (chosen lr; dotted: budget)")
    axes[1].set(xlabel="gradient steps", ylabel="exact win-rate vs pi0", title="pilot convergence")
    axes[2].set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final KL(pi* || pi)",
                title="learning-rate sweep (circle: choice)")


def plot(outcome: _runner.Outcome, cfg: Config):
    """Row 1: win-rate vs KL(pi||pi0) per reward model; row 2: KL(pi*||pi) vs n; row 3: pilot curves and sweep."""
    table, s = outcome.table, outcome.summary
    kinds = list(cfg.reward_models) if (table["reward_model"] != NO_RM).any() else [NO_RM]
    cols = max(len(kinds), 3)
    fig, axes = plt.subplots(3, cols, figsize=(4.6 * cols, 12), squeeze=False)
    nmax = int(table["n"].max())
    for j, kind in enumerate(kinds):
        _tradeoff(axes[0, j], table, kind, nmax)
        _kl_by_n(axes[1, j], table, kind, s["world"]["kl_star_pi0"])
        axes[0, j].axhline(s["world"]["win_rate_star"], color="k", ls=":", lw=1)
    for j in range(len(kinds), cols):
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    _curves(axes[2, :3], outcome.data["curves"], s["lrs"], s["budgets"])
    axes[0, 0].legend(fontsize=6)
    if outcome.data["curves"] is not None:
        axes[2, 0].legend(fontsize=6)
    fig.suptitle(f"Oracle LM: K={cfg.alphabet_size}, L={cfg.length}, X={cfg.n_prompts}, {cfg.seeds} paired seeds")
    fig.tight_layout()
    return fig
