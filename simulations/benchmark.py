r"""Performance of the exact estimators, as ratios measured in one run on one machine.

The design (DESIGN.md, "Data flow", "Numerics"): an estimator is a loss table ``(K, X*A*A + X)``
built from :mod:`finitepref.losses`, multiplied by the statistics of all trials chunk by chunk, and
reduced by the fused exact argmin of :mod:`finitepref._argmin`; the table is cached across calls on
the same problem when it fits the budget of :mod:`finitepref._tablecache`. On the default problem
(K = 40,401, 1000 trials, n = 10^6) this script measures, in one run and one thread:

1. the **bare unfused product** ``table @ counts.T`` of the same shape (K x trials output, no
   argmin): the repeated call (table cached) must take <= 0.7 of it, the first call (table built)
   <= 1.0 of it;
2. the **roofline**: the float64 rate of a large square matrix product (the machine's practical
   peak), and the fraction of it the cached call reaches (2 K C trials flops);
3. a **fair naive baseline**: eq. (4) evaluated sample by sample, vectorised over policies and
   samples in torch (:func:`naive_pmle_objective`), per trial, against the exact argmin per trial
   (the honest speed-up; no threshold, as it grows with n);
4. time against |Pi|, n and trials (the figure, with the bare product and the roofline beside it);
5. peak memory (VmHWM) of a fresh process running PMLE at |Pi| ~ 10^6: <= 4 GiB.

Timings are medians of ``repeats`` runs after a warm-up, with ``threads`` torch threads (1 by
default: the machine is shared, and one thread keeps the ratios stable); the bare product, the first
and the cached call are timed in interleaved rounds, so a change of load between them does not bias
their ratios. Run ``python -m simulations.benchmark`` (a few minutes), ``--core-only`` (the two
ratios of item 1 with the peak, about a minute; e.g. ``--core-only --repeats 7``) or ``--quick``
(small sizes, for the tests).
Outputs in ``--out``: ``benchmark.csv`` (one row per timing), ``summary.json``, ``config.json``,
``benchmark.png``/``.pdf`` and ``benchmark.json`` (results, config and versions in one file).
"""

from __future__ import annotations

import json
import math
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
from finitepref import _tablecache
from finitepref.estimators import _pair_and_prompt_stats, _pmle_table
from simulations import _runner, common
from simulations.verdicts import AGREES, DISAGREES, Verdict

