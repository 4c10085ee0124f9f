"""One IB-Tune, SFT or LCT-Policy step on one event-step sample (SPEC section 7): losses with their graphs.

The model is one PeftModel holding every adapter; the frozen base with adapters disabled is the
prior r, so no second copy of the weights exists. No-gradient work (sampling summaries, scoring
actions under each summary, the prior) runs first; then the differentiable passes, each followed
at once by its backward (`backward(loss)`), inside the adapter it belongs to: gradient
checkpointing recomputes forwards during backward, and they must see the same adapter. The two
IB losses touch disjoint parameters (the mean-field adapter, the policy adapter) and the chosen
summary is fixed text once sampled, so accumulating both gradients into one optimizer step is
exactly "mean-field update, then policy update on the chosen summary" (IB-Tune's alternation).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from mfray.llm.base import SamplingParams
from mfray.llm.local import LocalEngine
from mfray.llm.scoring import completion_logprobs, scored_pairs
from mfray.mdp.lct import future_targets, lct_loss, lookahead_cost
from mfray.mdp.lct_data import LctSample
from mfray.prompts.parse import mean_field_text
from mfray.prompts.render import mean_field_prompt, policy_completion, policy_prompt
from mfray.train.losses import (
    ib_rewards,
    leave_one_out_advantages,
    per_sequence_mean,
    policy_nll,
    score_function_loss,
    token_mean,
)
from mfray.train.config import LctSettings
from mfray.train.samples import StepSample, mean_field_comments


# Differentiable passes per sample (one backward each): DeepSpeed counts each as a micro-step.
PASSES = {"sft": 1, "ibtune": 2, "lct": 1}  # lct: its J instances share one loss and one backward

Backward = Callable[[torch.Tensor], None]


@dataclass
class StepOutput:
    metrics: dict[str, float]
    mean_field: str  # the summary carried to the event's next step ("" for SFT)


def use_adapter(model, name: str) -> None:
    """Make `name` the active adapter and keep EVERY adapter trainable. (PEFT's set_adapter
    freezes inactive adapters; both roles' graphs live in one step, so both must stay trainable.)"""
    model.set_adapter(name)
    for param_name, param in model.named_parameters():
        if "lora_" in param_name:
            param.requires_grad_(True)


@contextmanager
def gradient_pass(model, adapter: str):
    """Train mode (transformers applies gradient checkpointing only in train mode) with `adapter`
    active and every adapter trainable; back to eval mode after."""
    use_adapter(model, adapter)
    model.train()
    try:
        yield
    finally:
        model.eval()


def _policy_prompts(sample: StepSample, style: str, mean_field: str):
    return [policy_prompt(style, sample.language, sample.topic, a.state, mean_field=mean_field) for a in sample.current]


def _pairs(engine: LocalEngine, prompts, completion_ids: list[list[int]]):
    return [(engine.encode(p), ids) for p, ids in zip(prompts, completion_ids)]


def _action_ids(engine: LocalEngine, language: str, topic: str, texts, style: str) -> list[list[int]]:
    """Real actions as the policy's completions (the same for every summary or MF-MDP prompt: a
    completion does not depend on what the prompt shows, only on the prompt style)."""
    probe = policy_prompt(style, language, topic, "")
    return [engine.tokenizer(policy_completion(probe, text), add_special_tokens=False)["input_ids"] for text in texts]


def sft_step(engine: LocalEngine, sample: StepSample, adapter: str, backward: Backward, style: str = "timeline") -> StepOutput:
    """SFT baseline: policy NLL of the step's real actions on `state` prompts in `style`."""
    model = engine.model
    prompts = _policy_prompts(sample, style, "")
    action_ids = _action_ids(engine, sample.language, sample.topic, [a.text for a in sample.current], style)
    with gradient_pass(model, adapter):
        logps = completion_logprobs(model, engine.tokenizer.pad_token_id, _pairs(engine, prompts, action_ids),
                                    device=engine.device)
        loss = policy_nll(logps)
        backward(loss)
    return StepOutput({"policy_nll": loss.item(), "action_tokens": float(sum(lp.numel() for lp in logps))}, "")


def ib_step(
    engine: LocalEngine, sample: StepSample, previous_mean_field: str, backward: Backward, *, summaries: int, beta: float,
    max_tokens: int, seed: int, mean_field_states: bool = False, style: str = "timeline",
    policy_adapter: str = "ib_policy", mean_field_adapter: str = "ib_mean_field",
) -> StepOutput:
    """IB-Tune on one transition: X = (m_{t-1}, states and actions of step t-1); J summaries
    m_j ~ mu_phi(.|X) scored by how well they predict step t's real actions. A summary's
    log-probabilities are those of its raw sampled text; the policy sees it as simulation reads
    it back (mfray.prompts.parse.mean_field_text)."""
    model, tok = engine.model, engine.tokenizer
    x_prompt = mean_field_prompt(style, sample.language, sample.topic, previous_mean_field,
                                 mean_field_comments(sample.previous, mean_field_states))
    prior_prompt = mean_field_prompt(style, sample.language, sample.topic, "", [])  # r sees no X

    # --- no gradient: sample J summaries from mu_phi itself (temperature 1, no truncation: the
    # score-function estimator needs samples from the distribution it differentiates).
    pure = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=max_tokens, seed=seed)
    gens = engine.generate_sync([x_prompt] * summaries, pure, adapter=mean_field_adapter)
    summary_ids = [
        tok(g.text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if g.finish_reason == "stop" else [])
        for g in gens
    ]
    texts = [mean_field_text(style, sample.language, g.text, truncated=g.finish_reason == "length") for g in gens]
    if any(not ids for ids in summary_ids):
        raise RuntimeError(f"event {sample.event_id} step {sample.step}: a sampled summary has no tokens")
    with torch.no_grad(), model.disable_adapter():
        prior = per_sequence_mean(completion_logprobs(model, tok.pad_token_id, _pairs(engine, [prior_prompt] * summaries, summary_ids),
                                                      device=engine.device))
    action_ids = _action_ids(engine, sample.language, sample.topic, [a.text for a in sample.current], style)
    action_logp = []
    with torch.no_grad():
        use_adapter(model, policy_adapter)
        for text in texts:
            lps = completion_logprobs(model, tok.pad_token_id, _pairs(engine, _policy_prompts(sample, style, text), action_ids),
                                      device=engine.device)
            action_logp.append(token_mean(lps))
    action_logp = torch.stack(action_logp)

    # --- gradient pass 1: log mu_phi(m_j | X), the mean-field adapter's score function.
    with gradient_pass(model, mean_field_adapter):
        posterior = completion_logprobs(model, tok.pad_token_id, _pairs(engine, [x_prompt] * summaries, summary_ids),
                                        device=engine.device)
        posterior_mean = per_sequence_mean(posterior).detach()
        rewards = ib_rewards(action_logp, posterior_mean, prior, beta)
        mf_loss = score_function_loss(leave_one_out_advantages(rewards), torch.stack([lp.sum() for lp in posterior]))
        backward(mf_loss)
    chosen = int(torch.argmax(rewards))

    # --- gradient pass 2: the policy on the chosen summary.
    with gradient_pass(model, policy_adapter):
        policy_logps = completion_logprobs(model, tok.pad_token_id, _pairs(engine, _policy_prompts(sample, style, texts[chosen]), action_ids),
                                           device=engine.device)
        pi_loss = policy_nll(policy_logps)
        backward(pi_loss)
    metrics = {
        "mean_field_loss": mf_loss.item(),
        "policy_nll": pi_loss.item(),
        "reward_mean": rewards.mean().item(),
        "reward_spread": (rewards.max() - rewards.min()).item(),
        "action_logp_chosen": action_logp[chosen].item(),
        "kl_per_token_chosen": (posterior_mean[chosen] - prior[chosen]).item(),
        "summary_tokens": float(sum(len(ids) for ids in summary_ids) / summaries),
        "action_tokens": float(sum(lp.numel() for lp in policy_logps)),
    }
    return StepOutput(metrics, texts[chosen])


