"""The generative reward model and its scalar baseline: judge format, prompts, scoring,
training and the run folder.

    rewardlab train-grm --config training/grm_demo.yaml      # `recipe.train_grm(config)`
    rewardlab judge --grm runs/grm/final --project demo_out   # `scoring.judge_project`

One job per module:

    judge_format.py  the 2K+1 verdict tokens and the prompt layout (`judge_format.json`)
    examples.py      `load_examples(source)`: judged tasks as training examples; the split
    encoding.py      prompts to tensors (clip features, audio placeholders, padding)
    model.py         `GenerativeRewardModel`: load, save, judge (both orders, one history pass)
    schedule.py      `GRMSchedule`: every step-dependent training setting, one pure object
    batches.py       both orders side by side, length-grouped batches that carry their step
    grm_config.py    `GRMConfig`, every setting of a run (one dataclass)
    grm_trainer.py   `GRMTrainer`: the verdict-distribution loss over Trainer's public hooks
    recipe.py        `train_grm(config)`: data, split, model, train, save, evaluate
    checkpoint.py    `GRMCheckpoint`: the one owner of a run folder's files
    evaluate.py      calibrate and evaluate on the held-out split; `scoring.py` judges a project
    tiny.py          tiny random-init backbones and their locally trained tokenizer

The scalar reward-model baseline (`rewardlab train-rm`, `rm_recipe.train_rm(config)`) shares
the data, split, encoder, checkpoint folder and evaluation:

    scalar_rm.py     `ScalarRewardModel`: backbone + score head over the history and one reply
    ordinal_link.py  `OrdinalLink`: r_policy - r_reference to a distribution over the levels
    rm_config.py     `RMConfig`;  rm_trainer.py `RMTrainer` (Bradley-Terry);  rm_recipe.py
"""
