"""The local annotators by config name, for `mfray evaluate --annotator NAME` and the benchmarks.

| name | class | `name` (cache key) | what |
|---|---|---|---|
| offline | mfray.eval.offline.OfflineAnnotator | offline-v1 | rules + VADER/SnowNLP (the default) |
| learned | mfray.eval.learned.LearnedAnnotator | learned-v1 | logistic regression over the rules' signals, decisions, shape features and character n-grams, fitted at build time on the gold file; Chinese: the rules |
| hybrid | mfray.eval.learned.HybridAnnotator | hybrid-v1 | per dimension the rules or learned-v1 (HYBRID_SOURCES) |

The learned ones need the gold file under the data root ($MFRAY_DATA, else ../shared/data):
building one without it is an error naming the path. The LLM annotator needs an endpoint and is
built in mfray.eval.run.
"""

from __future__ import annotations

from mfray.eval.annotate import Annotator

LOCAL_ANNOTATORS = ("offline", "learned", "hybrid")


def build_local_annotator(kind: str) -> Annotator:
    """A fresh annotator of `kind` (one of LOCAL_ANNOTATORS)."""
    if kind == "offline":
        from mfray.eval.offline import OfflineAnnotator

        return OfflineAnnotator()
    if kind == "learned":
        from mfray.eval.learned import LearnedAnnotator

        return LearnedAnnotator()
    if kind == "hybrid":
        from mfray.eval.learned import HybridAnnotator

        return HybridAnnotator()
    raise ValueError(f"unknown annotator {kind!r}; expected one of {', '.join(LOCAL_ANNOTATORS)}")
