"""The state-transition model f_psi of MF-MDP and its losses (SPEC section 6; paper Eqs. 7-10).

m_hat_t = f_psi(x_{1:t}): a causal Transformer over one input token per step,
x_t = [m_{t-1}; E(r_{t-1}); mean over the step's agents of E(profile); E(c_t) or zeros], so a token
has `token_dim(encoder_dim)` = 3 + 3 * encoder_dim entries, the m-slot first.

Indexing is 0-based here: position t of a sequence holds the token x_t, whose m-slot carries
m*_{t-1} (m_0 at t = 0), and the target m*_t. Shapes: x [B, T, d_in], m [B, T, S] with S = 3
states in `mfray.mdp.macro.STATES` order; a padding mask [B, T] is True at padding, which must
sit at the end of each row (right padding).

Losses are pure functions of a *predictor*: any callable (x [B, L, d_in], positions [L],
allowed [L, L] bool, True where a query may attend a key) -> probabilities [B, L, S].
`StateTransition.forward_masked` is one; `persistence` (m_hat_t = m_{t-1}) and
`smoothed_persistence(floor)` are others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from mfray.config import StrictModel
from mfray.eval.metrics import EPS
from mfray.mdp.macro import STATES

S = len(STATES)
Predictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def token_dim(encoder_dim: int) -> int:
    """Entries of one input token: m (S) + E(r) + mean E(profile) + E(c), each E encoder_dim wide."""
    return S + 3 * encoder_dim


class TransitionConfig(StrictModel):
    """f_psi's architecture and training (SPEC section 6 defaults; rollout_k and alpha are the
    project's, the paper gives none)."""

    encoder_dim: int = Field(768, ge=1)  # the paper's BERT [CLS] width; set to the encoder used
    d_model: int = Field(256, ge=1)
    layers: int = Field(3, ge=1)
    heads: int = Field(8, ge=1)
    ffn: int = Field(1024, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    window: int = Field(4096, ge=1)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    clip: float = Field(1.0, gt=0)
    events_per_batch: int = Field(4, ge=1)
    epochs: int = Field(20, ge=1)
    rollout_k: int = Field(8, ge=1)  # K of L_roll
    alpha: float = Field(1.0, ge=0)  # L = L_seq + alpha * L_roll; 0 is the "w/o LCT-State" ablation
    # Rollout start points per batch: None = every position (project default); n = a seeded
    # sample of n, which bounds L_roll's memory on long events (see `rollout`).
    roll_starts: int | None = Field(None, ge=1)
    eps: float = Field(EPS, ge=0)  # KL smoothing, as the metrics do
    # Residual output: m_hat_t = softmax(head(h_t) + log(m_{t-1} + residual_floor)), so the head
    # learns how the distribution moves, not where it is. Still SPEC's softmax over S; False is
    # the plain head. Why it exists: the plain head, trained on a few events, learned each
    # step's marginal and ignored its inputs (BENCHMARKS.md, "f_psi ignores its inputs").
    residual: bool = False
    residual_floor: float = Field(1e-3, gt=0)  # keeps log finite where a state's share is 0

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        return self

    @property
    def d_in(self) -> int:
        return token_dim(self.encoder_dim)


def _vector(value, name: str, shape: tuple[int | None, ...]) -> torch.Tensor:
    """`value` (numpy or torch) as a finite float32 tensor of `shape` (None: any size >= 1)."""
    # Through numpy first: torch.as_tensor cannot take a list of arrays.
    t = value.float() if torch.is_tensor(value) else torch.as_tensor(np.asarray(value, dtype=np.float32))
    if t.dim() != len(shape) or any(want is not None and got != want for got, want in zip(t.shape, shape)) or 0 in t.shape:
        want = "x".join("n" if d is None else str(d) for d in shape)
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({want})")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds a non-finite value")
    return t


