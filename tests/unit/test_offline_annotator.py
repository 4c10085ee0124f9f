"""The offline annotator: label sets, alignment, determinism, Chinese, one example per rule,
and its measured quality on the gold set (benchmarks/annotator_gold.py prints the full table)."""

from __future__ import annotations

import asyncio

import pytest
import vaderSentiment  # noqa: F401  a declared dependency: missing means a broken install, not a skip

from mfray.eval.annotate import Annotation, AnnotationItem, Annotator
from mfray.eval.labels import DIMENSIONS, load_gold_labels
from mfray.eval.metrics import f1_scores
from mfray.eval.offline import OfflineAnnotator
from tests.conftest import missing_data_message

# Measured with benchmarks/annotator_gold.py on twitter_gold_240.jsonl (average macro-F1 over
# the eight dimensions); the test allows 0.02 below it.
MEASURED_GOLD_MACRO_F1 = 0.860

TOPIC = "Alabama Man Caught Having Sex With Pig In WalMart Bathroom http://fb.me/7oGPlRwAd"


@pytest.fixture(scope="module")
def annotator() -> OfflineAnnotator:
    return OfflineAnnotator()


def labels(annotator: OfflineAnnotator, text: str, topic: str = TOPIC, language: str = "en") -> dict:
    [ann] = asyncio.run(annotator.annotate([AnnotationItem(text=text, topic=topic, language=language)]))
    assert not ann.failed, ann.error
    return ann.labels


MIXED = [
    AnnotationItem("RT @news: Alabama Man Caught Having Sex With Pig In WalMart Bathroom http://t.co/x", TOPIC),
    AnnotationItem("Really? Alabama Man Caught Having Sex With Pig https://shar.es/1s9CTQ", TOPIC),
    AnnotationItem("", TOPIC),
    AnnotationItem("lol what a day :)", TOPIC),
    AnnotationItem("转发微博", "刘翔，赢或不赢，你都是英雄", "zh"),
    AnnotationItem("这是谣言，大家不要相信！", "网传某地自来水有毒", "zh"),
    AnnotationItem("真的吗？", "网传某地自来水有毒", "zh"),
    AnnotationItem("Is this real??", "", "en"),
]


def test_is_an_annotator_with_a_name(annotator):
    assert isinstance(annotator, Annotator)
    assert annotator.name == "offline-v2"


def test_every_label_in_its_set_and_aligned(annotator):
    out = asyncio.run(annotator.annotate(MIXED))
    assert len(out) == len(MIXED)
    for ann in out:
        assert isinstance(ann, Annotation) and not ann.failed
        assert list(ann.labels) == list(DIMENSIONS)
        for dim, label in ann.labels.items():
            assert label in DIMENSIONS[dim]
    # order kept: each item alone gets the same labels as in the batch
    for item, ann in zip(MIXED, out):
        assert asyncio.run(annotator.annotate([item]))[0].labels == ann.labels
    assert asyncio.run(annotator.annotate([])) == []


def test_deterministic_across_instances(annotator):
    first = [a.labels for a in asyncio.run(annotator.annotate(MIXED))]
    again = [a.labels for a in asyncio.run(OfflineAnnotator().annotate(MIXED))]
    assert first == again
    assert [a.keywords for a in asyncio.run(annotator.annotate(MIXED))] == \
           [a.keywords for a in asyncio.run(annotator.annotate(MIXED))]


def test_bare_retweet_of_headline_is_a_supporting_share(annotator):
    got = labels(annotator, "RT @x: Alabama Man Caught Having Sex With Pig In WalMart Bathroom http://bit.ly/abc")
    assert got == {"rumor": "spread", "sentiment": "calm", "attitude": "neutral", "behavior": "share",
                   "stance": "support", "belief": "believe", "subjectivity": "objective",
                   "intent": "promotion"}


def test_headline_about_another_story_is_neutral(annotator):
    got = labels(annotator, "Toys R Us brings temporary foreign workers to move jobs overseas http://fb.me/x")
    assert got["behavior"] == "share" and got["stance"] == "neutral" and got["intent"] == "promotion"


