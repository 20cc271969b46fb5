"""Import dialogues and tasks from JSONL files (+ their audio) into a project store.

    rewardlab import PROJECT --dialogues dialogues.jsonl --tasks tasks.jsonl [--dry-run]

One record per line, in the shape of `schema.Dialogue` / `schema.Task`. An audio reference
needs only its ``path``, relative to the media folder (default: the folder of the JSONL file);
``sha256``, ``sample_rate`` and ``duration_s`` are filled in from the file, and checked when
given. Every record is validated, and every clip read, before anything is written; if any
record is bad the report lists them all and nothing is imported. Then the records are inserted
and the clips copied under the project's media root, in one transaction.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from tqdm.auto import tqdm

from rewardlab.audio import AudioError, probe_audio, resolve_media_path, sha256_file
from rewardlab.rubrics import LIBRARY_DIR, load_library
from rewardlab.schema import Dialogue, RecordError, Rubric, Task, describe_record, errors_of
from rewardlab.store.store import Store, StoreError
from rewardlab.store.transaction import RollBack, Transaction


@dataclass
class ImportReport:
    dry_run: bool
    dialogues: list[Dialogue] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    rubrics: list[Rubric] = field(default_factory=list)
    audio_files: int = 0
    added: dict[str, int] = field(default_factory=dict)
    errors: list[RecordError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        head = (
            f"{len(self.dialogues)} dialogues, {len(self.tasks)} tasks, "
            f"{self.audio_files} audio files"
        )
        if self.errors:
            lines = [f"{len(self.errors)} bad records; nothing was imported:"]
            return "\n".join(lines + [f"  {error}" for error in self.errors])
        if self.dry_run:
            return f"dry run: {head} are valid; nothing was written"
        added = ", ".join(f"{n} new {kind}" for kind, n in self.added.items())
        return f"imported {head} ({added})"


class ImportRejected(StoreError):
    def __init__(self, report: ImportReport):
        self.report = report
        super().__init__(report.summary())


@dataclass
class _Importer:
    store: Store
    media_dir: Path
    library: dict[str, Rubric]
    report: ImportReport
    copies: dict[str, Path] = field(default_factory=dict)  # media path -> source file
    _probed: dict[Path, tuple[str, int, float] | AudioError] = field(default_factory=dict)

    def fill_audio(self, raw: Any, record: str, location: str) -> list[RecordError]:
        """Complete an input audio reference in place from its file; return what is wrong."""
        if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
            return []  # the model validation reports the malformed reference
        relative = raw["path"]
        try:
            source = resolve_media_path(self.media_dir, relative)
            if source not in self._probed:
                settings = self.store.settings
                try:
                    self._probed[source] = probe_audio(
                        source,
                        max_duration_s=settings.max_clip_s,
                        reject_silent=settings.reject_silent_audio,
                    )
                except AudioError as error:
                    self._probed[source] = error
            probed = self._probed[source]
            if isinstance(probed, AudioError):
                raise probed
            destination = resolve_media_path(self.store.media_root, relative)
        except AudioError as error:
            return [RecordError(record, f"{location}.path", str(error))]
        sha256, sample_rate, duration_s = probed
        if raw.setdefault("sha256", sha256) != sha256:
            return [RecordError(record, f"{location}.sha256", f"does not match {relative}")]
        raw.setdefault("sample_rate", sample_rate)
        raw.setdefault("duration_s", duration_s)
        if destination.exists() and destination != source and sha256_file(destination) != sha256:
            message = "a different file is already stored at this path in the project"
            return [RecordError(record, f"{location}.path", message)]
        self.copies[relative] = source
        return []

    def validate(self, model: type[BaseModel], data: Any, record: str) -> tuple[Any, list]:
        try:
            return model.model_validate(data, context={"k": self.store.k}), []
        except ValidationError as error:
            return None, errors_of(error, record)

    def check_stored(self, kind: str, record: Any, label: str) -> None:
        getter = {"dialogue": self.store.dialogue, "task": self.store.task}[kind]
        try:
            stored = getter(record.id)
        except KeyError:
            return
        if stored != record:
            message = f"a different {kind} with this id is already stored; use another id"
            self.report.errors.append(RecordError(label, "id", message))


def read_jsonl(path: Path) -> list[tuple[str, Any]]:
    """(record label, parsed JSON or RecordError) for every non-blank line."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    out = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            label = f"{path.name} line {number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                out.append((label, RecordError(label, "<line>", f"invalid JSON: {error.msg}")))
                continue
            if not isinstance(data, dict):
                out.append((label, RecordError(label, "<line>", "a record must be a JSON object")))
                continue
            out.append((describe_record(label, data), data))
    return out


def import_jsonl(
    store: Store,
    *,
    dialogues: Path | None = None,
    tasks: Path | None = None,
    media_dir: Path | None = None,
    rubric_dir: Path = LIBRARY_DIR,
    dry_run: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Validate everything, then import all of it or nothing (see the module docstring)."""
    if dialogues is None and tasks is None:
        raise ValueError("give a dialogues file, a tasks file, or both")
    records = {
        "dialogue": read_jsonl(dialogues) if dialogues else [],
        "task": read_jsonl(tasks) if tasks else [],
    }
    media = Path(media_dir or (dialogues or tasks).parent)
    return import_records(
        store, records, media_dir=media, rubric_dir=rubric_dir, dry_run=dry_run, progress=progress
    )


def import_records(
    store: Store,
    records: dict[str, list[tuple[str, Any]]],
    *,
    media_dir: Path,
    rubric_dir: Path = LIBRARY_DIR,
    dry_run: bool = False,
    progress: bool = False,
    then: Callable[[Transaction], None] | None = None,
    move_clips: bool = False,
) -> ImportReport:
    """Import raw ``records["dialogue"]`` and ``records["task"]`` ((label, data or
    RecordError) pairs, audio paths relative to `media_dir`): all of them or nothing.

    `then` runs inside the same transaction once the records are in (it may raise `RollBack`
    to leave without writing); with `then`, a dry run also goes that far and rolls back, so
    what `then` checks against the new records is checked too. `move_clips`: the files under
    `media_dir` are the caller's own staging copies, moved into the project, not copied.
    """
    report = ImportReport(dry_run=dry_run)
    # A rubric already in the store wins over the library's copy: stored judgments were made
    # under it, and changing it under them would change what their scores mean.
    library = load_library(rubric_dir) | {rubric.id: rubric for rubric in store.rubrics()}
    importer = _Importer(store, Path(media_dir), library, report)

    _validate(importer, records, progress)
    needed = sorted({t.rubric_id for t in report.tasks if t.rubric_id is not None})
    report.rubrics = [importer.library[rubric_id] for rubric_id in needed]
    report.audio_files = len(importer.copies)
    if report.errors and not dry_run:
        raise ImportRejected(report)
    if report.errors or (dry_run and then is None):
        return report
    kinds = {"rubrics": report.rubrics, "dialogues": report.dialogues, "tasks": report.tasks}
    try:
        with store.transaction() as tx:
            added = {kind: sum(map(tx.add_record, batch)) for kind, batch in kinds.items()}
            if then is not None:
                then(tx)
            if dry_run:
                raise RollBack
            # The clips go in last, inside the transaction: a failure before this point
            # leaves no file behind, and records are never committed without their clips.
            for relative, source_file in tqdm(
                sorted(importer.copies.items()),
                desc="copying audio",
                unit="file",
                disable=not progress,
            ):
                destination = resolve_media_path(store.media_root, relative)
                if move_clips:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source_file, destination)
                else:
                    _copy_atomically(source_file, destination)
    except RollBack:
        return report
    report.added = added
    return report


def _validate(importer: _Importer, records: dict[str, list], progress: bool) -> None:
    """Validate each raw record (audio filled in from its file) into ``importer.report``:
    the good ones into its dialogues and tasks, every problem into its errors."""
    report = importer.report
    lines = {"dialogue": records.get("dialogue", []), "task": records.get("task", [])}
    total = len(lines["dialogue"]) + len(lines["task"])
    bar = tqdm(total=total, desc="validating", unit="record", disable=not progress)
    seen: dict[str, set[str]] = {"dialogue": set(), "task": set()}
    turns_of: dict[str, int | None] = {}  # dialogue id -> turns; None: the record is bad
    for kind, model in (("dialogue", Dialogue), ("task", Task)):
        for label, data in lines[kind]:
            bar.update()
            if isinstance(data, RecordError):
                report.errors.append(data)
                continue
            audio_errors = _fill_record_audio(importer, kind, data, label)
            record, model_errors = importer.validate(model, data, label)
            # a reference whose file failed was not filled in: its missing fields are no news
            failed = {error.field.rsplit(".", 1)[0] for error in audio_errors}
            report.errors += audio_errors
            report.errors += [e for e in model_errors if e.field.rsplit(".", 1)[0] not in failed]
            if record is None or audio_errors:
                if kind == "dialogue" and isinstance(data.get("id"), str):
                    turns_of.setdefault(data["id"], None)
                continue
            if record.id in seen[kind]:
                report.errors.append(RecordError(label, "id", f"duplicate {kind} id in the file"))
                continue
            seen[kind].add(record.id)
            importer.check_stored(kind, record, label)
            if kind == "dialogue":
                turns_of[record.id] = len(record.turns)
                report.dialogues.append(record)
            elif _check_task_links(importer, record, label, turns_of):
                report.tasks.append(record)
    bar.close()


def _fill_record_audio(importer: _Importer, kind: str, data: dict, label: str) -> list[RecordError]:
    errors: list[RecordError] = []
    if kind == "dialogue" and isinstance(data.get("turns"), list):
        for index, turn in enumerate(data["turns"]):
            if isinstance(turn, dict) and turn.get("audio") is not None:
                errors += importer.fill_audio(turn["audio"], label, f"turns.{index}.audio")
    if kind == "task":
        for side in ("policy", "reference"):
            candidate = data.get(side)
            if isinstance(candidate, dict) and candidate.get("audio") is not None:
                errors += importer.fill_audio(candidate["audio"], label, f"{side}.audio")
    return errors


def _check_task_links(
    importer: _Importer, task: Task, label: str, turns_of: dict[str, int | None]
) -> bool:
    """The task's dialogue, turn and rubric must exist (in this import or in the store)."""
    errors = importer.report.errors
    n_errors = len(errors)
    n_turns = turns_of.get(task.dialogue_id)
    if task.dialogue_id in turns_of and n_turns is None:
        message = f"dialogue {task.dialogue_id!r} is itself invalid (see its errors)"
        errors.append(RecordError(label, "dialogue_id", message))
    elif n_turns is None:
        try:
            n_turns = len(importer.store.dialogue(task.dialogue_id).turns)
        except KeyError:
            errors.append(
                RecordError(label, "dialogue_id", f"unknown dialogue {task.dialogue_id!r}")
            )
    if n_turns is not None and task.turn_index >= n_turns:
        message = (
            f"{task.turn_index} is past the last turn of {task.dialogue_id!r} ({n_turns} turns)"
        )
        errors.append(RecordError(label, "turn_index", message))
    if task.rubric_id is not None and task.rubric_id not in importer.library:
        message = f"unknown rubric {task.rubric_id!r}; known: {', '.join(sorted(importer.library))}"
        errors.append(RecordError(label, "rubric_id", message))
    return len(errors) == n_errors


def _copy_atomically(source: Path, destination: Path) -> None:
    if destination.exists() and destination.resolve() == source.resolve():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".import-")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
