"""Profile -> state text: every level boundary, clause omission, both languages."""

from __future__ import annotations

import pytest

from mfray.data.state import activity_level, friends_level, influence_level, state_text
from mfray.types import Profile


@pytest.mark.parametrize("count, level", [
    (0, "very few"), (9, "very few"), (10, "few"), (30, "few"), (31, "moderate"),
    (1000, "moderate"), (1001, "many"), (3000, "many"), (3001, "very many"),
])
def test_friends_level_boundaries(count, level):
    assert friends_level(count) == level


@pytest.mark.parametrize("count, level", [
    (0, "very low"), (100, "very low"), (101, "low"), (500, "low"), (501, "moderate"),
    (1000, "moderate"), (1001, "high"), (10000, "high"), (10001, "very high"),
])
def test_influence_level_boundaries(count, level):
    # 100 is "very low": the reference code had a gap at exactly 100 (SPEC section 8).
    assert influence_level(count) == level


@pytest.mark.parametrize("count, level", [
    (0, "inactive"), (9, "inactive"), (10, "moderately active"), (100, "moderately active"),
    (101, "highly active"),
])
def test_activity_level_boundaries(count, level):
    assert activity_level(count) == level


@pytest.mark.parametrize("count, expected", [
    (9, "A user with a very few number of friends."),
    (10, "A user with a few number of friends."),
    (30, "A user with a few number of friends."),
    (31, "A user with a moderate number of friends."),
    (1000, "A user with a moderate number of friends."),
    (1001, "A user with a many number of friends."),
    (3000, "A user with a many number of friends."),
    (3001, "A user with a very many number of friends."),
])
def test_state_text_friends_only(count, expected):
    assert state_text(Profile(friends_count=count), "en") == expected


@pytest.mark.parametrize("count, expected", [
    (100, "A user with a very low level of influence based on followers."),
    (101, "A user with a low level of influence based on followers."),
    (500, "A user with a low level of influence based on followers."),
    (501, "A user with a moderate level of influence based on followers."),
    (1000, "A user with a moderate level of influence based on followers."),
    (1001, "A user with a high level of influence based on followers."),
    (10000, "A user with a high level of influence based on followers."),
    (10001, "A user with a very high level of influence based on followers."),
])
def test_state_text_followers_only(count, expected):
    assert state_text(Profile(followers_count=count), "en") == expected


@pytest.mark.parametrize("count, expected", [
    (9, "The user is inactive in terms of interactions."),
    (10, "The user is moderately active in terms of interactions."),
    (100, "The user is moderately active in terms of interactions."),
    (101, "The user is highly active in terms of interactions."),
])
def test_state_text_activity_only(count, expected):
    assert state_text(Profile(activity_count=count), "en") == expected


@pytest.mark.parametrize("count, expected", [
    (9, "该用户在互动方面不活跃。"), (10, "该用户在互动方面较为活跃。"),
    (100, "该用户在互动方面较为活跃。"), (101, "该用户在互动方面非常活跃。"),
])
def test_state_text_activity_only_zh(count, expected):
    assert state_text(Profile(activity_count=count), "zh") == expected


FULL = Profile(user_id="1797791674", location="北京 海淀区", description="纵情向前", gender="m",
               friends_count=1546, followers_count=7713, activity_count=713, verified=False,
               verified_type=-1)


def test_full_profile_follows_the_paper_template():
    assert state_text(FULL, "en") == (
        "A user from 北京 海淀区, described as 纵情向前, identified as male, with a many number of "
        "friends and a high level of influence based on followers. The user is highly active in "
        "terms of interactions, and the account is not verified.")


def test_full_profile_chinese():
    assert state_text(FULL, "zh") == (
        "一位来自北京 海淀区的用户，简介为“纵情向前”，性别为男，好友数量较多，"
        "基于粉丝数的影响力较高。该用户在互动方面非常活跃，账号未认证。")


def test_verified_with_type_and_reason():
    p = Profile(verified=True, verified_type=3, verified_reason="新浪娱乐")
    assert state_text(p, "en") == "The account is verified (type 3, reason: 新浪娱乐)."
    assert state_text(p, "zh") == "该账号已认证（认证类型：3，认证原因：新浪娱乐）。"
    assert state_text(Profile(verified=True, verified_type=0), "en") == \
        "The account is verified (type 0)."
    assert state_text(Profile(verified=True), "en") == "The account is verified."


def test_missing_fields_are_omitted_never_guessed():
    assert state_text(Profile(), "en") == ""
    assert state_text(Profile(), "zh") == ""
    # verified None: no verification clause even when a type is present
    assert state_text(Profile(verified_type=3), "en") == ""
    assert state_text(Profile(location="Millbrook"), "en") == "A user from Millbrook."
    assert state_text(Profile(gender="f"), "en") == "A user identified as female."
    assert state_text(Profile(gender="f"), "zh") == "一位用户，性别为女。"
    assert state_text(Profile(location="Millbrook", followers_count=5, activity_count=50), "en") \
        == ("A user from Millbrook, with a very low level of influence based on followers. "
            "The user is moderately active in terms of interactions.")
    assert state_text(Profile(description="  line one\n line two ", friends_count=5), "en") == \
        "A user described as line one line two, with a very few number of friends."


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="'fr'"):
        state_text(FULL, "fr")
