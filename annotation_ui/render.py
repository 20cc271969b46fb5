"""HTML for the annotation page, built from a task view (`AnnotationService.view`).

Every piece of text from the store or from a person (transcripts, replies, rubric text, a
draft's rationale) goes through `html.escape`: Gradio inserts these strings as raw HTML, so an
unescaped ``<img onerror=...>`` in a transcript would run in the annotator's browser.

Audio players carry ``data-clip`` (the media path): the page's script measures how much of
each clip was played from the players' ``played`` ranges (annotation_ui/static/annotate.js).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any


def _text(text: str | None, hidden_note: str) -> str:
    if text is None:
        return f'<div class="rl-text rl-muted">{escape(hidden_note)}</div>'
    return f'<div class="rl-text">{escape(text)}</div>'


def _player(clip: dict[str, Any] | None) -> str:
    if clip is None:
        return ""
    path = escape(clip["media_path"])
    return (
        '<div class="rl-player">'
        f'<audio controls preload="metadata" src="{escape(clip["url"])}" data-clip="{path}">'
        "</audio>"
        f'<span class="rl-listened" data-clip-badge="{path}">not played</span></div>'
    )


def _reasoning(text: str | None) -> str:
    if text is None:
        return ""
    return (
        '<details class="rl-reasoning"><summary>Reasoning</summary>'
        f'<div class="rl-text">{escape(text)}</div></details>'
    )


def timeline_html(view: dict[str, Any]) -> str:
    """The dialogue so far, turn by turn, plus the task's metadata for the page's script."""
    turns = []
    for turn in view["history"]:
        role = escape(turn["role"])
        turns.append(
            f'<li class="rl-turn rl-{role}"><div class="rl-role">{role.capitalize()}'
            f' <span class="rl-muted">turn {turn["turn"]}</span></div>'
            f"{_player(turn['audio'])}"
            f"{_text(turn['text'], 'Transcript hidden: listen to the clip.')}"
            f"{_reasoning(turn['reasoning'])}</li>"
        )
    return (
        f'<div id="rl-task-meta" hidden data-meta="{escape(json.dumps(_meta(view)))}"></div>'
        f'<ol class="rl-timeline">{"".join(turns)}</ol>'
    )


def _meta(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "taskId": view["task_id"],
        "judgmentId": view["judgment_id"],
        "levels": len(view["levels"]),
        "requireFullListen": view["require_full_listen"],
        "candidateClips": [r["audio"]["media_path"] for r in view["responses"] if r["audio"]],
        "listened": view["draft"].get("listened", {}),
    }


def response_html(response: dict[str, Any]) -> str:
    label = escape(response["label"])
    return (
        f'<div class="rl-response" data-response="{escape(response["key"])}">'
        f"<h3>{label}</h3>{_player(response['audio'])}"
        f"{_reasoning(response['reasoning'])}"
        f"{_text(response['text'], 'Transcript hidden: listen to the clip.')}</div>"
    )


def rubric_html(view: dict[str, Any]) -> str:
    """One row per criterion, a choice per response; "-" leaves a criterion unscored."""
    rubric = view["rubric"]
    if rubric is None:
        return ""
    drafted = view["draft"].get("rubric_scores", {})
    rows = []
    for criterion in rubric["criteria"]:
        cells = []
        for key in ("response_1", "response_2"):
            chosen = drafted.get(key, {}).get(criterion["id"])
            options = [(None, "–")] + (
                [(0, "no"), (1, "yes")]
                if criterion["scale"] == "binary"
                else [(s, str(s)) for s in range(1, 6)]
            )
            name = escape(f"rl-{key}-{criterion['id']}")
            radios = "".join(
                f'<label><input type="radio" name="{name}" value="{"" if v is None else v}"'
                f' data-response="{key}" data-criterion="{escape(criterion["id"])}"'
                f"{' checked' if v == chosen else ''}>{text}</label>"
                for v, text in options
            )
            cells.append(f'<td class="rl-scores">{radios}</td>')
        rows.append(
            f"<tr><td><b>{escape(criterion['id'])}</b>"
            f'<div class="rl-muted">{escape(criterion["description"])}</div></td>'
            f"{''.join(cells)}</tr>"
        )
    description = f"<p>{escape(rubric['description'])}</p>" if rubric["description"] else ""
    return (
        f'<div id="rl-rubric"><h3>Rubric: {escape(rubric["title"])}</h3>{description}'
        "<table><thead><tr><th>Criterion</th><th>Response 1</th><th>Response 2</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def header_html(project: str, display_name: str, progress: str, is_admin: bool) -> str:
    admin = '<a href="admin/">Admin</a> · ' if is_admin else ""
    return (
        f'<div id="rl-header"><span class="rl-project">{escape(project)}</span>'
        f'<span id="rl-progress" class="rl-progress">{escape(progress)}</span>'
        f'<span class="rl-user">{escape(display_name)} · {admin}<a href="logout">Log out</a>'
        "</span></div>"
    )


def empty_html() -> str:
    return (
        '<div id="rl-empty"><h3>No tasks left for you right now.</h3>'
        "<p>Thank you! Come back later: skipped tasks return and new ones may be imported.</p>"
        "</div>"
    )


def shortcuts_markdown(levels: int) -> str:
    return (
        f"**Keyboard:** `1`…`{levels}` choose a level (left to right), `Enter` submits "
        "(`Ctrl+Enter` while typing the rationale). Drafts save themselves as you go."
    )
