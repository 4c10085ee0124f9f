"""Realism measures (mfray.eval.realism) on hand-worked values, real tweets and a real evaluation."""

from __future__ import annotations

import csv
import math
import random
from dataclasses import replace

import numpy as np
import pytest

from mfray.eval.realism import (
    SIMPLE_FEATURES,
    RealismInputs,
    balanced_sample,
    describes_instead_of_speaking,
    discriminator_auc,
    mask,
    mean_field_check,
    mean_field_summary,
    post_kind,
    realism_rows,
    roc_auc,
    simple_features,
)
from mfray.eval.report import write_realism, write_summary
from mfray.types import StepRecord

# ---- masking ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, masked", [
    # A link glued to the headline and Twitter's "\xa0…" display tail: one URL token, spaced.
    ("Lottery Winner Dies After Gold Plating His Testicleshttp://fb.me/2jgZzCTUj",
     "Lottery Winner Dies After Gold Plating His Testicles URL"),
    ("so this happened?http://smileshappen.org/atlanta/\xa0… via @GracieBeth0410", "so this happened? URL via @USER"),
    ("RT @cnn: Breaking http://t.co/ab12 #news", "RT @USER: Breaking URL #news"),
    # Scheme-less links: www., bare shorteners with a path, pic.twitter.com glued to a hashtag.
    ("read www.example.com/x and bit.ly/1MG4XYY", "read URL and URL"),
    ("#MissPiggypic.twitter.com/zqnFafFC", "#MissPiggy URL"),
    # Weibo repost chains: handles with Chinese characters end at the colon.
    ("转发微博//@JF自由蓝:刘翔的商业价值 //@南山上的向日葵:转发微博", "转发微博//@USER:刘翔的商业价值 //@USER:转发微博"),
    ("no link, no handle.", "no link, no handle."),
])
def test_mask_links_and_handles(text, masked):
    assert mask(text) == masked
    assert mask(masked) == masked  # idempotent: masking a masked text changes nothing


def test_simple_features_by_hand():
    # "RT @USER: WOW! URL": 18 chars, 4 words; cased letters without the placeholders R T W O W
    # (all upper) -> 1.0; one URL, starts "RT @USER", one mention, one "!", one ":".
    f = dict(zip(SIMPLE_FEATURES, simple_features(["RT @USER: WOW! URL"])[0]))
    assert f["log_chars"] == pytest.approx(math.log1p(18)) and f["log_words"] == pytest.approx(math.log1p(4))
    assert f["upper_share"] == 1.0 and f["has_url"] == 1.0 and f["starts_rt"] == 1.0
    assert f["log_mentions"] == pytest.approx(math.log1p(1)) and f["log_exclaims"] == pytest.approx(math.log1p(1))
    assert f["log_colons"] == pytest.approx(math.log1p(1)) and f["log_questions"] == 0.0
    # "Ab 12": upper 1 of 2 cased letters; digits 2 of 5 characters; all ASCII.
    g = dict(zip(SIMPLE_FEATURES, simple_features(["Ab 12"])[0]))
    assert (g["upper_share"], g["digit_share"], g["non_ascii_share"], g["has_url"]) == (0.5, 0.4, 0.0, 0.0)
    assert simple_features([]).shape == (0, len(SIMPLE_FEATURES))
    assert simple_features([""]).tolist() == [[0.0] * len(SIMPLE_FEATURES)]


# ---- AUC --------------------------------------------------------------------------------------


