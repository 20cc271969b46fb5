"""Argilla as the team backend: push a project's tasks to Argilla, pull the judgments back.

    pip install "rewardlab[argilla]"
    export ARGILLA_API_URL=https://argilla.example.org ARGILLA_API_KEY=...  # an owner's or admin's
    rewardlab argilla push PROJECT [--workspace rewardlab] [--dataset NAME] [--audio-url URL]
    rewardlab argilla pull PROJECT [--workspace rewardlab] [--dataset NAME]

Built on the argilla 2.x SDK (tested against argilla-server 2.8). The SDK is imported inside the
functions that talk to a server, so rewardlab works without the extra.

Mapping (as plain data, no SDK, in `annotation_ui.argilla_records`)
- One Argilla dataset per kind of task, since questions are per dataset: NAME for plain pairwise
  tasks, NAME-rubric-<rubric id> for each rubric's tasks (NAME defaults to the project folder).
- A record per task; its id is the task id, so a push never adds a task twice: records already
  in the dataset are left as they are (with their responses), new tasks are added.
- Fields: ``dialogue``, a ChatField with the history up to the task's turn; ``audio``, a
  CustomField whose template renders one <audio> player per clip (history, then Response 1 and
  2); ``response_1`` and ``response_2``, the candidate replies (markdown TextFields). With
  ``show_transcripts`` off, turns and candidates that have audio show no text.
- The order of the two responses is pseudo-random per task (a hash of its id, so a re-push
  keeps it) and stored in the metadata property ``shown_order``, hidden from annotators.
- ``verdict``: a LabelQuestion with the 2K+1 levels as labels, from "Response 1 much better" to
  "Response 2 much better". Each label carries its level's name, in level order, and its value
  is the signed level as shown ("+2", "0", "-1"); pull undoes the order, so judgments are
  stored policy-vs-reference (the sign flips when the reference was shown first). A
  RatingQuestion would fit worse: its options are integers 0..10 with no names, so the level
  names could only sit in a legend in the description, and a two-sided scale would need an
  offset (-3..3 shown as 1..7) that annotators must decode.
- Rubric criteria: two RatingQuestions each, ``r1__<criterion>`` and ``r2__<criterion>``
  (binary: 0/1, likert5: 1..5), optional because criteria may be left unscored.
- ``rationale``: an optional TextQuestion. Guidelines: the project's guidelines plus the rubric.
- ``TaskDistribution(min_submitted=annotators_per_task)``: the project's overlap.

Pull reads the records with submitted responses (``dataset.records(query)``) and turns each
user's submitted response into a Judgment with id ``argilla:<task id>:<username>``, by the
rewardlab annotator whose id is the Argilla username (created if missing). Pulling twice stores
nothing twice; a response edited in Argilla replaces ours (`Store.upsert_judgment`). Argilla's
SDK gives no response timestamps, so ``created_at`` is when a pull first saw that version. A
response taken back in Argilla (discarded, or back to draft) is not deleted here.

Audio: Argilla has no audio field. By default each clip is embedded as a data URI, read from the
project's media and checked against its sha256, and held to Argilla's limit for media data URIs
(5,000,000 characters, which it enforces on image fields; about 3.7 MB of audio): a longer clip
is refused, naming the record and the field. With ``--audio-url URL`` the players point at
URL/<media path> instead (at most 2,038 characters, Argilla's limit for media URLs), for audio
served elsewhere. Records are grouped into requests of about 8 MB at most (one record with
several long clips can be larger); a proxy in front of Argilla may cap requests lower (nginx
allows 1 MB by default: use --audio-url there). Argilla 2.8's web UI renders the template in an
iframe whose players load such data URIs (checked by hand in Chromium).

Partial failures: a task that cannot become a record, or a response that cannot become a
judgment, is reported (record and field) and the others go through.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from annotation_ui.argilla_records import (
    AUDIO_TEMPLATE,
    BATCH_MAX_CHARS,
    BATCH_MAX_RECORDS,
    RATIONALE,
    SHOWN_ORDER,
    VERDICT,
    AudioSource,
    batches,
    criterion_question,
    dataset_name,
    guidelines,
    judgment_from_response,
    record_payload,
)
from annotation_ui.presentation import verdict_labels
from rewardlab.schema import (
    Judgment,
    Order,
    ProjectSettings,
    RecordError,
    Rubric,
    Task,
    utc_now,
)
from rewardlab.store.transaction import retry_conflicts

if TYPE_CHECKING:
    import argilla as rg

    from rewardlab.store import Store


class ArgillaSyncError(RuntimeError):
    """Argilla cannot be used: the extra is missing, the server unreachable, the key refused."""


@dataclass
class SyncReport:
    verb: str
    counts: Counter = field(default_factory=Counter)
    failures: list[RecordError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        counts = ", ".join(f"{n} {what}" for what, n in self.counts.items()) or "nothing to do"
        lines = [f"argilla {self.verb}: {counts}"]
        if self.failures:
            lines.append(f"{len(self.failures)} failed (the rest went through):")
            lines += [f"  {failure}" for failure in self.failures]
        return "\n".join(lines)


# ---- talking to Argilla: the SDK, imported when used ----------------------------------------


def import_sdk():
    """The argilla SDK, or an ArgillaSyncError saying how to install it."""
    try:
        import argilla
    except ImportError:
        raise ArgillaSyncError(
            "the Argilla integration needs its extra: pip install 'rewardlab[argilla]'"
        ) from None
    return argilla


def sdk_error() -> type[Exception]:
    """The SDK's base exception (argilla 2.8 exports it only from `argilla._exceptions`)."""
    import_sdk()
    from argilla._exceptions import ArgillaError

    return ArgillaError


