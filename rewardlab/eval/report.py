"""The GRM evaluation report: one self-contained HTML page and a JSON of every number.

    write_report(out_dir, metrics, figures, settings)  # -> out_dir/report.html, metrics.json

The page needs nothing beside it: plots are PNGs inlined as base64 ``data:`` URIs and the
style is inline, so it can be mailed, attached to a run, or opened from an artifact store.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from rewardlab.eval.probe_metrics import probe_table
from rewardlab.reward import MAPPER_FILE

# (anchor, title, what to read in it, metric keys shown, figure names shown)
SECTIONS: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "agreement",
        "Agreement with the reference levels",
        "Accuracy counts non-tie pairs whose winner the GRM gets right; kappa and tau-b use the"
        " whole ordinal scale; alpha asks whether the GRM could pass for one more annotator.",
        (
            "judge/accuracy",
            "judge/qwk",
            "judge/kendall_tau_b",
            "reward/kendall_tau_b",
            "agreement/alpha_humans",
            "agreement/alpha_with_grm",
            "judge/n",
            "judge/n_decided",
        ),
        ("confusion", "reward_by_level"),
    ),
    (
        "position",
        "Position bias",
        "Each task is judged in both orders. The reward averages them, which cancels a shift"
        " towards the first-shown response; a low consistency means the verdict itself flips."
        " Where it flips: on decided pairs and on ties apart, with the rounded levels' winners"
        " (within half a level of 0: a tie), and the spread of the orders' difference (noise,"
        " where the bias is its mean shift). Beside the decided pairs' consistency: what two"
        " orders with these accuracies would reach erring independently; near it, each order"
        " flips on its own noise, above it, the orders share their mistakes.",
        (
            "judge/consistency",
            "judge/consistency_decided",
            "judge/consistency_decided_if_independent",
            "judge/consistency_ties",
            "judge/consistency_levels",
            "judge/order_gap_std",
            "judge/position_bias",
            "judge/accuracy_order1",
            "judge/accuracy_order2",
        ),
        ("position",),
    ),
    (
        "calibration",
        "Calibration",
        "P(policy better) on non-tie pairs against how often the policy really is better;"
        " ECE is the count-weighted gap over 10 equal-width bins. Its floor is what a judge"
        " calibrated exactly would show on this many tasks (outcomes drawn from its own"
        " probabilities): an ECE near the floor is as calibrated as this sample can tell.",
        ("calibration/method", "calibration/ece_raw", "calibration/ece", "calibration/ece_floor"),
        ("reliability",),
    ),
    (
        "length",
        "Length bias",
        "Correlation with the length difference (policy minus reference words): a reward more"
        " correlated with length than the reference levels are rewards length itself.",
        ("length/corr_reward", "length/corr_reference"),
        ("length",),
    ),
    (
        "breakdowns",
        "Breakdowns",
        "The same numbers per rubric, per axis of the demo world's truth, and for the pairs only"
        " audio can decide; position consistency too, which shows the axes where the orders"
        " part.",
        (),
        ("breakdown",),
    ),
    (
        "audio",
        "Audio removed",
        "Every clip replaced by one second of silence: what the GRM gets from the audio.",
        ("judge/accuracy", "judge/qwk", "judge/consistency", "calibration/ece"),
        ("audio_ablation",),
    ),
    (
        "probes",
        "Bias probes",
        "The test tasks judged again with something changed that should not move the verdict:"
        " the user's clips louder or quieter by 6 dB, padded with 1 s of silence at each end,"
        " or 10% faster or slower at the same pitch (for both responses alike), and a neutral"
        " sentence appended to the policy's or the reference's response (a judge that rewards"
        " length moves towards the longer one). Shift: the order-averaged expected level under"
        " the probe minus the original (positive: towards the policy), error bars 1.96 SE;"
        " flip rate: the share of decided tasks whose winner changes.",
        (),
        ("probes",),
    ),
    (
        "reward",
        "Reward mapping",
        "The mapper that turns the GRM's level distribution into the reward"
        f" ({MAPPER_FILE} in the checkpoint), and the rewards it gives these tasks.",
        ("reward/mean", "reward/std"),
        (),
    ),
)
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%;margin:.4em 0}p.note{color:#555}code{background:#f3f3f3}"
)


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither); numpy scalars become numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def figure_png(figure: Figure) -> str:
    """The figure as a base64 PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(value: Any, name: str = "") -> str:
    if name.rsplit("/", 1)[-1] in ("n", "n_decided") and isinstance(value, float):
        return str(int(value))
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3f}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_number(v, k)}</td></tr>" for k, v in rows)
    return f"<table><tr><th>metric</th><th>value</th></tr>{body}</table>"


