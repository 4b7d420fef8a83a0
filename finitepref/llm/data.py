"""Data loaders for TL;DR and UltraFeedback, from the hub or from local files of the same schema.

Schemas (column names as published on the Hugging Face hub):

* ``tldr_sft`` -- ``vwxyzjn/summarize_from_feedback_tldr_3_filtered_oai_preprocessing_1706381144``
  (splits train 116722 / validation 6447 / test 6553): ``query`` (the OAI-formatted
  "SUBREDDIT: ... TITLE: ... POST: ... TL;DR:" prompt, at most 512 tokens), ``reference_response``
  (the human summary). The pre-tokenised ``query_token`` / ``reference_response_token`` columns are
  Pythia-specific and are not used: text is re-tokenised with the run's tokenizer.
* ``tldr_preference`` -- ``vwxyzjn/summarize_from_feedback_oai_preprocessing_1706381144``
  (train / validation): ``query``, ``chosen``, ``rejected`` (response strings).
* ``ultrafeedback`` -- ``HuggingFaceH4/ultrafeedback_binarized`` (splits ``train_prefs``,
  ``test_prefs``, ...; ``prompt`` string, ``chosen`` / ``rejected`` chat-message lists whose last
  ``assistant`` message is the response) and ``GitBag/ultrafeedback_llama3_eurus`` (``prompt``).
  Prompts are formatted with the tokenizer's chat template when it has one.

A row is *malformed* when a required column is missing, not a string (or message list), or empty.
By default a malformed row raises :class:`MalformedRowError` naming the file (or dataset) and the
row (``line N``, 1-based, for JSONL; ``row N``, 0-based, for parquet, JSON lists and hub datasets); with ``data.skip_malformed`` it is skipped and counted (:attr:`Records.skipped`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import DataConfig
from .registry import DataKind

HUB_SCHEMAS = {
    "vwxyzjn/summarize_from_feedback_tldr_3_filtered_oai_preprocessing_1706381144": "tldr_sft",
    "vwxyzjn/summarize_from_feedback_oai_preprocessing_1706381144": "tldr_preference",
    "HuggingFaceH4/ultrafeedback_binarized": "ultrafeedback",
    "GitBag/ultrafeedback_llama3_eurus": "ultrafeedback",
}
TLDR_SFT = "vwxyzjn/summarize_from_feedback_tldr_3_filtered_oai_preprocessing_1706381144"


class MalformedRowError(ValueError):
    """A data row lacks a required column or has the wrong type."""


@dataclass
class Records:
    """Normalised rows: ``prompt`` always, ``response`` (SFT) or ``chosen``/``rejected``."""

    rows: list[dict]
    origin: str
    skipped: int = 0
    skipped_rows: list[int] = field(default_factory=list)
    identical_rows: list[int] = field(default_factory=list)
    """Preference rows kept although chosen == rejected (reported; skipped with ``skip_malformed``)."""

    def __len__(self) -> int:
        return len(self.rows)


def _read_file(path: Path, skip: bool) -> tuple[list[tuple[int, dict | None]], int]:
    """(row number, row) pairs; JSONL rows are numbered by line (1-based), parquet rows 0-based."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        df = pd.read_parquet(path)
        return list(enumerate(df.to_dict(orient="records"))), 0
    if suffix == ".json":
        try:
            with open(path, encoding="utf-8-sig") as f:
                data = json.load(f)
        except UnicodeDecodeError as e:
            raise MalformedRowError(f"{path}: not valid UTF-8 at byte {e.start}") from None
        if not isinstance(data, list):
            raise MalformedRowError(f"{path}: a .json file must hold a list of rows")
        return list(enumerate(data)), 0
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, skip)
    raise ValueError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")


