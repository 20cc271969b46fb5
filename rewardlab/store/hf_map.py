"""The mapping file of ``rewardlab import --hf``: which dataset columns make each record.

Parsed and checked against the dataset's columns before any row is read; the format is in
`rewardlab.store.hf_import`'s docstring and README's "Importing an HF dataset".
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rewardlab.schema import RecordError

MAPS_DIR = Path(__file__).parent / "hf_maps"
BUILT_IN_MAPS = {"rewardlab": MAPS_DIR / "rewardlab.yaml"}  # name -> file

SECTIONS = ("dialogue", "task", "judgment")
SECTION_FIELDS = {
    "dialogue": {"id", "turns", "metadata"},
    "task": {
        "id",
        "dialogue_id",
        "turn_index",
        "rubric_id",
        "gold",
        "gold_level",
        "metadata",
        "policy",
        "reference",
    },
    "judgment": {
        "id",
        "task_id",
        "annotator_id",
        "level",
        "shown_order",
        "rubric_scores",
        "rationale",
        "time_spent_s",
        "listened",
        "created_at",
    },
}
CANDIDATE_FIELDS = {"text", "reasoning", "source", "audio"}
TURN_FIELDS = {"role", "text", "audio"}


class MapError(ValueError):
    """A mapping file that cannot work with the dataset; names the map's key."""

    def __init__(self, where: str, message: str):
        self.where = where
        super().__init__(f"map {where}: {message}")


@dataclass(frozen=True)
class Value:
    """Where one field's value comes from (see the module docstring)."""

    where: str
    column: str | None = None
    constant: Any = None
    parse_json: bool = False
    table: dict | None = None
    template: str | None = None

    @classmethod
    def parse(cls, spec: Any, where: str) -> Value:
        if isinstance(spec, str):
            return cls(where, column=spec)
        if not isinstance(spec, dict):
            raise MapError(where, f"give a column name or a mapping, not {spec!r}")
        kinds = [key for key in ("value", "column", "format") if key in spec]
        if len(kinds) != 1:
            raise MapError(where, "give exactly one of value, column, format")
        extra = set(spec) - {"value", "column", "format", "json", "map"}
        if extra or (kinds != ["column"] and {"json", "map"} & set(spec)):
            unknown = ", ".join(sorted(extra or {"json", "map"} & set(spec)))
            raise MapError(where, f"unknown or misplaced keys: {unknown}")
        if "value" in spec:
            return cls(where, constant=spec["value"])
        if "format" in spec:
            template = spec["format"]
            if not isinstance(template, str):
                raise MapError(where, "format must be text")
            return cls(where, template=template)
        table = spec.get("map")
        if table is not None and not isinstance(table, dict):
            raise MapError(f"{where}.map", "give a mapping of values")
        return cls(where, column=spec["column"], parse_json=bool(spec.get("json")), table=table)

    def columns(self) -> set[str]:
        if self.column is not None:
            return {self.column}
        if self.template is not None:
            return {name for _, name, _, _ in string.Formatter().parse(self.template) if name}
        return set()

    def read(self, row: dict, label: str) -> Any:
        if self.template is not None:
            return self.template.format(**row)
        if self.column is None:
            return self.constant
        value = row[self.column]
        if value is None:
            return None
        if self.parse_json and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise RecordError(label, self.column, f"invalid JSON: {error.msg}") from None
        if self.table is not None:
            if value not in self.table:
                known = ", ".join(map(repr, self.table))
                raise RecordError(label, self.column, f"{value!r} is not in the map ({known})")
            value = self.table[value]
        return value


@dataclass(frozen=True)
class AudioValue:
    """An audio column, and optionally the column with the clip's path under the media root."""

    where: str
    column: str
    path: Value | None = None

    @classmethod
    def parse(cls, spec: Any, where: str) -> AudioValue:
        if isinstance(spec, str):
            return cls(where, spec)
        if isinstance(spec, dict) and set(spec) <= {"column", "path"} and "column" in spec:
            path = Value.parse(spec["path"], f"{where}.path") if "path" in spec else None
            return cls(where, spec["column"], path)
        raise MapError(where, "give an audio column, or {column: c, path: path_column}")

    def columns(self) -> set[str]:
        return {self.column} | (self.path.columns() if self.path else set())


