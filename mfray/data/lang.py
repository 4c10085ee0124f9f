"""Event language: "zh" when CJK characters make up more than 20% of the event's text."""

from __future__ import annotations

import re
from collections.abc import Iterable

from mfray.types import Language, Post

ZH_THRESHOLD = 0.2

# Han ideographs (incl. extensions A-G and compatibility forms), CJK punctuation (。，「」; not the
# ideographic space, which is whitespace) and full-width forms (！？：): the characters that mark
# Chinese text. Kana and Hangul are not counted, so a Japanese or Korean reply does not flip an
# English event.
_CJK = re.compile(
    "[\u3001-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
    "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U00030000-\U0003134f]"
)
# Every CJK character above lies at U+3000 or higher; this simpler class is several times faster
# to scan with, so the exact class only runs on the few characters it finds.
_HIGH = re.compile("[^\x00-\u2fff]")


def cjk_share(texts: Iterable[str]) -> float:
    """Share of CJK characters among the non-whitespace characters of `texts` (0.0 if none)."""
    texts = list(texts)
    total = sum(len("".join(text.split())) for text in texts)
    if not total:
        return 0.0
    high = "".join(_HIGH.findall("".join(texts)))
    return len(_CJK.findall(high)) / total


def detect_language(texts: Iterable[str], threshold: float = ZH_THRESHOLD) -> Language:
    """Return "zh" if the CJK share of `texts` exceeds `threshold`, else "en"."""
    return "zh" if cjk_share(texts) > threshold else "en"


def event_language(topic: Post, responses: Iterable[Post]) -> Language:
    """Language of an event from its topic and response action texts."""
    return detect_language([topic.text, *(p.text for p in responses)])
