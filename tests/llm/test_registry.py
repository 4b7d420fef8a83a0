"""The algorithm registry (issue 10): one record per algorithm, read everywhere, named nowhere else."""

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from finitepref.llm import registry
from finitepref.llm.batches import Batch
from finitepref.llm.config import ConfigError, field_docs, load_config, to_dict
from finitepref.llm.registry import REGISTRY

LLM = Path(registry.__file__).parent


def _compared_names(path: Path) -> list[tuple[int, str]]:
    """Algorithm names used as string constants inside comparisons (``==``, ``in``, ...)."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and sub.value in REGISTRY:
                    hits.append((sub.lineno, sub.value))
    return hits


@pytest.mark.parametrize("path", sorted(p for p in LLM.glob("*.py") if p.name != "registry.py"), ids=lambda p: p.name)
def test_no_module_outside_the_registry_compares_algorithm_names(path):
    assert _compared_names(path) == []


@pytest.mark.parametrize("name", list(REGISTRY))
def test_record_is_complete(name):
    record = REGISTRY[name]
    assert record.name == name and dataclasses.is_dataclass(record.settings)
    assert issubclass(record.batch, Batch) and record.rows_per_example >= 1
    assert list(inspect.signature(record.loss).parameters) == ["models", "batch", "settings"]
    # the paper's equation, or (beyond the paper) the source, worded as the core's registry
    assert record.label and (record.label == "SFT" or "eq." in record.label or "et al." in record.label)
    assert not (record.needs_value_head and not record.needs_reward_model)
    record.settings()  # the defaults are valid


@pytest.mark.parametrize("name", list(REGISTRY))
def test_settings_reject_non_finite_and_negative_values(name):
    settings = REGISTRY[name].settings
    for f in dataclasses.fields(settings):
        if f.type in ("float", float):
            for bad in (float("nan"), float("inf"), -1.0):
                with pytest.raises(ConfigError, match=f"algorithm.{f.name}"):
                    settings(**{f.name: bad})


@pytest.mark.parametrize("name", list(REGISTRY))
def test_resolved_config_round_trips(name):
    cfg = load_config(f"tiny/{name}")
    from finitepref.llm.config import from_dict

    assert from_dict(to_dict(cfg)) == cfg


def test_help_config_lists_every_setting_with_its_algorithms():
    docs = field_docs()
    for record in REGISTRY.values():
        for f in dataclasses.fields(record.settings):
            assert record.name in docs[f"algorithm.{f.name}"]


def test_unknown_algorithm_names_the_known_ones():
    with pytest.raises(ConfigError, match="algorithm.name must be one of sft, reward"):
        load_config("tiny/dpo", ["algorithm.name=kto"])
