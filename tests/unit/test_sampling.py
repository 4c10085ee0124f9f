"""Sampling maths and output post-processing, against values worked by hand."""

from __future__ import annotations


import pytest
import torch

from mfray.llm.base import SamplingParams, postprocess
from mfray.llm.local import _sample


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    # logits [2, -1, 0.5]; tokens 0 and 1 already seen, penalty 2 -> [1, -2, 0.5]; greedy picks 0.
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    seen = torch.tensor([[True, True, False]])
    sp = SamplingParams(temperature=0, repetition_penalty=2.0)
    assert _sample(logits, seen, sp, [None]).tolist() == [0]
    # With penalty 5: [0.4, -5, 0.5] -> token 2 wins.
    sp = SamplingParams(temperature=0, repetition_penalty=5.0)
    assert _sample(logits, seen, sp, [None]).tolist() == [2]


def test_top_k_1_is_greedy():
    logits = torch.tensor([[0.1, 3.0, 2.9]])
    seen = torch.zeros_like(logits, dtype=torch.bool)
    sp = SamplingParams(temperature=1.0, top_k=1, top_p=1.0, repetition_penalty=1.0, seed=0)
    gens = [torch.Generator().manual_seed(s) for s in range(1)]
    for _ in range(20):
        assert _sample(logits, seen, sp, gens).tolist() == [1]


def test_top_p_keeps_the_token_that_crosses_the_threshold():
    # probs = softmax(log([0.5, 0.3, 0.2])) = [0.5, 0.3, 0.2]. top_p 0.6: cumulative before each
    # token is [0, 0.5, 0.8]; tokens with mass-before >= 0.6 are dropped -> {0, 1} remain.
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    seen = torch.zeros_like(logits, dtype=torch.bool)
    sp = SamplingParams(temperature=1.0, top_k=0, top_p=0.6, repetition_penalty=1.0)
    gen = torch.Generator().manual_seed(0)
    draws = {_sample(logits, seen, sp, [gen]).item() for _ in range(200)}
    assert draws == {0, 1}


def test_per_row_generators_make_rows_independent():
    logits = torch.zeros((2, 50))
    seen = torch.zeros_like(logits, dtype=torch.bool)
    sp = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    row0 = [_sample(logits, seen, sp, [torch.Generator().manual_seed(5), torch.Generator().manual_seed(s)])[0].item() for s in range(5)]
    assert len(set(row0)) == 1  # row 0's draw ignores what row 1's seed is


def test_postprocess_strips_think_and_keeps_first_line():
    assert postprocess("<think>plan\nmore</think>\n\nHello there\nsecond", first_line=True) == "Hello there"
    assert postprocess("<think>never closed\nstill thinking", first_line=True) == ""
    assert postprocess("  a\nb  ", first_line=False) == "a\nb"
    assert postprocess("\n\n  x  \n", first_line=True) == "x"


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -1}, {"max_new_tokens": 0}, {"repetition_penalty": 0}]
)
def test_bad_sampling_values_are_rejected(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)


