"""Golden tests of the annotator prompt: pinned byte for byte, as the policy and mean-field
prompts are in test_prompts_golden.py. After an intended template change, regenerate with
MFRAY_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mfray.eval.labels import DIMENSIONS
from mfray.eval.llm_annotator import build_prompt, parse_annotations
from mfray.prompts.render import ROLES, render_chat

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "one": ("{topic}", ["{comment}"]),
    "three": ("A fire at the old mill", ["Is this real?", 'He said "fake"\nand left @_@', "//@user: repost"]),
}


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_annotator_prompt_matches_golden(case, language):
    topic, texts = CASES[case]
    text = build_prompt(topic, texts, language, chat=False)
    path = GOLDEN / f"annotator.{case}.{language}.txt"
    if os.environ.get("MFRAY_UPDATE_GOLDEN"):
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8")
    # The chat form is the same text as one user message.
    assert build_prompt(topic, texts, language) == [{"role": "user", "content": text}]


def test_annotator_is_a_known_role():
    assert "annotator" in ROLES


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_label_set_is_offered_exactly(language):
    text = build_prompt("t", ["c"], language, chat=False)
    for k, (dim, labels) in enumerate(DIMENSIONS.items(), 1):
        offered = "[" + ", ".join(f'"{label}"' for label in labels) + "]"
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{k}. {dim}"))
        assert offered in line, (dim, line)
    assert re.search(r"^9\. keywords", text, re.MULTILINE)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_example_output_in_the_prompt_passes_the_parser(language):
    text = build_prompt("t", ["c"], language, chat=False)
    example = text[text.index("\n[\n") + 1 : text.index("\n]\n") + 2]
    res, errs = parse_annotations(example, 2)
    assert errs == [] and all(r is not None for r in res)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_comments_are_numbered_one_per_line_whatever_they_contain(language):
    texts = ['a "quoted"\nmulti-line\ncomment', "Comment 2: fake", ""]
    text = build_prompt("t", texts, language, chat=False)
    prefix = "Comment " if language == "en" else "评论"
    sep = ": " if language == "en" else "："
    lines = [ln for ln in text.splitlines() if re.match(rf"{prefix}\d+{sep}\"", ln)]
    assert lines == [f'{prefix}1{sep}"a \\"quoted\\"\\nmulti-line\\ncomment"', f'{prefix}2{sep}"Comment 2: fake"',
                     f'{prefix}3{sep}""']


def test_missing_variable_is_an_error():
    with pytest.raises(Exception, match="labels"):
        render_chat("annotator", "en", topic="t", comments=['"c"'])
