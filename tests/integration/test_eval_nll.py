"""NLL of real actions under a real (tiny, randomly initialised) model of the default
architecture: equal to an independent unbatched computation, the same with either padding side,
and reported per method by `mfray evaluate` (missing, with the reason, for old files)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
import torch

from mfray.eval.config import EvaluateConfig
from mfray.eval.metrics import nll
from mfray.eval.nll import nll_pair, score_pairs, trajectory_nll
from mfray.eval.run import evaluate
from tests.integration.test_ray_evaluate import make_trajectories

pytestmark = pytest.mark.integration


def reference_logprobs(engine, prompt, action: str) -> list[float]:
    """Log-probs of the action's tokens from one unpadded forward pass over prompt + action:
    full logits at every position, log-softmax, the entry of each next token. Shares nothing with
    the engine's batched scorer but the tokenizer and its chat template."""
    tok = engine.tokenizer
    p = tok(tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    c = tok(action, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([p + c])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [float(logprobs[len(p) + k - 1, c[k]]) for k in range(len(c))]


@pytest.fixture(scope="module")
def records(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("traj")
    return out, make_trajectories(data_dir, out)


def test_nll_equals_an_independent_computation_and_ignores_padding_side(records, tiny_engine):
    _, recs = records
    # Prompts of different lengths (the state and mean field vary) and actions of different lengths.
    picked = [r for r in recs if r.method == "mf" and r.agent_index in (50, 57, 63, 70, 81, 95)]
    pairs = [nll_pair(r.policy_prompt, r.real_text) for r in picked]
    reference = [reference_logprobs(tiny_engine, p, a) for p, a in pairs]
    assert len({len(lp) for lp in reference}) > 2  # padding really happens in a batch of these
    expected = nll(reference)  # per token: -sum of all / tokens; per action: mean of -sums

    totals = asyncio.run(score_pairs(pairs, tiny_engine))
    out = trajectory_nll(totals)
    assert (out["nll_token"], out["nll_action"]) == pytest.approx(expected, rel=1e-5)
    assert out["nll_actions"] == 6 and out["nll_unscored"] == 0
    # A randomly initialised model over a ~49k vocabulary is near uniform: about ln(49152) = 10.8 nats/token.
    assert 9 < out["nll_token"] < 13

    prompts, actions = [p for p, _ in pairs], [a for _, a in pairs]
    right = tiny_engine.score_sync(prompts, actions, padding_side="right")
    left = tiny_engine.score_sync(prompts, actions, padding_side="left")
    for r, l_, ref in zip(right, left, reference):
        np.testing.assert_allclose(r, ref, atol=1e-4)
        np.testing.assert_allclose(l_, ref, atol=1e-4)
    assert nll(left) == pytest.approx(nll(right), rel=1e-6)


def test_evaluate_reports_nll_per_method_and_missing_without_prompts(data_dir, tmp_path, tiny_engine, tiny_model_dir):
    recs = make_trajectories(data_dir, tmp_path / "traj", methods=(("state", 0), ("mf", 0), ("recent", 0)), no_prompt=("recent",))
    cfg = EvaluateConfig(trajectories=str(tmp_path / "traj"), out=str(tmp_path / "out"), eval_start=50, eval_end=96,
                         nll_model=str(tiny_model_dir))
    rows = evaluate(cfg, scorer=tiny_engine)
    by_method = {r["method"]: r for r in rows}
    # The state method's number, recomputed independently over its 46 evaluated agents (50..95).
    state = [r for r in recs if r.method == "state" and 50 <= r.agent_index < 96]
    expected = nll([reference_logprobs(tiny_engine, *nll_pair(r.policy_prompt, r.real_text)) for r in state])
    assert (by_method["state"]["nll_token"], by_method["state"]["nll_action"]) == pytest.approx(expected, rel=1e-5)
    # mf's failed generation (agent 70) still had a prompt: its real action is scored too.
    assert by_method["mf"]["nll_actions"] == 46 and by_method["mf"]["nll_unscored"] == 0
    assert by_method["mf"]["nll_token"] != by_method["state"]["nll_token"]  # different prompts
    assert math.isnan(by_method["recent"]["nll_token"]) and by_method["recent"]["nll_unscored"] == 46
    md = (tmp_path / "out" / "nll.md").read_text()
    assert "46 evaluated actions have no recorded policy prompt" in md and "1 of 3 trajectories" in md
    assert "| recent | - | - | - |" in md and "| state |" in md
    assert "NLL per real action" in (tmp_path / "out" / "summary.md").read_text()

    off = evaluate(cfg.model_copy(update={"nll_model": None, "out": str(tmp_path / "off")}))
    assert "nll_token" not in off[0]
    assert "no policy model configured" in (tmp_path / "off" / "nll.md").read_text()
