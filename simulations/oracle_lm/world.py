"""The world of the oracle-LM benchmark: pi0 (the "SFT model"), pi* (the target), and their data.

Both are tiny GPT-NeoX networks whose responses (length L over an alphabet of K word tokens) are
enumerated, so every law is an exact finite table (``finitepref.llm.oracle``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from finitepref.llm import oracle

from .config import Config


@dataclass
class World:
    """pi0 and pi*, enumerated over the K^L responses of every prompt, and the tokens that spell them."""

    cfg: Config
    tok: object
    words: list[str]
    alphabet: list[int]
    prompts: list[list[int]]
    prompt_texts: list[str]
    prompt_probs: np.ndarray
    pi0_dir: Path
    star_dir: Path
    logp0: np.ndarray
    logp_star: np.ndarray
    leak0: np.ndarray


def _word_list(k: int) -> list[str]:
    """The first k alphabetic words of the tiny vocabulary."""
    from finitepref.llm.tiny import WORDS

    return [w for w in WORDS if w.isalpha()][:k]


def build_world(cfg: Config, root: Path) -> World:
    """pi0 (saved as a trainer-loadable model directory) and pi*, both enumerated."""
    from finitepref.llm.models import save_model
    from finitepref.llm.tiny import tiny_model, tiny_tokenizer

    words = _word_list(cfg.alphabet_size)
    tok = tiny_tokenizer(words)
    alphabet = [tok.convert_tokens_to_ids(w) for w in words]
    vocab = 3 + len(words)
    g = torch.Generator().manual_seed(cfg.world_seed)
    # prompts: distinct 2-word sequences of the alphabet
    pairs = [(i, j) for i in range(len(words)) for j in range(len(words)) if i != j]
    order = torch.randperm(len(pairs), generator=g)[: cfg.n_prompts].tolist()
    prompt_texts = [f"{words[pairs[o][0]]} {words[pairs[o][1]]}" for o in order]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in prompt_texts]

    pi0 = tiny_model("tiny:gpt-neox", seed=cfg.world_seed, vocab_size=vocab)
    head = pi0.get_output_embeddings().weight
    hidden = head.shape[1]
    special = [tok.pad_token_id, tok.eos_token_id, tok.unk_token_id]
    # Output head: alphabet rows ~ N(0, head_scale^2/hidden) (non-uniform next-token laws); one hidden
    # unit (index 0) is made a constant by the final layer norm's bias and pushes pad/EOS/unk down,
    # so pi0 leaks little mass outside the alphabet (it is reported either way).
    mask = torch.ones(head.shape)
    mask[special] = 0.0
    mask[:, 0] = 0.0
    with torch.no_grad():
        head.copy_(torch.randn(head.shape, generator=g) * cfg.head_scale / hidden**0.5 * mask)
        head[special, 0] = -3.0
        pi0.gpt_neox.final_layer_norm.bias[0] = 4.0
    pi0.generation_config.suppress_tokens = special
    pi0_dir = root / "pi0"
    save_model(pi0, tok, pi0_dir / "model", {"algorithm": "oracle_pi0", "base": "tiny:gpt-neox"})
    pi_star = tiny_model("tiny:gpt-neox", seed=cfg.world_seed, vocab_size=vocab)
    pi_star.load_state_dict(pi0.state_dict())
    with torch.no_grad():
        pi_star.get_output_embeddings().weight.add_(
            torch.randn(head.shape, generator=g) * cfg.perturb * cfg.head_scale / hidden**0.5 * mask)
    pi_star.generation_config.suppress_tokens = special
    save_model(pi_star, tok, root / "pi_star" / "model", {"algorithm": "oracle_pi_star", "base": "tiny:gpt-neox"})
    logp0, leak0 = oracle.enumerate_policy(pi0, prompts, cfg.length, alphabet, cfg.max_responses)
    logp_star, _ = oracle.enumerate_policy(pi_star, prompts, cfg.length, alphabet, cfg.max_responses)
    return World(cfg, tok, words, alphabet, prompts, prompt_texts, np.full(cfg.n_prompts, 1.0 / cfg.n_prompts),
                 pi0_dir / "model", root / "pi_star" / "model", logp0, logp_star, leak0)


def response_text(world: World, idx: int) -> str:
    """Text of enumerated response ``idx`` (lexicographic order of the alphabet)."""
    K, L = len(world.words), world.cfg.length
    digits = []
    for _ in range(L):
        idx, r = divmod(idx, K)
        digits.append(r)
    return " " + " ".join(world.words[d] for d in reversed(digits))


def sample_pairs(world: World, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n preference pairs (prompt, winner, loser) of eq. (2)/(3), sampled exactly (indices of the enumeration)."""
    return oracle.sample_preferences(rng, world.prompt_probs, world.logp0, world.logp_star, world.cfg.gamma, n)


def write_preferences(world: World, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], path: Path) -> None:
    """Preference pairs as JSONL in the trainer's TL;DR preference schema."""
    x, w, lo = pairs
    with open(path, "w") as f:
        for xi, wi, li in zip(x, w, lo, strict=True):
            f.write(json.dumps({"query": world.prompt_texts[xi], "chosen": response_text(world, wi),
                                "rejected": response_text(world, li)}) + "\n")


def write_prompts(world: World, rng: np.random.Generator, rows: int, path: Path) -> None:
    """Prompt set of the online stages (tldr_sft schema); reference responses sampled from pi0
    (used only for the reward model's normalisation constant)."""
    x = rng.choice(len(world.prompts), size=rows, p=world.prompt_probs)
    with open(path, "w") as f:
        for xi in x:
            a = rng.choice(world.logp0.shape[1], p=np.exp(world.logp0[xi]) / np.exp(world.logp0[xi]).sum())
            f.write(json.dumps({"query": world.prompt_texts[xi], "reference_response": response_text(world, a)}) + "\n")
