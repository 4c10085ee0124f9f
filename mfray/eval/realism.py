"""Realism of simulated posts: can a classifier tell them from real ones, do they speak or
describe, and do mean fields summarise or copy their instructions.

Three measures per method, over the evaluated agents (`mfray.eval.evaluate.evaluated`) of the
complete trajectories both evaluation paths read (`mfray.eval.inputs.evaluable_runs`):

- discriminator AUC (`discriminator_auc`): a logistic regression over character n-grams and a few
  surface features, fitted on some events and scored on the others (folds grouped by event), with
  URLs and @handles masked on both sides (`mask`). 0.5: the posts cannot be told apart; 1.0: they
  always can.
- "not a post" shares (`post_kind`, `describes_instead_of_speaking`): simulated posts that are
  failed, empty, or narrate ("The user posts their response to...") instead of being a post.
- mean-field checks (`mean_field_check`): distinct mean-field texts that cover stance, emotion and
  behaviour, and those that copy instructions or meta-text.

Pure: no Ray, no model; scikit-learn for the discriminator. Seeded and order-independent, so the
single-process and Ray paths (which both call `realism_rows`) give identical numbers.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from mfray.types import StepRecord

# ---- masking ----------------------------------------------------------------------------------
# Links as Twitter and Weibo show them (scheme or www., pic.twitter.com, bare shortener domains
# with a path), with Twitter's "\xa0…" display tail; then @handles (Weibo's "//@name:" included).
URL_RE = re.compile(
    r"(?:(?:https?://|www\.)\S+|pic\.twitter\.com/\S+|\b[\w-]+\.(?:com|net|org|ly|me|it|co|us|gl|st|ws|im|es|be|ms|cn)/\S*)"
    r"(?:\xa0…)?", re.IGNORECASE)
MENTION_RE = re.compile(r"@[\w\-]+")
URL_TOKEN, MENTION_TOKEN = "URL", "@USER"


def mask(text: str) -> str:
    """`text` with every link replaced by "URL" and every @handle by "@USER", spaces squeezed.

    No simulator can know a real short link or which handle a real user tags, so both sides are
    masked the same way before any feature is read. Idempotent. Example:
    "so this happened?http://t.co/x1\xa0… via @Gracie_B" -> "so this happened? URL via @USER"."""
    text = URL_RE.sub(f" {URL_TOKEN} ", text)
    text = MENTION_RE.sub(MENTION_TOKEN, text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# ---- surface features -------------------------------------------------------------------------
SIMPLE_FEATURES = ("log_chars", "log_words", "upper_share", "has_url", "starts_rt", "log_mentions", "log_hashtags",
                   "log_exclaims", "log_questions", "log_periods", "log_commas", "log_colons", "log_quotes",
                   "digit_share", "non_ascii_share", "log_newlines")


def simple_features(texts: Iterable[str]) -> np.ndarray:
    """(n_texts, len(SIMPLE_FEATURES)) float array of surface features of already masked texts:
    log1p of length in characters and words, share of upper-case among cased letters (the
    placeholders removed first), has a URL, starts with "RT @USER", log1p counts of mentions,
    hashtags, "!", "?", ".", ",", ":", quote marks and newlines, and the shares of digits and of
    non-ASCII characters among all characters (0 for an empty text)."""
    rows = []
    for text in texts:
        bare = text.replace(URL_TOKEN, "").replace(MENTION_TOKEN, "")
        cased = [c for c in bare if c.isalpha() and c.lower() != c.upper()]
        n = max(len(text), 1)
        rows.append([
            math.log1p(len(text)), math.log1p(len(text.split())),
            sum(c.isupper() for c in cased) / len(cased) if cased else 0.0,
            float(URL_TOKEN in text), float(text.startswith("RT " + MENTION_TOKEN)),
            math.log1p(text.count(MENTION_TOKEN)), math.log1p(len(re.findall(r"#\w", text))),
            *(math.log1p(sum(text.count(c) for c in chars)) for chars in ("!！", "?？", ".。", ",，", ":：", "\"“”'")),
            sum(c.isdigit() for c in text) / n, sum(ord(c) > 127 for c in text) / n, math.log1p(text.count("\n")),
        ])
    return np.asarray(rows, dtype=float).reshape(-1, len(SIMPLE_FEATURES))


# ---- the discriminator ------------------------------------------------------------------------
def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of `scores` for `labels` (1 positive, 0 negative): the
    probability that a random positive scores above a random negative, ties counting half
    (Mann-Whitney U / (n_pos * n_neg), with average ranks). NaN without both classes."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # ties get the average rank
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def make_discriminator(seed: int):
    """An unfitted scikit-learn pipeline over masked texts: TF-IDF of character n-grams (char_wb,
    2..5, sublinear tf) joined with the standardised `simple_features`, into an L2 logistic
    regression (C=1, lbfgs). `predict_proba[:, 1]` is the probability of "simulated"."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    features = FeatureUnion([
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, lowercase=False)),
        ("simple", make_pipeline(FunctionTransformer(simple_features), StandardScaler())),
    ])
    return make_pipeline(features, LogisticRegression(C=1.0, max_iter=2000, random_state=seed))


