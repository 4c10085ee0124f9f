"""Select the posts of the hand-labelled TEST sets (mfray/eval/gold/), deterministically.

Run: `.venv/bin/python benchmarks/label_sample.py [--data DIR] [--out FILE] [--seed N] ...`

What it selects (all with one fixed seed, so a rerun gives the same posts in the same order):
- English tweets: `--twitter-events` events (default 72) drawn from data/twitter_rumdect, never one
  of the events of data/labels/twitter_gold_240.jsonl (the annotator's rules were written while
  reading that file); in each, `--per-event` responses (default 6). Within an event the responses
  are shuffled and taken in that order, skipping a text already taken in that event (exact
  duplicate after stripping) and a text that does not look English; so the sample keeps the
  natural mix (mostly headline reposts, which differ in their short links) without copies.
- Weibo posts: the 6 events of data/weibo_rumdect/train (never weibo_rumdect/test), `--weibo-per-
  event` responses each (default 26), shuffled the same way and deduplicated the same way, except
  that a bare stock repost (转发微博 / 轉發微博 / Repost with no chain) may repeat: it is the most
  common action and the sample keeps its natural share.
- `--exclude-test-sets NAME ...` (default: none) also leaves out every event of those existing
  test sets (mfray/eval/gold/NAME.jsonl, names of mfray.eval.gold.TEST_SETS), so a new test set
  shares no event with them. Without it the draw is exactly as before, so an existing set still
  reproduces from its seed. Use a new `--seed` for a new set.

It writes one JSON object per line: `lang`, `event`, `id`, `topic`, `text` (the text a labeller
reads: the tweet as crawled; for Weibo the action text, i.e. the post's own words, or for a pure
repost 转发微博 plus the //@ chain). The output is for labelling only and belongs under a folder
git ignores (default runs/labelling/to_label.jsonl); the labels themselves store no text.

This script runs no annotator: it only reads, filters and samples.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mfray.data import load_events  # noqa: E402
from mfray.data.weibo import is_stock_repost  # noqa: E402
from mfray.eval.gold import TEST_SETS, gold_set_path  # noqa: E402

SEED = 20240611
GOLD_FILE = Path("labels") / "twitter_gold_240.jsonl"
TWITTER_DIR = Path("twitter_rumdect")
WEIBO_TRAIN = Path("weibo_rumdect") / "train"

# A light filter for "English": Latin letters dominate, and the text is not plainly in another
# Latin-script language (more of these function words than English ones).
_WORD = re.compile(r"[a-zà-ÿ']+")
_ENGLISH = frozenset("the a an of to in on for and is are was were be it this that with at by "
                     "from as i you he she we they my your his her our not no but or if what "
                     "who how why has have had will can do does did just new".split())
_OTHER = frozenset("de la el los las que en por para con una del al se es y lo su sus le les "
                   "des du est et une il pas pour sur au dans und der die das ist nicht mit "
                   "ein eine het een van op niet não é um uma com os yang dan di ini itu "
                   "tidak ke dari untuk che di il della per non sono".split())


def default_data() -> Path:
    return Path(os.environ.get("MFRAY_DATA", REPO_ROOT.parent / "shared" / "data"))


def looks_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters or sum(c.isascii() for c in letters) / len(letters) < 0.9:
        return False
    words = [w for w in _WORD.findall(re.sub(r"https?://\S+|[@#]\w+", " ", text.lower()))]
    other = sum(w in _OTHER for w in words)
    english = sum(w in _ENGLISH for w in words)
    return not (other >= 2 and other > english)


def gold_events(data: Path) -> set[str]:
    with open(data / GOLD_FILE, encoding="utf-8") as f:
        return {json.loads(line)["event"] for line in f if line.strip()}


def test_set_events(names: list[str]) -> set[str]:
    """The events of the named test sets (their labels files in mfray/eval/gold/)."""
    events: set[str] = set()
    for name in names:
        if name not in TEST_SETS:
            raise SystemExit(f"unknown test set {name!r}; expected one of {', '.join(TEST_SETS)}")
        with open(gold_set_path(name), encoding="utf-8") as f:
            events |= {json.loads(line)["event"] for line in f if line.strip()}
    return events


def _load(path: Path) -> list:
    events, problems = load_events([path])
    if problems:
        raise SystemExit(f"{path}: {len(problems)} problem(s), first: {problems[0]}")
    return sorted(events, key=lambda e: e.event_id)


def _pick(posts, n: int, rng: random.Random, keep, repeatable=lambda p: False) -> list:
    order = list(posts)
    rng.shuffle(order)
    seen: set[str] = set()
    chosen = []
    for post in order:
        if len(chosen) == n:
            break
        text = post.text.strip()
        if not keep(post) or (text in seen and not repeatable(post)):
            continue
        seen.add(text)
        chosen.append(post)
    return chosen


def sample_twitter(data: Path, n_events: int, per_event: int, seed: int,
                   exclude: frozenset[str] = frozenset()) -> list[dict]:
    excluded = gold_events(data) | set(exclude)
    events = [e for e in _load(data / TWITTER_DIR) if e.event_id not in excluded]
    rng = random.Random(seed)
    rows: list[dict] = []
    for event in rng.sample(events, len(events)):
        if len(rows) >= n_events * per_event:
            break
        posts = _pick(event.responses, per_event, random.Random(f"{seed}:{event.event_id}"),
                      keep=lambda p: looks_english(p.raw_text))
        if len(posts) < per_event:
            continue  # too few distinct English tweets: take another event
        rows += [{"lang": "en", "event": event.event_id, "id": p.post_id,
                  "topic": event.topic.raw_text, "text": p.raw_text} for p in posts]
    return rows


def sample_weibo(data: Path, per_event: int, seed: int,
                 exclude: frozenset[str] = frozenset()) -> list[dict]:
    rows: list[dict] = []
    if per_event <= 0:
        return rows
    for event in _load(data / WEIBO_TRAIN):
        if event.event_id in exclude:
            continue
        posts = _pick(event.responses, per_event, random.Random(f"{seed}:{event.event_id}"),
                      keep=lambda p: True,
                      repeatable=lambda p: p.is_repost and is_stock_repost(p.text))
        rows += [{"lang": "zh", "event": event.event_id, "id": p.post_id,
                  "topic": event.topic.text, "text": p.text} for p in posts]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring for the sampling rules.")
    ap.add_argument("--data", type=Path, default=default_data(),
                    help="data root holding twitter_rumdect/, weibo_rumdect/ and labels/ "
                         "(default: $MFRAY_DATA or ../shared/data)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "labelling" / "to_label.jsonl",
                    help="output JSONL (default runs/labelling/to_label.jsonl, git-ignored)")
    ap.add_argument("--seed", type=int, default=SEED, help=f"sampling seed (default {SEED})")
    ap.add_argument("--twitter-events", type=int, default=72, help="Twitter events (default 72)")
    ap.add_argument("--per-event", type=int, default=6, help="tweets per event (default 6)")
    ap.add_argument("--weibo-per-event", type=int, default=26,
                    help="posts per Weibo training event (default 26; 0: no Weibo)")
    ap.add_argument("--exclude-test-sets", nargs="+", default=[], metavar="NAME",
                    help="leave out the events of these existing test sets (mfray/eval/gold/"
                         "NAME.jsonl), e.g. twitter_unseen (default: none)")
    args = ap.parse_args(argv)

    exclude = frozenset(test_set_events(args.exclude_test_sets))
    rows = sample_twitter(args.data, args.twitter_events, args.per_event, args.seed, exclude)
    rows += sample_weibo(args.data, args.weibo_per_event, args.seed, exclude)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    en = [r for r in rows if r["lang"] == "en"]
    zh = [r for r in rows if r["lang"] == "zh"]
    print(f"wrote {args.out}: {len(en)} tweets from {len({r['event'] for r in en})} Twitter "
          f"events, {len(zh)} Weibo posts from {len({r['event'] for r in zh})} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
