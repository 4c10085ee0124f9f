"""The one place prompts are rendered. Templates live in templates/<language>/<role>.jinja.

Two prompt styles (RolloutConfig.prompt_style) for the policy and the mean field:
- "chat": an instruction in one user message ("Write only this user's post..."), rendered with
  the model's chat template (policy.jinja, mean_field.jinja);
- "timeline": raw text the model continues (policy_timeline.jinja, mean_field_timeline.jinja):
  fixed example posts of training events (templates/<language>/timeline_examples.json), then
  the event's story, its context, and an open line ("@user:" for a post, "Stance:" for a
  summary). Its output is read back by mfray.prompts.parse.

Shared context comes first in every template (topic, mean field, signal) and the per-agent part
last, so engines with prefix caching reuse the common prefix across a step's agents.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import jinja2

from mfray.llm.base import ChatMessage, Prompt

TEMPLATE_DIR = Path(__file__).parent / "templates"
ROLES = ("policy", "mean_field", "annotator", "policy_timeline", "mean_field_timeline")
LANGUAGES = ("en", "zh")
PROMPT_STYLES = ("chat", "timeline")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render_text(role: str, language: str, **variables) -> str:
    """Render one template to text."""
    if role not in ROLES:
        raise ValueError(f"unknown prompt role {role!r}; known: {ROLES}")
    if language not in LANGUAGES:
        raise ValueError(f"no {role} template for language {language!r}; known: {LANGUAGES}")
    return _environment().get_template(f"{language}/{role}.jinja").render(**variables).strip()


@lru_cache(maxsize=None)
def timeline_examples(language: str) -> dict:
    """The fixed examples of the timeline style for `language` (templates/<language>/
    timeline_examples.json: real posts of training events, with where they came from), as the
    templates take them: {"events": [{"topic", "posts"}], "worked": [{"topic", "posts", "summary"}]}
    ("worked": the events with a hand-written summary, the mean-field prompt's worked examples).
    Every topic and post is on one line (`one_line`)."""
    if language not in LANGUAGES:
        raise ValueError(f"no timeline examples for language {language!r}; known: {LANGUAGES}")
    doc = json.loads((TEMPLATE_DIR / language / "timeline_examples.json").read_text(encoding="utf-8"))
    events = [{"topic": one_line(e["topic"]), "posts": [one_line(p["text"]) for p in e["posts"]], "summary": e.get("summary")}
              for e in doc["events"]]
    return {"events": [{k: e[k] for k in ("topic", "posts")} for e in events],
            "worked": [e for e in events if e["summary"]]}


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines and non-breaking spaces included) made one
    space: in a timeline one line is one post."""
    return " ".join(text.split())


def render_chat(role: str, language: str, **variables) -> list[ChatMessage]:
    """Render one template as a single-turn chat (what the LLM interface takes)."""
    return [{"role": "user", "content": render_text(role, language, **variables)}]


def prompt_hash(prompt: list[ChatMessage] | str) -> str:
    """Short stable hash of a prompt, recorded with each action to tie outputs to inputs: of its
    JSON, as a trajectory stores it (mfray.sim.trajectory.encode_prompt), for a chat and a raw
    string alike."""
    return encoded_prompt_hash(json.dumps(prompt, ensure_ascii=False, sort_keys=True))


def encoded_prompt_hash(encoded: str) -> str:
    """prompt_hash of a prompt already encoded as a trajectory stores it (encode_prompt)."""
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:16]


def policy_prompt(
    style: str,
    language: str,
    topic: str,
    state: str,
    mean_field: str = "",
    signal: str | None = None,
    recent: list[str] | None = None,
    popular: list[str] | None = None,
    latent_state: str | None = None,
    latent_distribution: str | None = None,
) -> Prompt:
    """The policy prompt pi(. | topic, s_i, context) in `style` (PROMPT_STYLES): "chat" renders
    policy.jinja as one user message; "timeline" renders policy_timeline.jinja as a raw string
    ending with the agent's open post line (texts on one line each; recent and popular posts
    become the story's latest timeline lines). Simulation and training both call this, so the
    model is trained on exactly the prompts it is later simulated with."""
    _check_style(style)
    if style == "chat":
        return render_chat("policy", language, topic=topic, mean_field=mean_field, signal=signal, recent=recent or [],
                           popular=popular or [], latent_state=latent_state, latent_distribution=latent_distribution,
                           state=state)
    return render_text(
        "policy_timeline",
        language,
        examples=timeline_examples(language)["events"],
        topic=one_line(topic),
        mean_field=mean_field.strip(),
        signal=one_line(signal) if signal else None,
        recent=[one_line(t) for t in recent or []],
        popular=[one_line(t) for t in popular or []],
        latent_state=latent_state,
        latent_distribution=latent_distribution,
        state=one_line(state),
    )


def mean_field_prompt(style: str, language: str, topic: str, previous: str, comments: list[dict],
                      signal: str | None = None, distribution: str | None = None) -> Prompt:
    """The mean-field prompt mu(. | topic, m_t, step actions) in `style`; `comments` are {"text",
    "state"} dicts (state "" when the mean field is not shown the authors' states);
    `distribution`: MF-MDP's m_t as text (mfray.mdp.macro.describe), shown to its summariser (SPEC
    section 6, Eq. 4), None for MF-LLM. "timeline" is a raw string ending with the open summary
    (read the generation back with mfray.prompts.parse.mean_field_text)."""
    _check_style(style)
    if style == "chat":
        return render_chat("mean_field", language, topic=topic, previous=previous, signal=signal, comments=comments,
                           distribution=distribution)
    return render_text(
        "mean_field_timeline",
        language,
        examples=timeline_examples(language)["worked"],
        topic=one_line(topic),
        previous=previous.strip(),
        signal=one_line(signal) if signal else None,
        distribution=distribution,
        comments=[{"text": one_line(c["text"]), "state": one_line(c["state"])} for c in comments],
    )


def policy_completion(prompt: Prompt, text: str) -> str:
    """What the policy writes when its post is `text`, after `prompt`: the text a model is trained
    on and scored on (training, held-out NLL, evaluation NLL all go through here). A chat prompt
    (a message list) is answered by the post itself; a timeline prompt (a raw string ending with
    "@user:") is continued by a space, the post on one line, and the line's end."""
    if isinstance(prompt, str):
        return f" {one_line(text)}\n"
    return text


def _check_style(style: str) -> None:
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; known: {PROMPT_STYLES}")
