"""IB-Tune, SFT and LCT-Policy steps on a tiny randomly initialised Llama (the default model's architecture
and tokenizer): where gradients go, and the direction of the mean-field update."""

from __future__ import annotations

import pytest
import torch

from mfray.llm.local import LocalEngine
from mfray.llm.scoring import completion_logprobs
from mfray.prompts.render import mean_field_prompt
from mfray.mdp.lct import LookaheadHead
from mfray.mdp.lct_data import LctAgent, LctSample
from mfray.prompts.render import policy_completion
from mfray.train.config import LctSettings, LoraSettings, TrainConfig
from mfray.train.loop import build_model
from mfray.train.losses import ib_rewards, leave_one_out_advantages, per_sequence_mean, score_function_loss
from mfray.train.samples import Action, StepSample
from mfray.train.steps import ib_step, lct_step, sft_step, use_adapter

SAMPLE = StepSample(
    event_id="e1", language="en", topic="The city will ban cars downtown next year.", step=1,
    previous=(Action("location: Paris", "About time, cleaner air."), Action("", "This will kill small shops.")),
    current=(Action("location: Lyon", "Good idea, bikes are faster anyway."), Action("", "Is this even true? Source?")),
)


def backward(loss):
    loss.backward()


def make_engine(tiny_model_dir, mode="ibtune", checkpointing=True) -> LocalEngine:
    cfg = TrainConfig(mode=mode, model=str(tiny_model_dir), train_events=["unused"], lora=LoraSettings(rank=4, alpha=8),
                      gradient_checkpointing=checkpointing, lct={"runs": ["unused"]})
    model, tok = build_model(cfg, "cpu", torch.float32)
    # Fresh LoRA B is zero, which makes every adapter compute the base model and zeroes the
    # gradient reaching A. Nudge B so the test sees a generic point of the parameter space.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=gen)
    return LocalEngine(model=model, tokenizer=tok, device="cpu")


def grads_by_kind(model) -> dict[str, float]:
    norms = {"ib_policy": 0.0, "ib_mean_field": 0.0, "sft": 0.0, "base": 0.0}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        kind = next((k for k in ("ib_policy", "ib_mean_field", "sft") if f".{k}." in name), "base")
        norms[kind] += p.grad.abs().sum().item()
    return norms


def test_use_adapter_switches_what_the_model_computes(tiny_model_dir):
    # With B nudged off zero, base, ib_policy and ib_mean_field score a completion differently;
    # use_adapter must really switch (a no-op switch would run both roles on one adapter).
    engine = make_engine(tiny_model_dir)
    model, tok = engine.model, engine.tokenizer
    pair = [(engine.encode([{"role": "user", "content": SAMPLE.topic}]),
             tok("Is this even true? Source?", add_special_tokens=False)["input_ids"])]

    def logprobs():
        return completion_logprobs(model, tok.pad_token_id, pair)[0]

    with torch.no_grad():
        use_adapter(model, "ib_policy")
        policy = logprobs()
        use_adapter(model, "ib_mean_field")
        mean_field = logprobs()
        with model.disable_adapter():
            base = logprobs()
        use_adapter(model, "ib_policy")
        again = logprobs()
    for a, b in ((policy, mean_field), (policy, base), (mean_field, base)):
        assert (a - b).abs().max().item() > 1e-3, (a - b).abs().max().item()
    torch.testing.assert_close(again, policy)


def test_ib_step_gradients_reach_both_adapters_and_no_frozen_weight(tiny_model_dir):
    engine = make_engine(tiny_model_dir)
    out = ib_step(engine, SAMPLE, "", backward, summaries=3, beta=2.0, max_tokens=12, seed=1)
    norms = grads_by_kind(engine.model)
    assert norms["ib_mean_field"] > 0 and norms["ib_policy"] > 0
    assert norms["base"] == 0.0
    assert all(not p.requires_grad for n, p in engine.model.named_parameters() if "lora_" not in n)
    assert out.mean_field  # the chosen summary is carried forward
    assert {"mean_field_loss", "policy_nll", "reward_spread"} <= set(out.metrics)


def test_action_term_changes_the_mean_field_gradient(tiny_model_dir):
    # Same summaries (same seed); beta 0 removes the action term. If action prediction did not
    # reach the mean-field adapter (the reference code's defect), both gradients would match.
    grads = {}
    for beta in (0.0, 2.0):
        engine = make_engine(tiny_model_dir)
        ib_step(engine, SAMPLE, "", backward, summaries=3, beta=beta, max_tokens=12, seed=1)
        grads[beta] = torch.cat([p.grad.reshape(-1) for n, p in engine.model.named_parameters()
                                 if ".ib_mean_field." in n and p.grad is not None])
    a, b = grads.values()
    assert not torch.allclose(a, b, rtol=1e-3, atol=1e-9)


