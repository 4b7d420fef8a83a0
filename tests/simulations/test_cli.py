"""The command line of every script: validation before any computing, one-line errors, help, defaults."""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing

import pytest

from simulations import _runner

SCRIPTS = ("kl_vs_n", "bound_check", "scaling", "finite_vs_net", "coverage_gap", "degeneracy", "asymptotics",
           "benchmark", "oracle_lm", "coverage_single", "log_class_size", "report")


def _config(script: str) -> type:
    return importlib.import_module(f"simulations.{script}").Config


def _must_not_run(cfg):
    raise AssertionError("computing started before the command line was validated")


def _error(script: str, argv: list[str], capsys) -> str:
    """The one-line error of ``argv``; the run itself must never start."""
    with pytest.raises(SystemExit) as exit_:
        _runner.main(script, _config(script), argv, None, run=_must_not_run, plot=None, verdicts=list)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("argv", "message"), [
    (["--out", ""], "--out: must not be empty"),
    (["--seed", "-1"], "seed: must be >= 0"),
    (["--seed", "x"], "--seed: invalid int value"),
])
def test_common_fields_are_checked(script, argv, message, capsys):
    assert message in _error(script, argv, capsys)


@pytest.mark.parametrize("script", SCRIPTS)
def test_out_must_be_a_creatable_folder(script, tmp_path, capsys):
    file = tmp_path / "a_file"
    file.write_text("")
    assert "exists and is not a folder" in _error(script, ["--out", str(file)], capsys)
    assert "is not a folder" in _error(script, ["--out", str(file / "sub")], capsys)


@pytest.mark.parametrize("script", SCRIPTS)
def test_out_refuses_a_folder_with_other_files(script, tmp_path, capsys):
    """A run replaces its whole folder: ``--out .`` or a folder of other files is refused before computing."""
    (tmp_path / "notes.txt").write_text("not a result")
    assert f"holds files that are not a run of simulations.{script}" in _error(script, ["--out", str(tmp_path)], capsys)
    assert (tmp_path / "notes.txt").read_text() == "not a result"


def test_out_accepts_an_empty_folder_or_a_previous_run(tmp_path):
    assert _runner.holds_a_run_of(tmp_path, "kl_vs_n")
    (tmp_path / "config.json").write_text('{"script": "simulations.kl_vs_n"}')
    assert _runner.holds_a_run_of(tmp_path, "kl_vs_n") and not _runner.holds_a_run_of(tmp_path, "scaling")


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root may write anywhere")
def test_out_must_be_writable(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "is not writable" in _error("kl_vs_n", ["--out", str(locked / "out")], capsys)


REPORTED = """
kl_vs_n       | --n-max inf                     | n_max: must be finite, got inf
kl_vs_n       | --n-max nan                     | n_max: must be finite, got nan
kl_vs_n       | --n-max 1e19                    | n_max=1e+19
kl_vs_n       | --n-min 0                       | n_min, n_max: need 1 <= n_min
kl_vs_n       | --bootstrap 0                   | bootstrap: must be >= 1, got 0
kl_vs_n       | --estimators ppo                | estimators: unknown ['ppo']
kl_vs_n       | --window-min 1e5 --window-max 10 | window_min: must be <= window_max
bound_check   | --delta 1                       | delta: must be in (0, 1)
bound_check   | --problems hard                 | problems: unknown ['hard']
benchmark     | --repeats 0                     | repeats: must be >= 1, got 0
degeneracy    | --ps-grid 0                     | ps_grid: must be > 0, got 0
degeneracy    | --betas 0.1 -1                  | betas: must be > 0
oracle_lm     | --lrs x                         | --lrs: expected name=number, got 'x'
oracle_lm     | --lrs pmle=-1                   | lrs: every learning rate must be > 0
oracle_lm     | --lrs ppo=1e-3                  | lrs: unknown ['ppo']
oracle_lm     | --algorithms ipo                | algorithms: unknown ['ipo']
scaling       | --gammas 1.0                    | need at least two values
asymptotics   | --estimators distill            | estimators: must include 'pmle'
finite_vs_net | --finite-points 1               | finite_points: need >= 2
coverage_gap  | --mu-rare 1.5                   | mu_rare: must be in (0, 1)
coverage_gap  | --theta-values 1 2              | theta_values: must contain 0
log_class_size | --scales 20                    | must stay below 1/2
log_class_size | --d-min 9 --d-max 9            | need at least two values of d
"""
"""The cases of issue 11 and more: script | arguments | what the one-line error must say."""


def _reported():
    for row in REPORTED.strip().splitlines():
        script, argv, message = (cell.strip() for cell in row.split("|"))
        yield pytest.param(script, argv.split(), message, id=f"{script} {argv}")


@pytest.mark.parametrize(("script", "argv", "message"), list(_reported()))
def test_reported_cases(script, argv, message, capsys):
    assert message in _error(script, argv, capsys)


def _numeric_fields(script: str):
    cls = _config(script)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        if inner in (int, float):
            yield f.name, typing.get_origin(hint) is tuple


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_numeric_field_rejects_nan_and_inf(script, capsys):
    for name, _ in _numeric_fields(script):
        for bad in ("nan", "inf", "-inf"):
            line = _error(script, [f"--{name.replace('_', '-')}", bad], capsys)
            assert name in line or name.replace("_", "-") in line, (name, bad, line)


@pytest.mark.parametrize("script", SCRIPTS)
def test_defaults_and_quick_settings_are_valid(script):
    cls = _config(script)
    for cfg in (cls(), cls.quick()):
        cfg.validate()
        assert cfg.out.name in (cls.NAME, f"{cls.NAME}_quick")
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if isinstance(value, float):
                assert math.isfinite(value)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_default_once(script, capsys):
    with pytest.raises(SystemExit) as exit_:
        _runner.parse_config(_config(script), ["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert text.count("(default:") == len(dataclasses.fields(_config(script)))
    assert f"python -m simulations.{script}" in text
