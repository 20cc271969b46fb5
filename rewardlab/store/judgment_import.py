"""Import judgments made elsewhere: an earlier round, another tool, a vendor's delivery.

    rewardlab import PROJECT --judgments judgments.jsonl|.parquet [--annotator-role R] [--dry-run]

One judgment per row, shaped like `schema.Judgment` less what the store fills in (when it was
received): ``id``, ``task_id``, ``annotator_id``, ``level`` (-K..K, positive when the policy
response is better, whatever order the annotator saw), and optionally ``rubric_scores``,
``rationale``, ``time_spent_s``, ``listened``, ``shown_order`` (default ``policy_first``) and
``created_at`` (default: now). A file written by ``rewardlab export --format jsonl|parquet``
imports as it is: its ``judgment_id`` is the id, its JSON-text columns are parsed, and its task
and dialogue columns (context for readers) are skipped.

Annotators the project does not know are created on first sight, with ``--annotator-role``
(default ``annotator``) and no password: they cannot log in until an admin sets one.

All or nothing, in one store transaction: each row is checked (its fields, its level against
the project's K, its task, its rubric scores against the task's rubric, one judgment per
annotator and task) and stored; any bad row rolls the whole file back, and the report names
every bad row and field. An id already stored with the same content is left as it is (a file
imported twice changes nothing); with other content it is refused, naming the fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from pydantic import ValidationError
from tqdm.auto import tqdm

from rewardlab.schema import Judgment, RecordError, errors_of
from rewardlab.store.export import JSON_COLUMNS, TASK_SCHEMA
from rewardlab.store.importer import read_jsonl
from rewardlab.store.store import Store, StoreError
from rewardlab.store.transaction import RollBack, Transaction

# columns of an export that describe the task, the dialogue or the store, not the judgment
EXPORT_CONTEXT = (set(TASK_SCHEMA) - {"task_id"}) | {"received_at", "k"}


@dataclass
class JudgmentImportReport:
    dry_run: bool
    rows: int = 0
    created: int = 0
    unchanged: int = 0
    new_annotators: list[str] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if self.errors:
            lines = [f"{len(self.errors)} bad rows of {self.rows}; nothing was imported:"]
            return "\n".join(lines + [f"  {error}" for error in self.errors])
        people = f", {len(self.new_annotators)} new annotators" if self.new_annotators else ""
        if self.dry_run:
            return f"dry run: {self.rows} judgments are valid{people}; nothing was written"
        return (
            f"imported {self.rows} judgments: {self.created} new, {self.unchanged} already"
            f" stored{people}"
        )


class JudgmentImportRejected(StoreError):
    def __init__(self, report: JudgmentImportReport):
        self.report = report
        super().__init__(report.summary())


def read_rows(path: Path) -> list[tuple[str, dict | RecordError]]:
    """(row label, raw row or RecordError) of a JSONL or Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return read_jsonl(path)
    if path.suffix.lower() != ".parquet":
        raise ValueError(f"{path}: judgments come as .jsonl or .parquet")
    frame = pl.read_parquet(path)
    return [(f"{path.name} row {i + 1}", row) for i, row in enumerate(frame.iter_rows(named=True))]


def judgment_fields(row: dict, label: str) -> dict:
    """A row in the data model's shape: an export's names and JSON text undone, its context
    columns and empty optional values left out."""
    data = {k: v for k, v in row.items() if k not in EXPORT_CONTEXT and v is not None}
    if "judgment_id" in data:
        if "id" in data and data["id"] != data["judgment_id"]:
            raise RecordError(label, "judgment_id", "differs from the row's id")
        data["id"] = data.pop("judgment_id")
    for column in JSON_COLUMNS:
        if isinstance(data.get(column), str):
            try:
                data[column] = json.loads(data[column])
            except json.JSONDecodeError as error:
                raise RecordError(label, column, f"invalid JSON: {error.msg}") from None
    return data


def parse_judgment(row: dict, label: str, k: int) -> Judgment:
    data = judgment_fields(row, label)
    try:
        return Judgment.model_validate(data, context={"k": k})
    except ValidationError as error:
        raise errors_of(error, label)[0] from None


def read_judgments(path: Path) -> list[Judgment]:
    """The judgments of an export (Parquet or JSONL), checked against the K the file carries;
    the first bad row raises its RecordError."""
    judgments = []
    for label, row in read_rows(path):
        if isinstance(row, RecordError):
            raise row
        judgments.append(parse_judgment(row, label, row.get("k")))
    return judgments


def import_judgments(
    store: Store,
    path: Path,
    *,
    annotator_role: str = "annotator",
    dry_run: bool = False,
    progress: bool = False,
) -> JudgmentImportReport:
    """Check every row and store them all, or nothing (see the module docstring)."""
    report = JudgmentImportReport(dry_run=dry_run)
    rows = read_rows(path)
    try:
        with store.transaction() as tx:
            store_judgment_rows(tx, rows, report, annotator_role=annotator_role, progress=progress)
            if report.errors or dry_run:
                raise RollBack
    except RollBack:
        pass
    if report.errors and not dry_run:
        raise JudgmentImportRejected(report)
    return report


def store_judgment_rows(
    tx: Transaction,
    rows: list[tuple[str, dict | RecordError]],
    report: JudgmentImportReport,
    *,
    annotator_role: str = "annotator",
    progress: bool = False,
) -> None:
    """Check and write each row inside `tx`, counting into `report`; a bad row is added to
    ``report.errors`` and skipped. The caller rolls `tx` back when there are errors."""
    report.rows += len(rows)
    seen: dict[str, str] = {}  # judgment id -> the row that had it first
    for label, row in tqdm(rows, desc="judgments", unit="row", disable=not progress):
        try:
            if isinstance(row, RecordError):
                raise row
            judgment = parse_judgment(row, label, tx.k)
            if judgment.id in seen:
                raise RecordError(label, "id", f"also the id of {seen[judgment.id]}")
            seen[judgment.id] = label
            if not tx.has_annotator(judgment.annotator_id):
                tx.add_annotator(judgment.annotator_id, role=annotator_role)
                report.new_annotators.append(judgment.annotator_id)
            created = tx.submit_judgment(judgment).created
        except RecordError as error:
            report.errors.append(_relabelled(error, label))
            continue
        report.created += created
        report.unchanged += not created


def _relabelled(error: RecordError, label: str) -> RecordError:
    """The store names a judgment by its id; the report names the row too."""
    if error.record.startswith(label):
        return error
    return RecordError(f"{label} ({error.record})", error.field, error.message)
