"""The narrow LLM interface every backend implements.

generate(prompts, sampling, adapter=None, seeds=None) -> list[Generation]
score(prompts, completions) -> list[list[float]]   (per-token log-probs of each completion)

A prompt is either a chat (a list of {"role", "content"} messages, rendered with the model's chat
template and a generation prompt) or a raw string (used as is). Both methods are async so a
driver can keep many events in flight; backends batch internally.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Protocol, Sequence, Union, runtime_checkable

ChatMessage = dict  # {"role": "system"|"user"|"assistant", "content": str}
Prompt = Union[str, list[ChatMessage]]

_THINK_RE = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)

# The seeds every backend accepts: a non-negative signed 64-bit integer. torch's generators take
# up to 2**64 - 1, but OpenAI-compatible servers (vLLM, OpenAI proper) read the field as int64,
# so a seed that is valid here is valid on every engine a request may reach.
SEED_MIN = 0
SEED_MAX = 2**63 - 1
MAX_LOOKUP = 64  # longest prompt-lookup draft (SamplingParams.lookup)


def check_seed(seed: int | None, where: str = "seed") -> None:
    """Refuse a seed outside SEED_MIN..SEED_MAX (or not an int) with a ValueError naming `where`;
    None (unseeded) passes. Checked before a request is batched with others, so one bad seed
    fails only its own request."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{where} must be an int or None, got {seed!r}")
    if not SEED_MIN <= seed <= SEED_MAX:
        raise ValueError(f"{where} must be in {SEED_MIN}..{SEED_MAX} (0..2**63-1), got {seed}; derive seeds that fit")


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one request batch. temperature 0 means greedy.

    `first_line`: keep only the first non-empty line (and stop generating once it is complete).
    `lookup`: prompt-lookup speculative decoding with drafts of up to this many tokens (0: off;
    mfray.llm.lookup). The same distribution, another draw of the seed's generator; only the
    local engine uses it (other backends decode as they do).
    `seed`: prompt i of a generate call is sampled with seed + i (unless the call passes its own
    per-prompt `seeds`), so a request's sample does not depend on which other requests share
    its batch. It must lie in SEED_MIN..SEED_MAX (`check_seed`).
    """

    temperature: float = 0.8
    top_p: float = 0.85
    top_k: int = 50
    repetition_penalty: float = 1.2
    max_new_tokens: int = 50
    first_line: bool = False
    seed: int | None = None
    lookup: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.lookup <= MAX_LOOKUP:
            raise ValueError(f"lookup must be in 0..{MAX_LOOKUP} draft tokens (0 = off), got {self.lookup}")
        check_seed(self.seed)


@dataclass(frozen=True)
class Generation:
    """One completion with its token accounting. `text` is already post-processed
    (think-block stripped, first line kept when asked)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "error"
    latency_s: float = 0.0
    error: str | None = None
    retries: int = 0  # extra attempts the backend made for this prompt (HTTP or handle retries)


@dataclass
class EngineStats:
    """Running token accounting of one in-process engine (mfray.llm.local, mfray.llm.standin)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    scored_tokens: int = 0
    decode_rows: int = 0  # rows forwarded by decode steps (finished rows leave a batch once half of it has)
    busy_s: float = 0.0


@runtime_checkable
class LLM(Protocol):
    """What the simulation, evaluation and training code need from a language model.

    `adapter` names a LoRA adapter the backend knows (None = the base model). `seeds`, when
    given, holds one seed per prompt and replaces `sampling.seed + i` (see `prompt_seeds`): a
    server that merges requests of many clients into one call keeps each request's own seed."""

    async def generate(
        self,
        prompts: list[Prompt],
        sampling: SamplingParams,
        adapter: str | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Generation]: ...

    async def score(
        self, prompts: list[Prompt], completions: list[str], adapter: str | None = None
    ) -> list[list[float]]: ...


def prompt_seeds(n: int, sampling: SamplingParams, seeds: Sequence[int | None] | None) -> list[int | None]:
    """The seed of each of a generate call's n prompts: `seeds` as given (one per prompt), else
    sampling.seed + i, else None (unseeded). Raises ValueError when a seed falls outside
    SEED_MIN..SEED_MAX, including sampling.seed + n - 1 running past SEED_MAX."""
    if seeds is not None:
        if len(seeds) != n:
            raise ValueError(f"{len(seeds)} seeds for {n} prompts; pass one seed per prompt")
        for i, seed in enumerate(seeds):
            check_seed(seed, f"seeds[{i}]")
        return list(seeds)
    if sampling.seed is None:
        return [None] * n
    if n and sampling.seed + n - 1 > SEED_MAX:
        raise ValueError(
            f"seed {sampling.seed} + {n - 1} (prompt i gets seed + i) passes {SEED_MAX} (2**63-1); "
            f"use a seed <= {SEED_MAX - n + 1}"
        )
    return [sampling.seed + i for i in range(n)]


def postprocess(text: str, first_line: bool) -> str:
    """Strip any <think>...</think> block (an unclosed one runs to the end), then keep the first
    non-empty line when asked. Shared by every backend so outputs agree across engines."""
    text = _THINK_RE.sub("", text)
    if first_line:
        for line in text.splitlines():
            if line.strip():
                return line.strip()
        return ""
    return text.strip()
