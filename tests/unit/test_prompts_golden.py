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
    "mean_field_first": ("mean_field", dict(topic="{topic}", previous="", signal=None, distribution=None,
                                             comments=[{"text": "a", "state": ""}, {"text": "b", "state": ""}])),
    "mean_field_with_states": ("mean_field", dict(topic="{topic}", previous="Earlier summary.", signal="Officials deny it.",
                                                   distribution=None, comments=[{"text": "a", "state": "A user from X."}])),
    "mean_field_distribution": ("mean_field", dict(topic="{topic}", previous="Earlier summary.", signal=None,
                                                    distribution="positive 20%, neutral 50%, negative 30%",
                                                    comments=[{"text": "a", "state": ""}])),
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
    text = render_text("mean_field", "en", topic="t", previous="", signal=None, distribution=None, comments=[{"text": "x", "state": ""}])
    assert "Previous mean field" not in text and "['']" not in text


# ---- the "timeline" style: raw text the model continues (mfray.prompts.render.policy_prompt) -------
TIMELINE_CASES = {
    "policy_timeline_state": ("policy", dict(topic="{topic}", state="")),
    "policy_timeline_mf": ("policy", dict(topic="{topic}\nsecond line", state="{state}",
                                          mean_field="Stance: most users doubt the claim.\nEmotions: mostly calm.")),
    "policy_timeline_recent_signal": ("policy", dict(topic="{topic}", state="{state}", signal="Officials deny it.",
                                                     recent=["one", "two\non\xa0lines"])),
    "policy_timeline_popular": ("policy", dict(topic="{topic}", state="", popular=["top", "next"])),
    "policy_timeline_latent": ("policy", dict(topic="{topic}", state="{state}", latent_state="negative",
                                              latent_distribution="positive 20%, neutral 50%, negative 30%")),
    "mean_field_timeline_first": ("mean_field", dict(topic="{topic}", previous="", signal=None,
                                                     comments=[{"text": "a", "state": ""}, {"text": "b\nc", "state": ""}])),
    "mean_field_timeline_with_states": ("mean_field", dict(topic="{topic}", previous="Stance: earlier.\nEmotions: calm.",
                                                           signal="Officials deny it.",
                                                           comments=[{"text": "a", "state": "A user from X."}])),
    "mean_field_timeline_distribution": ("mean_field", dict(topic="{topic}", previous="Stance: earlier.", signal=None,
                                                            distribution="positive 20%, neutral 50%, negative 30%",
                                                            comments=[{"text": "a", "state": ""}])),
}


def _timeline(role, language, variables):
    from mfray.prompts.render import mean_field_prompt, policy_prompt

    if role == "policy":
        return policy_prompt("timeline", language, **variables)
    return mean_field_prompt("timeline", language, **variables)


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("case", sorted(TIMELINE_CASES))
def test_timeline_prompt_matches_golden(case, language):
    role, variables = TIMELINE_CASES[case]
    text = _timeline(role, language, variables)
    assert isinstance(text, str)  # a raw prompt: the engine sends it as is (no chat template)
    path = GOLDEN / f"{case}.{language}.txt"
    if os.environ.get("MFRAY_UPDATE_GOLDEN"):
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_timeline_prompts_end_with_the_open_line_the_parser_reads(language):
    from mfray.prompts.parse import MEAN_FIELD_ASPECTS

    speaker = {"en": "@user", "zh": "@用户"}[language]
    colon = {"en": ":", "zh": "："}[language]
    assert _timeline("policy", language, dict(topic="t", state="")).endswith(f"\n{speaker}{colon}")
    assert _timeline("policy", language, dict(topic="t", state="S")).splitlines()[-2:] == [
        {"en": "Next post by: S", "zh": "下一条的作者：S"}[language], f"{speaker}{colon}"]
    mf = _timeline("mean_field", language, dict(topic="t", previous="", comments=[{"text": "x", "state": ""}]))
    assert mf.endswith(f"\n{MEAN_FIELD_ASPECTS[language][0]}{colon}")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_worked_example_summaries_name_every_aspect_in_order(language):
    from mfray.prompts.parse import MEAN_FIELD_ASPECTS, mean_field_text
    from mfray.prompts.render import timeline_examples

    worked = timeline_examples(language)["worked"]
    assert worked, "the mean-field prompt needs at least one worked example"
    for example in worked:
        labels = [line.split({"en": ":", "zh": "："}[language], 1)[0] for line in example["summary"]]
        assert labels == list(MEAN_FIELD_ASPECTS[language])
        # the parser reads a worked summary back unchanged (its first label is the prompt's own)
        first = example["summary"][0].split({"en": ": ", "zh": "："}[language], 1)[1]
        assert mean_field_text("timeline", language, "\n".join([first, *example["summary"][1:]])) == "\n".join(example["summary"])


