"""The one place policy and mean-field generations are read back into actions and summaries,
per prompt style (mfray.prompts.render). A generation that yields nothing here is a failed
generation: the rollout retries it and then counts it as a failure (never replaced).

- both: a trailing U+FFFD (a character the token limit cut in two) is dropped.
- "chat": the text as the backend returned it (think block stripped, first line kept when
  asked: mfray.llm.base.postprocess), trimmed.
- "timeline" policy: the model continues an open "@user:" line, so the post is that line. If the
  model first ended the line and wrote the next timeline line, that line's own speaker label
  ("@user:", "@user (...):", "@用户：") is dropped: it is the template's, not the user's. A line
  of the template itself (a new "Story:" header, a context label) is no post, nor is a line that
  opens with a mean-field aspect label ("Stance: ...", "立场：..."), the mean field's format leaking.
- "timeline" mean field: the prompt ends with the first aspect's label, so the summary is that
  label plus the continuation, kept while each non-blank line is "<aspect>: <text>" for an
  aspect of MEAN_FIELD_ASPECTS (any case) not seen before; an aspect with no text is left out;
  the first other line (the model starting a new story or post, or repeating an aspect) ends it.
"""

from __future__ import annotations

import re

# The aspect labels of the timeline mean field, in the order of SPEC section 2 and of
# templates/<language>/mean_field_timeline.jinja (which ends with the first one).
MEAN_FIELD_ASPECTS = {
    "en": ("Stance", "Opinions", "Emotions", "Behaviour", "Belief", "Intent"),
    "zh": ("立场", "观点", "情绪", "行为", "真实性", "意图"),
}
_COLON = {"en": ": ", "zh": "："}
_SPEAKER = re.compile(r"^@(?:user|用户)\s*(?:[(（][^)）]*[)）])?\s*[:：]\s*")
# Lines of the timeline templates themselves (a story header, the context labels): never a post.
_TEMPLATE_LINE = re.compile(
    r"^(?:Story|Latest news|How users (?:have )?reacted[^:]*|Attitudes so far|Attitude of the next post|Next post by)\s*:|"
    r"^Posts on Twitter\b|^(?:话题|最新消息|目前用户的反应|之前用户的反应|用户的反应|群体态度分布|下一条的态度|下一条的作者)\s*[:：]|"
    r"^微博上的帖子", re.I)
_ASPECT_LINE = re.compile(r"^([^:：]{1,20})\s*[:：]\s*(.*)$")
# A line opening with a mean-field aspect label ("Stance: ...", "立场：...") is the mean field's
# format leaking into a post (the policy prompt shows the mean field): no post either.
_ASPECT_LABEL = re.compile(
    "^(?:" + "|".join(a for labels in MEAN_FIELD_ASPECTS.values() for a in labels) + r")\s*[:：]", re.I)


def post_text(style: str, text: str) -> str:
    """The post a policy generation stands for ("" when there is none)."""
    text = text.rstrip().rstrip("\ufffd")  # a character cut in two at the token limit decodes to U+FFFD
    if style != "timeline":
        return text.strip()
    for line in text.splitlines():
        line = _SPEAKER.sub("", line.strip(), count=1).strip()
        if line and not _TEMPLATE_LINE.match(line) and not _ASPECT_LABEL.match(line):
            return line
    return ""


_TOKEN = re.compile(r"[\u3400-\u9fff]|[^\W_]+")  # a CJK character or a run of letters/digits


def echoes_profile(text: str, state: str, n: int = 6) -> bool:
    """Whether a post repeats `n` consecutive tokens (words; single characters in Chinese) of the
    agent's own profile text: the model wrote out the profile it was shown ("Next post by: ...")
    instead of a post, which no real user does. The rollout treats such a generation as no post
    (retried, then a failure)."""
    def runs(words: list[str]) -> set[tuple[str, ...]]:
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    return bool(state) and bool(runs(_TOKEN.findall(text.casefold())) & runs(_TOKEN.findall(state.casefold())))


def mean_field_text(style: str, language: str, text: str, truncated: bool = False) -> str:
    """The mean field a mean-field generation stands for ("" when there is none). `truncated`:
    the generation stopped at its token limit, so its last line may be cut mid-way; in the
    timeline style that line is dropped when other aspect lines remain."""
    if style != "timeline":
        return text.strip()
    if truncated and "\n" in text.strip():
        text = text.strip().rsplit("\n", 1)[0]
    aspects = {a.casefold(): a for a in MEAN_FIELD_ASPECTS[language]}
    first = MEAN_FIELD_ASPECTS[language][0]
    text = text.strip()
    opened = _ASPECT_LINE.match(text.split("\n", 1)[0])
    if not (opened and opened.group(1).strip().casefold() == first.casefold()):  # the model may repeat the label
        text = f"{first}{_COLON[language]}{text}"
    kept, seen = [], set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        match = _ASPECT_LINE.match(line)
        aspect = aspects.get(match.group(1).strip().casefold()) if match else None
        if aspect is None or aspect in seen:
            break
        seen.add(aspect)
        if match.group(2).strip():
            kept.append(f"{aspect}{_COLON[language]}{match.group(2).strip()}")
    return "\n".join(kept)
