"""The paper's metrics, exactly as SPEC section 5 defines them (pure numpy).

Shapes: a *distribution* is a length-K vector over one dimension's labels in the order of
`mfray.eval.labels.DIMENSIONS`; a *trajectory* is an (n_windows, K) array of them.
Labels that are missing (a failed generation, an unannotated action) are passed as None: they
are left out of the window they fall in and counted by the caller, never replaced.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

EPS = 1e-6


def label_shares(labels: Sequence[str | None], label_set: Sequence[str]) -> np.ndarray:
    """Share of each label among the non-missing `labels` (zeros when none is present).
    A label outside `label_set` is an error: silently dropping it would bias the shares."""
    index = {label: k for k, label in enumerate(label_set)}
    counts = np.zeros(len(label_set))
    for label in labels:
        if label is None:
            continue
        if label not in index:
            raise ValueError(f"label {label!r} is not one of {list(label_set)}")
        counts[index[label]] += 1
    total = counts.sum()
    return counts / total if total else counts


def smoothed(p: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Add eps to every share and renormalise (so KL stays finite on zero counts)."""
    q = np.asarray(p, dtype=float) + eps
    return q / q.sum(axis=-1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = EPS) -> float:
    """KL(p || q) in nats of two share vectors, both smoothed with eps first."""
    ps, qs = smoothed(p, eps), smoothed(q, eps)
    return float(np.sum(ps * np.log(ps / qs)))


def wasserstein_1d(p: np.ndarray, q: np.ndarray) -> float:
    """1-D Wasserstein-1 distance between two distributions over K ordered labels placed at
    0, 1/(K-1), ..., 1: the L1 distance between the CDFs times the spacing 1/(K-1)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    k = p.shape[-1]
    if k < 2:
        return 0.0
    return float(np.abs(np.cumsum(p) - np.cumsum(q))[:-1].sum() / (k - 1))


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Dynamic time warping between two trajectories (n, K) and (m, K) with local cost the
    total variation distance (L1 / 2), divided by the length (number of cells) of the optimal
    warping path. Among equally cheap paths the shortest is taken (diagonal moves first)."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        raise ValueError("DTW needs two non-empty trajectories")
    cost = np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1) / 2
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1), dtype=int)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            # Candidates in preference order: diagonal, then vertical, then horizontal.
            best = min(
                ((acc[i - 1, j - 1], steps[i - 1, j - 1]), (acc[i - 1, j], steps[i - 1, j]), (acc[i, j - 1], steps[i, j - 1])),
                key=lambda c: (c[0], c[1]),
            )
            acc[i, j] = cost[i - 1, j - 1] + best[0]
            steps[i, j] = best[1] + 1
    return float(acc[n, m] / steps[n, m])


def step_windows(steps: Sequence[int], labels: Sequence[str | None]) -> list[list[str | None]]:
    """Group labels by timestep (the step's N_t agents), in step order."""
    groups: dict[int, list[str | None]] = {}
    for step, label in zip(steps, labels):
        groups.setdefault(step, []).append(label)
    return [groups[s] for s in sorted(groups)]


def nearest_windows(labels: Sequence[str | None], size: int = 16) -> list[list[str | None]]:
    """For each agent index, the `size` agents nearest to it (for smooth plots): the window
    starts size//2 before the agent and is shifted inwards at both ends."""
    n = len(labels)
    size = min(size, n)
    out = []
    for j in range(n):
        start = min(max(j - size // 2, 0), n - size)
        out.append(list(labels[start : start + size]))
    return out


def window_divergences(real: list[list[str | None]], sim: list[list[str | None]], label_set: Sequence[str]) -> tuple[float, float]:
    """(mean KL, mean Wasserstein) over paired windows; a window with no label on either side
    is skipped (there is no distribution to compare)."""
    kls, wds = [], []
    for rw, sw in zip(real, sim, strict=True):
        p, q = label_shares(rw, label_set), label_shares(sw, label_set)
        if p.sum() == 0 or q.sum() == 0:
            continue
        kls.append(kl_divergence(p, q))
        wds.append(wasserstein_1d(p, q))
    if not kls:
        return float("nan"), float("nan")
    return float(np.mean(kls)), float(np.mean(wds))


def f1_scores(real: Sequence[str | None], sim: Sequence[str | None]) -> tuple[float, float]:
    """(macro-F1, micro-F1) of simulated labels against the real label of the same agent.

    Pairs where either side is missing are left out. Macro-F1 averages over the labels that
    occur on either side; micro-F1 of single-label classification equals accuracy."""
    pairs = [(r, s) for r, s in zip(real, sim, strict=True) if r is not None and s is not None]
    if not pairs:
        return float("nan"), float("nan")
    labels = sorted({x for pair in pairs for x in pair})
    f1s = []
    for label in labels:
        tp = sum(1 for r, s in pairs if r == label and s == label)
        fp = sum(1 for r, s in pairs if r != label and s == label)
        fn = sum(1 for r, s in pairs if r == label and s != label)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    micro = sum(1 for r, s in pairs if r == s) / len(pairs)
    return float(np.mean(f1s)), float(micro)


def nll(token_logprobs: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(per-token NLL, per-action NLL) of real actions given their prompts: the first averages
    over all tokens of all actions, the second averages each action's summed NLL."""
    return nll_from_sums([sum(lp) for lp in token_logprobs], [len(lp) for lp in token_logprobs])


def nll_from_sums(sums: Sequence[float], counts: Sequence[int]) -> tuple[float, float]:
    """`nll` from each action's summed log-prob and token count (what a pipeline stage keeps
    instead of every token's log-prob). Actions of zero tokens carry no likelihood: left out."""
    kept = [(s, n) for s, n in zip(sums, counts, strict=True) if n]
    if not kept:
        return float("nan"), float("nan")
    per_token = -sum(s for s, _ in kept) / sum(n for _, n in kept)
    per_action = -float(np.mean([s for s, _ in kept]))
    return float(per_token), per_action


def relative_change(value: float, baseline: float) -> float:
    """(value - baseline) / |baseline|: the change against the `state` method."""
    if baseline == 0:
        return float("nan")
    return (value - baseline) / abs(baseline)
