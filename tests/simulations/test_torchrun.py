"""The simulation scripts under ``torchrun``: the same CSV as one process, the start check, failures.

Each launched job is a real one: ``python -m torch.distributed.run --standalone --nproc-per-node 2
-m simulations.<name>`` (or, where each rank needs its own command line or the launcher must not
stop the others, the ranks started by hand with the variables torchrun sets). Two ranks split the
work unevenly: kl_vs_n's 1681 policies (840 + 841 rows) and its 5 sample sizes (3 + 2 cells).
Faults are injected at named points (``FINITEPREF_FAULT``), never by timed kills.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulations import _launch, _runner

ROOT = Path(__file__).resolve().parents[2]
KL_VS_N = ["simulations.kl_vs_n", "--quick", "--resolution", "0.05", "--trials", "50", "--bootstrap", "50"]
"""kl_vs_n's quick settings on a coarser net (K = 1681): the same code path in a few seconds."""
TINY = ["simulations.coverage_gap", "--quick", "--n-points", "2", "--trials", "20", "--bootstrap", "20"]
RUN_LIMIT_S = 300
"""A launched job that has not ended by then has hung (the test fails instead of waiting)."""

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", _runner.FAULT_ENV)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _torchrun(args: list[str], nproc: int = 2, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", *args]
    return subprocess.run(cmd, env=_env(**env), cwd=ROOT, capture_output=True, text=True, timeout=RUN_LIMIT_S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(argvs: list[list[str]], **env: str) -> list[tuple[int, str]]:
    """Start one process per command line as ranks 0, 1, ... of one job (torchrun's variables, no agent that
    stops the others when one fails); each one's exit status and output."""
    shared = {"WORLD_SIZE": str(len(argvs)), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), **env}
    procs = [subprocess.Popen([sys.executable, "-m", *argv], env=_env(RANK=str(r), LOCAL_RANK=str(r), **shared),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r, argv in enumerate(argvs)]
    try:
        return [(p.wait(timeout=RUN_LIMIT_S), p.communicate()[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """``reference(script_args) -> folder`` of the same command run in this process (no launcher), made once."""
    root, done = tmp_path_factory.mktemp("one_process"), {}

    def reference(args: list[str]) -> Path:
        key = " ".join(args)
        if key not in done:
            import importlib

            done[key] = root / str(len(done))
            importlib.import_module(args[0]).main([*args[1:], "--out", str(done[key])])
        return done[key]

    return reference


@pytest.mark.parametrize("split", ["rows", "cells"])
@pytest.mark.parametrize(("args", "csvs"), [(KL_VS_N, ("kl_vs_n.csv",)),
                                            (["simulations.degeneracy", "--quick"],
                                             ("degeneracy.csv", "prior_smoothing.csv"))],
                         ids=["kl_vs_n", "degeneracy"])
def test_csv_is_byte_identical_to_one_process(one_process, tmp_path, args, csvs, split):
    out = tmp_path / "out"
    proc = _torchrun([*args, *(["--shard"] if split == "cells" else []), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = one_process(args)
    for name in csvs:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert json.loads((out / "config.json").read_text())["launch"] == {"world_size": 2, "split": split}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # rank 0 alone wrote, nothing left beside
    assert proc.stdout.count("wrote ") == 1  # one rank printed the verdicts and the files


def test_mismatched_seed_is_refused_by_every_rank(tmp_path):
    out = tmp_path / "out"
    args = [*TINY, "--out", str(out)]
    results = _ranks([args, [*args, "--seed", "1"]])
    for rank, (code, text) in enumerate(results):
        assert code != 0, text[-2000:]
        assert f"rank {rank} of 2 refuses to start" in text and "rank 1: config seed=1 (rank 0: 0)" in text, text[-2000:]
    assert not out.exists()


@pytest.mark.parametrize("fault", ["cell@1:exit", "before-publish@0"], ids=["rank 1 dies", "rank 0 fails writing"])
def test_a_failed_rank_fails_the_job_without_output(tmp_path, fault):
    """Rank 1 killed mid-sweep, or rank 0 failing while writing: every rank still running ends non-zero,
    well within the timeout, saying which rank it is; no output folder, nothing left beside it."""
    out = tmp_path / "out"
    t0 = time.monotonic()
    results = _ranks([[*TINY, "--out", str(out)]] * 2, FINITEPREF_FAULT=fault, FINITEPREF_DIST_TIMEOUT="60")
    assert time.monotonic() - t0 < RUN_LIMIT_S
    assert all(code != 0 for code, _ in results), [t[-1500:] for _, t in results]
    survivor = 0 if fault.startswith("cell") else 1
    assert f"rank {survivor} of 2 stopped" in results[survivor][1], results[survivor][1][-2000:]
    if survivor == 1:
        assert "rank 0 failed: InjectedFault" in results[1][1]
    assert list(tmp_path.iterdir()) == []


def test_torchrun_fails_when_a_rank_dies(tmp_path):
    out = tmp_path / "out"
    proc = _torchrun([*TINY, "--out", str(out)], FINITEPREF_FAULT="cell@1:exit", FINITEPREF_DIST_TIMEOUT="60")
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- in this process (no launcher)
@pytest.mark.parametrize("script", ["benchmark", "oracle_lm"])
def test_one_process_scripts_refuse_a_launcher(script, monkeypatch, capsys):
    import importlib

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exit_:
        _runner.parse_config(importlib.import_module(f"simulations.{script}").Config, ["--quick"])
    assert exit_.value.code == 2
    assert "runs in one process only" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["report", "benchmark"])
def test_shard_needs_a_sweep_of_cells(script, capsys):
    import importlib

    with pytest.raises(SystemExit):
        _runner.parse_config(importlib.import_module(f"simulations.{script}").Config, ["--quick", "--shard"])
    assert "--shard: simulations." in capsys.readouterr().err


def test_shard_without_a_launcher_changes_nothing_and_says_so(capsys):
    from simulations import kl_vs_n

    cfg, shard = _runner.parse_command_line(kl_vs_n.Config, ["--quick", "--shard"])
    assert shard and cfg == kl_vs_n.Config.quick()
    assert "runs as one process: use torchrun" in capsys.readouterr().err
    with _launch.launched("kl_vs_n", cfg, shard) as job:
        assert (job.world, job.split) == (1, "one process")
        assert _launch.map_cells(lambda c: c * c, range(5), desc="t") == [0, 1, 4, 9, 16]
        assert _launch.on_rank0(lambda: "x") == "x" and _launch.is_main()


def test_version_and_commit_differences_are_named():
    first = {"script": "simulations.x", "config_hash": "a", "finitepref": "0.1.0", "git_commit": "c1",
             "split": "rows", "settings": {"seed": 0, "trials": 5}}
    other = {**first, "finitepref": "0.2.0", "git_commit": "c2", "config_hash": "b", "settings": {"seed": 0, "trials": 6}}
    assert _launch._differences(first, first) == []
    assert _launch._differences(other, first) == ["finitepref '0.2.0' (rank 0: '0.1.0')", "git_commit 'c2' (rank 0: 'c1')",
                                                  "config trials=6 (rank 0: 5)"]


def test_fault_points_can_name_a_rank(monkeypatch):
    monkeypatch.setenv(_runner.FAULT_ENV, "cell@1")
    monkeypatch.setenv("RANK", "0")
    _runner.fault_point("cell")  # another rank's fault: nothing happens here
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(_runner.InjectedFault):
        _runner.fault_point("cell")


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_timeout_must_be_positive_seconds(value, monkeypatch):
    monkeypatch.setenv(_launch.TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=_launch.TIMEOUT_ENV):
        _launch.timeout_s()
