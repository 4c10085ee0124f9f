"""Crawled Twitter events: one JSON object per event, tweet id -> [time, text].

- `[null, null]` entries (deleted tweets) are skipped and counted, not reported.
- Times such as "9:35 AM - 28 Nov 2015" are parsed as UTC (the crawl gives no zone); text after
  the year (a "from <place>" location line) is ignored.
- Tweets are sorted by (time, int(tweet id)); the earliest is the topic, the rest the responses.
  Key order in the file does not matter.
- Posts carry no profile (all None) and no parent. `text` is the tweet stripped; `raw_text` is as
  crawled; `is_repost` when the text starts with "RT @".
- A bad entry (unparsable time, non-string text, non-numeric id, over-long text) is reported with
  the tweet id as position and only that tweet is dropped: tweets have no parent links, so
  nothing else refers to it.
"""

from __future__ import annotations

import calendar
import re
from functools import lru_cache
from typing import Any

from mfray.data.lang import event_language
from mfray.data.validate import Fields, Limits, Problem
from mfray.types import Event, Post, Profile

_NO_PROFILE = Profile()  # frozen, so one shared instance is safe and saves 371k allocations

_TIME = re.compile(
    r"\s*(\d{1,2}):(\d{2})\s*([AaPp])\.?[Mm]\.?\s*-\s*(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?,?"
    r"\s+(\d{4})(?!\d)"
)
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}


@lru_cache(maxsize=65536)
def parse_time(value: str) -> int | None:
    """Unix seconds (UTC) of a crawled display time like "9:35 AM - 28 Nov 2015", or None.

    Trailing text after the year is ignored. Cached: minute resolution makes repeats common.
    """
    m = _TIME.match(value)
    if not m:
        return None
    hour, minute, half, day, month, year = m.groups()
    hour, minute, day, year = int(hour), int(minute), int(day), int(year)
    mon = _MONTHS.get(month.lower())
    if mon is None or not 1 <= hour <= 12 or minute > 59 or not 1 <= day <= 31:
        return None
    if day > calendar.monthrange(year, mon)[1]:
        return None
    hour = hour % 12 + (12 if half in "Pp" else 0)  # 12 AM is midnight, 12 PM noon
    return calendar.timegm((year, mon, day, hour, minute, 0))


def _parse_entry(tweet_id: Any, entry: Any, path: str, limits: Limits,
                 problems: list[Problem]) -> tuple[int, int, Post] | None:
    note = "tweet dropped"
    # Fast path for the common well-formed entry; Fields below only runs to explain a bad one.
    if (type(entry) is list and len(entry) == 2 and type(entry[0]) is str
            and type(entry[1]) is str and len(entry[1]) <= limits.max_text_chars
            and tweet_id.isdigit()):
        t = parse_time(entry[0])
        if t is not None:
            text = entry[1]
            return t, int(tweet_id), Post(post_id=tweet_id, t=t, text=text.strip(),
                                          raw_text=text, is_repost=text.lstrip().startswith("RT @"),
                                          profile=_NO_PROFILE)
    if not isinstance(entry, list) or len(entry) != 2:
        problems.append(Problem(path, tweet_id, "entry", f"expected [time, text], got "
                                f"{type(entry).__name__} of length {_len(entry)} ({note})"))
        return None
    f = Fields({"time": entry[0], "text": entry[1]}, path, tweet_id, limits, problems, note)
    time_str = f.required("time", "str")
    text = f.required("text", "str")
    if not tweet_id.isdigit():
        problems.append(Problem(path, tweet_id, "id", f"tweet id must be digits ({note})"))
        return None
    if f.rejected:
        return None
    t = parse_time(time_str)
    if t is None:
        problems.append(Problem(path, tweet_id, "time", f"cannot parse {time_str[:60]!r} as "
                                f"'H:MM AM - D Mon YYYY' ({note})"))
        return None
    post = Post(post_id=tweet_id, t=t, text=text.strip(), raw_text=text,
                is_repost=text.lstrip().startswith("RT @"), profile=_NO_PROFILE)
    return t, int(tweet_id), post


def _len(value: Any) -> str:
    return str(len(value)) if isinstance(value, (list, str, dict)) else "-"


def parse_twitter(data: dict[str, Any], path: str, event_id: str, limits: Limits | None = None
                  ) -> tuple[Event | None, list[Problem], int]:
    """Build an Event from a crawled tweet map. Returns (event or None, problems, number of
    [null, null] entries skipped)."""
    limits = limits or Limits()
    problems: list[Problem] = []
    skipped = 0
    dated = []
    for tweet_id, entry in data.items():
        if entry == [None, None]:
            skipped += 1
            continue
        parsed = _parse_entry(tweet_id, entry, path, limits, problems)
        if parsed is not None:
            dated.append(parsed)
    if len(dated) < 2:
        problems.append(Problem(path, None, "event", f"empty event: {len(dated)} dated tweet(s), "
                                "need a topic and at least one response (event rejected)"))
        return None, problems, skipped
    dated.sort(key=lambda x: (x[0], x[1]))
    topic, responses = dated[0][2], tuple(x[2] for x in dated[1:])
    event = Event(event_id=event_id, source="twitter",
                  language=event_language(topic, responses), topic=topic, responses=responses)
    return event, problems, skipped
