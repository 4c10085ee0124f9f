"""NLL of the real actions under the policy (SPEC section 5), shared by `mfray evaluate` and the
Ray Data NLL stage.

Each evaluated agent's real action is scored by teacher forcing under the prompt the policy was
given, read back from the trajectory's `policy_prompt` column (JSON chat messages, rendered with
the scoring model's own chat template, or raw text in the timeline style). The action is scored
as the policy's completion (mfray.prompts.render.policy_completion): its tokens exactly after a
chat prompt, no end-of-sequence token; after a timeline prompt a leading space, the post on one
line and the newline that ends it. Agents with no recorded prompt (an inserted
intervention post, or any agent of a file written before the column existed) are counted as
unscored, never given a value.
"""

from __future__ import annotations

import math
from typing import Sequence

from mfray.eval.config import EvaluateConfig
from mfray.eval.metrics import nll_from_sums
from mfray.llm.base import LLM, Prompt
from mfray.prompts.render import policy_completion
from mfray.sim.trajectory import decode_prompt
from mfray.types import StepRecord

# Per trajectory: per-token and per-action NLL (nats), actions scored, evaluated actions unscored.
NLL_COLUMNS = ("nll_token", "nll_action", "nll_actions", "nll_unscored")


def build_scorer(cfg: EvaluateConfig) -> LLM | None:
    """The policy model that scores real actions (with one LoRA adapter per method named in
    cfg.nll_adapters), or None when NLL is turned off (nll_model: null)."""
    if cfg.nll_model is None:
        return None
    from mfray.llm.local import LocalEngine

    return LocalEngine.load(cfg.nll_model, adapters=dict(cfg.nll_adapters) or None)


def nll_pair(policy_prompt: str | None, real_text: str | None) -> tuple[Prompt, str] | None:
    """(prompt, real action) to score, or None when either is missing."""
    if policy_prompt is None or real_text is None:
        return None
    prompt = decode_prompt(policy_prompt)
    return prompt, policy_completion(prompt, real_text)


def method_adapter(method: str, adapters: dict[str, str]) -> str | None:
    """The adapter a method's actions are scored under (its name, when cfg.nll_adapters has it)."""
    return method if method in adapters else None


async def score_pairs(
    pairs: Sequence[tuple[Prompt, str] | None], scorer: LLM, adapter: str | None = None
) -> list[tuple[float, int] | None]:
    """(summed log-prob, tokens) of each present pair's action given its prompt; None stays None."""
    present = [p for p in pairs if p is not None]
    scored = iter(await scorer.score([p for p, _ in present], [a for _, a in present], adapter) if present else [])
    out = []
    for pair in pairs:
        lp = None if pair is None else next(scored)
        out.append(None if lp is None else (float(sum(lp)), len(lp)))
    return out


async def score_records(records: Sequence[StepRecord], scorer: LLM, adapters: dict[str, str]) -> list[tuple[float, int] | None]:
    """`score_pairs` of every record's real action under its policy prompt; the records are one
    trajectory, so one method (and at most one adapter)."""
    methods = {r.method for r in records}
    if len(methods) > 1:
        raise ValueError(f"score_records takes one trajectory, got methods {sorted(methods)}")
    adapter = method_adapter(records[0].method, adapters) if records else None
    return await score_pairs([nll_pair(r.policy_prompt, r.real_text) for r in records], scorer, adapter)


def trajectory_nll(totals: Sequence[tuple[float, int] | None]) -> dict:
    """NLL_COLUMNS of one trajectory from its evaluated agents' (summed log-prob, tokens), None
    where not scored. An action of zero tokens carries no likelihood and is in neither mean."""
    scored = [t for t in totals if t is not None]
    per_token, per_action = nll_from_sums([s for s, _ in scored], [n for _, n in scored])
    return {"nll_token": per_token, "nll_action": per_action,
            "nll_actions": sum(1 for _, n in scored if n), "nll_unscored": len(totals) - len(scored)}


def nll_note(rows: Sequence[dict]) -> str:
    """Why NLL is missing or partial in a report, in one line ("" when every action was scored)."""
    if not rows or "nll_token" not in rows[0]:
        return "NLL not computed: no policy model configured (set nll_model, e.g. nll_model=default)."
    trajectories = {(r["event_id"], r["method"], r["seed"]): r for r in rows}.values()
    unscored = sum(int(r["nll_unscored"]) for r in trajectories)
    if not unscored:
        return ""
    blind = [t for t in trajectories if int(t["nll_actions"]) == 0 or math.isnan(float(t["nll_token"]))]
    return (f"{unscored} evaluated actions have no recorded policy prompt and are not scored (inserted "
            f"intervention posts, or trajectories written before the policy_prompt column: rerun "
            f"`mfray simulate` to record it); {len(blind)} of {len(trajectories)} trajectories have no NLL at all.")
