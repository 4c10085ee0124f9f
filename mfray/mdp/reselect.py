"""Simulation-time reselection, this project's optional extension of MF-MDP (SPEC section 6; off by
default, reported apart from the paper's method, whose Alg. 1 has none).

Each generated agent gets J candidate posts. A candidate's attitude state s moves the step's
distribution by one agent's share, m_c = (1 - 1/n) m_t + (1/n) e_s; f_psi rolls m_c forward K
steps, and so does the forecast, f_psi's own rollout from m_t (never real future data). A
candidate costs V = sum_k gamma^(k-1) KL(forecast_k || candidate_k); one is drawn with weights
softmax(-beta V). Candidates with the same state share a rollout, so a step needs at most one
rollout per state plus the forecast, however many agents and candidates. A candidate without an
attitude label has no state to weigh: it is drawn only when no candidate has one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from mfray.eval.metrics import kl_divergence
from mfray.mdp.macro import STATES


def candidate_distribution(m: Sequence[float], state: str, agents: int) -> np.ndarray:
    """m_c = (1 - 1/n) m + (1/n) e_state: m_t with one of the step's n agents in `state`."""
    onehot = np.array([s == state for s in STATES], dtype=float)
    return (1 - 1 / agents) * np.asarray(m, dtype=float) + onehot / agents


def rollout_cost(forecast: Sequence[np.ndarray], candidate: Sequence[np.ndarray], gamma: float) -> float:
    """V = sum_k gamma^(k-1) KL(forecast_k || candidate_k)."""
    return float(sum(gamma ** k * kl_divergence(f, c) for k, (f, c) in enumerate(zip(forecast, candidate))))


def pick(states: Sequence[str | None], costs: dict[str, float], beta: float, seed: int) -> int:
    """The index of the candidate drawn: weights softmax(-beta V) over the candidates with a state
    (V from `costs` by state); uniform over all when none has one."""
    labelled = [i for i, s in enumerate(states) if s is not None]
    if not labelled:
        return random.Random(seed).randrange(len(states))
    logits = np.array([-beta * costs[states[i]] for i in labelled])
    weights = np.exp(logits - logits.max())
    return random.Random(seed).choices(labelled, weights=weights.tolist())[0]
