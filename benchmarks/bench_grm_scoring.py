"""Direct GRM scoring vs generate-then-parse vs a sequence-classification RM (the cost floor).

    .venv/bin/python benchmarks/bench_grm_scoring.py [--tasks 256] [--critique-tokens 256]
        [--reasoning-tasks 32] [--family qwen2_audio --family qwen2_5_omni] [--direct-only]

One demo world, one tiny GRM per backbone family (default Qwen2-Audio), the same tasks in both
presentation orders:

- direct: `GenerativeRewardModel.judge` (shared history, one pass, verdict read at the slot)
- generate-then-parse: generate a critique of N tokens, then a regex for "Verdict: X" in the
  text, as prometheus-eval and SpeechJudge score (greedy; unparsable verdicts counted). N is
  256 by default: their critiques run to a few hundred tokens
- seq-cls floor: the same backbone run once over each full prompt with a linear score head
  on the last token, as a sequence-classification reward model of the same size would
- reasoning mode, batched (`judge(mode="reasoning")`: one generate per batch of tasks in both
  orders, the verdict read on its cache) vs one at a time (`generation="item"`: one generate
  per task and order, then a full pass), on the first `--reasoning-tasks` tasks with critiques
  of up to `--critique-tokens` tokens; greedy, so the verdicts must be equal

Prints judgments/s for each and the ratios, per family, then one table of direct scoring
against each family's own seq-cls floor.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import torch

from rewardlab.commands.options import TINY_FAMILIES
from rewardlab.demo import DemoConfig, build_demo_project
from rewardlab.grm.critique import left_pad
from rewardlab.grm.encoding import audio_batch, collate_full
from rewardlab.grm.examples import load_examples
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.tiny import TinySize, build_tiny_grm
from rewardlab.schema import Order


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def generate_then_parse(grm: GenerativeRewardModel, items, tokens: int, batch: int) -> int:
    """Greedy critique of exactly `tokens` tokens per (task, order), then a regex; failures."""
    pattern = re.compile(rf"{re.escape(grm.format.verdict_marker)}\s*([A-Z])")
    failures = 0
    prompts = [grm.encoder.encode(item, order) for item in items for order in Order]
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        pad = grm.tokenizer.pad_token_id
        ids, mask = left_pad([p.history_ids + p.pair_ids for p in chunk], pad)
        width = ids.shape[1]
        out = grm.model.generate(
            input_ids=ids,
            attention_mask=mask,
            **audio_batch(chunk, grm.encoder.feature_mask_key),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=pad,
        )
        for text in grm.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True):
            failures += pattern.search(text) is None
    return failures


def seq_cls_floor(grm: GenerativeRewardModel, items, batch: int) -> torch.Tensor:
    backbone = (
        grm.model.model
    )  # the family's model: audio tower (+ projector) + decoder, no LM head
    head = torch.nn.Linear(backbone.config.text_config.hidden_size, 1)
    prompts = [grm.encoder.encode(item, order) for item in items for order in Order]
    scores = []
    for start in range(0, len(prompts), batch):
        inputs = collate_full(
            prompts[start : start + batch], grm.tokenizer.pad_token_id, grm.encoder.feature_mask_key
        )
        last = inputs.pop("verdict_index")
        inputs.pop("labels")
        hidden = backbone(**inputs).last_hidden_state  # (B, T, H)
        scores.append(head(hidden[torch.arange(len(last)), last]).squeeze(-1))
    return torch.cat(scores)


def reasoning_both_ways(grm: GenerativeRewardModel, items, tokens: int, batch: int) -> dict:
    """Seconds of batched and one-at-a-time reasoning mode, and how far their results differ."""
    kwargs = {"mode": "reasoning", "max_new_tokens": tokens, "batch_size": batch}
    grm.judge(items[:2], **kwargs)  # warm-up of both paths
    grm.judge(items[:2], **kwargs, generation="item")
    batched_s, batched = timed(lambda: grm.judge(items, **kwargs))
    single_s, single = timed(lambda: grm.judge(items, **kwargs, generation="item"))
    return {
        "batched_s": batched_s,
        "single_s": single_s,
        "same_critiques": batched.critiques == single.critiques,
        "max_prob_diff": float(abs(batched.probs - single.probs).max()),
        "same_verdicts": bool((batched.probs.argmax(-1) == single.probs.argmax(-1)).all()),
    }


def bench_family(family: str, root: Path, data, args) -> dict:
    """Every measure above for one tiny backbone of `family`, on the same tasks."""
    size = TinySize(hidden_size=96, layers=3)  # what `make demo` trains
    backbone = build_tiny_grm(
        root / family, data.examples, data.rubrics.values(), 3, size=size, family=family
    )
    grm = GenerativeRewardModel.load(backbone, media_root=data.media_root)
    grm.model.eval()
    items = [e.item for e in data.examples]
    grm.judge(items[:2])  # warm-up; also fills the clip-feature cache for everyone below
    grm.judge(items, batch_size=args.batch)
    result = {"family": family, "n": 2 * len(items)}  # judgments: every task in both orders
    with torch.no_grad():
        result["direct_s"], _ = timed(lambda: grm.judge(items, batch_size=args.batch))
        result["floor_s"], _ = timed(lambda: seq_cls_floor(grm, items, args.batch))
        if args.direct_only:
            return result
        result["parse_s"], result["failures"] = timed(
            lambda: generate_then_parse(grm, items, args.critique_tokens, args.batch)
        )
        result["reasoning"] = reasoning_both_ways(
            grm, items[: args.reasoning_tasks], args.critique_tokens, args.batch
        )
    return result


def report(result: dict, args) -> None:
    n = result["n"]
    direct_s, floor_s = result["direct_s"], result["floor_s"]
    print(f"-- {result['family']}")
    print(f"direct (shared history, 1 pass):      {n / direct_s:8.1f} judgments/s")
    if "parse_s" in result:
        print(
            f"generate {args.critique_tokens} tokens then parse:      {n / result['parse_s']:8.1f}"
            f" judgments/s  ({result['failures']}/{n} verdicts unparsable)"
        )
    print(f"seq-cls RM floor (1 full pass):       {n / floor_s:8.1f} judgments/s")
    if "parse_s" in result:
        print(
            f"direct vs generate-then-parse: {result['parse_s'] / direct_s:.1f}x faster"
            " (target >= 10x)"
        )
    print(f"direct vs seq-cls floor:       {floor_s / direct_s:.2f}x the floor's throughput")
    if "reasoning" not in result:
        return
    r, m = result["reasoning"], 2 * min(n // 2, args.reasoning_tasks)
    print(
        f"reasoning mode, {m} judgments, critiques of up to {args.critique_tokens} tokens,"
        f" batch {args.batch} tasks ({2 * args.batch} rows per generate):"
    )
    print(f"  batched (1 generate per batch, verdict on its cache): {m / r['batched_s']:8.2f} /s")
    print(f"  one at a time (1 generate per judgment + full pass):  {m / r['single_s']:8.2f} /s")
    print(
        f"  batched vs one at a time: {r['single_s'] / r['batched_s']:.1f}x faster (target >= 5x);"
        f" critiques identical: {r['same_critiques']}, verdicts (argmax) equal:"
        f" {r['same_verdicts']}, max |probability difference| {r['max_prob_diff']:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=256)
    parser.add_argument("--critique-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reasoning-tasks", type=int, default=32)
    parser.add_argument(
        "--family",
        action="append",
        choices=TINY_FAMILIES,
        help="a backbone family to measure (repeat for several; default qwen2_audio)",
    )
    parser.add_argument(
        "--direct-only",
        action="store_true",
        help="direct scoring and its seq-cls floor only (no generation)",
    )
    args = parser.parse_args()
    families = args.family or ["qwen2_audio"]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_demo_project(root / "p", DemoConfig(n=args.tasks, seed=0), progress=False).close()
        data = load_examples(root / "p")
        results = [bench_family(family, root, data, args) for family in families]
    n = results[0]["n"]
    print(
        f"{n} judgments ({n // 2} tasks x 2 orders), batch {args.batch}, CPU threads "
        f"{torch.get_num_threads()}"
    )
    for result in results:
        report(result, args)
    print("\n| family | direct judgments/s | seq-cls floor judgments/s | direct / floor |")
    print("| --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['family']} | {n / r['direct_s']:.1f} | {n / r['floor_s']:.1f} |"
            f" {r['floor_s'] / r['direct_s']:.2f}x |"
        )


if __name__ == "__main__":
    main()
