r"""Performance of the exact estimators, as ratios measured in one run on one machine.

The design (DESIGN.md, "Data flow"): an estimator is a loss table ``(K, X*A*A + X)`` built once from
:mod:`finitepref.losses`, one matrix product with the counts of all trials, and an argmin. This
script checks the four claims of that design on the default problem (K = 40,401):

1. against a naive evaluation of eq. (4) sample by sample (every sample's loss for every policy,
   vectorised over policies and samples in torch, summed), per trial, at n = 10^4 and 10^5: the
   ratio must be >= 1000;
2. against a bare float64 matrix product of the same shape ``(K, C) @ (C, trials)`` (the roofline of
   this design): within 2x;
3. cost free of n: time at n = 10^6 over time at n = 10 must be <= 1.2;
4. peak memory at |Pi| = 10^6 (chunked over the class), measured as the peak resident set size of a
   fresh subprocess that builds the problem and runs :func:`finitepref.estimators.pmle`: <= 4 GiB.

Timings are medians of ``repeats`` runs after a warm-up. Run ``python -m simulations.benchmark``
(about 2 minutes) or ``--quick`` (smaller n for the naive baseline and K = 250,000 for memory).
Outputs in ``--out``: ``benchmark.csv`` (one row per timing), ``summary.json``, ``config.json`` and
``benchmark.json`` (results, config and versions in one file, as before).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import finitepref as fp
from simulations import _runner, common
from simulations.verdicts import AGREES, DISAGREES, Verdict  # noqa: E402

NAME = "benchmark"


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Benchmark configuration. Every field is a command-line flag (``--field-name``).

    seed: seed of the data sets
    resolution: net spacing of the default problem (0.01 gives K = 40,401)
    trials: trials per estimator call
    naive_n: sample sizes for the naive per-sample baseline
    repeats: timed repetitions (median reported)
    memory_resolution: net spacing for the memory check (0.002 gives K = 1,002,001)
    """

    resolution: float = 0.01
    trials: int = 1000
    naive_n: tuple[int, ...] = (10_000, 100_000)
    repeats: int = 3
    memory_resolution: float = 0.002

    NAME = NAME
    QUICK = {"naive_n": (1_000, 10_000), "repeats": 2, "memory_resolution": 0.004}
    """Smaller n for the naive baseline, K = 250,000 for memory."""
    POSITIVE = ("resolution", "naive_n", "memory_resolution")


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def naive_pmle_objective(prob: fp.ToyProblem, samples: np.ndarray, chunk: int = 256) -> torch.Tensor:
    r"""Eq. (4) read directly: :math:`\sum_i -\ln\sigma(\gamma\ln\pi(a_i^+\mid x_i)/\pi(a_i^-\mid x_i))` for every policy.

    ``samples`` is an ``(n, 3)`` int array of ``(x, a+, a-)``. Cost O(K n).
    """
    flat = prob.log_policies.reshape(prob.n_policies, -1)
    a = prob.n_responses
    win = torch.as_tensor(samples[:, 0] * a + samples[:, 1])
    lose = torch.as_tensor(samples[:, 0] * a + samples[:, 2])
    total = torch.zeros(prob.n_policies, dtype=torch.float64)
    for start in range(0, len(win), chunk):
        sl = slice(start, start + chunk)
        lp_w = flat.index_select(1, win[sl])
        lp_l = flat.index_select(1, lose[sl])
        total += fp.losses.pmle_loss(lp_w, lp_l, prob.gamma).sum(1)
    return total


