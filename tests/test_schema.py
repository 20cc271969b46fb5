"""The data model: every validation error names the record and the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from rewardlab.schema import (
    AudioRef,
    Judgment,
    Order,
    ProjectSettings,
    RecordError,
    Task,
    Turn,
    check_level,
    level_names,
    parse_record,
)

SHA = "a" * 64
CANDIDATE = {"text": "hello", "source": "reference"}


def task_data(**extra) -> dict:
    return {
        "id": "t1",
        "dialogue_id": "d1",
        "turn_index": 0,
        "policy": CANDIDATE,
        "reference": CANDIDATE,
        **extra,
    }


def record_error(model, data, k: int = 3) -> RecordError:
    with pytest.raises(RecordError) as caught:
        parse_record(model, data, "tasks.jsonl line 4", k=k)
    return caught.value


def test_level_names_follow_k():
    assert level_names(3) == [
        "much worse",
        "worse",
        "slightly worse",
        "about the same",
        "slightly better",
        "better",
        "much better",
    ]
    assert level_names(1) == ["worse", "about the same", "better"]
    assert len(level_names(5)) == 11 and level_names(5)[5] == "about the same"
    with pytest.raises(ValueError, match="K must be"):
        level_names(0)


def test_judgment_level_is_checked_against_the_projects_k():
    data = {"id": "j1", "task_id": "t1", "annotator_id": "a", "level": 3}
    assert Judgment.model_validate(data).level == 3  # default K = 3
    error = record_error(Judgment, data, k=2)
    assert error.record == "tasks.jsonl line 4 ('j1')"
    assert error.field == "level"
    assert "outside -2..2" in error.message
    with pytest.raises(ValueError):
        check_level(-4, 3)


def test_errors_name_nested_fields():
    error = record_error(Task, task_data(policy={"source": "x"}))
    assert str(error) == "tasks.jsonl line 4 ('t1'): policy.text: Field required"
    error = record_error(Task, task_data(turn_index=-1))
    assert error.field == "turn_index"
    error = record_error(Task, task_data(surprise=1))
    assert error.field == "surprise" and "Extra inputs" in error.message


def test_gold_items_need_an_answer_in_range():
    assert record_error(Task, task_data(gold=True)).message.startswith("gold_level is required")
    assert "only allowed on gold" in record_error(Task, task_data(gold_level=1)).message
    assert "outside -1..1" in record_error(Task, task_data(gold=True, gold_level=2), k=1).message
    assert parse_record(Task, task_data(gold=True, gold_level=-2), "x").gold_level == -2


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "absolute"),
        ("../outside.wav", "'..'"),
        ("a/../../b.wav", "'..'"),
        ("a\\b.wav", "POSIX"),
        ("", "non-empty"),
    ],
)
def test_audio_paths_stay_inside_the_media_root(path, reason):
    with pytest.raises(ValidationError, match=reason):
        AudioRef(path=path, sha256=SHA, sample_rate=16000, duration_s=1.0)


def test_audio_ref_needs_a_real_digest_and_positive_numbers():
    with pytest.raises(ValidationError, match="sha256"):
        AudioRef(path="a.wav", sha256="xyz", sample_rate=16000, duration_s=1.0)
    with pytest.raises(ValidationError, match="duration_s"):
        AudioRef(path="a.wav", sha256=SHA, sample_rate=16000, duration_s=0)


def test_turns_need_content_and_reasoning_only_on_assistant_turns():
    with pytest.raises(ValidationError, match="needs text or audio"):
        Turn(role="user", text="   ")
    with pytest.raises(ValidationError, match="only allowed on assistant"):
        Turn(role="user", text="hi", reasoning="thinking")
    assert Turn(role="assistant", text="hi", reasoning="thinking").reasoning == "thinking"
    with pytest.raises(ValidationError, match="role"):
        Turn(role="robot", text="hi")


def test_judgment_fields_are_validated():
    base = {"id": "j1", "task_id": "t1", "annotator_id": "a", "level": 1}
    assert record_error(Judgment, base | {"listened": {"a.wav": 1.5}}).field == "listened"
    assert record_error(Judgment, base | {"time_spent_s": -1}).field == "time_spent_s"
    assert record_error(Judgment, base | {"shown_order": "left"}).field == "shown_order"
    naive = record_error(Judgment, base | {"created_at": "2026-01-01T00:00:00"})
    assert naive.field == "created_at" and "timezone" in naive.message
    assert record_error(Judgment, base | {"id": "has space"}).field == "id"
    scores = {"policy": {"x": 1}, "candidate": {"x": 1}}
    assert record_error(Judgment, base | {"rubric_scores": scores}).field.startswith(
        "rubric_scores"
    )


def test_shown_level_undoes_the_canonical_order():
    base = {"id": "j1", "task_id": "t1", "annotator_id": "a", "level": 2}
    assert Judgment(**base).shown_level == 2
    assert Judgment(**base, shown_order="reference_first").shown_level == -2


def test_order_values_are_the_stored_strings():
    assert [o.value for o in Order] == ["policy_first", "reference_first"]
    assert Order("reference_first") is Order.REFERENCE_FIRST
    judgment = Judgment(
        id="j1", task_id="t1", annotator_id="a", level=1, shown_order="reference_first"
    )
    assert judgment.shown_order is Order.REFERENCE_FIRST
    assert json.loads(judgment.model_dump_json())["shown_order"] == "reference_first"
    assert type(judgment.model_dump(mode="json")["shown_order"]) is str
    assert f"probs_{Order.POLICY_FIRST}" == "probs_policy_first"


# (canonical level, shown level) written out by hand for each order
K3_REFERENCE_FIRST = [(-3, 3), (-2, 2), (-1, 1), (0, 0), (1, -1), (2, -2), (3, -3)]
K2_REFERENCE_FIRST = [(-2, 2), (-1, 1), (0, 0), (1, -1), (2, -2)]


@pytest.mark.parametrize("pairs", [K3_REFERENCE_FIRST, K2_REFERENCE_FIRST])
def test_order_flips_every_level_by_hand(pairs):
    for canonical, shown in pairs:
        assert Order.REFERENCE_FIRST.to_shown(canonical) == shown
        assert Order.REFERENCE_FIRST.to_canonical(shown) == canonical
        assert Order.POLICY_FIRST.to_shown(canonical) == canonical
        assert Order.POLICY_FIRST.to_canonical(canonical) == canonical
        for order in Order:  # shown -> canonical -> shown is the identity
            assert order.to_shown(order.to_canonical(shown)) == shown
            assert order.to_canonical(order.to_shown(canonical)) == canonical


def test_order_flips_level_distributions_by_hand():
    # K=2, two rows: P(level) over -2..2 on the last axis, shape (2, 5)
    probs = np.array([[0.1, 0.2, 0.3, 0.4, 0.0], [0.5, 0.0, 0.0, 0.25, 0.25]])
    shown = np.array([[0.0, 0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.0, 0.0, 0.5]])
    np.testing.assert_array_equal(Order.REFERENCE_FIRST.to_shown_levels(probs), shown)
    np.testing.assert_array_equal(Order.REFERENCE_FIRST.to_canonical_levels(shown), probs)
    assert Order.POLICY_FIRST.to_shown_levels(probs) is probs
    levels = np.arange(-2, 3)
    for order in Order:  # the expected level flips as the level does
        np.testing.assert_allclose(
            order.to_shown_levels(probs) @ levels, order.to_shown(probs @ levels)
        )
        np.testing.assert_array_equal(
            order.to_shown_levels(order.to_canonical_levels(shown)), shown
        )


def test_order_swaps_and_names_the_sides_it_shows():
    assert Order.POLICY_FIRST.swapped() is Order.REFERENCE_FIRST
    assert Order.REFERENCE_FIRST.swapped() is Order.POLICY_FIRST
    assert Order.POLICY_FIRST.sides == ("policy", "reference")
    assert Order.REFERENCE_FIRST.sides == ("reference", "policy")
    assert Order.REFERENCE_FIRST.shown_pair("p", "r") == ("r", "p")


def test_models_are_frozen_and_compare_by_value():
    a = parse_record(Task, task_data(), "x")
    assert a == parse_record(Task, task_data(), "y")
    with pytest.raises(ValidationError):
        a.turn_index = 3  # type: ignore[misc]


def test_project_settings_bounds():
    assert ProjectSettings().k == 3
    with pytest.raises(ValidationError, match="k"):
        ProjectSettings(k=0)
    with pytest.raises(ValidationError, match="gold_share"):
        ProjectSettings(gold_share=1.5)


def test_every_project_setting_is_documented():
    undocumented = [n for n, f in ProjectSettings.model_fields.items() if not f.description]
    assert undocumented == []
