"""Prompt-lookup speculative decoding (mfray.llm.lookup): drafts found by hand, and the check
that keeps the plain sampler's distribution."""

from __future__ import annotations

import pytest
import torch

from mfray.llm.base import SamplingParams
from mfray.llm.lookup import lookup_draft, next_token_probs, verify


def test_draft_follows_the_latest_earlier_occurrence_of_the_longest_ngram():
    # The last 3 tokens (7, 8, 9) occur at 1..3; what followed them is 4, 5 (k = 2).
    assert lookup_draft([0, 7, 8, 9, 4, 5, 6, 7, 8, 9], 2) == [4, 5]
    # No 3-gram or 2-gram repeats; the last token 2 occurred at 1 and at 3: the latest wins.
    assert lookup_draft([1, 2, 3, 2, 5, 2], 3) == [5, 2]
    # Nothing to copy, or no room for a draft.
    assert lookup_draft([1, 2, 3], 4) == []
    assert lookup_draft([1, 2, 1, 2], 0) == []
    # A draft runs to the end of the tokens at most: 1 2 | 1 2 -> what followed the first 1 2.
    assert lookup_draft([1, 2, 1, 2], 5) == [1, 2]


def test_next_token_probs_filters_as_the_sampler_does():
    # Logits ln 5, ln 3, ln 2 (probabilities .5, .3, .2). top-k 2 keeps .5 and .3 -> 5/8, 3/8.
    logits = torch.log(torch.tensor([5.0, 3.0, 2.0]))
    seen = torch.zeros(3, dtype=torch.bool)
    sp = SamplingParams(temperature=1.0, top_p=1.0, top_k=2, repetition_penalty=1.0)
    torch.testing.assert_close(next_token_probs(logits, seen, sp), torch.tensor([5 / 8, 3 / 8, 0.0]))
    # top-p 0.6: .5 is before the crossing, .3 crosses it (kept), .2 dropped -> the same 5/8, 3/8.
    sp = SamplingParams(temperature=1.0, top_p=0.6, top_k=0, repetition_penalty=1.0)
    torch.testing.assert_close(next_token_probs(logits, seen, sp), torch.tensor([5 / 8, 3 / 8, 0.0]))
    # Greedy: all mass on the argmax.
    sp = SamplingParams(temperature=0.0, repetition_penalty=1.0)
    assert next_token_probs(logits, seen, sp).tolist() == [1.0, 0.0, 0.0]


def test_verify_keeps_a_sure_draft_and_never_emits_an_impossible_one():
    gen = torch.Generator().manual_seed(0)
    assert verify(torch.tensor([0.0, 1.0, 0.0]), 1, gen) == (1, True)
    for _ in range(50):
        token, kept = verify(torch.tensor([0.6, 0.0, 0.4]), 1, gen)
        assert not kept and token in (0, 2)


@pytest.mark.parametrize("draft", [0, 1, 2])
def test_verified_tokens_have_the_target_distribution(draft):
    """Whatever the draft, the emitted token is distributed as p: kept with p(d), otherwise
    drawn from p without d (20,000 draws; the standard error of a frequency is at most 0.0036)."""
    p = torch.tensor([0.5, 0.3, 0.2])
    gen = torch.Generator().manual_seed(1 + draft)
    counts = torch.zeros(3)
    for _ in range(20_000):
        counts[verify(p, draft, gen)[0]] += 1
    torch.testing.assert_close(counts / counts.sum(), p, atol=0.015, rtol=0)
