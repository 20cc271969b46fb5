"""The shipped rubric library and its loader, on real files (bad cases written to tmp_path)."""

from pathlib import Path

import pytest
import yaml

from rewardlab.rubrics import (
    LIBRARY_DIR,
    format_rubric,
    load_library,
    load_rubric,
    validate_rubric_scores,
    weighted_score,
)
from rewardlab.schema import RecordError, Rubric

SHIPPED = sorted(LIBRARY_DIR.glob("*.yaml"))

# id -> (axis, requires_audio): the nine rubrics the project promises.
REQUIRED = {
    "inference_memory": ("audiomultichallenge", True),
    "instruction_retention": ("audiomultichallenge", False),
    "self_coherence": ("audiomultichallenge", False),
    "voice_editing": ("audiomultichallenge", False),
    "prosodic_naturalness": ("paralinguistic", True),
    "emotional_continuity": ("paralinguistic", True),
    "persona_consistency": ("paralinguistic", True),
    "paralinguistic_responsiveness": ("paralinguistic", True),
    "overall_preference": ("general", False),
}


def criterion(criterion_id: str, scale: str = "binary", weight: float = 1.0) -> dict:
    description = f"The response satisfies the {criterion_id} requirement in a checkable way."
    return {"id": criterion_id, "description": description, "scale": scale, "weight": weight}


def rubric_data(**changes) -> dict:
    data = {
        "id": "demo",
        "version": 1,
        "title": "Demo rubric",
        "criteria": [
            criterion("kept", "binary", 2),
            criterion("tone", "likert5", 1),
            criterion("pace", "likert5", 3),
        ],
    }
    return {**data, **changes}


@pytest.fixture
def demo() -> Rubric:
    return Rubric.model_validate(rubric_data())


# --- the shipped library ------------------------------------------------------------------


def test_library_folder_has_rubrics():
    assert LIBRARY_DIR.is_dir()
    assert SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_rubric_loads_and_is_complete(path: Path):
    rubric = load_rubric(path)
    assert rubric.id == path.stem
    assert rubric.version == 1
    assert 3 <= len(rubric.criteria) <= 5
    assert len(rubric.description.split()) >= 20, "say what the rubric is for and when to use it"
    assert path.read_text(encoding="utf-8").startswith("#"), "start with a comment saying what"
    for c in rubric.criteria:
        assert len(c.description.split()) >= 15, f"{c.id}: description too thin to apply"
        assert c.description.strip() == c.description and "\n" not in c.description
    text = format_rubric(rubric)
    assert text.splitlines()[0] == rubric.title
    for c in rubric.criteria:
        assert f"[{c.id}]" in text


def test_library_covers_the_required_rubrics():
    library = load_library()
    assert list(library) == sorted(library)
    missing = set(REQUIRED) - set(library)
    assert not missing
    for rubric_id, (axis, requires_audio) in REQUIRED.items():
        assert (library[rubric_id].axis, library[rubric_id].requires_audio) == (
            axis,
            requires_audio,
        ), rubric_id


def test_library_criterion_descriptions_are_distinct():
    """A copy-pasted description would make two criteria score the same thing."""
    descriptions = [c.description for r in load_library().values() for c in r.criteria]
    assert len(descriptions) == len(set(descriptions))


# --- bad files ------------------------------------------------------------------------------


def without_criteria() -> dict:
    data = rubric_data()
    del data["criteria"]
    return data


def with_criteria(*criteria: dict) -> dict:
    return rubric_data(criteria=list(criteria))


def with_criterion_extra() -> dict:
    return with_criteria({**criterion("kept"), "notes": "typo of description?"})


BAD = {
    "missing-criteria": (without_criteria(), "criteria"),
    "empty-criteria": (with_criteria(), "criteria"),
    "bad-scale": (
        with_criteria(criterion("kept"), criterion("tone", "likert7")),
        "criteria.1.scale",
    ),
    "duplicate-criterion": (with_criteria(criterion("kept"), criterion("kept")), "criteria"),
    "zero-weight": (with_criteria(criterion("kept", weight=0)), "criteria.0.weight"),
    "negative-weight": (with_criteria(criterion("kept", weight=-1)), "criteria.0.weight"),
    "id-differs-from-stem": (rubric_data(id="other"), "id"),
    "unknown-field": (rubric_data(author="me"), "author"),
    "unknown-criterion-field": (with_criterion_extra(), "criteria.0.notes"),
    "bad-axis": (rubric_data(axis="prosody"), "axis"),
}


@pytest.mark.parametrize(("data", "field"), BAD.values(), ids=BAD.keys())
def test_bad_rubric_file_names_file_and_field(tmp_path: Path, data: dict, field: str):
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        load_rubric(path)
    assert str(path) in caught.value.record
    assert caught.value.field == field


