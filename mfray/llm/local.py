"""The local engine: batched generation and scoring on transformers (CPU, or CUDA when present).

Why a hand-written decoding loop instead of `model.generate`: every request carries its own
seeded torch.Generator, so a request's sample does not depend on which other requests happen to
share its batch (the rollout of one event stays reproducible when a driver batches many events
together), the first-line stop is checked per row, and prompts that share a prefix (one step's
policy prompts) prefill it once (mfray.llm.prefill).
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from mfray.llm.base import EngineStats, Generation, Prompt, SamplingParams, postprocess, prompt_seeds
from mfray.llm.lookup import decode_row, filtered_logits
from mfray.llm.models import load_model_and_tokenizer, resolve_model_dir
from mfray.llm.prefill import PASS_COST_TOKENS, common_prefix_length, prefill, reserve, stackable
from mfray.llm.scoring import scored_pairs
from mfray.llm.shared_attention import use_shared_prefix_attention


@dataclass
class LocalEngine:
    """LLM-protocol engine over a local causal LM. Build it with `LocalEngine.load(...)`.

    `adapters` maps adapter names to PEFT LoRA directories; a request names one (or None for
    the base model). Calls are serialised by a lock (the model and the active adapter are shared
    state) and run in a worker thread so the event loop stays free."""

    model: object
    tokenizer: object
    device: str
    max_batch: int = 32
    share_prefixes: bool | None = None  # prefill shared prompt prefixes once (None: decide on first use)
    drop_finished: bool = True  # finished rows leave the decode batch once half of it has (outputs unchanged)
    stats: EngineStats = field(default_factory=EngineStats)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _newline_ids: frozenset = frozenset()

    @classmethod
    def load(
        cls,
        path: str = "default",
        dtype: str = "auto",
        device: str = "auto",
        adapters: dict[str, str] | None = None,
        max_batch: int = 32,
        cache_dir: Path | None = None,
    ) -> "LocalEngine":
        """Load a model ('default', a .gguf file or a HF directory) and optional LoRA adapters.
        dtype 'auto' is float32 on CPU (bf16 is 2-3x slower on these CPUs) and bfloat16 on CUDA."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        model, tokenizer = load_model_and_tokenizer(resolve_model_dir(path, cache_dir), dtype, device)
        use_shared_prefix_attention(model)
        if adapters:
            from peft import PeftModel

            items = list(adapters.items())
            model = PeftModel.from_pretrained(model, items[0][1], adapter_name=items[0][0])
            for name, adapter_path in items[1:]:
                model.load_adapter(adapter_path, adapter_name=name)
            model.eval()
        engine = cls(model=model, tokenizer=tokenizer, device=device, max_batch=max_batch)
        engine._newline_ids = frozenset(
            i for tok, i in tokenizer.get_vocab().items() if "\n" in tokenizer.decode([i])
        )
        return engine

    # ---- prompt handling -------------------------------------------------------------------
    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees for a prompt (chat template + generation prompt)."""
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt as the model sees it."""
        return self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"]

    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens the model sees for a prompt (servers use it to refuse over-long prompts)."""
        return len(self.encode(prompt))

    def _adapter(self, adapter: str | None):
        if adapter is None:
            return self.model.disable_adapter() if hasattr(self.model, "disable_adapter") else nullcontext()
        if not hasattr(self.model, "set_adapter") or adapter not in getattr(self.model, "peft_config", {}):
            raise KeyError(f"unknown adapter {adapter!r}; loaded: {sorted(getattr(self.model, 'peft_config', {}))}")
        self.model.set_adapter(adapter)
        return nullcontext()

    # ---- public async API --------------------------------------------------------------------
    async def generate(
        self,
        prompts: list[Prompt],
        sampling: SamplingParams,
        adapter: str | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Generation]:
        return await asyncio.to_thread(self.generate_sync, prompts, sampling, adapter, seeds)

    async def score(self, prompts: list[Prompt], completions: list[str], adapter: str | None = None) -> list[list[float]]:
        return await asyncio.to_thread(self.score_sync, prompts, completions, adapter)

    # ---- generation --------------------------------------------------------------------------
    def generate_sync(
        self,
        prompts: list[Prompt],
        sampling: SamplingParams,
        adapter: str | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Generation]:
        """Generate one completion per prompt (prompt i seeded as `prompt_seeds` says). Prompts
        are sorted by their tokens into batches of `max_batch`, so that prompts with a common
        prefix share a batch and its prefill (mfray.llm.prefill), or by length when the model
        cannot share prefixes; results come back in input order."""
        seeds = prompt_seeds(len(prompts), sampling, seeds)
        encoded = [self.encode(p) for p in prompts]
        results: list[Generation | None] = [None] * len(prompts)
        with self._lock, torch.inference_mode(), self._adapter(adapter):
            if self.share_prefixes is None:
                probe = torch.tensor([[self.tokenizer.eos_token_id]], device=self.device)
                self.share_prefixes = stackable(self.model(input_ids=probe, use_cache=True).past_key_values)
            by_tokens, by_length = (lambda i: encoded[i]), (lambda i: len(encoded[i]))
            order = sorted(range(len(prompts)), key=by_tokens if self.share_prefixes else by_length)
            for start in range(0, len(order), self.max_batch):
                chunk = order[start : start + self.max_batch]
                began = time.perf_counter()
                if sampling.lookup:
                    outs = self._generate_rows([encoded[i] for i in chunk], sampling, [seeds[i] for i in chunk])
                else:
                    outs = self._generate_batch([encoded[i] for i in chunk], sampling, [seeds[i] for i in chunk])
                elapsed = time.perf_counter() - began
                self.stats.busy_s += elapsed
                for i, (ids, finish) in zip(chunk, outs):
                    text = self.tokenizer.decode(ids, skip_special_tokens=True)
                    results[i] = Generation(
                        text=postprocess(text, sampling.first_line),
                        prompt_tokens=len(encoded[i]),
                        completion_tokens=len(ids),
                        finish_reason=finish,
                        latency_s=elapsed,
                    )
                    self.stats.prompt_tokens += len(encoded[i])
                    self.stats.completion_tokens += len(ids)
        self.stats.requests += len(prompts)
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], sp: SamplingParams, seeds: list[int | None]):
        batch = len(prompts)
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        vocab = self.model.get_output_embeddings().weight.shape[0]
        seen = torch.zeros((batch, vocab), dtype=torch.bool)
        for row, p in enumerate(prompts):  # only real tokens count for the repetition penalty
            seen[row, torch.tensor(p)] = True
        gens = [_generator(s) for s in seeds]
        out_ids: list[list[int]] = [[] for _ in range(batch)]
        finish = ["length"] * batch
        done = [False] * batch
        live = list(range(batch))  # the prompt of each row still in the decode batch

        first = prefill(self.model, prompts, pad, self.device, self.share_prefixes)
        logits, mask, positions = first.logits, first.mask, first.last_position
        cache = reserve(first.cache, sp.max_new_tokens)
        for step in range(sp.max_new_tokens):
            next_tokens = _sample(logits, seen, sp, gens)
            for at, row in enumerate(live):
                if done[row]:
                    next_tokens[at] = pad
                    continue
                token = int(next_tokens[at])
                if token == eos:
                    done[row], finish[row] = True, "stop"
                    continue
                out_ids[row].append(token)
                seen[at, token] = True
                if sp.first_line and self._ends_first_line(out_ids[row]):
                    done[row], finish[row] = True, "stop"
            keep = [at for at, row in enumerate(live) if not done[row]]
            if not keep or step == sp.max_new_tokens - 1:  # nothing left, or the last token is drawn
                break
            if self.drop_finished and len(keep) <= len(live) // 2:
                # Half the rows have finished: drop them, so that later steps stop paying for their
                # attention over the whole prompt (a step costs about 15 ms a row of 2,000 tokens on 2
                # cores). Halving bounds the copies of the cache to one whole cache in all.
                index = torch.tensor(keep)
                live, gens = [live[at] for at in keep], [gens[at] for at in keep]
                next_tokens, seen, mask, positions = next_tokens[index], seen[index], mask[index], positions[index]
                cache.batch_select_indices(index.to(self.device))
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=self.device)], dim=1)
            positions = positions + 1
            self.stats.decode_rows += len(live)
            out = self.model(
                input_ids=next_tokens[:, None].to(self.device),
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            logits, cache = out.logits[:, -1, :].float().cpu(), out.past_key_values
        return list(zip(out_ids, finish))

    def _generate_rows(self, prompts: list[list[int]], sp: SamplingParams, seeds: list[int | None]):
        """Each prompt alone, with prompt-lookup drafts (mfray.llm.lookup); the prompts' common
        first tokens, when there are enough, are forwarded once for all of them."""
        def stops(ids: list[int]) -> bool:
            return sp.first_line and self._ends_first_line(ids)

        prefix_cache = None
        common = min((common_prefix_length(prompts[0], p) for p in prompts[1:]), default=0)
        common = min(common, min(len(p) for p in prompts) - 1)  # every row keeps a token of its own
        if common > PASS_COST_TOKENS:
            prefix = torch.tensor([prompts[0][:common]], device=self.device)
            prefix_cache = self.model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        outs = []
        for prompt, seed in zip(prompts, seeds):
            ids, finish, passes = decode_row(self.model, prompt, sp, _generator(seed), sp.lookup,
                                             self.tokenizer.eos_token_id, stops, self.device, prefix_cache)
            self.stats.decode_rows += passes
            outs.append((ids, finish))
        return outs

    def _ends_first_line(self, ids: list[int]) -> bool:
        """Whether the last generated token, a newline, completes the first line: only once the
        line has content and no think block is still open (a reasoning model's thoughts span lines)."""
        if ids[-1] not in self._newline_ids:
            return False
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if text.count("<think>") > text.count("</think>"):
            return False
        return bool(postprocess(text, first_line=True))

    # ---- scoring -----------------------------------------------------------------------------
    def score_sync(
        self, prompts: list[Prompt], completions: list[str], adapter: str | None = None, padding_side: str = "right"
    ) -> list[list[float]]:
        """Per-token log-probs of each completion given its prompt (teacher forcing).

        Prompt tokens are never scored, whatever the padding side: positions are computed per
        row from its own prompt and completion lengths. Logits are computed only at completion
        positions (full-vocabulary logits for every position would cost GBs)."""
        return self.score_states_sync(prompts, completions, adapter, padding_side)[0]

    def score_states_sync(
        self, prompts: list[Prompt], completions: list[str], adapter: str | None = None, padding_side: str = "right"
    ) -> tuple[list[list[float]], torch.Tensor]:
        """`score_sync`, and the final layer's hidden state at each pair's last token [B, H]
        (what LCT-Policy's lookahead head reads), from the same forward passes."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        pairs = [
            (self.encode(p), self.tokenizer(c, add_special_tokens=False)["input_ids"])
            for p, c in zip(prompts, completions)
        ]
        results: list[list[float] | None] = [None] * len(pairs)
        states: list[torch.Tensor | None] = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        with self._lock, torch.inference_mode(), self._adapter(adapter):
            for start in range(0, len(order), self.max_batch):
                chunk = order[start : start + self.max_batch]
                scored, last = scored_pairs(self.model, self.tokenizer.pad_token_id, [pairs[i] for i in chunk], padding_side, self.device)
                for i, lp, h in zip(chunk, scored, last):
                    results[i], states[i] = lp.tolist(), h.float().cpu()
                    self.stats.scored_tokens += len(lp)
        return results, torch.stack(states) if states else torch.zeros(0)  # type: ignore[return-value]


def _generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def _sample(logits: torch.Tensor, seen: torch.Tensor, sp: SamplingParams, gens: list) -> torch.Tensor:
    """One token per row, drawn from `filtered_logits` (each row from its own generator); the
    argmax for temperature 0."""
    values, indices = filtered_logits(logits, seen, sp)
    if sp.temperature == 0:
        return values.argmax(dim=-1)
    probs = torch.softmax(values, dim=-1)
    picks = [torch.multinomial(probs[row], 1, generator=gens[row]) for row in range(len(gens))]
    return indices.gather(-1, torch.stack(picks)).squeeze(-1)
