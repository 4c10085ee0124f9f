"""LLMAnnotator end to end over HTTP: OpenAIBackend -> mfray's server (build_app, a real uvicorn
on 127.0.0.1) -> a scripted LLM defined here.

The scripted LLM stands in for gpt-4o-mini because these tests check batching, parsing, retry
and alignment bookkeeping, never language. It reads the numbered comments back out of the
rendered prompt and labels each one deterministically from its text (`expected`), so a label
that landed on the wrong item shows. Markers in a comment's text pick the canned answer shapes
real models produce: `#fence` (prose + ```json fence), `#shuffle` (objects in reverse order),
`#upper` (labels as " SPREAD "), `#drop` (the item's object left out), `#maybe` ("stance":
"maybe"), `#dup` (the item answered twice, differently), `#garbage` (no JSON at all), `#error`
(the engine fails the request: the server answers 502). A marker `#name/N` misbehaves the first
N times that comment is sent (`#name` = `#name/1`); the engine counts sends per comment text.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading

import pytest

from mfray.eval.annotate import Annotation, AnnotationItem, Annotator, CachedAnnotator
from mfray.eval.labels import DIMENSIONS
from mfray.eval.llm_annotator import LLMAnnotator
from mfray.llm.base import Generation
from mfray.llm.openai_backend import OpenAIBackend
from mfray.http_common import ServerThread
from mfray.llm.server import build_app

pytestmark = pytest.mark.timeout(60)

MODEL = "annotator-model"
_COMMENT_RE = re.compile(r'^(?:Comment |评论)(\d+)[:：] ?(".*")$', re.MULTILINE)
_MARK_RE = re.compile(r"#(\w+)(?:/(\d+))?")


def expected(text: str) -> dict[str, str]:
    """The labels the scripted LLM gives `text` (a hash picks one label per dimension)."""
    h = hashlib.sha256(text.encode("utf-8")).digest()
    return {dim: labels[h[k] % len(labels)] for k, (dim, labels) in enumerate(DIMENSIONS.items())}


def expected_keywords(text: str) -> tuple[str, ...]:
    return (text.split()[1],)  # the item's own name, e.g. "c3"


class ScriptedAnnotatorLLM:
    """LLM-protocol object answering annotator prompts (see the module docstring)."""

    def __init__(self) -> None:
        self.prompts: list[str] = []  # every prompt text the engine received
        self.sampling = []
        self.sends: dict[str, int] = {}
        self._lock = threading.Lock()  # the server thread writes, the test thread reads

    def comments_sent(self, tag: str) -> list[list[str]]:
        """The comment lists of the prompts that carried `tag`, in arrival order."""
        with self._lock:
            prompts = [p for p in self.prompts if tag in p]
        return [[json.loads(q) for _, q in _COMMENT_RE.findall(p)] for p in prompts]

    def _active(self, text: str, name: str) -> bool:
        for m in _MARK_RE.finditer(text):
            if m.group(1) == name and self.sends[text] <= int(m.group(2) or 1):
                return True
        return False

    def _answer(self, prompt: str) -> Generation:
        comments = [(int(i), json.loads(q)) for i, q in _COMMENT_RE.findall(prompt)]
        assert [i for i, _ in comments] == list(range(1, len(comments) + 1)), "numbering 1..n"
        with self._lock:
            for _, text in comments:
                self.sends[text] = self.sends.get(text, 0) + 1
            per_item = {i: {m.group(1) for m in _MARK_RE.finditer(t) if self._active(t, m.group(1))}
                        for i, t in comments}
        active = set().union(*per_item.values())
        if "error" in active:
            return Generation("", 0, 0, "error", error="scripted engine error")
        if "garbage" in active:
            return Generation("I'm sorry, but I can't label these comments.", 10, 10, "stop")
        objs = []
        for i, text in comments:
            faults = per_item[i]
            labels = expected(text)
            obj = {"index": i, **labels, "keywords": list(expected_keywords(text))}
            if "drop" in faults:
                continue
            if "maybe" in faults:
                obj["stance"] = "maybe"
            if "upper" in faults:
                obj.update({d: f" {v.upper()} " for d, v in labels.items()})
            objs.append(obj)
            if "dup" in faults:
                objs.append({"index": i, **expected(text + " other"), "keywords": []})
        if "shuffle" in active:
            objs.reverse()
        body = json.dumps(objs, indent=2, ensure_ascii=False)
        if "fence" in active:
            body = f"Here is the analysis of the comments:\n```json\n{body}\n```\nLet me know if you need more."
        return Generation(body, len(prompt.split()), len(body.split()), "stop")

    async def generate(self, prompts, sampling, adapter=None, seeds=None):
        texts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        with self._lock:
            self.prompts.extend(texts)
            self.sampling.append(sampling)
        return [self._answer(t) for t in texts]

    async def score(self, prompts, completions, adapter=None):
        raise NotImplementedError


@pytest.fixture(scope="module")
def server():
    llm = ScriptedAnnotatorLLM()
    with ServerThread(build_app(llm, MODEL, max_batch=32)) as st:
        yield st, llm


@pytest.fixture
async def backend(server):
    st, _ = server
    b = OpenAIBackend(st.base_url, MODEL, max_retries=0, backoff_s=0.0, timeout_s=10)
    yield b
    await b.aclose()


def _items(tag: str, markers: list[str], topic: str = "A fire at the old mill", language: str = "en"):
    return [AnnotationItem(f"{tag} c{k} {m}".strip(), topic, language) for k, m in enumerate(markers)]


def assert_aligned(items: list[AnnotationItem], anns: list[Annotation], failed: set[int] = frozenset()):
    """Every annotation carries exactly the labels of its own item; failures only where expected."""
    assert len(anns) == len(items)
    labelings = [tuple(expected(it.text).values()) for it in items]
    assert len(set(labelings)) == len(labelings), "test items must be distinguishable"
    for k, (it, ann) in enumerate(zip(items, anns)):
        if k in failed:
            assert ann.failed and ann.labels == {d: None for d in DIMENSIONS} and ann.error
        else:
            assert not ann.failed and ann.error is None
            assert ann.labels == expected(it.text), f"item {k} got another item's labels"
            assert list(ann.labels) == list(DIMENSIONS)
            assert ann.keywords == expected_keywords(it.text)


def assert_rounds(sent: list[list[str]], items: list[AnnotationItem], rounds: list[list[list[int]]]):
    """The prompts the engine got, round by round (rounds are sequential; the batches of one
    round are in flight together, so their arrival order is free), as item positions."""
    assert len(sent) == sum(len(r) for r in rounds), sent
    k = 0
    for batches in rounds:
        got = sorted(sent[k : k + len(batches)])
        assert got == sorted([[items[i].text for i in b] for b in batches])
        k += len(batches)


async def test_well_formed_batch_one_call(server, backend):
    _, llm = server
    tag = "tag01"
    items = _items(tag, [""] * 5)
    ann = LLMAnnotator(backend, batch_size=8)
    out = await ann.annotate(items)
    assert_aligned(items, out)
    assert ann.stats.as_dict() == {"calls": 1, "failed_calls": 0, "items": 5, "parse_errors": 0,
                                   "retried_items": 0, "failed_items": 0}
    assert llm.comments_sent(tag) == [[it.text for it in items]]
    # Greedy decoding with a budget sized to the batch reached the engine.
    s = llm.sampling[-1]
    assert (s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.first_line) == (0.0, 1.0, 0, 1.0, False)
    assert s.max_new_tokens == 64 + 160 * 5


async def test_fence_prose_out_of_order_and_case_are_tolerated(server, backend):
    _, llm = server
    tag = "tag02"
    items = _items(tag, ["#fence/9", "", "#upper/9", "#shuffle/9", ""])
    ann = LLMAnnotator(backend, batch_size=8)
    out = await ann.annotate(items)
    assert_aligned(items, out)
    assert ann.stats.calls == 1 and ann.stats.retried_items == 0 and ann.stats.parse_errors == 0


async def test_only_bad_items_are_retried_and_nothing_shifts(server, backend):
    _, llm = server
    tag = "tag03"
    items = _items(tag, ["", "#drop", "", "#maybe", "#dup", "", "#shuffle"])
    ann = LLMAnnotator(backend, batch_size=8, retries=2)
    out = await ann.annotate(items)
    assert_aligned(items, out)
    sent = llm.comments_sent(tag)
    assert sent[0] == [it.text for it in items]
    # The retry carries exactly the three bad items, in input order, in one smaller batch.
    assert sent[1:] == [[items[1].text, items[3].text, items[4].text]]
    assert ann.stats.as_dict() == {"calls": 2, "failed_calls": 0, "items": 7, "parse_errors": 3,
                                   "retried_items": 3, "failed_items": 0}


async def test_persistent_failures_are_counted_and_never_shift_labels(server, backend):
    _, llm = server
    tag = "tag04"
    items = _items(tag, ["", "#maybe/9", "", "", "#drop/9", ""])
    ann = LLMAnnotator(backend, batch_size=4, retries=2)
    out = await ann.annotate(items)
    assert_aligned(items, out, failed={1, 4})
    assert "stance 'maybe' is not one of support, oppose, neutral" in out[1].error
    assert "missing from the answer" in out[4].error and "after 3 attempts" in out[4].error
    # Round 1: batches of 4 and 2; round 2 (size 2): both bad items; round 3 (size 1): alone.
    assert_rounds(llm.comments_sent(tag), items, [[[0, 1, 2, 3], [4, 5]], [[1, 4]], [[1], [4]]])
    assert ann.stats.as_dict() == {"calls": 5, "failed_calls": 0, "items": 6, "parse_errors": 6,
                                   "retried_items": 4, "failed_items": 2}


async def test_malformed_answer_retries_the_whole_batch(server, backend):
    _, llm = server
    tag = "tag05"
    items = _items(tag, ["", "#garbage", "", ""])
    ann = LLMAnnotator(backend, batch_size=4, retries=1)
    out = await ann.annotate(items)
    assert_aligned(items, out)
    assert_rounds(llm.comments_sent(tag), items, [[[0, 1, 2, 3]], [[0, 1], [2, 3]]])
    assert ann.stats.as_dict() == {"calls": 3, "failed_calls": 0, "items": 4, "parse_errors": 1,
                                   "retried_items": 4, "failed_items": 0}


async def test_malformed_forever_fails_every_item_of_its_batch_only(server, backend):
    tag = "tag06"
    items = _items(tag, ["#garbage/9", ""], topic="topic A") + _items(tag + "b", ["", ""], topic="topic B")
    ann = LLMAnnotator(backend, batch_size=8, retries=0)
    out = await ann.annotate(items)
    assert_aligned(items, out, failed={0, 1})
    assert "no JSON in the answer" in out[0].error
    assert ann.stats.failed_items == 2 and ann.stats.calls == 2


async def test_error_status_retries_the_batch_items(server, backend):
    _, llm = server
    tag = "tag07"
    items = _items(tag, ["", "#error", ""], topic="topic A") + _items(tag + "x", ["", "#error/9"], topic="topic B")
    ann = LLMAnnotator(backend, batch_size=8, retries=1)
    out = await ann.annotate(items)
    # Topic A failed once (HTTP 502, no backend retries) and succeeded on the retry; topic B's
    # engine error persists, so its items fail, without disturbing topic A's labels.
    assert_aligned(items, out, failed={3, 4})
    assert "call failed" in out[3].error and "502" in out[3].error
    assert ann.stats.as_dict() == {"calls": 4, "failed_calls": 3, "items": 5, "parse_errors": 0,
                                   "retried_items": 5, "failed_items": 2}


async def test_backend_http_retry_is_invisible_to_the_annotator(server):
    st, _ = server
    b = OpenAIBackend(st.base_url, MODEL, max_retries=1, backoff_s=0.0, timeout_s=10)
    items = _items("tag08", ["", "#error"])
    ann = LLMAnnotator(b, batch_size=8)
    out = await ann.annotate(items)
    await b.aclose()
    assert_aligned(items, out)
    assert b.stats.retries == 1 and ann.stats.failed_calls == 0 and ann.stats.calls == 1


async def test_topics_and_languages_group_into_separate_prompts(server, backend):
    _, llm = server
    tag = "tag09"
    items = [
        AnnotationItem(f"{tag} c0", "topic A", "en"),
        AnnotationItem(f"{tag} c1 这是真的吗", "话题 B", "zh"),
        AnnotationItem(f"{tag} c2", "topic A", "en"),
        AnnotationItem(f"{tag} c3 转发", "话题 B", "zh-CN"),
        AnnotationItem(f"{tag} c4", "topic A", "fr"),  # no French template: language_default
    ]
    ann = LLMAnnotator(backend, batch_size=8)
    out = await ann.annotate(items)
    assert_aligned(items, out)
    with llm._lock:
        prompts = [p for p in llm.prompts if tag in p]
    assert len(prompts) == 2
    en = next(p for p in prompts if "Discussion topic: topic A" in p)
    zh = next(p for p in prompts if "讨论话题：话题 B" in p)
    assert [json.loads(q) for _, q in _COMMENT_RE.findall(en)] == [items[0].text, items[2].text, items[4].text]
    assert [json.loads(q) for _, q in _COMMENT_RE.findall(zh)] == [items[1].text, items[3].text]


async def test_cached_llm_annotator_serves_reruns_from_disk(server, backend, tmp_path):
    _, llm = server
    tag = "tag10"
    items = _items(tag, ["", "#maybe/9", ""])
    cache = tmp_path / "ann.jsonl"
    first = CachedAnnotator(LLMAnnotator(backend, batch_size=8, retries=0), cache)
    out1 = await first.annotate(items)
    assert_aligned(items, out1, failed={1})
    sends = len(llm.comments_sent(tag))
    second = CachedAnnotator(LLMAnnotator(backend, batch_size=8, retries=0), cache)
    out2 = await second.annotate(items)
    assert_aligned(items, out2, failed={1})
    # Only the failed item went back to the model.
    assert llm.comments_sent(tag)[sends:] == [[items[1].text]]
    assert (second.hits, second.misses) == (2, 1)


async def test_empty_input_makes_no_call(backend):
    ann = LLMAnnotator(backend)
    assert isinstance(ann, Annotator) and ann.name == "llm"
    assert await ann.annotate([]) == []
    assert ann.stats.calls == 0


def test_constructor_checks_and_token_budget():
    for bad in (dict(batch_size=0), dict(retries=-1), dict(language_default="fr"), dict(tokens_per_item=0)):
        with pytest.raises(ValueError):
            LLMAnnotator(object(), **bad)
    ann = LLMAnnotator(object(), batch_size=32)
    assert ann.sampling(1).max_new_tokens == 64 + 160
    assert ann.sampling(32).max_new_tokens == 4096  # capped at the server's limit
