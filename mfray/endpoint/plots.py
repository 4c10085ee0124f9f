"""The plot the endpoint serves: for one dimension, the share of each label per step among the real
posts (dashed) and the simulated ones (solid), and optionally a what-if's simulated shares (dotted)."""

from __future__ import annotations

import io

from mfray.eval.labels import DIMENSIONS


def share_series(messages: list[dict], dimension: str, side: str) -> tuple[list[int], list[list[float]]]:
    """(steps, shares per step) of one side ("real" or "sim") from a simulation's step messages,
    leaving out steps where that side has no labelled post."""
    steps, shares = [], []
    for m in messages:
        if m["type"] == "step" and m["shares"][dimension][side] is not None:
            steps.append(m["step"])
            shares.append(m["shares"][dimension][side])
    return steps, shares


def plot_png(messages: list[dict], dimension: str, title: str, compare: list[dict] | None = None,
             compare_name: str = "what-if") -> bytes:
    """A PNG of `dimension`'s label shares over the steps of `messages` (and of `compare`)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    import matplotlib.pyplot as plt

    labels = DIMENSIONS[dimension]
    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    lines = [("real", "--", messages, "real"), ("sim", "-", messages, "simulated")]
    if compare is not None:
        lines.append(("sim", ":", compare, compare_name))
    for side, style, source, name in lines:
        steps, shares = share_series(source, dimension, side)
        for k, label in enumerate(labels):
            ax.plot(steps, [s[k] for s in shares], style, color=colours[k % len(colours)], marker=".",
                    label=f"{label} ({name})")
    ax.set(xlabel="step", ylabel=f"share of posts ({dimension})", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper left", bbox_to_anchor=(0, -0.15))
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()
