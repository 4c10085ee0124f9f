"""Does more hand-labelled data help the learned annotators on events they have not seen? The
gold file (240 tweets, 60 events) plus the development set twitter_unseen (432 tweets, 72 events;
a development set since 2026-12-06): 6 folds over twitter_unseen's events, each candidate fitted
on the gold file plus the other folds and scored on the held-out fold's events. The test set
(twitter_fresh) is not read here.

    .venv/bin/python benchmarks/annotator_dev_cv.py              # offline-v1, learned-v1, hybrid-v1
    .venv/bin/python benchmarks/annotator_dev_cv.py --embeddings # + MiniLM embeddings (English)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotator_gold import annotator_predictor, data_root, embeddings_fit, learned_fit  # noqa: E402

from mfray.eval.agreement import agreement, averages, event_folds  # noqa: E402
from mfray.eval.gold import load_test_labels  # noqa: E402
from mfray.eval.learned import load_training_gold  # noqa: E402
from mfray.eval.offline import OfflineAnnotator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--embeddings", action="store_true")
    args = ap.parse_args()
    gold = list(load_training_gold())
    dev = load_test_labels("twitter_unseen", data_root())
    folds = event_folds(dev, args.folds, 0)

    def cross_validated(fit):
        out = [None] * len(dev)
        for fold in sorted(set(folds.values())):
            train = gold + [g for g in dev if folds[g.event] != fold]
            held = [i for i, g in enumerate(dev) if folds[g.event] == fold]
            for i, p in zip(held, fit(train)([dev[i] for i in held]), strict=True):
                out[i] = p
        return out

    candidates = [("offline-v1 (not fitted)", annotator_predictor(OfflineAnnotator())(dev)),
                  ("learned-v1 fitted on gold only", learned_fit()(gold)(dev)),
                  ("learned-v1 fitted on gold + other dev folds", cross_validated(learned_fit())),
                  ("hybrid-v1 fitted on gold + other dev folds", cross_validated(learned_fit(cls_name="HybridAnnotator")))]
    if args.embeddings:
        fit = embeddings_fit("en")
        if fit is not None:
            candidates.append(("MiniLM embeddings on gold + other dev folds", cross_validated(fit)))
    print("| candidate (scored on twitter_unseen's held-out events) | mean accuracy | mean macro-F1 | above majority |")
    print("|---|---|---|---|")
    for name, preds in candidates:
        scores = agreement(dev, preds)
        accuracy, macro_f1, _ = averages(scores)
        print(f"| {name} | {accuracy:.3f} | {macro_f1:.3f} | {sum(s.beats_majority for s in scores.values())}/8 |")


if __name__ == "__main__":
    main()
