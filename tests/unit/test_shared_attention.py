"""Attention over a shared prefix kept once (mfray.llm.shared_attention) equals attention over the
prefix copied into every row."""

from __future__ import annotations

import math

import pytest
import torch

from mfray.llm.shared_attention import attend_with_shared_prefix


def test_hand_worked_one_row_one_head():
    # Scores (scale 1): prefix key 0 -> q.k = 0; own key ln 3 -> ln 3. Weights 1 : 3, so the output
    # is (1 * 4 + 3 * 8) / 4 = 7. With the own key masked only the prefix is left: 4.
    query = torch.tensor([[[[1.0]]]])
    prefix_keys, prefix_values = torch.tensor([[[[0.0]]]]), torch.tensor([[[[4.0]]]])
    keys, values = torch.tensor([[[[math.log(3.0)]]]]), torch.tensor([[[[8.0]]]])
    seen = torch.tensor([[[[True, True]]]])
    out = attend_with_shared_prefix(query, keys, values, seen, prefix_keys, prefix_values, 1.0)
    assert out.item() == pytest.approx(7.0)
    hidden = torch.tensor([[[[True, False]]]])
    assert attend_with_shared_prefix(query, keys, values, hidden, prefix_keys, prefix_values, 1.0).item() == pytest.approx(4.0)
    additive = torch.tensor([[[[0.0, torch.finfo(torch.float32).min]]]])
    assert attend_with_shared_prefix(query, keys, values, additive, prefix_keys, prefix_values, 1.0).item() == pytest.approx(4.0)


def reference(query, keys, values, mask, prefix_keys, prefix_values, scale):
    """SDPA over the prefix copied into every row and every key head repeated for its queries."""
    batch, heads = query.shape[:2]
    group = heads // keys.shape[1]
    full_k = torch.cat([prefix_keys.expand(batch, -1, -1, -1), keys], dim=2).repeat_interleave(group, dim=1)
    full_v = torch.cat([prefix_values.expand(batch, -1, -1, -1), values], dim=2).repeat_interleave(group, dim=1)
    return torch.nn.functional.scaled_dot_product_attention(query, full_k, full_v, attn_mask=mask, scale=scale)


@pytest.mark.parametrize("q_len", [1, 4])
@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_matches_sdpa_over_copied_prefix(q_len, mask_kind):
    g = torch.Generator().manual_seed(0)
    batch, kv_heads, group, dim, prefix_len, own_len = 3, 2, 3, 8, 7, 5
    query = torch.randn(batch, kv_heads * group, q_len, dim, generator=g)
    prefix_keys, prefix_values = (torch.randn(1, kv_heads, prefix_len, dim, generator=g) for _ in range(2))
    keys, values = (torch.randn(batch, kv_heads, own_len, dim, generator=g) for _ in range(2))
    # Each row's own tokens: row r starts with r padding slots (left padding after the prefix),
    # then its tokens, causal among the last q_len.
    seen = torch.ones(batch, 1, q_len, prefix_len + own_len, dtype=torch.bool)
    for r in range(batch):
        seen[r, :, :, prefix_len: prefix_len + r] = False
    causal = torch.ones(q_len, own_len, dtype=torch.bool).tril(own_len - q_len)
    seen[..., prefix_len:] &= causal
    if mask_kind == "none":  # no padding: causal over the own tokens only
        seen = torch.ones(batch, 1, q_len, prefix_len + own_len, dtype=torch.bool)
        seen[..., prefix_len:] = causal
        mask = None
    elif mask_kind == "float":
        mask = torch.zeros(seen.shape).masked_fill(~seen, torch.finfo(torch.float32).min)
    else:
        mask = seen
    out = attend_with_shared_prefix(query, keys, values, mask, prefix_keys, prefix_values, 0.3)
    expected = reference(query, keys, values, seen, prefix_keys, prefix_values, 0.3)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_half_precision_inputs_come_back_in_their_dtype_close_to_float32():
    g = torch.Generator().manual_seed(1)
    query = torch.randn(2, 4, 1, 16, generator=g)
    prefix_keys, prefix_values = (torch.randn(1, 2, 9, 16, generator=g) for _ in range(2))
    keys, values = (torch.randn(2, 2, 3, 16, generator=g) for _ in range(2))
    exact = attend_with_shared_prefix(query, keys, values, None, prefix_keys, prefix_values, 0.25)
    half = attend_with_shared_prefix(*(t.bfloat16() for t in (query, keys, values)), None,
                                     prefix_keys.bfloat16(), prefix_values.bfloat16(), 0.25)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), exact, atol=3e-2, rtol=3e-2)