def test_score_function_update_raises_the_better_summary(tiny_model_dir):
    """Constructed case: summary 0 quotes the next step's actions, summary 1 is unrelated. Whichever
    the policy actually finds more predictive gets the higher reward; one SGD step on the
    mean-field adapter must raise its log-likelihood relative to the other."""
    engine = make_engine(tiny_model_dir)
    model, tok = engine.model, engine.tokenizer
    x = mean_field_prompt("chat", "en", SAMPLE.topic, "", [{"text": a.text, "state": ""} for a in SAMPLE.previous])
    summaries = [" ".join(a.text for a in SAMPLE.current), "zebra quantum marmalade"]
    ids = [tok(s, add_special_tokens=False)["input_ids"] for s in summaries]
    pairs = [(engine.encode(x), i) for i in ids]

    def posterior():
        use_adapter(model, "ib_mean_field")
        return completion_logprobs(model, tok.pad_token_id, pairs)

    with torch.no_grad():
        use_adapter(model, "ib_policy")
        action = torch.stack([
            torch.cat(completion_logprobs(model, tok.pad_token_id, [
                (engine.encode([{"role": "user", "content": f"{s}\n{a.state}"}]), tok(a.text, add_special_tokens=False)["input_ids"])
                for a in SAMPLE.current])).mean()
            for s in summaries])
        with model.disable_adapter():
            prior = per_sequence_mean(completion_logprobs(model, tok.pad_token_id, pairs))
    before = posterior()
    rewards = ib_rewards(action, per_sequence_mean(before).detach(), prior, beta=2.0)
    best, worst = int(torch.argmax(rewards)), int(torch.argmin(rewards))
    assert best != worst
    score_function_loss(leave_one_out_advantages(rewards), torch.stack([lp.sum() for lp in before])).backward()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".ib_mean_field." in n and p.grad is not None:
                p -= 1e-2 * p.grad
        after = [lp.sum().item() for lp in posterior()]
    gap_before = before[best].sum().item() - before[worst].sum().item()
    assert after[best] - after[worst] > gap_before


def test_sft_step_trains_only_the_sft_adapter(tiny_model_dir):
    engine = make_engine(tiny_model_dir, mode="sft")
    losses = []
    out = sft_step(engine, SAMPLE, "sft", lambda loss: (losses.append(loss.item()), loss.backward()))
    norms = grads_by_kind(engine.model)
    assert norms["sft"] > 0 and norms["base"] == 0.0
    assert out.metrics["policy_nll"] == pytest.approx(losses[0])


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dir):
    # Checkpointing recomputes forwards during backward; each pass must still run under its own
    # adapter (a recompute under the other role's adapter would silently corrupt the gradients).
    grads = []
    for checkpointing in (False, True):
        engine = make_engine(tiny_model_dir, checkpointing=checkpointing)
        ib_step(engine, SAMPLE, "", backward, summaries=2, beta=2.0, max_tokens=8, seed=3)
        grads.append({n: p.grad.clone() for n, p in engine.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


LCT_SAMPLE = LctSample(
    event_id="e1", language="en", topic="The city will ban cars downtown next year.", step=3,
    mean_field="Most users doubt the ban; some welcome cleaner air.", m=(0.25, 0.5, 0.25), signal=None,
    agents=(LctAgent("location: Lyon", "Good idea, bikes are faster anyway.", "positive"),
            LctAgent("", "Is this even true? Source?", "neutral")),
    future=((0.2, 0.5, 0.3), (0.1, 0.4, 0.5)),
)


def lct_engine(tiny_model_dir, settings: LctSettings):
    engine = make_engine(tiny_model_dir, mode="lct")
    torch.manual_seed(0)
    head = LookaheadHead(engine.model.config.hidden_size, settings.k, 16, settings.head_dropout)
    engine.model.lct_head = head
    return engine, head


def test_lct_step_trains_the_lct_adapter_and_head_only(tiny_model_dir):
    settings = LctSettings(runs=["unused"], k=3, instances=3)
    engine, head = lct_engine(tiny_model_dir, settings)
    out = lct_step(engine, head, LCT_SAMPLE, backward, settings=settings, seed=1)
    base = [n for n, p in engine.model.named_parameters() if p.grad is not None and "lora_" not in n and not n.startswith("lct_head.")]
    assert base == []
    assert any(".lct_policy." in n and p.grad.abs().sum() > 0 for n, p in engine.model.named_parameters() if p.grad is not None)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert out.metrics["instance_spread"] > 0  # J dropout instances, J different forecasts
    assert out.metrics["lct_loss"] == pytest.approx(0.5 * out.metrics["lookahead_cost"] + 0.5 * out.metrics["policy_nll"])


def test_lct_text_term_alone_is_the_nll_of_the_real_actions_on_mfmdp_prompts(tiny_model_dir):
    settings = LctSettings(runs=["unused"], k=2, instances=1, head_dropout=0.0, pred_weight=0.0, text_weight=1.0)
    engine, head = lct_engine(tiny_model_dir, settings)
    losses = []
    lct_step(engine, head, LCT_SAMPLE, lambda loss: (losses.append(loss.item()), loss.backward()), settings=settings, seed=1)
    prompts = LCT_SAMPLE.prompts("timeline")
    scored = engine.score_sync(prompts, [policy_completion(p, a.text) for p, a in zip(prompts, LCT_SAMPLE.agents)],
                               adapter="lct_policy")
    nll = -sum(sum(s) for s in scored) / sum(len(s) for s in scored)
    assert losses[0] == pytest.approx(nll, rel=1e-4)  # LoRA dropout 0 here: train mode computes eval's NLL
