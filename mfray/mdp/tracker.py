"""The macro state (r_t, m_t) of one MF-MDP rollout (SPEC section 6, Alg. 1): m_0 from the warm-up
labels, the real histogram m*_t during warm-up, then f_psi's prediction fed back step after step;
the input tokens x_t = [m_{t-1}; E(r_{t-1}); mean E(profiles); E(c_t)] built exactly as training
builds them (mfray.mdp.transition.assemble_token). Simulated actions reach m only through r: m is
never reset from the simulated posts.

The rollout (mfray.sim.rollout) calls `start_step` when a step begins and reads `m` for the
step's prompts; `state_dict` / `load_state` keep it resumable (a bounded window of (m, r, c)
per step, without the profiles, which the rollout rebuilds from the step number: the tokens are
rebuilt from them, so a checkpoint holds a few hundred bytes a step, not vectors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from mfray.mdp.encoder import HashingEncoder
from mfray.mdp.macro import histogram, initial_distribution

# (tokens [t, d_in] float32) -> m_hat_t [3]: f_psi's prediction for the last token, or persistence.
Predict = Callable[[np.ndarray], np.ndarray]


def persistence(tokens: np.ndarray) -> np.ndarray:
    """m_hat_t = m_{t-1}: the baseline f_psi must beat (the m-slot of the last token)."""
    return tokens[-1, :3].copy()


def transition_predictor(path: str | Path, encoder_dim: int) -> Predict:
    """f_psi loaded from a checkpoint (mfray.mdp.transition_train.save_checkpoint) as a Predict;
    refuses one trained on tokens of another encoder width."""
    import torch

    from mfray.mdp.transition_train import load_transition, predict_next

    model = load_transition(path)
    if model.cfg.encoder_dim != encoder_dim:
        raise ValueError(f"f_psi checkpoint {path} was trained with encoder_dim {model.cfg.encoder_dim}, "
                         f"this rollout encodes with {encoder_dim}")
    window = model.cfg.window
    return lambda tokens: predict_next(model, torch.from_numpy(tokens[-window:])).numpy()


class MacroTracker:
    """m_t and the tokens behind it for one rollout. `warmup_labels`: the attitude label (or
    None) of each real warm-up action, by agent index; `window`: steps of history kept (f_psi's
    window)."""

    def __init__(self, predict: Predict, encoder: HashingEncoder, warmup_labels: dict[int, str | None],
                 agents_per_step: int, window: int = 4096) -> None:
        self.predict = predict
        self.encoder = encoder
        self.window = window
        self.m0 = initial_distribution(list(warmup_labels.values()))
        by_step: dict[int, list[str | None]] = {}
        for j, label in warmup_labels.items():
            by_step.setdefault(j // agents_per_step, []).append(label)
        self._real = {step: histogram(labels) for step, labels in by_step.items()}  # m*_t of warm-up steps
        # Per kept step: (step, m_{t-1}, m_t, r_{t-1}, c_t), and its token x_t.
        self.history: list[tuple[int, list[float], list[float], str, str | None]] = []
        self._tokens: list[np.ndarray] = []
        self.m: np.ndarray = self.m0

    def start_step(self, step: int, r_prev: str, profiles: Sequence[str], signal: str | None, warmup: bool) -> np.ndarray:
        """m_t for the step beginning: the real histogram in warm-up (the previous m when the
        step has no labelled action), f_psi's prediction from x_{1:t} otherwise."""
        m_prev = self.m.tolist()
        self._tokens.append(self._token(m_prev, r_prev, profiles, signal))
        if warmup:
            real = self._real.get(step)
            m = self.m if real is None else real
        else:
            m = np.asarray(self.predict(np.stack(self._tokens)), dtype=float)
        self.history.append((step, m_prev, np.asarray(m, dtype=float).tolist(), r_prev, signal))
        del self.history[: max(0, len(self.history) - self.window)]
        del self._tokens[: max(0, len(self._tokens) - self.window)]
        self.m = np.asarray(m, dtype=float)
        return self.m

    def forecast(self, m_start: Sequence[float], r: str, profiles: Sequence[str], signal: str | None, k: int) -> list[np.ndarray]:
        """f_psi's K-step rollout after the current step, had it ended with distribution
        `m_start`: m_hat_{t+1..t+K}, feeding back only m (r, the profiles and c held at their
        current values, as L_roll holds them). Leaves the tracker unchanged."""
        tokens, m, out = list(self._tokens), np.asarray(m_start, dtype=float), []
        for _ in range(k):
            tokens.append(self._token(m.tolist(), r, profiles, signal))
            m = np.asarray(self.predict(np.stack(tokens[-self.window:])), dtype=float)
            out.append(m)
        return out

    def _token(self, m_prev: Sequence[float], r_prev: str, profiles: Sequence[str], signal: str | None) -> np.ndarray:
        from mfray.mdp.transition import assemble_token

        e_c = self.encoder.encode([signal])[0] if signal else None
        return assemble_token(np.asarray(m_prev) / np.sum(m_prev), self.encoder.encode([r_prev])[0],
                              self.encoder.encode(list(profiles) or [""]), e_c).numpy()

    def state_dict(self) -> dict:
        """JSON-able: m_0 and the kept steps' (t, m_{t-1}, m_t, r_{t-1}, c_t)."""
        return {"m0": self.m0.tolist(), "history": [list(h) for h in self.history]}

    def load_state(self, state: dict, profiles_of: Callable[[int], Sequence[str]]) -> None:
        """Resume from state_dict(); `profiles_of(t)`: the profile texts of step t's agents, as
        start_step was given them. The tokens are rebuilt from the kept steps."""
        self.m0 = np.asarray(state["m0"], dtype=float)
        self.history = [(t, m_prev, m, r, c) for t, m_prev, m, r, c in state["history"]]
        self._tokens = [self._token(m_prev, r, profiles_of(t), c) for t, m_prev, _, r, c in self.history]
        self.m = np.asarray(self.history[-1][2], dtype=float) if self.history else self.m0


