"""The annotator's page (Gradio Blocks) and its public API, on an `AnnotationService`.

Every handler takes the annotator from the session (``request.username``, set by the session
gate in `annotation_ui.web`); nothing in a request's body can name another annotator. The
public API, for `gradio_client` and other front ends (levels and rubric scores as shown):

    /next_task()                                  the open or next task view, or None
    /submit(task_id, judgment_id, level, rubric_scores, rationale, listened)
                                                  {"judgment_id", "created"}; the same form
                                                  sent again answers created=False, the same
                                                  judgment id with other answers is refused
    /save_draft(task_id, draft)   /skip(task_id)   /flag(task_id, reason)   /progress()

The page's own events are private API endpoints over the same service; its script
(static/annotate.js) adds listening measurement, keyboard shortcuts and local drafts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import gradio as gr

from annotation_ui import render
from annotation_ui.service import AnnotationService
from rewardlab.schema import RecordError, utc_now
from rewardlab.store import StoreError

# the timeline's script hook: tell the page script whenever a task is (re)displayed
ON_TASK_SHOWN = "window.rewardlab.taskShown(); watch('value', () => window.rewardlab.taskShown());"


def as_ui_errors(handler: Callable) -> Callable:
    """Refusals become a gr.Error: the page shows the message, the API raises it."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except (RecordError, StoreError) as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def annotator_of(request: gr.Request) -> str:
    if not request.username:  # the session gate lets no such request through
        raise gr.Error("not logged in", print_exception=False)
    return request.username