@dataclass
class DatasetMap:
    dialogue: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    judgment: dict[str, Value] | None = None

    @classmethod
    def load(cls, path: Path | str) -> DatasetMap:
        path = BUILT_IN_MAPS.get(str(path), Path(path))
        if not Path(path).is_file():
            known = ", ".join(BUILT_IN_MAPS)
            raise FileNotFoundError(f"no such map file: {path} (built-in maps: {known})")
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise MapError(str(path), f"invalid YAML: {error}") from None
        return cls.parse(raw)

    @classmethod
    def parse(cls, raw: Any) -> DatasetMap:
        if not isinstance(raw, dict) or not raw:
            raise MapError("<file>", f"give one or more of the sections {', '.join(SECTIONS)}")
        unknown = set(raw) - set(SECTIONS)
        if unknown:
            raise MapError(
                ", ".join(sorted(unknown)), f"unknown section; use {', '.join(SECTIONS)}"
            )
        parsed = cls()
        for section, spec in raw.items():
            if not isinstance(spec, dict) or "id" not in spec:
                raise MapError(section, "give a mapping of fields, with at least id")
            extra = set(spec) - SECTION_FIELDS[section]
            if extra:
                known = ", ".join(sorted(SECTION_FIELDS[section]))
                raise MapError(f"{section}.{sorted(extra)[0]}", f"unknown field; known: {known}")
            fields = {}
            for name, value in spec.items():
                where = f"{section}.{name}"
                if section == "dialogue" and name == "turns":
                    fields[name] = _parse_turns(value, where)
                elif section == "task" and name in ("policy", "reference"):
                    fields[name] = _parse_candidate(value, where)
                elif section == "dialogue" and name == "metadata" and isinstance(value, list):
                    fields[name] = [Value.parse(column, f"{where}.{column}") for column in value]
                else:
                    fields[name] = Value.parse(value, where)
            setattr(parsed, section, fields)
        if parsed.dialogue is not None and "turns" not in parsed.dialogue:
            raise MapError("dialogue.turns", "a dialogue needs its turns")
        return parsed

    def values(self) -> list[Value | AudioValue]:
        """Every value the map reads, for checking its columns against the dataset's."""

        def walk(node: Any) -> list:
            if isinstance(node, Value | AudioValue):
                return [node]
            if isinstance(node, TurnsColumn):
                return [node.turns, *([node.audio] if node.audio else [])]
            if isinstance(node, dict):
                return [v for child in node.values() for v in walk(child)]
            if isinstance(node, list):
                return [v for child in node for v in walk(child)]
            return []

        return walk([self.dialogue, self.task, self.judgment])

    def check_columns(self, columns: list[str]) -> None:
        for value in self.values():
            missing = sorted(value.columns() - set(columns))
            if missing:
                raise MapError(
                    value.where,
                    f"the dataset has no column {missing[0]!r}; its columns: {', '.join(columns)}",
                )


@dataclass(frozen=True)
class TurnsColumn:
    """``dialogue.turns`` read from one column (a list of turns), clips from a list column."""

    turns: Value
    audio: AudioValue | None


def _parse_turns(spec: Any, where: str) -> list[dict] | TurnsColumn:
    if isinstance(spec, dict):
        audio = spec.get("audio")
        if audio is not None and not isinstance(audio, str):
            raise MapError(f"{where}.audio", "give the list column of the turns' clips")
        rest = {k: v for k, v in spec.items() if k != "audio"}
        return TurnsColumn(
            Value.parse(rest, where), AudioValue(f"{where}.audio", audio) if audio else None
        )
    if not isinstance(spec, list) or not spec:
        raise MapError(where, "give a list of turns, or {column: c, json: true, audio: clips}")
    turns = []
    for index, turn in enumerate(spec):
        at = f"{where}.{index}"
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant", "system"):
            raise MapError(f"{at}.role", "each turn needs a role: user, assistant or system")
        extra = set(turn) - TURN_FIELDS
        if extra:
            raise MapError(f"{at}.{sorted(extra)[0]}", "unknown field; known: role, text, audio")
        parsed = {"role": turn["role"]}
        if "text" in turn:
            parsed["text"] = Value.parse(turn["text"], f"{at}.text")
        if "audio" in turn:
            parsed["audio"] = AudioValue.parse(turn["audio"], f"{at}.audio")
        turns.append(parsed)
    return turns


def _parse_candidate(spec: Any, where: str) -> dict[str, Value | AudioValue]:
    if isinstance(spec, str):  # just the text
        return {"text": Value.parse(spec, f"{where}.text")}
    if not isinstance(spec, dict) or "text" not in spec:
        raise MapError(where, "give the text column, or a mapping with text (and source, ...)")
    extra = set(spec) - CANDIDATE_FIELDS
    if extra:
        known = ", ".join(sorted(CANDIDATE_FIELDS))
        raise MapError(f"{where}.{sorted(extra)[0]}", f"unknown field; known: {known}")
    return {
        name: (AudioValue.parse if name == "audio" else Value.parse)(value, f"{where}.{name}")
        for name, value in spec.items()
    }
