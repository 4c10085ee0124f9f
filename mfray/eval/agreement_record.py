"""The committed record of each annotator's measured agreement on the hand-labelled TEST sets
(mfray/eval/gold/: unseen events, never tuned on), written by benchmarks/annotator_gold.py
--out and shown in every evaluation report (mfray.eval.report, "Annotator and noise floor").

The file (AGREEMENT_FILE, JSON) is keyed by annotator name (`Annotator.name`, e.g. offline-v2,
learned-v2, llm:gpt-4o-mini), then by test set; each entry is `agreement_entry`: per dimension
accuracy, macro-F1, majority label and accuracy, beats_majority and verdict (mfray.eval.agreement),
the means, n posts, events, language, a note on fitting, the exact command and the date.

- `agreement_entry(...)`, `measured_agreement(results, name)`, `agreement_rows(entry)`,
  `measure_command(name, test_set)`: pure.
- `load_agreement(path)`, `merge_entry(path, entry)`: the file itself.
- `annotator_agreement(name, path)`: what a report shows for `name` ({} when never measured).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from mfray.eval.agreement import DimensionScore, averages
from mfray.eval.labels import GoldLabel

AGREEMENT_FILE = Path(__file__).resolve().parent / "gold" / "agreement.json"  # ships with the package
AGREEMENT_FILE_REL = "mfray/eval/gold/agreement.json"
# The test sets of mfray.eval.gold.TEST_SETS, without loading it: twitter_third is the English test
# set; twitter_unseen and twitter_fresh are development sets since 2026-12-07 (the annotators are
# fitted on them), so a report does not ask for them (mfray/eval/gold/README.md)
TEST_SET_NAMES = ("twitter_third", "weibo_train")
# Local annotators' names -> the --annotator value of benchmarks/annotator_gold.py (config names).
LOCAL_SPECS = {"offline-v2": "offline", "learned-v2": "learned", "hybrid-v2": "hybrid"}


def agreement_entry(name: str, test_set: str, language: str, scored: Sequence[GoldLabel],
                    scores: Mapping[str, DimensionScore], command: str, date: str, note: str = "",
                    unlabelled: int = 0) -> dict:
    """One entry of the file: `scores` (mfray.eval.agreement.agreement of `name` on `scored`,
    the posts of `test_set`) with their means and provenance; `unlabelled`: posts the annotator
    gave no label at all (failed annotations, scored as wrong)."""
    acc, f1, floor = averages(dict(scores))
    return {
        "annotator": name, "test_set": test_set, "language": language,
        "n": len(scored), "events": len({g.event for g in scored}), "unlabelled": unlabelled,
        "dimensions": {d: {"accuracy": s.accuracy, "macro_f1": s.macro_f1, "majority_label": s.majority_label,
                           "majority_accuracy": s.majority_accuracy, "beats_majority": s.beats_majority,
                           "verdict": s.verdict} for d, s in scores.items()},
        "mean_accuracy": acc, "mean_macro_f1": f1, "mean_majority_accuracy": floor,
        "above_majority": sum(s.beats_majority for s in scores.values()),
        "note": note, "command": command, "date": date,
    }


def load_agreement(path: str | Path = AGREEMENT_FILE) -> dict:
    """The file's content; {} when it does not exist. A file that is not a JSON object is an
    error naming it."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e}); regenerate it with benchmarks/annotator_gold.py --out") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by annotator name, got {type(data).__name__}")
    return data


def merge_entry(path: str | Path, entry: Mapping) -> None:
    """Put `entry` under [annotator][test_set] of the file at `path` (created if absent),
    keeping every other entry; keys sorted so reruns give small diffs."""
    path = Path(path)
    data = load_agreement(path)
    data.setdefault(entry["annotator"], {})[entry["test_set"]] = dict(entry)
    data = {a: dict(sorted(sets.items())) for a, sets in sorted(data.items())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def measured_agreement(results: Mapping, name: str) -> dict[str, dict]:
    """{test set: entry} recorded for annotator `name` in `results` (the file's content); {}
    when it was never measured."""
    return dict(results.get(name) or {})


def annotator_agreement(name: str, path: str | Path = AGREEMENT_FILE) -> dict[str, dict]:
    """`measured_agreement` of `name` in the file at `path`."""
    return measured_agreement(load_agreement(path), name)


def measure_command(name: str, test_set: str) -> str:
    """The command that measures annotator `name` on `test_set` and records it in the file."""
    if name.startswith("llm:"):
        spec = f"llm --model {name[len('llm:'):]} --base-url <endpoint base_url>"
    else:
        spec = LOCAL_SPECS.get(name, "<module:Class>")
    return (f".venv/bin/python benchmarks/annotator_gold.py --annotator {spec} --test-set {test_set} "
            f"--out {AGREEMENT_FILE_REL}")


def agreement_rows(entry: Mapping) -> list[dict]:
    """Rows of a report table for one entry: dimension, macro_f1, accuracy, majority_accuracy,
    above_majority ("yes", "no", or "no (tie)": a tie is not above)."""
    verdicts = {"yes": "yes", "tie": "no (tie)", "no": "no"}
    return [{"dimension": d, "macro_f1": s["macro_f1"], "accuracy": s["accuracy"],
             "majority_accuracy": s["majority_accuracy"], "above_majority": verdicts[s["verdict"]]}
            for d, s in entry["dimensions"].items()]
