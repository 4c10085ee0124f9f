"""The macro state's distribution part (SPEC section 6): m_t over the latent states S = [positive,
neutral, negative] (the attitude label of an action, SPEC section 4), as step histograms, the
initial m_0, each agent's own state drawn from m_t, and the text prompts show. Pure and seeded."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from mfray.eval.metrics import label_shares

STATES: tuple[str, ...] = ("positive", "neutral", "negative")
# How prompts name the states and the distribution, per language (the zh templates' own words).
_NAMES = {"en": dict(zip(STATES, STATES)), "zh": {"positive": "积极", "neutral": "中立", "negative": "消极"}}
_SEPARATOR = {"en": ", ", "zh": "、"}


def histogram(labels: Sequence[str | None]) -> np.ndarray | None:
    """The share of each state among `labels` (attitude labels; None, a missing label, is left
    out), or None when no label is present: an empty step has no histogram, not a uniform one."""
    if not any(label is not None for label in labels):
        return None
    return label_shares(labels, STATES)


def initial_distribution(warmup_labels: Sequence[str | None]) -> np.ndarray:
    """m_0: the label frequencies of the warm-up agents (SPEC: not a uniform prior). Raises
    ValueError when no warm-up agent has a label: MF-MDP needs an observed start."""
    m0 = histogram(warmup_labels)
    if m0 is None:
        raise ValueError(f"no attitude label among the {len(warmup_labels)} warm-up agents: m_0 needs at least one "
                         "(raise sim_start, or check the annotator)")
    return m0


def draw_state(m: Sequence[float], seed: int) -> str:
    """One agent's latent state s_i ~ Cat(m), drawn with its own seed (each agent independently,
    never the argmax for everyone)."""
    weights = np.asarray(m, dtype=float)
    if weights.shape != (len(STATES),) or (weights < 0).any() or not weights.sum() > 0:
        raise ValueError(f"m must hold {len(STATES)} non-negative weights with a positive sum, got {list(m)}")
    return random.Random(seed).choices(STATES, weights=weights.tolist())[0]


def percentages(m: Sequence[float]) -> list[int]:
    """m as whole percentages that add up to 100 (largest remainders get the rounding)."""
    shares = np.asarray(m, dtype=float) / float(np.sum(m)) * 100
    whole = np.floor(shares).astype(int)
    for i in np.argsort(-(shares - whole), kind="stable")[: 100 - int(whole.sum())]:
        whole[i] += 1
    return whole.tolist()


def describe(m: Sequence[float], language: str = "en") -> str:
    """m as prompts show it: "positive 20%, neutral 50%, negative 30%" (zh: 积极 20%、...)."""
    names = _NAMES[language]
    return _SEPARATOR[language].join(f"{names[s]} {p}%" for s, p in zip(STATES, percentages(m)))


def state_name(state: str, language: str = "en") -> str:
    """A state as prompts name it in `language`."""
    return _NAMES[language][state]


def prompt_fields(m: Sequence[float], latent: str, language: str = "en") -> dict[str, str]:
    """What an MF-MDP policy prompt adds (mfray.prompts.render.policy_prompt's latent_state and
    latent_distribution): the agent's own state and m_t, the same in simulation and in LCT-Policy
    training."""
    return {"latent_state": state_name(latent, language), "latent_distribution": describe(m, language)}