def connect(api_url: str | None = None, api_key: str | None = None) -> rg.Argilla:
    """A client for ARGILLA_API_URL / ARGILLA_API_KEY (or the given ones), checked by one call."""
    rg = import_sdk()
    try:
        given = {"api_url": api_url, "api_key": api_key}  # None: the SDK reads the environment
        client = rg.Argilla(**{name: value for name, value in given.items() if value is not None})
        client.me  # noqa: B018  (the first request: fails here on a bad URL or key)
    except Exception as error:  # the SDK raises httpx and its own errors alike
        raise ArgillaSyncError(f"cannot use the Argilla server: {error}") from None
    return client


def dataset_settings(settings: ProjectSettings, rubric: Rubric | None) -> rg.Settings:
    rg = import_sdk()
    k = settings.k
    questions = [
        rg.LabelQuestion(
            name=VERDICT,
            title="Which response is the better reply?",
            labels=verdict_labels(k),
            visible_labels=2 * k + 1,
            description="Levels run from Response 1 much better to Response 2 much better.",
        )
    ]
    for position in (1, 2):
        for criterion in rubric.criteria if rubric else ():
            questions.append(
                rg.RatingQuestion(
                    name=criterion_question(position, criterion.id),
                    title=f"Response {position}: {criterion.id}",
                    description=criterion.description,
                    values=[0, 1] if criterion.scale == "binary" else [1, 2, 3, 4, 5],
                    required=False,
                )
            )
    questions.append(rg.TextQuestion(name=RATIONALE, title="Why? (optional)", required=False))
    return rg.Settings(
        guidelines=guidelines(settings, rubric),
        fields=[
            rg.ChatField(name="dialogue", title="Dialogue", use_markdown=False),
            rg.CustomField(name="audio", title="Listen", template=AUDIO_TEMPLATE, required=False),
            rg.TextField(name="response_1", title="Response 1", use_markdown=True),
            rg.TextField(name="response_2", title="Response 2", use_markdown=True),
        ],
        questions=questions,
        metadata=[
            rg.TermsMetadataProperty(
                name=SHOWN_ORDER, options=[o.value for o in Order], visible_for_annotators=False
            )
        ],
        distribution=rg.TaskDistribution(min_submitted=settings.annotators_per_task),
        allow_extra_metadata=False,
    )


def _groups(store: Store) -> dict[str | None, list[Task]]:
    """The project's tasks by rubric id (None: plain pairwise), one Argilla dataset each."""
    groups: dict[str | None, list[Task]] = {}
    for task in store.tasks():
        groups.setdefault(task.rubric_id, []).append(task)
    return groups


def _find_dataset(client: rg.Argilla, name: str, workspace: str) -> rg.Dataset | None:
    with warnings.catch_warnings():  # the SDK warns when a lookup finds nothing
        warnings.simplefilter("ignore")
        if client.workspaces(workspace) is None:
            return None
        return client.datasets(name=name, workspace=workspace)


