"""Export a project's judgments, one row per judgment with its task, via polars.

    rewardlab export PROJECT --format parquet|jsonl|hf --out PATH
    rewardlab export PROJECT --format trl-preference --out prefs.parquet   (TRL's reward / DPO)

Every row carries the judgment (level in canonical policy-vs-reference order, the order the
annotator saw, rubric scores, rationale, listening), the task (both candidates, rubric, gold
answer, metadata) and the dialogue history up to the task's turn. Nested values (rubric scores,
listening, the history, task metadata) are JSON strings so the Parquet schema stays flat and
stable. Audio columns hold paths relative to the project's media root. The HF dataset holds
the whole project (`project_frame`: every judgment, then unjudged tasks and task-less
dialogues, each row with its whole dialogue) and turns the clips into `Audio(decode=False)`
columns: absolute paths in memory (`to_hf_dataset`); saved with `export_hf`, `datasets` embeds
the clips' bytes, so the folder stands on its own, and ``rewardlab import --hf`` reads it back
as it was. Decode with soundfile (``soundfile.read(io.BytesIO(clip["bytes"]))``), not
datasets' torchcodec.
Files are written to a temporary name and renamed, so a crash never leaves half an export.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl

from rewardlab.store.store import Store

JUDGMENT_FIELDS = {
    "id": "judgment_id",
    "task_id": "task_id",
    "annotator_id": "annotator_id",
    "level": "level",
    "shown_order": "shown_order",
    "rubric_scores": "rubric_scores",
    "rationale": "rationale",
    "time_spent_s": "time_spent_s",
    "listened": "listened",
    "created_at": "created_at",
}
JSON_COLUMNS = ("rubric_scores", "listened")
JUDGMENT_SCHEMA = {
    "judgment_id": pl.String,
    "task_id": pl.String,
    "annotator_id": pl.String,
    "level": pl.Int8,
    "shown_order": pl.String,
    "rubric_scores": pl.String,
    "rationale": pl.String,
    "time_spent_s": pl.Float64,
    "listened": pl.String,
    "created_at": pl.String,  # ISO 8601, parsed below
    "received_at": pl.String,
}
# Bodies were validated on the way in: pulling fields out in SQL keeps 1M rows out of Python
# objects (nested values come back as compact JSON text). Columns follow JUDGMENT_SCHEMA.
_OWN_COLUMNS = ("id", "task_id", "annotator_id", "level")  # the table has these as columns
JUDGMENT_SQL = "SELECT {} FROM judgments ORDER BY rowid".format(
    ", ".join(
        [
            *_OWN_COLUMNS,
            *(
                f"json_extract(body, '$.{key}')"
                for key in JUDGMENT_FIELDS
                if key not in _OWN_COLUMNS
            ),
            "received_at",
        ]
    )
)
_CANDIDATE_SCHEMA = {
    "text": pl.String,
    "reasoning": pl.String,
    "source": pl.String,
    "audio": pl.String,
}
TASK_SCHEMA = {
    "task_id": pl.String,
    "dialogue_id": pl.String,
    "turn_index": pl.Int32,
    "rubric_id": pl.String,
    "gold": pl.Boolean,
    "gold_level": pl.Int8,
    **{
        f"{side}_{key}": t
        for side in ("policy", "reference")
        for key, t in _CANDIDATE_SCHEMA.items()
    },
    "history": pl.String,  # JSON: the turns up to and including turn_index
    "history_audio": pl.List(pl.String),
    "task_metadata": pl.String,
    "dialogue_metadata": pl.String,
}


def judgments_frame(store: Store) -> pl.DataFrame:
    """All judgments joined with their tasks and dialogue histories."""
    empty = pl.DataFrame(schema=JUDGMENT_SCHEMA)
    batches = (
        pl.DataFrame(rows, schema=list(JUDGMENT_SCHEMA), orient="row").cast(JUDGMENT_SCHEMA)
        for rows in store.snapshot(JUDGMENT_SQL)
    )
    judgments = pl.concat([empty, *batches]).with_columns(
        pl.col("created_at", "received_at").str.to_datetime(time_zone="UTC", time_unit="us"),
        pl.lit(store.k, dtype=pl.Int8).alias("k"),
    )
    return judgments.join(tasks_frame(store), on="task_id", how="left")


def tasks_frame(store: Store) -> pl.DataFrame:
    """One row per task with its candidates and the dialogue history up to its turn."""
    dialogues = {
        dialogue_id: json.loads(body)
        for rows in store.snapshot("SELECT id, body FROM dialogues")
        for dialogue_id, body in rows
    }
    records = []
    for rows in store.snapshot("SELECT body FROM tasks ORDER BY id"):
        for (body,) in rows:
            task = json.loads(body)
            dialogue = dialogues[task["dialogue_id"]]
            history = dialogue["turns"][: task["turn_index"] + 1]
            records.append(
                {
                    "task_id": task["id"],
                    "dialogue_id": task["dialogue_id"],
                    "turn_index": task["turn_index"],
                    "rubric_id": task["rubric_id"],
                    "gold": task["gold"],
                    "gold_level": task["gold_level"],
                    **_candidate_columns(task["policy"], "policy"),
                    **_candidate_columns(task["reference"], "reference"),
                    "history": json.dumps(history),
                    "history_audio": [t["audio"]["path"] for t in history if t["audio"]],
                    "task_metadata": json.dumps(task["metadata"]),
                    "dialogue_metadata": json.dumps(dialogue["metadata"]),
                }
            )
    return pl.DataFrame(records, schema=TASK_SCHEMA)


def _candidate_columns(candidate: dict, side: str) -> dict[str, str | None]:
    audio = candidate["audio"]
    return {
        f"{side}_text": candidate["text"],
        f"{side}_reasoning": candidate["reasoning"],
        f"{side}_source": candidate["source"],
        f"{side}_audio": audio["path"] if audio else None,
    }


def _write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    try:
        staged = temporary / path.name
        write(staged)
        if path.is_dir():  # a folder cannot be replaced in one step: move the old one aside
            os.replace(path, temporary / "previous")
        os.replace(staged, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return path


def export_parquet(store: Store, path: Path) -> Path:
    frame = judgments_frame(store)
    return _write_atomically(path, lambda staged: frame.write_parquet(staged))


def export_jsonl(store: Store, path: Path) -> Path:
    frame = judgments_frame(store)
    return _write_atomically(path, lambda staged: frame.write_ndjson(staged))


def dialogues_frame(store: Store) -> pl.DataFrame:
    """One row per dialogue: its whole turns and metadata as JSON, and its clips in turn order."""
    records = []
    for rows in store.snapshot("SELECT id, body FROM dialogues ORDER BY id"):
        for dialogue_id, body in rows:
            dialogue = json.loads(body)
            records.append(
                {
                    "dialogue_id": dialogue_id,
                    "dialogue_turns": json.dumps(dialogue["turns"]),
                    "dialogue_metadata": json.dumps(dialogue["metadata"]),
                    "dialogue_audio": [t["audio"]["path"] for t in dialogue["turns"] if t["audio"]],
                }
            )
    return pl.DataFrame(records, schema=DIALOGUE_SCHEMA)


DIALOGUE_SCHEMA = {
    "dialogue_id": pl.String,
    "dialogue_turns": pl.String,  # JSON: every turn, audio references relative to the media root
    "dialogue_metadata": pl.String,
    "dialogue_audio": pl.List(pl.String),
}


def project_frame(store: Store) -> pl.DataFrame:
    """The whole project, one row per judgment as in `judgments_frame`, then one row per task
    nobody has judged (judgment columns null), then one per dialogue without tasks (task
    columns null too); every row carries its whole dialogue (`DIALOGUE_SCHEMA`) and the
    candidates' clip paths as text (``policy_audio_path``, ``reference_audio_path``)."""
    judged = judgments_frame(store)
    tasks = tasks_frame(store)
    dialogues = dialogues_frame(store)
    unjudged = tasks.join(judged.select("task_id"), on="task_id", how="anti")
    bare = dialogues.select("dialogue_id").join(
        tasks.select("dialogue_id"), on="dialogue_id", how="anti"
    )
    # every row takes its dialogue's metadata from `dialogues`, task-less rows included
    frame = pl.concat([judged, unjudged, bare], how="diagonal").drop("dialogue_metadata")
    return frame.with_columns(
        pl.lit(store.k, dtype=pl.Int8).alias("k"),
        pl.col("policy_audio").alias("policy_audio_path"),
        pl.col("reference_audio").alias("reference_audio_path"),
    ).join(dialogues, on="dialogue_id", how="left", maintain_order="left")


