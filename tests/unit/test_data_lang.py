"""Language detection: CJK share of the event text above 0.2 means zh."""

from __future__ import annotations

from mfray.data.lang import cjk_share, detect_language, event_language
from mfray.types import Post


def test_cjk_share_counts_non_whitespace_characters():
    # 4 Han characters out of 10 non-space characters (the ideographic space is whitespace)
    assert cjk_share(["刘翔 加油", "\u3000abcdef"]) == 0.4
    assert cjk_share(["", "   "]) == 0.0
    assert cjk_share(["！？。"]) == 1.0  # full-width and CJK punctuation count


def test_threshold_is_strictly_above_one_fifth():
    assert detect_language(["中abcd"]) == "en"  # exactly 0.2
    assert detect_language(["中文abcd"]) == "zh"  # 1/3
    assert detect_language(["hello world"]) == "en"
    assert detect_language([]) == "en"


def test_kana_and_hangul_do_not_count():
    assert detect_language(["こんにちは", "안녕하세요"]) == "en"


def test_event_language_uses_topic_and_responses():
    def post(text):
        return Post(post_id="1", t=0, text=text, raw_text=text, is_repost=False)

    # 4 CJK characters of 12: "water?" 6, "转发微博" 4, "ok" 2
    assert event_language(post("water?"), [post("转发微博"), post("ok")]) == "zh"
    assert event_language(post("Is the water safe?"), [post("ok")] * 3) == "en"
