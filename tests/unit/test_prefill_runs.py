"""Splitting a sorted batch into runs of prompts that share a prefix (mfray.llm.prefill), and the
rows of a SharedPrefixLayer leaving. Costs below are worked by hand with PASS_COST_TOKENS = 32."""

from __future__ import annotations

import pytest
import torch

from mfray.llm.prefill import PASS_COST_TOKENS, SharedPrefixLayer, common_prefix_length, run_cost, shared_prefix_runs


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([5], [6]) == 0
    assert common_prefix_length([], [1]) == 0


def test_run_cost():
    assert PASS_COST_TOKENS == 32
    assert run_cost(3, 63, 62) == (62 + 32) + 3 * 1 + 32  # prefix pass, then 3 one-token suffixes
    assert run_cost(3, 63, 0) == 3 * 63 + 32  # one padded pass
    assert run_cost(1, 42, 0) == 42 + 32


def test_runs_follow_the_longest_shared_prefixes():
    head = [1, 2]  # what every chat shares (the template's system header)
    a = head + list(range(3, 63))  # one event step's common part: 62 tokens
    b = head + [90] * 50  # another's: 52 tokens
    prompts = [a + [10], a + [11], a + [12], b + [13], b + [14], head + [200] * 80]
    # run a: 94 + 3 + 32 = 129 (3 alone: 285; padded: 221); run b: 84 + 2 + 32 = 118 (apart:
    # 170); the last alone: 114 (b and it padded: 3 x 82 + 32 = 278). Total 361; one run sharing
    # the header would cost 34 + 6 x 80 + 32 = 546.
    assert shared_prefix_runs(prompts) == [(0, 3, 62), (3, 5, 52), (5, 6, 0)]


def test_a_run_keeps_one_token_of_its_shortest_prompt():
    same = list(range(100))
    assert shared_prefix_runs([same, same, same]) == [(0, 3, 99)]  # 131 + 3 + 32 = 166
    # [7] * 100 is a prefix of the next prompt: the run shares 99, not 100.
    assert shared_prefix_runs([[7] * 100, [7] * 100 + [8]]) == [(0, 2, 99)]  # 131 + 2 x 2 + 32 = 167


def test_short_prompts_share_a_padded_pass_long_unrelated_ones_go_alone():
    # Three 2-token prompts: one padded pass costs 3 x 2 + 32 = 38, three passes 102.
    assert shared_prefix_runs([[1, 2], [3, 4], [5, 6]]) == [(0, 3, 0)]
    # Long prompts sharing only a 10-token header (mean-field prompts of different events):
    # alone 342 + 142 = 484; padded 2 x 310 + 32 = 652; sharing the header 42 + 2 x 300 + 32 = 674.
    assert shared_prefix_runs([[9] * 10 + [1] * 300, [9] * 10 + [2] * 100]) == [(0, 1, 0), (1, 2, 0)]
    assert shared_prefix_runs([[3, 1]]) == [(0, 1, 0)]
    assert shared_prefix_runs([]) == []


def test_shared_prefix_layer_keeps_rows_in_order_only():
    """Rows leave a SharedPrefixLayer in order (its prefix ranges are recounted); anything that
    would move rows across ranges fails loudly instead of reading another row's prefix."""
    prefix_a, prefix_b = torch.zeros(1, 1, 3, 2), torch.ones(1, 1, 2, 2)
    own = torch.zeros(4, 1, 1, 2)
    layer = SharedPrefixLayer([(prefix_a, prefix_a, 0, 2), (prefix_b, prefix_b, 2, 4)], own, own, room=2)
    layer.batch_select_indices(torch.tensor([1, 2, 3]))  # row 0 leaves: A keeps 1 row, B moves up
    assert [(first, end) for _, _, first, end in layer.prefixes] == [(0, 1), (1, 3)] and layer.prefix_width == 3
    layer.batch_select_indices(torch.tensor([1, 2]))  # A's last row leaves; the width stays
    assert [(first, end) for _, _, first, end in layer.prefixes] == [(0, 2)] and layer.prefix_width == 3
    with pytest.raises(ValueError, match="in order"):
        layer.batch_select_indices(torch.tensor([1, 0]))
    with pytest.raises(NotImplementedError):
        layer.batch_repeat_interleave(2)
    with pytest.raises(NotImplementedError):
        layer.reorder_cache(torch.tensor([1, 0]))
