"""Oracle-LM benchmark: the exact evaluator against brute force, the preference sampler's law, and
the ``--quick`` run's outputs."""

import itertools
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from finitepref.llm import oracle  # noqa: E402

EPS = np.finfo(np.float64).eps


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: one intra-op thread in this module (the former number restored after it)."""
    previous, _ = torch.get_num_threads(), torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def lm():
    from finitepref.llm.tiny import tiny_model

    model = tiny_model("tiny:gpt-neox", seed=3, vocab_size=7)
    with torch.no_grad():  # make the next-token laws far from uniform
        model.get_output_embeddings().weight.mul_(40.0)
    return model.eval()


PROMPTS = [[3, 4], [5, 6, 3]]
ALPHABET = [3, 5, 6]
L = 2


def brute_force(model, prompt, alphabet, length):
    """Token-by-token product of next-token laws: restricted (renormalised over the alphabet) and full."""
    out_v, out_full = [], []
    for resp in itertools.product(alphabet, repeat=length):
        lv = lf = 0.0
        for t in range(length):
            ids = torch.tensor([prompt + list(resp[:t])])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, -1].double()
            lf += float(torch.log_softmax(logits, -1)[resp[t]])
            lv += float(torch.log_softmax(logits[alphabet], -1)[alphabet.index(resp[t])])
        out_v.append(lv)
        out_full.append(lf)
    return np.array(out_v), np.array(out_full)


def test_enumeration_matches_brute_force_and_trainer_evaluator(lm):
    from finitepref.llm.logprobs import enumerate_logprobs

    logp, leak = oracle.enumerate_policy(lm, PROMPTS, L, ALPHABET)
    assert logp.shape == (2, len(ALPHABET) ** L)
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, rtol=0, atol=1e-12)
    ref_v, _ = enumerate_logprobs(lm, PROMPTS, L, ALPHABET, restrict=True)
    ref_full, _ = enumerate_logprobs(lm, PROMPTS, L, ALPHABET, restrict=False)
    np.testing.assert_allclose(logp, ref_v.detach().numpy(), atol=1e-9)
    np.testing.assert_allclose(leak, 1 - np.exp(ref_full.detach().numpy()).sum(1), atol=1e-9)
    assert np.all(leak > 0)  # the tiny LM does put mass on pad/EOS/unk
    for x, p in enumerate(PROMPTS):
        bv, bf = brute_force(lm, p, ALPHABET, L)
        np.testing.assert_allclose(logp[x], bv, atol=1e-5)
        np.testing.assert_allclose(leak[x], 1 - np.exp(bf).sum(), atol=1e-5)


def _random_logp(rng, X, A, scale=3.0):
    z = rng.normal(size=(X, A)) * scale
    return z - np.logaddexp.reduce(z, axis=1, keepdims=True)


def test_kl_entropy_win_rate_exact():
    rng = np.random.default_rng(0)
    p, q, s = (_random_logp(rng, 3, 9) for _ in range(3))
    assert np.all(oracle.kl_rows(p, p) == 0.0)
    direct = (np.exp(p) * (p - q)).sum(1)
    np.testing.assert_allclose(oracle.kl_rows(p, q), direct, rtol=1e-12, atol=50 * EPS)
    np.testing.assert_allclose(oracle.entropy_rows(p), -(np.exp(p) * p).sum(1), rtol=1e-12)
    for gamma in (0.3, 1.0, 5.0):
        np.testing.assert_allclose(oracle.exact_win_rate(p, p, s, gamma), 0.5, rtol=0, atol=10 * EPS)
        brute = np.array([sum(np.exp(p[x, a] + q[x, b]) / (1 + np.exp(-gamma * (s[x, a] - s[x, b])))
                              for a in range(9) for b in range(9)) for x in range(3)])
        np.testing.assert_allclose(oracle.exact_win_rate(p, q, s, gamma, chunk=4), brute, rtol=1e-12)
    # pi* beats everything in expectation only through P*: the oracle's win-rate against pi0 is > 1/2
    assert np.all(oracle.exact_win_rate(s, q, s, 2.0) > 0.5)
    # support mismatch gives +inf
    inf_q = q.copy()
    inf_q[0, 0] = -np.inf
    assert oracle.kl_rows(p, inf_q)[0] == np.inf


def test_refuses_too_large_spaces(lm):
    with pytest.raises(ValueError, match="above max_responses"):
        oracle.enumerate_policy(lm, PROMPTS, 5, ALPHABET, max_responses=100)
    with pytest.raises(ValueError, match="above max_responses"):
        oracle.check_size(8, 5, max_responses=4096)
    assert oracle.check_size(8, 4) == 4096
    from simulations.oracle_lm import Config

    with pytest.raises(ValueError, match="above max_responses"):
        Config(alphabet_size=8, length=5).validate()


def test_preference_sampler_matches_eq2_law():
    rng = np.random.default_rng(123)
    X, A, gamma, n = 2, 3, 1.5, 40_000
    mu, star = _random_logp(rng, X, A, 1.0), _random_logp(rng, X, A, 1.0)
    D = np.array([0.3, 0.7])
    x, w, lo = oracle.sample_preferences(np.random.default_rng(7), D, mu, star, gamma, n)
    counts = np.zeros((X, A, A))
    np.add.at(counts, (x, w, lo), 1)
    law = np.zeros((X, A, A))
    for i in range(X):
        P = oracle.preference_matrix(star[i], gamma)
        m = np.exp(mu[i])
        # (winner a, loser b): drawn as (a, b) and a wins, or as (b, a) and a wins; a == b once
        law[i] = D[i] * (np.outer(m, m) * P + np.outer(m, m).T * P) / 1.0
        law[i][np.diag_indices(A)] = D[i] * m**2
    np.testing.assert_allclose(law.sum(), 1.0, atol=1e-12)
    res = stats.chisquare(counts.ravel(), law.ravel() * n)
    assert res.pvalue > 1e-3, res


def test_sampled_win_rate_ci_covers_exact():
    rng = np.random.default_rng(1)
    p, q, s = (_random_logp(rng, 2, 16) for _ in range(3))
    D = np.array([0.5, 0.5])
    exact = float(D @ oracle.exact_win_rate(p, q, s, 1.0))
    hits = 0
    for k in range(40):
        r = oracle.sampled_win_rate(np.random.default_rng(k), D, p, q, s, 1.0, 400)
        assert 0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] <= 1
        hits += r["ci_low"] <= exact <= r["ci_high"]
    assert hits >= 34  # 95% CI: at least 34/40 covers (binomial tail < 1e-2)


def test_quick_run_writes_outputs(quick_run):
    summary, out = quick_run("oracle_lm")
    for f in ("oracle_lm.csv", "table2.csv", "summary.json", "config.json", "oracle_lm.png", "oracle_lm.pdf"):
        assert (out / f).is_file(), f
    df = pd.read_csv(out / "oracle_lm.csv")
    required = ["algorithm", "n", "seed", "kl_star_pi", "kl_pi_star", "kl_pi_pi0", "entropy", "win_rate_exact",
                "win_rate_sampled", "win_ci_low", "win_ci_high", "rm_score", "leaked_mass"]
    assert not df[required].isna().any().any()
    assert set(df["algorithm"]) >= {"pmle", "distill", "dpo", "reverse_kl"}
    assert (df["kl_star_pi"] >= 0).all() and (df["win_rate_exact"].between(0, 1)).all()
    t2 = pd.read_csv(out / "table2.csv")
    assert {"win_rate_exact", "rm_score", "kl_pi_pi0", "kl_star_pi"} <= set(t2.columns)
    assert "verdicts" in summary and summary["world"]["responses_per_prompt"] == 64
