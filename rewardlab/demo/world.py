"""The demo world: multi-turn spoken dialogues whose better reply is known.

Every dialogue has the user state a fact (sometimes correcting themself, "no wait, I meant
..."), optionally set a standing instruction, then ask a question. The last user turn is spoken
in a mood (excited: fast and high; sad: slow and low; whispering; or neutral), which only the
audio carries: the words are deliberately ambiguous ("I just heard back about the job").

A reply is built from three parts, each right or wrong in context:

    [instruction prefix] <tone opener> <content> [instruction suffix]
    tone      +1 when the opener fits how the user sounded, else -1      (audio)
    memory    +1 uses the (corrected) fact, 0 generic, -1 wrong or stale   (earlier turns)
    retention +1 honours the standing instruction, -1 ignores it          (earlier turns)

Ground truth for a pair is the difference of those scores: summed for a plain pairwise task,
the rubric's own axis only (times two) for a rubric task, clipped to -K..K. "Audio-only" tasks
come in twins: the same transcripts and the same two candidates, spoken in two moods, so the
twins have opposite levels and only the audio can tell them apart.

A dialogue can end in several tasks, each a different pair of candidates for the same last
turn (`more_pairs`), as when several policy samples are judged per prompt. The same context
then appears with better and worse replies, so what decides the level is the reply read
against the context, not anything the context alone carries.

Everything here is pure and seeded; `rewardlab.demo.build` turns it into audio and a store.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from typing import Any

from rewardlab.demo.tts import Speech

FACTS = {
    "colour": (
        ["red", "blue", "green", "yellow", "purple", "orange"],
        "My favourite colour is {value}.",
        "What colour should I paint my kitchen?",
        "Paint it {value}, your favourite colour.",
        "A bright colour would look lovely in the kitchen.",
    ),
    "city": (
        ["Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Dublin"],
        "I am flying to {value} next week.",
        "What should I read before my trip?",
        "Read a short guide to {value} before you fly.",
        "Read a short travel guide before you fly.",
    ),
    "pet": (
        ["dog", "cat", "parrot", "rabbit", "horse", "turtle"],
        "I have a {value} called Pip.",
        "What should I buy Pip for her birthday?",
        "Get Pip a new toy made for a {value}.",
        "Get Pip a nice new toy.",
    ),
}
INSTRUCTIONS = {  # id: (what the user asks, prefix when honoured, suffix when honoured)
    "captain": ("Please call me Captain from now on.", "Captain, ", ""),
    "sign_off": ("Please end every answer with the words over and out.", "", " Over and out."),
    "ask_back": ("Please always finish with a question back to me.", "", " What do you think?"),
}
MOODS = {  # mood: (rate range, pitch range, voice variant, the opener that fits it)
    "excited": ((215, 250), (78, 95), "", "That is fantastic news!"),
    "sad": ((95, 120), (5, 22), "", "Oh, I am so sorry to hear that."),
    "whisper": ((150, 175), (40, 60), "whisper", "I will keep my voice down for you."),
    "neutral": ((160, 185), (40, 60), "", "Thanks for telling me."),
}
NEWS = [
    "I just heard back about the job.",
    "The doctor called me this morning.",
    "My exam results came in today.",
    "So my brother finally phoned me.",
    "The letter from the council arrived.",
]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"]
SPEAKER_VARIANTS = ["", "m1", "m3", "m7", "f1", "f2", "f4"]
AXIS_RUBRICS = {
    "tone": ["emotional_continuity", "paralinguistic_responsiveness"],
    "memory": ["inference_memory"],
    "correction": ["voice_editing"],
    "retention": ["instruction_retention"],
}
ACKNOWLEDGEMENTS = ["Got it.", "Noted, thank you.", "Understood.", "Okay, I will remember that."]


@dataclass(frozen=True)
class Reply:
    tone: str  # the mood whose opener it uses
    memory: str  # "right" | "generic" | "wrong"
    retention: bool  # honours the standing instruction (when there is one)


@dataclass
class Scene:
    """One dialogue and its task, before any audio exists."""

    index: int
    fact: str
    value: str
    stale_value: str | None  # the value the user corrected away from
    instruction: str | None
    mood: str
    news: str
    voice: str
    neutral_prosody: tuple[int, int]
    mood_prosody: tuple[int, int]
    policy: Reply
    reference: Reply
    rubric_id: str | None
    axis: str
    audio_only: bool = False
    twin: int | None = None
    pair: int = 0  # which of the dialogue's candidate pairs this task is
    truth: dict = field(default_factory=dict)

    def user_turns(self) -> list[Speech]:
        """The user's clips: the fact (and instruction), then the mood-carrying question."""
        _, statement, question, _, _ = FACTS[self.fact]
        said = statement.format(value=self.stale_value or self.value)
        if self.stale_value:
            said += f" No wait, I meant {self.value}."
        speeches = [Speech(said, self.voice, *self.neutral_prosody)]
        if self.instruction:
            speeches.append(
                Speech(INSTRUCTIONS[self.instruction][0], self.voice, *self.neutral_prosody)
            )
        variant = MOODS[self.mood][2]
        voice = f"{self.voice.split('+')[0]}+{variant}" if variant else self.voice
        speeches.append(Speech(f"{self.news} {question}", voice, *self.mood_prosody))
        return speeches

    def reply_text(self, reply: Reply) -> str:
        _, _, _, specific, generic = FACTS[self.fact]
        wrong = self.stale_value or next(v for v in FACTS[self.fact][0] if v != self.value)
        content = {"right": specific.format(value=self.value), "generic": generic}
        content["wrong"] = specific.format(value=wrong)
        text = f"{MOODS[reply.tone][3]} {content[reply.memory]}"
        if self.instruction and reply.retention:
            prefix, suffix = INSTRUCTIONS[self.instruction][1:]
            text = f"{prefix}{text[0].lower()}{text[1:]}{suffix}" if prefix else text + suffix
        return text

    def scores(self, reply: Reply) -> dict[str, int]:
        scores = {"tone": 1 if reply.tone == self.mood else -1}
        scores["memory"] = {"right": 1, "generic": 0, "wrong": -1}[reply.memory]
        scores["retention"] = (1 if reply.retention else -1) if self.instruction else 0
        return scores


