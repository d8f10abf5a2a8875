import json
import random
import re

import pytest

from phisum import stress
from phisum.stress import aggregate_scores, find_days, find_times, make_stress_cases, score_summary

ALICE_REPORT = {"owner": "Alice", "object": "Q2 report"}
# The seed's example, written by hand: Monday -> Tuesday -> Wednesday at 11 am, Alice brings the Q2 report.
CASE = {
    "id": "hand_000",
    "topic": "budget review",
    "dialogue": (
        "#Person1#: Can we do the budget review on Monday at 9 am?\n"
        "#Person2#: Monday at 9 works.\n"
        "#Person1#: Sorry, something came up. Can we move it to Tuesday at 2 pm?\n"
        "#Person2#: Tuesday is bad for me. How about Wednesday at 11?\n"
        "#Person1#: I have a dentist appointment on Thursday at 3 pm, so Wednesday at 11 am it is.\n"
        "#Person2#: Alice will bring the Q2 report."
    ),
    "changes": 2,
    "events": ["move", "move"],
    "final": {"day": "Wednesday", "time": "11:00"},
    "cancelled": [{"day": "Monday", "time": "09:00"}, {"day": "Tuesday", "time": "14:00"}],
    "distractors": [{"day": "Thursday", "time": "15:00"}],
    "absent": None,
    "action_items": [ALICE_REPORT],
}


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return make_stress_cases(seed=0, count=40)


def turn_texts(dialogue: str) -> list[str]:
    return [turn.split(": ", 1)[1] for turn in dialogue.split("\n")]


def templates_used(templates: tuple[str, ...], cases: list[dict]) -> set[str]:
    """Templates that some turn matches in full, each {field} standing for any text."""
    turns = [text for case in cases for text in turn_texts(case["dialogue"])]
    used = set()
    for template in templates:
        pattern = re.compile(".+".join(re.escape(part) for part in re.split(r"\{\w+\}", template)))
        if any(pattern.fullmatch(text) for text in turns):
            used.add(template)
    return used


def test_generator_is_deterministic_and_json_serialisable(cases):
    assert make_stress_cases(seed=0, count=40) == cases
    assert make_stress_cases(seed=1, count=40) != cases
    assert json.loads(json.dumps(cases)) == cases
    assert [case["id"] for case in cases[:3]] == ["stress_000", "stress_001", "stress_002"]


def test_generator_does_not_touch_global_random_state():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    make_stress_cases(seed=0, count=5)
    assert random.random() == expected


def test_every_change_count_appears_and_matches_the_events(cases):
    assert {case["changes"] for case in cases} == {1, 2, 3, 4}
    assert all(len(case["events"]) == case["changes"] == len(case["cancelled"]) for case in cases)
    assert {event for case in cases for event in case["events"]} == {"move", "cancel"}


def test_shapes_vary_across_cases(cases):
    assert len({case["dialogue"] for case in cases}) == len(cases)
    assert any(case["absent"] for case in cases) and any(case["absent"] is None for case in cases)
    assert {len(case["action_items"]) for case in cases} == {1, 2}
    assert any(item["owner"].startswith("#Person") for case in cases for item in case["action_items"])
    assert any(slot["time"] is None for case in cases for slot in case["distractors"])
    assert any(slot["time"] for case in cases for slot in case["distractors"])


@pytest.mark.parametrize("name", ["OPENINGS", "MOVES", "CANCELS", "RESCHEDULES", "FINALS", "ACTIONS_BY_OTHER"])
def test_at_least_four_phrasings_per_event_appear_in_40_cases(cases, name):
    assert len(templates_used(getattr(stress, name), cases)) >= 4


def test_opening_turns_take_at_least_four_shapes(cases):
    openings = [turn_texts(case["dialogue"])[0] for case in cases]
    assert len({text.split()[0] for text in openings}) >= 4  # first word: Can, I'd, We, Let's, The


def test_times_are_written_in_varied_surface_forms(cases):
    text = "\n".join(case["dialogue"] for case in cases)
    forms = (  # "11 am", "11am", "11 a.m.", "11 AM", 24-hour, words
        r"\d [ap]m\b",
        r"\d[ap]m\b",
        r"[ap]\.m\.",
        r"\d [AP]M\b",
        r"\b1[3-6]:\d\d\b",
        "o'clock",
        "half past",
        "noon",
    )
    for form in forms:
        assert re.search(form, text), form
    assert re.search(r"\bat (nine|ten|eleven|twelve|two|three|four)\b(?! o'clock| in the)", text)


def test_every_dialogue_alternates_speakers(cases):
    for case in cases:
        speakers = [turn.split(": ", 1)[0] for turn in case["dialogue"].split("\n")]
        assert all(s in ("#Person1#", "#Person2#") for s in speakers)
        assert all(a != b for a, b in zip(speakers, speakers[1:], strict=False))


def test_ground_truth_is_consistent_with_the_dialogue(cases):
    for case in cases:
        dialogue, final = case["dialogue"], case["final"]
        times = set(find_times(dialogue))
        assert final["day"] in dialogue and final["time"] in times
        for slot in case["cancelled"]:
            assert slot["day"] in dialogue and slot["time"] in times
        for slot in case["distractors"]:
            assert slot["day"] in dialogue and (slot["time"] is None or slot["time"] in times)
            assert slot["day"] != final["day"] and slot["time"] != final["time"]
        for item in case["action_items"]:
            assert item["owner"] in dialogue and item["object"] in dialogue
        assert case["absent"] is None or case["absent"] in dialogue
        slots = {(slot["day"], slot["time"]) for slot in [*case["cancelled"], final]}
        assert len(slots) == case["changes"] + 1  # every change really moves the slot


