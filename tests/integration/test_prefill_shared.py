"""Prefill with shared prefixes (mfray.llm.prefill) gives what a plain padded batch gives: the
same next-token logits, a KV cache that decodes the same, the same greedy completions."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mfray.llm.base import SamplingParams
from mfray.llm.prefill import prefill, shared_prefix_runs

pytestmark = pytest.mark.integration


def step_prompts(topic: str, n: int) -> list[list[dict]]:
    """Policy-like prompts of one simulated step: a long common part, then each user's profile."""
    common = (
        "You are simulating one social-media user's reaction to a discussion topic.\n"
        f"Discussion topic: {topic}\nCurrent mean field: most users doubt the claim and ask for sources.\n"
    )
    return [[{"role": "user", "content": common + f"User profile: user {i}, " + "likes cats. " * (i % 3)}] for i in range(n)]


def mixed_batch(engine) -> list[list[int]]:
    """Two events' step prompts and two unrelated prompts, sorted as the engine sorts them."""
    chats = step_prompts("Free phones for everyone!", 5) + step_prompts("The bridge will close for a year.", 3)
    chats += [[{"role": "user", "content": "Say hi."}], [{"role": "user", "content": "Name a river in Asia, please."}]]
    return sorted(engine.encode(c) for c in chats)


def test_shared_prefill_logits_and_next_step_match_plain(tiny_engine):
    prompts = mixed_batch(tiny_engine)
    runs = shared_prefix_runs(prompts)
    # Each event's step is a run sharing its long common part; the two unrelated prompts share
    # only the chat template's header.
    assert sorted(end - start for start, end, _ in runs) == [2, 3, 5], runs
    assert sorted(shared for _, _, shared in runs)[1] > 60, runs
    model, pad = tiny_engine.model, tiny_engine.tokenizer.pad_token_id
    with torch.inference_mode():
        shared = prefill(model, prompts, pad, "cpu", share_prefixes=True)
        plain = prefill(model, prompts, pad, "cpu", share_prefixes=False)
        # Each run's prefix is kept once, beside its rows (mfray.llm.shared_attention).
        ranges = [(first, end) for _, _, first, end in shared.cache.layers[0].prefixes]
        assert ranges == [(start, end) for start, end, n in runs if n], (ranges, runs)
        torch.testing.assert_close(shared.logits, plain.logits, atol=1e-4, rtol=1e-4)
        assert shared.last_position.squeeze(1).tolist() == [len(p) - 1 for p in prompts]
        assert shared.mask.sum(1).tolist() == [len(p) for p in prompts]
        # One decoding step with the same tokens on each cache: the layouts differ (padding
        # between prefix and suffix), what each row attends to must not.
        token = torch.arange(len(prompts))[:, None] + 100
        outs = []
        for first in (shared, plain):
            mask = torch.cat([first.mask, torch.ones((len(prompts), 1), dtype=first.mask.dtype)], dim=1)
            out = model(input_ids=token, attention_mask=mask, position_ids=first.last_position + 1,
                        past_key_values=first.cache, use_cache=True)
            outs.append(out.logits[:, -1, :])
        torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)


def test_engine_greedy_completions_same_with_and_without_sharing(engine):
    chats = step_prompts("Free phones for everyone!", 6) + step_prompts("Scientists report a new frog.", 4)
    sp = SamplingParams(temperature=0, max_new_tokens=12)
    plain_engine = dataclasses.replace(engine, share_prefixes=False)
    shared_engine = dataclasses.replace(engine, share_prefixes=True)
    assert [g.text for g in shared_engine.generate_sync(chats, sp)] == [g.text for g in plain_engine.generate_sync(chats, sp)]


