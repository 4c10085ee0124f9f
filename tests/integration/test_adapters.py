"""LoRA adapters on the LocalEngine, with the tiny random Llama: the test adapters (tests/adapters.py)
really change the output, so routing tests can tell base, adapter A and adapter B apart; untrained
adapters (mfray.train.lora.init_adapters, B = 0) compute exactly the base, which is why routing
tests must not use them; and the engine applies exactly the adapter each call names, in any order
of calls, as checked against engines whose weights have that adapter merged in (no adapter
switching at call time)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mfray.llm.base import SamplingParams
from mfray.llm.local import LocalEngine
from mfray.llm.models import load_model_and_tokenizer

from .conftest import TINY_ADAPTER_NAMES

pytestmark = pytest.mark.integration

GREEDY = SamplingParams(temperature=0, max_new_tokens=6)
SAMPLED = SamplingParams(seed=11, max_new_tokens=6)
COMPLETIONS = ["Sounds fake.", "Where is the source?", "ok", "I doubt it, honestly."]


def chat(i: int) -> list[dict]:
    topic = ["The city says the water is safe.", "Free phones for everyone who reposts!"][i % 2] + " More detail." * i
    return [{"role": "system", "content": "You reply to social media posts."},
            {"role": "user", "content": f"[{i}] Write a one-line reply to this post: {topic}"}]


PROMPTS = [chat(i) for i in range(4)]


def outputs(engine: LocalEngine, adapter: str | None):
    """Greedy texts, seeded sampled texts and completion log-probs under one adapter (None: base)."""
    greedy = [g.text for g in engine.generate_sync(PROMPTS, GREEDY, adapter=adapter)]
    sampled = [g.text for g in engine.generate_sync(PROMPTS, SAMPLED, adapter=adapter)]
    return greedy, sampled, engine.score_sync(PROMPTS, COMPLETIONS, adapter=adapter)


def max_logprob_gap(a: list[list[float]], b: list[list[float]]) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def merged(tiny_model_dir, tiny_adapters) -> dict[str | None, LocalEngine]:
    """Plain engines, one per adapter with its LoRA merged into the weights, and the base (None)."""
    from peft import PeftModel

    engines: dict[str | None, LocalEngine] = {None: LocalEngine.load(str(tiny_model_dir))}
    for name, path in tiny_adapters.items():
        base, tokenizer = load_model_and_tokenizer(tiny_model_dir, "float32", "cpu")
        model = PeftModel.from_pretrained(base, path).merge_and_unload().eval()
        engines[name] = LocalEngine(model=model, tokenizer=tokenizer, device="cpu")
    return engines


def test_test_adapters_change_greedy_output_and_logprobs(tiny_adapter_engine):
    got = {a: outputs(tiny_adapter_engine, a) for a in (None, *TINY_ADAPTER_NAMES)}
    for a, b in itertools.combinations(got, 2):
        assert got[a][0] != got[b][0], f"greedy generations of {a} and {b} are the same: {got[a][0]}"
        assert got[a][1] != got[b][1], f"sampled generations of {a} and {b} are the same: {got[a][1]}"
        assert max_logprob_gap(got[a][2], got[b][2]) > 0.05, f"{a} and {b} score alike"


def test_test_adapters_are_seeded_by_name(tiny_model_dir, tiny_adapters, tmp_path):
    from safetensors.torch import load_file

    from tests.adapters import write_random_lora_adapters

    def weights(path):
        return load_file(f"{path}/adapter_model.safetensors")

    again = write_random_lora_adapters(tiny_model_dir, tmp_path, ["ib_policy"])
    first, second = weights(tiny_adapters["ib_policy"]), weights(again["ib_policy"])
    assert first.keys() == second.keys() and any("lora_B" in k for k in first)
    assert all(np.array_equal(first[k].numpy(), second[k].numpy()) for k in first)  # same seed, same name
    other = weights(tiny_adapters["ib_mean_field"])
    assert all(not np.array_equal(first[k].numpy(), other[k].numpy()) for k in first if "lora_B" in k)
    assert all(first[k].abs().max() > 0 for k in first if "lora_B" in k)


def test_engine_applies_exactly_the_named_adapter_in_any_order(tiny_adapter_engine, merged):
    # Interleaved: a switch to an adapter, back to the base and to another adapter must each
    # take effect (a stale adapter or a base call that leaves the adapter disabled would show).
    for adapter in [None, "ib_policy", None, "ib_mean_field", "sft", "ib_policy", None, "sft"]:
        greedy, sampled, scores = outputs(tiny_adapter_engine, adapter)
        want_greedy, want_sampled, want_scores = outputs(merged[adapter], adapter=None)
        assert greedy == want_greedy, adapter
        assert sampled == want_sampled, adapter
        for r, d in zip(scores, want_scores, strict=True):
            assert len(r) == len(d) > 0
            np.testing.assert_allclose(r, d, atol=1e-4, err_msg=str(adapter))


def test_untrained_adapters_compute_the_base(tiny_model_dir, tmp_path, tiny_engine):
    # Why routing tests use the random adapters: init_adapters' (the right start for training)
    # are indistinguishable from the base model.
    from mfray.train.lora import init_adapters

    paths = init_adapters(str(tiny_model_dir), tmp_path, names=("ib_policy",), rank=4, alpha=4)
    untrained = LocalEngine.load(str(tiny_model_dir), adapters=paths)
    greedy, sampled, scores = outputs(untrained, "ib_policy")
    base_greedy, base_sampled, base_scores = outputs(tiny_engine, None)
    assert (greedy, sampled) == (base_greedy, base_sampled)
    assert max_logprob_gap(scores, base_scores) < 1e-4
