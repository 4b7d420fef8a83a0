"""``python -m simulations.report --quick``: every claim row has a verdict, figures are embedded, matching
results are reused (the session's ``--quick`` runs), and a changed config forces a rerun."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from simulations import report
from simulations.verdicts import DISAGREES, OUTCOMES

pytestmark = pytest.mark.slow


def test_appendix_b_statements_are_parsed():
    rows = report.appendix_b()
    claims = {v.claim: v for v in rows}
    assert len(rows) >= 20
    assert claims["Appendix B: Lemma 8 (½)"].outcome == DISAGREES
    assert claims["Appendix B: Lemma 8 corrected (¼)"].outcome == "AGREES"
    assert all(v.outcome in OUTCOMES for v in rows)


@pytest.fixture(scope="module")
def built(quick_run, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    for script in report.SCRIPTS:
        _, out = quick_run(script)
        (results / f"{script}_quick").symlink_to(out, target_is_directory=True)
    out = results.parent / "report"
    summary = report.main(["--quick", "--results-dir", str(results), "--out", str(out)])
    return summary, out, results


def test_quick_report_has_a_verdict_for_every_claim(built):
    summary, out, _ = built
    for name in ("index.html", "REPORT.md", "report.csv", "verdicts.csv", "config.json"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "report.csv")
    assert table.outcome.isin(OUTCOMES).all() and table.claim.notna().all()
    assert set(table.source) >= {"bounds/FINDINGS.md", "simulations.oracle_lm",
                                 *(f"simulations.{s}" for s in report.SCRIPTS)}
    oracle = table[table.source == "simulations.oracle_lm"]
    assert len(oracle) >= 1 and ("not run" in oracle.note.iloc[0] or len(oracle) > 1)
    md = (out / "REPORT.md").read_text()
    assert md.count("\n| ") >= len(table) and "**AGREES**" in md
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= len(report.SCRIPTS)
    assert all((out / "figures" / f"{s}.png").is_file() for s in report.SCRIPTS)
    assert all(v["how"] == "reused" for k, v in summary["provenance"].items() if k != "oracle_lm")


def test_a_changed_config_is_not_reused(built, tmp_path):
    _, _, results = built
    cfg = report.Config(quick_runs=True, results_dir=tmp_path)
    shutil.copytree(results / "asymptotics_quick", tmp_path / "asymptotics_quick")
    assert report.matches(tmp_path / "asymptotics_quick", "asymptotics", cfg) == (True, "matches")
    meta = json.loads((tmp_path / "asymptotics_quick" / "config.json").read_text())
    meta["config_hash"] = "0" * 16
    (tmp_path / "asymptotics_quick" / "config.json").write_text(json.dumps(meta))
    ok, why = report.matches(tmp_path / "asymptotics_quick", "asymptotics", cfg)
    assert not ok and "config_hash" in why
