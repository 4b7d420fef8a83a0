r"""Sequence log-probabilities :math:`\ln\pi(a\mid x) = \sum_t \ln\pi(a_t\mid x, a_{<t})`.

One padded forward of the concatenation [prompt; response], each row left-padded as a whole
(:func:`pack`: the real tokens are contiguous and every response ends in the last column, so the
width is the longest prompt + response), position ids count real tokens only; the output layer
runs on the response positions only (``logits_to_keep``), logits are shifted by one, divided by
the sampling temperature, log-softmaxed, gathered at the response tokens and masked, and the
per-token values are returned in the order of the right-padded response.

:func:`pair_sequence_logprobs` gives both responses of a pair from one row [prompt; first; second]
that reads the prompt once (a 4-d attention mask keeps the second response from seeing the first);
:func:`stack_responses` puts both responses of a pair in one batch as two rows (the fallback, and the
reward model's layout).

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


PACKED_ATTENTION = ("sdpa", "eager")
"""Attention implementations that take the custom 4-d mask of :func:`pack_pair` (flash attention
does not: pairs then run as two rows, :func:`stack_responses`)."""


def attention_implementation(model) -> str | None:
    """The attention implementation of ``model`` (unwrapped from DDP; peft models show their base's)."""
    config = getattr(getattr(model, "module", model), "config", None)
    return getattr(config, "_attn_implementation", None)


def pack_pair(prompt_ids, prompt_mask, first_ids, first_mask, second_ids, second_mask, float_mask: bool = False):
    """One row per pair, [prompt; first; second], the real tokens at the right end (left-padded as a whole).

    The second response attends to the prompt and to itself, never to the first: its position ids
    continue the prompt's, so each response sees exactly what it would see after the prompt alone.

    Returns ``ids``, the 4-d attention mask ``(rows, 1, width, width)`` (boolean, True = attend; or,
    with ``float_mask``, additive float32, as eager attention takes it), ``pos`` and the segment of
    every column (0 padding, 1 prompt, 2 first, 3 second). Padding queries attend to themselves only.
    As in :func:`pack`, columns of padding only are dropped on the CPU, kept on an accelerator.
    """
    seg = torch.cat([prompt_mask.long(), 2 * first_mask.long(), 3 * second_mask.long()], 1)
    ids = torch.cat([prompt_ids, first_ids, second_ids], 1)
    order = torch.argsort((seg > 0).to(torch.int8), dim=-1, stable=True)  # padding first, order kept
    ids, seg = ids.gather(-1, order), seg.gather(-1, order)
    if ids.device.type == "cpu":
        drop = max(0, ids.shape[1] - int((seg > 0).sum(-1).max()))
        ids, seg = ids[:, drop:], seg[:, drop:]
    second = seg == 3
    before = (seg == 1) | (seg == 2)
    pos = torch.where(second, (seg == 1).sum(-1, keepdim=True) + second.cumsum(-1), before.cumsum(-1)) - 1
    width = ids.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=ids.device).tril()
    attend = causal & (seg > 0)[:, None, :] & ~(second[:, :, None] & (seg == 2)[:, None, :])
    attend = (attend | torch.eye(width, dtype=torch.bool, device=ids.device))[:, None]
    if float_mask:
        attend = torch.zeros(attend.shape, device=ids.device).masked_fill(~attend, torch.finfo(torch.float32).min)
    return ids, attend, pos.clamp(min=0), seg