def _dataset(client: rg.Argilla, name: str, workspace: str, settings: rg.Settings) -> rg.Dataset:
    """The dataset `name`, created with `settings` if missing; refused if it asks otherwise."""
    rg = import_sdk()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if client.workspaces(workspace) is None:
            rg.Workspace(name=workspace, client=client).create()
    dataset = _find_dataset(client, name, workspace)
    if dataset is None:
        return rg.Dataset(name=name, workspace=workspace, settings=settings, client=client).create()
    asked = [question.name for question in settings.questions]
    found = [question.name for question in dataset.settings.questions]
    if found != asked:
        raise RecordError(
            f"Argilla dataset {name!r}",
            "questions",
            f"has {found}, the project asks {asked}: push under another --dataset name",
        )
    return dataset


def push(
    store: Store, client: rg.Argilla, *, workspace: str, prefix: str, audio_url: str | None = None
) -> SyncReport:
    """Add the tasks not yet in Argilla as records; report what was added and what failed."""
    rg = import_sdk()
    report = SyncReport("push")
    audio = AudioSource(store.media_root, audio_url)
    for rubric_id, tasks in _groups(store).items():
        rubric = store.rubric(rubric_id) if rubric_id else None
        name = dataset_name(prefix, rubric_id)
        dataset = _dataset(client, name, workspace, dataset_settings(store.settings, rubric))
        present = {r.id for r in dataset.records(with_responses=False, with_suggestions=False)}
        payloads = []
        for task in tasks:
            if task.id in present:
                report.counts["already in Argilla"] += 1
                continue
            try:
                dialogue = store.dialogue(task.dialogue_id)
                payloads.append(record_payload(task, dialogue, store.settings, audio))
            except RecordError as error:
                report.failures.append(error)
        for batch in batches(payloads, BATCH_MAX_CHARS, BATCH_MAX_RECORDS):
            try:
                dataset.records.log([rg.Record(**p) for p in batch], batch_size=len(batch))
            except sdk_error() as error:
                report.failures += [
                    RecordError(f"task {p['id']!r}", "<record>", f"Argilla refused: {error}")
                    for p in batch
                ]
            else:
                report.counts[f"added to {name!r}"] += len(batch)
    return report


def _submitted(record: rg.Record) -> dict[Any, dict[str, Any]]:
    """Argilla user id -> {question name: value} of each submitted response of a record."""
    answers: dict[Any, dict[str, Any]] = {}
    for response in record.responses:
        if response.status == "submitted":
            answers.setdefault(response.user_id, {})[response.question_name] = response.value
    return answers


def pull(store: Store, client: rg.Argilla, *, workspace: str, prefix: str) -> SyncReport:
    """Store every submitted response as a judgment; report created, updated, unchanged, failed."""
    rg = import_sdk()
    report = SyncReport("pull")
    users = {user.id: user for user in client.users}
    tasks = {task.id: task for task in store.tasks()}
    annotators = {annotator["id"] for annotator in store.annotators()}
    submitted = rg.Query(filter=rg.Filter([("response.status", "==", "submitted")]))
    for rubric_id in _groups(store):
        name = dataset_name(prefix, rubric_id)
        dataset = _find_dataset(client, name, workspace)
        if dataset is None:
            continue
        rubric = store.rubric(rubric_id) if rubric_id else None
        for record in dataset.records(query=submitted, with_suggestions=False):
            task = tasks.get(record.id)
            for user_id, values in _submitted(record).items():
                user = users.get(user_id)
                username = user.username if user else f"<unknown user {user_id}>"
                label = f"Argilla record {record.id!r} in {name!r} by {username!r}"
                try:
                    if user is None:
                        raise RecordError(label, "user_id", "no such user in Argilla")
                    if task is None or task.rubric_id != rubric_id:
                        raise RecordError(label, "id", f"no task of {name!r} has this id")
                    order = record.metadata.get(SHOWN_ORDER)
                    judgment = judgment_from_response(
                        task,
                        rubric,
                        order,
                        username,
                        values,
                        k=store.k,
                        record=label,
                        created_at=utc_now(),
                    )
                    if username not in annotators:
                        store.add_annotator(username, _display_name(user), role="annotator")
                        annotators.add(username)
                    report.counts[_store(store, judgment)] += 1
                except RecordError as error:
                    report.failures.append(error)
    return report


def _display_name(user: Any) -> str:
    return " ".join(filter(None, (user.first_name, user.last_name))) or user.username


def _store(store: Store, judgment: Judgment) -> str:
    """Upsert, keeping the stored judgment (its created_at) when its content is the same: a
    pull stamps created_at itself, so pulling twice must not count as an edit."""
    stored = store.judgment(judgment.id)
    if stored is not None and not retry_conflicts(stored, judgment):
        return "unchanged"
    return store.upsert_judgment(judgment)
