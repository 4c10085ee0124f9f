"""The LLM annotator (SPEC section 4): labels actions with any object that has the LLM interface
(OpenAIBackend pointed at gpt-4o-mini, vLLM or mfray's own server; the local engine).

Several actions go into one prompt (templates/<language>/annotator.jinja, adapted from the
MF-LLM paper), numbered 1..n; the model answers with a JSON array, one object per action carrying
its "index" and every dimension. Decoding is greedy (temperature 0).

Parsing is strict and lives in one place, `parse_annotations`: the JSON is taken from a ```json
fence or from the first '[' / '{' (leading and trailing prose tolerated, nothing more); it must
be an array of objects; objects are matched to actions by "index", never by position; every
dimension must hold one of its labels (case and surrounding whitespace ignored).

Retries are per item: an item that is missing from the answer, answered twice, or answered with
an invalid label is re-sent, with the other unresolved items of its topic, in smaller batches
(round k uses batches of batch_size // 2**k, at least 1), up to `retries` times; so is every item
of a call that failed outright (finish_reason "error"). What is still unresolved then comes back
as `Annotation.failure(error)`. Results are always one per input item, in input order.
A request the backend refuses for good (LLMRequestError: bad key, unknown model, a 400) is a
configuration error and propagates; retrying would not help.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from mfray.eval.annotate import Annotation, AnnotationItem
from mfray.eval.labels import DIMENSIONS
from mfray.llm.base import Prompt, SamplingParams
from mfray.prompts.render import LANGUAGES, render_chat, render_text

log = logging.getLogger(__name__)

# Answer budget: a pretty-printed object with keywords is ~80-130 tokens (more for Chinese
# keywords); the overhead covers a code fence and a sentence of prose. Capped at what mfray's
# server accepts (MAX_TOKENS_LIMIT).
TOKENS_PER_ITEM = 160
TOKENS_OVERHEAD = 64
MAX_NEW_TOKENS = 4096

_FENCE_RE = re.compile(r"```[ \t]*(?:json)?[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
_INDEX_RE = re.compile(r"\s*(\d{1,9})\s*", re.ASCII)


# -- parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseError:
    """One problem with an answer. `index` is the 1-based item number it concerns, or None for
    the answer as a whole (or an element that names no usable index)."""

    index: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.index is None else f"item {self.index}: {self.message}"


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)[:40]


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat[:60] + ("..." if len(flat) > 60 else ""))


def extract_json(text: str) -> tuple[Any, str | None]:
    """The JSON value of an answer, or (None, why not). Accepted: the body of the first ```json
    (or bare ```) fence, else the value starting at the first '[' or '{', with prose before and
    after it ignored. Nothing else is repaired."""
    m = _FENCE_RE.search(text)
    if m:
        try:
            return json.loads(m.group(1)), None
        except json.JSONDecodeError as e:
            return None, f"the code fence does not hold valid JSON ({e.msg} at char {e.pos})"
        except RecursionError:
            return None, "the code fence holds JSON nested too deep"
    starts = [p for p in (text.find("["), text.find("{")) if p >= 0]
    if not starts:
        return None, f"no JSON in the answer {_snippet(text)}"
    start = min(starts)
    try:
        value, _end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON ({e.msg} at char {e.pos}) in the answer {_snippet(text)}"
    except RecursionError:
        return None, "JSON nested too deep"
    return value, None


def _as_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _INDEX_RE.fullmatch(value)):
        return int(m.group(1))
    return None


def parse_annotations(
    text: str, n: int, dimensions: Mapping[str, Sequence[str]] = DIMENSIONS
) -> tuple[list[Annotation | None], list[ParseError]]:
    """Parse an answer about items 1..n. Returns one entry per item (position i-1 holds item i:
    its Annotation, or None when the item is missing, answered more than once, or has a
    dimension without a valid label) and every problem found.

    Rules: the answer must be a JSON array (see `extract_json`) of objects; each object's
    "index" (an integer, or a string of digits) in 1..n says which item it labels; each dimension
    must be a string equal to one of its labels after stripping and lower-casing; "keywords" is
    optional (absent or null: none) and must be a list of strings, else it is dropped with a
    problem while the labels are kept; other keys are ignored."""
    if n < 1:
        raise ValueError(f"need n >= 1 items, got {n}")
    results: list[Annotation | None] = [None] * n
    value, why = extract_json(text)
    if why is not None:
        return results, [ParseError(None, why)]
    if not isinstance(value, list):
        return results, [ParseError(None, f"expected a JSON array, got {type(value).__name__}")]
    errors: list[ParseError] = []
    answers: dict[int, list[Annotation | None]] = {}
    for pos, obj in enumerate(value, 1):
        if not isinstance(obj, dict):
            errors.append(ParseError(None, f"element {pos} is {type(obj).__name__}, not an object"))
            continue
        if "index" not in obj:
            errors.append(ParseError(None, f"element {pos} has no index"))
            continue
        idx = _as_index(obj["index"])
        if idx is None or not 1 <= idx <= n:
            errors.append(ParseError(None, f"element {pos} has index {_show(obj['index'])}, "
                                           f"expected an integer in 1..{n}"))
            continue
        labels: dict[str, str | None] = {}
        bad = []
        for dim, allowed in dimensions.items():
            if dim not in obj:
                bad.append(f"{dim} missing")
                continue
            raw = obj[dim]
            label = raw.strip().lower() if isinstance(raw, str) else None
            if label in allowed:
                labels[dim] = label
            else:
                bad.append(f"{dim} {_show(raw)} is not one of {', '.join(allowed)}")
        if bad:
            errors.append(ParseError(idx, "; ".join(bad)))
            answers.setdefault(idx, []).append(None)
            continue
        keywords: tuple[str, ...] = ()
        kw = obj.get("keywords")
        if isinstance(kw, list) and all(isinstance(k, str) for k in kw):
            keywords = tuple(k.strip() for k in kw if k.strip())
        elif kw is not None:
            errors.append(ParseError(idx, f"keywords {_show(kw)} is not a list of strings (dropped)"))
        answers.setdefault(idx, []).append(Annotation(labels=labels, keywords=keywords))
    for idx in range(1, n + 1):
        got = answers.get(idx, [])
        if not got:
            errors.append(ParseError(idx, "missing from the answer"))
        elif len(got) > 1:
            errors.append(ParseError(idx, f"answered {len(got)} times"))
        else:
            results[idx - 1] = got[0]
    return results, errors


# -- the annotator ----------------------------------------------------------------------------


def build_prompt(topic: str, texts: Sequence[str], language: str = "en", chat: bool = True) -> Prompt:
    """The annotator prompt for `texts` (numbered 1..n) on `topic`. Each text is shown as a JSON
    string literal, so quotes and line breaks inside a comment cannot blur the numbering."""
    variables = dict(topic=topic, comments=[json.dumps(t, ensure_ascii=False) for t in texts],
                     labels=DIMENSIONS)
    if chat:
        return render_chat("annotator", language, **variables)
    return render_text("annotator", language, **variables)


@dataclass
class AnnotatorStats:
    """Running totals. `calls`: prompts sent (one per batch, retries included); `failed_calls`:
    those that came back with finish_reason "error"; `items`: items asked for; `parse_errors`:
    problems found in answers; `retried_items`: item re-sends (an item sent a third time counts
    twice); `failed_items`: items returned as failures."""

    calls: int = 0
    failed_calls: int = 0
    items: int = 0
    parse_errors: int = 0
    retried_items: int = 0
    failed_items: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class LLMAnnotator:
    """Annotator protocol over any LLM-protocol object (see the module docstring).

    `batch_size`: actions per prompt. `retries`: extra rounds for unresolved items.
    `language_default`: template language for items whose language has no template (an item's
    "zh-CN" uses "zh"). `tokens_per_item`: answer budget per action (max_new_tokens is
    64 + tokens_per_item * batch length, at most 4096). `adapter`: passed to llm.generate.
    `chat`: send chat prompts (False: plain text, for completion-only servers)."""

    def __init__(
        self,
        llm: Any,
        name: str = "llm",
        batch_size: int = 8,
        retries: int = 2,
        language_default: str = "en",
        *,
        tokens_per_item: int = TOKENS_PER_ITEM,
        adapter: str | None = None,
        chat: bool = True,
    ) -> None:
        if batch_size < 1 or retries < 0 or tokens_per_item < 1:
            raise ValueError("need batch_size >= 1, retries >= 0, tokens_per_item >= 1")
        if language_default not in LANGUAGES:
            raise ValueError(f"language_default must be one of {LANGUAGES}, got {language_default!r}")
        self.llm = llm
        self.name = name
        self.batch_size = batch_size
        self.retries = retries
        self.language_default = language_default
        self.tokens_per_item = tokens_per_item
        self.adapter = adapter
        self.chat = chat
        self.stats = AnnotatorStats()

    def __repr__(self) -> str:
        return f"LLMAnnotator(name={self.name!r}, llm={self.llm!r}, batch_size={self.batch_size})"

    def language_of(self, item: AnnotationItem) -> str:
        lang = (item.language or "").split("-")[0].split("_")[0].lower()
        return lang if lang in LANGUAGES else self.language_default

    def sampling(self, batch_len: int) -> SamplingParams:
        budget = min(MAX_NEW_TOKENS, TOKENS_OVERHEAD + self.tokens_per_item * batch_len)
        return SamplingParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0,
                              max_new_tokens=budget, first_line=False)

    def _batches(self, items: list[AnnotationItem], pending: list[int], size: int) -> list[list[int]]:
        # One prompt has one topic and one language: group (first-seen order), then chunk.
        groups: dict[tuple[str, str], list[int]] = {}
        for i in pending:
            groups.setdefault((self.language_of(items[i]), items[i].topic), []).append(i)
        return [g[k : k + size] for g in groups.values() for k in range(0, len(g), size)]

    async def annotate(self, items: list[AnnotationItem]) -> list[Annotation]:
        """One Annotation per item, in item order; failures are Annotation.failure(error)."""
        n = len(items)
        self.stats.items += n
        done: list[Annotation | None] = [None] * n
        last_error: dict[int, str] = {}
        pending = list(range(n))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            if attempt:
                self.stats.retried_items += len(pending)
                log.debug("annotator %s: retry %d for %d items", self.name, attempt, len(pending))
            batches = self._batches(items, pending, max(1, self.batch_size >> attempt))
            prompts = [
                build_prompt(items[b[0]].topic, [items[i].text for i in b],
                             self.language_of(items[b[0]]), self.chat)
                for b in batches
            ]
            gens = await self.llm.generate(prompts, self.sampling(max(len(b) for b in batches)),
                                           adapter=self.adapter)
            if len(gens) != len(prompts):
                raise RuntimeError(f"llm.generate returned {len(gens)} generations for {len(prompts)} prompts")
            self.stats.calls += len(prompts)
            for batch, gen in zip(batches, gens):
                if gen.finish_reason == "error":
                    self.stats.failed_calls += 1
                    for i in batch:
                        last_error[i] = f"call failed: {gen.error or 'no detail'}"
                    continue
                parsed, errors = parse_annotations(gen.text, len(batch))
                self.stats.parse_errors += len(errors)
                whole = "; ".join(e.message for e in errors if e.index is None)
                per_item: dict[int, list[str]] = {}
                for e in errors:
                    if e.index is not None:
                        per_item.setdefault(e.index, []).append(e.message)
                cut = " (answer cut at max_new_tokens)" if gen.finish_reason == "length" else ""
                for pos, i in enumerate(batch, 1):
                    ann = parsed[pos - 1]
                    if ann is not None:
                        done[i] = ann
                    else:
                        last_error[i] = "; ".join(per_item.get(pos, []) or [whole or "no valid answer"]) + cut
            pending = [i for i in pending if done[i] is None]
        for i in pending:
            done[i] = Annotation.failure(f"{last_error.get(i, 'not annotated')} "
                                         f"(after {self.retries + 1} attempts)")
        self.stats.failed_items += len(pending)
        if pending:
            log.warning("annotator %s: %d of %d items failed after %d attempts",
                        self.name, len(pending), n, self.retries + 1)
        return cast(list[Annotation], done)  # every slot is filled by now