def balanced_sample(texts: dict[str, tuple[list[str], list[str]]], seed: int, method: str
                    ) -> tuple[list[str], list[int], list[str]]:
    """(texts, labels, groups) for the discriminator: per event (the key of `texts`, mapping to
    (real, simulated) texts), the larger side is sampled down without replacement to the size
    of the smaller with a generator seeded by (seed, crc32(method), crc32(event)); an event with
    an empty side gives nothing. Labels: 0 real, 1 simulated; groups: the event ids. Each event
    thus carries equal classes, so no fold can learn an event's class prior."""
    out_texts, labels, groups = [], [], []
    for event in sorted(texts):
        real, sim = texts[event]
        k = min(len(real), len(sim))
        rng = np.random.default_rng([seed, zlib.crc32(method.encode()), zlib.crc32(event.encode())])
        for label, side in ((0, real), (1, sim)):
            keep = sorted(rng.choice(len(side), size=k, replace=False)) if len(side) > k else range(k)
            out_texts += [side[i] for i in keep]
            labels += [label] * k
            groups += [event] * k
    return out_texts, labels, groups


def discriminator_auc(texts: list[str], labels: list[int], groups: list[str], seed: int, folds: int = 5) -> dict:
    """Out-of-fold discriminator AUC over masked `texts` (labels 1 simulated, 0 real), folds
    grouped by event (`groups`): GroupKFold with min(folds, events) splits, so every event is
    scored by a model fitted on other events only; the AUC pools all out-of-fold probabilities.

    Returns {"auc", "posts_scored", "events", "folds", "auc_note"}; the AUC is NaN with the reason
    in auc_note when fewer than 2 events have posts on both sides (a grouped fold needs an event
    to fit on and another to score)."""
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    events = sorted(set(groups))
    out = {"auc": float("nan"), "posts_scored": 0, "events": len(events), "folds": 0, "auc_note": ""}
    if len(events) < 2:
        out["auc_note"] = (f"{len(events)} event(s) with both real and simulated posts: folds grouped by event "
                           "need at least 2 (fit on some events, score others)")
        return out
    masked = [mask(t) for t in texts]
    y = np.asarray(labels, dtype=int)
    scores = np.full(len(masked), np.nan)
    splits = min(folds, len(events))
    # One BLAS thread: the problem is small, threads only contend on a shared machine (10x slower
    # measured on 2 busy cores), and a single thread gives the same bits on every run.
    with threadpool_limits(limits=1):
        for train, test in GroupKFold(n_splits=splits).split(masked, y, groups):
            model = make_discriminator(seed).fit([masked[i] for i in train], y[train])
            scores[test] = model.predict_proba([masked[i] for i in test])[:, 1]
    out.update(auc=roc_auc(scores, y), posts_scored=len(masked), folds=splits)
    return out


