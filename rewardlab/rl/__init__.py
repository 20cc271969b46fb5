"""Reinforcement learning against the GRM: PPO as a recipe, and reward sources for TRL.

    rewardlab ppo --config training/ppo_demo.yaml         # `ppo_recipe.train(config)`

The recipe and its pieces, one job per module:

    ppo_config.py    `AudioPPOConfig`, every setting of a run (one dataclass)
    ppo_recipe.py    `train(config)`: build, evaluate, loop over updates, evaluate, save
    ppo_trainer.py   `AudioPPOTrainer(...).train()`: the TRL-style face over those pieces
    rollout.py       encode, sample, old/reference log-probs and values, score the replies
    optimise.py      optimizer and schedule, advantages (GAE), PPO epochs and losses
    ppo_math.py      the maths as plain (B, T) tensor functions
    checkpoint.py    atomic ``checkpoint-N/`` folders: save, rotate, resume
    evaluation.py    held-out scores before and after, paired gains
    policy.py        `AudioPolicy` (an audio LLM with a value head) and `load_policy`
    prompts.py       `PPOPrompt` and how the policy reads it (clips as features)
    prompt_split.py  prompts from a project's judged tasks, split as the GRM split them
    warm_start.py    the supervised warm start and the tiny demo policy
    rewards.py       reward sources for PPO: the GRM (both orders, mapped) or a scalar RM
    grm_reward.py    `GRMReward`: the GRM as a TRL ``reward_funcs`` callable (GRPO, RLOO)
"""