def test_roc_auc_by_hand():
    # Positives score 0.35 and 0.8, negatives 0.1 and 0.4. Pairs (pos, neg): 0.35>0.1 win,
    # 0.35<0.4 loss, 0.8>0.1 win, 0.8>0.4 win -> 3 of 4 = 0.75.
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # A tie counts half: pos 0.5 vs neg 0.5 -> 0.5; pos {0.5, 0.9} vs neg {0.5} -> (0.5 + 1) / 2.
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert roc_auc([0.5, 0.5, 0.9], [0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0 and roc_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_roc_auc_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 10, 200) / 10, rng.integers(0, 2, 200)  # many ties
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


# ---- the discriminator ------------------------------------------------------------------------


def test_balanced_sample_per_event():
    texts = {"b": (["r1", "r2", "r3"], ["s1", "s2", "s3", "s4", "s5"]), "a": (["x", "y"], []), "c": (["q"], ["p"])}
    out, labels, groups = balanced_sample(texts, seed=0, method="mf")
    # a has no simulated post: nothing; b: 3 real, 3 of the 5 simulated; c: 1 and 1. Sorted by event.
    assert groups == ["b"] * 6 + ["c"] * 2 and labels == [0, 0, 0, 1, 1, 1, 0, 1]
    assert out[:3] == ["r1", "r2", "r3"] and set(out[3:6]) < {"s1", "s2", "s3", "s4", "s5"} and out[6:] == ["q", "p"]
    assert balanced_sample(texts, seed=0, method="mf") == (out, labels, groups)  # seeded
    draws = {tuple(balanced_sample(texts, seed=s, method="mf")[0][3:6]) for s in range(10)}
    assert len(draws) > 1  # the seed matters


def test_discriminator_needs_two_events():
    out = discriminator_auc(["a", "b"], [0, 1], ["e1", "e1"], seed=0)
    assert math.isnan(out["auc"]) and out["events"] == 1 and out["posts_scored"] == 0
    assert "need at least 2" in out["auc_note"]


def headline_events(n_events: int = 4, per_event: int = 12) -> dict[str, tuple[list[str], list[str]]]:
    """Real-looking headline reposts vs 'simulated' narration, on distinct made-up events."""
    rng = random.Random(0)
    words = ["police", "report", "storm", "city", "video", "claims", "mayor", "school", "fire", "viral"]
    out = {}
    for e in range(n_events):
        heads = [" ".join(rng.sample(words, 5)).title() + f" http://t.co/{e}{i}" for i in range(per_event)]
        sims = [f"The user posts their response to the {rng.choice(words)} story and shares thoughts." for _ in range(per_event)]
        out[f"e{e}"] = (heads, sims)
    return out


def test_discriminator_tells_narration_from_headlines():
    out = discriminator_auc(*balanced_sample(headline_events(), seed=0, method="m"), seed=0)
    assert out["auc"] > 0.95 and (out["events"], out["folds"], out["posts_scored"]) == (4, 4, 96)
    assert discriminator_auc(*balanced_sample(headline_events(), seed=0, method="m"), seed=0) == out  # deterministic


def test_discriminator_of_identical_sides_is_exactly_chance():
    # Each event's simulated posts are its real posts: every text gets one score and sits on both
    # sides, so every (real, simulated) pair of equal texts ties and the rest cancel: AUC = 0.5.
    same = {e: (real, list(real)) for e, (real, _) in headline_events(3).items()}
    out = discriminator_auc(*balanced_sample(same, seed=0, method="m"), seed=0, folds=3)
    assert out["auc"] == pytest.approx(0.5)


# ---- describe instead of speak ----------------------------------------------------------------

DESCRIPTIVE = [
    ("The user posts their response to the news about the lottery winner.", "narrates_user"),
    ("This user's response is not provided for editing purposes.", "narrates_user"),
    ("In reply, the user would probably share the link.", "narrates_user"),
    ("This post highlights the absurdity of the story.", "narrates_post"),
    ("The tweet suggests that the winner was careless.", "narrates_post"),
    ("Your answer is below:", "labels_answer"),
    ("The answer is that nobody knows.", "labels_answer"),
    ("Post: Atlanta lottery winner dies", "labels_answer"),
    ("I'm writing to share my thoughts on this topic.", "writes_to_share"),
    ("I'm glad to inform you that I've sent an article", "writes_to_share"),
    ("Here is a post this user might write: wow", "here_is"),
    ("As an AI, I don't have opinions.", "assistant"),
    ("I'm sorry for any confusion. I'll be happy to help with that!", "assistant"),
    ("I'm not able to access your current account due to a technical issue", "assistant"),
    ("I cannot provide an opinion on this.", "assistant"),
    ("Given the mean field, users doubt it.", "prompt_words"),
    ("Summary: users are angry", "prompt_words"),
    ("A user with a high level of influence based on followers.", "narrates_user"),
    ("该用户转发了这条微博，表达了怀疑。", "zh_narrates"),
    ("这条微博表达了对刘翔的支持", "zh_narrates"),
    ("以下是评论：加油", "zh_answer"),
    ("作为一个人工智能，我无法评论。", "zh_assistant"),
    ("根据平均场，用户大多怀疑", "zh_prompt_words"),
]
SPEAKING = [
    "Atlanta Lottery Winner Dies After Gold Plating His Testicles http://fb.me/2jgZzCTUj",
    "It's his money.", "That's cray", "@iamscassidy so this happened?", "RT @cnn: Police confirm two dead",
    "This is a hoax, stop sharing it", "I think the user agreement changed again lol", "poor amanda knox...",
    "This person is my hero", "What's the answer? Nobody knows", "Posted a new photo", "New blog post: my summary of E3",
    "是料准了刘翔铁定没有名次还是4S现在便宜的相当于白送了？转转就转转", "转发微博", "骗人的吧？", "这是真的假的，刘翔还是要支持的！",
]


@pytest.mark.parametrize("text, rule", DESCRIPTIVE)
def test_descriptive_posts_are_flagged(text, rule):
    assert describes_instead_of_speaking(text) == rule


@pytest.mark.parametrize("text", SPEAKING)
def test_posts_that_speak_are_not_flagged(text):
    assert describes_instead_of_speaking(text) is None


def test_descriptive_check_false_positive_rate_on_real_tweets(data_dir):
    from mfray.data import load_events

    events, _ = load_events(sorted((data_dir / "twitter_rumdect").glob("E1*.json"))[:40])
    texts = [p.text for e in events for p in e.responses]
    flagged = [t for t in texts if describes_instead_of_speaking(t)]
    rate = len(flagged) / len(texts)
    print(f"descriptive check on {len(texts)} real tweets of {len(events)} events: {len(flagged)} flagged ({rate:.3%})")
    # Measured when written: 0 of 48,569 tweets of these files (33 events); 12 of all 371,001
    # tweets of twitter_rumdect (0.003%: "Post: ..." headlines, "The answer is ...", "Summary: ...").
    assert len(texts) >= 30 and rate < 0.005, flagged[:10]


def test_post_kind():
    assert post_kind("anything", failed=True) == "failed"
    assert post_kind(None, failed=False) == "empty" and post_kind(" \n", failed=False) == "empty"
    assert post_kind("The user posts a reply", failed=False) == "descriptive"
    assert post_kind("。。。。。", failed=False) == "post"  # a real Weibo post can be only punctuation


# ---- mean fields ------------------------------------------------------------------------------


def test_mean_field_check_aspects_and_meta():
    good = "Most users oppose the claim; anger and doubt dominate, and people repost more than they comment."
    assert mean_field_check(good) == {"stance": True, "emotion": True, "behaviour": True, "aspects": True, "meta": None}
    zh = "大多数用户反对这一说法，情绪以愤怒和怀疑为主，更多人选择转发。"
    assert mean_field_check(zh)["aspects"] and mean_field_check(zh)["meta"] is None
    partial = mean_field_check("Users are mostly supportive.")
    assert (partial["stance"], partial["emotion"], partial["behaviour"], partial["aspects"]) == (True, False, False, False)
    assert mean_field_check("This summary captures the key points of the debate.")["meta"] == "phrase: This summary"
    assert mean_field_check("Overall, the user seems happy")["meta"] == "phrase: the user"
    # 6 words copied from the English template ("1. Stance: are users mostly supportive"): the
    # first copied run in the text is named.
    assert mean_field_check("1. Stance: are users mostly supportive or opposed? Mostly opposed.")["meta"] == \
        "template run: 1 stance are users mostly supportive"
    # 10 characters copied from the Chinese template ("用户主要是支持还是反对").
    assert mean_field_check("立场分布：用户主要是支持还是反对？反对。")["meta"].startswith("template run: ")
    # A line of a timeline worked-example summary (another event's), copied, is a template run too.
    copied = "Stance: most users repeat the claim; a few question it. Emotions: scared."
    assert mean_field_check(copied)["meta"] == "template run: stance most users repeat the claim"
    # Five template words in a row are not a copy.
    assert mean_field_check("Stance: users mostly supportive, some opposed.")["meta"] is None


def test_mean_field_summary_by_hand():
    texts = ["Most users oppose it, angry, and repost.", "Users support it.", "This summary captures the key points."]
    # stance: texts 1, 2 -> 2/3; emotion: text 1 -> 1/3; behaviour: text 1 -> 1/3; all three: 1/3;
    # meta: text 3 -> 1/3.
    out = mean_field_summary(texts)
    assert out["mean_fields"] == 3 and out["mf_stance_share"] == pytest.approx(2 / 3)
    assert out["mf_aspects_share"] == pytest.approx(1 / 3) and out["mf_meta_share"] == pytest.approx(1 / 3)
    assert out["mf_meta_example"] == "phrase: This summary"
    empty = mean_field_summary([])
    assert empty["mean_fields"] == 0 and math.isnan(empty["mf_meta_share"]) and empty["mf_meta_example"] == ""


# ---- per-method rows and the report -----------------------------------------------------------


def records(event: str, method: str, seed: int, sims: list[str | None], failed=(), inserted=(), mean_field="") -> list[StepRecord]:
    return [StepRecord(event_id=event, method=method, seed=seed, language="en", topic="t", step=j, agent_index=j,
                       real_text=f"Real headline {event} number {j} http://t.co/{j}", simulated_text=text,
                       mean_field=mean_field, signal=None, state_text="", failed=j in failed, intervention=j in inserted)
            for j, text in enumerate(sims)]


def test_realism_rows_by_hand_and_order_free():
    narr = "The user posts their response to the story."
    files = [
        # mf, e1: 6 agents: 0 failed, 1 empty, 2 inserted (not simulated), 3 descriptive, 4 and 5 posts.
        records("e1", "mf", 0, [None, "", "OFFICIAL", narr, "wow", "crazy story"], failed={0}, inserted={2},
                mean_field="Users oppose it, angry, mostly repost."),
        # mf, e2: 4 posts, one of them descriptive.
        records("e2", "mf", 0, ["so sad", narr, "no way", "lol"], mean_field="This summary captures the key points."),
        # state, e1 only: 3 posts.
        records("e1", "state", 0, ["a", "b", "c"]),
    ]
    inputs = RealismInputs()
    for f in files:
        inputs.add(f)
    rows = {r["method"]: r for r in realism_rows(inputs, seed=0)}
    mf = rows["mf"]
    # mf simulated = 5 (e1 without the inserted agent) + 4 = 9; failed 1, empty 1, descriptive 2.
    assert (mf["simulated"], mf["failed"], mf["empty"], mf["descriptive"]) == (9, 1, 1, 2)
    assert mf["empty_failed_share"] == pytest.approx(2 / 9) and mf["descriptive_share"] == pytest.approx(2 / 9)
    assert mf["not_a_post_share"] == pytest.approx(4 / 9)
    # Discriminator: e1 has 6 real and 3 scoreable simulated (3, 4, 5) -> 3 + 3; e2 4 + 4; 2 events.
    assert (mf["events"], mf["folds"], mf["posts_scored"]) == (2, 2, 14) and 0 <= mf["auc"] <= 1
    # Two distinct mean fields: one covers all three aspects, the other is meta.
    assert mf["mean_fields"] == 2 and mf["mf_aspects_share"] == 0.5 and mf["mf_meta_share"] == 0.5
    # One text per run: e1's 6 steps give 5 updates, e2's 4 give 3, every one unchanged.
    assert (mf["mf_updates"], mf["mf_unchanged_share"]) == (8, 1.0)
    state = rows["state"]
    assert state["mf_updates"] == 0 and math.isnan(state["mf_unchanged_share"])
    assert math.isnan(state["auc"]) and "1 event(s)" in state["auc_note"] and state["mean_fields"] == 0
    # The order in which trajectories arrive changes nothing (the Ray driver reads them in its order).
    backwards = RealismInputs()
    for f in reversed(files):
        backwards.add(list(reversed(f)))
    assert str(realism_rows(backwards, seed=0)) == str(list(rows.values()))


def test_unchanged_mean_field_updates_by_hand():
    # Run 1, steps 0..4 (two agents each), mean fields A A B B A: updates A->A, A->B, B->B, B->A
    # -> 2 of 4 unchanged. Run 2 (another seed), steps 0..2, C then empty then C: the empty step
    # is no mean field, so one update C->C, unchanged. Together 3 of 5; the order of the records
    # within a run and of the runs does not matter.
    def run(seed: int, fields: list[str]) -> list[StepRecord]:
        return [replace(r, step=step, agent_index=2 * step + r.agent_index) for step, text in enumerate(fields)
                for r in records("e1", "mf", seed, ["a post", "another"], mean_field=text)]

    first, second = run(0, ["A", "A", "B", "B", "A"]), run(1, ["C", "", "C"])
    inputs, backwards = RealismInputs(), RealismInputs()
    inputs.add(first)
    inputs.add(second)
    backwards.add(list(reversed(second)))
    backwards.add(list(reversed(first)))
    assert inputs.mf_updates == backwards.mf_updates == {"mf": [3, 5]}
    assert realism_rows(inputs)[0]["mf_unchanged_share"] == pytest.approx(3 / 5)


def test_realism_report_files_and_kl_columns(tmp_path):
    inputs = RealismInputs()
    inputs.add(records("e1", "mf", 0, ["wow", "The user posts a reply", None], failed={2}, mean_field="Users support it."))
    realism = realism_rows(inputs)
    md = write_realism(realism, tmp_path)
    # 3 simulated: 1 failed, 1 descriptive -> 33.3% each, not a post 66.7%; one event -> AUC "-".
    assert "| mf | - | 0 | 1 | 0 | 3 | 33.3% | 33.3% | 66.7% |" in md and "mf: AUC not computed" in md
    # One mean field over steps 0..2: two updates, both returned it unchanged.
    assert "| mf | 1 | 100.0% | 0.0% | 0.0% | 0.0% | 0.0% | - | 2 | 100.0% |" in md
    with (tmp_path / "realism.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert table[0]["method"] == "mf" and float(table[0]["descriptive_share"]) == pytest.approx(1 / 3)
    # The KL table of summary.md carries AUC and descriptive share after the failure rate.
    from mfray.eval.labels import DIMENSIONS

    rows = [{"event_id": "e1", "method": "mf", "seed": 0, "dimension": d, "simulated": 3, "failed": 1, "failure_rate": 1 / 3,
             **{m: 0.1 for m in ("kl", "wasserstein", "dtw", "macro_f1", "micro_f1")}, "nll_token": 1.0, "nll_action": 2.0,
             "nll_actions": 3, "nll_unscored": 0}
            for d in DIMENSIONS]
    write_summary(rows, tmp_path, max_failure_rate=0.5, realism=realism)
    kl = (tmp_path / "kl.md").read_text(encoding="utf-8")
    assert "| mean | vs_state | failure rate | realism AUC | descriptive |" in kl
    assert next(ln for ln in kl.splitlines() if ln.startswith("| mf ")).endswith("| 33.3% | - | 33.3% |")
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert kl in summary and md in summary
    assert "realism_auc,descriptive_share" in (tmp_path / "kl.csv").read_text().splitlines()[0]
    assert "realism" not in (tmp_path / "wasserstein.md").read_text()
    # Realism off: no columns, and a stale realism.md/.csv is removed.
    write_summary(rows, tmp_path, max_failure_rate=0.5)
    assert not (tmp_path / "realism.md").exists() and not (tmp_path / "realism.csv").exists()
    assert "realism AUC" not in (tmp_path / "kl.md").read_text()
