"""Malformed input to the trainer (issue 11): data files, configs, CLI paths. Each case gave a silent
wrong answer or an unhelpful error on 8ff5bad."""

import json

import pytest

from finitepref.llm.__main__ import main
from finitepref.llm.config import ConfigError, DataConfig, load_config
from finitepref.llm.data import MalformedRowError, load_records


def _row(i, chosen=None):
    return {"query": f"q{i}", "chosen": chosen or f"good {i}", "rejected": f"bad {i}"}


def _write(path, rows, prefix=b""):
    path.write_bytes(prefix + b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    return path


def _cfg(path, **kw):
    return DataConfig(source=str(path), schema="tldr_preference", **kw)


def test_non_utf8_line_is_named_and_skippable(tmp_path, capsys):
    path = _write(tmp_path / "d.jsonl", [_row(1), _row(2)])
    path.write_bytes(path.read_bytes() + b'{"query": "\xff\xfe"}\n' + json.dumps(_row(4)).encode() + b"\n")
    with pytest.raises(MalformedRowError, match=r"d\.jsonl: line 3: not valid UTF-8"):
        load_records(_cfg(path), "preference")
    recs = load_records(_cfg(path, skip_malformed=True), "preference")
    assert len(recs) == 3 and recs.skipped_rows == [3]
    assert "skipped 1 malformed row(s) (line 3)" in capsys.readouterr().err


def test_utf8_bom_keeps_the_first_row(tmp_path):
    path = _write(tmp_path / "bom.jsonl", [_row(1), _row(2)], prefix=b"\xef\xbb\xbf")
    assert [r["prompt"] for r in load_records(_cfg(path), "preference").rows] == ["q1", "q2"]


def test_identical_chosen_and_rejected_is_reported(tmp_path, capsys):
    path = _write(tmp_path / "same.jsonl", [_row(1), _row(2, chosen="bad 2"), _row(3)])
    recs = load_records(_cfg(path), "preference")  # kept (a tie is a valid sample), but reported
    assert len(recs) == 3 and recs.identical_rows == [2]
    assert "1 row(s) with chosen == rejected (line 2)" in capsys.readouterr().err
    recs = load_records(_cfg(path, skip_malformed=True), "preference")
    assert len(recs) == 2 and recs.skipped_rows == [2]
    assert "skipped 1 malformed row(s) (line 2)" in capsys.readouterr().err


@pytest.mark.parametrize("override, field", [("train.lr=.nan", "train.lr"), ("train.epochs=-1", "train.epochs"),
                                             ("data.max_samples=0", "data.max_samples"),
                                             ("algorithm.beta=.inf", "algorithm.beta"),
                                             ("train.keep_last=0", "train.keep_last")])
def test_out_of_range_numbers_fail_at_dry_run(override, field, capsys):
    with pytest.raises(ConfigError, match=field):
        load_config("tiny/dpo", [override])
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", "tiny/dpo", "--dry-run", "--set", override])
    assert exc.value.code == 2 and field in capsys.readouterr().err


def test_duplicated_yaml_key_is_named(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("base: tiny/dpo\ntrain:\n  lr: 1.0e-3\n  lr: 2.0e-3\n")
    with pytest.raises(ConfigError, match="key 'lr' appears twice"):
        load_config(str(path))


def test_max_samples_zero_loads_nothing(tmp_path):
    path = _write(tmp_path / "d.jsonl", [_row(1), _row(2)])
    with pytest.raises(ValueError, match="data.max_samples"):
        load_records(_cfg(path, max_samples=0), "preference")


def test_evaluate_names_a_missing_policy_path(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--policy", "/nonexistent/run", "--reference", "tiny:gpt-neox"])
    assert exc.value.code == 2
    assert "--policy '/nonexistent/run': the path does not exist" in capsys.readouterr().err


def test_old_flat_algorithm_keys_still_load_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="algorithm.num_ppo_epochs is not a setting of dpo"):
        cfg = load_config("tiny/dpo", ["algorithm.num_ppo_epochs=3"])
    assert cfg.algorithm.beta == 0.05