# ---- describe instead of speak ----------------------------------------------------------------
_I = re.IGNORECASE
# (rule name, pattern). Kept small and documented in `describes_instead_of_speaking`.
DESCRIPTIVE_RULES: tuple[tuple[str, re.Pattern], ...] = (
    ("narrates_user", re.compile(
        r"^\W*(?:the|this|that|a|an|our) (?:user|users|author|poster|commenter|agent)\b|"
        r"\bthe user(?:'s)? (?:posts?|posted|writes|wrote|responds|responded|replies|replied|shares|shared|"
        r"comments|commented|reposts|reposted|would|might|is (?:likely|expressing|sharing|posting))\b", _I)),
    ("narrates_post", re.compile(
        r"^\W*(?:this|the|that) (?:post|tweet|comment|response|message|reply|text|repost)\b.{0,40}?\b(?:describes|"
        r"discusses|highlights|suggests|expresses|conveys|reflects|indicates|mentions|refers|is about|appears to|"
        r"seems to|aims to|is a (?:response|reply|comment|post))\b", _I)),
    ("labels_answer", re.compile(
        r"\b(?:the|my|your) (?:answer|response|output) (?:is|would be)\b|"
        r"^\W*(?:answer|response|output|reply|post|tweet|comment|repost)\s*[:：]", _I)),
    ("writes_to_share", re.compile(
        r"\bI(?:'m| am) (?:writing|here) to\b|\bI(?:'d| would) like to (?:share|express)\b|"
        r"\bI(?:'m| am) (?:glad|happy|pleased) to (?:inform|share)\b", _I)),
    ("here_is", re.compile(
        r"^\W*here(?:'s| is| are)\b.{0,30}?\b(?:post|tweet|comment|response|reply|repost|message|example|answer)s?\b", _I)),
    ("assistant", re.compile(
        r"\bas an? (?:ai|a\.i\.|artificial intelligence|language model|assistant)\b|\blanguage model\b|"
        r"\b(?:happy|glad) to help\b|\bsorry for (?:any|the) confusion\b|\bI hope this helps\b|"
        r"\bI(?:'m| am)? (?:can(?:no|')t|unable to|not able to) (?:access|provide|assist|browse|generate)\b", _I)),
    ("prompt_words", re.compile(
        r"\bmean[- ]?field\b|\bdiscussion topic\b|\bpopulation attitude\b|\buser profile\b|\bthis user's\b|"
        r"\b(?:recent|popular) comments\s*:|\blevel of influence\b|\bnumber of friends\b|"
        r"\bin terms of interactions\b|\ba repost or a comment\b|"
        r"\bin summary\b|\bto summari[sz]e\b|\bsummary\s*[:：]", _I)),
    ("zh_narrates", re.compile(
        r"(?:该|这位|这名|此)用户|^(?:这条|该|此)(?:微博|帖子|评论|推文|内容|回复)(?:表达|描述|讲述|反映|显示|是关于|主要|体现)")),
    ("zh_answer", re.compile(r"答案是|以下是|下面是|^\W*(?:回答|答案|回复|输出)\s*[:：]")),
    ("zh_assistant", re.compile(r"作为(?:一个|一名)?(?:人工智能|AI|语言模型|助手)|语言模型", _I)),
    ("zh_prompt_words", re.compile(r"平均场|讨论话题|用户画像|群体态度|总结[:：]|总结如下")),
)


