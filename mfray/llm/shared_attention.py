"""Attention over a prompt prefix that every row of a batch shares, kept once instead of once a row.

Why: a step's policy prompts share everything up to the agent's profile (mfray.llm.prefill). When
that shared prefix is copied into every row's KV cache, each decode step reads it once a row:
with 16 prompts of ~1,000 shared tokens, attention read ~780 MB a step, as much time as all the
model's linear layers (py-spy of the E136 run and of a 16-prompt batch, 2026-12-07). Here the
prefix stays one copy [1, kv heads, P, dim]; each row's own tokens (the rest of its prompt and
what it generates) sit in its cache as usual. The two parts are attended separately and merged
with their log-sum-exp: one matrix product of all rows' queries against the single prefix, and
the usual per-row product over the rows' own tokens.

Only decoding (one query a row) takes the two-part path; a prompt pass on top of the prefix
copies it into its rows for that call, as SDPA's fused kernel is faster there.
`SharedPrefixLayer` (mfray.llm.prefill) marks the keys it returns with the prefix; `attention` is
registered with transformers as the attention implementation `ATTENTION_NAME` and falls through
to the library's SDPA for keys without it, so the same model serves every other request unchanged.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION_NAME = "mfray_shared_prefix_sdpa"
PREFIX_ATTR = "mfray_shared_prefix"  # attribute of a key tensor: (prefix keys, prefix values)


def attend_with_shared_prefix(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    """Softmax attention of `query` [B, H, q, d] over the shared prefix [1, Hkv, P, d] followed by
    each row's own `keys`/`values` [B, Hkv, S, d]. `mask` [B, 1, q, P + S] (bool, True = seen, or
    additive float) covers both parts, and only its own-token columns are read: every query sees
    the whole prefix (mfray.llm.prefill pads rows after the prefix, never inside it). None means
    the prefix and, causally, the row's own tokens. Query heads are grouped onto key heads as
    `repeat_kv` does (head h reads key head h // (H / Hkv)). Computed in float32 whatever the
    inputs' dtype, as SDPA accumulates. Returns [B, H, q, d] in the query's dtype."""
    dtype = query.dtype
    query, keys, values = query.float(), keys.float(), values.float()
    prefix_keys, prefix_values = prefix_keys.float(), prefix_values.float()
    batch, heads, q_len, dim = query.shape
    kv_heads, prefix_len, own_len = keys.shape[1], prefix_keys.shape[2], keys.shape[2]
    group = heads // kv_heads
    q = query.reshape(batch, kv_heads, group * q_len, dim)
    # All rows' queries against the one prefix: [Hkv, B * group * q, P].
    q_all = q.transpose(0, 1).reshape(kv_heads, batch * group * q_len, dim)
    prefix_scores = torch.matmul(q_all, prefix_keys[0].transpose(-1, -2)) * scaling
    own_scores = torch.matmul(q, keys.transpose(-1, -2)) * scaling  # [B, Hkv, group * q, S]
    if mask is None:
        causal = torch.ones((q_len, own_len), dtype=torch.bool, device=query.device).tril(own_len - q_len)
        own_scores = own_scores.masked_fill(~causal.repeat(group, 1), float("-inf"))
    else:
        own_scores = _apply_mask(own_scores, mask[..., prefix_len:], group)
    prefix_scores = prefix_scores.reshape(kv_heads, batch, group * q_len, prefix_len).transpose(0, 1)
    top = torch.maximum(prefix_scores.amax(-1, keepdim=True), own_scores.amax(-1, keepdim=True))
    prefix_weights, own_weights = (prefix_scores - top).exp(), (own_scores - top).exp()
    total = prefix_weights.sum(-1, keepdim=True) + own_weights.sum(-1, keepdim=True)
    # Prefix weights back to [Hkv, B * group * q, P] for one product with the prefix values.
    prefix_out = torch.matmul(prefix_weights.transpose(0, 1).reshape(kv_heads, -1, prefix_len), prefix_values[0])
    prefix_out = prefix_out.reshape(kv_heads, batch, group * q_len, dim).transpose(0, 1)
    out = (prefix_out + torch.matmul(own_weights, values)) / total
    return out.reshape(batch, heads, q_len, dim).to(dtype)


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
    prefix = getattr(key, PREFIX_ATTR, None)
    if prefix is not None and query.shape[2] > 1:
        # A prompt pass (many queries a row): the prefix is copied into the rows for this one
        # call, since SDPA's fused kernel beats the two-part product when scores are q x P a row
        # (2.3x on the tiny model's mf rollout). Decoding reads it once a step, which is what pays.
        batch = query.shape[0]
        key = torch.cat([prefix[0].expand(batch, -1, -1, -1), key], dim=2)
        value = torch.cat([prefix[1].expand(batch, -1, -1, -1), value], dim=2)
        prefix = None
    if prefix is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = attend_with_shared_prefix(query, key, value, attention_mask, prefix[0], prefix[1], scale)
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