def decode_five_steps(model, cache, mask, positions, keep: torch.Tensor | None = None):
    """Five decode steps on a prefill's cache (row r's token at step s is r + 100 + s); before the
    third, the rows not in `keep` (default: every other row) leave the batch (finished
    generations). A cache reserved with room 3 grows past it. Returns the steps' last-position
    logits, concatenated, and the cache."""
    logits, rows = [], torch.arange(mask.shape[0])
    keep = torch.arange(1, mask.shape[0], 2) if keep is None else keep
    for step in range(5):
        if step == 2:
            rows = rows[keep]
            cache.batch_select_indices(keep)
            mask, positions = mask[keep], positions[keep]
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype)], dim=1)
        positions = positions + 1
        out = model(input_ids=rows[:, None] + 100 + step, attention_mask=mask, position_ids=positions,
                    past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits.append(out.logits[:, -1, :])
    return torch.cat(logits), cache


def test_the_reserved_cache_decodes_as_the_concatenating_one(tiny_engine):
    from mfray.llm.prefill import ReservedLayer, reserve

    prompts = mixed_batch(tiny_engine)
    model, pad = tiny_engine.model, tiny_engine.tokenizer.pad_token_id
    with torch.inference_mode():
        runs = []
        for room in (0, 3):  # 0: the prefill's own (concatenating) layers; 3 slots, then growing past them
            first = prefill(model, prompts, pad, "cpu", share_prefixes=True)
            cache, mask, positions = reserve(first.cache, room), first.mask, first.last_position
            # Slots to spare in every layer: `room` of them (0: each token concatenated onto the cache).
            spare = {layer._keys.shape[2] - layer.keys.shape[2] if isinstance(layer, ReservedLayer) else 0 for layer in cache.layers}
            assert spare == {room}
            logits, cache = decode_five_steps(model, cache, mask, positions)
            assert cache.get_seq_length() == first.mask.shape[1] + 5
            runs.append(logits)
        torch.testing.assert_close(runs[0], runs[1], atol=1e-5, rtol=1e-5)


def test_one_run_keeps_its_prefix_once_and_decodes_as_the_plain_batch(tiny_engine):
    """A batch that is one run (one step of one event) keeps the shared prefix once
    (SharedPrefixLayer, mfray.llm.shared_attention); its logits through prefill and decoding, with
    rows leaving the batch and the cache growing past its room, are those of a plain padded batch."""
    from mfray.llm.prefill import SharedPrefixLayer, reserve

    prompts = sorted(tiny_engine.encode(c) for c in step_prompts("Free phones for everyone!", 6))
    (_, _, shared_len), = shared_prefix_runs(prompts)
    model, pad = tiny_engine.model, tiny_engine.tokenizer.pad_token_id
    with torch.inference_mode():
        logits = []
        for share in (True, False):
            first = prefill(model, prompts, pad, "cpu", share_prefixes=share)
            if share:
                layer = first.cache.layers[0]
                assert isinstance(layer, SharedPrefixLayer)
                (prefix_keys, _, row, end), = layer.prefixes
                assert prefix_keys.shape[0] == 1 and prefix_keys.shape[2] == shared_len and (row, end) == (0, 6)
                assert layer.keys.shape[2] == first.mask.shape[1] - shared_len  # rows hold only their own tokens
            steps, cache = decode_five_steps(model, reserve(first.cache, 3), first.mask, first.last_position)
            assert cache.get_seq_length() == first.mask.shape[1] + 5
            logits.append(torch.cat([first.logits, steps]))
        torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=1e-4)


def test_rows_of_the_longest_prefix_leaving_keep_the_mask_columns(tiny_engine):
    """Every row of the batch's longest prefix finishes first: the rows that stay still have the
    mask's columns for that prefix (all padding for them), and decode as a plain padded batch.
    (The fidelity sweep's engine failed here, 2026-12-07: attention took the prefix width from
    the prefixes that remained, not from the mask.)"""
    from mfray.llm.prefill import reserve

    prompts = mixed_batch(tiny_engine)
    start, end, _ = max(shared_prefix_runs(prompts), key=lambda run: run[2])
    keep = torch.tensor([row for row in range(len(prompts)) if not start <= row < end])
    model, pad = tiny_engine.model, tiny_engine.tokenizer.pad_token_id
    with torch.inference_mode():
        logits = []
        for share in (True, False):
            first = prefill(model, prompts, pad, "cpu", share_prefixes=share)
            steps, _ = decode_five_steps(model, reserve(first.cache, 3), first.mask, first.last_position, keep)
            logits.append(steps)
        torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=1e-4)


def test_engine_greedy_completions_of_one_step_same_with_the_prefix_kept_once(engine):
    chats = step_prompts("Scientists report a new frog.", 8)
    sp = SamplingParams(temperature=0, max_new_tokens=16)
    assert engine.model.config._attn_implementation == "mfray_shared_prefix_sdpa"
    plain_engine = dataclasses.replace(engine, share_prefixes=False)
    shared_engine = dataclasses.replace(engine, share_prefixes=True)
    assert [g.text for g in shared_engine.generate_sync(chats, sp)] == [g.text for g in plain_engine.generate_sync(chats, sp)]
