"""The annotator interface and its text-hash cache (SPEC section 4).

An annotator gives each action one label per dimension of `DIMENSIONS` (or None for a dimension
it could not label: counted, never guessed) plus optional keywords. Results always come back
aligned to the input order, one Annotation per item, whatever failed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from mfray.eval.labels import DIMENSIONS


@dataclass(frozen=True)
class AnnotationItem:
    """One action to label, with the topic it responds to (stance and belief are relative to it)."""

    text: str
    topic: str
    language: str = "en"


@dataclass(frozen=True)
class Annotation:
    """Labels for one item. `failed` is true when no label at all could be produced."""

    labels: dict[str, str | None]
    keywords: tuple[str, ...] = ()
    failed: bool = False
    error: str | None = None

    @classmethod
    def failure(cls, error: str) -> "Annotation":
        return cls(labels={d: None for d in DIMENSIONS}, failed=True, error=error)


@runtime_checkable
class Annotator(Protocol):
    """Anything that labels a batch of items. `name` identifies it in caches and reports."""

    name: str

    async def annotate(self, items: list[AnnotationItem]) -> list[Annotation]: ...


def item_key(annotator: str, item: AnnotationItem) -> str:
    """Cache key: the annotator's name and the item's text, topic and language."""
    blob = json.dumps([annotator, item.language, item.topic, item.text], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class CachedAnnotator:
    """Wraps an annotator with a JSONL cache keyed by text hash, so real and simulated sides,
    and reruns, never label the same text twice. Failures are not cached (a rerun retries them)."""

    inner: Annotator
    path: Path
    hits: int = 0
    misses: int = 0
    bad_cache_lines: int = 0
    _memory: dict[str, Annotation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.name = self.inner.name
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self._load_line(line)

    def _load_line(self, line: str) -> None:
        """A torn or stale line (a crash mid-write, an edited label set) is skipped and counted:
        the item is then simply annotated again."""
        try:
            row = json.loads(line)
            labels = row["labels"]
            if set(labels) != set(DIMENSIONS) or any(v is not None and v not in DIMENSIONS[d] for d, v in labels.items()):
                raise ValueError("labels outside the label sets")
            self._memory[row["key"]] = Annotation(labels=labels, keywords=tuple(row.get("keywords", ())))
        except (ValueError, KeyError, TypeError):
            self.bad_cache_lines += 1

    async def annotate(self, items: list[AnnotationItem]) -> list[Annotation]:
        keys = [item_key(self.name, item) for item in items]
        first_seen = {}
        for i, k in enumerate(keys):
            if k not in self._memory:
                first_seen.setdefault(k, i)
        todo = list(first_seen.values())
        self.hits += len(items) - len(todo)
        self.misses += len(todo)
        fresh = await self.inner.annotate([items[i] for i in todo]) if todo else []
        new_rows = []
        for i, ann in zip(todo, fresh, strict=True):
            if not ann.failed:
                self._memory[keys[i]] = ann
                new_rows.append({"key": keys[i], "labels": ann.labels, "keywords": list(ann.keywords)})
        if new_rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One write call per batch: concurrent writers (several Ray actors) append whole lines.
            blob = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in new_rows)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(blob)
        by_key = {keys[i]: ann for i, ann in zip(todo, fresh)}  # duplicates share one annotation
        return [self._memory.get(k) or by_key[k] for k in keys]