@pytest.mark.parametrize("language", ["en", "zh"])
def test_timeline_examples_are_the_posts_of_the_files_they_name(language):
    """Provenance: every example post is, byte for byte, the text mfray.data loads for that id."""
    import json
    from pathlib import Path

    from mfray.data import load_files
    from mfray.prompts.render import TEMPLATE_DIR

    doc = json.loads((TEMPLATE_DIR / language / "timeline_examples.json").read_text(encoding="utf-8"))
    repo = Path(__file__).resolve().parents[2]
    for event in doc["events"]:
        path = (repo / event["file"]).resolve()
        if not path.exists():
            pytest.skip(f"{path} not here (the shared data folder)")
        results, _ = load_files([str(path)])
        (loaded,) = [e for r in results for e in r.events]
        texts = {p.post_id: p.text for p in loaded.responses}
        assert loaded.event_id == event["event"] and loaded.topic_text == event["topic"]
        assert {p["id"]: texts.get(p["id"]) for p in event["posts"]} == {p["id"]: p["text"] for p in event["posts"]}


def test_chat_style_is_the_chat_prompt_and_an_unknown_style_is_refused():
    from mfray.prompts.render import mean_field_prompt, policy_prompt

    policy_vars = dict(topic="t", mean_field="m", signal=None, recent=[], popular=[], latent_state=None,
                       latent_distribution=None, state="s")
    assert policy_prompt("chat", "en", "t", "s", mean_field="m") == [
        {"role": "user", "content": render_text("policy", "en", **policy_vars)}]
    comments = [{"text": "x", "state": ""}]
    assert mean_field_prompt("chat", "zh", "t", "", comments) == [
        {"role": "user", "content": render_text("mean_field", "zh", topic="t", previous="", signal=None, distribution=None, comments=comments)}]
    with pytest.raises(ValueError, match="unknown prompt style 'json'"):
        policy_prompt("json", "en", "t", "")


@pytest.mark.parametrize("generation, post", [
    (" Breaking: dam fails http://x.co/1", "Breaking: dam fails http://x.co/1"),
    ("\n@user: RT @cnn: dam fails", "RT @cnn: dam fails"),       # the model ended the line and wrote the next one
    ("@user (A user from X.): wow", "wow"),
    ("@用户（一位来自北京的用户）：转发微博", "转发微博"),
    ("Story: Another headline", ""),                              # a new story header is no post: retried
    ("话题：【别的】", ""),
    ("Next post by: A user from X.", ""),                         # the agent's profile line, copied
    ("下一条的作者：一位来自北京的用户", ""),
    ("Stance: how users have reacted so far: #news", ""),         # the mean field's format leaking
    ("立场：多数用户只是转发", ""),
    ("My stance: it is fake", "My stance: it is fake"),           # a label inside a post is fine
    ("   ", ""),
])
def test_timeline_post_is_the_open_line(generation, post):
    from mfray.prompts.parse import post_text

    assert post_text("timeline", generation) == post
    assert post_text("chat", " @user: hi ") == "@user: hi"  # the chat style keeps what the model wrote