def pair_sequence_logprobs(model, prompt_ids, prompt_mask, first_ids, first_mask, second_ids, second_mask,
                           temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Sequence log-probabilities :math:`\ln\pi(a^1\mid x)` and :math:`\ln\pi(a^2\mid x)` of both
    responses of each pair in one forward that reads the prompt once (:func:`pack_pair`).

    The shared prompt is what makes it cheaper than two rows [prompt; first], [prompt; second]
    (:func:`stack_responses`): on the bench's anchor (prompts as long as responses) a quarter fewer
    tokens, on TL;DR's 512-token prompts and 53-token summaries (Table 5) 45% fewer. The same
    prefix-sharing idea is in Wang et al. 2024, "Accelerating Direct Preference Optimization with
    Prefix Sharing". The first token of both responses is predicted from the prompt's last position;
    the output layer runs on the response positions only. Falls back to two rows where the attention
    implementation takes no custom mask (:data:`PACKED_ATTENTION`).
    """
    attention = attention_implementation(model)
    if attention not in PACKED_ATTENTION:
        rows = stack_responses(prompt_ids, prompt_mask, first_ids, first_mask, second_ids, second_mask)
        return sequence_logprobs(model, *rows, temperature)["logp"].chunk(2)
    ids, attend, pos, seg = pack_pair(prompt_ids, prompt_mask, first_ids, first_mask, second_ids, second_mask,
                                      float_mask=attention == "eager")
    n1, n2 = (seg == 2).sum(-1, keepdim=True), (seg == 3).sum(-1, keepdim=True)
    width = ids.shape[1]
    keep = (int((n1 + n2).max()) if ids.device.type == "cpu" else first_ids.shape[1] + second_ids.shape[1]) + 1
    logits = forward_logits(model, ids, attend, pos, keep)
    start1 = width - n2 - n1  # column of the first response's first token; the prompt ends just before
    col1 = start1 + torch.arange(first_ids.shape[1], device=ids.device)
    col2 = width - n2 + torch.arange(second_ids.shape[1], device=ids.device)
    pred2 = torch.where(col2 == width - n2, start1 - 1, col2 - 1)
    logz = torch.cat(by_chunks(_chunk_logz, logits, None, temperature), dim=1)  # no token ids: fn(chunk, T)
    return tuple(_summed_logp(logits, logz, ids, col, pred, n, width - keep, temperature)
                 for col, pred, n in ((col1, col1 - 1, n1), (col2, pred2, n2)))


def _chunk_logz(logits: Tensor, temperature: float) -> Tensor:
    """Log-normaliser of the temperature-scaled logits of one chunk of positions, in float32 at least."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return torch.logsumexp(logits / temperature if temperature != 1.0 else logits, dim=-1)


def _summed_logp(logits, logz, ids, col, pred, n, offset, temperature) -> Tensor:
    """Sum over a response's tokens (at columns ``col``, the first ``n`` real) of the log-softmax of the
    logits at columns ``pred`` (kept logits start at column ``offset``) at those tokens."""
    real = torch.arange(col.shape[1], device=col.device) < n
    k = (pred - offset).clamp(0, logits.shape[1] - 1)
    target = ids.gather(1, col.clamp(max=ids.shape[1] - 1))
    rows = torch.arange(ids.shape[0], device=ids.device)[:, None]
    picked = logits[rows, k, target]
    if picked.dtype in (torch.float16, torch.bfloat16):
        picked = picked.float()
    tok = (picked / temperature if temperature != 1.0 else picked) - logz.gather(1, k)
    return (tok * real).sum(-1)


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
    parts = by_chunks(_chunk_logprobs, logits, w_ids, temperature, with_entropy, recompute=with_entropy)
    tok = torch.cat([t for t, _ in parts], dim=1)
    m = w_mask.to(tok.dtype)
    tok = tok * m
    right = torch.argsort(1 - w_mask, dim=-1, stable=True)  # left-padded response order -> right-padded
    out = {"token_logp": tok.gather(-1, right), "logp": tok.sum(-1), "mask": w_mask.gather(-1, right)}
    if with_entropy:
        out["entropy"] = (torch.cat([e for _, e in parts], dim=1) * m).gather(-1, right)
    return out


def by_chunks(fn, logits: Tensor, ids: Tensor | None, temperature: float, *args, recompute: bool = False) -> list:
    """``fn(logits_chunk, ids_chunk, temperature, *args)`` over chunks of ``LOGPROB_CHUNK`` positions
    (``fn(logits_chunk, temperature, *args)`` when ``ids`` is None).

    A chunk whose float32 temporaries autograd would save (half-precision logits, a temperature other
    than 1, or ``recompute``) runs under activation checkpointing: recomputed in backward, not stored.
    """
    recompute = recompute or logits.dtype in (torch.float16, torch.bfloat16) or temperature != 1.0
    recompute = recompute and torch.is_grad_enabled() and logits.requires_grad
    out = []
    for start in range(0, logits.shape[1], LOGPROB_CHUNK):
        part = (logits[:, start:start + LOGPROB_CHUNK],) + (() if ids is None else (ids[:, start:start + LOGPROB_CHUNK],))
        if recompute:
            from torch.utils.checkpoint import checkpoint

            out.append(checkpoint(fn, *part, temperature, *args, use_reentrant=False))
        else:
            out.append(fn(*part, temperature, *args))
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
