"""IB-Tune and SFT losses (SPEC section 7), pure torch on per-token log-prob tensors.

Inputs are what `mfray.llm.scoring.completion_logprobs` returns: one 1-D tensor of log-probs
per completion, covering completion tokens only, so no padding or prompt token can leak in.
"""

from __future__ import annotations

import torch


def token_mean(logprobs: list[torch.Tensor]) -> torch.Tensor:
    """Mean log-prob over all completion tokens of all sequences (a scalar).

    Pooled over tokens, not averaged per sequence: every action token weighs the same."""
    tokens = sum(lp.numel() for lp in logprobs)
    if tokens == 0:
        raise ValueError("no completion tokens to average (all completions are empty)")
    return torch.cat([lp.reshape(-1) for lp in logprobs]).sum() / tokens


def policy_nll(logprobs: list[torch.Tensor]) -> torch.Tensor:
    """L_pi = -sum_i log pi(a*_i | s_i, m), per-token mean over the action tokens.
    The SFT loss is the same on `state` prompts."""
    return -token_mean(logprobs)


def per_sequence_mean(logprobs: list[torch.Tensor]) -> torch.Tensor:
    """[J] per-token mean log-prob of each sequence (empty sequences are an error: a summary
    with no tokens has no likelihood to compare)."""
    for j, lp in enumerate(logprobs):
        if lp.numel() == 0:
            raise ValueError(f"sequence {j} has no tokens")
    return torch.stack([lp.mean() for lp in logprobs])


def ib_rewards(action_logp: torch.Tensor, posterior_logp: torch.Tensor, prior_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """R_j = beta * action_logp_j - (posterior_logp_j - prior_logp_j), all [J] per-token means.

    action_logp_j: mean over the next step's agents of log pi(a*_i | s_i, m_j);
    posterior_logp_j: log mu_phi(m_j | X); prior_logp_j: log r(m_j) (adapters off, no X).
    Detached: rewards weight the score function, they are not differentiated."""
    return (beta * action_logp - (posterior_logp - prior_logp)).detach()


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_j = R_j - mean_{k != j} R_k for [J] rewards, J >= 2."""
    j = rewards.numel()
    if j < 2:
        raise ValueError(f"a leave-one-out baseline needs at least 2 samples, got {j}")
    return rewards - (rewards.sum() - rewards) / (j - 1)


def score_function_loss(advantages: torch.Tensor, sequence_logp: torch.Tensor) -> torch.Tensor:
    """-sum_j A_j * log mu_phi(m_j | X) / J. `sequence_logp` [J] carries the gradient; it is the
    summed log-prob of each summary (the score function of the sequence distribution)."""
    if advantages.shape != sequence_logp.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} vs log-probs {tuple(sequence_logp.shape)}")
    return -(advantages.detach() * sequence_logp).sum() / advantages.numel()