def to_hf_dataset(store: Store):
    """`project_frame` as a `datasets.Dataset` with `Audio(decode=False)` columns.

    Rows of unjudged tasks and of task-less dialogues have a null ``level``: filter them out
    to train on judgments (``dataset.filter(lambda row: row["level"] is not None)``). The
    ``*_path`` columns and the dialogue's JSON keep each clip's path relative to the media
    root, which `save_to_disk` would cut to its file name; ``rewardlab import --hf`` uses them
    to put every clip back where it was.
    """
    from datasets import Audio, Dataset, List

    prefix = pl.lit(f"{store.media_root.resolve()}/")

    def clip(path: pl.Expr) -> pl.Expr:  # the storage layout of datasets' Audio feature
        return pl.struct(
            pl.lit(None, dtype=pl.Binary).alias("bytes"), (prefix + path).alias("path")
        )

    frame = project_frame(store).with_columns(
        # a candidate without audio stays null
        *[
            pl.when(pl.col(c).is_not_null()).then(clip(pl.col(c))).alias(c)
            for c in ("policy_audio", "reference_audio")
        ],
        *[pl.col(c).list.eval(clip(pl.element())) for c in ("history_audio", "dialogue_audio")],
    )
    dataset = Dataset.from_polars(frame)
    for column in ("policy_audio", "reference_audio"):
        dataset = dataset.cast_column(column, Audio(decode=False))
    for column in ("history_audio", "dialogue_audio"):
        dataset = dataset.cast_column(column, List(Audio(decode=False)))
    return dataset


