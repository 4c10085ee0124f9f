"""Weibo rumdect loader: real files, repost handling, and corrupted copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfray.data import load_events, load_file
from mfray.data.weibo import action_text, is_stock_repost

LIU_XIANG = "weibo_rumdect/test/3476055656644087.json"


@pytest.fixture
def weibo_posts(data_dir) -> list[dict]:
    return json.loads((data_dir / LIU_XIANG).read_text(encoding="utf-8"))


def _write(tmp_path: Path, name: str, posts) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(posts, ensure_ascii=False), encoding="utf-8")
    return path


def test_all_weibo_files_load(data_dir):
    events, problems = load_events([data_dir / "weibo_rumdect"])
    assert problems == []
    assert len(events) == 11
    for event in events:
        assert event.source == "weibo" and event.language == "zh"
        assert len(event.responses) == 329
        times = [p.t for p in event.responses]
        assert times == sorted(times) and event.topic.t <= times[0]
        assert event.topic.parent is None
        assert all(p.text for p in event.responses)  # no empty action


def test_weibo_topic_profile_and_reposts(data_dir, weibo_posts):
    result = load_file(data_dir / LIU_XIANG)
    assert result.format == "weibo" and result.problems == []
    event = result.events[0]
    assert event.event_id == "3476055656644087"
    topic = event.topic
    assert topic.text.startswith("刘翔，赢或不赢") and not topic.is_repost
    p = topic.profile
    assert (p.user_id, p.location, p.description, p.gender) == \
        ("1797791674", "北京 海淀区", "纵情向前", "m")
    assert (p.friends_count, p.followers_count, p.activity_count) == (1546, 7713, 713)
    assert (p.verified, p.verified_type, p.verified_reason) == (False, -1, None)
    first = event.responses[0]
    assert (first.raw_text, first.text, first.is_repost) == ("转发微博。", "转发微博。", True)
    assert first.profile.description is None  # "" is missing, not an empty bio
    assert first.parent == "3476055656644087"


def test_pure_repost_gets_marker_plus_chain(data_dir):
    event = load_file(data_dir / "weibo_rumdect/test/3589896742294688.json").events[0]
    empties = [p for p in event.responses if not p.raw_text.strip()]
    assert empties and all(p.is_repost for p in empties)
    assert all(p.text.startswith("转发微博//@") for p in empties if p.text != "转发微博")


def test_stock_repost_rules():
    stock = ["", "  ", "转发微博", "转发微博。", "轉發微博", "Repost", "repost!", "转发微博 。"]
    for text in stock:
        assert is_stock_repost(text), text
    for text in ["转发微博，真的吗", "真的假的？", "[心]", "转"]:
        assert not is_stock_repost(text), text
    assert action_text("", " //@a:真的吗 ") == "转发微博//@a:真的吗"
    assert action_text("  ", None) == "转发微博"
    assert action_text(" 加油 ", "加油 //@b: x") == "加油"


def test_gender_other_than_m_f_is_none(tmp_path, weibo_posts):
    posts = weibo_posts[:3]
    posts[1]["gender"], posts[2]["gender"] = "n", ""
    result = load_file(_write(tmp_path, "g.json", posts))
    assert result.problems == []
    assert [p.profile.gender for p in result.events[0].responses] == [None, None]


def test_wrong_type_profile_field_is_reported_and_none(tmp_path, weibo_posts):
    posts = weibo_posts[:5]
    posts[3]["followers_count"] = "612"
    posts[4]["verified"] = "yes"
    del posts[2]["user_location"]
    path = _write(tmp_path, "bad_profile.json", posts)
    result = load_file(path)
    assert [str(p) for p in result.problems] == [
        f"{path}:2: user_location: missing field (set to None, post kept)",
        f"{path}:3: followers_count: expected int, got str '612' (set to None, post kept)",
        f"{path}:4: verified: expected bool, got str 'yes' (set to None, post kept)",
    ]
    event = result.events[0]
    assert len(event.responses) == 4  # nothing dropped, nothing shifted
    assert event.responses[2].profile.followers_count is None
    assert event.responses[2].post_id == posts[3]["id"]
    assert event.responses[3].profile.verified is None


def test_bad_required_fields_reject_the_event_listing_all(tmp_path, weibo_posts):
    posts = weibo_posts[:6]
    posts[1]["t"] = "1344239799"
    del posts[2]["text"]
    posts[3]["id"] = 3476056017106708
    posts[4]["text"] = "x" * 100_001
    posts[5]["friends_count"] = True
    path = _write(tmp_path, "bad_required.json", posts)
    result = load_file(path)
    assert result.events == []
    assert [str(p) for p in result.problems] == [
        f"{path}:1: t: expected int, got str '1344239799' (event rejected)",
        f"{path}:2: text: missing required field (event rejected)",
        f"{path}:3: id: expected str, got int 3476056017106708 (event rejected)",
        f"{path}:4: text: 100001 characters exceeds the 100000-character limit (event rejected)",
        f"{path}:5: friends_count: expected int, got bool True (set to None, post kept)",
    ]


def test_out_of_order_t_is_reported_and_sorted_stably(tmp_path, weibo_posts):
    posts = weibo_posts[:6]
    posts[3]["t"] = posts[1]["t"] - 5  # earlier than post 2 and post 1
    path = _write(tmp_path, "order.json", posts)
    result = load_file(path)
    assert [str(p) for p in result.problems] == [
        f"{path}:3: t: t={posts[3]['t']} is earlier than t={posts[2]['t']} of post 2; "
        "responses sorted stably by t"]
    ids = [p.post_id for p in result.events[0].responses]
    assert ids == [posts[i]["id"] for i in (3, 1, 2, 4, 5)]


def test_empty_event_and_bad_topic(tmp_path, weibo_posts):
    only_topic = _write(tmp_path, "only_topic.json", weibo_posts[:1])
    empty = _write(tmp_path, "empty.json", [])
    posts = weibo_posts[:3]
    posts[0]["parent"] = "123"
    parented = _write(tmp_path, "parented.json", posts)
    events, problems = load_events([only_topic, empty, parented])
    assert events == []
    assert sorted(str(p) for p in problems) == sorted([
        f"{only_topic}: event: empty event: a topic and no responses (event rejected)",
        f"{empty}: event: empty array: no topic, no responses",
        f"{parented}:0: parent: the topic (element 0) must have parent null, got '123' "
        "(event rejected)",
    ])


def test_non_object_post(tmp_path, weibo_posts):
    path = _write(tmp_path, "list_post.json", [weibo_posts[0], [1, 2]])
    result = load_file(path)
    assert result.events == []
    assert [str(p) for p in result.problems] == \
        [f"{path}:1: post: expected a JSON object, got list (event rejected)"]


def test_some_other_json_array_is_one_problem(tmp_path):
    path = _write(tmp_path, "labels.json", [{"event": "E1", "rumor": "spread"}] * 50)
    result = load_file(path)
    assert [str(p) for p in result.problems] == [
        f"{path}: json: not a Weibo rumdect array: element 0 has no id, t or text "
        "(keys: ['event', 'rumor'])"]
