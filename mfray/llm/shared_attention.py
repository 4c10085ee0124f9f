"""Attention over prompt prefixes that groups of a batch's rows share, each kept once instead of
once a row.

Why: a step's policy prompts share everything up to the agent's profile (mfray.llm.prefill). When
that shared prefix is copied into every row's KV cache, each decode step reads it once a row:
with 16 prompts of ~1,000 shared tokens, attention read ~780 MB a step, as much time as all the
model's linear layers (py-spy of the E136 run and of a 16-prompt batch, 2026-12-07). A sweep's
batch holds the steps of several rollouts, each its own prefix: copied into every row, decode
attention and the copying were a third of the fidelity sweep's engine time (py-spy, 2026-12-07).
Here each prefix stays one copy [1, kv heads, P, dim] beside the range of rows that share it; each
row's own tokens (the rest of its prompt and what it generates) sit in its cache as usual. The
two parts are attended separately and merged with their log-sum-exp: per prefix, one matrix
product of its rows' queries against it, and the usual per-row product over the rows' own tokens.

Only decoding (one query a row) takes the two-part path; a prompt pass on top of the prefixes
copies them into their rows for that call, as SDPA's fused kernel is faster there.
`SharedPrefixLayer` (mfray.llm.prefill) marks the keys it returns with its prefixes; `attention`
is registered with transformers as the attention implementation `ATTENTION_NAME` and falls
through to the library's SDPA for keys without them, so the same model serves every other
request unchanged.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION_NAME = "mfray_shared_prefix_sdpa"
# Attribute of a key tensor: (W, [(prefix keys, prefix values, first row, end row)]), W the
# prefix columns of the attention mask (the longest prefix the batch started with).
PREFIX_ATTR = "mfray_shared_prefix"


def attend_with_shared_prefixes(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    prefixes: list[tuple[torch.Tensor, torch.Tensor, int, int]],
    width: int,
    scaling: float,
) -> torch.Tensor:
    """Softmax attention of `query` [B, H, q, d] over each row's shared prefix followed by the
    row's own `keys`/`values` [B, Hkv, S, d]. `prefixes` holds (prefix keys [1, Hkv, P, d],
    prefix values, first row, end row): rows first..end-1 share that prefix; a row in no range
    has none. `mask` [B, 1, q, W + S] (bool, True = seen, or additive float) covers both parts,
    `width` = W its prefix columns: the longest prefix the batch started with, which may be longer
    than any left in `prefixes` once rows have left the batch. Only the mask's own-token columns
    are read: every query sees its whole prefix (mfray.llm.prefill pads rows before and after the
    prefix, never inside it). None means
    the prefix and, causally, the row's own tokens. Query heads are grouped onto key heads as
    `repeat_kv` does (head h reads key head h // (H / Hkv)). Computed in float32 whatever the
    inputs' dtype, as SDPA accumulates. Returns [B, H, q, d] in the query's dtype."""
    dtype = query.dtype
    query, keys, values = query.float(), keys.float(), values.float()
    batch, heads, q_len, dim = query.shape
    kv_heads, own_len = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    q = query.reshape(batch, kv_heads, group * q_len, dim)
    own_scores = torch.matmul(q, keys.transpose(-1, -2)) * scaling  # [B, Hkv, group * q, S]
    if mask is None:
        causal = torch.ones((q_len, own_len), dtype=torch.bool, device=query.device).tril(own_len - q_len)
        own_scores = own_scores.masked_fill(~causal.repeat(group, 1), float("-inf"))
    else:
        own_scores = _apply_mask(own_scores, mask[..., width:], group)
    # Each prefix's part, per row: its largest score, its softmax sum and weighted values, all
    # relative to that largest score (a row without a prefix keeps -inf, 0 and 0).
    prefix_top = own_scores.new_full((batch, kv_heads, group * q_len, 1), float("-inf"))
    prefix_sum = own_scores.new_zeros((batch, kv_heads, group * q_len, 1))
    prefix_out = own_scores.new_zeros((batch, kv_heads, group * q_len, dim))
    for prefix_keys, prefix_values, first, end in prefixes:
        rows = end - first
        if rows <= 0 or prefix_keys.shape[2] == 0:
            continue
        # The rows' queries against their one prefix: [Hkv, rows * group * q, P].
        q_all = q[first:end].transpose(0, 1).reshape(kv_heads, rows * group * q_len, dim)
        scores = torch.matmul(q_all, prefix_keys[0].float().transpose(-1, -2)) * scaling
        top = scores.amax(-1, keepdim=True)
        weights = (scores - top).exp()
        out = torch.matmul(weights, prefix_values[0].float())

        def back(t: torch.Tensor) -> torch.Tensor:  # [Hkv, rows * group * q, x] -> [rows, Hkv, group * q, x]
            return t.reshape(kv_heads, rows, group * q_len, t.shape[-1]).transpose(0, 1)

        prefix_top[first:end], prefix_sum[first:end], prefix_out[first:end] = back(top), back(weights.sum(-1, keepdim=True)), back(out)
    top = torch.maximum(prefix_top, own_scores.amax(-1, keepdim=True))
    own_weights, prefix_scale = (own_scores - top).exp(), (prefix_top - top).exp()
    total = prefix_sum * prefix_scale + own_weights.sum(-1, keepdim=True)
    out = (prefix_out * prefix_scale + torch.matmul(own_weights, values)) / total
    return out.reshape(batch, heads, q_len, dim).to(dtype)


def copied_prefixes(prefixes: list[tuple[torch.Tensor, torch.Tensor, int, int]], batch: int, width: int):
    """Every row's prefix keys and values [B, Hkv, width, d], left-padded with zeros to `width`
    (rows in no range: all zeros); what the mask hides there is never read."""
    keys0, values0 = prefixes[0][0], prefixes[0][1]
    keys = keys0.new_zeros((batch, keys0.shape[1], width, keys0.shape[3]))
    values = values0.new_zeros((batch, values0.shape[1], width, values0.shape[3]))
    for prefix_keys, prefix_values, first, end in prefixes:
        length = prefix_keys.shape[2]
        if length:
            keys[first:end, :, width - length :] = prefix_keys
            values[first:end, :, width - length :] = prefix_values
    return keys, values


def _apply_mask(scores: torch.Tensor, mask: torch.Tensor, group: int) -> torch.Tensor:
    """`scores` [B, Hkv, group * q, S] with a [B, 1, q, S] mask (bool or additive) applied to
    every query head."""
    mask = mask.repeat(1, 1, group, 1)
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores + mask


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """transformers attention function: the shared-prefix path for keys a `SharedPrefixLayer`
    returned, the library's SDPA for anything else."""
    width, prefixes = getattr(key, PREFIX_ATTR, (0, None))
    if prefixes is not None and query.shape[2] > 1:
        # A prompt pass (many queries a row): the prefixes are copied into the rows for this one
        # call, since SDPA's fused kernel beats the two-part product when scores are q x P a row
        # (2.3x on the tiny model's mf rollout). Decoding reads each once a step, which is what pays.
        prefix_keys, prefix_values = copied_prefixes(prefixes, query.shape[0], width)
        key, value = torch.cat([prefix_keys, key], dim=2), torch.cat([prefix_values, value], dim=2)
        prefixes = None
    if prefixes is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = attend_with_shared_prefixes(query, key, value, attention_mask, prefixes, width, scale)
    return out.transpose(1, 2).contiguous(), None


def use_shared_prefix_attention(model) -> bool:
    """Switch `model` (an SDPA model) to `attention`; False (model unchanged) for any other
    attention implementation, whose caches then never share prefixes this way."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(ATTENTION_NAME, attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    model.set_attn_implementation(ATTENTION_NAME)
    return True