def export_hf(store: Store, path: Path) -> Path:
    dataset = to_hf_dataset(store)
    return _write_atomically(path, lambda staged: dataset.save_to_disk(str(staged)))


def preference_frame(store: Store) -> pl.DataFrame:
    """One row per judgment that prefers a response, in TRL's conversational preference form.

    ``prompt``: the dialogue up to the task's turn as chat messages (text; an audio turn
    without a transcript has empty content); ``chosen`` / ``rejected``: the preferred and the
    other response as one assistant message each; ``margin``: ``|level|`` (TRL's
    ``RewardTrainer`` adds it inside the Bradley-Terry loss). Ties (level 0) are left out.
    The clips stay beside the text: ``prompt_audio`` (one media path or null per prompt
    message), ``chosen_audio``, ``rejected_audio``, and the judgment's ids and level.
    """
    frame = judgments_frame(store).filter(pl.col("level") != 0)
    policy_wins = pl.col("level") > 0

    def side(prefer_policy: bool, column: str) -> pl.Expr:
        first, second = ("policy", "reference") if prefer_policy else ("reference", "policy")
        return (
            pl.when(policy_wins)
            .then(pl.col(f"{first}_{column}"))
            .otherwise(pl.col(f"{second}_{column}"))
        )

    def message(text: pl.Expr) -> pl.Expr:
        return pl.concat_list(
            pl.struct(pl.lit("assistant").alias("role"), text.fill_null("").alias("content"))
        )

    prompts = [_messages(history) for history in frame["history"]]
    return frame.select(
        pl.Series("prompt", [m for m, _ in prompts], dtype=MESSAGES),
        message(side(True, "text")).alias("chosen"),
        message(side(False, "text")).alias("rejected"),
        pl.col("level").abs().cast(pl.Float64).alias("margin"),
        pl.Series("prompt_audio", [a for _, a in prompts], dtype=pl.List(pl.String)),
        side(True, "audio").alias("chosen_audio"),
        side(False, "audio").alias("rejected_audio"),
        "judgment_id",
        "task_id",
        "annotator_id",
        "level",
        "rubric_id",
    )


MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def _messages(history_json: str) -> tuple[list[dict], list[str | None]]:
    turns = json.loads(history_json)
    messages = [{"role": t["role"], "content": t["text"] or ""} for t in turns]
    return messages, [t["audio"]["path"] if t["audio"] else None for t in turns]


def export_trl_preference(store: Store, path: Path) -> Path:
    """`preference_frame` as Parquet (``.parquet``) or JSON lines (anything else); either
    loads with ``datasets.load_dataset`` for TRL's ``RewardTrainer`` and ``DPOTrainer``."""
    frame = preference_frame(store)
    if Path(path).suffix == ".parquet":
        return _write_atomically(path, lambda staged: frame.write_parquet(staged))
    return _write_atomically(path, lambda staged: frame.write_ndjson(staged))