def lct_step(
    engine: LocalEngine, head, sample: LctSample, backward: Backward, *, settings: LctSettings, seed: int,
    style: str = "timeline", adapter: str = "lct_policy",
) -> StepOutput:
    """LCT-Policy on one step (SPEC section 6, mfray.mdp.lct): J forward passes of the policy on
    its MF-MDP prompts and the step's real actions, each with its own dropout masks (the policy
    and `head` in train mode); the head reads each pass's last hidden state per agent and
    predicts m_hat_{t+1..t+K}; the passes are weighted by their lookahead cost against the real
    future histograms, and L = pred_weight * sum_j w_j V_j + text_weight * NLL."""
    model = engine.model
    agents = list(sample.agents)
    if settings.agents_scored is not None and len(agents) > settings.agents_scored:
        agents = random.Random(seed).sample(agents, settings.agents_scored)
    prompts = sample.prompts(style, agents)
    completions = _action_ids(engine, sample.language, sample.topic, [a.text for a in agents], style)
    future, valid = future_targets(sample.future, settings.k)
    costs, nlls = [], []
    with gradient_pass(model, adapter):
        head.train()
        torch.manual_seed(seed)  # the J dropout instances: a different mask per pass, reproducibly
        for _ in range(settings.instances):
            logps, hidden = scored_pairs(model, engine.tokenizer.pad_token_id, _pairs(engine, prompts, completions),
                                         device=engine.device)
            costs.append(lookahead_cost(head(hidden), future.to(hidden.device), valid.to(hidden.device), settings.gamma))
            nlls.append(policy_nll(logps))
        v, nll = torch.stack(costs), torch.stack(nlls)  # [J, A], [J]
        loss, pred = lct_loss(v, nll, settings.beta, settings.pred_weight, settings.text_weight)
        backward(loss)
    head.eval()
    return StepOutput({"lct_loss": loss.item(), "lookahead_cost": pred.item(), "policy_nll": nll.mean().item(),
                       "instance_spread": (v.max(0).values - v.min(0).values).mean().item(),
                       "action_tokens": float(sum(lp.numel() for lp in logps))}, "")
