"""Pure helpers for what a prompt shows: recent and popular actions, signals, seeds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from mfray.sim.config import Signal


@dataclass(frozen=True)
class WindowAction:
    """An action as the context window keeps it: its text and its author's follower count."""

    text: str
    followers: int | None


def select_recent(window: Sequence[WindowAction], k: int) -> list[str]:
    """The k most recent actions, oldest first (the order they happened)."""
    return [a.text for a in list(window)[-k:]] if k > 0 else []


def select_popular(window: Sequence[WindowAction], k: int, last: int) -> list[str]:
    """The k actions with the most followers among the `last` most recent, most followed first.

    Unknown follower counts rank below every known count (never a silent zero-vs-missing mix-up
    in the sort key); ties go to the more recent action."""
    recent = list(window)[-last:]
    ranked = sorted(
        range(len(recent)),
        key=lambda i: (recent[i].followers is not None, recent[i].followers or 0, i),
        reverse=True,
    )
    return [recent[i].text for i in ranked[:k]]


def signal_at(signals: Sequence[Signal], step: int) -> str | None:
    """The exogenous signal in force at `step`: the latest one that started at or before it."""
    current = None
    for s in signals:
        if s.step <= step:
            current = s.text
    return current


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (stable across processes and Python versions, unlike
    hash()). Every random choice of a rollout is keyed by what it is for, so results do not
    depend on call order, batching, or where a run was resumed."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
