"""Teacher-forced log-probs of completions given prompts: the one implementation that the
engine's `score` and the training losses share, so inference and training agree token for token.

Alignment: the logit at position p predicts the token at p+1, so completion token k (at
offset + len(prompt) + k) is read from position offset + len(prompt) + k - 1. Prompt tokens
are never scored, whatever the padding side (the public reference code scored them under left
padding).
"""

from __future__ import annotations

import torch


def completion_logprobs(
    model, pad_token_id: int, pairs: list[tuple[list[int], list[int]]], padding_side: str = "right", device: str = "cpu"
) -> list[torch.Tensor]:
    """Per-token log-probs, one 1-D tensor per (prompt ids, completion ids) pair, in order.

    Differentiable when called with grad enabled. Logits are computed only at completion
    positions: full-vocabulary logits for every position would cost GBs."""
    return scored_pairs(model, pad_token_id, pairs, padding_side, device)[0]


def scored_pairs(
    model, pad_token_id: int, pairs: list[tuple[list[int], list[int]]], padding_side: str = "right", device: str = "cpu"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(completion_logprobs, last hidden [B, H]): also the final layer's hidden state at each
    pair's last token (prompt + completion), from the same forward pass (LCT-Policy's head reads
    it)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    batch = len(pairs)
    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    rows, cols, targets, last = [], [], [], []
    for row, (p, c) in enumerate(pairs):
        if not p:
            raise ValueError(f"pair {row}: empty prompt (the first completion token would have no context)")
        seq = p + c
        offset = width - len(seq) if padding_side == "left" else 0
        ids[row, offset : offset + len(seq)] = torch.tensor(seq)
        mask[row, offset : offset + len(seq)] = 1
        last.append(offset + len(seq) - 1)
        for k in range(len(c)):
            rows.append(row)
            cols.append(offset + len(p) + k - 1)
            targets.append(c[k])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        output_hidden_states=True,
        logits_to_keep=1,
    )
    states = out.hidden_states[-1]
    final = states[torch.arange(batch), torch.tensor(last)]
    if not rows:
        return [torch.zeros(0, device=device) for _ in pairs], final
    hidden = states[torch.tensor(rows), torch.tensor(cols)]
    logits = model.get_output_embeddings()(hidden).float()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    picked = torch.log_softmax(logits, dim=-1)[torch.arange(len(targets)), torch.tensor(targets, device=logits.device)]
    lengths = [len(c) for _, c in pairs]
    return list(torch.split(picked, lengths)), final
