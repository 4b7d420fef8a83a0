"""The ``llm`` extra's declared floors are versions the tests actually ran with (issue 11)."""

import re
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
FLOORS = {m.group(1): m.group(2) for req in tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["llm"]
          if (m := re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", req))}


@pytest.mark.parametrize("package", ["transformers", "accelerate", "peft"])
def test_floor_is_declared_and_installed(package):
    assert package in FLOORS, f"pyproject's llm extra declares no floor for {package}"
    assert Version(version(package)) >= Version(FLOORS[package]), (package, version(package), FLOORS[package])


def test_transformers_floor_supports_from_pretrained_dtype():
    assert Version(FLOORS["transformers"]) >= Version("4.56")  # `dtype=` replaced `torch_dtype=` in 4.56