def scene_rules(scene: Scene) -> dict:
    """What a reply to this dialogue is scored against; stored in the dialogue's metadata so a
    reply written later (by a policy) can be scored by `score_reply`."""
    return {
        "fact": scene.fact,
        "value": scene.value,
        "stale_value": scene.stale_value,
        "instruction": scene.instruction,
        "mood": scene.mood,
    }


def score_reply(rules: dict, text: str) -> dict[str, int]:
    """The world's own per-axis scores of a free-text reply, by the rules replies are built
    from: the fitting opener and no other (tone); the right value named and no other, a generic
    reply 0, anything else -1 (memory); the instruction's prefix or suffix (retention). For
    every reply the world writes this equals `Scene.scores`."""
    said = " ".join(text.lower().split())
    openers = [mood for mood, spec in MOODS.items() if spec[3].lower() in said]
    scores = {"tone": 1 if openers == [rules["mood"]] else -1}
    values, _, _, _, generic = FACTS[rules["fact"]]
    named = {v for v in values if re.search(rf"\b{re.escape(v.lower())}\b", said)}
    if named == {rules["value"]}:
        scores["memory"] = 1
    elif not named and generic.lower() in said:
        scores["memory"] = 0
    else:
        scores["memory"] = -1
    instruction = rules.get("instruction")
    if instruction is None:
        scores["retention"] = 0
    else:
        prefix, suffix = (part.strip().lower() for part in INSTRUCTIONS[instruction][1:])
        kept = said.startswith(prefix) if prefix else said.endswith(suffix)
        scores["retention"] = 1 if kept else -1
    return scores