def test_user_scepticism_is_a_doubting_question(annotator):
    got = labels(annotator, "Is this real?? Alabama man caught with pig in WalMart http://x.co/1")
    assert (got["belief"], got["rumor"], got["intent"], got["behavior"]) == ("doubt", "counter", "question", "comment")
    got = labels(annotator, "Really? Alabama Man Caught Having Sex With Pig In WalMart Bathroom https://shar.es/1")
    assert (got["belief"], got["intent"], got["sentiment"]) == ("doubt", "question", "surprise")


def test_hedging_headline_is_not_doubt(annotator):
    got = labels(annotator, "Is 'Dexter' Returning To Showtime? http://fb.me/3qTnDMVx1",
                 topic="Dexter is Returning to ShowTime!!!!!!!!")
    assert (got["belief"], got["behavior"], got["intent"]) == ("believe", "share", "promotion")


def test_debunk_counters_and_opposes(annotator):
    got = labels(annotator, "This is a hoax")
    assert (got["rumor"], got["stance"], got["belief"]) == ("counter", "oppose", "doubt")
    got = labels(annotator, "FALSE: Kubrick faked the moon landings http://www.snopes.com/false-kubrick/",
                 topic="Stanley Kubrick Allegedly Admits Moon Landings Faked")
    assert got["rumor"] == "counter"


def test_debunk_word_that_is_the_claim_itself_spreads(annotator):
    # "hoax"/"faked" are the rumour's own words here (README: the claim is what the topic says).
    topic = "Stanley Kubrick Allegedly Admits Moon Landings Faked http://on.fb.me/1L5CtUq"
    got = labels(annotator, "MOON LANDINGS HOAX: Film shows Stanley Kubrick revealing it was 'FAKED' http://x.co/1", topic)
    assert (got["rumor"], got["stance"]) == ("spread", "support")
    got = labels(annotator, "Virginia journalist shooting False Flag Hoax http://fb.me/2EH",
                 topic="Virginia journalist shooting False Flag Hoax http://fb.me/7xk")
    assert got["rumor"] == "spread"


def test_a_denial_of_the_topic_claim_counters_and_opposes(annotator):
    topic = "Cam Newton gets fined for giving away footballs http://x.co/t"
    for text in ("No, Internet, Cam Newton is not being fined for giving away footballs http://x.co/1",
                 "Cam Newton Doesn't Get Fined For Giving Away Footballs http://x.co/2"):
        got = labels(annotator, text, topic)
        assert (got["rumor"], got["stance"], got["belief"], got["behavior"]) == ("counter", "oppose", "doubt", "share")
    # a denial about something else (fewer than two shared stems) is not a debunk
    got = labels(annotator, "Fox News doesn't care http://x.co/3", topic)
    assert got["rumor"] == "spread"


def test_a_denial_topic_repeated_counters(annotator):
    # the topic itself denies ("... is not giving ..."): repeating it counters the rumour it denies
    topic = "Mark Zuckerberg is not giving $4.5 million to Facebook users who share this"
    got = labels(annotator, "Sorry, Mark Zuckerberg is not giving money to Facebook users http://x.co/1", topic)
    assert (got["rumor"], got["stance"]) == ("counter", "oppose")


def test_a_fact_check_headline_without_its_verdict_doubts_but_stays_a_share(annotator):
    topic = "Atlanta Lottery Winner Dies After Gold Plating His Testicles"
    for text in ("Did Lottery Winner Really Die After Gold Plating His Testicles? http://ow.ly/V",
                 "Claim: Lottery Winner Dies After Gold Plating His Testicles http://x.com/fact-check-lottery/"):
        got = labels(annotator, text, topic)
        assert (got["rumor"], got["belief"], got["behavior"], got["intent"]) == ("counter", "doubt", "share", "promotion")


def test_support_needs_three_shared_stems_in_english(annotator):
    topic = "Bindi Irwin must prove her dad died before DWTS pays her"
    # two shared names only: another story about the same people
    assert labels(annotator, "Bindi Irwin wins the dance trophy http://x.co/1", topic)["stance"] == "neutral"
    assert labels(annotator, "Judge: Bindi Irwin must prove dad died http://x.co/2", topic)["stance"] == "support"