def _decode_line(raw: bytes, lineno: int, path: Path):
    """One JSONL line as a row; :class:`MalformedRowError` naming file and line if it is not UTF-8 JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedRowError(f"{path}: line {lineno}: not valid UTF-8 (byte {e.start} of the line)") from None
    if lineno == 1:
        text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark
    if not text.strip():
        return _BLANK
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MalformedRowError(f"{path}: line {lineno}: invalid JSON ({e.msg})") from None


_BLANK = object()


def _read_jsonl(path: Path, skip: bool) -> tuple[list[tuple[int, dict | None]], int]:
    """JSONL rows numbered by line (1-based); undecodable lines raise, or become ``None`` with ``skip``."""
    out, bad = [], 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                row = _decode_line(raw, lineno, path)
            except MalformedRowError:
                if not skip:
                    raise
                out.append((lineno, None))
                bad += 1
                continue
            if row is not _BLANK:
                out.append((lineno, row))
    return out, bad


def _read_hub(dataset_id: str, split: str) -> list[tuple[int, dict]]:
    try:
        import datasets  # noqa: F401
        from datasets import load_dataset
    except ImportError as e:
        raise ImportError(
            f"loading {dataset_id!r} from the Hugging Face hub needs the 'datasets' package "
            "(pip install datasets), or download it and pass a local .jsonl/.parquet file"
        ) from e
    ds = load_dataset(dataset_id, split=split)
    return list(enumerate(ds))


def _as_text(value, col: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    raise KeyError(col)


def _last_assistant(messages, col: str) -> str:
    if isinstance(messages, str):
        return _as_text(messages, col)
    try:
        msgs = list(messages)
        for m in reversed(msgs):
            if m.get("role") == "assistant":
                return _as_text(m.get("content"), col)
    except (TypeError, AttributeError):
        pass
    raise KeyError(col)


def _prompt_text(value, col: str):
    """A prompt is a string or a list of chat messages (returned as given)."""
    if isinstance(value, str) and value.strip():
        return value
    try:
        msgs = [dict(m) for m in value]
        if msgs and all(isinstance(m.get("content"), str) for m in msgs):
            return msgs
    except (TypeError, ValueError, AttributeError):
        pass
    raise KeyError(col)


def _required(row: dict, col: str, read=_as_text):
    if col not in row:
        raise KeyError(col)
    return read(row[col], col)


def _normalise_tldr(row: dict, data_kind: str) -> dict:
    out = {"prompt": _required(row, "query")}
    if data_kind == DataKind.SFT:
        out["response"] = _required(row, "reference_response")
    elif data_kind == DataKind.PREFERENCE:
        for col in ("chosen", "rejected"):
            out[col] = _required(row, col)
    elif data_kind == DataKind.PROMPT and isinstance(row.get("reference_response"), str):
        out["response"] = row["reference_response"]
    return out


def _normalise_ultrafeedback(row: dict, data_kind: str) -> dict:
    out = {"prompt": _required(row, "prompt", _prompt_text)}
    if data_kind in (DataKind.PREFERENCE, DataKind.SFT):
        for col in ("chosen", "rejected"):
            out[col] = _required(row, col, _last_assistant)
        if data_kind == DataKind.SFT:
            out["response"] = out["chosen"]
    return out


_NORMALISERS = {"tldr_sft": _normalise_tldr, "tiny_sft": _normalise_tldr, "tldr_preference": _normalise_tldr,
                "tiny_preference": _normalise_tldr, "ultrafeedback": _normalise_ultrafeedback}


def _normalise(row: dict, schema: str, data_kind: str) -> dict:
    """Map one raw row to ``{'prompt', 'response'?, 'chosen'?, 'rejected'?}``; KeyError(col) if bad."""
    if not isinstance(row, dict):
        raise KeyError("<row is not a mapping>")
    if schema not in _NORMALISERS:
        raise ValueError(f"unknown schema {schema!r}")
    return _NORMALISERS[schema](row, data_kind)


def _identical(row: dict, data_kind: str) -> bool:
    """A preference row whose two responses are the same text (it carries no preference)."""
    return data_kind == DataKind.PREFERENCE and row["chosen"] == row["rejected"]


def _normalise_rows(pairs, schema: str, data_kind: str, cfg: DataConfig, where: str
                    ) -> tuple[list[dict], list[int], list[int]]:
    """Normalised rows (at most ``cfg.max_samples``), the numbers of the rows skipped as malformed,
    and those of the rows kept although chosen == rejected (skipped with ``skip_malformed``)."""
    rows, skipped_rows, identical_rows = [], [], []
    for i, raw in pairs:
        try:
            if raw is None:
                raise _Skip(None)
            row = _normalise(raw, schema, data_kind)
            if _identical(row, data_kind):
                if cfg.skip_malformed:
                    raise _Skip("chosen and rejected are identical")
                identical_rows.append(i)
            rows.append(row)
        except KeyError as e:
            if not cfg.skip_malformed:
                raise MalformedRowError(
                    f"{where} {i}: column {e.args[0]!r} is missing, empty or of the wrong type (schema {schema}); "
                    "set data.skip_malformed=true to skip such rows") from None
            skipped_rows.append(i)
        except _Skip:
            skipped_rows.append(i)
        if cfg.max_samples is not None and len(rows) >= cfg.max_samples:
            break
    return rows, skipped_rows, identical_rows


def _first_few(numbers: list[int], unit: str) -> str:
    return f"{unit} " + ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")


class _Skip(Exception):
    """A row to skip (with the reason), raised inside :func:`_normalise_rows`."""


def infer_schema(cfg: DataConfig, data_kind: str) -> str:
    if cfg.schema:
        return cfg.schema
    if cfg.source in HUB_SCHEMAS:
        return HUB_SCHEMAS[cfg.source]
    if cfg.source == "tiny":
        return "tiny_preference" if data_kind == DataKind.PREFERENCE else "tiny_sft"
    return "tldr_preference" if data_kind == DataKind.PREFERENCE else "tldr_sft"


def load_records(cfg: DataConfig, data_kind: str, source: str | None = None, split: str | None = None,
                 seed: int = 0) -> Records:
    """Load and normalise rows.

    Parameters
    ----------
    cfg : DataConfig
    data_kind : {'sft', 'preference', 'prompt'}
        What the stage needs: (prompt, response), (prompt, chosen, rejected), or prompts (with the
        reference response when the schema has one).
    source, split : optional overrides of ``cfg.source`` / ``cfg.split``.
    """
    source = source or cfg.source
    split = split or cfg.split
    schema = infer_schema(DataConfig(**{**cfg.__dict__, "source": source}), data_kind)
    if cfg.max_samples is not None and cfg.max_samples < 1:
        raise ValueError(f"data.max_samples must be >= 1 or None, got {cfg.max_samples!r}")
    if source == "tiny":
        from .tiny import tiny_rows

        pairs = list(enumerate(tiny_rows(schema, cfg.tiny_size, seed=seed + (0 if split == "train" else 1))))
        origin = f"tiny:{schema}"
    elif Path(source).is_file():
        pairs, _ = _read_file(Path(source), cfg.skip_malformed)
        origin = str(source)
    else:
        pairs = _read_hub(source, split)
        origin = f"{source}[{split}]"
    unit = "line" if Path(source).suffix.lower() in (".jsonl", ".ndjson") and Path(source).is_file() else "row"
    rows, skipped_rows, identical_rows = _normalise_rows(pairs, schema, data_kind, cfg, f"{origin}: {unit}")
    skipped = len(skipped_rows)
    if skipped:
        print(f"{origin}: skipped {skipped} malformed row(s) ({_first_few(skipped_rows, unit)})", file=sys.stderr)
    if identical_rows:
        print(f"{origin}: {len(identical_rows)} row(s) with chosen == rejected ({_first_few(identical_rows, unit)}) "
              "carry no preference; kept (data.skip_malformed=true skips them)", file=sys.stderr)
    if not rows:
        raise MalformedRowError(f"{origin}: no usable rows (skipped {skipped})")
    return Records(rows=rows, origin=origin, skipped=skipped, skipped_rows=skipped_rows,
                   identical_rows=identical_rows)


# --------------------------------------------------------------------------- tokenisation


def encode_prompt(tokenizer, prompt, max_length: int) -> list[int]:
    """Token ids of a prompt, keeping the last ``max_length`` tokens (left truncation).

    Chat-message prompts go through the tokenizer's chat template with a generation prompt.
    """
    if isinstance(prompt, list) or getattr(tokenizer, "chat_template", None):
        msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer("\n".join(m["content"] for m in msgs), add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return list(ids[-max_length:])


def encode_response(tokenizer, text: str, max_length: int) -> list[int]:
    """Token ids of a response followed by EOS (a trailing EOS string is not doubled), truncated
    to ``max_length`` tokens (a truncated response keeps no EOS)."""
    eos = tokenizer.eos_token
    if eos and text.endswith(eos):
        text = text[: -len(eos)]
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return ids[:max_length]


def pad(seqs: list[list[int]], pad_id: int, side: str, length: int | None = None):
    """Pad to a common length on ``side``; returns (ids, mask) int64 tensors."""
    n = max(len(s) for s in seqs) if length is None else length
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        s = s[:n]
        if side == "left":
            ids[i, n - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, n - len(s):] = 1
        else:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
    return ids, mask


def plain_prompt(prompt) -> str:
    """The prompt as plain text: a string as it is, a chat-message list as its last user message."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else "\n".join(m["content"] for m in prompt)


