"""A stand-in LLM that answers at once with canned text: for measuring orchestration only.

On a GPU cluster the LLM replicas answer hundreds of requests a second; on this CPU the model is
the bottleneck and hides what the sweep's own machinery (event loop, Ray object transfer, JSON,
prompt rendering, checkpoints, Parquet writes) can sustain. The stand-in removes the model so that
ceiling can be measured. It is selected by the model path "standin" wherever a model is loaded
(`load_engine`: `mfray serve --model standin`, the sweep's LLMServer replica, `llm: local`), so
it sits behind the project's own LLM interface and the serving paths stay the real ones.

Its text is canned and says nothing about any event: a trajectory made with it is bookkeeping,
never a simulation result. Runs record the model path "standin" in their identity, and
`mfray evaluate` refuses them (mfray.eval.inputs).

Every answer is one post-like first line, then two mean-field aspect lines, so it parses in both
prompt styles and both roles (mfray.prompts.parse): a timeline post keeps the first line, a
timeline mean field reads the lines as its aspects. The choice of line depends on the request's
seed only, so answers are reproducible however requests are batched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from mfray.llm.base import EngineStats, Generation, Prompt, SamplingParams, postprocess, prompt_seeds

STANDIN_PATH = "standin"

_POSTS = (
    "Is this confirmed anywhere? Waiting for an official source before I share it.",
    "This is exactly what I was afraid of. Sharing so people see it.",
    "Not buying it, the photo is years old. Check before you retweet.",
    "Wow. If true this is huge news.",
    "Reporters are still trying to confirm the details, stay tuned.",
    "Please stop spreading this, it has been debunked already.",
)
_MOODS = ("curious", "angry", "sceptical", "surprised", "calm", "worried")
_ACTS = ("reposting the headline", "asking for sources", "warning others", "joking about it")


def _canned(seed: int | None) -> str:
    pick = random.Random(seed).randrange if seed is not None else random.randrange
    return (f"{_POSTS[pick(len(_POSTS))]}\nEmotions: mostly {_MOODS[pick(len(_MOODS))]}\n"
            f"Behaviour: {_ACTS[pick(len(_ACTS))]}")


def _chars(prompt: Prompt) -> int:
    return len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)


@dataclass
class StandInLLM:
    """LLM-protocol object answering every prompt with canned text, at once. `adapters` are the
    adapter names it accepts (an unknown one raises KeyError, as the local engine does).
    Token counts are estimates (4 characters a token; completions cut at max_new_tokens words),
    kept so the accounting paths see plausible numbers."""

    adapters: tuple[str, ...] = ()
    stats: EngineStats = field(default_factory=EngineStats)

    def count_tokens(self, prompt: Prompt) -> int:
        """An estimate: characters / 4 (servers use it to refuse over-long prompts)."""
        return -(-_chars(prompt) // 4)

    async def generate(
        self,
        prompts: list[Prompt],
        sampling: SamplingParams,
        adapter: str | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Generation]:
        """One canned Generation per prompt, chosen by its seed (`prompt_seeds`)."""
        self._check(adapter)
        out = []
        for prompt, seed in zip(prompts, prompt_seeds(len(prompts), sampling, seeds)):
            words = _canned(seed).split(" ")[: sampling.max_new_tokens]
            text = postprocess(" ".join(words), sampling.first_line)
            out.append(Generation(text, self.count_tokens(prompt), len(words), "stop"))
        self.stats.requests += len(prompts)
        self.stats.prompt_tokens += sum(g.prompt_tokens for g in out)
        self.stats.completion_tokens += sum(g.completion_tokens for g in out)
        return out

    async def score(self, prompts: list[Prompt], completions: list[str], adapter: str | None = None) -> list[list[float]]:
        """A log-prob of -1.0 for each (estimated) completion token."""
        self._check(adapter)
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        rows = [[-1.0] * max(1, self.count_tokens(c)) for c in completions]
        self.stats.scored_tokens += sum(len(r) for r in rows)
        return rows

    def _check(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.adapters:
            raise KeyError(f"unknown adapter {adapter!r}; loaded: {sorted(self.adapters)}")
