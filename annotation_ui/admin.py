"""The admin pages (Gradio Blocks, mounted at /admin): dashboard, annotators, project settings,
import and export.

Only admins reach /admin (the session gate in `annotation_ui.web`), and every handler checks
again. Imports go through the store's importer (all or nothing, errors name record and
field); exports are the store's exporters, served by ``/admin/export/<format>``.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import gradio as gr
import polars as pl
from pydantic import ValidationError

from annotation_ui import dashboard
from annotation_ui.annotate import as_ui_errors
from annotation_ui.guard import LoginThrottle
from annotation_ui.service import AnnotationService, start_of_today
from rewardlab.rubrics import LIBRARY_DIR, load_library
from rewardlab.schema import RecordError, errors_of, level_names
from rewardlab.store import Store, StoreError, queue
from rewardlab.store.accounts import accounts, add_account, set_active, set_password
from rewardlab.store.export import judgments_frame
from rewardlab.store.importer import import_jsonl

MAX_UNPACKED_BYTES = 4 * 1024**3
NO_RUBRIC = "(none: plain pairwise)"
NOT_GOLD = "not gold"
ALL_UNJUDGED, UNJUDGED_PLAIN = "all unjudged tasks", "unjudged tasks without a rubric"
PRIVATE = {"api_visibility": "private"}  # the page's own events: not part of the public API
# The project settings an admin edits, each listed once: its field and its input.
SETTING_INPUTS: dict[str, Callable[[], gr.Component]] = {
    "name": lambda: gr.Textbox(label="Name"),
    "annotators_per_task": lambda: gr.Number(
        label="k: annotators per task", precision=0, minimum=1
    ),
    "k": lambda: gr.Number(label="K: levels run -K..K (fixed once judgments exist)", precision=0),
    "gold_share": lambda: gr.Slider(0, 1, step=0.01, label="Share of gold items served"),
    "show_transcripts": lambda: gr.Checkbox(label="Show transcripts of audio turns"),
    "show_reasoning": lambda: gr.Checkbox(label="Show reasoning traces"),
    "require_full_listen": lambda: gr.Checkbox(label="Candidate clips must be played to the end"),
    "daily_goal": lambda: gr.Number(label="Daily goal per annotator", precision=0, minimum=1),
    "guidelines": lambda: gr.Textbox(label="Guidelines (markdown)", lines=8),
}
DASHBOARD_PLOTS = (
    "Progress",
    "Time on task",
    "Gold accuracy and position bias",
    "Agreement",
    "Confusion of levels",
)


class Admin:
    """What every admin handler shares: the service, its store, the admin check."""

    def __init__(
        self,
        service: AnnotationService,
        on_accounts_changed: Callable[[], None],
        throttle: LoginThrottle | None = None,
    ):
        self.service, self.store = service, service.store
        self.on_accounts_changed = on_accounts_changed
        self.throttle = throttle or LoginThrottle()

    def require(self, request: gr.Request) -> None:
        """Refuse unless the request's user is an admin (the session gate checked it too)."""
        account = self.service.account(request.username or "")
        if account is None or not account.is_admin:
            raise gr.Error("admins only", print_exception=False)


def build_admin_page(
    service: AnnotationService,
    on_accounts_changed: Callable[[], None] = lambda: None,
    throttle: LoginThrottle | None = None,
) -> gr.Blocks:
    """The admin pages: one tab builder each, over the same `Admin`; `throttle` is the login
    throttle of the app serving them (its delays are listed and cleared here)."""
    admin = Admin(service, on_accounts_changed, throttle)
    title = f"{admin.store.settings.name} · rewardlab admin"
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.HTML(
            '<div id="rl-header"><b>rewardlab admin</b> · <a href="/">annotate</a> ·'
            ' <a href="/logout">log out</a></div>',
            js_on_load=None,
        )
        with gr.Tab("Dashboard"):
            dashboard_tab(admin, page)
        with gr.Tab("Annotators"):
            annotators_tab(admin, page)
            login_delays(admin, page)
        with gr.Tab("Project"):
            project_tab(admin, page)
        with gr.Tab("Import"):
            import_tab(admin)
        with gr.Tab("Export"):
            gr.HTML(
                "<p>Every judgment with its task and dialogue history:"
                ' <a href="/admin/export/parquet">Parquet</a> ·'
                ' <a href="/admin/export/jsonl">JSONL</a> ·'
                ' <a href="/admin/export/hf">Hugging Face dataset (zip)</a></p>',
                js_on_load=None,
            )
    page.queue(default_concurrency_limit=4)
    return page