class Encoded:
    """Pre-tokenised rows: lists of token ids, padded on demand by :meth:`batch`; ``prompt_texts``
    keeps each prompt as plain text (for reward models with their own input format)."""

    def __init__(self, records: Records, tokenizer, cfg: DataConfig, data_kind: str):
        self.data_kind = data_kind
        self.pad_id = tokenizer.pad_token_id
        self.prompt_texts = [plain_prompt(r["prompt"]) for r in records.rows]
        self.prompts = [encode_prompt(tokenizer, r["prompt"], cfg.max_prompt_length) for r in records.rows]
        self.cols: dict[str, list[list[int]]] = {}
        names = {DataKind.SFT: ["response"], DataKind.PREFERENCE: ["chosen", "rejected"],
                 DataKind.PROMPT: []}[DataKind(data_kind)]
        for c in names:
            self.cols[c] = [encode_response(tokenizer, r[c], cfg.max_response_length) for r in records.rows]
        if data_kind == DataKind.PROMPT and all("response" in r for r in records.rows):
            self.cols["response"] = [encode_response(tokenizer, r["response"], cfg.max_response_length)
                                     for r in records.rows]

    def __len__(self) -> int:
        return len(self.prompts)

    def batch(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """Prompts left-padded, responses right-padded, each to the batch maximum."""
        out = {}
        out["prompt_ids"], out["prompt_mask"] = pad([self.prompts[i] for i in idx], self.pad_id, "left")
        for c, seqs in self.cols.items():
            out[f"{c}_ids"], out[f"{c}_mask"] = pad([seqs[i] for i in idx], self.pad_id, "right")
        return out