def truth_of_reply(dialogue: Any, reply: str) -> dict[str, float] | None:
    """A PPO truth scorer (``AudioPPOConfig.truth_scorer``): the reply's per-axis scores and
    their sum under ``total``, for a dialogue of this world; None for any other dialogue."""
    rules = dialogue.metadata.get("rules")
    if rules is None:
        return None
    scores = score_reply(rules, reply)
    return {**scores, "total": sum(scores.values())}


# the axis a rubric judges (a correction is a memory question)
RUBRIC_AXIS = {
    rubric: "memory" if axis == "correction" else axis
    for axis, rubrics in AXIS_RUBRICS.items()
    for rubric in rubrics
}


def level_of(
    policy: dict[str, int], reference: dict[str, int], rubric_id: str | None, k: int
) -> int:
    """Plain: the summed per-axis differences; under a rubric: twice its own axis; clipped."""
    if rubric_id is None:
        diff = sum(policy[a] - reference[a] for a in policy)
    else:
        axis = RUBRIC_AXIS[rubric_id]
        diff = 2 * (policy[axis] - reference[axis])
    return max(-k, min(k, diff))


def true_level(scene: Scene, k: int) -> int:
    """Plain task: summed score differences; rubric task: twice its own axis; clipped to ±k."""
    return level_of(scene.scores(scene.policy), scene.scores(scene.reference), scene.rubric_id, k)


def _prosody(rng: random.Random, mood: str) -> tuple[int, int]:
    (rate_low, rate_high), (pitch_low, pitch_high), _, _ = MOODS[mood]
    return rng.randint(rate_low, rate_high), rng.randint(pitch_low, pitch_high)


def _reply(rng: random.Random, scene_mood: str, moods: list[str]) -> Reply:
    tone = scene_mood if rng.random() < 0.5 else rng.choice([m for m in moods if m != scene_mood])
    return Reply(tone, rng.choice(["right", "generic", "wrong"]), rng.random() < 0.5)


def _vary(rng: random.Random, reply: Reply, axis: str) -> Reply:
    """A second reply that differs from `reply` on `axis` (and on others by chance)."""
    moods = list(MOODS)
    tone, memory, retention = reply.tone, reply.memory, reply.retention
    if axis == "tone" or rng.random() < 0.3:
        tone = rng.choice([m for m in moods if m != tone])
    if axis in ("memory", "correction") or rng.random() < 0.3:
        memory = rng.choice([m for m in ("right", "generic", "wrong") if m != memory])
    if axis == "retention" or rng.random() < 0.3:
        retention = not retention
    return Reply(tone, memory, retention)


def _base_scene(rng: random.Random, index: int, mood: str) -> dict:
    fact = rng.choice(list(FACTS))
    values = FACTS[fact][0]
    value = rng.choice(values)
    variant = rng.choice(SPEAKER_VARIANTS)
    voice = rng.choice(VOICES) + (f"+{variant}" if variant else "")
    return {
        "index": index,
        "fact": fact,
        "value": value,
        "stale_value": None,
        "instruction": None,
        "mood": mood,
        "news": rng.choice(NEWS),
        "voice": voice,
        "neutral_prosody": _prosody(rng, "neutral"),
        "mood_prosody": _prosody(rng, mood),
    }


