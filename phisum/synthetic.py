"""A synthetic DialogSum-shaped dataset a tiny model can learn in minutes on a CPU.

Each dialogue schedules a meeting that gets moved once or twice; the summary states the final day
and time and who brings what. Learning it means finding the final agreement, not the first offer.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
TIMES = ("9 am", "10 am", "11 am", "noon", "2 pm", "3 pm", "4 pm")
ITEMS = ("the report", "the slides", "the budget", "the contract", "the samples", "the schedule")
TOPICS = ("project review", "budget meeting", "client call", "team lunch", "design review")
SPEAKERS = ("#Person1#", "#Person2#")

OPENERS = (
    "{a}: Can we meet about the {topic} on {day} at {time}?",
    "{a}: Are you free for the {topic} on {day} at {time}?",
    "{a}: Let's have the {topic} on {day} at {time}.",
)
MOVES = (
    "{b}: {old} doesn't work for me. How about {day} at {time}?",
    "{b}: Sorry, I'm busy then. Could we do {day} at {time} instead?",
    "{b}: Something came up. Can we move it to {day} at {time}?",
)
AGREES = ("{a}: {day} at {time} is fine.", "{a}: OK, {day} at {time} then.", "{a}: Sure, see you {day} at {time}.")
BRINGS = ("{who}: I'll bring {item}.", "{who}: I will bring {item} with me.", "{who}: Don't worry, I'll bring {item}.")
SUMMARIES = (
    "#Person1# and #Person2# will have the {topic} on {day} at {time}. {who} will bring {item}.",
    "The {topic} is on {day} at {time}. {who} will bring {item}.",
)


def make_example(rng: random.Random) -> tuple[str, list[str], str]:
    """One dialogue, its reference summaries and its topic."""
    topic = rng.choice(TOPICS)
    a, b = SPEAKERS if rng.random() < 0.5 else SPEAKERS[::-1]
    slots = rng.sample([(d, t) for d in DAYS for t in TIMES], k=1 + rng.randint(1, 2))
    lines = [rng.choice(OPENERS).format(a=a, topic=topic, day=slots[0][0], time=slots[0][1])]
    for i, (day, time) in enumerate(slots[1:], start=1):
        mover, other = (b, a) if i % 2 else (a, b)
        old = slots[i - 1][0]
        lines.append(rng.choice(MOVES).format(b=mover, old=old, day=day, time=time))
        agree_by = other
    day, time = slots[-1]
    lines.append(rng.choice(AGREES).format(a=agree_by, day=day, time=time))
    who, item = rng.choice(SPEAKERS), rng.choice(ITEMS)
    lines.append(rng.choice(BRINGS).format(who=who, item=item))
    summaries = [s.format(topic=topic, day=day, time=time, who=who, item=item) for s in SUMMARIES]
    return "\n".join(lines), summaries, topic


def write_dataset(out_dir: Path, seed: int, sizes: dict[str, int]) -> None:
    """Write train/validation/test CSVs (columns id, dialogue, summary, topic) like the hub dataset.

    Test rows follow DialogSum's layout: test_K_1 and test_K_2 share dialogue K with two summaries.
    """
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        rows = []
        for k in range(count):
            dialogue, summaries, topic = make_example(rng)
            if split == "test":
                rows += [(f"test_{k}_{j}", dialogue, s, topic) for j, s in enumerate(summaries, start=1)]
            else:
                rows.append((f"{split}_{k}", dialogue, rng.choice(summaries), topic))
        with (out_dir / f"{split}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "dialogue", "summary", "topic"])
            writer.writerows(rows)
