"""Prefill with shared prefixes: the prompt pass of a generate batch, computing each shared
prefix once.

Why: on a CPU a prompt token costs about 2 ms whether prompts are batched or not (default model,
2 cores; benchmarks/engine_profile.py), prompts are 5-10 times longer than completions, and the
policy prompts of one step of one event share everything up to the user profile. A batch is split into runs of prompts that
share a prefix; each run's prefix is forwarded once and only each prompt's own suffix on top of
a copy of its KV cache; the runs' caches are then left-padded to one width and stacked, so
decoding runs as one batch whatever the runs. On a model switched to mfray.llm.shared_attention
each run's prefix stays one copy beside its rows (`SharedPrefixLayer`): only the rows' own
tokens are stacked, and decoding reads each prefix once a step. Rows are padded at the start (before
the prefix) and between prefix and suffix; the attention mask hides both and position ids count
only real tokens, so each row sees exactly its own prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from mfray.llm.shared_attention import ATTENTION_NAME, PREFIX_ATTR


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """Number of leading tokens two prompts share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


# What one forward pass costs beyond its tokens, in tokens (about 90 ms against 2.5 ms a token for
# the default model on 2 CPU cores): it keeps short prompts from being forwarded one by one.
PASS_COST_TOKENS = 32


def run_cost(size: int, longest: int, shared: int) -> int:
    """Tokens a run of `size` prompts (the longest `longest` tokens) computes, padding included,
    plus PASS_COST_TOKENS per forward pass: the shared prefix once in its own pass (when it
    shares one), then every row padded to the longest suffix."""
    prefix = shared + PASS_COST_TOKENS if shared else 0
    return prefix + size * (longest - shared) + PASS_COST_TOKENS


def shared_prefix_runs(prompts: list[list[int]]) -> list[tuple[int, int, int]]:
    """Split prompts (sorted, so that prompts with a common prefix are neighbours) into runs
    (start, end, shared) of prompts[start:end] whose first `shared` tokens are equal, choosing
    the split with the least `run_cost` in all: a common prefix is computed once, but a run pads
    its rows to its longest suffix, so prompts that share little stay apart.

    `shared` is capped one token short of the run's shortest prompt (every row keeps a token of
    its own, whose logits start decoding). Exact dynamic programming over where runs end:
    O(n^2) for a batch of n."""
    n = len(prompts)
    lcp = [common_prefix_length(prompts[i], prompts[i + 1]) for i in range(n - 1)]
    best = [0.0] + [math.inf] * n  # best[j]: least cost of prompts[:j]
    cut = [0] * (n + 1)  # where the last run of that best split starts
    shared_of = [0] * (n + 1)  # and what it shares
    for end in range(1, n + 1):
        shared = len(prompts[end - 1]) - 1
        longest = 0
        for start in range(end - 1, -1, -1):  # grow the run to the left
            longest = max(longest, len(prompts[start]))
            if start < end - 1:
                shared = min(shared, lcp[start], len(prompts[start]) - 1)
            # A run may also skip its prefix pass (a plain padded batch) when it shares little.
            for run_shared in (shared, 0) if end - start > 1 else (0,):
                cost = best[start] + run_cost(end - start, longest, run_shared)
                if cost < best[end]:
                    best[end], cut[end], shared_of[end] = cost, start, run_shared
    runs = []
    end = n
    while end:
        runs.append((cut[end], end, shared_of[end]))
        end = cut[end]
    return runs[::-1]


@dataclass
class Prefilled:
    """The prompt pass of a batch: next-token logits [B, V] (float32, CPU), the KV cache, the
    attention mask over the cache [B, L] and each row's last position id [B, 1]."""

    logits: torch.Tensor
    cache: DynamicCache
    mask: torch.Tensor
    last_position: torch.Tensor


def prefill(model, prompts: list[list[int]], pad_id: int, device: str, share_prefixes: bool = True) -> Prefilled:
    """Forward a batch of prompts (token ids); with `share_prefixes` (only for models whose
    cache is `stackable`), each run of `shared_prefix_runs` forwards its shared prefix once.
    Callers sort the prompts so that runs form. On a model switched to
    mfray.llm.shared_attention, each run also keeps its prefix once in the cache
    (`SharedPrefixLayer`); otherwise stacked runs copy it into every row."""
    runs = shared_prefix_runs(prompts) if share_prefixes else [(0, len(prompts), 0)]
    keep_shared = model.config._attn_implementation == ATTENTION_NAME
    parts = [_prefill_run(model, prompts[s:e], shared, pad_id, device, keep_shared) for s, e, shared in runs]
    if len(parts) == 1:
        return parts[0]
    if any(isinstance(p.cache.layers[0], SharedPrefixLayer) for p in parts):
        return _stack_shared(parts)
    return _stack(parts)