# ---- Dashboard -------------------------------------------------------------------------------


def dashboard_view(store: Store) -> list:
    """The dashboard's contents: headline numbers, figures, flagged tasks, latest judgments."""
    frame = judgments_frame(store)
    flags = queue.flags(store)
    k = store.k
    figures: list[Any] = [None] * len(DASHBOARD_PLOTS)  # no figures before any judgment
    if frame.height:
        figures = [
            dashboard.progress_figure(frame, start_of_today()),
            dashboard.time_figure(frame),
            dashboard.annotator_figure(frame, k),
            dashboard.agreement_figure(frame, k),
            dashboard.confusion_figure(frame, k),
        ]
    overlap, flagged = store.settings.annotators_per_task, len({f.task_id for f in flags})
    numbers = dashboard.summary(frame, k, store.count("tasks"), overlap, flagged)
    flag_rows = pl.DataFrame(
        [f.__dict__ for f in flags],
        schema=["task_id", "annotator_id", "reason", "flagged_at"],
        orient="row",
    )
    latest = frame.sort("received_at", descending=True).head(100)
    latest = latest.select(
        "received_at", "annotator_id", "task_id", "level", "shown_order", "rationale"
    ).with_columns(pl.col("received_at").dt.strftime("%Y-%m-%d %H:%M"))
    summary = dashboard.summary_markdown(numbers)
    return [summary, *figures, flag_rows.to_pandas(), latest.to_pandas()]


def dashboard_tab(admin: Admin, page: gr.Blocks) -> None:
    refresh = gr.Button("Refresh", elem_id="rl-refresh")
    outputs: list[gr.Component] = [gr.Markdown(elem_id="rl-summary")]
    outputs += [gr.Plot(label=label) for label in DASHBOARD_PLOTS]
    gr.Markdown("### Flagged tasks (withdrawn from the queue)")
    outputs.append(gr.Dataframe(interactive=False, elem_id="rl-flags"))
    with gr.Row():
        flagged_task = gr.Textbox(label="Task id", scale=3, elem_id="rl-flagged-task")
        return_task = gr.Button("Return to the queue", scale=1)
    gr.Markdown("### Latest judgments")
    outputs.append(gr.Dataframe(interactive=False, elem_id="rl-recent", wrap=True))

    @as_ui_errors
    def load(request: gr.Request) -> list:
        admin.require(request)
        return dashboard_view(admin.store)

    @as_ui_errors
    def return_flagged(task_id: str, request: gr.Request) -> list:
        admin.require(request)
        if not queue.return_flagged(admin.store, task_id.strip()):
            raise gr.Error(f"task {task_id!r} is not flagged", print_exception=False)
        return dashboard_view(admin.store)

    page.load(load, None, outputs, **PRIVATE)
    refresh.click(load, None, outputs, **PRIVATE)
    return_task.click(return_flagged, flagged_task, outputs, **PRIVATE)


# ---- Annotators ------------------------------------------------------------------------------


def people_frame(store: Store) -> Any:
    """One row per account: who, role, active, judgments in all and today."""
    counts = store.judgment_counts_by_annotator()
    today = store.judgment_counts_by_annotator(since=start_of_today())
    rows = [
        (a.id, a.display_name, a.role, a.active, counts.get(a.id, 0), today.get(a.id, 0))
        for a in accounts(store)
    ]
    columns = ["id", "name", "role", "active", "judgments", "today"]
    return pl.DataFrame(rows, schema=columns, orient="row").to_pandas()