def _parse_json(text: str | None, field: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        raise gr.Error(f"{field}: not valid JSON", print_exception=False) from None


def page_state(service: AnnotationService, annotator_id: str, view: dict | None) -> dict:
    """What each part of the page shows for `view` (None: nothing left to do)."""
    settings = service.store.settings
    account = service.account(annotator_id)
    progress = view["progress"] if view else service.progress(annotator_id)
    state = {
        "header": render.header_html(
            settings.name, account.display_name, progress["text"], account.is_admin
        ),
        "guidelines": f"{settings.guidelines}\n\n{render.shortcuts_markdown(2 * settings.k + 1)}",
        "flag_reason": "",
        "draft_status": "",
    }
    if view is None:
        return state | {
            "empty": gr.update(value=render.empty_html(), visible=True),
            "form": gr.update(visible=False),
            "level": gr.update(choices=[], value=None),
            **dict.fromkeys(("timeline", "response_1", "response_2", "rubric"), ""),
            **dict.fromkeys(("rationale", "task_id", "judgment_id"), ""),
        }
    draft = view["draft"]
    choices = [(f"{lv['key']} · {lv['label']}", lv["level"]) for lv in view["levels"]]
    return state | {
        "empty": gr.update(value="", visible=False),
        "form": gr.update(visible=True),
        "timeline": render.timeline_html(view),
        "response_1": render.response_html(view["responses"][0]),
        "response_2": render.response_html(view["responses"][1]),
        "level": gr.update(choices=choices, value=draft.get("level")),
        "rubric": gr.update(value=render.rubric_html(view), visible=view["rubric"] is not None),
        "rationale": draft.get("rationale", ""),
        "task_id": view["task_id"],
        "judgment_id": view["judgment_id"],
    }


def build_annotate_page(service: AnnotationService) -> gr.Blocks:
    """The annotator's page: its layout, its own (private) events, and the public API."""
    title = f"{service.store.settings.name} · rewardlab"
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        parts, controls = _layout()
        _page_events(page, service, parts, controls)
        _public_api(service)
    # One call at a time per endpoint: the store serialises its writes anyway, and more threads
    # only fight over the GIL (benchmarks/bench_annotation_app.py: p95 halves against 8).
    page.queue(default_concurrency_limit=1)
    return page


def _layout() -> tuple[dict[str, Any], dict[str, Any]]:
    """The page's components: the parts every event redraws (named as in `page_state`), and
    the controls and hidden fields the events read."""
    header = gr.HTML(js_on_load=None)
    with gr.Accordion("Guidelines and keyboard shortcuts", open=False, elem_id="rl-guide"):
        guidelines = gr.Markdown()
    empty = gr.HTML(visible=False, js_on_load=None)
    with gr.Column(visible=False) as form:
        timeline = gr.HTML(elem_id="rl-timeline", js_on_load=ON_TASK_SHOWN)
        with gr.Row(equal_height=True):
            response_1 = gr.HTML(elem_id="rl-response-1", js_on_load=None)
            response_2 = gr.HTML(elem_id="rl-response-2", js_on_load=None)
        level = gr.Radio(label="Which response is the better reply?", elem_id="rl-level")
        rubric = gr.HTML(elem_id="rl-rubric-box", js_on_load=None)
        rationale = gr.Textbox(
            label="Rationale", lines=3, max_length=20_000, elem_id="rl-rationale"
        )
        with gr.Row():
            submit = gr.Button("Submit (Enter)", variant="primary", elem_id="rl-submit")
            skip = gr.Button("Skip for now", elem_id="rl-skip")
        draft_status = gr.Markdown(elem_id="rl-draft-status")
        with gr.Accordion("Report a broken task", open=False):
            flag_reason = gr.Textbox(label="What is wrong?", elem_id="rl-flag-reason")
            flag = gr.Button("Flag as broken", variant="stop", elem_id="rl-flag")
    # the form's state, filled by the server and read by the events (hidden but in the DOM)
    parts = {
        "header": header,
        "guidelines": guidelines,
        "empty": empty,
        "form": form,
        "timeline": timeline,
        "response_1": response_1,
        "response_2": response_2,
        "level": level,
        "rubric": rubric,
        "rationale": rationale,
        "task_id": gr.Textbox(visible="hidden", elem_id="rl-task-id"),
        "judgment_id": gr.Textbox(visible="hidden", elem_id="rl-judgment-id"),
        "flag_reason": flag_reason,
        "draft_status": draft_status,
    }
    controls = {
        "submit": submit,
        "skip": skip,
        "flag": flag,
        "rubric_json": gr.Textbox(visible="hidden"),
        "listened_json": gr.Textbox(visible="hidden"),
        "draft_json": gr.Textbox(visible="hidden"),
        "autosave": gr.Button("autosave", visible="hidden", elem_id="rl-autosave"),
    }
    return parts, controls


def _page_events(
    page: gr.Blocks, service: AnnotationService, parts: dict[str, Any], controls: dict[str, Any]
) -> None:
    """The page's own events (private endpoints): each acts, then redraws every part."""

    def show(annotator_id: str, view: dict | None) -> list:
        state = page_state(service, annotator_id, view)
        return [state[name] for name in parts]

    @as_ui_errors
    def on_load(request: gr.Request) -> list:
        annotator_id = annotator_of(request)
        return show(annotator_id, service.next_task(annotator_id))

    @as_ui_errors
    def on_submit(
        task: str,
        judgment: str,
        chosen: int | None,
        scores: str,
        why: str,
        heard: str,
        request: gr.Request,
    ) -> list:
        annotator_id = annotator_of(request)
        if chosen is None:
            raise gr.Error("Choose a level first (keys 1 to 9).", print_exception=False)
        form_data = {
            "task_id": task,
            "judgment_id": judgment,
            "level": chosen,
            "rubric_scores": _parse_json(scores, "rubric_scores"),
            "rationale": why or "",
            "listened": _parse_json(heard, "listened"),
        }
        result = service.submit(annotator_id, form_data)
        gr.Info("Saved." if result.created else "Already saved.", duration=2)
        return show(annotator_id, service.next_task(annotator_id))

    @as_ui_errors
    def on_skip(task: str, request: gr.Request) -> list:
        annotator_id = annotator_of(request)
        service.skip(annotator_id, task)
        return show(annotator_id, service.next_task(annotator_id))

    @as_ui_errors
    def on_flag(task: str, reason: str, request: gr.Request) -> list:
        annotator_id = annotator_of(request)
        service.flag(annotator_id, task, reason or "")
        gr.Info("Thank you: the task is withdrawn until an admin looks at it.", duration=3)
        return show(annotator_id, service.next_task(annotator_id))

    outputs, private = list(parts.values()), {"api_visibility": "private"}
    form_inputs = [parts["task_id"], parts["judgment_id"], parts["level"], controls["rubric_json"]]
    form_inputs += [parts["rationale"], controls["listened_json"]]
    page.load(on_load, None, outputs, **private)
    controls["submit"].click(
        on_submit,
        form_inputs,
        outputs,
        js="(...args) => window.rewardlab.submitArgs(...args)",
        trigger_mode="once",
        show_progress="hidden",  # a refused submit must not cover the form
        **private,
    ).success(None, js="() => window.rewardlab.submitted()")
    controls["skip"].click(on_skip, [parts["task_id"]], outputs, **private)
    controls["flag"].click(on_flag, [parts["task_id"], parts["flag_reason"]], outputs, **private)
    _autosave_event(service, parts, controls)


def _autosave_event(
    service: AnnotationService, parts: dict[str, Any], controls: dict[str, Any]
) -> None:
    """The page script clicks the hidden autosave button a moment after each change."""

    @as_ui_errors
    def on_autosave(task: str, draft: str, request: gr.Request) -> str:
        if not task:
            return ""
        saved = service.save_draft(annotator_of(request), task, _parse_json(draft, "draft"))
        return f"Draft saved at {utc_now():%H:%M:%S} UTC." if saved else ""

    controls["autosave"].click(
        on_autosave,
        [parts["task_id"], controls["draft_json"]],
        [parts["draft_status"]],
        js="(task) => window.rewardlab.draftArgs(task)",
        trigger_mode="always_last",
        show_progress="hidden",
        api_visibility="private",
    ).success(None, js="() => window.rewardlab.draftSaved()")


def _public_api(service: AnnotationService) -> None:
    """The API endpoints for clients other than the page (see the module docstring)."""

    @as_ui_errors
    def next_task(request: gr.Request) -> dict | None:
        """The annotator's open task, else the next one; None when no task is left."""
        return service.next_task(annotator_of(request))

    @as_ui_errors
    def submit(
        task_id: str,
        judgment_id: str,
        level: int,
        rubric_scores: dict,
        rationale: str,
        listened: dict,
        request: gr.Request,
    ) -> dict:
        """Submit the open task: level as shown (> 0: Response 1 better), scores by response."""
        form_data = {
            "task_id": task_id,
            "judgment_id": judgment_id,
            "level": level,
            "rubric_scores": rubric_scores or {},
            "rationale": rationale or "",
            "listened": listened or {},
        }
        result = service.submit(annotator_of(request), form_data)
        return {"judgment_id": result.judgment_id, "created": result.created}

    @as_ui_errors
    def save_draft(task_id: str, draft: dict, request: gr.Request) -> dict:
        """Keep the unfinished form of the open task (fields as in submit, all optional)."""
        return {"saved": service.save_draft(annotator_of(request), task_id, draft)}

    @as_ui_errors
    def skip(task_id: str, request: gr.Request) -> dict | None:
        """Put the open task back for later; returns the next task."""
        annotator_id = annotator_of(request)
        service.skip(annotator_id, task_id)
        return service.next_task(annotator_id)

    @as_ui_errors
    def flag(task_id: str, reason: str, request: gr.Request) -> dict | None:
        """Report the open task as broken; returns the next task."""
        annotator_id = annotator_of(request)
        service.flag(annotator_id, task_id, reason)
        return service.next_task(annotator_id)

    @as_ui_errors
    def progress(request: gr.Request) -> dict:
        """Judgments submitted today and the project's daily goal."""
        return service.progress(annotator_of(request))

    for endpoint in (next_task, submit, save_draft, skip, flag, progress):
        gr.api(endpoint, api_name=endpoint.__name__)