def describes_instead_of_speaking(text: str) -> str | None:
    """The name of the first rule by which `text` describes or frames a post instead of being one
    (None when it reads as a post). Rules (case-insensitive regexes, see DESCRIPTIVE_RULES):

    - narrates_user: third-person narration of the user ("The user posts their response to...",
      "This user's response...", "the user would ...").
    - narrates_post: "This/The post/tweet/comment ... describes/highlights/suggests/is about ...".
    - labels_answer: "The/My/Your answer/response/output is", or a leading "Answer:", "Post:",
      "Tweet:", "Comment:", "Response:" label.
    - writes_to_share: "I'm writing to ...", "I'm here to ...", "I'd like to share/express",
      "I'm glad to inform".
    - here_is: "Here is/Here's a post/tweet/response/example...".
    - assistant: "As an AI", "language model", "happy to help", "sorry for any confusion",
      "I hope this helps", "I can't / I'm unable to / I'm not able to access/provide/assist...".
    - prompt_words: the policy prompt's own words: "mean field", "discussion topic", "population
      attitude", "user profile", "this user's", "recent/popular comments:", the profile phrases
      ("level of influence", "number of friends", "in terms of interactions"), "a repost or a
      comment", and summary talk ("in summary", "to summarise",
      "summary:").
    - zh_narrates / zh_answer / zh_assistant / zh_prompt_words: the same in Chinese ("该用户",
      "这条微博表达", "答案是", "以下是", "作为人工智能", "平均场", "讨论话题", "用户画像", "总结：").

    Real posts are rarely flagged: tests/unit/test_realism.py measures the rate on real tweets."""
    for name, pattern in DESCRIPTIVE_RULES:
        if pattern.search(text):
            return name
    return None


POST_KINDS = ("failed", "empty", "descriptive", "post")


def post_kind(text: str | None, failed: bool) -> str:
    """"failed" (the generation failed after its retries), "empty" (no text or only
    whitespace), "descriptive" (`describes_instead_of_speaking`) or "post"."""
    if failed:
        return "failed"
    if text is None or not text.strip():
        return "empty"
    return "descriptive" if describes_instead_of_speaking(text) else "post"


# ---- mean-field checks ------------------------------------------------------------------------
# An aspect is mentioned when any of its words occurs (English case-insensitive, word starts;
# Chinese as substrings).
ASPECT_WORDS = {
    "stance": (r"stance|support|oppos|against|in favou?r|agree|disagree|approv|disapprov|endorse|reject",
               "立场|支持|反对|赞同|赞成|认同|不认同|拥护|抵制"),
    "emotion": ((r"emotion|feel|sentiment|anger|angry|outrage|excite|doubt|anxi|fear|worr|sad|happ|joy|frustrat|"
                 r"surpris|disgust|positive|negative|neutral|mood|tone"),
                "情绪|情感|愤怒|生气|兴奋|怀疑|焦虑|担忧|担心|恐惧|悲伤|难过|高兴|开心|惊讶|不满|正面|负面|中性|心情"),
    "behaviour": (r"behaviou?r|repost|retweet|share|sharing|comment|forward|spread|reply|replie",
                  "行为|转发|评论|分享|点赞|回复|传播"),
}
_ASPECTS = {name: (re.compile(rf"\b(?:{en})", _I), re.compile(zh)) for name, (en, zh) in ASPECT_WORDS.items()}
META_RULES = re.compile(
    r"\b(?:this|the above|the following|my) summary\b|\bcaptures? the key points\b|\bkey points\b|\bthe user\b(?!s)|"
    r"\bhere(?:'s| is) (?:a|the|my) summary\b|\bin about 200 words\b|\bsix aspects\b|\border of importance\b|"
    r"\bas an? (?:ai|language model|assistant)\b|\bmean[- ]?field\b|\bsummari[sz]e the\b|\bI (?:will|'ll) summari[sz]e\b|"
    r"该总结|这个总结|以上总结|总结如下|以下是|该用户|平均场|作为(?:一个)?(?:人工智能|语言模型)", _I)
