"""``simulations.log_class_size``: its quick run's findings, byte-identical reruns, and its command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from simulations import log_class_size as lcs

REQUIRED = ["estimator", "divergence", "n", "d", "n_policies", "log_class", "scale", "eps", "trials", "n_kl", "ci_low",
            "ci_high", "p_correct", "same_as_pmle", "lower_bound", "lower_bound_bh", "bound", "bound_corrected", "R",
            "C_pi"]
TINY = ["--d-min", "3", "--d-max", "4", "--ns", "300", "--scales", "0.85", "--trials", "12", "--bootstrap", "20"]


@pytest.mark.slow
def test_quick_run_findings(quick_run):
    summary, out = quick_run("log_class_size")
    for name in ("log_class_size.csv", "summary.json", "config.json", "verdicts.csv", "log_class_size.png",
                 "log_class_size.pdf"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "log_class_size.csv")
    assert not table[REQUIRED].isna().any().any()
    assert (table.C_pi.round(12) == 1.0).all() and np.allclose(table.R, np.arctanh(2 * table.eps), rtol=1e-12)
    assert (table.n_kl <= table.bound).all() and (table.lower_bound_bh <= table.lower_bound).all()
    for name, per_n in summary["estimators"].items():
        for n in map(str, lcs.Config.QUICK["ns"]):
            s = per_n[n]
            assert s["slope"]["ci_low"] > 0, (name, n)  # grows with ln|Pi|
            assert s["min_ci_high_over_lower"] >= 1.0, (name, n)  # the lower bound is below the measurement
            assert 0.7 < s["ratio_to_lower"]["slope"] < 1.5, (name, n)
            assert s["same_as_pmle"] == 1.0  # P_gamma(R) = Pi: distillation and reverse KL return PMLE's policy
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert (verdicts.outcome == "AGREES").all(), verdicts[verdicts.outcome != "AGREES"].claim.tolist()
    assert json.loads((out / "config.json").read_text())["config"]["d_max"] == 10


def test_same_seed_same_bytes(tmp_path, capsys):
    lcs.main([*TINY, "--out", str(tmp_path / "a")])
    lcs.main([*TINY, "--out", str(tmp_path / "b")])
    lcs.main([*TINY, "--seed", "1", "--out", str(tmp_path / "c")])
    first, second = ((tmp_path / x / "log_class_size.csv").read_bytes() for x in "ab")
    assert first == second
    assert first != (tmp_path / "c" / "log_class_size.csv").read_bytes()
    assert "verdict: is ln|Pi| needed?" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--scales", "20"], "scales: epsilon = scale * sqrt(d / n) / gamma must stay below 1/2"),
    (["--d-min", "5", "--d-max", "4"], "d_min, d_max"),
    (["--d-max", "70"], "d_min, d_max"),
    (["--d-min", "4", "--d-max", "4"], "need at least two values of d"),
    (["--estimators", "dpo"], "estimators: unknown ['dpo']"),
    (["--factor", "0.5"], "factor >= 1"),
    (["--ns", "0"], "ns: must be > 0"),
    (["--device", "nowhere"], "device"),
])
def test_bad_settings_end_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        lcs.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_epsilon_grid_and_the_asymptotic_constant():
    cfg = lcs.Config()
    assert lcs.dims(cfg) == list(range(4, 21))
    assert lcs.epsilon(cfg, 10_000, 16, 0.5) == pytest.approx(0.02)
    assert lcs.asymptotic_lower_slope(1.0) == pytest.approx(0.663 / np.log(2), rel=2e-3)
    assert lcs.asymptotic_lower_slope(0.5) == pytest.approx(4 * lcs.asymptotic_lower_slope(1.0), rel=1e-9)