def assemble_token(m_prev, r_prev, profiles, c=None) -> torch.Tensor:
    """x_t = [m_{t-1}; E(r_{t-1}); mean_i E(profile_i); E(c_t) or zeros] as a float32 [d_in] tensor.

    m_prev [S] a distribution; r_prev [D]; profiles [n_agents >= 1, D], the step's agents; c [D]
    or None when the step has no exogenous signal. Training and inference both build tokens here,
    so f_psi sees identical inputs in both."""
    m = _vector(m_prev, "m_{t-1}", (S,))
    if (m < 0).any() or abs(float(m.sum()) - 1) > 1e-4:
        raise ValueError(f"m_{{t-1}} must be a distribution over {STATES}, got {m.tolist()}")
    r = _vector(r_prev, "E(r_{t-1})", (None,))
    d = r.shape[0]
    p = _vector(profiles, "E(profiles)", (None, d))
    signal = torch.zeros(d) if c is None else _vector(c, "E(c_t)", (d,))
    return torch.cat([m, r, p.mean(dim=0), signal])


def assemble_sequence(m0, m_star, r_prev, profiles, signals=None) -> torch.Tensor:
    """The tokens X [T, d_in] of a real event: step t gets m*_{t-1} (m0 at t = 0), E(r_{t-1})
    (r_prev[t], so r_prev starts with E(r_0)), the mean of profiles[t] [n_t, D] and signals[t]
    (None, or a whole None list, for no signal)."""
    m_star = _vector(m_star, "m*", (None, S))
    steps = m_star.shape[0]
    signals = [None] * steps if signals is None else signals
    if not len(r_prev) == len(profiles) == len(signals) == steps:
        raise ValueError(f"{steps} histograms but {len(r_prev)} E(r), {len(profiles)} profile sets, {len(signals)} signals")
    previous = [m0] + list(m_star[:-1])
    return torch.stack([assemble_token(*step) for step in zip(previous, r_prev, profiles, signals)])


def causal_allowed(length: int, device=None) -> torch.Tensor:
    """[length, length] bool: query t may attend keys 0..t."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def lengths_of(padding_mask: torch.Tensor | None, batch: int, steps: int) -> torch.Tensor:
    """Valid steps per row [B] from a right-padding mask (None: all rows full). Causal attention
    plus right padding means no valid token ever attends a pad, so the mask only marks which
    outputs count; left or interior padding would not have that property and is refused."""
    if padding_mask is None:
        return torch.full((batch,), steps, dtype=torch.long)
    if padding_mask.shape != (batch, steps) or padding_mask.dtype != torch.bool:
        raise ValueError(f"padding_mask must be bool ({batch}, {steps}), got {padding_mask.dtype} {tuple(padding_mask.shape)}")
    lengths = (~padding_mask).sum(dim=1).cpu()
    if not torch.equal(padding_mask.cpu(), torch.arange(steps)[None, :] >= lengths[:, None]):
        raise ValueError("padding must sit at the end of each row (right padding); pad events after their last step")
    if (lengths == 0).any():
        raise ValueError(f"rows {torch.nonzero(lengths == 0).flatten().tolist()} have no valid step")
    return lengths


class StateTransition(nn.Module):
    """f_psi: input projection + learned positions -> causal TransformerEncoder -> softmax over S
    (of the head alone, or with `cfg.residual` of the head plus log m_{t-1})."""

    def __init__(self, cfg: TransitionConfig):
        super().__init__()
        self.cfg = cfg
        self.project = nn.Linear(cfg.d_in, cfg.d_model)
        self.position = nn.Embedding(cfg.window, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.ffn, cfg.dropout, batch_first=True)
        # Nested tensors would zero padded outputs by a key padding mask we never pass; off.
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.head = nn.Linear(cfg.d_model, S)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """m_hat [B, T', S] for x [B, T, d_in] (or [T, d_in] -> [T', S]), causal.

        A sequence longer than the window keeps only its last `window` tokens, numbered from 0,
        so T' = min(T, window) and each returned step sees the kept tokens up to it: the
        predictions are those of the last `window` steps. Training splits long events into
        windows the same way (`transition_train.split_windows`). `padding_mask` is only checked:
        with causal attention and right padding no valid step sees a pad, and the outputs at pads
        are meaningless (the losses skip them)."""
        single = x.dim() == 2
        x = x[None] if single else x
        self._check_tokens(x)
        batch, steps = x.shape[:2]
        lengths_of(padding_mask, batch, steps)
        if steps > self.cfg.window:
            if padding_mask is not None and padding_mask.any():
                raise ValueError(f"a padded batch longer than the window ({steps} > {self.cfg.window}) would lose the "
                                 "ends of its shorter rows: split events into windows first")
            x, steps = x[:, -self.cfg.window:], self.cfg.window
        out = self.forward_masked(x, torch.arange(steps, device=x.device), causal_allowed(steps, x.device))
        return out[0] if single else out

    def forward_masked(self, x: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """The predictor the losses call: x [B, L, d_in] with position ids [L] (< window) and an
        attention pattern `allowed` [L, L] (True: query may attend key) -> probabilities [B, L, S]."""
        self._check_tokens(x)
        if positions.numel() and int(positions.max()) >= self.cfg.window:
            raise ValueError(f"position {int(positions.max())} is past the window {self.cfg.window}")
        h = self.project(x) + self.position(positions)[None]
        h = self.encoder(h, mask=~allowed)  # a bool mask is True where attention is blocked
        logits = self.head(h)
        if self.cfg.residual:
            logits = logits + torch.log(x[..., :S] + self.cfg.residual_floor)  # the m-slot: m_{t-1}
        return torch.softmax(logits, dim=-1)

    def _check_tokens(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.cfg.d_in:
            raise ValueError(f"tokens have shape {tuple(x.shape)}, expected (B, T, {self.cfg.d_in}) "
                             f"(d_in = 3 + 3 * encoder_dim {self.cfg.encoder_dim})")


def persistence(x: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The persistence baseline as a predictor: m_hat_t = m_{t-1}, the token's own m-slot. Rolled
    out, it repeats the last known real histogram: m_{t+k} = m_t."""
    return x[..., :S]