def make_scenes(
    n: int, seed: int, *, audio_only_share: float = 0.3, rubric_share: float = 0.4
) -> list[Scene]:
    """`n` scenes (dialogue + task), about `audio_only_share` of them in audio-only twins."""
    rng = random.Random(seed)
    moods = list(MOODS)
    scenes: list[Scene] = []
    while len(scenes) < n:
        index = len(scenes)
        if rng.random() < audio_only_share and n - index >= 2:
            first, second = rng.sample(["excited", "sad", "whisper"], 2)
            base = _base_scene(rng, index, first)
            base["instruction"] = rng.choice([None, *INSTRUCTIONS])
            memory, retention = rng.choice(["right", "generic", "wrong"]), rng.random() < 0.5
            policy, reference = (
                Reply(m, memory, retention) for m in rng.sample([first, second], 2)
            )
            rubric = rng.choice(AXIS_RUBRICS["tone"]) if rng.random() < rubric_share else None
            for offset, mood in enumerate((first, second)):
                spoken = base | {"index": index + offset, "mood": mood}
                spoken["mood_prosody"] = _prosody(rng, mood)
                twin = index + 1 - offset
                scene = Scene(
                    **spoken, policy=policy, reference=reference, rubric_id=rubric, axis="tone"
                )
                scene.audio_only, scene.twin = True, twin
                scenes.append(scene)
            continue
        base = _base_scene(rng, index, rng.choice(moods))
        axis = rng.choice(["tone", "memory", "memory", "correction", "retention"])
        if axis == "correction":
            base["stale_value"] = rng.choice(
                [v for v in FACTS[base["fact"]][0] if v != base["value"]]
            )
        if axis == "retention" or rng.random() < 0.3:
            base["instruction"] = rng.choice(list(INSTRUCTIONS))
        policy = _reply(rng, base["mood"], moods)
        scene = Scene(**base, policy=policy, reference=policy, rubric_id=None, axis=axis)
        # about one pair in eight is identical on every axis: a true tie
        scene.reference = policy if rng.random() < 0.12 else _vary(rng, policy, axis)
        if rng.random() < 0.5:
            scene.policy, scene.reference = scene.reference, scene.policy
        if rng.random() < rubric_share:
            scene.rubric_id = rng.choice(AXIS_RUBRICS[axis])
        scenes.append(scene)
    return scenes[:n]


def more_pairs(
    scenes: list[Scene], per_dialogue: int, seed: int, *, rubric_share: float = 0.4
) -> list[Scene]:
    """`per_dialogue - 1` further tasks for each scene's dialogue: other candidate pairs.

    Audio-only twins get the same new pairs (so each stays audio-only with opposite levels);
    any other dialogue gets pairs differing on an axis its dialogue supports (correction only
    after a correction, retention only with a standing instruction), ties included.
    """
    if per_dialogue < 1:
        raise ValueError(f"per_dialogue must be at least 1, got {per_dialogue}")
    rng = random.Random(f"{seed}:pairs")
    moods = list(MOODS)
    extra: list[Scene] = []
    shared: dict[tuple[int, int], tuple[Reply, Reply, str | None]] = {}
    for scene in scenes:
        for pair in range(1, per_dialogue):
            if scene.audio_only and scene.twin is not None:
                key = (min(scene.index, scene.twin), pair)
                if key not in shared:
                    tones = rng.sample([scene.mood, scenes[scene.twin].mood], 2)
                    memory, retention = scene.policy.memory, scene.policy.retention
                    rubric = (
                        rng.choice(AXIS_RUBRICS["tone"]) if rng.random() < rubric_share else None
                    )
                    shared[key] = (
                        Reply(tones[0], memory, retention),
                        Reply(tones[1], memory, retention),
                        rubric,
                    )
                policy, reference, rubric = shared[key]
                extra.append(
                    replace(scene, policy=policy, reference=reference, rubric_id=rubric, pair=pair)
                )
                continue
            axes = ["tone", "memory"]
            axes += ["correction"] if scene.stale_value else []
            axes += ["retention"] if scene.instruction else []
            axis = rng.choice(axes)
            policy = _reply(rng, scene.mood, moods)
            reference = policy if rng.random() < 0.12 else _vary(rng, policy, axis)
            if rng.random() < 0.5:
                policy, reference = reference, policy
            rubric = rng.choice(AXIS_RUBRICS[axis]) if rng.random() < rubric_share else None
            extra.append(
                replace(
                    scene,
                    policy=policy,
                    reference=reference,
                    rubric_id=rubric,
                    axis=axis,
                    pair=pair,
                )
            )
    return extra
