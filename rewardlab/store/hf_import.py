"""Import an audio dataset in the Hugging Face ecosystem's own format, through a mapping file.

    rewardlab import PROJECT --hf PATH [--map MAP.yaml] [--split S] [--annotator-role R] [--dry-run]

PATH is a folder written by ``save_to_disk`` (a ``Dataset``, or a ``DatasetDict`` with
``--split``), one Parquet file, or a folder of Parquet files. ``Audio`` columns (and lists
of them) are read as stored, never decoded: a clip is its embedded bytes, or a path (absolute,
or relative to PATH's folder), or a plain text column holding such a path. Each row of the
dataset may give one dialogue, one task and one judgment, as the mapping file says; a dialogue
or task named by many rows (every judgment row repeats its task) must be the same in each.

The mapping file (YAML) has up to three sections, ``dialogue``, ``task``, ``judgment``; each
maps a field of the data model (`schema.py`) to where its value comes from:

    column_name                        the row's value in that column
    {value: 0}                         a constant
    {column: c, json: true}            the column's JSON text, parsed
    {column: c, map: {a: 2, b: -2}}    the column's value translated (unlisted values: an error)
    {format: "{conv}.t{turn}"}         text from columns (Python's str.format)

A value that comes out null leaves the field out (its default applies); a row whose ``id``
comes out null has no record of that kind (so one dataset can hold rows of each kind). Audio
is mapped as ``clip_column`` or ``{column: clip_column, path: path_column}``: the path column
says where the clip goes under the project's media root; without one it goes to
``hf/<sha256>.<ext>``. ``dialogue.turns`` is either a list of turns,
``[{role: user, text: question, audio: question_audio}, ...]`` (``role`` is literal), or
``{column: c, json: true, audio: clips_column}``: a column holding the turns (role, text,
audio reference) whose clips are the list column's, in turn order. ``task.dialogue_id`` and
``judgment.task_id`` default to the same row's dialogue and task ids. See `hf_map.BUILT_IN_MAPS`
for the map of ``rewardlab export --format hf`` (used when ``--map`` is not given), and
README's "Importing an HF dataset" for a flat dataset's.

Then it goes as the JSONL import does: every record validated and every clip read before
anything is written; one transaction for dialogues, tasks and judgments (annotators created
on first sight); any bad row and nothing is imported, and the report names every bad row and
field. A column the map names that the dataset lacks is an error before any row is read.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
from tqdm.auto import tqdm

from rewardlab.audio import AudioError, resolve_media_path
from rewardlab.rubrics import LIBRARY_DIR
from rewardlab.schema import RecordError, describe_record
from rewardlab.store.hf_map import AudioValue, DatasetMap, TurnsColumn, Value
from rewardlab.store.importer import ImportReport, import_records
from rewardlab.store.judgment_import import JudgmentImportReport, store_judgment_rows
from rewardlab.store.store import Store, StoreError
from rewardlab.store.transaction import RollBack, Transaction

# ---- the dataset -------------------------------------------------------------------------------


def load_hf_dataset(path: Path, split: str | None = None):
    """A saved dataset folder (``save_to_disk``) or Parquet file(s) as a `datasets.Dataset`."""
    from datasets import Dataset, DatasetDict, load_from_disk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such dataset: {path}")
    if path.is_dir() and any(
        (path / name).exists() for name in ("state.json", "dataset_dict.json")
    ):
        dataset = load_from_disk(str(path))
        if isinstance(dataset, DatasetDict):
            names = ", ".join(dataset)
            if split is None and len(dataset) != 1:
                raise ValueError(f"{path} holds the splits {names}: choose one with --split")
            if split is not None and split not in dataset:
                raise ValueError(f"{path} has no split {split!r}; its splits: {names}")
            dataset = dataset[split or next(iter(dataset))]
        return dataset
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files or any(f.suffix.lower() != ".parquet" for f in files):
        raise ValueError(
            f"{path}: give a folder written by save_to_disk, a .parquet file, or a folder"
            " of .parquet files"
        )
    return Dataset.from_parquet([str(f) for f in files])


def undecoded_rows(dataset, batch_size: int = 512) -> Iterator[dict]:
    """The dataset's rows as Arrow stores them: an ``Audio`` value (decoded or not, in any
    datasets version) is its storage, ``{"bytes": ..., "path": ...}``; nothing is decoded."""
    for table in dataset.with_format("arrow").iter(batch_size=batch_size):
        yield from table.to_pylist()


@dataclass
class _Clips:
    """Stages every mapped clip as a file under `folder`, at its media path."""

    folder: Path
    source_dir: Path
    staged: dict[str, str] = field(default_factory=dict)  # media path -> sha256

    def stage(self, clip: Any, media_path: str | None, label: str, where: str) -> str:
        if isinstance(clip, str):
            clip = {"bytes": None, "path": clip}
        if not isinstance(clip, dict) or not (clip.get("bytes") or clip.get("path")):
            raise RecordError(label, where, "not an audio value (bytes or a path)")
        data = clip.get("bytes")
        if not data:
            source = Path(clip["path"])
            source = source if source.is_absolute() else self.source_dir / source
            if not source.is_file():
                raise RecordError(label, where, f"no such audio file: {source}")
            data = source.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        if media_path is None:
            media_path = f"hf/{sha256[:32]}{_suffix(clip.get('path'), data)}"
        if self.staged.get(media_path) == sha256:  # rows repeat their dialogue's clips
            return media_path
        try:
            target = resolve_media_path(self.folder, media_path)
        except AudioError as error:
            raise RecordError(label, where, str(error)) from None
        if self.staged.setdefault(media_path, sha256) != sha256:
            message = f"another clip of this dataset is mapped to {media_path!r}"
            raise RecordError(label, where, message)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return media_path


def _suffix(original: str | None, data: bytes) -> str:
    if original and Path(original).suffix:
        return Path(original).suffix.lower()
    try:
        return "." + sf.info(io.BytesIO(data)).format.lower()
    except sf.LibsndfileError:
        return ""  # not audio: the import's probe names the record


# ---- rows -> records ---------------------------------------------------------------------------


@dataclass
class HFImportReport:
    dry_run: bool
    rows: int = 0
    records: ImportReport | None = None
    judgments: JudgmentImportReport | None = None
    errors: list[RecordError] = field(default_factory=list)  # rows the map could not read

    @property
    def all_errors(self) -> list[RecordError]:
        nested = [r.errors for r in (self.records, self.judgments) if r is not None]
        return self.errors + [e for errors in nested for e in errors]

    @property
    def ok(self) -> bool:
        return not self.all_errors

    def summary(self) -> str:
        errors = self.all_errors
        if errors:
            lines = [f"{len(errors)} bad rows or fields in {self.rows} rows; nothing was imported:"]
            return "\n".join(lines + [f"  {error}" for error in errors])
        records, judged = self.records, self.judgments
        head = (
            f"{self.rows} rows: {len(records.dialogues)} dialogues, {len(records.tasks)} tasks,"
            f" {records.audio_files} audio files, {judged.rows if judged else 0} judgments"
        )
        people = f", {len(judged.new_annotators)} new annotators" if judged else ""
        if self.dry_run:
            return f"dry run: {head} are valid{people}; nothing was written"
        added = ", ".join(f"{n} new {kind}" for kind, n in records.added.items())
        if judged:
            added += f", {judged.created} new judgments"
        return f"imported {head} ({added}{people})"


class HFImportRejected(StoreError):
    def __init__(self, report: HFImportReport):
        self.report = report
        super().__init__(report.summary())


@dataclass
class _Records:
    dialogue: list[tuple[str, Any]] = field(default_factory=list)
    task: list[tuple[str, Any]] = field(default_factory=list)
    judgment: list[tuple[str, Any]] = field(default_factory=list)
    first: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)

    def add(self, kind: str, label: str, record: dict) -> None:
        """One record per id: a later row naming the same id must give the same record."""
        key = (kind, record["id"])
        if key in self.first:
            first_label, first = self.first[key]
            if first != record:
                fields = sorted(
                    k for k in first.keys() | record.keys() if first.get(k) != record.get(k)
                )
                message = f"differs from the {kind} of {first_label} in {', '.join(fields)}"
                raise RecordError(label, f"{kind}.{fields[0]}", message)
            return
        self.first[key] = (label, record)
        getattr(self, kind).append((describe_record(label, record), record))


def _read_fields(spec: dict[str, Value], row: dict, label: str) -> dict:
    out = {}
    for name, value in spec.items():
        got = value.read(row, label)
        if got is not None:
            out[name] = got
    return out


def _read_audio(audio: AudioValue, row: dict, clips: _Clips, label: str) -> dict | None:
    clip = row[audio.column]
    if clip is None:
        return None
    media_path = audio.path.read(row, label) if audio.path else None
    return {"path": clips.stage(clip, media_path, label, audio.column)}


def _dialogue(spec: dict, row: dict, clips: _Clips, label: str) -> dict | None:
    dialogue_id = spec["id"].read(row, label)
    if dialogue_id is None:
        return None
    turns_spec = spec["turns"]
    if isinstance(turns_spec, TurnsColumn):
        turns = turns_spec.turns.read(row, label)
        if not isinstance(turns, list):
            raise RecordError(label, turns_spec.turns.column, "give a list of turns")
        turns = [dict(turn) if isinstance(turn, dict) else turn for turn in turns]
        if turns_spec.audio is not None:
            column = turns_spec.audio.column
            audio_list = list(row[column] or [])
            heard = [t for t in turns if isinstance(t, dict) and t.get("audio")]
            if len(heard) != len(audio_list):
                message = f"{len(audio_list)} clips for {len(heard)} turns with audio"
                raise RecordError(label, column, message)
            for index, (turn, clip) in enumerate(zip(heard, audio_list, strict=True)):
                reference = dict(turn["audio"]) if isinstance(turn["audio"], dict) else {}
                reference["path"] = clips.stage(
                    clip, reference.get("path"), label, f"{column}.{index}"
                )
                turn["audio"] = reference
    else:
        turns = []
        for turn_spec in turns_spec:
            turn = {"role": turn_spec["role"]}
            if "text" in turn_spec:
                turn["text"] = turn_spec["text"].read(row, label)
            if "audio" in turn_spec:
                turn["audio"] = _read_audio(turn_spec["audio"], row, clips, label)
            turns.append(turn)
    record = {"id": dialogue_id, "turns": turns}
    metadata = spec.get("metadata")
    if isinstance(metadata, list):
        record["metadata"] = {value.column: row[value.column] for value in metadata}
    elif metadata is not None and (value := metadata.read(row, label)) is not None:
        record["metadata"] = value
    return record


def _task(spec: dict, row: dict, clips: _Clips, label: str, dialogue_id: str | None):
    plain = {k: v for k, v in spec.items() if k not in ("policy", "reference")}
    record = _read_fields(plain, row, label)
    if "id" not in record:
        return None
    if "dialogue_id" not in record and dialogue_id is not None:
        record["dialogue_id"] = dialogue_id
    for side in ("policy", "reference"):
        if side not in spec:
            continue
        candidate = _read_fields({k: v for k, v in spec[side].items() if k != "audio"}, row, label)
        if "audio" in spec[side]:
            candidate["audio"] = _read_audio(spec[side]["audio"], row, clips, label)
        record[side] = candidate
    return record


def build_records(dataset, dataset_map: DatasetMap, clips: _Clips, name: str, progress=False):
    """(records by kind, errors): each row read through the map, clips staged."""
    records, errors = _Records(), []
    rows = undecoded_rows(dataset)
    for index, row in enumerate(
        tqdm(rows, total=dataset.num_rows, desc="reading rows", unit="row", disable=not progress)
    ):
        label = f"{name} row {index}"
        try:
            dialogue = (
                _dialogue(dataset_map.dialogue, row, clips, label) if dataset_map.dialogue else None
            )
            if dialogue is not None:
                records.add("dialogue", label, dialogue)
            task = (
                _task(dataset_map.task, row, clips, label, dialogue and dialogue["id"])
                if dataset_map.task
                else None
            )
            if task is not None:
                records.add("task", label, task)
            if dataset_map.judgment:
                judgment = _read_fields(dataset_map.judgment, row, label)
                if "id" in judgment:
                    if "task_id" not in judgment and task is not None:
                        judgment["task_id"] = task["id"]
                    records.add("judgment", label, judgment)
        except RecordError as error:
            errors.append(error)
        except (KeyError, IndexError, ValueError) as error:  # a format naming a bad field
            errors.append(RecordError(label, "<map>", f"{type(error).__name__}: {error}"))
    return records, errors


def import_hf(
    store: Store,
    path: Path,
    map_path: Path | str = "rewardlab",
    *,
    split: str | None = None,
    annotator_role: str = "annotator",
    rubric_dir: Path = LIBRARY_DIR,
    dry_run: bool = False,
    progress: bool = False,
) -> HFImportReport:
    """Read the dataset through the map and import all of it or nothing (module docstring)."""
    dataset_map = DatasetMap.load(map_path)
    dataset = load_hf_dataset(Path(path), split)
    dataset_map.check_columns(list(dataset.column_names))
    report = HFImportReport(dry_run=dry_run, rows=dataset.num_rows)
    source_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    staging = Path(tempfile.mkdtemp(dir=store.root, prefix=".hf-import-"))
    try:
        clips = _Clips(staging, source_dir)
        records, report.errors = build_records(
            dataset, dataset_map, clips, Path(path).name, progress
        )
        report.judgments = JudgmentImportReport(dry_run=dry_run) if records.judgment else None

        def store_judgments(tx: Transaction) -> None:
            if report.judgments is not None:
                store_judgment_rows(
                    tx,
                    records.judgment,
                    report.judgments,
                    annotator_role=annotator_role,
                    progress=progress,
                )
            if report.errors or (report.judgments and report.judgments.errors):
                raise RollBack

        # With rows already refused, the rest is still checked (a dry run lists everything).
        report.records = import_records(
            store,
            {"dialogue": records.dialogue, "task": records.task},
            media_dir=staging,
            rubric_dir=rubric_dir,
            dry_run=dry_run or bool(report.errors),
            progress=progress,
            then=store_judgments,
            move_clips=True,  # the staged files are this import's own
        )
    except StoreError as error:  # ImportRejected: the records' own errors
        report.records = getattr(error, "report", report.records)
        if report.records is None:
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not report.ok and not dry_run:
        raise HFImportRejected(report)
    return report
