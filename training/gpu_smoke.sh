#!/usr/bin/env bash
# bash training/gpu_smoke.sh            (on a machine with one CUDA GPU; needs espeak-ng)
# A Qwen2-Audio-7B-sized backbone (random weights, built from the config on the GPU) in bf16
# with LoRA: a few GRMTrainer steps on a small demo world and one scoring batch, then a few PPO
# updates of a same-sized LoRA policy against it. Prints training tokens/s, judgments/s, PPO
# seconds per update by phase, and peak GPU memory.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/rewardlab-gpu-smoke}
rm -rf "$OUT" && mkdir -p "$OUT"
HF_HUB_OFFLINE=1 $PY - "$OUT" <<'PYEOF'
import sys, time, torch
from pathlib import Path
from peft import get_peft_model, LoraConfig
from rewardlab.demo import DemoConfig, build_demo_project
from rewardlab.grm.examples import examples_from_frame, load_judgments
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.grm_trainer import GRMTrainer
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.tiny import TinySize, build_tiny_backbone, corpus_texts

out = Path(sys.argv[1])
build_demo_project(out / "project", DemoConfig(n=64), progress=False).close()
frame, rubrics, media = load_judgments(out / "project")
examples = examples_from_frame(frame, rubrics, 3)
texts = corpus_texts(examples, JudgeFormat(), rubrics.values())
# Qwen2-Audio-7B sizes: 32 x 4096 decoder, 32 x 1280 Whisper-large encoder, 30 s window
size = TinySize(vocab_size=4096, hidden_size=4096, layers=32, heads=32, kv_heads=32,
                intermediate_size=11008, audio_d_model=1280, audio_layers=32, audio_heads=20,
                audio_ffn=5120, chunk_length=30, max_positions=8192)
with torch.device("cuda"):
    backbone = build_tiny_backbone(out / "backbone", texts, size=size)
lora = LoraConfig(r=64, lora_alpha=128, target_modules=r".*language_model.*\.(q_proj|v_proj)")
grm = GenerativeRewardModel.load(backbone, lora=lora, dtype=torch.bfloat16, media_root=media)
grm.model.to("cuda")
args = GRMConfig(output_dir=str(out / "run"), max_steps=8, per_device_train_batch_size=4,
                 bf16=True, learning_rate=1e-4, logging_steps=1, save_strategy="no",
                 gradient_checkpointing=True, fixed_order_share=0.0)
trainer = GRMTrainer(grm.model, args, grm.encoder, examples)
torch.cuda.reset_peak_memory_stats()
start = time.perf_counter()
trainer.train()
train_s = time.perf_counter() - start
tokens = sum(len(grm.encoder.encode(e.item, "policy_first")) for e in examples[:32])
print(f"train: {8 * 4 / train_s:.2f} examples/s, ~{tokens / train_s:.0f} tokens/s, "
      f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
torch.cuda.reset_peak_memory_stats()
start = time.perf_counter()
dist = grm.judge([e.item for e in examples[:32]], batch_size=16)
score_s = time.perf_counter() - start
print(f"score: {64 / score_s:.1f} judgments/s (32 tasks x 2 orders), "
      f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")

# PPO: the same-sized policy (LoRA, reference = adapters off) against the GRM above, a few
# updates; time per update split into rollout / reward / optimisation
from rewardlab.rl.grm_reward import GRMReward
from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.ppo_trainer import AudioPPOTrainer
from rewardlab.rl.prompts import PolicyPromptEncoder, prompts_from_examples
from rewardlab.rl.recipe import load_policy
from rewardlab.rl.rewards import GRMPromptReward
policy, template = load_policy(backbone, lora=lora, dtype=torch.bfloat16)
policy.to("cuda")
ppo_args = AudioPPOConfig(output_dir=str(out / "ppo"), max_steps=4, bf16=True,
                          per_device_train_batch_size=4, gradient_accumulation_steps=2,
                          num_mini_batches=1, num_ppo_epochs=1, response_length=64,
                          learning_rate=1e-5, logging_steps=1, save_strategy="no",
                          gradient_checkpointing=True, local_rollout_forward_batch_size=8)
encoder = PolicyPromptEncoder(template, media_root=media)
trainer = AudioPPOTrainer(policy, ppo_args, encoder, prompts_from_examples(examples),
                          GRMPromptReward(GRMReward(grm)))
torch.cuda.reset_peak_memory_stats()
trainer.train()
for log in trainer.state.log_history[1:]:
    print(f"ppo update: rollout {log['time/rollout_s']:.2f} s, reward {log['time/reward_s']:.2f} s,"
          f" optimise {log['time/optimize_s']:.2f} s, length {log['val/response_length']:.0f}")
print(f"ppo peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
PYEOF
