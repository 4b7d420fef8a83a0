"""The benchmark runs end to end on a tiny setting, and its naive baseline agrees with the exact argmin."""

import json

from simulations import benchmark


def test_benchmark_tiny(tmp_path):
    res = benchmark.main(["--resolution", "0.1", "--trials", "20", "--naive-n", "300", "--repeats", "1",
                          "--memory-resolution", "0.1", "--out", str(tmp_path)])
    assert res["naive"]["300"]["same_argmin"]
    assert res["memory"]["n_policies"] == 21 ** 2
    assert 0 < res["memory"]["peak_rss_gib"] < 4
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(saved["results"]["checks"]) == set(res["checks"])
