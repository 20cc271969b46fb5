"""`rewardlab stats PROJECT [--json] [--plot F]`: volume, agreement, position bias, gold accuracy
of a project's judgments, overall and per annotator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rewardlab.commands.options import Verbs


def run_stats(args: argparse.Namespace) -> None:
    import polars as pl

    from rewardlab.data import per_annotator, project_stats
    from rewardlab.store import Store
    from rewardlab.store.export import judgments_frame

    with Store(Path(args.project)) as store:
        judgments = judgments_frame(store)
        stats = {
            "project": store.settings.name,
            "k": store.k,
            **{table: store.count(table) for table in ("dialogues", "tasks", "annotators")},
            **project_stats(judgments, store.k),
        }
        annotators = per_annotator(judgments, store.k)
    if args.json:
        print(json.dumps(stats | {"per_annotator": annotators.to_dicts()}, indent=2))
    else:
        width = max(len(key) for key in stats)
        for key, value in stats.items():
            print(f"{key:<{width}}  {value}")
        if annotators.height:
            with pl.Config(tbl_rows=100, tbl_hide_dataframe_shape=True, float_precision=3):
                print(annotators)
    if args.plot and judgments.height:
        from rewardlab.eval.annotation_plots import plot_annotation_overview

        print(f"plot: {plot_annotation_overview(judgments, store.k, Path(args.plot))}")


def add_parsers(verbs: Verbs) -> None:
    stats = verbs.add_parser("stats", help="volume, agreement, position bias, gold accuracy")
    stats.add_argument("project")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument("--plot", type=Path, help="also write an overview figure (PNG)")
    stats.set_defaults(run=run_stats)