NAME = "benchmark"


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Benchmark configuration. Every field is a command-line flag (``--field-name``).

    seed: seed of the data sets
    resolution: net spacing of the default problem (0.01 gives K = 40,401)
    trials: trials per estimator call
    n: sample size of the timed data sets
    naive_n: sample sizes for the naive per-sample baseline
    repeats: timed repetitions (median reported)
    threads: torch threads for every timing
    square: side of the square float64 matrix product that measures the practical peak
    size_resolutions: net spacings of the time-vs-|Pi| sweep
    sweep_n: sample sizes of the time-vs-n sweep
    sweep_trials: trial counts of the time-vs-trials sweep
    memory_resolution: net spacing for the memory check (0.002 gives K = 1,002,001)
    stream_resolutions: net spacings of the streamed 3-d class (0.02: 101^3 ~ 1e6; 0.01: 201^3 ~ 8.1e6); empty skips
    stream_trials: trials of the streamed runs (every estimator, one call each)
    shard_resolution: net spacing of the 1-vs-2-process timing (0.002: K ~ 1e6); 0 skips it
    shard_trials: trials of the 1-vs-2-process timing
    core_only: measure only the two core targets (peak, first / cached call and the bare product on the main
        problem, about a minute); skip the sweeps, the naive baseline, memory, streamed and sharded runs
    """

    resolution: float = 0.01
    trials: int = 1000
    n: int = 1_000_000
    naive_n: tuple[int, ...] = (10_000,)
    repeats: int = 3
    threads: int = 1
    square: int = 2000
    size_resolutions: tuple[float, ...] = (0.04, 0.02, 0.01, 0.005)
    sweep_n: tuple[int, ...] = (10, 1_000, 100_000, 1_000_000)
    sweep_trials: tuple[int, ...] = (100, 300, 1000)
    memory_resolution: float = 0.002
    stream_resolutions: tuple[float, ...] = (0.02, 0.01)
    stream_trials: int = 100
    shard_resolution: float = 0.002
    shard_trials: int = 300
    core_only: bool = False

    NAME = NAME
    ONE_PROCESS = ("it times one process on purpose, and measures the 2-process sharded argmin by starting its own "
                   "processes")
    QUICK = {"resolution": 0.05, "trials": 100, "naive_n": (1_000,), "repeats": 1, "square": 500,
             "size_resolutions": (0.1, 0.05), "sweep_n": (10, 10_000), "sweep_trials": (20, 100),
             "memory_resolution": 0.02, "stream_resolutions": (0.5, 0.25), "stream_trials": 10,
             "shard_resolution": 0.05, "shard_trials": 20}
    """K = 1681, 100 trials, small sweeps; K = 10,201 for memory; streamed 5^3 and 9^3; sharded K = 1681."""
    POSITIVE = ("resolution", "n", "naive_n", "threads", "square", "size_resolutions", "sweep_n", "sweep_trials",
                "memory_resolution", "stream_trials", "shard_trials")


def _median_time(fn, repeats: int, setup=None) -> float:
    if setup is not None:
        setup()
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def naive_pmle_objective(prob: fp.ToyProblem, samples: np.ndarray, chunk: int = 2048) -> torch.Tensor:
    r"""Eq. (4) read directly: :math:`\sum_i -\ln\sigma(\gamma\ln\pi(a_i^+\mid x_i)/\pi(a_i^-\mid x_i))` for every policy.

    ``samples`` is an ``(n, 3)`` int array of ``(x, a+, a-)``. Vectorised over policies and chunks of
    samples (the fair baseline: no Python loop per sample). Cost O(K n).
    """
    flat = prob.log_policies.reshape(prob.n_policies, -1)
    a = prob.n_responses
    win = torch.as_tensor(samples[:, 0] * a + samples[:, 1])
    lose = torch.as_tensor(samples[:, 0] * a + samples[:, 2])
    total = torch.zeros(prob.n_policies, dtype=torch.float64)
    for start in range(0, len(win), chunk):
        sl = slice(start, start + chunk)
        total += fp.losses.pmle_loss(flat.index_select(1, win[sl]), flat.index_select(1, lose[sl]), prob.gamma).sum(1)
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


def _stream_child(resolution: float, trials: int, seed: int) -> None:
    """Every estimator (its first test parameters) and the class constants on a streamed 3-d net, one thread."""
    torch.set_num_threads(1)
    _tablecache.set_budget(0)  # stream every table: the measurement is of the streamed path
    t0 = time.perf_counter()
    prob = fp.ToyProblem.loglinear_grid(dim=3, resolution=resolution, seed=seed, stream=True)
    data = prob.sample(10_000, trials, seed=seed)
    rewards = fp.estimators.fit_reward(prob, data)
    times = {}
    for name, entry in fp.registry.ESTIMATORS.items():
        t1 = time.perf_counter()
        entry.function(prob, data, *([rewards] if entry.needs_reward else []), **entry.test_params[0])
        times[name] = time.perf_counter() - t1
    t1 = time.perf_counter()
    constants = {"R": prob.boundedness(), "C": prob.coverage(), "concentrability": prob.concentrability(),
                 "mean_kl_fwd": float(prob.forward_kl_table().mean()),
                 "mean_kl_rev": float(prob.reverse_kl_table().mean())}
    times["constants_and_kl"] = time.perf_counter() - t1
    print(json.dumps({"n_policies": prob.n_policies, "trials": trials, "time_s": time.perf_counter() - t0,
                      "estimator_s": times, "peak_rss_gib": _peak_rss_gib(), **constants}))


def measure_streamed(cfg: Config) -> list[dict]:
    """Peak memory (VmHWM) and time of all estimators on streamed nets, each in a fresh process."""
    out = []
    for res in cfg.stream_resolutions:
        print(f"benchmark: streamed 3-d net, resolution {res} (fresh process) ...", flush=True)
        child = subprocess.run(
            [sys.executable, "-c", "from simulations.benchmark import _stream_child as m; "
             f"m({res!r}, {cfg.stream_trials}, {cfg.seed})"], capture_output=True, text=True, check=True)
        out.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return out


def _shard_worker(rank: int, world: int, store: str, resolution: float, trials: int, seed: int, repeats: int) -> None:
    import torch.distributed as dist

    from finitepref import distributed

    torch.set_num_threads(1)
    _tablecache.set_budget(0)  # every call builds its rows: the sharded work is the table and the product
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    prob = fp.ToyProblem.loglinear_grid(resolution=resolution, seed=seed)
    data = prob.sample(10_000, trials, seed=seed)
    with distributed.sharded("world"):
        fp.estimators.pmle(prob, data)  # warm-up
        times, shares = [], []
        for _ in range(repeats):
            dist.barrier()
            before = distributed.TIMING["reduce_s"]
            t0 = time.perf_counter()
            fp.estimators.pmle(prob, data)
            times.append(time.perf_counter() - t0)
            shares.append((distributed.TIMING["reduce_s"] - before) / times[-1])
    if rank == 0:
        print(json.dumps({"world": world, "n_policies": prob.n_policies, "trials": trials,
                          "time_s": float(np.median(times)), "reduction_share": float(np.median(shares)),
                          "bytes_per_trial": distributed.bytes_per_trial()}), flush=True)
    dist.destroy_process_group()


def _shard_main(world: int, resolution: float, trials: int, seed: int, repeats: int) -> None:
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_shard_worker, args=(world, f"{tmp}/store", resolution, trials, seed, repeats), nprocs=world)


def measure_sharding(cfg: Config) -> list[dict]:
    """One PMLE call at |Pi| ~ 1e6 with 1 and 2 gloo processes of one thread each (fresh processes)."""
    out = []
    for world in (1, 2):
        print(f"benchmark: sharded argmin, {world} process(es) ...", flush=True)
        child = subprocess.run(
            [sys.executable, "-c", "from simulations.benchmark import _shard_main as m; "
             f"m({world}, {cfg.shard_resolution!r}, {cfg.shard_trials}, {cfg.seed}, {cfg.repeats})"],
            capture_output=True, text=True, check=True)
        out.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return out


def peak_flops(cfg: Config) -> float:
    """Practical float64 peak: flops per second of a square ``(s, s) @ (s, s)`` product."""
    a = torch.randn(cfg.square, cfg.square, dtype=torch.float64)
    t = _median_time(lambda: a @ a, cfg.repeats)
    return 2.0 * cfg.square ** 3 / t


def _interleaved_medians(timed: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each ``name: (fn, setup or None)`` over ``repeats`` rounds of one call each, in the
    given order, after one untimed round: a drift of the machine's load hits every contender alike, so their
    ratios hold under load."""
    for fn, setup in timed.values():
        if setup is not None:
            setup()
        fn()
    times: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(repeats):
        for name, (fn, setup) in timed.items():
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def time_call(prob: fp.ToyProblem, trials: int, n: int, cfg: Config, rng) -> dict:
    """First call (table built), repeated call (table cached) and the bare product of the same shape, timed in
    interleaved rounds (bare, first, cached: the first call of a round leaves the table its cached call reads)."""
    data = prob.sample(n, trials, seed=rng)
    stats = _pair_and_prompt_stats(data, prob.device)
    table = _pmle_table(prob.log_policies, prob.gamma, 0.0, None).reshape(prob.n_policies, -1).contiguous()
    t = _interleaved_medians({"bare": (lambda: table @ stats.T, None),
                              "first": (lambda: fp.estimators.pmle(prob, data), _tablecache.clear),
                              "cached": (lambda: fp.estimators.pmle(prob, data), None)}, cfg.repeats)
    flops = 2.0 * prob.n_policies * stats.shape[1] * trials
    return {"n_policies": prob.n_policies, "n": n, "trials": trials, "columns": stats.shape[1],
            "time_bare_s": t["bare"], "time_first_s": t["first"], "time_cached_s": t["cached"], "flops": flops}


