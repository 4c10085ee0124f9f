"""The one place prompts are rendered. Templates live in templates/<language>/<role>.jinja.

Shared context comes first in every template (topic, mean field, signal) and the per-agent part
last, so engines with prefix caching reuse the common prefix across a step's agents.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import jinja2

from mfray.llm.base import ChatMessage

TEMPLATE_DIR = Path(__file__).parent / "templates"
ROLES = ("policy", "mean_field", "annotator")
LANGUAGES = ("en", "zh")


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


def render_chat(role: str, language: str, **variables) -> list[ChatMessage]:
    """Render one template as a single-turn chat (what the LLM interface takes)."""
    return [{"role": "user", "content": render_text(role, language, **variables)}]


def prompt_hash(prompt: list[ChatMessage] | str) -> str:
    """Short stable hash of a prompt, recorded with each action to tie outputs to inputs."""
    blob = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def policy_chat(
    language: str,
    topic: str,
    state: str,
    mean_field: str = "",
    signal: str | None = None,
    recent: list[str] | None = None,
    popular: list[str] | None = None,
    latent_state: str | None = None,
    latent_distribution: str | None = None,
) -> list[ChatMessage]:
    """The policy prompt pi(. | topic, s_i, context). Simulation and training both call this, so
    the model is trained on exactly the prompts it is later simulated with."""
    return render_chat(
        "policy",
        language,
        topic=topic,
        mean_field=mean_field,
        signal=signal,
        recent=recent or [],
        popular=popular or [],
        latent_state=latent_state,
        latent_distribution=latent_distribution,
        state=state,
    )


def mean_field_chat(language: str, topic: str, previous: str, comments: list[dict], signal: str | None = None) -> list[ChatMessage]:
    """The mean-field prompt mu(. | topic, m_t, step actions); `comments` are {"text", "state"}
    dicts (state "" when the mean field is not shown the authors' states)."""
    return render_chat("mean_field", language, topic=topic, previous=previous, signal=signal, comments=comments)
