"""Agent state s_i: a profile rendered as one or two sentences (SPEC section 1).

The English text follows the MF-LLM paper's template; the Chinese text is its rendering for zh
events. A missing field drops its clause (never guessed); a profile with nothing known renders as
"" (the empty string), so a prompt can test for it and show no state line at all.
"""

from __future__ import annotations

from mfray.types import Language, Profile

# Thresholds are inclusive on the upper bound of each level (SPEC section 1).
FRIENDS_LEVELS = ((9, "very few"), (30, "few"), (1000, "moderate"), (3000, "many"))
FRIENDS_TOP = "very many"
FOLLOWERS_LEVELS = ((100, "very low"), (500, "low"), (1000, "moderate"), (10000, "high"))
FOLLOWERS_TOP = "very high"
ACTIVITY_LEVELS = ((9, "inactive"), (100, "moderately active"))
ACTIVITY_TOP = "highly active"

_ZH = {
    "very few": "很少", "few": "较少", "moderate": "中等", "many": "较多", "very many": "很多",
    "very low": "很低", "low": "较低", "high": "较高", "very high": "很高",
    "inactive": "不活跃", "moderately active": "较为活跃", "highly active": "非常活跃",
}
_GENDER = {"en": {"m": "male", "f": "female"}, "zh": {"m": "男", "f": "女"}}


def _level(value: int, levels: tuple[tuple[int, str], ...], top: str) -> str:
    for upper, name in levels:
        if value <= upper:
            return name
    return top


def friends_level(friends_count: int) -> str:
    """<10 very few, 10-30 few, 31-1000 moderate, 1001-3000 many, >3000 very many."""
    return _level(friends_count, FRIENDS_LEVELS, FRIENDS_TOP)


def influence_level(followers_count: int) -> str:
    """<=100 very low, 101-500 low, 501-1000 moderate, 1001-10000 high, >10000 very high."""
    return _level(followers_count, FOLLOWERS_LEVELS, FOLLOWERS_TOP)


def activity_level(activity_count: int) -> str:
    """<10 inactive, 10-100 moderately active, >100 highly active."""
    return _level(activity_count, ACTIVITY_LEVELS, ACTIVITY_TOP)


def _clean(value: str | None) -> str | None:
    # Bios can hold newlines and runs of spaces; one line keeps the prompt layout intact.
    if value is None:
        return None
    return " ".join(value.split()) or None


def _verified_status(profile: Profile, language: Language) -> str | None:
    if profile.verified is None:
        return None
    reason = _clean(profile.verified_reason)
    if not profile.verified:
        return "not verified" if language == "en" else "未认证"
    vtype = profile.verified_type
    if language == "en":
        details = ([f"type {vtype}"] if vtype is not None else []) \
            + ([f"reason: {reason}"] if reason else [])
        return "verified" + (f" ({', '.join(details)})" if details else "")
    details = ([f"认证类型：{vtype}"] if vtype is not None else []) \
        + ([f"认证原因：{reason}"] if reason else [])
    return "已认证" + (f"（{'，'.join(details)}）" if details else "")


def state_text(profile: Profile, language: Language) -> str:
    """Render `profile` as the agent's state text in `language` ("en" or "zh").

    Every missing field is left out with its clause; an all-missing profile gives "".
    Full English example: "A user from Beijing, described as runner, identified as male, with a
    moderate number of friends and a high level of influence based on followers. The user is
    highly active in terms of interactions, and the account is not verified."
    """
    if language not in ("en", "zh"):
        raise ValueError(f"state_text: language must be 'en' or 'zh', got {language!r}")
    location, description = _clean(profile.location), _clean(profile.description)
    gender = _GENDER[language].get(profile.gender) if profile.gender else None
    friends = None if profile.friends_count is None else friends_level(profile.friends_count)
    influence = None if profile.followers_count is None else \
        influence_level(profile.followers_count)
    activity = None if profile.activity_count is None else activity_level(profile.activity_count)
    verified = _verified_status(profile, language)
    if language == "en":
        return _english(location, description, gender, friends, influence, activity, verified)
    return _chinese(location, description, gender, friends, influence, activity, verified)


def _english(location, description, gender, friends, influence, activity, verified) -> str:
    clauses = []
    if description:
        clauses.append(f"described as {description}")
    if gender:
        clauses.append(f"identified as {gender}")
    if friends and influence:
        clauses.append(f"with a {friends} number of friends and a {influence} level of influence "
                       "based on followers")
    elif friends:
        clauses.append(f"with a {friends} number of friends")
    elif influence:
        clauses.append(f"with a {influence} level of influence based on followers")
    sentences = []
    if location:
        sentences.append("".join([f"A user from {location}", *(", " + c for c in clauses)]) + ".")
    elif clauses:
        sentences.append("A user " + ", ".join(clauses) + ".")
    if activity and verified:
        sentences.append(f"The user is {activity} in terms of interactions, and the account is "
                         f"{verified}.")
    elif activity:
        sentences.append(f"The user is {activity} in terms of interactions.")
    elif verified:
        sentences.append(f"The account is {verified}.")
    return " ".join(sentences)


def _chinese(location, description, gender, friends, influence, activity, verified) -> str:
    clauses = []
    if description:
        clauses.append(f"简介为“{description}”")
    if gender:
        clauses.append(f"性别为{gender}")
    if friends:
        clauses.append(f"好友数量{_ZH[friends]}")
    if influence:
        clauses.append(f"基于粉丝数的影响力{_ZH[influence]}")
    sentences = []
    if location or clauses:
        head = f"一位来自{location}的用户" if location else "一位用户"
        sentences.append("，".join([head, *clauses]) + "。")
    if activity and verified:
        sentences.append(f"该用户在互动方面{_ZH[activity]}，账号{verified}。")
    elif activity:
        sentences.append(f"该用户在互动方面{_ZH[activity]}。")
    elif verified:
        sentences.append(f"该账号{verified}。")
    return "".join(sentences)
