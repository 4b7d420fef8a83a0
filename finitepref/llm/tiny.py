"""In-code tiny world for CPU runs and tests: a word-level tokenizer with explicit pad and EOS,
tiny GPT-NeoX / Llama models built from configs, and synthetic rows in the real data schemas.

Nothing here touches the network.
"""

from __future__ import annotations

import random

import torch

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
WORDS = (
    "the a cat dog sat ran on mat log and then it was big small red blue happy sad day night "
    "tl;dr: post: title: subreddit: summary short long good bad i my we"
).split()


def tiny_tokenizer(words: tuple[str, ...] | list[str] = WORDS, padding_side: str = "left"):
    """A :class:`~transformers.PreTrainedTokenizerFast` over a whitespace word vocabulary.

    Token ids: 0 ``<pad>``, 1 ``<eos>``, 2 ``<unk>``, then ``words`` in order. Decoding joins
    words with spaces, so decode + encode round-trips.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side=padding_side
    )
    return fast


def tiny_model_config(arch: str = "gpt-neox", vocab_size: int | None = None, hidden: int = 32, layers: int = 2):
    """A tiny :class:`GPTNeoXConfig` or :class:`LlamaConfig` (pad 0, eos 1)."""
    vocab_size = vocab_size or (3 + len(WORDS))
    common = dict(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=2 * hidden, max_position_embeddings=256, pad_token_id=0, eos_token_id=1,
        bos_token_id=1, tie_word_embeddings=False,
    )
    if arch in ("gpt-neox", "gpt_neox", "pythia"):
        from transformers import GPTNeoXConfig

        return GPTNeoXConfig(**common, use_parallel_residual=True, rotary_pct=0.25,
                             attention_dropout=0.0, hidden_dropout=0.0)
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common, num_key_value_heads=2)
    raise ValueError(f"unknown tiny architecture {arch!r}; use tiny:gpt-neox or tiny:llama")


def tiny_model(spec: str, head: str = "causal_lm", seed: int = 0, vocab_size: int | None = None):
    """Build ``tiny:<arch>`` with a causal-LM, sequence-classification or token-classification head.

    Initialisation is a deterministic function of ``seed``.
    """
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    arch = spec.split(":", 1)[1] if ":" in spec else "gpt-neox"
    cfg = tiny_model_config(arch, vocab_size=vocab_size)
    if head != "causal_lm":
        cfg.num_labels = 1
    cls = {"causal_lm": AutoModelForCausalLM, "seq_cls": AutoModelForSequenceClassification,
           "token_cls": AutoModelForTokenClassification}[head]
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = cls.from_config(cfg)
    finally:
        torch.random.set_rng_state(state)
    return model


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS[:22]) for _ in range(rng.randint(lo, hi)))


def tiny_rows(schema: str, n: int, seed: int = 0) -> list[dict]:
    """Synthetic rows in the real column layout of ``schema`` (text columns only).

    ``tldr_sft``: ``query``, ``reference_response``; ``tldr_preference``: ``query``, ``chosen``,
    ``rejected``; ``ultrafeedback``: ``prompt``, ``chosen``, ``rejected`` as chat message lists.
    Chosen responses are longer on average than rejected ones, so a reward model can learn.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        query = f"subreddit: {rng.choice(['cat', 'dog'])} post: {_sentence(rng, 3, 8)} tl;dr:"
        good = _sentence(rng, 3, 5) + " happy"
        bad = _sentence(rng, 1, 3) + " sad"
        if schema in ("tldr_sft", "tiny_sft"):
            rows.append({"id": str(i), "query": query, "reference_response": " " + good})
        elif schema in ("tldr_preference", "tiny_preference"):
            rows.append({"query": query, "chosen": " " + good, "rejected": " " + bad})
        elif schema == "ultrafeedback":
            rows.append({
                "prompt": query,
                "chosen": [{"role": "user", "content": query}, {"role": "assistant", "content": good}],
                "rejected": [{"role": "user", "content": query}, {"role": "assistant", "content": bad}],
            })
        else:
            raise ValueError(f"unknown schema {schema!r}")
    return rows