def _peak_rss_gib() -> float:
    """Peak resident set size of this process image (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _memory_child(resolution: float, trials: int, seed: int) -> None:
    prob = fp.ToyProblem.loglinear_grid(resolution=resolution, seed=seed)
    data = prob.sample(10_000, trials, seed=seed)
    idx = fp.estimators.pmle(prob, data)
    print(json.dumps({"n_policies": prob.n_policies, "peak_rss_gib": _peak_rss_gib(),
                      "mean_kl": float(prob.forward_kl(idx).mean())}))


def time_exact(prob: fp.ToyProblem, cfg: Config, rng: np.random.Generator) -> dict:
    """Claims 3 and 2: the exact argmin at n = 10 and n = 10^6, and a bare matmul of the same shape."""
    data_small = prob.sample(10, cfg.trials, seed=rng)
    data_large = prob.sample(1_000_000, cfg.trials, seed=rng)
    t_small = _median_time(lambda: fp.estimators.pmle(prob, data_small), cfg.repeats)
    t_large = _median_time(lambda: fp.estimators.pmle(prob, data_large), cfg.repeats)
    n_cols = data_large.flat.shape[1] + data_large.n_prompts
    a = torch.randn(prob.n_policies, n_cols, dtype=torch.float64)
    b = torch.randn(n_cols, cfg.trials, dtype=torch.float64)
    t_mm = _median_time(lambda: a @ b, cfg.repeats)
    return {"time_pmle_n10_s": t_small, "time_pmle_n1e6_s": t_large, "ratio_n1e6_over_n10": t_large / t_small,
            "time_matmul_s": t_mm, "ratio_pmle_over_matmul": t_large / t_mm}


def time_naive(prob: fp.ToyProblem, cfg: Config, rng: np.random.Generator, per_trial: float) -> dict:
    """Claim 1: the naive per-sample evaluation of eq. (4), one trial, against the exact argmin per trial."""
    out = {}
    for n in cfg.naive_n:
        data = prob.sample(int(n), 1, seed=rng)
        samples = np.asarray(data.samples(0))
        t0 = time.perf_counter()
        naive = naive_pmle_objective(prob, samples)
        t_naive = time.perf_counter() - t0
        naive_idx = int(torch.argmin(naive))
        exact_idx = int(fp.estimators.pmle(prob, data)[0])
        out[str(n)] = {"time_naive_per_trial_s": t_naive, "time_pmle_per_trial_s": per_trial,
                       "speedup": t_naive / per_trial, "same_argmin": naive_idx == exact_idx}
    return out


def measure_memory(cfg: Config) -> dict:
    """Claim 4: peak resident set size at |Pi| ~ 1e6, in a fresh process."""
    child = subprocess.run(
        [sys.executable, "-c", "from simulations.benchmark import _memory_child as m; "
         f"m({cfg.memory_resolution!r}, {cfg.trials}, {cfg.seed})"],
        capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """The measured ratios as context, then one verdict per claim (AGREES when the check passes)."""
    results = outcome.summary
    lines: list = [f"K = {results['n_policies']}, trials = {cfg.trials}, torch threads = {results['threads']}"]
    for n, v in results["naive"].items():
        lines.append(f"  naive eq. (4) per trial at n={n}: {v['time_naive_per_trial_s']:.3g} s; exact-argmin per trial: "
                     f"{v['time_pmle_per_trial_s']:.3g} s; speedup {v['speedup']:.0f}x; same argmin: {v['same_argmin']}")
    mem = results["memory"]
    lines.append(f"  pmle {results['time_pmle_n1e6_s']:.3f} s vs bare matmul {results['time_matmul_s']:.3f} s; "
                 f"n=1e6 vs n=10 ratio {results['ratio_n1e6_over_n10']:.3f}; peak RSS at |Pi| = {mem['n_policies']}: "
                 f"{mem['peak_rss_gib']:.2f} GiB")
    lines += [Verdict(f"benchmark: {name}", None, None, None, "pass", AGREES if ok else DISAGREES, "timing check")
              for name, ok in results["checks"].items()]
    return lines


def run(cfg: Config) -> _runner.Outcome:
    """Measure the four claims; ``benchmark.json`` keeps its former layout."""
    prob = fp.ToyProblem.loglinear_grid(resolution=cfg.resolution, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    results: dict = {"n_policies": prob.n_policies, "trials": cfg.trials, "threads": torch.get_num_threads()}
    print(f"benchmark: K = {prob.n_policies}, timing the exact argmin and a bare matmul ...", flush=True)
    results.update(time_exact(prob, cfg, rng))
    print("benchmark: the naive per-sample baseline ...", flush=True)
    results["naive"] = time_naive(prob, cfg, rng, results["time_pmle_n1e6_s"] / cfg.trials)
    print("benchmark: peak memory in a fresh process ...", flush=True)
    results["memory"] = measure_memory(cfg)
    results["checks"] = {
        "naive_speedup_>=_1000": all(v["speedup"] >= 1000 for v in results["naive"].values()),
        "within_2x_of_matmul": results["ratio_pmle_over_matmul"] <= 2.0,
        "cost_free_of_n_(<=1.2)": results["ratio_n1e6_over_n10"] <= 1.2,
        "peak_memory_<=_4GiB": results["memory"]["peak_rss_gib"] <= 4.0,
    }
    saved = {"results": results, "config": cfg, "versions": common.versions()}
    rows = [{"quantity": k, "value": v} for k, v in results.items() if isinstance(v, float)]
    rows += [{"quantity": f"naive_{n}_{k}", "value": float(v)} for n, d in results["naive"].items() for k, v in d.items()]
    rows.append({"quantity": "peak_rss_gib", "value": results["memory"]["peak_rss_gib"]})
    return _runner.Outcome(pd.DataFrame(rows), results,
                           files={"benchmark.json": json.dumps(common.to_jsonable(saved), indent=2) + "\n"})


main = _runner.entry(Config, __doc__, run=run, plot=None, verdicts=verdicts)


if __name__ == "__main__":
    main()
