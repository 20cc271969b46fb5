"""The order-consistency term: what it computes, which rows it pairs, and that it trains a
judge whose two presentation orders agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from builders import TINY_GRM_SIZE

from rewardlab.grm.batches import GRMCollator, order_partners
from rewardlab.grm.examples import load_examples
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.grm_trainer import GRMTrainer, order_consistency_loss
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.schedule import GRMSchedule
from rewardlab.grm.tiny import build_tiny_backbone, corpus_texts
from rewardlab.schema import Order

PF, RF = Order.POLICY_FIRST, Order.REFERENCE_FIRST


def test_partners_pair_the_two_orders_of_one_example_only():
    # examples a, b, a, b, c, c; the last two both policy-first (the fixed-order share)
    examples = [1, 2, 1, 2, 3, 3]
    shown = [PF, PF, RF, RF, PF, PF]
    assert order_partners(examples, shown).tolist() == [2, 3, 0, 1, -1, -1]


def test_the_term_is_the_symmetric_kl_in_policy_vs_reference_orientation():
    torch.manual_seed(0)
    log_p = F.log_softmax(torch.randn(4, 7), -1)
    reference_first = torch.tensor([False, True, False, False])
    partner = torch.tensor([1, 0, -1, -1])
    p, q = log_p[0], log_p[1].flip(-1)  # row 1 shown reference-first: reversed back
    kl = lambda a, b: (a.exp() * (a - b)).sum()  # noqa: E731
    expected = (kl(p, q) + kl(q, p)) / 2
    got = order_consistency_loss(log_p, reference_first, partner)
    torch.testing.assert_close(got, expected)
    # two orders that agree once flipped cost nothing; no twins, nothing either
    agreeing = torch.stack([log_p[0], log_p[0].flip(-1)])
    assert order_consistency_loss(agreeing, reference_first[:2], partner[:2]).item() < 1e-7
    lone = order_consistency_loss(log_p, reference_first, torch.full((4,), -1))
    assert lone.item() == 0.0 and lone.requires_grad is log_p.requires_grad


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("grm-order")
    project = demo_world(n=24, seed=3)
    data = load_examples(project)
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    backbone = build_tiny_backbone(root / "tiny", texts, size=TINY_GRM_SIZE)
    return {"root": root, "media": data.media_root, "examples": data.examples, "backbone": backbone}


def test_the_collator_marks_each_rows_shown_order_and_twin(world):
    grm = GenerativeRewardModel.load(world["backbone"], media_root=world["media"])
    a, b = world["examples"][:2]
    schedule = GRMSchedule(max_steps=1, examples=2, batch_rows=4)
    collator = GRMCollator(grm.encoder, 0.0, seed=0, schedule=schedule)
    batch = collator([(a, PF, 0), (a, RF, 0), (b, PF, 0), (b, RF, 0)])
    assert batch["reference_first"].tolist() == [False, True, False, True]
    assert batch["partner"].tolist() == [1, 0, 3, 2]


def order_gap(grm: GenerativeRewardModel, examples) -> float:
    """Mean absolute difference of the two orders' expected levels (policy vs reference)."""
    expected = grm.judge([e.item for e in examples]).expected_level()
    return float(np.abs(expected[:, 0] - expected[:, 1]).mean())


def test_the_term_trains_the_two_orders_to_agree(world, tmp_path):
    """The same short run with and without the term: with it the orders' expected levels
    end closer, on the tasks trained and on tasks never seen."""
    train, unseen = world["examples"][:16], world["examples"][16:40]
    gaps = {}
    for weight in (0.0, 4.0):
        grm = GenerativeRewardModel.load(world["backbone"], media_root=world["media"])
        args = GRMConfig(
            output_dir=str(tmp_path / f"run-{weight}"),
            max_steps=30,
            per_device_train_batch_size=8,
            learning_rate=3e-3,
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
            fixed_order_share=0,
            critique_share=0,
            order_consistency_weight=weight,
        )
        trainer = GRMTrainer(grm.model, args, grm.encoder, train)
        trainer.train()
        logged = [log for log in trainer.state.log_history if "verdict_loss" in log]
        assert ("order_consistency_loss" in logged[-1]) == (weight > 0)
        gaps[weight] = (order_gap(grm, train), order_gap(grm, unseen))
    assert gaps[4.0][0] < 0.5 * gaps[0.0][0], gaps
    assert gaps[4.0][1] < 0.5 * gaps[0.0][1], gaps