COPY_RUN = {"latin": 6, "cjk": 10}  # template words (latin) or characters (Chinese) in a copied run
_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _runs(tokens: list[str]) -> list[tuple[str, ...]]:
    """The runs of `tokens` that count as copying, in text order: COPY_RUN["latin"] tokens with at
    least one latin word, and COPY_RUN["cjk"] tokens that are all Chinese characters."""
    out = []
    for i in range(len(tokens)):
        latin = tuple(tokens[i:i + COPY_RUN["latin"]])
        if len(latin) == COPY_RUN["latin"] and any(t.isascii() for t in latin):
            out.append(latin)
        cjk = tuple(tokens[i:i + COPY_RUN["cjk"]])
        if len(cjk) == COPY_RUN["cjk"] and not any(t.isascii() for t in cjk):
            out.append(cjk)
    return out


@lru_cache(maxsize=1)
def template_runs() -> frozenset[tuple[str, ...]]:
    """Every run (`_runs`) of what the mean-field prompts give the model to copy: the static text
    of mfray/prompts/templates/*/mean_field*.jinja (each text segment between Jinja tags on its
    own: a run never spans a variable) and each line of the timeline style's worked-example
    summaries (a summary of another event, copied, says nothing about this one)."""
    from mfray.prompts.render import LANGUAGES, TEMPLATE_DIR, timeline_examples

    runs: set[tuple[str, ...]] = set()
    for path in sorted(TEMPLATE_DIR.glob("*/mean_field*.jinja")):
        for segment in re.split(r"\{\{.*?\}\}|\{%.*?%\}", path.read_text(encoding="utf-8"), flags=re.DOTALL):
            runs.update(_runs(_tokens(segment)))
    for language in LANGUAGES:
        for example in timeline_examples(language)["worked"]:
            for line in example["summary"]:
                runs.update(_runs(_tokens(line)))
    return frozenset(runs)


def mean_field_check(text: str) -> dict:
    """One mean-field text's checks: {"stance", "emotion", "behaviour"} (bool: the aspect's words
    of ASPECT_WORDS occur, English or Chinese), "aspects" (all three do), and "meta": the reason
    it copies instructions or meta-text, or None. Meta is either a META_RULES phrase ("This
    summary", "captures the key points", "the user", "in about 200 words", "mean field", "以下是",
    "总结如下"...) or a run of 6 words (10 Chinese characters) copied from a mean-field template
    or from a worked-example summary of the timeline style ("template run: ...")."""
    out = {name: bool(en.search(text) or zh.search(text)) for name, (en, zh) in _ASPECTS.items()}
    out["aspects"] = all(out[name] for name in ASPECT_WORDS)
    hit = META_RULES.search(text)
    copied = next((run for run in _runs(_tokens(text)) if run in template_runs()), None)
    out["meta"] = f"phrase: {hit.group(0)}" if hit else f"template run: {' '.join(copied)}" if copied else None
    return out


# ---- per-method rows --------------------------------------------------------------------------
@dataclass
class RealismInputs:
    """What realism reads from trajectories, gathered file by file (`add`), kept small: the
    texts of each evaluated agent, never the prompts.

    real[method][event][agent_index] = real text (one per agent however many seeds);
    sim[method][event] = [(seed, agent_index, simulated text or None, failed)] of non-inserted
    agents; mean_fields[method] = distinct non-empty mean-field texts; mf_updates[method] =
    [updates that left the text unchanged, updates] between consecutive evaluated steps of a run."""

    real: dict[str, dict[str, dict[int, str]]] = field(default_factory=dict)
    sim: dict[str, dict[str, list[tuple[int, int, str | None, bool]]]] = field(default_factory=dict)
    mean_fields: dict[str, set[str]] = field(default_factory=dict)
    mf_updates: dict[str, list[int]] = field(default_factory=dict)

    def add(self, records: Iterable[StepRecord]) -> None:
        """Add the evaluated `records` of one trajectory (`mfray.eval.evaluate.evaluated`)."""
        by_step: dict[int, str] = {}  # a step's agents all read the same mean field
        for r in records:
            self.real.setdefault(r.method, {}).setdefault(r.event_id, {})[r.agent_index] = r.real_text
            if not r.intervention:  # an inserted post is no simulation
                self.sim.setdefault(r.method, {}).setdefault(r.event_id, []).append(
                    (r.seed, r.agent_index, r.simulated_text, bool(r.failed)))
            if isinstance(r.mean_field, str) and r.mean_field.strip():
                self.mean_fields.setdefault(r.method, set()).add(r.mean_field)
                by_step[r.step] = r.mean_field
        texts = [by_step[step] for step in sorted(by_step)]
        if len(texts) > 1:
            # Why count: a mean-field model that returns its input verbatim turns `mf` into a
            # fixed prompt, and the distinct-text shares above cannot show that.
            counts = self.mf_updates.setdefault(records[0].method, [0, 0])
            counts[0] += sum(a == b for a, b in zip(texts, texts[1:]))
            counts[1] += len(texts) - 1


