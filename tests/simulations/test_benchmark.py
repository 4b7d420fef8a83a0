"""The benchmark runs end to end in --quick mode, writes its outputs, and its naive baseline agrees with the exact argmin."""

import json

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
