"""Fixtures of the language-model trainer tests: offline, single-threaded, tiny models."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import accelerate  # noqa: E402,F401  (the llm extra is part of the test install: fail loudly if missing)
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny matrices: intra-op threads only add contention on small CI machines."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tok():
    from finitepref.llm.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture
def tiny_lm():
    from finitepref.llm.tiny import tiny_model

    return tiny_model("tiny:gpt-neox", seed=0)


@pytest.fixture
def make_cfg():
    """``make_cfg(name, out, *overrides)``: a shipped config with test-friendly overrides."""
    from finitepref.llm.config import load_config

    def make(name: str, out, *overrides: str):
        return load_config(name, [f"output_dir={out}", "log.tensorboard=false", "log.progress=false", *overrides])

    return make
