"""Which of the MF-LLM paper's findings a study's runs support, each read from a paired bootstrap
interval over events (mfray.eval.intervals), never from a mean alone.

A claim is "method is closer to the real population than baseline". On a lower-is-better metric it
holds when the whole 95% interval of the relative change lies below 0, is contradicted when the
whole interval lies above 0 (the baseline is measurably closer), and is not resolved otherwise (the
events do not separate the two); on a higher-is-better metric the signs swap.
"""

from __future__ import annotations

import math
from typing import Sequence

from mfray.eval.evaluate import LOWER_IS_BETTER
from mfray.eval.intervals import MEAN, pair_interval

# (method, baseline, what the paper reports), in the order a reader asks them.
PAPER_CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("mf", "state", "MF-LLM (a mean field in the prompt) tracks the real population more closely than the state baseline"),
    ("mf", "recent", "a mean field does better than showing the most recent posts"),
    ("mf", "popular", "a mean field does better than showing the most popular posts"),
    ("mf_ibtune", "mf", "IB-Tune brings MF-LLM closer still"),
    ("mf_ibtune", "sft", "IB-Tune does better than fine-tuning the policy alone (SFT)"),
    ("mf_ibtune", "ibtune_policy_only", "IB-Tune's mean-field model contributes (without it fidelity drops)"),
    ("mf_ibtune", "ibtune_mf_only", "IB-Tune's policy contributes (without it fidelity drops)"),
)
HOLDS, CONTRADICTED, UNRESOLVED = "holds", "contradicted", "not resolved"
FEW_EVENTS = 10  # below this a percentile bootstrap over events understates the uncertainty


def verdict(low: float, high: float, lower_is_better: bool) -> str:
    """HOLDS, CONTRADICTED or UNRESOLVED for an interval [low, high] of the method's relative
    change against the baseline (UNRESOLVED when the interval is unknown)."""
    if math.isnan(low) or math.isnan(high):
        return UNRESOLVED
    better, worse = (high < 0, low > 0) if lower_is_better else (low > 0, high < 0)
    return HOLDS if better else CONTRADICTED if worse else UNRESOLVED


def findings(rows: Sequence[dict], metrics: Sequence[str] = ("kl", "wasserstein", "dtw"),
             draws: int = 10_000, seed: int = 0) -> list[dict]:
    """One row per (claim of PAPER_CLAIMS whose two methods both ran, metric): the claim, the
    interval of the mean over dimensions (`pair_interval`) and its `verdict`."""
    methods = {r["method"] for r in rows}
    out = []
    for method, baseline, claim in PAPER_CLAIMS:
        if method not in methods or baseline not in methods:
            continue
        for metric in metrics:
            interval = pair_interval(rows, metric, method, baseline, MEAN, draws, seed)
            out.append({**interval, "claim": claim, "verdict": verdict(interval["low"], interval["high"], LOWER_IS_BETTER[metric])})
    return out


def findings_markdown(found: Sequence[dict], model: str) -> str:
    """The findings as a table (claim, metric, events, change [interval], verdict) and, per claim,
    one line saying whether it holds here with `model`."""
    lines = ["| paper's finding | metric | events | change of the mean over dimensions [95% interval] | here |",
             "|---|---|---|---|---|"]
    for f in found:
        change = "-" if math.isnan(f["change"]) else f"{f['change']:+.1%} [{f['low']:+.1%}, {f['high']:+.1%}]"
        lines.append(f"| {f['method']} vs {f['baseline']}: {f['claim']} | {f['metric']} | {f['events']} | {change} | "
                     f"**{f['verdict']}** |")
    lines.append("")
    for claim in dict.fromkeys(f["claim"] for f in found):
        verdicts = {f["metric"]: f["verdict"] for f in found if f["claim"] == claim}
        if all(v == HOLDS for v in verdicts.values()):
            said = "holds here on every distribution metric"
        elif all(v == CONTRADICTED for v in verdicts.values()):
            said = "does not hold here: the opposite is measured on every distribution metric"
        elif all(v == UNRESOLVED for v in verdicts.values()):
            said = "is not resolved here: the events do not separate the two methods"
        else:
            said = "is mixed here: " + ", ".join(f"{m} {v}" for m, v in verdicts.items())
        lines.append(f"- With {model}, \"{claim}\" {said}.")
    few = sorted({f["events"] for f in found if f["events"] < FEW_EVENTS})
    if few:
        lines.append(f"- Some comparisons rest on {', '.join(map(str, few))} events only: a bootstrap over so few "
                     f"events understates the uncertainty, so read those verdicts as provisional.")
    return "\n".join(lines) + "\n"