def annotators_tab(admin: Admin, page: gr.Blocks) -> None:
    people = gr.Dataframe(interactive=False, elem_id="rl-annotators")
    with gr.Row():
        new_id = gr.Textbox(label="Annotator id (their login)")
        new_name = gr.Textbox(label="Display name")
        new_role = gr.Radio(["annotator", "admin"], value="annotator", label="Role")
        new_password = gr.Textbox(label="Password (8+ characters)", type="password")
    create = gr.Button("Create account", variant="primary")
    with gr.Row():
        who = gr.Textbox(label="Annotator id", elem_id="rl-who")
        password = gr.Textbox(label="New password", type="password")
        change_password = gr.Button("Set password")
        deactivate = gr.Button("Deactivate")
        activate = gr.Button("Activate")
    status = gr.Markdown()
    store = admin.store

    @as_ui_errors
    def table(request: gr.Request) -> Any:
        admin.require(request)
        return people_frame(store)

    @as_ui_errors
    def create_account(
        annotator_id: str, name: str, role: str, secret: str, request: gr.Request
    ) -> list:
        admin.require(request)
        annotator_id, display_name = annotator_id.strip(), name.strip() or None
        add_account(store, annotator_id, secret, display_name=display_name, role=role)
        return [people_frame(store), f"Created {annotator_id!r}.", "", ""]

    @as_ui_errors
    def reset_password(annotator_id: str, secret: str, request: gr.Request) -> list:
        admin.require(request)
        set_password(store, annotator_id.strip(), secret)
        admin.on_accounts_changed()
        return [people_frame(store), f"Password of {annotator_id.strip()!r} set.", ""]

    def activation(active: bool) -> Callable:
        @as_ui_errors
        def handler(annotator_id: str, request: gr.Request) -> list:
            admin.require(request)
            set_active(store, annotator_id.strip(), active)
            admin.on_accounts_changed()
            state = "active" if active else "deactivated (logged out everywhere)"
            return [people_frame(store), f"{annotator_id.strip()!r} is {state}."]

        return handler

    page.load(table, None, people, **PRIVATE)
    create.click(
        create_account,
        [new_id, new_name, new_role, new_password],
        [people, status, new_id, new_password],
        **PRIVATE,
    )
    change_password.click(reset_password, [who, password], [people, status, password], **PRIVATE)
    deactivate.click(activation(False), who, [people, status], **PRIVATE)
    activate.click(activation(True), who, [people, status], **PRIVATE)


def login_delays(admin: Admin, page: gr.Blocks) -> None:
    gr.Markdown("### Failed logins\nAddresses and names whose logins are being slowed down.")
    delays = gr.Dataframe(interactive=False, elem_id="rl-login-delays")
    with gr.Row():
        who = gr.Textbox(label="Annotator id or address (empty: all)", elem_id="rl-delay-who")
        clear = gr.Button("Clear login delays")
    status = gr.Markdown()

    def frame() -> Any:
        columns = {"address": pl.String, "name": pl.String}
        columns |= {"failures": pl.Int64, "wait_s": pl.Int64}
        return pl.DataFrame(admin.throttle.describe(), schema=columns).to_pandas()

    @as_ui_errors
    def table(request: gr.Request) -> Any:
        admin.require(request)
        return frame()

    @as_ui_errors
    def clear_delays(name: str, request: gr.Request) -> list:
        admin.require(request)
        dropped = admin.throttle.clear(name.strip() or None)
        return [frame(), f"Cleared {dropped} failure count(s)."]

    page.load(table, None, delays, **PRIVATE)
    clear.click(clear_delays, who, [delays, status], **PRIVATE)


# ---- Project ---------------------------------------------------------------------------------


def project_tab(admin: Admin, page: gr.Blocks) -> None:
    settings = {name: make_input() for name, make_input in SETTING_INPUTS.items()}
    save_settings = gr.Button("Save settings", variant="primary")
    settings_status = gr.Markdown()
    gr.Markdown("### Rubric of unjudged tasks")
    with gr.Row():
        rubric_choice = gr.Dropdown(label="Rubric", choices=[NO_RUBRIC])
        rubric_scope = gr.Radio(
            [UNJUDGED_PLAIN, ALL_UNJUDGED], value=UNJUDGED_PLAIN, label="Apply to"
        )
        apply_rubric = gr.Button("Apply")
    gr.Markdown("### Gold items")
    with gr.Row():
        gold_task = gr.Textbox(label="Task id", elem_id="rl-gold-task")
        gold_level = gr.Dropdown(label="Known answer (policy vs reference)", choices=[])
        apply_gold = gr.Button("Set")
    project_status = gr.Markdown()
    store = admin.store

    @as_ui_errors
    def load(request: gr.Request) -> list:
        admin.require(request)
        current = store.settings.model_dump()
        rubric_ids = sorted(set(library()) | {r.id for r in store.rubrics()})
        names = zip(range(-store.k, store.k + 1), level_names(store.k), strict=True)
        levels = [f"{level:+d} {name}" for level, name in names]
        return [
            *[current[name] for name in settings],
            gr.update(choices=[NO_RUBRIC, *rubric_ids], value=NO_RUBRIC),
            gr.update(choices=[NOT_GOLD, *levels], value=NOT_GOLD),
        ]

    @as_ui_errors
    def save(values: dict, request: gr.Request) -> str:
        admin.require(request)
        try:
            store.update_settings(**{name: values[box] for name, box in settings.items()})
        except ValidationError as error:
            raise errors_of(error, "project settings")[0] from None
        return "Settings saved; annotators get them with their next task."

    @as_ui_errors
    def set_rubric(choice: str, scope: str, request: gr.Request) -> str:
        admin.require(request)
        rubric = None
        if choice != NO_RUBRIC:
            stored = {r.id: r for r in store.rubrics()}
            rubric = stored.get(choice) or library()[choice]
        judged = store.judged_task_ids()
        targets = [
            t.id
            for t in store.tasks()
            if t.id not in judged and (scope == ALL_UNJUDGED or t.rubric_id is None)
        ]
        store.set_task_rubric(targets, rubric)
        return f"{len(targets)} tasks now use {choice}."

    @as_ui_errors
    def set_gold(task_id: str, choice: str, request: gr.Request) -> str:
        admin.require(request)
        level = None if choice == NOT_GOLD else int(choice.split()[0])
        store.set_gold(task_id.strip(), level)
        state = "an ordinary task" if level is None else f"a gold item at {level:+d}"
        return f"Task {task_id.strip()!r} is {state}."

    page.load(load, None, [*settings.values(), rubric_choice, gold_level], **PRIVATE)
    # a set of inputs: the handler gets one {component: value} dict
    save_settings.click(save, set(settings.values()), settings_status, **PRIVATE)
    apply_rubric.click(set_rubric, [rubric_choice, rubric_scope], project_status, **PRIVATE)
    apply_gold.click(set_gold, [gold_task, gold_level], project_status, **PRIVATE)


