"""LCT-Policy, MF-MDP's lookahead training of the policy (SPEC section 6; paper Eqs. 12-15, App. B).

A light head on the policy's last hidden state predicts the next K step histograms
m_hat_{t+1..t+K}. J policy instances (J forward passes, each with its own dropout masks) are each
scored against the REAL future histograms,
    V_j = sum_k gamma^(k-1) KL(m*_{t+k} || m_hat^j_{t+k})          (Eq. 12)
weighted without gradient by w = softmax_J(-beta * V), and the policy is trained on
    L = pred_weight * sum_j w_j V_j + text_weight * L_text          (Eqs. 13-15)
with L_text the policy NLL of the real actions (mean over the J instances). Steps past an event's
end have no m*: they are masked out of V (`valid`). Pure torch, shapes in the docstrings.
"""

from __future__ import annotations

import torch
from torch import nn

from mfray.eval.metrics import EPS
from mfray.mdp.macro import STATES
from mfray.mdp.transition import kl_rows

S = len(STATES)


class LookaheadHead(nn.Module):
    """hidden [A, H] -> m_hat [A, K, S]: dropout, a hidden layer, then K softmaxes over S."""

    def __init__(self, hidden: int, k: int, width: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.k = k
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, k * S))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(hidden.float()).view(hidden.shape[0], self.k, S), dim=-1)


def discounts(k: int, gamma: float) -> torch.Tensor:
    """[K]: gamma^(k-1) for k = 1..K."""
    return gamma ** torch.arange(k, dtype=torch.float32)


def lookahead_cost(m_hat: torch.Tensor, m_star: torch.Tensor, valid: torch.Tensor, gamma: float,
                   eps: float = EPS) -> torch.Tensor:
    """V [...] = sum_k gamma^(k-1) KL(m*_k || m_hat_k) over the valid k. m_hat [..., K, S]
    (predictions of any leading shape), m_star [K, S] (the real future, rows of invalid k are
    ignored), valid [K] bool. KL is f_psi's (kl_rows: smoothed by eps, as the metrics smooth it)."""
    m_star = torch.where(valid[:, None], m_star, 1.0 / S)  # masked rows: any distribution (never a 0/0 under eps 0)
    kl = kl_rows(m_star.expand_as(m_hat), m_hat, eps)  # [..., K]
    return (kl * discounts(m_star.shape[0], gamma) * valid.float()).sum(-1)


def future_targets(future, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(m_star [K, S], valid [K]) from the K' <= K real future histograms a sample has: the
    missing steps past the event's end are zero rows, masked out."""
    m_star = torch.zeros(k, S)
    rows = torch.as_tensor(list(future)[:k], dtype=torch.float32).reshape(-1, S)
    m_star[: len(rows)] = rows
    valid = torch.arange(k) < len(rows)
    return m_star, valid


def instance_weights(v: torch.Tensor, beta: float) -> torch.Tensor:
    """w [J, ...] = softmax over the J instances (dim 0) of -beta * V; no gradient flows through w."""
    return torch.softmax(-beta * v.detach(), dim=0)


def lct_loss(v: torch.Tensor, nll: torch.Tensor, beta: float, pred_weight: float, text_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, L_pred): v [J, A] per instance and agent, nll [J] the text NLL of each instance.
    L_pred = mean over agents of sum_j w_j V_j; L = pred_weight * L_pred + text_weight * mean_j nll."""
    pred = (instance_weights(v, beta) * v).sum(0).mean()
    return pred_weight * pred + text_weight * nll.mean(), pred
