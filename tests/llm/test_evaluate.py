"""Evaluation: judge request building and answer parsing (fake transport), A/B shuffling, and the
Table 2 columns written as CSV."""

import json

import pandas as pd
import pytest

from finitepref.llm.__main__ import main
from finitepref.llm.evaluate import OpenAIJudge, RewardModelJudge, evaluate, parse_verdict


@pytest.mark.parametrize("text,want", [
    ("A", "A"),
    (" B.\n", "B"),
    ("Preferred: A", None),
    ("Summary B covers more. B", None),
    ("I cannot decide.", None),
])
def test_parse_verdict(text, want):
    assert parse_verdict(text) == want


class FakeTransport:
    """Prefers whichever summary contains 'good'."""

    def __init__(self):
        self.requests = []

    def __call__(self, url, headers, body):
        req = json.loads(body)
        self.requests.append((url, headers, req))
        content = req["messages"][0]["content"]
        a = content.split("Summary A:\n")[1].split("\n\nSummary B:")[0]
        return {"choices": [{"message": {"content": "A" if "good" in a else "B"}}]}


def test_openai_judge_request_and_shuffle(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    fake = FakeTransport()
    judge = OpenAIJudge(model="gpt-4", endpoint="http://judge.local/v1/", api_key_env="MY_KEY", seed=3,
                        transport=fake)
    n = 20
    first = ["good summary" if i % 3 else "bad summary" for i in range(n)]
    second = ["bad summary" if i % 3 else "good summary" for i in range(n)]
    verdicts = judge([f"post {i}" for i in range(n)], first, second)
    assert verdicts == [1.0 if i % 3 else 0.0 for i in range(n)]
    url, headers, req = fake.requests[0]
    assert url == "http://judge.local/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert req["model"] == "gpt-4" and "post 0" in req["messages"][0]["content"]
    firsts_in_a = sum(r[2]["messages"][0]["content"].split("Summary A:\n")[1].startswith(first[i][:4])
                      for i, r in enumerate(fake.requests))
    assert 0 < firsts_in_a < n  # both orders occur


def test_openai_judge_failures_are_unjudged():
    def broken(url, headers, body):
        raise OSError("network down")

    assert OpenAIJudge(transport=broken)(["p"], ["a"], ["b"]) == [None]


def test_reward_model_judge():
    import torch

    j = RewardModelJudge(lambda prompts, texts: torch.tensor([float(len(t)) for t in texts]))
    assert j(["p", "q", "r"], ["aa", "a", "b"], ["a", "aa", "c"]) == [1.0, 0.0, 0.5]


def test_evaluate_tiny_end_to_end(tmp_path, make_cfg):
    cfg = make_cfg("tiny/distill", tmp_path / "e", "eval.num_samples=8", "eval.batch_size=4")
    s = evaluate(cfg, "tiny:gpt-neox", "tiny:gpt-neox", judge="reward-model", out_csv=str(tmp_path / "e.csv"))
    assert s["n"] == 8 and s["kl"] == pytest.approx(0.0, abs=1e-6)  # pi == pi_0
    df = pd.read_csv(tmp_path / "e.csv")
    assert {"win_rate", "rm_score", "kl"} <= set(df.columns)
    samples = pd.read_csv(tmp_path / "e_samples.csv")
    assert len(samples) == 8 and {"response", "reference_response", "rm_score", "kl", "win"} <= set(samples.columns)
    s2 = evaluate(cfg, "tiny:gpt-neox", "tiny:gpt-neox", judge="openai", out_csv=str(tmp_path / "o.csv"),
                  transport=FakeTransport())
    assert s2["n_judged"] == 8 and 0 <= s2["win_rate"] <= 1


def test_evaluate_cli_on_a_run(tmp_path, make_cfg, capsys):
    from finitepref.llm.train import train

    train(make_cfg("tiny/sft", tmp_path / "sft"))
    rc = main(["evaluate", "--policy", str(tmp_path / "sft"), "--reference", "tiny:gpt-neox", "--num-samples", "4",
               "--judge", "reward-model"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n"] == 4 and summary["kl"] != 0
    assert (tmp_path / "sft" / "eval.csv").is_file()
