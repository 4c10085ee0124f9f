"""Prompt-lookup speculative decoding: draft tokens copied from the prompt, verified exactly.

Why: a timeline mean field mostly rewrites the previous one, which its prompt holds ("How users
reacted before:"), and is generated 1-4 prompts at a time (one per rollout step), where a
decode step costs nearly what a step of 32 rows does: it reads every weight for a token a row,
and such a call decodes 100 tokens where a policy batch decodes about 50. Here a row drafts the
tokens that followed the last earlier occurrence of its latest n-gram and checks them all in one
forward pass (1.64x on the fidelity sweep's mean-field calls: benchmarks/engine_ab_bench.py
--compare lookup, BENCHMARKS.md).

The check is the speculative-sampling rule for a draft that is one token for sure: draft token d
is kept with probability p(d), p the distribution the plain sampler would draw from there
(repetition penalty, temperature, top-k, top-p); at the first rejection a token is drawn from p
with d removed; when every draft token is kept one more is drawn from the next position's p. Each
emitted token then has exactly the plain sampler's distribution (Leviathan et al. 2023, with a
point-mass draft), so outputs are samples of the same model, from another draw of its seeded
generator than plain decoding makes. Greedy decoding (temperature 0) keeps a draft token only
where it is the argmax: the same text as plain greedy decoding.

Each row is decoded alone, so its text depends only on its prompt and seed, never on its batch.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch

from mfray.llm.base import SamplingParams

LOOKUP_NGRAMS = (3, 2, 1)  # n-gram sizes tried, longest first


def lookup_draft(tokens: list[int], k: int, ngrams: tuple[int, ...] = LOOKUP_NGRAMS) -> list[int]:
    """Up to `k` tokens that followed the latest earlier occurrence of the last n tokens of
    `tokens` (the longest n of `ngrams` that occurs); [] when none does or k < 1."""
    if k < 1:
        return []
    for n in ngrams:
        if len(tokens) <= n:
            continue
        tail = tokens[-n:]
        for start in range(len(tokens) - n - 1, -1, -1):  # latest first, the tail itself excluded
            if tokens[start : start + n] == tail:
                return tokens[start + n : start + n + k]
    return []


def filtered_logits(logits: torch.Tensor, seen: torch.Tensor, sp: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    """What the sampler draws from, for rows of `logits` [B, V] (`seen` [B, V]: tokens already
    in the row): the repetition penalty as in CTRL/HF (divide positive logits, multiply negative
    ones), then temperature, top-k, and top-p over the k survivors (the same distribution as
    filtering the whole vocabulary, since top-p keeps a prefix of the sorted tokens). Returns the
    kept tokens' logits (-inf where top-p dropped one) and their ids, each [B, k], sorted
    descending. Temperature 0 is greedy: callers take the argmax of the penalised logits instead."""
    if sp.repetition_penalty != 1.0:
        penalised = torch.where(logits > 0, logits / sp.repetition_penalty, logits * sp.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if sp.temperature == 0:
        return logits, torch.arange(logits.shape[-1]).expand_as(logits)
    k = min(sp.top_k, logits.shape[-1]) if sp.top_k else logits.shape[-1]
    values, indices = torch.topk(logits / sp.temperature, k, dim=-1)
    if sp.top_p < 1.0:
        probs = torch.softmax(values, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        values = values.masked_fill(mass_before >= sp.top_p, float("-inf"))  # keep the crossing token
    return values, indices


def next_token_probs(logits: torch.Tensor, seen: torch.Tensor, sp: SamplingParams) -> torch.Tensor:
    """The plain sampler's distribution over the vocabulary for one row (`logits`, `seen` [V]);
    for temperature 0, all mass on the argmax."""
    values, indices = filtered_logits(logits[None], seen[None], sp)
    probs = torch.zeros_like(logits, dtype=torch.float32)
    if sp.temperature == 0:
        probs[int(values[0].argmax())] = 1.0
    else:
        probs[indices[0]] = torch.softmax(values[0].float(), dim=-1)
    return probs


def verify(probs: torch.Tensor, draft: int, gen: torch.Generator | None) -> tuple[int, bool]:
    """One draft token against the distribution `probs` [V]: (draft, True) with probability
    probs[draft], else (a token drawn from `probs` without the draft, False)."""
    p = float(probs[draft])
    if p >= 1.0 or (p > 0.0 and float(torch.rand(1, generator=gen)) < p):
        return draft, True
    rest = probs.clone()
    rest[draft] = 0.0
    return int(torch.multinomial(rest, 1, generator=gen)), False


def decode_row(
    model,
    prompt: list[int],
    sp: SamplingParams,
    gen: torch.Generator | None,
    draft_tokens: int,
    eos: int,
    stops: Callable[[list[int]], bool],
    device: str,
    prefix_cache=None,
) -> tuple[list[int], str, int]:
    """Generate one row with prompt-lookup drafts of up to `draft_tokens` tokens. `stops(ids)`
    says whether the output so far ends the generation (the first-line rule). `prefix_cache`:
    the KV cache of the prompt's first tokens (shorter than the prompt), computed once for the
    rows that share them; it is copied, not changed. Returns the generated ids (EOS left out),
    the finish reason ("stop" or "length") and the forward passes made after the prompt's."""
    vocab = model.get_output_embeddings().weight.shape[0]
    seen = torch.zeros(vocab, dtype=torch.bool)
    seen[torch.tensor(prompt)] = True  # only real tokens count for the repetition penalty
    done = 0 if prefix_cache is None else prefix_cache.get_seq_length()
    cache = None if prefix_cache is None else copy.deepcopy(prefix_cache)
    first = model(input_ids=torch.tensor([prompt[done:]], device=device), past_key_values=cache, use_cache=True,
                  logits_to_keep=1)
    cache, position_logits = first.past_key_values, [first.logits[0, -1].float().cpu()]
    history, out, draft, passes = list(prompt), [], [], 0
    while True:
        # position_logits[i] is the next-token distribution after history + draft[:i].
        emitted = []
        for i, token in enumerate(draft):
            token, kept = verify(next_token_probs(position_logits[i], seen, sp), token, gen)
            emitted.append(token)
            seen[token] = True
            if not kept:
                break
        else:  # every draft token kept (or none drafted): one more from the next position
            probs = next_token_probs(position_logits[len(draft)], seen, sp)
            emitted.append(int(torch.multinomial(probs, 1, generator=gen)))
        for token in emitted:
            if token == eos:
                return out, "stop", passes
            out.append(token)
            if stops(out):
                return out, "stop", passes
            if len(out) >= sp.max_new_tokens:
                return out, "length", passes
        # The cache holds history + the whole draft: keep the kept part; the last emitted token
        # is fed next, with the next draft behind it.
        kept = len(emitted) - 1
        extra = cache.get_seq_length() - (len(history) + kept)
        if extra:
            cache.crop(-extra)  # a negative count: tokens to remove from the end
        history += emitted
        pending = emitted[-1]
        draft = lookup_draft(history, min(draft_tokens, sp.max_new_tokens - len(out) - 1))
        step = model(input_ids=torch.tensor([[pending] + draft], device=device), past_key_values=cache, use_cache=True)
        passes += 1
        cache = step.past_key_values
        position_logits = list(step.logits[0].float().cpu())