# ---- Import ----------------------------------------------------------------------------------


def import_tab(admin: Admin) -> None:
    gr.Markdown(
        "Upload `dialogues*.jsonl` and/or `tasks*.jsonl` (text only), or one `.zip`"
        " holding them with the audio they reference (paths relative to the JSONL)."
        " Everything is checked first; one bad record and nothing is imported."
    )
    uploads = gr.File(
        file_count="multiple", file_types=[".jsonl", ".zip"], elem_id="rl-import-files"
    )
    dry_run = gr.Checkbox(value=True, label="Dry run: only check")
    run_import = gr.Button("Import", variant="primary")
    report = gr.Textbox(label="Report", lines=12, interactive=False)

    @as_ui_errors
    def do_import(files: list[str] | None, only_check: bool, request: gr.Request) -> str:
        admin.require(request)
        if not files:
            raise gr.Error("Choose files to import first.", print_exception=False)
        try:
            return import_uploads([Path(f) for f in files], admin.service, dry_run=only_check)
        finally:
            if not only_check:
                for file in files:  # Gradio's copy of the upload is no longer needed
                    Path(file).unlink(missing_ok=True)

    run_import.click(do_import, [uploads, dry_run], report, **PRIVATE)


@functools.cache
def library() -> dict:
    return load_library(LIBRARY_DIR)


def _unpack(archive_path: Path, folder: Path) -> None:
    """Extract a zip, refusing members that would land outside `folder` or fill the disk."""
    label = f"archive {archive_path.name!r}"
    with zipfile.ZipFile(archive_path) as archive:
        total = 0
        for member in archive.infolist():
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                raise RecordError(label, member.filename, "would be extracted outside the folder")
            total += member.file_size
            if total > MAX_UNPACKED_BYTES:
                raise RecordError(label, "<archive>", "unpacks to more than 4 GiB")
        archive.extractall(folder)


def import_uploads(files: list[Path], service: AnnotationService, *, dry_run: bool) -> str:
    """Import uploaded JSONL files or one zip of them with their audio; the importer's report."""
    with tempfile.TemporaryDirectory(prefix="rewardlab-import-") as scratch:
        folder = Path(scratch)
        for file in files:
            if file.suffix == ".zip":
                _unpack(file, folder)
            elif file.suffix == ".jsonl":
                shutil.copyfile(file, folder / file.name)
            else:
                raise RecordError(f"upload {file.name!r}", "name", "not a .jsonl or .zip file")
        found = {kind: sorted(folder.rglob(f"{kind}*.jsonl")) for kind in ("dialogues", "tasks")}
        for kind, paths in found.items():
            if len(paths) > 1:
                names = ", ".join(str(p.relative_to(folder)) for p in paths)
                raise RecordError("upload", kind, f"several {kind} files ({names}): give one")
        dialogues = found["dialogues"][0] if found["dialogues"] else None
        tasks = found["tasks"][0] if found["tasks"] else None
        if dialogues is None and tasks is None:
            raise RecordError("upload", "files", "no dialogues*.jsonl or tasks*.jsonl in it")
        try:
            report = import_jsonl(service.store, dialogues=dialogues, tasks=tasks, dry_run=dry_run)
        except StoreError as error:  # ImportRejected: the report lists every bad record
            return str(error)
        return report.summary()