def smoothed_persistence(floor: float) -> Predictor:
    """Persistence with a floor, as a predictor: m_hat_t = (m_{t-1} + floor) / sum. Plain
    persistence calls a state that was empty at t-1 all but impossible, which KL punishes hard;
    an f_psi with the residual output keeps such a floor itself, so this is its fair baseline."""
    if floor <= 0:
        raise ValueError(f"the floor must be > 0, got {floor}")

    def predict(x: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        m = x[..., :S] + floor
        return m / m.sum(dim=-1, keepdim=True)

    return predict


def kl_rows(p: torch.Tensor, q: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """KL(p || q) in nats per row (last dim), both smoothed first like `mfray.eval.metrics`:
    (v + eps) / sum(v + eps). With eps 0, 0 * log 0 counts as 0."""
    if p.shape != q.shape:
        raise ValueError(f"KL of shapes {tuple(p.shape)} vs {tuple(q.shape)}")
    p = (p + eps) / (p + eps).sum(dim=-1, keepdim=True)
    q = (q + eps) / (q + eps).sum(dim=-1, keepdim=True)
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(dim=-1)


def _check_targets(x: torch.Tensor, m_star: torch.Tensor) -> None:
    if m_star.shape != (*x.shape[:2], S):
        raise ValueError(f"targets m* have shape {tuple(m_star.shape)}, expected {(*x.shape[:2], S)} for tokens {tuple(x.shape)}")


def seq_terms(m_hat: torch.Tensor, m_star: torch.Tensor, padding_mask: torch.Tensor | None = None,
              eps: float = EPS) -> torch.Tensor:
    """KL(m*_t || m_hat_t) at every valid position, flattened [N] (Eq. 7's terms)."""
    if m_hat.shape != m_star.shape or m_hat.dim() != 3:
        raise ValueError(f"m_hat {tuple(m_hat.shape)} and m* {tuple(m_star.shape)} must both be (B, T, {S})")
    lengths = lengths_of(padding_mask, *m_star.shape[:2]).to(m_star.device)
    valid = torch.arange(m_star.shape[1], device=m_star.device)[None, :] < lengths[:, None]
    return kl_rows(m_star[valid], m_hat[valid], eps)


def seq_loss(m_hat: torch.Tensor, m_star: torch.Tensor, padding_mask: torch.Tensor | None = None,
             eps: float = EPS) -> torch.Tensor:
    """L_seq: the mean over valid positions of KL(m*_t || m_hat_t), m_hat teacher-forced (every
    token carries the real m*_{t-1})."""
    return seq_terms(m_hat, m_star, padding_mask, eps).mean()


@dataclass(frozen=True)
class RolloutLayout:
    """All starts' rollouts as one sequence: the T real tokens, then the rolled tokens ordered by
    depth. Rolled token r copies real position `source[r]` = starts[start[r]] + depth[r]; its
    m-slot is replaced by that rollout's previous prediction."""

    positions: torch.Tensor  # [L] position ids
    allowed: torch.Tensor  # [L, L]
    start: torch.Tensor  # [R] index into starts
    depth: torch.Tensor  # [R] 1..K-1, non-decreasing
    source: torch.Tensor  # [R]


def rollout_layout(steps: int, starts: torch.Tensor, k: int) -> RolloutLayout:
    """The layout for `starts` (first rolled positions, 0-based) and K steps over a sequence of
    `steps` tokens. Rolled tokens past the end are left out. Attention: real tokens are causal
    among themselves; a rolled token of start s sees the real tokens 0..s and its own rollout's
    rolled tokens up to itself, never another start's, and no real token sees a rolled one."""
    depth, start = torch.meshgrid(torch.arange(1, k), torch.arange(len(starts)), indexing="ij")
    depth, start = depth.flatten(), start.flatten()
    source = starts[start] + depth
    keep = source < steps
    depth, start, source = depth[keep], start[keep], source[keep]
    total = steps + len(source)
    allowed = torch.zeros(total, total, dtype=torch.bool)
    allowed[:steps, :steps] = causal_allowed(steps)
    allowed[steps:, :steps] = torch.arange(steps)[None, :] <= starts[start][:, None]
    allowed[steps:, steps:] = (start[:, None] == start[None, :]) & (depth[None, :] <= depth[:, None])
    return RolloutLayout(torch.cat([torch.arange(steps), source]), allowed, start, depth, source)


def _starts(starts: torch.Tensor | None, steps: int) -> torch.Tensor:
    if starts is None:
        return torch.arange(steps)
    starts = torch.as_tensor(starts, dtype=torch.long).flatten().cpu()
    if starts.numel() == 0 or starts.min() < 0 or starts.max() >= steps:
        raise ValueError(f"rollout starts must be non-empty positions in [0, {steps}), got {starts.tolist()}")
    return starts


def rollout(predict: Predictor, x: torch.Tensor, k: int, starts: torch.Tensor | None = None,
            teacher: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 8: every start's K-step rollout, [B, n_starts, K, S]; out[:, i, j] predicts position
    starts[i] + j (zeros where that is past the sequence end).

    A start s is the first rolled position: tokens 0..s are real (s's m-slot holds m*_{s-1}; the
    paper starts from m_hat_{s-1} = m*_{s-1}), so step 0 is the teacher-forced prediction
    (`teacher`, [B, T, S], computed when not given); later tokens keep their real E(r), profiles
    and c but carry the previous step's prediction in their m-slot. Gradients flow through the
    fed-back predictions. Start 0 rolls from m_0 alone. In training mode each pass draws its own
    dropout masks, the real prefix's included.

    Cost: one teacher-forced pass, then K-1 passes, pass j over T + n * j tokens (the rolled
    tokens of depth <= j, see `rollout_layout`) with dense [L, L] attention: O(K^2 * n) extra
    token work and O(K * (T + n K)^2) attention per layer, against n * K separate prefix passes
    done naively. For all T starts on long events that attention is the limit; pass a subset."""
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    batch, steps = x.shape[:2]
    starts = _starts(starts, steps)
    allowed = causal_allowed(steps, x.device)
    teacher = predict(x, torch.arange(steps, device=x.device), allowed) if teacher is None else teacher
    predictions = [teacher[:, starts.to(x.device)]]
    layout = rollout_layout(steps, starts, k)
    rolled = x[:, layout.source.to(x.device)]
    rolled_m = rolled[..., :S]
    for depth in range(1, k):
        at = (layout.depth == depth).to(x.device)
        if not at.any():
            break
        # Only tokens of depth <= this one exist yet; deeper ones could not affect them anyway.
        length = steps + int((layout.depth <= depth).sum())
        fed = predictions[-1][:, layout.start.to(x.device)]
        rolled_m = torch.where(at[None, :, None], fed, rolled_m)
        tokens = torch.cat([x, torch.cat([rolled_m, rolled[..., S:]], dim=-1)], dim=1)[:, :length]
        out = predict(tokens, layout.positions[:length].to(x.device), layout.allowed[:length, :length].to(x.device))
        new = out[:, steps:][:, at[: length - steps]]
        predictions.append(new.new_zeros(batch, len(starts), S).index_copy(1, layout.start[layout.depth == depth].to(x.device), new))
    predictions += [teacher.new_zeros(batch, len(starts), S)] * (k - len(predictions))
    return torch.stack(predictions, dim=2)


def roll_terms(predict: Predictor, x: torch.Tensor, m_star: torch.Tensor, k: int,
               padding_mask: torch.Tensor | None = None, starts: torch.Tensor | None = None,
               teacher: torch.Tensor | None = None, eps: float = EPS) -> torch.Tensor:
    """KL(m*_{s+j} || m_hat_{s+j}) for every start s and j = 0..K-1 whose position is a valid
    step of its row, flattened [N] (Eq. 9's terms)."""
    _check_targets(x, m_star)
    steps = x.shape[1]
    starts = _starts(starts, steps)
    predicted = rollout(predict, x, k, starts, teacher)
    lengths = lengths_of(padding_mask, *x.shape[:2]).to(x.device)
    position = (starts[:, None] + torch.arange(k)[None, :]).to(x.device)  # [n, K]
    valid = position[None] < lengths[:, None, None]  # [B, n, K]
    target = m_star[:, position.clamp(max=steps - 1)]
    return kl_rows(target[valid], predicted[valid], eps)


def roll_loss(predict: Predictor, x: torch.Tensor, m_star: torch.Tensor, k: int,
              padding_mask: torch.Tensor | None = None, starts: torch.Tensor | None = None,
              teacher: torch.Tensor | None = None, eps: float = EPS) -> torch.Tensor:
    """L_roll: sum over k of KL(m*_{t+k} || m_hat_{t+k}) along every start's K-step rollout,
    averaged per position (over all valid (start, step) pairs); steps past a row's end are
    ignored. With K = 1 and all starts it equals L_seq."""
    return roll_terms(predict, x, m_star, k, padding_mask, starts, teacher, eps).mean()


def transition_loss(model: StateTransition, x: torch.Tensor, m_star: torch.Tensor,
                    padding_mask: torch.Tensor | None = None, starts: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, L_seq, L_roll) with L = L_seq + alpha * L_roll (Eq. 10), K, alpha and eps from the
    model's config; the teacher-forced pass is shared by both terms. alpha 0 (the "w/o
    LCT-State" ablation) skips the rollout and reports L_roll as NaN."""
    _check_targets(x, m_star)
    cfg = model.cfg
    if x.shape[1] > cfg.window:
        raise ValueError(f"a training sequence of {x.shape[1]} steps exceeds the window {cfg.window}: split it first")
    teacher = model(x, padding_mask)
    l_seq = seq_loss(teacher, m_star, padding_mask, cfg.eps)
    if cfg.alpha == 0:
        return l_seq, l_seq, torch.full_like(l_seq, math.nan)
    l_roll = roll_loss(model.forward_masked, x, m_star, cfg.rollout_k, padding_mask, starts, teacher, cfg.eps)
    return l_seq + cfg.alpha * l_roll, l_seq, l_roll