def test_reaction_added_to_a_headline_makes_a_comment(annotator):
    got = labels(annotator, "Holy shit. Rupert Murdoch just killed National Geographic. http://x.co/1",
                 topic="Rupert Murdoch just bought National Geographic")
    assert (got["behavior"], got["intent"], got["subjectivity"], got["sentiment"]) == \
           ("comment", "opinion", "subjective", "surprise")
    got = labels(annotator, "Nooo RT @NBCNews: 43 Chipotle restaurants close after E. coli outbreak http://x.co/2",
                 topic="E. coli outbreak at Chipotle")
    assert (got["behavior"], got["sentiment"]) == ("comment", "sad")
    for reaction, emotion in (("Are you serious?", "angry"), ("Bruh", "surprise"), ("OMFG!", "surprise"),
                              ("BwaHaHaHa!!", "happy"), ("Say it isn't so.", "sad")):
        got = labels(annotator, f"{reaction} Alabama Man Caught With Pig In WalMart http://x.co/3")
        assert (got["behavior"], got["sentiment"]) == ("comment", emotion), reaction
    got = labels(annotator, "I love it: http://m.timesofindia.com/x")
    assert (got["sentiment"], got["attitude"], got["behavior"]) == ("happy", "positive", "comment")


def test_headline_vocabulary_stays_a_share(annotator):
    got = labels(annotator, "Video Alert: Refugees being snuck into U.S. on UPS flights? http://eepurl.com/bG7",
                 topic="Refugees snuck into U.S. on UPS flights")
    assert (got["behavior"], got["sentiment"], got["attitude"]) == ("share", "fear", "negative")


def test_chinese(annotator):
    got = labels(annotator, "转发微博", topic="刘翔，赢或不赢，你都是英雄", language="zh")
    assert (got["behavior"], got["stance"], got["intent"]) == ("share", "support", "promotion")
    got = labels(annotator, "这是谣言，大家不要相信！", topic="网传某地自来水有毒", language="zh")
    assert (got["rumor"], got["stance"], got["belief"]) == ("counter", "oppose", "doubt")
    got = labels(annotator, "真的吗？", topic="网传某地自来水有毒", language="zh")
    assert (got["belief"], got["intent"], got["behavior"]) == ("doubt", "question", "comment")
    got = labels(annotator, "哈哈哈，太搞笑了", topic="网传某地自来水有毒", language="zh")
    assert (got["sentiment"], got["behavior"], got["subjectivity"]) == ("happy", "comment", "subjective")
    got = labels(annotator, "气死了，这帮混蛋！", topic="网传某地自来水有毒", language="zh")
    assert (got["sentiment"], got["attitude"]) == ("angry", "negative")
    # a Chinese post in an English event is read as Chinese
    got = labels(annotator, "辟谣：网传消息不实 http://t.cn/abc", topic="Tap water poisoned in town", language="en")
    assert got["rumor"] == "counter"


def test_gold_macro_f1_holds(annotator, data_dir):
    path = data_dir / "labels" / "twitter_gold_240.jsonl"
    assert path.is_file(), missing_data_message(path, "gold label file labels/twitter_gold_240.jsonl")
    gold, problems = load_gold_labels(path)
    assert gold and not problems
    items = [AnnotationItem(text=g.text, topic=g.topic) for g in gold]
    preds = asyncio.run(annotator.annotate(items))
    f1 = [f1_scores([g.labels[d] for g in gold], [p.labels[d] for p in preds])[0] for d in DIMENSIONS]
    assert sum(f1) / len(f1) >= MEASURED_GOLD_MACRO_F1 - 0.02, dict(zip(DIMENSIONS, f1))


def test_signals_then_decide_is_label_one(annotator):
    # The learned annotator reads the rules' signals and decisions: the split must not change
    # offline-v2 (its name keys the annotation caches).
    for item in MIXED:
        sig = annotator.signals(item)
        assert OfflineAnnotator.decide(sig) == annotator.label_one(item)
    sig = annotator.signals(AnnotationItem("This is a hoax lol", TOPIC))
    assert sig.debunk and sig.emotion == "happy" and not sig.zh and not sig.has_link
    assert -1.0 <= sig.valence() <= 1.0
    sig = annotator.signals(AnnotationItem("RT @x: Alabama Man Caught Having Sex With Pig http://t.co/a", TOPIC))
    assert sig.repost and sig.has_link and len(sig.words_text & sig.words_topic) >= 2