def test_invalid_yaml_names_file_and_line(tmp_path: Path):
    path = tmp_path / "demo.yaml"
    path.write_text("id: demo\nversion: 1\ntitle: Demo: rubric\n", encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        load_rubric(path)
    assert caught.value.record == str(path)
    assert caught.value.field == "line 3"
    assert "invalid YAML" in caught.value.message


@pytest.mark.parametrize(("text", "found"), [("- id: demo\n", "list"), ("", "empty file")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str):
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        load_rubric(path)
    assert (caught.value.record, caught.value.field) == (str(path), "<record>")
    assert found in caught.value.message


def test_load_library_of_a_folder(tmp_path: Path):
    for rubric_id in ("zeta", "alpha"):
        path = tmp_path / f"{rubric_id}.yaml"
        path.write_text(yaml.safe_dump(rubric_data(id=rubric_id)), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a rubric", encoding="utf-8")
    assert list(load_library(tmp_path)) == ["alpha", "zeta"]


def test_load_library_fails_on_a_bad_file(tmp_path: Path):
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(rubric_data(id="good")), encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump(rubric_data(id="bad", version=0)), encoding="utf-8"
    )
    with pytest.raises(RecordError, match=r"bad\.yaml.*version"):
        load_library(tmp_path)


def test_load_library_of_an_empty_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no rubric files"):
        load_library(tmp_path)


# --- rubric scores --------------------------------------------------------------------------


def test_validate_rubric_scores_accepts_good_and_partial_scores(demo: Rubric):
    validate_rubric_scores(demo, {"policy": {"kept": 0, "tone": 5, "pace": 1}}, "j-1")
    validate_rubric_scores(demo, {"policy": {"kept": 1}, "reference": {"tone": 3}}, "j-1")
    validate_rubric_scores(demo, {}, "j-1")


@pytest.mark.parametrize(
    ("scores", "field", "message"),
    [
        ({"reference": {"nope": 1}}, "rubric_scores.reference.nope", "no criterion 'nope'"),
        ({"policy": {"kept": 2}}, "rubric_scores.policy.kept", "outside 0..1"),
        ({"policy": {"kept": 1, "tone": 0}}, "rubric_scores.policy.tone", "outside 1..5"),
        ({"reference": {"pace": 6}}, "rubric_scores.reference.pace", "outside 1..5"),
    ],
)
def test_validate_rubric_scores_names_side_and_criterion(demo, scores, field, message):
    with pytest.raises(RecordError) as caught:
        validate_rubric_scores(demo, scores, "judgments.jsonl line 4")
    assert (caught.value.record, caught.value.field) == ("judgments.jsonl line 4", field)
    assert message in caught.value.message


def test_weighted_score_by_hand(demo: Rubric):
    """kept binary w=2, tone likert5 w=1, pace likert5 w=3; scores kept=1, tone=4, pace=2.

    Normalised: kept 1, tone (4-1)/4 = 0.75, pace (2-1)/4 = 0.25.
    All three: (2*1 + 1*0.75 + 3*0.25) / (2+1+3) = 3.5 / 6 = 0.58333...
    Partial, tone and pace only: (1*0.75 + 3*0.25) / (1+3) = 1.5 / 4 = 0.375.
    Extremes: kept=0, tone=1, pace=1 gives 0; kept=1, tone=5, pace=5 gives 1.
    """
    assert weighted_score(demo, {"kept": 1, "tone": 4, "pace": 2}) == pytest.approx(3.5 / 6)
    assert weighted_score(demo, {"tone": 4, "pace": 2}) == pytest.approx(0.375)
    assert weighted_score(demo, {"kept": 0, "tone": 1, "pace": 1}) == 0.0
    assert weighted_score(demo, {"kept": 1, "tone": 5, "pace": 5}) == 1.0


def test_weighted_score_rejects_empty_unknown_and_out_of_range(demo: Rubric):
    with pytest.raises(ValueError, match="no criterion scores"):
        weighted_score(demo, {})
    with pytest.raises(KeyError, match="nope"):
        weighted_score(demo, {"nope": 1})
    with pytest.raises(ValueError, match=r"outside 1\.\.5"):
        weighted_score(demo, {"tone": 9})


def test_format_rubric_layout(demo: Rubric):
    assert format_rubric(demo).splitlines() == [
        "Demo rubric",
        "- [kept] The response satisfies the kept requirement in a checkable way. (binary)",
        "- [tone] The response satisfies the tone requirement in a checkable way. (likert5)",
        "- [pace] The response satisfies the pace requirement in a checkable way. (likert5)",
    ]
