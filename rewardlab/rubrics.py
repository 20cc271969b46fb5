"""The rubric library: load `rubrics/*.yaml`, check rubric scores, score and format rubrics.

A rubric is one YAML file whose stem is its id (`rubrics/voice_editing.yaml` holds the rubric
`voice_editing`), validated into `schema.Rubric`. Typical use::

    from rewardlab.rubrics import load_library, format_rubric, weighted_score

    library = load_library()                      # {id: Rubric}, sorted by id
    rubric = library["voice_editing"]
    prompt_block = format_rubric(rubric)          # plain text for judge prompts and annotators
    weighted_score(rubric, {"uses_corrected_value": 1, "edit_scope": 4})  # 0..1

Every problem is a `RecordError` naming the file and the field, e.g.::

    RecordError: rubrics/voice_editing.yaml ('voice_editing'): criteria.2.scale: Input should
    be 'binary' or 'likert5'
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rewardlab.schema import RecordError, Rubric, RubricScores, parse_record

# The package's `rubric_library` is a symlink to the repository's `rubrics/` (the one source): a
# checkout or an editable install reads that folder through it, and a wheel holds real copies of
# its files there (pyproject.toml's package-data), so an installed rewardlab finds its rubrics.
LIBRARY_DIR = (Path(__file__).parent / "rubric_library").resolve()


def load_rubric(path: Path) -> Rubric:
    """Read and validate one rubric file; its id must equal the file stem."""
    source = str(path)
    try:
        # Bytes, not text: yaml detects the encoding and reports bad bytes as a YAMLError.
        data = yaml.safe_load(path.read_bytes())
    except yaml.MarkedYAMLError as error:  # a syntax error: yaml knows where it is
        mark = error.problem_mark
        message = f"invalid YAML: {error.problem} (column {mark.column + 1})"
        raise RecordError(source, f"line {mark.line + 1}", message) from None
    except yaml.YAMLError as error:  # bytes that are not text (no line to point at)
        raise RecordError(source, "<file>", f"invalid YAML: {error}") from None
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise RecordError(source, "<record>", f"expected a mapping of rubric fields, found {found}")
    rubric = parse_record(Rubric, data, source=source)
    if rubric.id != path.stem:
        raise RecordError(
            source,
            "id",
            f"id {rubric.id!r} differs from the file name {path.name!r}; "
            f"rename the file to {rubric.id}.yaml or set id: {path.stem}",
        )
    return rubric


def load_library(directory: Path = LIBRARY_DIR) -> dict[str, Rubric]:
    """Every `*.yaml` rubric in `directory`, keyed and sorted by id.

    Ids cannot repeat: each one equals its file's stem, and stems are unique in a folder.
    """
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise FileNotFoundError(f"no rubric files (*.yaml) in {directory}")
    return {path.stem: load_rubric(path) for path in paths}


def validate_rubric_scores(rubric: Rubric, scores: RubricScores, record: str) -> None:
    """Raise RecordError unless every score names a criterion of `rubric` and fits its scale.

    Scores may be partial: a side or a criterion may be absent (completeness is the UI's job).
    """
    for side, side_scores in scores.items():
        for criterion_id, score in side_scores.items():
            field = f"rubric_scores.{side}.{criterion_id}"
            try:
                rubric.criterion(criterion_id).check_score(score)
            except KeyError:
                known = ", ".join(c.id for c in rubric.criteria)
                message = (
                    f"rubric {rubric.id!r} has no criterion {criterion_id!r} (it has: {known})"
                )
                raise RecordError(record, field, message) from None
            except ValueError as error:
                raise RecordError(record, field, str(error)) from None


def _normalised(scale: str, score: int) -> float:
    """Map a score to 0..1: binary stays 0 or 1, likert5 1..5 becomes (s - 1) / 4."""
    return float(score) if scale == "binary" else (score - 1) / 4


def weighted_score(rubric: Rubric, side_scores: dict[str, int]) -> float:
    """Weighted mean of one response's normalised criterion scores, in 0..1.

        S = sum_i w_i * n(s_i) / sum_i w_i    over the criteria i present in `side_scores`

    with n(s) = s for binary and (s - 1) / 4 for likert5. Absent criteria do not count;
    unknown criteria raise KeyError, out-of-range scores and an empty `side_scores` ValueError.
    """
    if not side_scores:
        raise ValueError(f"no criterion scores to combine for rubric {rubric.id!r}")
    total = weights = 0.0
    for criterion_id, score in side_scores.items():
        criterion = rubric.criterion(criterion_id)
        total += criterion.weight * _normalised(criterion.scale, criterion.check_score(score))
        weights += criterion.weight
    return total / weights


def format_rubric(rubric: Rubric) -> str:
    """The rubric as compact plain text: the title, then `- [id] description (scale)` lines."""
    lines = [rubric.title]
    lines += [f"- [{c.id}] {c.description} ({c.scale})" for c in rubric.criteria]
    return "\n".join(lines)
