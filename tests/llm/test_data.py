"""Loaders: real column layouts from local JSONL / parquet; malformed rows are reported by file and
row, or skipped and counted."""

import json

import pandas as pd
import pytest

from finitepref.llm.config import DataConfig
from finitepref.llm.data import Encoded, MalformedRowError, encode_response, load_records
from finitepref.llm.tiny import tiny_rows
from finitepref.llm.train import train


def _write_jsonl(path, rows, raw_lines=()):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for line in raw_lines:
            f.write(line + "\n")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_tldr_preference_files(fmt, tmp_path, tok):
    rows = tiny_rows("tldr_preference", 10)
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="pandas needs pyarrow for parquet")
        pd.DataFrame(rows).to_parquet(tmp_path / "p.parquet")
    else:
        _write_jsonl(tmp_path / "p.jsonl", rows)
    for f in (f"p.{fmt}",):
        recs = load_records(DataConfig(source=str(tmp_path / f), schema="tldr_preference"), "preference")
        assert len(recs) == 10 and recs.skipped == 0
        enc = Encoded(recs, tok, DataConfig(max_prompt_length=5, max_response_length=4), "preference")
        b = enc.batch([0, 1, 2])
        assert b["prompt_ids"].shape[1] <= 5 and b["chosen_ids"].shape[1] <= 4
        assert b["prompt_mask"][:, -1].all()  # left padded
        assert b["chosen_mask"][:, 0].all()  # right padded


def test_ultrafeedback_messages(tmp_path):
    rows = tiny_rows("ultrafeedback", 4)
    _write_jsonl(tmp_path / "u.jsonl", rows)
    recs = load_records(DataConfig(source=str(tmp_path / "u.jsonl"), schema="ultrafeedback"), "preference")
    assert recs.rows[0]["chosen"] == rows[0]["chosen"][-1]["content"]
    prompts = load_records(DataConfig(source=str(tmp_path / "u.jsonl"), schema="ultrafeedback"), "prompt")
    assert prompts.rows[0]["prompt"] == rows[0]["prompt"]


def test_malformed_row_error_names_file_and_row(tmp_path):
    rows = tiny_rows("tldr_preference", 5)
    rows[2] = {"query": rows[2]["query"], "chosen": rows[2]["chosen"]}  # no 'rejected'
    rows[3]["chosen"] = 17  # wrong type
    _write_jsonl(tmp_path / "bad.jsonl", rows, raw_lines=["{not json"])
    cfg = DataConfig(source=str(tmp_path / "bad.jsonl"), schema="tldr_preference")
    with pytest.raises(MalformedRowError, match=r"bad\.jsonl: line 6: invalid JSON"):
        load_records(cfg, "preference")
    _write_jsonl(tmp_path / "bad2.jsonl", rows)
    with pytest.raises(MalformedRowError, match=r"bad2\.jsonl: line 3: column 'rejected'"):
        load_records(DataConfig(source=str(tmp_path / "bad2.jsonl"), schema="tldr_preference"), "preference")
    skip = DataConfig(source=str(tmp_path / "bad.jsonl"), schema="tldr_preference", skip_malformed=True)
    recs = load_records(skip, "preference")
    assert len(recs) == 3 and recs.skipped == 3 and recs.skipped_rows == [3, 4, 6]


def test_malformed_parquet_row_numbering(tmp_path):
    pytest.importorskip("pyarrow", reason="pandas needs pyarrow for parquet")
    df = pd.DataFrame(tiny_rows("tldr_sft", 4))
    df.loc[1, "reference_response"] = None
    df.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(MalformedRowError, match=r"s\.parquet: row 1: column 'reference_response'"):
        load_records(DataConfig(source=str(tmp_path / "s.parquet")), "sft")


def test_training_skips_and_counts(tmp_path, make_cfg):
    rows = tiny_rows("tldr_preference", 34)
    rows[5].pop("chosen")
    rows[9]["rejected"] = ""
    _write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = make_cfg("tiny/dpo", tmp_path / "run", f"data.source={tmp_path / 'd.jsonl'}",
                   "data.schema=tldr_preference", "data.skip_malformed=true")
    summary = train(cfg)
    assert summary["skipped_rows"] == 2 and summary["steps"] == 4


def test_hub_id_without_datasets_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "datasets" or name.startswith("datasets."):
            raise ImportError("no datasets")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="needs the 'datasets' package"):
        load_records(DataConfig(source="vwxyzjn/summarize_from_feedback_oai_preprocessing_1706381144"), "preference")


def test_response_encoding_appends_single_eos(tok):
    assert encode_response(tok, " the cat", 10) == [3, 5, 1]
    assert encode_response(tok, " the cat<eos>", 10) == [3, 5, 1]
    assert encode_response(tok, " the cat sat", 2) == [3, 5]  # truncated: no EOS