def _groups_table(name: str, groups: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(groups.values())))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [name, *columns])
    body = "".join(
        f"<tr><td>{html.escape(group)}</td>"
        + "".join(f"<td>{_number(v, c)}</td>" for c, v in row.items())
        + "</tr>"
        for group, row in groups.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _mapper_rows(mapper: dict) -> list[tuple[str, Any]]:
    """The mapper's settings; isotonic maps summarised (their knots are in the JSON)."""
    rows = []
    for key, value in mapper.items():
        if key == "isotonic" and value:
            knots = sum(len(x) for x, _ in value)
            value = f"{len(value)} monotone maps, {knots} knots"
        elif isinstance(value, dict | list | tuple) or value is None:
            value = json.dumps(json_safe(value))
        rows.append((f"mapper/{key}", value))
    return rows


def comparison_section(rows: dict[str, dict[str, Any]]) -> str:
    """The evaluated model beside a baseline (`rewardlab evaluate --baseline`), one row each."""
    note = (
        "Both models on the same held-out tasks, each through its own reward mapper: accuracy"
        " on non-tie pairs, quadratically weighted kappa, ECE of P(policy better), accuracy on"
        " the pairs only audio can decide, and accuracy with every clip replaced by silence."
        " A scalar RM scores each reply alone, so it has no presentation order: its"
        " consistency is 1.0 by construction."
    )
    return (
        f"<h2 id='baseline'>Against the baseline</h2><p class='note'>{html.escape(note)}</p>"
        + _groups_table("model", rows)
    )


def render_report(
    metrics: dict, figures: dict[str, Figure], settings: dict, silence: dict | None = None
) -> str:
    """The HTML page. `silence`: the metrics with the audio removed (audio backbones only)."""
    parts = [
        f"<h1>GRM evaluation: {html.escape(str(settings.get('grm', '')))}</h1>",
        f"<p class='note'>{int(metrics['judge/n'])} held-out tasks, reference levels from"
        f" {html.escape(str(settings.get('reference', '')))}; written"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. The numbers are in metrics.json.</p>",
    ]
    probes = probe_table(metrics)  # empty when the probes were not run
    for anchor, title, note, keys, names in SECTIONS:
        source = silence if anchor == "audio" else metrics
        if source is None or (anchor == "probes" and not probes):
            continue
        parts.append(
            f"<h2 id='{anchor}'>{html.escape(title)}</h2><p class='note'>{html.escape(note)}</p>"
        )
        if keys:
            parts.append(_table([(key, source[key]) for key in keys if key in source]))
        if anchor == "breakdowns":
            for key in (k for k in metrics if k.startswith("by_")):
                parts.append(
                    f"<h3>{html.escape(key[3:])}</h3>" + _groups_table(key[3:], metrics[key])
                )
        if anchor == "probes":
            parts.append(_groups_table("probe", probes))
        if anchor == "reward":
            parts.append(_table(_mapper_rows(settings.get("mapper", {}))))
        for name in names:
            if name in figures:
                parts.append(
                    f"<img alt='{name}' src='data:image/png;base64,{figure_png(figures[name])}'>"
                )
    if "comparison" in metrics:
        parts.append(comparison_section(metrics["comparison"]))
    parts.append("<h2 id='settings'>Settings</h2>")
    shown = [
        (key, f"{len(value)} (listed in metrics.json)" if isinstance(value, list) else value)
        for key, value in settings.items()
        if key != "mapper"
    ]
    parts.append(_table(shown))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>GRM evaluation</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_report(
    out: Path,
    metrics: dict,
    figures: dict[str, Figure],
    settings: dict,
    silence: dict | None = None,
) -> Path:
    """Write ``report.html`` and ``metrics.json`` (every number, and the settings) to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    numbers = {**metrics, "settings": settings}
    if silence is not None:
        numbers["silence"] = silence
    (out / "metrics.json").write_text(json.dumps(json_safe(numbers), indent=2) + "\n")
    path = out / "report.html"
    path.write_text(render_report(metrics, figures, settings, silence))
    return path
