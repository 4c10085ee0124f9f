"""parse_annotations: the one strict parser of LLM annotator answers."""

from __future__ import annotations

import json

import pytest

from mfray.eval.labels import DIMENSIONS
from mfray.eval.llm_annotator import ParseError, extract_json, parse_annotations

A = {"rumor": "spread", "sentiment": "calm", "attitude": "neutral", "behavior": "share", "stance": "neutral",
     "belief": "believe", "subjectivity": "objective", "intent": "promotion"}
B = {"rumor": "counter", "sentiment": "angry", "attitude": "negative", "behavior": "comment", "stance": "oppose",
     "belief": "doubt", "subjectivity": "subjective", "intent": "opinion"}
C = {"rumor": "spread", "sentiment": "surprise", "attitude": "positive", "behavior": "comment",
     "stance": "support", "belief": "believe", "subjectivity": "subjective", "intent": "question"}


def obj(index, labels, **extra):
    return {"index": index, **labels, **extra}


def answer(*objs) -> str:
    return json.dumps(list(objs), indent=2)


def labels_of(results):
    return [None if r is None else r.labels for r in results]


def messages(errors):
    return [str(e) for e in errors]


def test_well_formed_answer():
    res, errs = parse_annotations(answer(obj(1, A, keywords=["share", "weibo"]), obj(2, B, keywords=[])), 2)
    assert errs == []
    assert labels_of(res) == [A, B]
    assert res[0].keywords == ("share", "weibo") and res[1].keywords == ()
    assert not res[0].failed and list(res[0].labels) == list(DIMENSIONS)


def test_items_are_matched_by_index_not_position():
    res, errs = parse_annotations(answer(obj(3, C), obj(1, A), obj(2, B)), 3)
    assert errs == [] and labels_of(res) == [A, B, C]


def test_fence_and_prose_are_tolerated():
    text = "Sure! Here are the labels:\n```json\n" + answer(obj(2, B), obj(1, A)) + "\n```\nHope this helps [really]."
    res, errs = parse_annotations(text, 2)
    assert errs == [] and labels_of(res) == [A, B]
    # A bare fence and an upper-case tag too.
    for fence in ("```\n", "```JSON\n"):
        res, errs = parse_annotations(fence + answer(obj(1, A)) + "\n```", 1)
        assert errs == [] and labels_of(res) == [A]


def test_leading_and_trailing_prose_without_fence():
    res, errs = parse_annotations("The analysis:\n" + answer(obj(1, A)) + "\nAll comments were analysed.", 1)
    assert errs == [] and labels_of(res) == [A]


def test_labels_are_case_and_whitespace_normalised():
    shouty = {d: f"  {v.upper()} " for d, v in A.items()}
    res, errs = parse_annotations(answer(obj(1, shouty)), 1)
    assert errs == [] and labels_of(res) == [A]


def test_string_index_of_digits_is_accepted():
    res, errs = parse_annotations(answer(obj("2", B), obj(" 1 ", A)), 2)
    assert errs == [] and labels_of(res) == [A, B]


def test_missing_item_is_none_and_reported():
    res, errs = parse_annotations(answer(obj(1, A), obj(3, C)), 3)
    assert labels_of(res) == [A, None, C]
    assert errs == [ParseError(2, "missing from the answer")]


def test_invalid_label_invalidates_only_that_item():
    res, errs = parse_annotations(answer(obj(1, A), obj(2, {**B, "stance": "maybe"})), 2)
    assert labels_of(res) == [A, None]
    assert messages(errs) == ["item 2: stance 'maybe' is not one of support, oppose, neutral"]


@pytest.mark.parametrize("value", [None, 1, ["oppose"], "", "opposed", "oppose, neutral"])
def test_non_label_values_are_invalid(value):
    res, errs = parse_annotations(answer(obj(1, {**B, "stance": value})), 1)
    assert res == [None] and errs[0].index == 1 and "stance" in errs[0].message


def test_missing_dimension_is_invalid():
    partial = {k: v for k, v in A.items() if k != "intent"}
    res, errs = parse_annotations(answer(obj(1, partial)), 1)
    assert res == [None] and messages(errs) == ["item 1: intent missing"]


def test_every_bad_dimension_is_listed():
    res, errs = parse_annotations(answer(obj(1, {**A, "rumor": "x", "belief": "y"})), 1)
    assert res == [None]
    assert "rumor 'x'" in errs[0].message and "belief 'y'" in errs[0].message


def test_paper_field_names_are_not_accepted():
    # The paper's example output used sentiment_state / belief_degree ...; the prompt asks for
    # the dimension names, and the parser holds the model to them.
    paper = {"rumor": "spread", "sentiment_state": "calm", "sentiment_tendency": "neutral", "behavior_type": "share",
             "stance": "neutral", "belief_degree": "believe", "subjectivity": "objective",
             "intent_classification": "promotion"}
    res, errs = parse_annotations(answer(obj(1, paper)), 1)
    assert res == [None] and "sentiment missing" in errs[0].message


