"""The scalar reward-model baseline (`train-rm`) on a real tiny Qwen2-Audio over the demo
world's real audio: its link, its loss, its training, its folder and its evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import TINY_GRM_SIZE, short_run

from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.ordinal_link import OrdinalLink
from rewardlab.grm.rm_config import RMConfig
from rewardlab.grm.rm_trainer import RMTrainer, bradley_terry_loss, preference_target
from rewardlab.grm.scalar_rm import ScalarRewardModel, reply_batch
from rewardlab.grm.tiny import build_tiny_backbone, corpus_texts


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("rm")
    project = demo_world(n=24, seed=3)
    data = load_examples(project)
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    backbone = build_tiny_backbone(root / "tiny", texts, size=TINY_GRM_SIZE)
    return {"project": project, "data": data, "backbone": backbone}


def rm_of(world, path: Path | None = None) -> ScalarRewardModel:
    data = world["data"]
    return ScalarRewardModel.load(path or world["backbone"], k=data.k, media_root=data.media_root)


def config(tmp_path: Path, **overrides) -> RMConfig:
    return short_run(RMConfig, tmp_path, **({"max_steps": 6} | overrides))


# -- the ordinal link ---------------------------------------------------------------------------


def test_ordinal_link_matches_hand_worked_values():
    """K=1, slope 1, cutpoint 0.5: boundaries (-0.5, 0.5). At d=0, P(-1) = sigmoid(-0.5) =
    0.377541, P(0) = sigmoid(0.5) - sigmoid(-0.5) = 0.244919, P(+1) = 1 - sigmoid(0.5) =
    0.377541; at d=1 the boundaries move to (-1.5, -0.5): 0.182426, 0.195115, 0.622459."""
    probs = OrdinalLink(1.0, (0.5,)).probs(np.array([0.0, 1.0]))
    np.testing.assert_allclose(probs[0], [0.377541, 0.244919, 0.377541], atol=1e-6)
    np.testing.assert_allclose(probs[1], [0.182426, 0.195115, 0.622459], atol=1e-6)


def test_ordinal_link_is_a_distribution_monotone_and_symmetric_in_d():
    link = OrdinalLink(1.7, (0.3, 1.1, 2.0))
    d = np.linspace(-6, 6, 121)
    probs = link.probs(d)  # (N, 7)
    assert probs.shape == (121, 7) and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-12)
    cumulative = probs.cumsum(1)[:, :-1]  # P(level <= j), falls as d grows
    assert (np.diff(cumulative, axis=0) < 0).all()
    expected = probs @ np.arange(-3, 4)
    assert (np.diff(expected) > 0).all()
    np.testing.assert_allclose(link.probs(-d), probs[:, ::-1], atol=1e-12)


def test_ordinal_link_fit_recovers_the_link_that_made_the_targets():
    true = OrdinalLink(2.0, (0.4, 1.0, 1.8))
    d = np.linspace(-3, 3, 400)
    fitted = OrdinalLink.fit(d, true.probs(d))
    assert fitted.slope == pytest.approx(2.0, abs=0.05)
    np.testing.assert_allclose(fitted.cutpoints, true.cutpoints, atol=0.05)


def test_ordinal_link_refuses_bad_parameters_and_targets():
    with pytest.raises(ValueError, match="cutpoints must be positive and increasing"):
        OrdinalLink(1.0, (0.5, 0.2))
    with pytest.raises(ValueError, match="slope must be a positive number"):
        OrdinalLink(0.0, (0.5,))
    with pytest.raises(ValueError, match=r"targets must be \(N, 2K\+1\)"):
        OrdinalLink.fit(np.zeros(3), np.ones((3, 4)))


# -- the loss -----------------------------------------------------------------------------------


def test_bradley_terry_loss_and_target_match_hand_worked_values():
    """Soft target (0.2, 0.2, 0.6) over -1..1: P(policy better) = 0.6 + 0.2/2 = 0.7.
    Rewards (1, 0) with target 1: -log sigmoid(1) = 0.313262; (0, 0) with target 0.5: log 2;
    (0, 2) with target 0.7: -(0.7 log sigmoid(-2) + 0.3 log sigmoid(2)) = 0.7 * 2.126928 +
    0.3 * 0.126928 = 1.526928."""
    assert preference_target(np.array([0.2, 0.2, 0.6])) == pytest.approx(0.7)
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    wanted = (0.313262, math.log(2), 1.526928)
    for row, target, want in zip(rewards, (1.0, 0.5, 0.7), wanted, strict=True):
        loss = bradley_terry_loss(row[None], torch.tensor([target]))
        assert loss.item() == pytest.approx(want, abs=1e-6)


# -- prompts, training, the folder --------------------------------------------------------------


def test_each_prompt_holds_the_history_with_its_audio_and_one_reply(world):
    rm = rm_of(world)
    example = world["data"].examples[0]
    task = example.item.task
    batch = reply_batch(rm.encoder, [example.item])
    policy, reference = (
        rm.tokenizer.decode(batch["input_ids"][row, : batch["last_index"][row] + 1])
        for row in (0, 1)
    )
    assert task.policy.text.strip() in policy and task.reference.text.strip() not in policy
    assert task.reference.text.strip() in reference and task.policy.text.strip() not in reference
    assert policy.endswith("Score:") and reference.endswith("Score:")
    clips = sum(1 for t in example.item.dialogue.turns[: task.turn_index + 1] if t.audio)
    assert clips and batch["input_features"].shape[0] == 2 * clips  # each reply hears them


def _params(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_training_lowers_the_bt_loss_and_moves_the_head_and_every_trainable_weight(world, tmp_path):
    rm = rm_of(world)
    before = _params(rm.net)
    # four decided tasks, one full batch per step: the loss must fall as it fits them
    examples = [e for e in world["data"].examples if abs(preference_target(e.target) - 0.5) > 0.3]
    args = config(tmp_path, max_steps=12, per_device_train_batch_size=4)
    trainer = RMTrainer(rm, args, examples[:4])
    trainer.train()
    losses = [log["bt_loss"] for log in trainer.state.log_history if "bt_loss" in log]
    assert len(losses) == 12 and np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    assert not torch.equal(rm.net.head.weight, before["head.weight"])
    for name, param in rm.net.named_parameters():
        moved = not torch.equal(param, before[name])
        if "audio_tower" in name or "lm_head" in name:  # frozen; the reward never reads lm_head
            assert not param.requires_grad and not moved, name
        else:
            assert moved, f"{name} did not change"


def test_checkpoint_round_trip_gives_identical_scores(world, tmp_path):
    rm = rm_of(world)
    examples = world["data"].examples
    RMTrainer(rm, config(tmp_path), examples).train()
    targets = np.stack([e.target for e in examples]).astype(np.float64)
    link = rm.fit_link([e.item for e in examples], targets)
    assert link != OrdinalLink.initial(world["data"].k)
    saved = rm.save(tmp_path / "final")
    GRMCheckpoint(saved).save_config(config(tmp_path))
    assert {"score_head.safetensors", "ordinal_link.json", "rm_config.yaml"} <= {
        p.name for p in saved.iterdir()
    }
    checkpoint = GRMCheckpoint(saved)
    assert checkpoint.is_scalar and isinstance(checkpoint.config(), RMConfig)
    reloaded = checkpoint.load_model(media_root=world["data"].media_root, k=world["data"].k)
    assert isinstance(reloaded, ScalarRewardModel) and reloaded.link == link
    items = [e.item for e in examples[:6]]
    np.testing.assert_array_equal(reloaded.rewards(items), rm.rewards(items))
    dist = reloaded.judge(items)
    np.testing.assert_array_equal(dist.probs, rm.judge(items).probs)
    np.testing.assert_array_equal(dist.probs[:, 0], dist.probs[:, 1])  # no order
    with pytest.raises(ValueError, match="the scalar RM has K=3 but the data has K=2"):
        checkpoint.load_model(media_root=world["data"].media_root, k=2)


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"eval_share must be in \[0, 1\], got 1.5"):
        config(tmp_path, eval_share=1.5)
    with pytest.raises(ValueError, match="train-rm does not resume"):
        config(tmp_path, resume_from_checkpoint=str(tmp_path))
    with pytest.raises(ValueError, match="lora_r must be >= 0"):
        config(tmp_path, lora_r=-1)


# -- the command line ---------------------------------------------------------------------------


def test_cli_trains_evaluates_and_compares_with_the_grm_on_the_same_tasks(world, tmp_path):
    from rewardlab.cli import main

    project, backbone = world["project"], world["backbone"]
    common = (
        f"model_path: {backbone}\nproject: {project}\nuse_cpu: true\nsave_strategy: 'no'\n"
        "max_steps: 2\nper_device_train_batch_size: 2\n"
    )
    for name in ("rm", "grm"):
        (tmp_path / f"{name}.yaml").write_text(common + f"output_dir: {tmp_path / name}\n")
    assert main(["train-rm", "--config", str(tmp_path / "rm.yaml"), "--learning-rate", "1e-3"]) == 0
    report = json.loads((tmp_path / "rm" / "eval.json").read_text())
    assert report["judge/consistency"] == 1.0 and "silence/judge/accuracy" in report
    rm = str(tmp_path / "rm" / "final")
    common_eval = ["--project", str(project), "--truth", "--no-probes"]  # tests/test_probes.py
    assert main(["evaluate", "--grm", rm, "--out", str(tmp_path / "alone"), *common_eval]) == 0
    alone = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    assert alone["settings"]["model"].startswith("scalar RM") and "silence" in alone
    assert alone["judge/consistency"] == 1.0

    assert main(["train-grm", "--config", str(tmp_path / "grm.yaml")]) == 0
    grm = str(tmp_path / "grm" / "final")
    out = tmp_path / "both"
    assert main(["evaluate", "--grm", grm, "--baseline", rm, "--out", str(out), *common_eval]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["comparison"]
    assert [row["kind"] for row in rows.values()] == ["GRM", "scalar RM"]
    grm_row, rm_row = rows.values()
    assert grm_row["accuracy"] == metrics["judge/accuracy"] and grm_row["n"] == rm_row["n"]
    assert rm_row["accuracy"] == alone["judge/accuracy"]  # the same tasks, the same numbers
    assert rm_row["silence_accuracy"] == alone["silence"]["judge/accuracy"]
    assert rm_row["consistency"] == 1.0
    page = (out / "report.html").read_text()
    assert "Against the baseline" in page and f"baseline scalar RM: {rm}" in page

    # a baseline that held out other tasks is refused, naming both splits
    (tmp_path / "rm7.yaml").write_text(common + f"output_dir: {tmp_path / 'rm7'}\nsplit_seed: 7\n")
    assert main(["train-rm", "--config", str(tmp_path / "rm7.yaml")]) == 0
    other = str(tmp_path / "rm7" / "final")
    args = ["evaluate", "--grm", grm, "--baseline", other, "--out", str(tmp_path / "x")]
    assert main([*args, *common_eval]) == 1
