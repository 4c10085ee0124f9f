"""Prompt-lookup speculative decoding in the local engine (mfray.llm.lookup), default model, on a
real timeline mean-field prompt: what it copies from the prompt it checks in few passes, greedy
text is plain greedy text, and a row's sample depends only on its prompt and seed."""

from __future__ import annotations

import dataclasses

import pytest

from mfray.llm.base import SamplingParams
from mfray.prompts.render import mean_field_prompt

pytestmark = pytest.mark.integration

PREVIOUS = (
    "Stance: most users repeat the claim; a few question it.\nOpinions: the story is alarming; some think it is fake.\n"
    "Emotions: mostly calm, some surprise and fear.\nBehaviour: mostly reposts of the headline with a link.\n"
    "Belief: most users believe it, a few doubt it.\nIntent: mostly spreading the news, a few questions."
)


def prompts() -> list[str]:
    comments = [{"text": t, "state": ""} for t in ("Is this real? Source please.", "Wow, sharing this now!", "Fake, again.")]
    return [
        mean_field_prompt("timeline", "en", "Helium-infused wine goes on sale in Paris", PREVIOUS, comments),
        mean_field_prompt("timeline", "en", "A bridge in Lisbon will close for a year", PREVIOUS, comments[:2]),
    ]


def test_greedy_text_is_plain_greedy_text_in_far_fewer_passes(engine):
    plain = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=60)
    rows_before = engine.stats.decode_rows
    expected = engine.generate_sync(prompts(), plain)
    plain_rows = engine.stats.decode_rows - rows_before
    rows_before = engine.stats.decode_rows
    got = engine.generate_sync(prompts(), dataclasses.replace(plain, lookup=10))
    lookup_passes = engine.stats.decode_rows - rows_before
    assert [g.text for g in got] == [g.text for g in expected]
    assert [g.completion_tokens for g in got] == [g.completion_tokens for g in expected]
    # The mean field copies most of the previous one: each pass keeps several drafted tokens.
    assert lookup_passes < plain_rows / 3, (lookup_passes, plain_rows)


def test_a_sampled_row_depends_only_on_its_prompt_and_seed(engine):
    sp = SamplingParams(temperature=0.8, top_p=0.85, top_k=50, repetition_penalty=1.0, max_new_tokens=40, lookup=10)
    both = engine.generate_sync(prompts(), sp, seeds=[11, 12])
    alone = engine.generate_sync(prompts()[1:], sp, seeds=[12])
    assert both[1].text == alone[0].text and both[1].text
    again = engine.generate_sync(prompts(), sp, seeds=[11, 12])
    assert [g.text for g in again] == [g.text for g in both]
