"""The benchmark runs end to end in --quick mode, writes its outputs, and its naive baseline agrees with the exact argmin."""

import json

import pytest

from simulations import benchmark


def test_benchmark_quick(tmp_path, capsys):
    res = benchmark.main(["--quick", "--memory-resolution", "0.1", "--out", str(tmp_path)])
    assert res["naive"]["1000"]["same_argmin"]
    assert res["memory"]["n_policies"] == 21 ** 2
    assert 0 < res["memory"]["peak_rss_gib"] < 4
    assert res["cached_over_bare"] > 0 and res["first_over_bare"] > 0 and res["peak_flops"] > 0
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(saved["results"]["checks"]) == set(res["checks"])
    for name in ("benchmark.csv", "summary.json", "benchmark.png"):
        assert (tmp_path / name).exists()
    assert [r["n_policies"] for r in res["streamed"]] == [5 ** 3, 9 ** 3]
    assert all(0 < r["peak_rss_gib"] < 6 for r in res["streamed"])
    assert [r["world"] for r in res["sharding"]] == [1, 2] and res["two_over_one_process"] > 0
    assert "wrote " in capsys.readouterr().out


def test_scale_out_projection_from_the_measured_rate_and_reduction():
    """Strong scaling divides the work and adds ceil(log2 K) reductions; weak scaling only adds them."""
    from simulations.benchmark import scale_out_projection

    one = {"n_policies": 1000, "trials": 10, "time_s": 8.0, "reduction_share": 0.0, "bytes_per_trial": 16}
    two = {"n_policies": 1000, "trials": 10, "time_s": 4.5, "reduction_share": 0.1, "bytes_per_trial": 16}
    rows = {r["ranks"]: r for r in scale_out_projection(one, two, ranks=(1, 2, 8))}
    assert rows[1]["strong_time_s"] == rows[1]["weak_time_s"] == 8.0
    assert rows[8]["strong_time_s"] == pytest.approx(8.0 / 8 + 3 * 0.45)
    assert rows[8]["weak_time_s"] == pytest.approx(8.0 + 3 * 0.45)
    assert rows[8]["reduction_bytes_per_call_per_rank"] == 160
    assert rows[2]["policy_trials_per_s_per_rank"] == pytest.approx(1250.0)
