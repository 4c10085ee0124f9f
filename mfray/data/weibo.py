"""Weibo "rumdect" events: one JSON array of posts, element 0 the topic (parent null).

Action text (Post.text): the post's `text` stripped. When that is empty the post is a pure
repost and the action is "转发微博" + `original_text` stripped (the `//@user:` chain, where any
reaction lives). `raw_text` keeps `text` exactly as given. `is_repost` is True for an empty text
and for a text that is only a stock repost phrase (转发微博, 轉發微博, Repost, optional trailing
punctuation), whose action text stays as written.

Responses whose `t` decreases are reported (one problem per decrease) and the responses are then
sorted stably by `t`; the topic stays element 0. See `mfray.data.validate` for the rest of the
problem policy.
"""

from __future__ import annotations

import re
from typing import Any

from mfray.data.lang import event_language
from mfray.data.validate import Fields, Limits, Problem, blank_to_none
from mfray.types import Event, Post, Profile

REPOST_MARKER = "转发微博"
_STOCK_REPOST = re.compile(r"(转发微博|轉發微博|repost)[\s。.!！~～…]*", re.IGNORECASE)


def is_stock_repost(text: str) -> bool:
    """True for an empty text or one that is only a stock repost phrase."""
    text = text.strip()
    return not text or _STOCK_REPOST.fullmatch(text) is not None


def action_text(text: str, original_text: str | None) -> str:
    """The action a post stands for: its own words, or for a pure repost the marker plus the
    reposted chain."""
    own = text.strip()
    if own:
        return own
    return REPOST_MARKER + (original_text or "").strip()


def _profile(f: Fields) -> Profile:
    uid = f.optional("uid", "int")
    gender = f.optional("gender", "str")
    return Profile(
        user_id=None if uid is None else str(uid),
        location=blank_to_none(f.optional("user_location", "str")),
        description=blank_to_none(f.optional("user_description", "str")),
        # Only "m"/"f" mean something; anything else ("n", "") is unknown, never guessed.
        gender=gender if gender in ("m", "f") else None,
        friends_count=f.optional("friends_count", "count"),
        followers_count=f.optional("followers_count", "count"),
        activity_count=f.optional("statuses_count", "count"),
        verified=f.optional("verified", "bool"),
        verified_type=f.optional("verified_type", "int"),
        verified_reason=blank_to_none(f.optional("verified_reason", "str")),
    )


def parse_post(record: Any, path: str, index: int, limits: Limits,
               problems: list[Problem]) -> Post | None:
    """One Weibo post, or None when a required field is bad (its problems are appended)."""
    if not isinstance(record, dict):
        problems.append(Problem(path, index, "post", f"expected a JSON object, got "
                                f"{type(record).__name__} (event rejected)"))
        return None
    f = Fields(record, path, index, limits, problems)
    post_id = f.required("id", "id")
    t = f.required("t", "int")
    raw = f.required("text", "str")
    original = f.optional("original_text", "str")
    parent = f.optional("parent", "str")
    profile = _profile(f)
    if f.rejected:
        return None
    return Post(post_id=post_id, t=t, text=action_text(raw, original), raw_text=raw,
                is_repost=is_stock_repost(raw), profile=profile, parent=parent)


def parse_weibo(data: list[Any], path: str, limits: Limits | None = None
                ) -> tuple[Event | None, list[Problem]]:
    """Build an Event from a rumdect JSON array; (None, problems) when the event is rejected."""
    limits = limits or Limits()
    problems: list[Problem] = []
    if not data:
        problems.append(Problem(path, None, "event", "empty array: no topic, no responses"))
        return None, problems
    first = data[0]
    if isinstance(first, dict) and not {"id", "t", "text"} & first.keys():
        # Some other JSON array (e.g. labels): one problem instead of a dozen per element.
        problems.append(Problem(path, None, "json", "not a Weibo rumdect array: element 0 has no "
                                f"id, t or text (keys: {sorted(first)[:8]})"))
        return None, problems
    posts = [parse_post(rec, path, i, limits, problems) for i, rec in enumerate(data)]
    rejected = any(p is None for p in posts)
    topic = posts[0]
    if topic is not None and topic.parent is not None:
        problems.append(Problem(path, 0, "parent", f"the topic (element 0) must have parent "
                                f"null, got {topic.parent!r} (event rejected)"))
        rejected = True
    if len(data) < 2:
        problems.append(Problem(path, None, "event", "empty event: a topic and no responses "
                                "(event rejected)"))
        rejected = True
    prev: tuple[int, int] | None = None
    for i, post in enumerate(posts):
        if post is None:
            continue
        if prev is not None and post.t < prev[1]:
            problems.append(Problem(path, i, "t", f"t={post.t} is earlier than t={prev[1]} of "
                                    f"post {prev[0]}; responses sorted stably by t"))
        prev = (i, post.t)
    if rejected:
        return None, problems
    responses = sorted(posts[1:], key=lambda p: p.t)  # stable: equal t keep file order
    return Event(event_id=topic.post_id, source="weibo",
                 language=event_language(topic, responses), topic=topic,
                 responses=tuple(responses)), problems
