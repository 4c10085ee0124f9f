"""The local annotators by config name, for `mfray evaluate --annotator NAME` and the benchmarks.

| name | class | `name` (cache key) | what |
|---|---|---|---|
| offline | mfray.eval.offline.OfflineAnnotator | offline-v2 | rules + VADER/SnowNLP |
| learned | mfray.eval.learned.LearnedAnnotator | learned-v2 | logistic regression over the rules' signals, decisions, shape features and character n-grams, fitted at build time on the gold file and the development sets; Chinese: the rules |
| hybrid | mfray.eval.learned.HybridAnnotator | hybrid-v2 | per dimension the rules or the learned model (HYBRID_SOURCES) |

The learned ones need the gold file and the development sets' event files under the data root
($MFRAY_DATA, else ../shared/data): building one without them is an error naming the path. The LLM annotator needs an endpoint and is
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
