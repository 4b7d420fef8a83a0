"""``python -m finitepref.llm.bench --quick`` runs without TRL and writes its CSV and summary (no timing asserted)."""

import csv
import json

import pytest

from finitepref.llm import bench


@pytest.mark.slow
def test_quick_bench_without_trl(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "trl_available", lambda: False)
    assert bench.main(["--quick", "--out", str(tmp_path), "--algorithms", "dpo"]) == 0
    out = capsys.readouterr().out
    assert "TRL was skipped" in out and "wrote" in out
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    assert {r["contender"] for r in rows} == {"bare", "finitepref:dpo"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["trl"] is False and set(summary["ratios"]["finitepref:dpo"]) == {"vs_bare"}
    for online in summary["online"]:
        shares = online["generation_share"] + online["scoring_share"] + online["update_share"]
        assert abs(shares - 1) < 1e-9
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    assert {"torch", "transformers", "finitepref", "python"} <= set(summary["versions"]) and "git_commit" in summary


@pytest.mark.parametrize("flag", [["--reps", "0"], ["--steps", "-2"], ["--steps", "x"]])
def test_bad_counts_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(flag)
    assert exit_.value.code == 2 and "must be a whole number >= 1" in capsys.readouterr().err
