# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Oracle LM: Table 2 with a known target language model
#
# **Claim (Section 6, Table 2).** On TL;DR, the distribution-learning objectives (PMLE, preference
# distillation, reverse KL) match or beat their baselines (DPO, REBEL, RLHF) in win-rate, and PMLE,
# with its online KL term, drifts much less from $\pi_0$ than DPO. **Theory (Theorems 4, 6, 7):** their
# forward (or reverse) KL to $\pi^*$ falls like $1/n$.
#
# A judge and a reward-model score cannot tell whether a policy is close to $\pi^*$. Here $\pi^*$ is
# *known*: a tiny GPT-NeoX whose responses (length $L$ over $K$ word tokens) can be enumerated. So the
# forward KL $\mathrm{KL}(\pi^*\|\hat\pi)$, the win-rate $\mathbb E_{a\sim\hat\pi,b\sim\pi_0}P_*(a\succ b\mid x)$
# and every other column of Table 2 are **exact** sums over the $K^L$ responses. The preferences are drawn
# exactly from eq. (2) with this $\pi^*$; every algorithm runs through the same trainer
# (`finitepref.llm.train`) as the Pythia experiments, with the same number of gradient steps.
#
# Conventions: $\pi_0=\mu$ is a random tiny LM with a scaled output head; $\pi^*$ is $\pi_0$ with a perturbed
# head (realizable). Both, and every trained policy, are evaluated as their next-token laws renormalised over
# the alphabet (that is the law of generation with pad/EOS/unk suppressed, which is how the models sample);
# the mass an unrestricted model puts elsewhere is reported as `leaked_mass`.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import display

from finitepref.llm import oracle
from simulations import oracle_lm

FAST = os.environ.get("FAST", "1") != "0"
# FAST writes to a temporary folder; FAST=0 writes the benchmark's own results folder
OUT = Path(os.environ.get("ORACLE_LM_OUT") or (tempfile.mkdtemp(prefix="oracle_lm_nb_") if FAST
                                               else "results/oracle_lm"))

# %% [markdown]
# ## Theory check of the evaluator on a hand-sized case
#
# Exactness first: the win-rate of any policy against itself is exactly 1/2 (eq. 3 is antisymmetric),
# $\mathrm{KL}(\pi\|\pi)=0$, and the KL matches a direct sum.

# %%
rng = np.random.default_rng(0)
z = rng.normal(size=(2, 27)) * 2
p = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
z = rng.normal(size=(2, 27)) * 2
q = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
print("win-rate(pi vs pi) - 1/2:", oracle.exact_win_rate(p, p, q, 1.0) - 0.5)
print("KL(pi||pi):", oracle.kl_rows(p, p), " KL(p||q) stable vs direct:", oracle.kl_rows(p, q),
      (np.exp(p) * (p - q)).sum(1))

# %% [markdown]
# ## Empirical validation: the benchmark
#
# With `FAST` on (the default, for CI) a very small world ($K=4$, $L=2$: 16 responses, 2 prompts, two
# values of $n$, PMLE and DPO only, 8 steps) shows the machinery; `FAST=0` runs the full benchmark
# (`python -m simulations.oracle_lm`: $K=8$, $L=4$, 4096 responses per prompt, 7 algorithms).

# %%
if FAST:
    argv = ["--alphabet-size", "4", "--length", "2", "--n-prompts", "2", "--n-grid", "32", "128", "--seeds", "1",
            "--steps", "8", "--algorithms", "pmle", "dpo", "--judge-samples", "300", "--out", str(OUT)]
else:
    argv = ["--out", str(OUT)]
summary = oracle_lm.main(argv)

# %%
table = pd.read_csv(OUT / "oracle_lm.csv")
display(pd.read_csv(OUT / "table2.csv"))
display(table[["algorithm", "n", "seed", "kl_star_pi", "kl_pi_pi0", "win_rate_exact", "win_rate_sampled",
               "win_ci_low", "win_ci_high"]])

# %% [markdown]
# ## What the exact evaluation says
#
# The verdicts below are computed, not written by hand. The full run (`results/oracle_lm/`: $K=8$, $L=4$,
# 4 prompts, $n\in\{64,256,1024\}$, 2 seeds, 64 steps) found: PMLE's exact KL to $\pi^*$ falls with $n$
# (slope about $-0.3$ over this short range, not the $-1$ of the exact-argmin toy: gradient training with a
# fixed step budget), and without its KL term PMLE overfits at $n=64$ (KL above $\pi_0$'s); the reward model
# trained by eq. (9) implies $\tilde\pi\propto e^{\hat R/\gamma}$ *worse* than $\pi_0$, so distillation and
# reverse KL, which learn $\tilde\pi$, end near-uniform with win-rates below 1/2 while REBEL and RLHF
# (which sharpen $\pi_0$ by $\hat R/\beta$) win more: the paper's Table 2 ordering does not hold here. A judge's
# 600-sample win-rate agrees with the exact one within its CI (95% of runs).

# %%
for line in summary["verdicts"]:
    print(line)

# %%
if FAST and not os.environ.get("ORACLE_LM_OUT"):
    import shutil

    shutil.rmtree(OUT, ignore_errors=True)  # the FAST run's files were temporary
