"""Held-out evidence for a training run: NLL of real actions under the policy, before vs after.

"Before" is the base model with adapters disabled, which is exactly the untrained adapters
(LoRA B starts at zero). For IB-Tune the policy sees the mean field its own mean-field model
writes while reading the event's real actions step by step (as in a forecast from real history);
for SFT it sees the `state` prompt. Per token (pooled over action tokens) and per action.
"""

from __future__ import annotations

from mfray.llm.local import LocalEngine
from mfray.prompts.parse import mean_field_text
from mfray.prompts.render import mean_field_prompt, policy_completion, policy_prompt
from mfray.sim.config import RolloutConfig
from mfray.sim.context import derive_seed
from mfray.train.config import TrainConfig
from mfray.train.samples import event_actions, mean_field_comments
from mfray.types import Event


def heldout_nll(engine: LocalEngine, events: list[Event], cfg: TrainConfig, tuned: bool) -> dict:
    """Score agents heldout_start .. heldout_start + heldout_steps * N_t of every event under the
    policy (tuned adapters, or the base model when tuned is False)."""
    policy = cfg.policy_adapter if tuned else None
    mean_field_adapter = cfg.adapter_names[1] if (tuned and cfg.mode == "ibtune") else None
    # The simulation's mean-field sampling (SPEC defaults for this prompt style), with this run's summary length.
    sampling = RolloutConfig(prompt_style=cfg.prompt_style).mean_field.model_copy(update={"max_new_tokens": cfg.summary_max_tokens})
    n = cfg.agents_per_step
    total_logp, tokens, per_action = 0.0, 0, []
    for event in events:
        actions = event_actions(event, cfg.heldout_start + cfg.heldout_steps * n)
        steps = [actions[i : i + n] for i in range(0, len(actions), n)]
        mean_field = ""
        for t, step in enumerate(steps):
            scored = step[max(0, cfg.heldout_start - t * n):]
            if scored:
                prompts = [policy_prompt(cfg.prompt_style, event.language, event.topic_text, a.state,
                                         mean_field=mean_field if cfg.mode == "ibtune" else "") for a in scored]
                completions = [policy_completion(p, a.text) for p, a in zip(prompts, scored)]
                for lps in engine.score_sync(prompts, completions, adapter=policy):
                    if lps:
                        total_logp += sum(lps)
                        tokens += len(lps)
                        per_action.append(-sum(lps) / len(lps))
            if cfg.mode == "ibtune" and t + 1 < len(steps):
                prompt = mean_field_prompt(cfg.prompt_style, event.language, event.topic_text, mean_field,
                                           mean_field_comments(step, cfg.mean_field_states))
                gen = engine.generate_sync([prompt], sampling.params(derive_seed(cfg.seed, "heldout", event.event_id, t)),
                                           adapter=mean_field_adapter)[0]
                text = mean_field_text(cfg.prompt_style, event.language, gen.text, truncated=gen.finish_reason == "length")
                mean_field = text or mean_field  # a failed summary keeps m_t, as in simulation
    if tokens == 0:
        raise ValueError(f"no held-out action tokens: events have fewer than {cfg.heldout_start + 1} agents")
    return {
        "events": len(events),
        "actions": len(per_action),
        "tokens": tokens,
        "nll_per_token": -total_logp / tokens,
        "nll_per_action": sum(per_action) / len(per_action),
    }


def heldout_lct(engine: LocalEngine, samples: list, cfg: TrainConfig, head=None) -> dict:
    """LCT-Policy's held-out evidence on `samples` (LctSample of held-out events): the policy NLL
    of the real actions on their MF-MDP prompts (the lct_policy adapter when `head` is given, the
    base model otherwise), and with `head`, its lookahead cost V (eval mode: no dropout) beside
    the persistence forecast's (m_hat_{t+k} = m_t) on the same agents."""
    import torch

    from mfray.mdp.lct import future_targets, lookahead_cost

    adapter = cfg.policy_adapter if head is not None else None
    total_logp, tokens, actions, v_head, v_persist, agents = 0.0, 0, 0, 0.0, 0.0, 0
    for sample in samples:
        prompts = sample.prompts(cfg.prompt_style)
        completions = [policy_completion(p, a.text) for p, a in zip(prompts, sample.agents)]
        logps, hidden = engine.score_states_sync(prompts, completions, adapter=adapter)
        for lps in logps:
            total_logp, tokens, actions = total_logp + sum(lps), tokens + len(lps), actions + bool(lps)
        future, valid = future_targets(sample.future, cfg.lct.k)
        persist = torch.tensor(sample.m, dtype=torch.float32).expand(len(prompts), cfg.lct.k, -1)
        v_persist += lookahead_cost(persist, future, valid, cfg.lct.gamma).sum().item()
        if head is not None:
            with torch.no_grad():
                v_head += lookahead_cost(head.eval()(hidden), future, valid, cfg.lct.gamma).sum().item()
        agents += len(prompts)
    if tokens == 0:
        raise ValueError("no held-out action tokens for LCT-Policy")
    out = {"samples": len(samples), "actions": actions, "tokens": tokens, "nll_per_token": -total_logp / tokens,
           "lookahead_cost_persistence": v_persist / agents}
    if head is not None:
        out["lookahead_cost_head"] = v_head / agents
    return out
