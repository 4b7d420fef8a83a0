"""A reward model R-hat(x, y) = gamma * log pi(y | x) (eq. 8 read backwards) in the shape of a scalar-head one.

This file is copied next to the weights of the oracle-LM benchmark's *realizable* and *oracle* reward
models and loaded by ``AutoModelForSequenceClassification`` with ``trust_remote_code`` (so it imports
only torch and transformers). The trainer reads a sequence-classification reward model as a head on
the trunk's per-token hidden states, taken at the last token (``finitepref.llm.models.TokenScorer``),
and initialises PPO's critic from the same model. Here the trunk's "hidden state" at each position is
``[c_t, h_t]``: c_t = gamma * (sum of log pi over the response tokens up to t) and h_t GPT-NeoX's
hidden state; the head starts as ``c_t`` (weight 1 on c, 0 on h), so the reward read at the last
token is gamma log pi(y|x), and the critic starts from the running log-probability with the whole
trunk to learn from.

pi is a GPT-NeoX causal LM whose next-token laws are renormalised over the benchmark's alphabet (the law
generation samples with pad/EOS/unk suppressed). Responses have exactly ``response_length`` tokens:
the last ``response_length`` positions of ``input_ids`` (no response token is padding in the benchmark).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from transformers import GPTNeoXModel, GPTNeoXPreTrainedModel


class LogProbTrunk(torch.nn.Module):
    """GPT-NeoX with its output layer; ``last_hidden_state`` is ``[c_t, h_t]`` (see the module docstring)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.gpt_neox = GPTNeoXModel(config)
        self.lm_head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        h = self.gpt_neox(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False).last_hidden_state
        length = int(self.config.response_length)
        alphabet = torch.tensor(self.config.alphabet, device=input_ids.device)
        logp = torch.log_softmax(self.lm_head(h[:, -length - 1:-1]).double()[..., alphabet], -1)
        index = (input_ids[:, -length:].unsqueeze(-1) == alphabet).long().argmax(-1)
        token = float(self.config.reward_gamma) * logp.gather(-1, index.unsqueeze(-1)).squeeze(-1)
        running = torch.zeros(h.shape[:2], dtype=torch.float64, device=h.device)
        running[:, -length:] = token.cumsum(-1)
        return SimpleNamespace(last_hidden_state=torch.cat([running.to(h.dtype).unsqueeze(-1), h], -1))


class LogProbReward(GPTNeoXPreTrainedModel):
    """``score(trunk(ids).last_hidden_state)``, read at the last token: gamma log pi(y|x)."""

    base_model_prefix = "trunk"

    def __init__(self, config):
        super().__init__(config)
        self.trunk = LogProbTrunk(config)
        self.score = torch.nn.Linear(config.hidden_size + 1, 1, bias=False)
        self.post_init()
        with torch.no_grad():
            self.score.weight.zero_()
            self.score.weight[0, 0] = 1.0

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        h = self.trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return SimpleNamespace(logits=self.score(h[:, -1]))
