"""CachedAnnotator: a JSONL text-hash cache in front of any annotator."""

from __future__ import annotations

import json

from mfray.eval.annotate import Annotation, AnnotationItem, CachedAnnotator, item_key
from mfray.eval.labels import DIMENSIONS


def labels_for(text: str) -> dict[str, str]:
    # Deterministic, text-dependent labels, so a mix-up between items shows.
    return {dim: labels[(len(text) + k) % len(labels)] for k, (dim, labels) in enumerate(DIMENSIONS.items())}


class CountingAnnotator:
    """Labels from the text; texts containing "fail" fail. Records every batch it is given."""

    def __init__(self, name: str = "counting") -> None:
        self.name = name
        self.batches: list[list[str]] = []

    async def annotate(self, items):
        self.batches.append([it.text for it in items])
        return [Annotation.failure("scripted failure") if "fail" in it.text
                else Annotation(labels=labels_for(it.text), keywords=(it.text[:3],)) for it in items]


def items(*texts, topic="t"):
    return [AnnotationItem(t, topic) for t in texts]


async def test_second_call_is_served_from_the_cache_file(tmp_path):
    path = tmp_path / "cache" / "ann.jsonl"
    inner = CountingAnnotator()
    first = CachedAnnotator(inner, path)
    batch = items("a", "bb", "ccc")
    out1 = await first.annotate(batch)
    assert [a.labels for a in out1] == [labels_for(t) for t in ("a", "bb", "ccc")]
    assert (first.hits, first.misses) == (0, 3) and len(path.read_text().splitlines()) == 3

    # A fresh wrapper (a rerun) reads the file and never calls its annotator.
    inner2 = CountingAnnotator()
    second = CachedAnnotator(inner2, path)
    out2 = await second.annotate(list(reversed(batch)))
    assert inner2.batches == []
    assert out2 == list(reversed(out1))
    assert (second.hits, second.misses) == (3, 0)
    assert out2[0].keywords == ("ccc",)


async def test_failures_are_not_cached(tmp_path):
    path = tmp_path / "ann.jsonl"
    inner = CountingAnnotator()
    cached = CachedAnnotator(inner, path)
    out = await cached.annotate(items("ok", "fail me", "fine"))
    assert [a.failed for a in out] == [False, True, False]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["key"] for r in rows] == [item_key("counting", it) for it in items("ok", "fine")]
    # Asked again, only the failed item goes back to the annotator.
    out = await cached.annotate(items("ok", "fail me", "fine"))
    assert inner.batches[-1] == ["fail me"] and out[1].failed
    rerun = CachedAnnotator(CountingAnnotator(), path)
    await rerun.annotate(items("fail me"))
    assert rerun.inner.batches == [["fail me"]]


async def test_duplicates_in_one_batch_are_annotated_once(tmp_path):
    inner = CountingAnnotator()
    cached = CachedAnnotator(inner, tmp_path / "ann.jsonl")
    out = await cached.annotate(items("x", "yy", "x", "x"))
    assert len(inner.batches) == 1 and sorted(inner.batches[0]) == ["x", "yy"]
    assert [a.labels for a in out] == [labels_for(t) for t in ("x", "yy", "x", "x")]
    assert len((tmp_path / "ann.jsonl").read_text().splitlines()) == 2
    assert (cached.hits, cached.misses) == (2, 2)  # the repeats count as hits
    # Duplicate failures are one failure, shared by both positions, and still not cached.
    out = await cached.annotate(items("fail", "fail"))
    assert inner.batches[-1] == ["fail"] and all(a.failed for a in out)
    assert len((tmp_path / "ann.jsonl").read_text().splitlines()) == 2


async def test_key_covers_annotator_topic_and_language(tmp_path):
    path = tmp_path / "ann.jsonl"
    inner = CountingAnnotator("one")
    cached = CachedAnnotator(inner, path)
    await cached.annotate([AnnotationItem("same", "t1"), AnnotationItem("same", "t2"),
                           AnnotationItem("same", "t1", "zh")])
    assert inner.batches == [["same", "same", "same"]]
    # Another annotator's name does not reuse these rows.
    other = CountingAnnotator("two")
    await CachedAnnotator(other, path).annotate([AnnotationItem("same", "t1")])
    assert other.batches == [["same"]]


async def test_empty_batch(tmp_path):
    inner = CountingAnnotator()
    cached = CachedAnnotator(inner, tmp_path / "ann.jsonl")
    assert await cached.annotate([]) == []
    assert inner.batches == [] and not (tmp_path / "ann.jsonl").exists()


def test_torn_or_stale_cache_lines_are_skipped_and_counted(tmp_path):
    from mfray.eval.annotate import CachedAnnotator
    from mfray.eval.labels import DIMENSIONS

    good = {"key": "k1", "labels": {d: v[0] for d, v in DIMENSIONS.items()}}
    stale = {"key": "k2", "labels": {**good["labels"], "stance": "maybe"}}
    path = tmp_path / "cache.jsonl"
    import json
    path.write_text(json.dumps(good) + "\n" + json.dumps(stale) + "\n" + '{"key": "k3", "lab', encoding="utf-8")

    class Never:
        name = "never"

        async def annotate(self, items):
            raise AssertionError("not called")

    cache = CachedAnnotator(Never(), path)
    assert cache.bad_cache_lines == 2 and set(cache._memory) == {"k1"}