def test_duplicated_index_invalidates_the_item():
    res, errs = parse_annotations(answer(obj(1, A), obj(2, B), obj(2, C)), 2)
    assert labels_of(res) == [A, None]
    assert errs == [ParseError(2, "answered 2 times")]
    # Even two identical copies are refused: the model lost track of the numbering.
    res, errs = parse_annotations(answer(obj(1, A), obj(1, A)), 1)
    assert res == [None] and errs == [ParseError(1, "answered 2 times")]


def test_duplicate_with_one_invalid_copy_is_still_a_duplicate():
    res, errs = parse_annotations(answer(obj(1, A), obj(1, {**A, "stance": "maybe"})), 1)
    assert res == [None]
    assert [e.index for e in errs] == [1, 1] and "answered 2 times" in messages(errs)[-1]


@pytest.mark.parametrize("bad_index", [0, 4, -1, True, 1.0, "one", None, [1]])
def test_bad_index_elements_are_skipped(bad_index):
    res, errs = parse_annotations(answer(obj(1, A), obj(bad_index, B), obj(3, C)), 3)
    assert labels_of(res) == [A, None, C]
    assert errs[0].index is None and "element 2 has index" in errs[0].message
    assert errs[1:] == [ParseError(2, "missing from the answer")]


def test_element_without_index_is_skipped():
    res, errs = parse_annotations(json.dumps([A, obj(2, B)]), 2)
    assert labels_of(res) == [None, B]
    assert messages(errs) == ["element 1 has no index", "item 1: missing from the answer"]


def test_non_object_elements_are_skipped():
    res, errs = parse_annotations(json.dumps(["spread", obj(1, A)]), 1)
    assert labels_of(res) == [A] and messages(errs) == ["element 1 is str, not an object"]


@pytest.mark.parametrize("text, why", [
    ("I'm sorry, I cannot help with that.", "no JSON in the answer"),
    ("", "no JSON in the answer"),
    ('[{"index": 1, "rumor": "spread",', "invalid JSON"),                   # cut at max_new_tokens
    ("```json\n[{'index': 1}]\n```", "the code fence does not hold valid JSON"),  # Python, not JSON
    ("```json\nnot json\n```\n" + answer(obj(1, A)), "the code fence does not hold valid JSON"),
    ("[" * 100_000, "nested too deep"),
])
def test_malformed_answers_fail_every_item(text, why):
    res, errs = parse_annotations(text, 2)
    assert res == [None, None]
    assert len(errs) == 1 and errs[0].index is None and why in errs[0].message


@pytest.mark.parametrize("value, kind", [({"results": []}, "dict"), ("[]", "str"), (3, "int")])
def test_top_level_must_be_an_array(value, kind):
    text = "```json\n" + json.dumps(value) + "\n```"
    res, errs = parse_annotations(text, 1)
    assert res == [None] and messages(errs) == [f"expected a JSON array, got {kind}"]


def test_object_wrapper_is_not_unwrapped():
    # The JSON starts at the first '{': a wrapper object is refused, not searched for an array.
    res, errs = parse_annotations(json.dumps({"annotations": [obj(1, A)]}), 1)
    assert res == [None] and messages(errs) == ["expected a JSON array, got dict"]


def test_empty_array_reports_every_item_missing():
    res, errs = parse_annotations("[]", 2)
    assert res == [None, None] and [e.index for e in errs] == [1, 2]


def test_keywords_optional_and_validated():
    res, errs = parse_annotations(answer(obj(1, A), obj(2, B, keywords=None), obj(3, C, keywords=["", " fire "])), 3)
    assert errs == [] and [r.keywords for r in res] == [(), (), ("fire",)]
    # Keywords of the wrong shape are dropped and reported; the labels are kept.
    res, errs = parse_annotations(answer(obj(1, A, keywords="fire, police"), obj(2, B, keywords=[1, 2])), 2)
    assert labels_of(res) == [A, B] and [r.keywords for r in res] == [(), ()]
    assert [e.index for e in errs] == [1, 2] and all("keywords" in e.message for e in errs)


def test_unknown_keys_are_ignored():
    res, errs = parse_annotations(answer(obj(1, A, comment="Is this real?", confidence=0.9)), 1)
    assert errs == [] and labels_of(res) == [A]


def test_n_must_be_positive():
    with pytest.raises(ValueError):
        parse_annotations("[]", 0)


def test_custom_dimensions():
    res, errs = parse_annotations('[{"index": 1, "tone": "Dry"}]', 1, dimensions={"tone": ("dry", "wet")})
    assert errs == [] and res[0].labels == {"tone": "dry"}


def test_extract_json_takes_the_first_value_only():
    value, why = extract_json('prefix [1, 2] and later [3]')
    assert (value, why) == ([1, 2], None)
