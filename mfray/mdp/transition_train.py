"""Training f_psi on real event sequences, single process (SPEC section 6): AdamW, gradient
clipping, `events_per_batch` padded events per step, seeded; plus checkpoints, inference and the
K-step rollout evaluation against persistence.

An event sequence is its tokens X [T, d_in] (built with `transition.assemble_sequence`) and its
real histograms M* [T, S]. Events longer than the window are split into consecutive windows, the
same cut `StateTransition.forward` makes at inference.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from mfray.eval.metrics import EPS
from mfray.mdp.transition import (
    S,
    StateTransition,
    TransitionConfig,
    kl_rows,
    persistence,
    roll_terms,
    seq_terms,
    smoothed_persistence,
    transition_loss,
)


@dataclass(frozen=True)
class EventSequence:
    """One event's tokens x [T, d_in] and real histograms m [T, S]."""

    x: torch.Tensor
    m: torch.Tensor

    def __post_init__(self):
        if self.x.dim() != 2 or self.m.shape != (self.x.shape[0], S) or self.x.shape[0] == 0:
            raise ValueError(f"an event needs x (T, d_in) and m (T, {S}) with T >= 1, got {tuple(self.x.shape)} and {tuple(self.m.shape)}")


@dataclass(frozen=True)
class EpochLosses:
    """Losses after `epoch` epochs (0: before training), in eval mode (no dropout), pooled over
    positions; held-out values are None when there is no held-out event."""

    epoch: int
    train_seq: float
    train_roll: float
    heldout_seq: float | None
    heldout_roll: float | None


def split_windows(events: list[EventSequence], window: int) -> list[EventSequence]:
    """Events cut into consecutive pieces of at most `window` steps. Each piece still carries its
    real m_{t-1} in every token, so it is a valid sequence on its own."""
    return [EventSequence(e.x[i:i + window], e.m[i:i + window]) for e in events for i in range(0, e.x.shape[0], window)]