def time_naive(prob: fp.ToyProblem, cfg: Config, rng, per_trial: float) -> dict:
    """The fair naive evaluation of eq. (4), one trial, against the exact argmin per trial (cached)."""
    out = {}
    for n in cfg.naive_n:
        data = prob.sample(int(n), 1, seed=rng)
        samples = np.asarray(data.samples(0))
        t_naive = _median_time(lambda s=samples: naive_pmle_objective(prob, s), 1)
        naive_idx = int(torch.argmin(naive_pmle_objective(prob, samples)))
        exact_idx = int(fp.estimators.pmle(prob, data)[0])
        out[str(n)] = {"time_naive_per_trial_s": t_naive, "time_exact_per_trial_s": per_trial,
                       "speedup": t_naive / per_trial, "same_argmin": naive_idx == exact_idx}
    return out


def measure_memory(cfg: Config) -> dict:
    """Peak resident set size at |Pi| ~ 1e6, in a fresh process."""
    child = subprocess.run(
        [sys.executable, "-c", "from simulations.benchmark import _memory_child as m; "
         f"m({cfg.memory_resolution!r}, {min(cfg.trials, 100)}, {cfg.seed})"],
        capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def sweeps(prob: fp.ToyProblem, cfg: Config, rng) -> list[dict]:
    """Time against |Pi|, n and trials (each row one setting; the main setting is the first row)."""
    rows = [{"sweep": "main", **time_call(prob, cfg.trials, cfg.n, cfg, rng)}]
    for res in cfg.size_resolutions:
        print(f"benchmark: |Pi| sweep, resolution {res} ...", flush=True)
        other = fp.ToyProblem.loglinear_grid(resolution=res, seed=cfg.seed)
        rows.append({"sweep": "n_policies", **time_call(other, cfg.trials, cfg.n, cfg, rng)})
        _tablecache.clear()
    for n in cfg.sweep_n:
        print(f"benchmark: n sweep, n = {n} ...", flush=True)
        rows.append({"sweep": "n", **time_call(prob, cfg.trials, int(n), cfg, rng)})
    for trials in cfg.sweep_trials:
        print(f"benchmark: trials sweep, {trials} trials ...", flush=True)
        rows.append({"sweep": "trials", **time_call(prob, int(trials), cfg.n, cfg, rng)})
    return rows


def scale_out_projection(one: dict, two: dict, ranks=(1, 2, 8, 64, 512)) -> list[dict]:
    """Strong and weak scaling for K ranks, from the measured per-rank rate and the reduction.

    The per-rank work is rows x trials at the rate of the 1-process run; the reduction of a call moves
    ``bytes_per_trial`` x trials per rank in ceil(log2 K) rounds (a tree all-reduce), each costing the
    2-process run's measured reduction time. Strong scaling (|Pi| fixed): t1 / K + rounds x reduction;
    weak scaling (|Pi| = K x the measured one): t1 + rounds x reduction. Network bandwidth and stragglers
    are left out: a projection, not a measurement.
    """
    t1 = one["time_s"]
    reduce_s = two["reduction_share"] * two["time_s"]
    out = []
    for k in ranks:
        rounds = math.ceil(math.log2(k)) if k > 1 else 0
        out.append({"ranks": k, "strong_time_s": t1 / k + rounds * reduce_s, "weak_time_s": t1 + rounds * reduce_s,
                    "reduction_bytes_per_call_per_rank": two["bytes_per_trial"] * two["trials"],
                    "policy_trials_per_s_per_rank": one["n_policies"] * one["trials"] / t1})
    return out


def summarize(rows: list[dict], peak: float, naive: dict, memory: dict | None, cfg: Config, scale: dict) -> dict:
    main = rows[0]
    n_rows = [r for r in rows if r["sweep"] == "n"]
    results = {
        "n_policies": main["n_policies"], "trials": cfg.trials, "threads": torch.get_num_threads(),
        "peak_flops": peak, "cached_over_bare": main["time_cached_s"] / main["time_bare_s"],
        "first_over_bare": main["time_first_s"] / main["time_bare_s"],
        "cached_flops": main["flops"] / main["time_cached_s"], "bare_flops": main["flops"] / main["time_bare_s"],
        "naive": naive, "memory": memory, "table_cache": _tablecache.info(), **scale,
    }
    results["cached_fraction_of_peak"] = results["cached_flops"] / peak
    if len(n_rows) >= 2:
        results["cost_ratio_largest_over_smallest_n"] = n_rows[-1]["time_cached_s"] / n_rows[0]["time_cached_s"]
    streamed, shards = scale["streamed"], scale["sharding"]
    if len(streamed) >= 2:
        results["streamed_time_ratio"] = streamed[-1]["time_s"] / streamed[0]["time_s"]
        results["streamed_size_ratio"] = streamed[-1]["n_policies"] / streamed[0]["n_policies"]
    if len(shards) == 2:
        results["two_over_one_process"] = shards[1]["time_s"] / shards[0]["time_s"]
        results["scale_out_projection"] = scale_out_projection(*shards)
    results["checks"] = {
        "cached_<=_0.7x_bare": results["cached_over_bare"] <= 0.7,
        "first_<=_1.0x_bare": results["first_over_bare"] <= 1.0,
    }
    if naive:
        results["checks"]["naive_same_argmin"] = all(v["same_argmin"] for v in naive.values())
    if memory is not None:
        results["checks"]["peak_memory_<=_4GiB"] = memory["peak_rss_gib"] <= 4.0
    if streamed:
        results["checks"]["streamed_peak_memory_<=_6GiB"] = max(r["peak_rss_gib"] for r in streamed) <= 6.0
    if "streamed_time_ratio" in results:
        results["checks"]["streamed_time_linear"] = (results["streamed_time_ratio"]
                                                     <= 1.5 * results["streamed_size_ratio"])
    if "two_over_one_process" in results:
        results["checks"]["two_processes_<=_0.75x_one"] = results["two_over_one_process"] <= 0.75
    return results


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """The measured ratios as verdict lines (one per claim)."""
    r = outcome.summary
    out = [f"K = {r['n_policies']}, trials = {cfg.trials}, n = {cfg.n}, torch threads = {r['threads']}; "
           f"practical float64 peak {r['peak_flops'] / 1e9:.3g} GFLOP/s"]

    def judged(claim, value, ref, ok, note=""):
        return Verdict(claim, value, None, None, ref, AGREES if ok else DISAGREES, note)

    out.append(judged("repeated call (table cached) / bare product", r["cached_over_bare"], "<= 0.7",
                      r["cached_over_bare"] <= 0.7, f"{r['cached_fraction_of_peak']:.0%} of peak"))
    out.append(judged("first call (table built) / bare product", r["first_over_bare"], "<= 1.0",
                      r["first_over_bare"] <= 1.0))
    for n, v in r["naive"].items():
        out.append(judged(f"fair naive eq. (4) per trial at n={n} / exact per trial", v["speedup"], "speed-up",
                          v["same_argmin"], "same argmin" if v["same_argmin"] else "ARGMIN DIFFERS"))
    mem = r["memory"]
    if mem is not None:
        out.append(judged(f"peak RSS (GiB) at |Pi| = {mem['n_policies']}", mem["peak_rss_gib"], "<= 4",
                          mem["peak_rss_gib"] <= 4.0))
    return out + _scale_verdicts(r, judged)


def _scale_verdicts(r: dict, judged) -> list[Verdict]:
    out = []
    for s in r["streamed"]:
        out.append(judged(f"streamed 3-d net, |Pi| = {s['n_policies']}, {s['trials']} trials, all estimators: "
                          "peak RSS (GiB)", s["peak_rss_gib"], "<= 6", s["peak_rss_gib"] <= 6.0,
                          f"{s['time_s']:.3g} s"))
    if "streamed_time_ratio" in r:
        ratio, size = r["streamed_time_ratio"], r["streamed_size_ratio"]
        out.append(judged(f"streamed time ratio for a {size:.3g}x larger class", ratio, f"<= {1.5 * size:.3g}",
                          ratio <= 1.5 * size, "linear in |Pi|"))
    if "two_over_one_process" in r:
        one, two = r["sharding"]
        out.append(judged(f"2 processes / 1 process, |Pi| = {one['n_policies']}, {one['trials']} trials",
                          r["two_over_one_process"], "<= 0.75", r["two_over_one_process"] <= 0.75,
                          f"reduction share {two['reduction_share']:.1%}, {two['bytes_per_trial']} B/trial/rank"))
    return out


def plot(outcome: _runner.Outcome, cfg: Config):
    """Time against |Pi|, n and trials: first call, cached call, bare product and roofline (2 K C trials / peak)."""
    import matplotlib.pyplot as plt

    table, peak = outcome.table, outcome.summary["peak_flops"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (sweep, x, xlabel) in zip(axes, [("n_policies", "n_policies", "|Pi|"), ("n", "n", "n"),
                                             ("trials", "trials", "trials")], strict=True):
        t = table[table.sweep == sweep].sort_values(x)
        ax.loglog(t[x], t.time_first_s, "o-", label="first call (table built)")
        ax.loglog(t[x], t.time_cached_s, "s-", label="repeated call (table cached)")
        ax.loglog(t[x], t.time_bare_s, "^--", label="bare product table @ counts.T")
        ax.loglog(t[x], t.flops / peak, "k:", label="roofline 2KCT / peak")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"exact PMLE argmin, {outcome.summary['threads']} thread(s); peak {peak / 1e9:.3g} GFLOP/s")
    fig.tight_layout()
    return fig


def run(cfg: Config) -> _runner.Outcome:
    """Measure everything in one process; ``benchmark.json`` keeps results, config and versions together."""
    torch.set_num_threads(cfg.threads)
    prob = fp.ToyProblem.loglinear_grid(resolution=cfg.resolution, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    print(f"benchmark: practical float64 peak ({cfg.square}^2 matmul) ...", flush=True)
    peak = peak_flops(cfg)
    print(f"benchmark: K = {prob.n_policies}, first / cached call and the bare product ...", flush=True)
    if cfg.core_only:
        rows = [{"sweep": "main", **time_call(prob, cfg.trials, cfg.n, cfg, rng)}]
        naive, memory, scale = {}, None, {"streamed": [], "sharding": []}
    else:
        rows = sweeps(prob, cfg, rng)
        print("benchmark: the fair naive per-sample baseline ...", flush=True)
        naive = time_naive(prob, cfg, rng, rows[0]["time_cached_s"] / cfg.trials)
        print("benchmark: peak memory in a fresh process ...", flush=True)
        memory = measure_memory(cfg)
        scale = {"streamed": measure_streamed(cfg),
                 "sharding": measure_sharding(cfg) if cfg.shard_resolution > 0 else []}
    results = summarize(rows, peak, naive, memory, cfg, scale)
    saved = {"results": results, "config": cfg, "versions": common.versions()}
    return _runner.Outcome(pd.DataFrame(rows), results,
                           files={"benchmark.json": json.dumps(common.to_jsonable(saved), indent=2) + "\n"})


main = _runner.entry(Config, __doc__, run=run, plot=plot, verdicts=verdicts)


if __name__ == "__main__":
    main()