def test_the_last_turn_naming_a_day_and_a_time_is_the_final_agreement(cases):
    for case in cases:
        slot_turns = [text for text in turn_texts(case["dialogue"]) if find_days(text) and find_times(text)]
        final = slot_turns[-1]
        assert find_days(final) == {case["final"]["day"]} and find_times(final) == [case["final"]["time"]]


def test_a_gold_summary_scores_perfectly_on_every_generated_case(cases):
    for case in cases:
        final = case["final"]
        items = " ".join(f"{item['owner']} will bring the {item['object']}." for item in case["action_items"])
        summary = f"They will meet on {final['day']} at {final['time']}. {items}"
        assert score_summary(summary, case) == {
            "final_time_correct": True,
            "red_herring": False,
            "action_item_recall": 1.0,
            "missed_action_items": [],
        }


def test_a_cancelled_slot_as_outcome_is_a_red_herring_on_every_generated_case(cases):
    for case in cases:
        first = case["cancelled"][0]
        scores = score_summary(f"They will meet on {first['day']} at {first['time']}.", case)
        assert (scores["final_time_correct"], scores["red_herring"]) == (False, True)


def test_correct_summary_scores_perfectly():
    summary = "#Person1# and #Person2# will meet on Wednesday at 11 am. Alice will bring the Q2 report."
    assert score_summary(summary, CASE) == {
        "final_time_correct": True,
        "red_herring": False,
        "action_item_recall": 1.0,
        "missed_action_items": [],
    }


def test_cancelled_time_as_outcome_is_a_red_herring():
    summary = "The budget review is on Tuesday at 2 pm. Alice will bring Q2 report."  # no article: still recalled
    assert score_summary(summary, CASE) == {
        "final_time_correct": False,
        "red_herring": True,
        "action_item_recall": 1.0,
        "missed_action_items": [],
    }


def test_distractor_as_outcome_is_a_red_herring():
    scores = score_summary("They will meet on Thursday at 3 pm.", CASE)
    assert (scores["final_time_correct"], scores["red_herring"]) == (False, True)


def test_right_time_without_the_action_item_misses_it():
    assert score_summary("They agreed to meet on Wednesday at 11:00.", CASE) == {
        "final_time_correct": True,
        "red_herring": False,
        "action_item_recall": 0.0,
        "missed_action_items": [ALICE_REPORT],
    }


@pytest.mark.parametrize(
    "when",
    [
        "Wednesday at 11:00",
        "Wednesday at 11 a.m.",
        "Wednesday at eleven",
        "wednesday at 11AM",
        "eleven o'clock, Wednesday",
    ],
)
def test_time_surface_forms_are_recognised(when):
    scores = score_summary(f"They meet {when}.", CASE)
    assert (scores["final_time_correct"], scores["red_herring"]) == (True, False)


def test_listing_every_slot_including_the_final_one_is_not_a_red_herring():
    summary = "They first said Monday at 9 am, then Tuesday at 2 pm, and finally Wednesday at 11 am."
    scores = score_summary(summary, CASE)
    assert (scores["final_time_correct"], scores["red_herring"]) == (True, False)


def test_wrong_time_never_mentioned_is_wrong_but_not_a_red_herring():
    scores = score_summary("They will meet on Wednesday at 4 pm.", CASE)
    assert (scores["final_time_correct"], scores["red_herring"]) == (False, False)


def test_owner_without_object_is_not_recalled_and_case_is_ignored():
    assert score_summary("Alice will come along.", CASE)["action_item_recall"] == 0.0
    assert score_summary("ALICE brings the q2 REPORT.", CASE)["action_item_recall"] == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("at 11 a.m. or 11:00 or eleven o'clock", ["11:00", "11:00", "11:00"]),
        ("at two, at 2:00 pm, 14:00, two in the afternoon", ["14:00", "14:00", "14:00", "14:00"]),
        ("half past one, 9.30, noon, 12 pm", ["13:30", "09:30", "12:00", "12:00"]),
        ("#Person2# brings 2 copies of the Q2 report, at least one; tension", []),
    ],
)
def test_find_times_normalises_and_skips_numbers_that_are_not_times(text, expected):
    assert find_times(text) == expected


def test_aggregate_scores_gives_exact_means():
    scores = [
        {"final_time_correct": True, "red_herring": False, "action_item_recall": 1.0, "missed_action_items": []},
        {"final_time_correct": False, "red_herring": True, "action_item_recall": 0.5, "missed_action_items": []},
        {"final_time_correct": True, "red_herring": False, "action_item_recall": 0.0, "missed_action_items": []},
    ]
    assert aggregate_scores(scores) == {
        "cases": 3,
        "final_time_accuracy": 0.6667,
        "red_herring_rate": 0.3333,
        "action_item_recall": 0.5,
    }


def test_aggregate_scores_refuses_an_empty_list():
    with pytest.raises(ValueError, match="^no scores to aggregate$"):
        aggregate_scores([])
