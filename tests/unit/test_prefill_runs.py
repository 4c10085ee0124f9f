"""Splitting a sorted batch into runs of prompts that share a prefix (mfray.llm.prefill)."""

from __future__ import annotations

from mfray.llm.prefill import common_prefix_length, shared_prefix_runs


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([5], [6]) == 0
    assert common_prefix_length([], [1]) == 0


def test_runs_follow_the_longest_shared_prefixes():
    head = [1, 2]  # what every chat shares (the template's system header)
    a = head + [3, 4, 5, 6, 7, 8]  # one event step's common part
    b = head + [9, 9, 9, 9, 9]  # another's
    prompts = [a + [10], a + [11], a + [12], b + [13], b + [14], head + [20]]
    # Worked by hand: runs a (2 x 8 saved) and b (1 x 7 saved), the last prompt alone: 23 tokens
    # saved. One run of all six shares only the header: 5 x 2 = 10. a + b with the last: 16 + 1 x 2 = 18.
    assert shared_prefix_runs(prompts) == [(0, 3, 8), (3, 5, 7), (5, 6, 0)]


def test_a_run_keeps_one_token_of_its_shortest_prompt():
    assert shared_prefix_runs([[4, 5, 6], [4, 5, 6], [4, 5, 6]]) == [(0, 3, 2)]
    # [7, 7] is a prefix of the next prompt: the run shares 1 token (2 - 1), saving 1; apart, 0.
    assert shared_prefix_runs([[7, 7], [7, 7, 8]]) == [(0, 2, 1)]


def test_nothing_shared_means_single_prompts():
    assert shared_prefix_runs([[1, 2], [3, 4], [5, 6]]) == [(0, 1, 0), (1, 2, 0), (2, 3, 0)]
    assert shared_prefix_runs([[3, 1]]) == [(0, 1, 0)]
    assert shared_prefix_runs([]) == []
