r"""Sequence log-probabilities :math:`\ln\pi(a\mid x) = \sum_t \ln\pi(a_t\mid x, a_{<t})`.

One padded forward of the concatenation [prompt; response], each row left-padded as a whole
(:func:`pack`: the real tokens are contiguous and every response ends in the last column, so the
width is the longest prompt + response), position ids count real tokens only; the output layer
runs on the response positions only (``logits_to_keep``), logits are shifted by one, divided by
the sampling temperature, log-softmaxed, gathered at the response tokens and masked, and the
per-token values are returned in the order of the right-padded response. :func:`stack_responses` puts both responses of a pair in one batch.

:func:`enumerate_logprobs` evaluates the exact log-probabilities of *every* response of a fixed
length over an allowed token set (the bridge to the exact toy core).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def to_left_padding(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move every row's real tokens to the right end (order preserved)."""
    order = torch.argsort(mask, dim=-1, stable=True)  # zeros first
    return ids.gather(-1, order), mask.gather(-1, order)


def to_right_padding(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move every row's real tokens to the left end (order preserved)."""
    order = torch.argsort(1 - mask, dim=-1, stable=True)  # ones first
    return ids.gather(-1, order), mask.gather(-1, order)


def concat(prompt_ids, prompt_mask, response_ids, response_mask):
    """[left-padded prompt; right-padded response], mask and position ids."""
    p_ids, p_mask = to_left_padding(prompt_ids, prompt_mask)
    r_ids, r_mask = to_right_padding(response_ids, response_mask)
    ids = torch.cat([p_ids, r_ids], dim=1)
    mask = torch.cat([p_mask, r_mask], dim=1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos, r_ids, r_mask


def pack(prompt_ids, prompt_mask, response_ids, response_mask, min_width: int = 0):
    """[prompt; response] with every row's real tokens at the right end (the row left-padded as a whole),
    position ids, and the response left-padded to its own width ``T`` (the last ``T`` columns hold it).

    On the CPU the columns of padding only are dropped (``min_width`` kept at least): the width is then the
    longest prompt + response, not the longest prompt plus the longest response as in :func:`concat`. On an
    accelerator the width is kept (reading it would wait for the device). Returns ``ids, mask, pos``,
    the left-padded response ``ids`` and ``mask``.
    """
    w_ids, w_mask = to_left_padding(response_ids, response_mask)
    ids, mask = to_left_padding(torch.cat([prompt_ids, w_ids], 1), torch.cat([prompt_mask, w_mask], 1))
    if ids.device.type == "cpu":
        drop = max(0, ids.shape[1] - max(int(mask.sum(-1).max()), min_width))
        ids, mask = ids[:, drop:], mask[:, drop:]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos, w_ids, w_mask


def _keeps_logits(model) -> bool:
    """Whether the (unwrapped) model's forward takes ``logits_to_keep`` (transformers causal LMs)."""
    import inspect

    inner = getattr(model, "module", model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    try:
        return "logits_to_keep" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False


def forward_logits(model, ids: Tensor, mask: Tensor, pos: Tensor, keep: int = 0) -> Tensor:
    """Logits of every position, or (``keep > 0`` and supported) of the last ``keep`` positions only:
    the output layer then runs on those positions alone."""
    extra = {"logits_to_keep": keep} if keep and _keeps_logits(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **extra).logits
    return logits[:, -keep:] if keep else logits


def pad_to(ids: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Right-pad ``(ids, mask)`` with masked zeros to ``length`` columns."""
    extra = length - ids.shape[1]
    if extra <= 0:
        return ids, mask
    return F.pad(ids, (0, extra)), F.pad(mask, (0, extra))


def stack_responses(prompt_ids, prompt_mask, first_ids, first_mask, second_ids, second_mask):
    """Both responses of each pair as one batch: ``[prompts; prompts]`` and ``[first; second]``, the
    responses right-padded to a common width (one forward instead of two)."""
    first_ids, first_mask = to_right_padding(first_ids, first_mask)
    second_ids, second_mask = to_right_padding(second_ids, second_mask)
    width = max(first_ids.shape[1], second_ids.shape[1])
    first_ids, first_mask = pad_to(first_ids, first_mask, width)
    second_ids, second_mask = pad_to(second_ids, second_mask, width)
    return (torch.cat([prompt_ids, prompt_ids]), torch.cat([prompt_mask, prompt_mask]),
            torch.cat([first_ids, second_ids]), torch.cat([first_mask, second_mask]))


def sequence_logprobs(
    model,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    response_ids: Tensor,
    response_mask: Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> dict[str, Tensor]:
    r"""Per-token and summed log-probabilities of responses given prompts.

    Parameters
    ----------
    prompt_ids, prompt_mask : (B, P) int tensors, any padding side.
    response_ids, response_mask : (B, T) int tensors, any padding side.
    temperature : float
        Logits are divided by it before the softmax (use the sampling temperature).
    with_entropy : bool
        Also return the per-token entropy of the temperature-scaled next-token distribution.

    Returns
    -------
    dict with ``token_logp`` (B, T), zero at padding, in the order of the right-padded response;
    ``logp`` (B,) their sum; ``mask`` (B, T) the right-padded response mask; optionally
    ``entropy`` (B, T).
    """
    T = response_ids.shape[1]
    ids, mask, pos, w_ids, w_mask = pack(prompt_ids, prompt_mask, response_ids, response_mask, T + 1)
    logits = forward_logits(model, ids, mask, pos, keep=T + 1)[:, :T]  # the positions predicting the response
    tok, entropy = [], []
    recompute = with_entropy or logits.dtype in (torch.float16, torch.bfloat16) or temperature != 1.0
    for start in range(0, T, LOGPROB_CHUNK):
        part = (logits[:, start:start + LOGPROB_CHUNK], w_ids[:, start:start + LOGPROB_CHUNK])
        if recompute and torch.is_grad_enabled() and logits.requires_grad:  # float32 temporaries: not saved
            from torch.utils.checkpoint import checkpoint

            t, e = checkpoint(_chunk_logprobs, *part, temperature, with_entropy, use_reentrant=False)
        else:
            t, e = _chunk_logprobs(*part, temperature, with_entropy)
        tok.append(t)
        entropy.append(e)
    tok = torch.cat(tok, dim=1)
    m = w_mask.to(tok.dtype)
    tok = tok * m
    right = torch.argsort(1 - w_mask, dim=-1, stable=True)  # left-padded response order -> right-padded
    out = {"token_logp": tok.gather(-1, right), "logp": tok.sum(-1), "mask": w_mask.gather(-1, right)}
    if with_entropy:
        out["entropy"] = (torch.cat(entropy, dim=1) * m).gather(-1, right)
    return out


LOGPROB_CHUNK = 64
"""Response positions per float32 log-softmax chunk (:func:`sequence_logprobs`): at most
``rows x LOGPROB_CHUNK x vocabulary`` float32 values exist at once, forward or backward. A chunk that
makes float32 temporaries autograd would save (a half-precision model, a temperature other than 1, the
entropy) is recomputed in backward instead; float32 logits at temperature 1 are read in place (autograd
then saves only the model's own logits and the log-normaliser), so nothing needs recomputing."""


def _chunk_logprobs(logits: Tensor, ids: Tensor, temperature: float, with_entropy: bool):
    """Token log-probs (and entropies, else a dummy) of one chunk of positions, in float32 at least."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if temperature != 1.0:  # x / 1 == x: no copy to make
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    tok = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - logz
    if not with_entropy:
        return tok, tok.new_zeros(())
    p_log = logits - logz.unsqueeze(-1)
    return tok, -(p_log.exp() * p_log).sum(-1)


def enumerate_logprobs(
    model,
    prompts: list[list[int]],
    length: int,
    allowed_token_ids: list[int],
    max_responses: int = 4096,
    batch_size: int = 256,
    restrict: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Exact log-probabilities of every response of ``length`` tokens drawn from an allowed set.

    Parameters
    ----------
    model : a causal LM.
    prompts : X lists of prompt token ids.
    length : response length L.
    allowed_token_ids : the alphabet V; responses are all ``len(V)**L`` words, in lexicographic
        order of their positions in ``allowed_token_ids``.
    max_responses : refuse (``ValueError``) when ``len(V)**L`` exceeds it.
    restrict : if True, each next-token distribution is renormalised over the allowed tokens, so
        every row is a probability distribution over the enumerated responses; if False (default),
        the model's full-vocabulary log-probabilities are returned (what the trainer optimises),
        and rows sum to the mass the model puts on the enumerated set.

    Returns
    -------
    log_probs : (X, A) float64 tensor, differentiable w.r.t. the model's parameters.
    responses : (A, L) int64 tensor of the enumerated responses.
    """
    V = list(allowed_token_ids)
    n_resp = len(V) ** length
    if n_resp > max_responses:
        raise ValueError(
            f"response space has {len(V)}**{length} = {n_resp} elements, above max_responses={max_responses}"
        )
    responses = torch.tensor(list(itertools.product(V, repeat=length)), dtype=torch.long).reshape(n_resp, length)
    allowed = torch.tensor(V, dtype=torch.long)
    rows = []
    for prompt in prompts:
        chunks = []
        for s in range(0, n_resp, batch_size):
            r = responses[s: s + batch_size]
            B = r.shape[0]
            p = torch.tensor(prompt, dtype=torch.long).expand(B, -1)
            ids = torch.cat([p, r], dim=1)
            pos = torch.arange(ids.shape[1]).expand(B, -1)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos,
                           use_cache=False).logits
            logits = logits[:, len(prompt) - 1: len(prompt) + length - 1].double()
            if restrict:
                logits = logits[..., allowed]
                target = torch.searchsorted(allowed.sort().values, r)  # index in sorted allowed
                order = allowed.argsort()
                logits = logits[..., order]
            else:
                target = r
            logp = F.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            chunks.append(logp.sum(-1))
        rows.append(torch.cat(chunks))
    return torch.stack(rows), responses
