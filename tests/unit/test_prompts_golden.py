"""Golden tests: the rendered prompts are pinned byte for byte. After an intended template
change, regenerate with MFRAY_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mfray.prompts.render import render_text

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "policy_mf": ("policy", dict(topic="{topic}", mean_field="Most users doubt the claim.", signal=None, recent=[], popular=[],
                                 latent_state=None, latent_distribution=None, state="{state}")),
    "policy_state_empty_profile": ("policy", dict(topic="{topic}", mean_field="", signal=None, recent=[], popular=[],
                                                   latent_state=None, latent_distribution=None, state="")),
    "policy_recent_signal": ("policy", dict(topic="{topic}", mean_field="", signal="Officials deny it.", recent=["one", "two"],
                                            popular=[], latent_state=None, latent_distribution=None, state="{state}")),
    "policy_popular": ("policy", dict(topic="{topic}", mean_field="", signal=None, recent=[], popular=["top", "next"],
                                      latent_state=None, latent_distribution=None, state="{state}")),
    "mean_field_first": ("mean_field", dict(topic="{topic}", previous="", signal=None,
                                             comments=[{"text": "a", "state": ""}, {"text": "b", "state": ""}])),
    "mean_field_with_states": ("mean_field", dict(topic="{topic}", previous="Earlier summary.", signal="Officials deny it.",
                                                   comments=[{"text": "a", "state": "A user from X."}])),
}


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_prompt_matches_golden(case, language):
    role, variables = CASES[case]
    text = render_text(role, language, **variables)
    path = GOLDEN / f"{case}.{language}.txt"
    if os.environ.get("MFRAY_UPDATE_GOLDEN"):
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8")


def test_missing_variable_is_an_error_not_an_empty_string():
    with pytest.raises(Exception, match="state"):
        render_text("policy", "en", topic="t", mean_field="", signal=None, recent=[], popular=[],
                    latent_state=None, latent_distribution=None)


def test_empty_mean_field_is_not_shown_as_a_placeholder():
    text = render_text("mean_field", "en", topic="t", previous="", signal=None, comments=[{"text": "x", "state": ""}])
    assert "Previous mean field" not in text and "['']" not in text
