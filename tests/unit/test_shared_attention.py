"""Attention over shared prefixes kept once (mfray.llm.shared_attention) equals attention over each
prefix copied into its rows."""

from __future__ import annotations

import math

import pytest
import torch

from mfray.llm.shared_attention import attend_with_shared_prefixes


def test_hand_worked_one_row_one_head():
    # Scores (scale 1): prefix key 0 -> q.k = 0; own key ln 3 -> ln 3. Weights 1 : 3, so the output
    # is (1 * 4 + 3 * 8) / 4 = 7. With the own key masked only the prefix is left: 4.
    query = torch.tensor([[[[1.0]]]])
    prefix_keys, prefix_values = torch.tensor([[[[0.0]]]]), torch.tensor([[[[4.0]]]])
    keys, values = torch.tensor([[[[math.log(3.0)]]]]), torch.tensor([[[[8.0]]]])
    seen = torch.tensor([[[[True, True]]]])
    out = attend_with_shared_prefixes(query, keys, values, seen, [(prefix_keys, prefix_values, 0, 1)], 1, 1.0)
    assert out.item() == pytest.approx(7.0)
    hidden = torch.tensor([[[[True, False]]]])
    assert attend_with_shared_prefixes(query, keys, values, hidden, [(prefix_keys, prefix_values, 0, 1)], 1, 1.0).item() == pytest.approx(4.0)
    additive = torch.tensor([[[[0.0, torch.finfo(torch.float32).min]]]])
    assert attend_with_shared_prefixes(query, keys, values, additive, [(prefix_keys, prefix_values, 0, 1)], 1, 1.0).item() == pytest.approx(4.0)


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
    out = attend_with_shared_prefixes(query, keys, values, mask, [(prefix_keys, prefix_values, 0, batch)], prefix_len, 0.3)
    expected = reference(query, keys, values, seen, prefix_keys, prefix_values, 0.3)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_half_precision_inputs_come_back_in_their_dtype_close_to_float32():
    g = torch.Generator().manual_seed(1)
    query = torch.randn(2, 4, 1, 16, generator=g)
    prefix_keys, prefix_values = (torch.randn(1, 2, 9, 16, generator=g) for _ in range(2))
    keys, values = (torch.randn(2, 2, 3, 16, generator=g) for _ in range(2))
    exact = attend_with_shared_prefixes(query, keys, values, None, [(prefix_keys, prefix_values, 0, 2)], 9, 0.25)
    half = attend_with_shared_prefixes(*(t.bfloat16() for t in (query, keys, values)), None,
                                       [(prefix_keys.bfloat16(), prefix_values.bfloat16(), 0, 2)], 9, 0.25)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), exact, atol=3e-2, rtol=3e-2)


def test_two_prefixes_and_a_row_without_one_match_sdpa_over_copied_prefixes():
    """Rows 0-1 share a 6-token prefix, rows 2-4 a 3-token one, row 5 has none. Each row's
    columns are its prefix left-padded to 6, then its own 4 tokens; the reference is SDPA over
    exactly those columns, the padding masked."""
    g = torch.Generator().manual_seed(2)
    kv_heads, group, dim, own_len = 2, 2, 8, 4
    query = torch.randn(6, kv_heads * group, 1, dim, generator=g)
    long_k, long_v = (torch.randn(1, kv_heads, 6, dim, generator=g) for _ in range(2))
    short_k, short_v = (torch.randn(1, kv_heads, 3, dim, generator=g) for _ in range(2))
    keys, values = (torch.randn(6, kv_heads, own_len, dim, generator=g) for _ in range(2))
    seen = torch.ones(6, 1, 1, 6 + own_len, dtype=torch.bool)
    seen[2:5, ..., :3] = False  # the short prefix's left padding
    seen[5, ..., :6] = False  # no prefix at all
    seen[1, ..., 6] = False  # row 1's own tokens start with a padding slot
    full_k, full_v = torch.zeros(6, kv_heads, 6, dim), torch.zeros(6, kv_heads, 6, dim)
    full_k[:2], full_v[:2] = long_k, long_v
    full_k[2:5, :, 3:], full_v[2:5, :, 3:] = short_k, short_v
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, torch.cat([full_k, keys], 2).repeat_interleave(group, 1),
        torch.cat([full_v, values], 2).repeat_interleave(group, 1), attn_mask=seen, scale=0.4)
    out = attend_with_shared_prefixes(query, keys, values, seen, [(long_k, long_v, 0, 2), (short_k, short_v, 2, 5)], 6, 0.4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # Rows 0-1 leave the batch: the long prefix is gone, the mask keeps its 6 prefix columns.
    rest = attend_with_shared_prefixes(query[2:], keys[2:], values[2:], seen[2:], [(short_k, short_v, 0, 3)], 6, 0.4)
    torch.testing.assert_close(rest, expected[2:], atol=1e-5, rtol=1e-5)
