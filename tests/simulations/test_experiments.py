"""Smoke and substance tests of the experiment scripts: each runs with ``--quick`` into a temporary folder.

Every script must write its CSV (documented columns, no NaN where required), ``summary.json`` and
``config.json`` (seed and versions), and its figure; one or two assertions per script check a
substantive finding that could fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulations import asymptotics, bound_check

pytestmark = pytest.mark.slow


def _run(quick_run, name: str, required: list[str]) -> tuple[dict, pd.DataFrame, Path]:
    summary, out = quick_run(name)
    for f in (f"{name}.csv", "summary.json", "config.json", f"{name}.png", f"{name}.pdf"):
        assert (out / f).is_file(), f
    table = pd.read_csv(out / f"{name}.csv")
    missing = set(required) - set(table.columns)
    assert not missing, missing
    assert not table[required].isna().any().any(), table[required].isna().sum()
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0
    assert {"numpy", "torch", "finitepref"} <= set(config["versions"])
    assert json.loads((out / "summary.json").read_text())
    return summary, table, out


def test_bound_check(quick_run):
    required = ["problem", "statement", "estimator", "n", "trials", "delta", "mean_error", "quantile", "bound",
                "bound_corrected", "failures", "failure_freq", "cp_upper", "failures_corrected", "cp_upper_corrected",
                "slack", "slack_corrected"]
    summary, table, _ = _run(quick_run, "bound_check", required)
    assert set(table.statement) == set(bound_check.STATEMENTS)
    # Proposition 12 carries no exponential constant: it must hold, with a finite and moderate slack
    p12 = table[table.statement == "prop12"]
    assert (p12["quantile"] <= p12.bound).all()
    assert (p12.cp_upper <= p12.delta).all()
    assert (p12.slack > 1).all() and (p12.slack < 1e3).all()
    # the corrected constants are never smaller than the paper's
    assert (table.bound_corrected >= table.bound * (1 - 1e-12)).all()


def test_scaling(quick_run):
    required = ["sweep", "value", "gamma", "C_pi", "n_policies", "n", "trials", "mean_kl", "ci_low", "ci_high",
                "n_kl", "asymptotic_constant", "bound_shape"]
    summary, table, _ = _run(quick_run, "scaling", required)
    g = summary["sweeps"]["gamma"]["fitted_exponent"]
    # n E[KL] falls steeply with gamma (gamma^-2 for small gamma): the exponent is clearly negative, near -2
    assert -2.5 < g["exponent"] < -1.3
    # the coverage sweep really varies C_Pi
    c = summary["sweeps"]["coverage"]["C_pi"]
    assert max(c) > 1.5 * min(c)


def test_finite_vs_net(quick_run):
    required = ["regime", "n", "trials", "mean_kl", "p_correct", "n_wrong", "p_wrong_ci_low", "p_wrong_ci_high",
                "n_kl"]
    summary, table, _ = _run(quick_run, "finite_vs_net", required)
    fin = table[table.regime == "finite_gap"]
    # the gapped class is recovered exactly at the largest n: P(correct) = 1 and E[KL] = 0
    assert fin.p_correct.iloc[-1] == 1.0 and fin.mean_kl.iloc[-1] == 0.0
    # the union Chernoff bound holds and the net is still in the 1/n regime (never exact)
    assert summary["finite_gap"]["union_bound_holds"]
    net = table[table.regime == "net"]
    assert (net.mean_kl > 0).all()
    s = summary["net"]["slope"]["slope"]
    assert s is not None and -1.3 < s < -0.7


def test_coverage_gap(quick_run):
    required = ["estimator", "divergence", "n", "trials", "mean_kl", "ci_low", "ci_high", "n_kl", "p_correct"]
    summary, table, _ = _run(quick_run, "coverage_gap", required)
    d = summary["problem"]
    assert d["C_pi"] > 5 * d["C_r"]  # the instance has the intended coverage gap
    fwd = table[table.divergence == "forward"].pivot(index="n", columns="estimator", values="mean_kl")
    # reverse KL is never worse than PMLE on average and strictly better at some n
    assert (fwd.reverse_kl <= fwd.pmle + 1e-12).all()
    assert (fwd.reverse_kl < 0.5 * fwd.pmle).any()


def test_degeneracy(quick_run):
    required = ["sweep", "estimator", "n", "beta", "trials", "mean_entropy", "ci_low", "ci_high", "mean_max_prob",
                "entropy_star"]
    summary, table, out = _run(quick_run, "degeneracy", required)
    e = summary["entropy_at_smallest_beta"]
    assert e["rlhf"] < e["pmle_kl"] and e["dpo"] < e["pmle_kl"]
    assert abs(e["reverse_kl"] - summary["entropy_star"]) < 0.2
    ps = pd.read_csv(out / "prior_smoothing.csv")
    assert np.allclose(ps[["p0", "rlhf", "reverse_kl", "smoothed_p0"]].sum(), 1.0)
    for check in summary["prior_smoothing"]["verification"].values():
        assert check["max_abs_diff_scipy"] < 1e-5 and check["closed_le_scipy"]


def test_asymptotics(quick_run):
    required = ["gamma", "estimator", "n", "trials", "spread", "n_kl", "ci_low", "ci_high", "asymptotic_constant",
                "same_as_pmle"]
    summary, table, _ = _run(quick_run, "asymptotics", required)
    for entry in summary["per_gamma"].values():
        assert 0.8 < entry["pmle"]["ratio"] < 1.2
        # with reward stride 1, distillation and reverse KL pick PMLE's policy
        assert entry["distill"]["same_as_pmle"] == 1.0 and entry["reverse_kl"]["same_as_pmle"] == 1.0


def test_same_seed_same_csv(tmp_path):
    for sub in ("a", "b"):
        asymptotics.main(["--quick", "--out", str(tmp_path / sub), "--gammas", "1.0", "--spread-over-h", "5",
                          "--trials", "50", "--bootstrap", "50"])
    a = (tmp_path / "a" / "asymptotics.csv").read_text()
    assert a == (tmp_path / "b" / "asymptotics.csv").read_text()


def test_coverage_single(quick_run):
    required = ["path", "point", "a", "b", "C_pi", "C_single", "estimator", "n", "trials", "mean_kl", "ci_low",
                "ci_high"]
    summary, table, out = _run(quick_run, "coverage_single", required)
    assert (out / "mu_grid.csv").is_file() and (out / "verdicts.csv").is_file()
    assert set(table.estimator) == {"pmle", "distill", "reverse_kl", "chipo", "online_pmle"}
    for path in summary["paths"].values():
        held = path["held_range"]
        assert held[1] / held[0] <= 1.08**2 + 1e-9  # the held coefficient stays within its band (of one value)
        assert path["varies_range"][1] / path["varies_range"][0] > 1.5  # and the other moves
    # the paper's C_Pi drives PMLE's error: along the C_Pi path its slope CI lies above 0
    assert summary["paths"]["pi_varies"]["slopes"]["pmle"]["ci_low"] > 0
    assert summary["sentence"].startswith("At n = ")


def test_every_script_writes_verdicts(quick_run):
    from simulations.verdicts import OUTCOMES, from_frame

    for script in ("kl_vs_n", "coverage_single"):
        _, out = quick_run(script)
        table = pd.read_csv(out / "verdicts.csv")
        assert len(table) and set(table.outcome) <= set(OUTCOMES)
        assert from_frame(table)
        config = json.loads((out / "config.json").read_text())
        assert config["config_hash"] and "git_commit" in config
