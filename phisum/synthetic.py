"""A synthetic DialogSum-shaped dataset a tiny model can learn in minutes on a CPU.

The dialogues come from the stress generator (phisum/stress.py): a meeting moved or cancelled and
rebooked 1-4 times among distractor days and times, then who is absent and who brings what. The
summary states the final day and time, so a model that learns this data learns what the stress
benchmark measures. The random stream is not the stress set's (see `data_rng`), so no stress case
is trained on.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from phisum.stress import make_stress_case, time_forms

SUMMARIES = (
    "#Person1# and #Person2# will have the {topic} on {slot}.",
    "The {topic} is on {slot}.",
)


def data_rng(seed: int) -> random.Random:
    """The synthetic data's random stream: derived from the seed, never the stress set's Random(seed)."""
    return random.Random(f"phisum.synthetic:{seed}")


def describe_slot(slot: dict) -> str:
    """The final slot in one canonical wording, "Friday at 4 pm": the summary normalises the dialogue's forms."""
    return f"{slot['day']} at {time_forms(slot['time'])[0][0]}"


def write_summaries(case: dict) -> list[str]:
    """Two reference summaries of a stress-style case: final slot, who is absent, who brings what."""
    slot = describe_slot(case["final"])
    rest = [f"{case['absent']} can't come."] if case["absent"] else []
    rest += [f"{item['owner']} will bring the {item['object']}." for item in case["action_items"]]
    return [" ".join([template.format(topic=case["topic"], slot=slot), *rest]) for template in SUMMARIES]


def make_example(rng: random.Random) -> tuple[str, list[str], str]:
    """One dialogue, its reference summaries and its topic."""
    case = make_stress_case(rng, "", changes=rng.randint(1, 4))
    return case["dialogue"], write_summaries(case), case["topic"]


def write_dataset(out_dir: Path, seed: int, sizes: dict[str, int]) -> None:
    """Write train/validation/test CSVs (columns id, dialogue, summary, topic) like the hub dataset.

    Test rows follow DialogSum's layout: test_K_1 and test_K_2 share dialogue K with two summaries.
    """
    rng = data_rng(seed)
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
