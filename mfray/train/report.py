"""Training curves from a run's worker-0.jsonl (one record per optimizer update, metrics already
averaged over workers). A resumed run logs the updates after its checkpoint again: the last
record of each update wins, which is the one whose weights the run kept."""

from __future__ import annotations

import json
from pathlib import Path

CURVES = (("policy_nll", "policy NLL of real actions (per token)"),
          ("mean_field_loss", "mean-field score-function loss"),
          ("reward_mean", "IB reward R (mean over summaries)"),
          ("kl_per_token_chosen", "log mu - log r of the chosen summary (per token)"),
          ("lookahead_cost", "LCT-Policy: sum_j w_j V_j (K-step lookahead cost)"),
          ("instance_spread", "LCT-Policy: spread of V over the J instances"))


def load_updates(run_dir: Path) -> list[dict]:
    """The last record of every update, in update order."""
    latest: dict[int, dict] = {}
    for line in (run_dir / "worker-0.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "update":
            latest[int(record["update"])] = record
    return [latest[k] for k in sorted(latest)]


def plot_training(run_dir: Path, out_png: Path) -> Path:
    """One panel per logged curve (SFT runs have only the policy NLL), with a moving average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    updates = load_updates(run_dir)
    curves = [(key, title) for key, title in CURVES if updates and key in updates[0]]
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    xs = [u["update"] for u in updates]
    for ax, (key, title) in zip(axes[0], curves):
        ys = [u[key] for u in updates]
        k = max(1, len(ys) // 10)
        smooth = [sum(ys[max(0, i - k + 1) : i + 1]) / len(ys[max(0, i - k + 1) : i + 1]) for i in range(len(ys))]
        ax.plot(xs, ys, color="0.75", lw=1, label="per update")
        ax.plot(xs, smooth, color="C0", lw=2, label=f"moving mean ({k})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer update")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
