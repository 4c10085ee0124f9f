"""The local engine on the real default model: batched generation, seeds, scoring masks."""

from __future__ import annotations

import numpy as np
import pytest

from mfray.llm.base import SamplingParams

pytestmark = pytest.mark.integration

TOPICS = [
    "The city says the water is safe.",
    "A viral post claims the bridge will close for a year because of cracks found by inspectors last week.",
    "Free phones for everyone who reposts!",
    "Scientists report a new species of frog.",
]


def chat(i: int) -> list[dict]:
    # Prompts of very different lengths, so batches really are padded.
    topic = TOPICS[i % len(TOPICS)] + " More detail." * (i % 5)
    return [{"role": "user", "content": f"Write a one-line reply to this post: {topic}"}]


def test_generates_a_batch_of_32_and_scores_with_prompt_tokens_masked(engine):
    prompts = [chat(i) for i in range(32)]
    sp = SamplingParams(max_new_tokens=16, first_line=True, seed=7)
    gens = engine.generate_sync(prompts, sp)
    assert len(gens) == 32
    assert all(g.completion_tokens >= 1 for g in gens)
    assert all("\n" not in g.text for g in gens)
    assert sum(1 for g in gens if g.text) >= 28  # a 135M model rarely returns nothing
    lengths = {g.prompt_tokens for g in gens}
    assert len(lengths) > 3  # padding really happened

    completions = [g.text or "ok" for g in gens]
    batched_right = engine.score_sync(prompts, completions, padding_side="right")
    batched_left = engine.score_sync(prompts, completions, padding_side="left")
    for i in range(0, 32, 3):  # unbatched reference for a spread of rows
        single = engine.score_sync([prompts[i]], [completions[i]])[0]
        n_tokens = len(engine.tokenizer(completions[i], add_special_tokens=False)["input_ids"])
        assert len(single) == n_tokens  # exactly the completion's tokens are scored
        np.testing.assert_allclose(batched_right[i], single, atol=1e-4)
        np.testing.assert_allclose(batched_left[i], single, atol=1e-4)
        assert all(lp <= 0 for lp in single)


def test_same_seed_same_sample_whatever_the_batch(engine):
    prompts = [chat(i) for i in range(6)]
    sp = SamplingParams(max_new_tokens=12, seed=123)
    full = engine.generate_sync(prompts, sp)
    again = engine.generate_sync(prompts, sp)
    assert [g.text for g in full] == [g.text for g in again]
    # Request 0 alone gets seed 123 as in the full batch: same text despite other batch mates.
    alone = engine.generate_sync(prompts[:1], sp)
    assert alone[0].text == full[0].text
    other = engine.generate_sync(prompts, SamplingParams(max_new_tokens=12, seed=124))
    assert [g.text for g in other] != [g.text for g in full]
    # Per-prompt seeds (how a server merges many clients' requests): prompt 4 seeded 127 and
    # prompt 2 seeded 125, in another order and company, sample as in the full batch.
    mixed = engine.generate_sync([prompts[4], prompts[2]], sp, seeds=[127, 125])
    assert [g.text for g in mixed] == [full[4].text, full[2].text]
    with pytest.raises(ValueError, match="one seed per prompt"):
        engine.generate_sync(prompts, sp, seeds=[1])


def test_finished_rows_leave_the_batch_without_changing_any_row(engine):
    # Four prompts the model continues for many tokens and four it answers in a word or two: once
    # half the rows have finished they leave the decode batch. Each row's text is still the one it
    # gets alone (a batch of one never drops rows), and fewer rows were forwarded than the
    # 8 x (longest - 1) a batch that keeps its finished rows forwards.
    stories = ["Free phones for everyone!", "Scientists report a new frog.", "The bridge has collapsed.",
               "A celebrity was arrested."]
    long = [f"Posts on Twitter.\n\nStory: {s}\n@user: wow\n@user: this is" for s in stories]
    short = [f"Votes, one word per line.\n@user: yes\n@user: no\n@user: yes\n@user: no\n@user: {w}\n@user:"
             for w in ("yes", "no", "maybe", "yes")]
    sp = SamplingParams(temperature=0, max_new_tokens=40, first_line=True)
    before = engine.stats.decode_rows
    together = engine.generate_sync(long + short, sp)
    forwarded = engine.stats.decode_rows - before
    lengths = [g.completion_tokens for g in together]
    assert min(lengths) < max(lengths) // 4  # the mix this test needs: some rows end early
    assert forwarded < len(together) * (max(lengths) - 1)
    assert [g.text for g in together] == [engine.generate_sync([p], sp)[0].text for p in long + short]


def test_greedy_is_deterministic_and_stops_at_max_tokens(engine):
    sp = SamplingParams(temperature=0, max_new_tokens=5)
    a, b = engine.generate_sync([chat(1), chat(1)], sp)
    assert a.text == b.text
    assert a.completion_tokens <= 5


def test_greedy_tokens_are_the_argmax_of_scoring(engine):
    # Generation and scoring share the model: the greedy continuation must be, token by token,
    # the most likely one, so its score is at least the score of a perturbed continuation.
    prompt = chat(2)
    greedy = engine.generate_sync([prompt], SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=8))[0]
    best = sum(engine.score_sync([prompt], [greedy.text])[0])
    worse = sum(engine.score_sync([prompt], [greedy.text + " banana"])[0])
    assert best > worse


def test_tiny_random_model_runs_the_same_code_path(tiny_engine):
    gens = tiny_engine.generate_sync([chat(i) for i in range(4)], SamplingParams(max_new_tokens=8, seed=0))
    assert all(g.completion_tokens >= 1 for g in gens)
    scores = tiny_engine.score_sync([chat(0)], ["hello world"])
    assert len(scores[0]) == 2


async def test_async_api(engine):
    gens = await engine.generate([chat(0)], SamplingParams(max_new_tokens=4, seed=1))
    assert gens[0].completion_tokens >= 1
    scores = await engine.score([chat(0)], ["Sure."])
    assert len(scores[0]) >= 1
