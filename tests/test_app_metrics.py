"""Agreement metrics against hand-computed and published values; the dashboard built on them."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
from app_harness import make_project

from annotation_ui import dashboard
from annotation_ui.admin import dashboard_view
from annotation_ui.service import start_of_today
from rewardlab.eval.agreement import (
    krippendorff_alpha_ordinal,
    level_confusion,
    pairwise_kappa,
)
from rewardlab.schema import Judgment
from rewardlab.store import Store
from rewardlab.store.export import judgments_frame


def test_alpha_on_krippendorffs_published_example():
    """Krippendorff (2011), 4 coders x 12 units, values 1..5 with gaps: ordinal alpha 0.815."""
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[c[u] for c in coders if c[u] is not None] for u in range(12)]
    assert round(krippendorff_alpha_ordinal(units, [1, 2, 3, 4, 5]), 3) == 0.815


def test_alpha_by_hand():
    """Two units [0, 1] and [1, 0]: o[0,1] = o[1,0] = 2, n_0 = n_1 = 2, n = 4.
    delta2(0, 1) = (n_0 + n_1 - (n_0 + n_1) / 2) ** 2 = 4.
    alpha = 1 - (n - 1) * (2*4 + 2*4) / (2*2*4 + 2*2*4) = 1 - 3 * 16 / 32 = -0.5."""
    assert krippendorff_alpha_ordinal([[0, 1], [1, 0]], [0, 1]) == pytest.approx(-0.5)
    assert krippendorff_alpha_ordinal([[0, 0], [1, 1, 1]], [0, 1]) == 1.0
    # a unit judged once compares nothing; all values equal: no variation to agree on
    assert math.isnan(krippendorff_alpha_ordinal([[0], [1]], [0, 1]))
    assert math.isnan(krippendorff_alpha_ordinal([[1, 1], [1, 1]], [0, 1]))
    # ordinal: a disagreement of two steps costs more than one of a single step
    near = krippendorff_alpha_ordinal([[0, 1], [2, 2], [0, 0], [1, 1]], [0, 1, 2])
    far = krippendorff_alpha_ordinal([[0, 2], [1, 1], [0, 0], [2, 2]], [0, 1, 2])
    assert near > far


def frame(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "level"], orient="row")


def test_pairwise_quadratic_kappa_by_hand():
    """K = 1, a = [-1, 0, 1] and b = [-1, 0, 0] on three tasks. Weights (i - j)^2 / 4.
    Observed weighted disagreement: one pair (1 vs 0) at 1/4, over 3 pairs = 1/12.
    Expected from the marginals a = (1/3, 1/3, 1/3), b = (1/3, 2/3, 0): 1/4.
    kappa = 1 - (1/12) / (1/4) = 2/3."""
    rows = [(f"t{i}", "a", level) for i, level in enumerate([-1, 0, 1])]
    rows += [(f"t{i}", "b", level) for i, level in enumerate([-1, 0, 0])]
    rows += [("t0", "c", 1)]  # c shares one task: below min_shared
    kappas = pairwise_kappa(frame(rows), k=1, min_shared=2)
    assert kappas.rows() == [("a", "b", 3, pytest.approx(2 / 3))]


def test_level_confusion_counts_each_pair_both_ways():
    rows = [("t1", "a", 1), ("t1", "b", 1), ("t1", "c", 0), ("t2", "a", -1), ("t2", "b", 1)]
    matrix = level_confusion(frame(rows), k=1)
    expected = [
        [0, 0, 1],  # -1 vs 1 on t2
        [0, 0, 2],  # 0 vs 1 twice on t1
        [1, 2, 2],  # 1 vs 1 on t1, both directions
    ]
    assert matrix.tolist() == expected and matrix.sum() == 2 * 4


def test_dashboard_numbers_and_figures_from_a_real_store(tmp_path: Path):
    with make_project(tmp_path / "p", 6, gold=1, annotators_per_task=2) as store:
        for name in ("ann-1", "ann-2", "ann-3"):
            store.add_annotator(name)
        levels = {"ann-1": [2, 1, 0, -1, 3, 1], "ann-2": [2, 1, 1, -1, 3, 0]}
        judgments = [
            Judgment(
                id=f"{name}-{i}",
                task_id=f"t{i:02d}",
                annotator_id=name,
                level=level,
                shown_order="policy_first" if i % 2 else "reference_first",
                time_spent_s=10.0 + i,
            )
            for name, row in levels.items()
            for i, level in enumerate(row)
        ]
        store.submit_judgments(
            [*judgments, Judgment(id="x", task_id="t00", annotator_id="ann-3", level=2)]
        )
        data = judgments_frame(store)
        numbers = dashboard.summary(data, 3, tasks=6, overlap=2, flagged=1)
    assert numbers["tasks_complete"] == 6 and numbers["judgments"] == 13
    assert numbers["krippendorff_alpha_ordinal"] == round(
        krippendorff_alpha_ordinal(
            [[2, 2, 2], [1, 1], [0, 1], [-1, -1], [3, 3], [1, 0]], range(-3, 4)
        ),
        3,
    )
    assert numbers["gold_accuracy"] == 0.5  # t05 is gold at level 1: ann-1 right, ann-2 not
    assert numbers["flagged_tasks"] == 1
    assert "| krippendorff alpha ordinal |" in dashboard.summary_markdown(numbers)
    figures = {
        "progress": dashboard.progress_figure(data, start_of_today()),
        "time": dashboard.time_figure(data),
        "annotators": dashboard.annotator_figure(data, 3),
        "agreement": dashboard.agreement_figure(data, 3),
        "confusion": dashboard.confusion_figure(data, 3),
    }
    titles = {name: [ax.get_title() for ax in f.axes] for name, f in figures.items()}
    assert titles["annotators"] == [
        "Gold accuracy (exact level)",
        "Position bias: Response 1 (left) wins",
    ]
    assert titles["agreement"][0].startswith(
        "Agreement per task (Krippendorff's alpha, ordinal: 0."
    )
    for name, figure in figures.items():
        figure.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000


def test_missing_figures_read_as_words_not_none(tmp_path: Path):
    with Store.create(tmp_path / "p") as store:
        data = judgments_frame(store)  # nothing judged yet: every figure is missing
    numbers = dashboard.summary(data, 3, tasks=0, overlap=2, flagged=0)
    missing = {name for name, value in numbers.items() if value is None}
    assert missing == set(dashboard.NOT_YET)  # each figure that can be missing has its words
    page = dashboard.summary_markdown(numbers)
    assert "None" not in page
    assert "| gold accuracy | no gold judged yet |" in page
    assert "| krippendorff alpha ordinal | no task judged by two annotators yet |" in page
    title = dashboard.agreement_figure(data, 3).axes[0].get_title()
    assert title.endswith("ordinal: no task judged by two annotators yet)")
    with Store(tmp_path / "p") as store:
        summary, *figures, flags, latest = dashboard_view(store)  # what the admin page shows
    assert summary == page and figures == [None] * 5  # no figures before any judgment
    assert (len(flags), len(latest)) == (0, 0)
