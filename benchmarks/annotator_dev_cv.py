"""Which source labels each dimension of the hybrid annotator, measured on events the model did
not see: the tuning gold file (240 tweets, 60 events) plus the development sets
(mfray.eval.gold.DEVELOPMENT_SETS: twitter_unseen and twitter_fresh, 432 tweets of 72 events each)
split into event-grouped folds; each fold is labelled by the learned model fitted on the other
folds (hybrid-v2's settings) and, beside it, by the offline rules (not fitted). Per dimension and
set: macro-F1 and accuracy of each, and the majority class's accuracy. HYBRID_SOURCES takes the
model where it wins on both development sets. The test set (twitter_third) is not read here.

    .venv/bin/python benchmarks/annotator_dev_cv.py              # 6 folds, ~2 min of CPU
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotator_gold import annotator_predictor, data_root  # noqa: E402

from mfray.eval.agreement import event_folds  # noqa: E402
from mfray.eval.annotate import AnnotationItem  # noqa: E402
from mfray.eval.gold import DEVELOPMENT_SETS, load_test_labels  # noqa: E402
from mfray.eval.labels import DIMENSIONS  # noqa: E402
from mfray.eval.learned import HybridAnnotator, LabelModel, load_training_gold  # noqa: E402
from mfray.eval.metrics import f1_scores  # noqa: E402
from mfray.eval.offline import OfflineAnnotator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=6, help="event-grouped folds over all the labelled events")
    ap.add_argument("--seed", type=int, default=0, help="seeds the assignment of events to folds")
    args = ap.parse_args()
    sets = {"gold": list(load_training_gold())} | {n: load_test_labels(n, data_root()) for n in DEVELOPMENT_SETS}
    rows = [g for labels in sets.values() for g in labels]
    origin = [name for name, labels in sets.items() for _ in labels]
    folds = event_folds(rows, args.folds, args.seed)
    model: list[dict[str, str]] = [{}] * len(rows)
    for fold in sorted(set(folds.values())):
        fitted = LabelModel(HybridAnnotator.default_config).fit([g for g in rows if folds[g.event] != fold])
        held = [i for i, g in enumerate(rows) if folds[g.event] == fold]
        items = [AnnotationItem(text=rows[i].text, topic=rows[i].topic, language="en") for i in held]
        for i, labels in zip(held, fitted.predict(items), strict=True):
            model[i] = labels
    rules = annotator_predictor(OfflineAnnotator())(rows)
    print(f"{len(rows)} labelled tweets, {len({g.event for g in rows})} events, {args.folds} event-grouped folds "
          f"(seed {args.seed}); the rules are in-sample on the gold file\n")
    print("| dimension | set | rules macro-F1 / accuracy | model macro-F1 / accuracy | majority accuracy |")
    print("|---|---|---|---|---|")
    for dim in DIMENSIONS:
        for name in sets:
            idx = [i for i, o in enumerate(origin) if o == name]
            gold = [rows[i].labels[dim] for i in idx]
            cells = []
            for preds in (rules, model):
                pred = [preds[i][dim] for i in idx]
                macro, accuracy = f1_scores(gold, pred)
                cells.append(f"{macro:.3f} / {accuracy:.3f}")
            print(f"| {dim} | {name} | {cells[0]} | {cells[1]} | {Counter(gold).most_common(1)[0][1] / len(gold):.3f} |")


if __name__ == "__main__":
    main()