def realism_rows(inputs: RealismInputs, seed: int = 0, folds: int = 5) -> list[dict]:
    """One row per method (sorted): the discriminator (`balanced_sample` of the real texts vs the
    method's non-empty, non-failed, non-inserted simulated texts, then `discriminator_auc`), the
    `post_kind` counts and shares over its simulated agents, and, for a method with mean fields,
    the shares of distinct mean-field texts passing `mean_field_check` (NaN otherwise).

    Columns: method, auc, auc_note, posts_scored, events, folds, simulated, failed, empty,
    descriptive, empty_failed_share, descriptive_share, not_a_post_share, mean_fields,
    mf_stance_share, mf_emotion_share, mf_behaviour_share, mf_aspects_share, mf_meta_share,
    mf_meta_example, mf_updates, mf_unchanged_share (of the mean-field updates between consecutive
    evaluated steps, the share that returned the previous text verbatim). Independent of the
    order in which trajectories were added."""
    rows = []
    for method in sorted(set(inputs.real) | set(inputs.sim)):
        texts, kinds = {}, dict.fromkeys(POST_KINDS, 0)
        for event, agents in sorted(inputs.sim.get(method, {}).items()):
            sim = []
            for _, _, text, failed in sorted(agents, key=lambda a: (a[0], a[1])):
                kind = post_kind(text, failed)
                kinds[kind] += 1
                if kind in ("descriptive", "post"):
                    sim.append(text)
            real = [t for _, t in sorted(inputs.real[method][event].items()) if t and t.strip()]
            texts[event] = (real, sim)
        disc = discriminator_auc(*balanced_sample(texts, seed, method), seed=seed, folds=folds)
        simulated = sum(kinds.values())
        row = {"method": method, **disc, "simulated": simulated, "failed": kinds["failed"], "empty": kinds["empty"],
               "descriptive": kinds["descriptive"],
               "empty_failed_share": _ratio(kinds["failed"] + kinds["empty"], simulated),
               "descriptive_share": _ratio(kinds["descriptive"], simulated),
               "not_a_post_share": _ratio(simulated - kinds["post"], simulated)}
        row.update(mean_field_summary(sorted(inputs.mean_fields.get(method, ()))))
        unchanged, updates = inputs.mf_updates.get(method, (0, 0))
        row.update(mf_updates=updates, mf_unchanged_share=_ratio(unchanged, updates))
        rows.append(row)
    return rows


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def mean_field_summary(texts: Sequence[str]) -> dict:
    """Over distinct mean-field `texts`: how many, the share mentioning each aspect, all three
    ("mf_aspects_share"), the share flagged as meta ("mf_meta_share") and one flagged text's
    reason ("mf_meta_example"); shares NaN without texts."""
    checks = [mean_field_check(t) for t in texts]

    def share(key: str) -> float:
        return _ratio(sum(bool(c[key]) for c in checks), len(checks))

    example = next((c["meta"] for c in checks if c["meta"]), "")
    return {"mean_fields": len(checks), "mf_stance_share": share("stance"), "mf_emotion_share": share("emotion"),
            "mf_behaviour_share": share("behaviour"), "mf_aspects_share": share("aspects"),
            "mf_meta_share": share("meta"), "mf_meta_example": example}