@pytest.mark.parametrize("language, generation, summary", [
    ("en", " most users share it.\nopinions: fake\n\nEmotions:\nBehaviour: reposts\nStory: next\nBelief: x",
     "Stance: most users share it.\nOpinions: fake\nBehaviour: reposts"),  # empty aspect left out, stops at "Story:"
    ("en", "Stance: repeated label\nIntent: news", "Stance: repeated label\nIntent: news"),
    ("en", "most users share it.\nStance: again", "Stance: most users share it."),  # an aspect twice ends it
    ("zh", "多数支持。\n观点：好\n@用户：哈哈", "立场：多数支持。\n观点：好"),
    ("en", "", ""),  # nothing: a failed generation (retried, then counted)
])
def test_timeline_mean_field_keeps_the_aspect_lines(language, generation, summary):
    from mfray.prompts.parse import mean_field_text

    assert mean_field_text("timeline", language, generation) == summary
    assert mean_field_text("chat", language, " x \n") == "x"


def test_a_mean_field_cut_at_the_token_limit_loses_its_cut_line_only():
    from mfray.prompts.parse import mean_field_text

    cut = " most users share it.\nEmotions: calm.\nBehaviour: mostly rep"
    assert mean_field_text("timeline", "en", cut, truncated=True) == "Stance: most users share it.\nEmotions: calm."
    assert mean_field_text("timeline", "en", " most users sha", truncated=True) == "Stance: most users sha"  # nothing else left


def test_prompt_hash_is_the_hash_of_the_stored_prompt_for_both_styles():
    import hashlib

    from mfray.prompts.render import policy_prompt, prompt_hash
    from mfray.sim.trajectory import decode_prompt, encode_prompt

    for style in ("chat", "timeline"):
        prompt = policy_prompt(style, "en", "t", "s")
        stored = encode_prompt(prompt)
        assert decode_prompt(stored) == prompt
        assert prompt_hash(prompt) == hashlib.sha256(stored.encode("utf-8")).hexdigest()[:16]


def test_prompt_style_sets_the_repetition_penalty_a_config_leaves_out():
    from mfray.config import SamplingConfig
    from mfray.sim.config import STYLE_REPETITION_PENALTY, RolloutConfig

    assert STYLE_REPETITION_PENALTY == {"chat": 1.2, "timeline": 1.0}  # chat: SPEC section 2's value
    for style, penalty in STYLE_REPETITION_PENALTY.items():
        cfg = RolloutConfig(prompt_style=style)
        assert cfg.policy.repetition_penalty == cfg.mean_field.repetition_penalty == penalty
        assert (cfg.mean_field.temperature, cfg.mean_field.max_new_tokens, cfg.mean_field.first_line) == (0.1, 200, False)
        partial = RolloutConfig(prompt_style=style, policy={"max_new_tokens": 32})  # as `mfray demo` builds it
        assert partial.policy.repetition_penalty == penalty and partial.policy.max_new_tokens == 32
    given = RolloutConfig(prompt_style="timeline", policy={"repetition_penalty": 1.3}, mean_field=SamplingConfig())
    assert given.policy.repetition_penalty == 1.3 and given.mean_field.repetition_penalty == 1.2  # given: kept
    assert RolloutConfig().prompt_style == "timeline"
    assert RolloutConfig.model_validate(RolloutConfig().model_dump()) == RolloutConfig()


def test_a_post_that_writes_out_the_agents_profile_is_recognised():
    from mfray.prompts.parse import echoes_profile

    state = "Millbrook, PTA Treasurer, identified as female, with a moderate number of friends."
    # six consecutive words of the profile (case and punctuation ignored): the profile, not a post
    assert echoes_profile("millbrook PTA treasurer identified as female!!", state)
    # five shared words in a row are not enough; shared words out of order are not a run
    assert not echoes_profile("Millbrook PTA Treasurer identified as a parent", state)
    assert not echoes_profile("female friends of the Millbrook PTA Treasurer", state)
    assert not echoes_profile("anything at all", "")  # no profile shown, nothing to echo
    # Chinese counts characters: six in a row of the profile
    assert echoes_profile("一位来自北京的女性用户说", "一位来自北京的女性用户，粉丝较多")
    assert not echoes_profile("北京的女性", "一位来自北京的女性用户，粉丝较多")
