"""The `rewardlab` verbs, each parser beside its command: one small module per family of verbs.

Each module has `add_parsers(verbs)`, which adds its verbs to the `rewardlab` sub-parsers and
sets `run` (the command, called with the parsed namespace) on each. `rewardlab.cli` is the one
composition root that assembles them; shared option spellings live in `options.py`.

These modules (with `rewardlab.cli`) are the composition root of the project: `serve.py` and
`argilla.py` may import `annotation_ui`, lazily, inside their commands; no other rewardlab
module does.
"""