def pad_batch(events: list[EventSequence]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X [B, T, d_in], M* [B, T, S], padding_mask [B, T]) with every event right-padded with zeros
    to the longest; the mask is True at padding."""
    steps = max(e.x.shape[0] for e in events)
    x = torch.zeros(len(events), steps, events[0].x.shape[1])
    m = torch.zeros(len(events), steps, S)
    mask = torch.ones(len(events), steps, dtype=torch.bool)
    for b, e in enumerate(events):
        x[b, : len(e.x)], m[b, : len(e.m)], mask[b, : len(e.x)] = e.x, e.m, False
    return x, m, mask


def _sample_starts(steps: int, count: int | None, rng: torch.Generator) -> torch.Tensor | None:
    return None if count is None or count >= steps else torch.randperm(steps, generator=rng)[:count].sort().values


@torch.no_grad()
def evaluate(model: StateTransition, events: list[EventSequence], k: int | None = None,
             starts_seed: int = 0) -> tuple[float, float]:
    """(L_seq, L_roll) of `model` on `events`, eval mode, each pooled over all positions of all
    events (K defaults to the config's; `roll_starts`, when set, samples starts with `starts_seed`)."""
    was_training = model.training
    model.eval()
    cfg, rng = model.cfg, torch.Generator().manual_seed(starts_seed)
    seq, roll = [], []
    for event in split_windows(events, cfg.window):
        x, m = event.x[None], event.m[None]
        teacher = model(x)
        seq.append(seq_terms(teacher, m, eps=cfg.eps))
        starts = _sample_starts(x.shape[1], cfg.roll_starts, rng)
        roll.append(roll_terms(model.forward_masked, x, m, cfg.rollout_k if k is None else k, starts=starts, teacher=teacher, eps=cfg.eps))
    model.train(was_training)
    return torch.cat(seq).mean().item(), torch.cat(roll).mean().item()


def train_transition(train: list[EventSequence], heldout: list[EventSequence], cfg: TransitionConfig,
                     seed: int, model: StateTransition | None = None
                     ) -> tuple[StateTransition, list[EpochLosses]]:
    """Train f_psi on `train` for cfg.epochs and return it with the losses before training and
    after each epoch, on `train` and `heldout`.

    Seeded: the initial weights, dropout, the event order (reshuffled each epoch) and sampled
    rollout starts all follow from `seed`; the global torch RNG is forked, not reseeded, so
    callers' own draws are unaffected."""
    if not train:
        raise ValueError("no training events")
    pieces = split_windows(train, cfg.window)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = StateTransition(cfg) if model is None else model
        optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        order, starts_rng = random.Random(seed), torch.Generator().manual_seed(seed)
        history = [_losses(model, 0, train, heldout, seed)]
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            shuffled = order.sample(pieces, len(pieces))
            for i in range(0, len(shuffled), cfg.events_per_batch):
                x, m, mask = pad_batch(shuffled[i:i + cfg.events_per_batch])
                loss, _, _ = transition_loss(model, x, m, mask, _sample_starts(x.shape[1], cfg.roll_starts, starts_rng))
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                optimiser.step()
            history.append(_losses(model, epoch, train, heldout, seed))
    model.eval()
    return model, history


def _losses(model: StateTransition, epoch: int, train: list[EventSequence], heldout: list[EventSequence],
            seed: int) -> EpochLosses:
    held = evaluate(model, heldout, starts_seed=seed) if heldout else (None, None)
    return EpochLosses(epoch, *evaluate(model, train, starts_seed=seed), *held)


def save_checkpoint(model: StateTransition, path: str | Path) -> None:
    """One file: the weights and the config as JSON (what `load_transition` rebuilds from)."""
    # A plain-head config is saved without the residual fields, which load back as their
    # defaults: its file stays byte-identical to one saved before the option existed, and runs'
    # identities pin f_psi by the file's digest.
    plain = None if model.cfg.residual else {"residual", "residual_floor"}
    torch.save({"config": model.cfg.model_dump_json(exclude=plain), "state_dict": model.state_dict()}, Path(path))


def load_transition(path: str | Path) -> StateTransition:
    """The model saved by `save_checkpoint`, in eval mode. Only tensors and strings are read
    (weights_only), so a checkpoint cannot run code."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = StateTransition(TransitionConfig.model_validate(json.loads(saved["config"])))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


@torch.no_grad()
def predict_next(model: StateTransition, x_prefix: torch.Tensor) -> torch.Tensor:
    """m_hat_t [S] for the last token of x_prefix [t + 1, d_in] (tokens from `assemble_token`, the
    m-slots carrying whatever m the simulation holds), in eval mode; beyond the window only the
    last `window` tokens are seen, as in training."""
    was_training = model.training
    model.eval()
    out = model(x_prefix)[-1]
    model.train(was_training)
    return out


PERSISTENCE_FLOORS = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@torch.no_grad()
def best_persistence_floor(events: list[EventSequence], floors=PERSISTENCE_FLOORS, eps: float = EPS) -> float:
    """The floor of `smoothed_persistence` with the least mean one-step KL(m*_t || prediction)
    over every step of `events` (fit it on training events, report it on held-out ones)."""
    m = torch.cat([e.m for e in events])
    previous = torch.cat([e.x[:, :S] for e in events])
    scores = {f: kl_rows(m, smoothed_persistence(f)(previous, None, None), eps).mean().item() for f in floors}
    return min(scores, key=scores.get)


@torch.no_grad()
def rollout_kl(model: StateTransition, x: torch.Tensor, m: torch.Tensor, k: int,
               starts: torch.Tensor | None = None, floor: float | None = None) -> dict[str, float]:
    """Mean KL(m*_{t+k} || m_hat_{t+k}) over every start and k = 1..K of one event, for f_psi
    (eval mode) and for persistence (m_{t+k} = m_t): {"model": ..., "persistence": ...}, with
    "persistence_smoothed" too when a `floor` is given (`smoothed_persistence`). Events longer
    than the window are evaluated window by window; `starts` applies to a single window."""
    was_training = model.training
    model.eval()
    pieces = split_windows([EventSequence(x, m)], model.cfg.window)
    if starts is not None and len(pieces) > 1:
        raise ValueError(f"starts given for an event of {x.shape[0]} steps, longer than the window {model.cfg.window}")
    predictors = {"model": model.forward_masked, "persistence": persistence}
    if floor is not None:
        predictors["persistence_smoothed"] = smoothed_persistence(floor)
    terms = {name: torch.cat([roll_terms(predict, p.x[None], p.m[None], k, starts=starts, eps=model.cfg.eps) for p in pieces])
             for name, predict in predictors.items()}
    model.train(was_training)
    return {name: t.mean().item() for name, t in terms.items()}