def _prefill_run(model, prompts: list[list[int]], shared: int, pad_id: int, device: str, keep_shared: bool) -> Prefilled:
    cache = None
    suffixes = [p[shared:] for p in prompts]
    width = max(len(s) for s in suffixes)
    if shared:
        prefix = torch.tensor([prompts[0][:shared]], device=device)
        cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        if keep_shared and stackable(cache):
            for i, layer in enumerate(cache.layers):  # each row's own part starts empty
                own_keys = layer.keys[:, :, :0].expand(len(prompts), -1, -1, -1)
                own_values = layer.values[:, :, :0].expand(len(prompts), -1, -1, -1)
                prefixes = [(layer.keys, layer.values, 0, len(prompts))]
                cache.layers[i] = SharedPrefixLayer(prefixes, own_keys, own_values, room=width)
        else:
            cache.batch_repeat_interleave(len(prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, s in enumerate(suffixes):  # left padding: every row's next token is at the end
        ids[row, width - len(s) :] = torch.tensor(s)
        mask[row, width - len(s) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = shared + (mask.cumsum(-1) - 1).clamp(min=0)
    full_mask = torch.cat([torch.ones((len(prompts), shared), dtype=mask.dtype, device=device), mask], dim=1)
    # logits_to_keep=1: only the last position's logits are needed; the full prompt logits
    # (batch x prompt x vocab) would dominate time and memory.
    out = model(
        input_ids=ids, attention_mask=full_mask, position_ids=positions, past_key_values=cache,
        use_cache=True, logits_to_keep=1,
    )
    return Prefilled(out.logits[:, -1, :].float().cpu(), out.past_key_values, full_mask, positions[:, -1:])


def stackable(cache) -> bool:
    """Whether a cache is plain per-layer keys and values (no sliding window, no recurrent
    state) that `_stack` can pad and concatenate."""
    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


def _stack(parts: list[Prefilled]) -> Prefilled:
    """One batch from several: caches and masks left-padded to the widest and concatenated."""
    width = max(p.mask.shape[1] for p in parts)
    cache = DynamicCache()
    for layer in range(len(parts[0].cache.layers)):
        keys = torch.cat([F.pad(p.cache.layers[layer].keys, (0, 0, width - p.mask.shape[1], 0)) for p in parts])
        values = torch.cat([F.pad(p.cache.layers[layer].values, (0, 0, width - p.mask.shape[1], 0)) for p in parts])
        cache.update(keys, values, layer)
    return Prefilled(
        logits=torch.cat([p.logits for p in parts]),
        cache=cache,
        mask=torch.cat([F.pad(p.mask, (width - p.mask.shape[1], 0)) for p in parts]),
        last_position=torch.cat([p.last_position for p in parts]),
    )


def _stack_shared(parts: list[Prefilled]) -> Prefilled:
    """One batch from several whose prefixes stay one copy each: a `SharedPrefixLayer` with every
    part's prefix beside its rows (a part without one holds its whole prompt as its own tokens).
    A row's columns are its prefix, left-padded to the longest, then its own tokens, left-padded
    to the widest: masks say which are real."""
    def prefix_length(part: Prefilled) -> int:
        layer = part.cache.layers[0]
        return layer.prefixes[0][0].shape[2] if isinstance(layer, SharedPrefixLayer) else 0

    lengths = [prefix_length(p) for p in parts]
    owns = [p.mask.shape[1] - n for p, n in zip(parts, lengths)]
    width, own_width = max(lengths), max(owns)
    masks = [
        torch.cat([F.pad(p.mask[:, :n], (width - n, 0)), F.pad(p.mask[:, n:], (own_width - own, 0))], dim=1)
        for p, n, own in zip(parts, lengths, owns)
    ]
    cache = DynamicCache()
    for layer in range(len(parts[0].cache.layers)):
        prefixes, first = [], 0
        for p, n in zip(parts, lengths):
            rows = p.mask.shape[0]
            if n:
                part_layer = p.cache.layers[layer]
                prefixes.append((part_layer.prefixes[0][0], part_layer.prefixes[0][1], first, first + rows))
            first += rows
        layers = [p.cache.layers[layer] for p in parts]
        keys = torch.cat([F.pad(x.keys, (0, 0, own_width - own, 0)) for x, own in zip(layers, owns)])
        values = torch.cat([F.pad(x.values, (0, 0, own_width - own, 0)) for x, own in zip(layers, owns)])
        cache.layers.append(SharedPrefixLayer(prefixes, keys, values, room=0))
    return Prefilled(
        logits=torch.cat([p.logits for p in parts]),
        cache=cache,
        mask=torch.cat(masks),
        last_position=torch.cat([p.last_position for p in parts]),
    )


class ReservedLayer(DynamicLayer):
    """A cache layer whose keys and values sit at the front of a buffer with room for more
    tokens: a decode step writes its token in place. (DynamicLayer concatenates, copying the
    whole cache for every generated token: with 16 prompts of ~2,000 tokens that copy was over
    half of all decode time on this CPU, py-spy of the E136 run.) Past the room it grows as
    DynamicLayer does."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__()
        batch, heads, length, dim = keys.shape
        self._keys = keys.new_empty((batch, heads, length + room, dim))
        self._values = values.new_empty((batch, values.shape[1], length + room, values.shape[3]))
        self._keys[:, :, :length], self._values[:, :, :length] = keys, values
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        start, end = self.keys.shape[-2], self.keys.shape[-2] + key_states.shape[-2]
        if end > self._keys.shape[-2] or self.keys.data_ptr() != self._keys.data_ptr():
            return super().update(key_states, value_states, *args, **kwargs)
        self._keys[:, :, start:end], self._values[:, :, start:end] = key_states, value_states
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows `indices` (finished rows leaving a decode batch), with their room."""
        if self.keys.data_ptr() != self._keys.data_ptr():  # grown past the room: a plain layer now
            return super().batch_select_indices(indices)
        length = self.keys.shape[-2]
        self._keys, self._values = self._keys[indices], self._values[indices]
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]


class SharedPrefixLayer(ReservedLayer):
    """A `ReservedLayer` of each row's own tokens behind prefixes that ranges of rows share, each
    kept once: `prefixes` holds (keys [1, kv heads, P, dim], values, first row, end row). The keys
    it returns carry the prefixes for mfray.llm.shared_attention, and its length counts the
    longest, so that masks and positions cover prefix and own tokens as if each row held its
    prefix, left-padded to the longest."""

    def __init__(self, prefixes: list[tuple[torch.Tensor, torch.Tensor, int, int]], keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__(keys, values, room)
        self.prefixes = prefixes
        self.prefix_width = max((k.shape[2] for k, _, _, _ in prefixes), default=0)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        setattr(keys, PREFIX_ATTR, (self.prefix_width, self.prefixes))
        return keys, values

    def get_seq_length(self) -> int:
        return self.prefix_width + super().get_seq_length()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows `indices` (ascending), each prefix with the rows of it that stay."""
        kept = indices.tolist()
        if any(a >= b for a, b in zip(kept, kept[1:])):
            # The ranges are recounted, not permuted: rows out of order would read another
            # row's prefix without any error.
            raise ValueError(f"SharedPrefixLayer keeps rows in order only; got indices {kept}")
        prefixes = []
        for keys, values, first, end in self.prefixes:
            new_first = sum(1 for i in kept if i < first)
            new_end = new_first + sum(1 for i in kept if first <= i < end)
            if new_end > new_first:
                prefixes.append((keys, values, new_first, new_end))
        # Keep the longest prefix's width even if its rows left: masks keep their columns.
        self.prefixes = prefixes
        super().batch_select_indices(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("SharedPrefixLayer cannot repeat rows (its prefix ranges would not follow)")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("SharedPrefixLayer cannot reorder rows (its prefix ranges would not follow)")


def reserve(cache, room: int):
    """`cache` (a prefill's) with `room` more token slots in every layer, filled in place as
    decoding goes; a cache of other layer kinds (sliding windows) is returned unchanged."""
    if room <= 0:
        return cache
    if all(type(layer) is SharedPrefixLayer for layer in cache.layers):
        for i, layer in enumerate(cache.layers):
            widened = SharedPrefixLayer(layer.prefixes, layer.keys, layer.values, room)
            widened.prefix_width = layer.prefix_width
            cache.layers[i] = widened
    elif stackable(cache):
        # One layer at a time, so that each old layer is freed as soon as it is copied (a list
        # built at once would hold two whole caches for a moment).
        for i, layer in enumerate(cache.layers):
            cache.layers[i] = ReservedLayer(layer.keys, layer.values, room)
    return cache