@lru_cache(maxsize=4)
def _predictor(path: str | None, encoder_dim: int) -> Predict:
    # One f_psi per process and checkpoint: every rollout of a sweep actor shares it.
    return persistence if path is None else transition_predictor(path, encoder_dim)


@lru_cache(maxsize=4)
def _encoder(dim: int) -> HashingEncoder:
    # One per process and width: its text cache then serves every rollout (profiles repeat).
    return HashingEncoder(dim)


@lru_cache(maxsize=3)
def _annotator(kind: str):
    from mfray.eval.annotators import build_local_annotator

    return build_local_annotator(kind)


def attitude_labels(texts: Sequence[str], topic: str, language: str, annotator: str) -> list[str | None]:
    """The attitude label of each text by the local annotator `annotator` (mfray.eval.annotators)."""
    from mfray.eval.annotate import AnnotationItem

    out = _annotator(annotator).annotate_sync([AnnotationItem(text, topic, language) for text in texts]) if texts else []
    return [a.labels.get("attitude") for a in out]


def warmup_distribution(texts: Sequence[str], topic: str, language: str, annotator: str) -> np.ndarray:
    """m_0 of real warm-up posts: their attitude label frequencies (training and simulation both
    compute it here)."""
    return initial_distribution(attitude_labels(texts, topic, language, annotator))


def build_tracker(mdp, event, sim_start: int, agents_per_step: int) -> MacroTracker:
    """The tracker of one rollout of `event` under MdpConfig `mdp`: the warm-up agents' real
    actions (agents below sim_start that the event records) labelled by the configured local
    annotator, f_psi from `mdp.transition` (persistence when None)."""
    warm = list(enumerate(post.text for post in event.responses[:sim_start]))
    labels = attitude_labels([text for _, text in warm], event.topic_text, event.language, mdp.annotator)
    return MacroTracker(_predictor(mdp.transition, mdp.encoder_dim), _encoder(mdp.encoder_dim),
                        {j: label for (j, _), label in zip(warm, labels)}, agents_per_step, mdp.window)
