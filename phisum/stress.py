"""Red-herring stress cases: a meeting moved 1-4 times among distractor times, and a scorer for the summaries.

The seed showed once, by hand, that the base model listed cancelled times where the fine-tuned model found the final
agreement and the action item. These cases measure that: the ground truth is canonical ("HH:MM", full day names) while
dialogues and summaries may write a time as "11 am", "11:00", "eleven" or "11 a.m.".
"""

from __future__ import annotations

import random
import re

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
TIMES = ("09:00", "09:30", "10:00", "10:30", "11:00", "12:00", "13:30", "14:00", "15:00", "15:30", "16:00")
TOPICS = ("budget review", "client call", "project kickoff", "design review", "quarterly planning", "sales sync")
NAMES = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Priya", "Kenji", "Lucia", "Omar")
OBJECTS = ("Q2 report", "budget spreadsheet", "slides", "contract draft", "client list", "agenda", "sales figures")
SPEAKERS = ("#Person1#", "#Person2#")
HOUR_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")

# Templates carry no speaker: turns alternate, so the speaker is known only when the turn is said.
OPENINGS = (
    "Can we get together for the {topic}? How about {slot}?",
    "I'd like to schedule the {topic} for {slot}. Does that work for you?",
    "We need to do the {topic}. Are you free {slot}?",
    "Let's pencil in the {topic} for {slot}.",
    "The {topic} is overdue. I was thinking {slot}, if that suits you.",
)
ACCEPTS = ("Sure, {slot} works for me.", "OK, I'll put it in my calendar.", "Sounds good.", "Fine, {slot} then.")
MOVES = (
    "Actually, {old_day} is bad for me now. Could we move it to {slot}?",
    "Something came up on {old_day}. Can we push it to {slot}?",
    "Sorry, I have to reschedule. Would {slot} work instead?",
    "{name} needs the room on {old_day}. How about {slot} instead?",
    "I just realised I'm travelling on {old_day}. Let's make it {slot}.",
)
CANCELS = (
    "I'm afraid we have to cancel {old_day}'s meeting, the numbers aren't ready.",
    "Let's call off the {topic} on {old_day}. {name} is still waiting on the client.",
    "{old_day} is off, sorry. The client postponed everything.",
    "We'll have to scrap the {old_time} slot on {old_day}.",
    "The meeting on {old_day} at {old_time} won't happen after all, the room was double-booked.",
)
CANCEL_REPLIES = ("That's a pity.", "No problem. When can we do it then?", "Understood.", "Oh well, it happens.")
RESCHEDULES = (
    "Could we try again {slot}?",
    "Let's rebook it for {slot}.",
    "Then how about {slot}?",
    "I've found a gap: {slot}. Would that do?",
)
FINALS = (
    "Great, so it's settled: {slot}.",
    "Perfect, {slot} it is, and no more changes.",
    "OK, final answer: we meet {slot}.",
    "That works. Let's lock in {slot}.",
    "Fine by me. I'll send the invite for {slot}.",
)
DISTRACTORS = (  # the first two name a day and a time, the last two only a day
    "Just so you know, I have a dentist appointment on {day} at {time}.",
    "By the way, {name}'s leaving party is at {time} on {day}.",
    "Remember, last quarter's review was on a {day}, and half the team missed it.",
    "The office was closed last {day} for maintenance.",
)
ACKNOWLEDGEMENTS = ("Good to know.", "Noted.", "Thanks for the reminder.", "Right.")
ABSENTS = (
    "{name} can't make it, unfortunately.",
    "Just a heads-up: {name} won't be there.",
    "We'll be without {name}, who is at a conference.",
    "{name} told me they can't attend.",
)
ACTIONS_BY_OTHER = (
    "{owner} will bring the {object}.",
    "I'll ask {owner} to send round the {object} beforehand.",
    "{owner} promised to email us the {object}.",
    "Let's have {owner} prepare the {object}.",
    "And {owner} should bring the {object}, don't forget.",
)
ACTIONS_BY_SPEAKER = (
    "I'll bring the {object}.",
    "I can send you the {object} the day before.",
    "Leave the {object} to me.",
    "I'll print out the {object} for everyone.",
)
CLOSINGS = ("Great, see you then.", "Thanks, bye.", "Good. Talk soon.")

_HOUR = r"\d{1,2}(?!\d)|(?:" + "|".join(HOUR_WORDS) + r")\b"
_TIME = re.compile(
    rf"(?P<at>\bat\s+)?(?P<half>\bhalf past\s+)?\b(?P<hour>{_HOUR})(?:[:.](?P<minute>[0-5]\d)(?!\d))?"
    r"(?P<suffix>\s*(?P<meridiem>[ap])\.?m\b\.?|\s+o'?clock\b|\s+in the (?P<part>morning|afternoon|evening)\b)?"
    r"|\b(?P<noon>noon|midday)\b"
)
_DAY = re.compile(r"\b(" + "|".join(DAYS) + r")s?\b", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)


def time_forms(canonical: str) -> tuple[list[str], list[str]]:
    """Surface forms of an "HH:MM" time: (forms that read as a time anywhere, bare hour words that need "at")."""
    hour, minute = map(int, canonical.split(":"))
    if hour == 12 and minute == 0:
        return ["noon", "midday", "12 pm", "12:00", "twelve o'clock"], ["twelve"]
    h12, word = hour % 12 or 12, HOUR_WORDS[(hour % 12 or 12) - 1]
    meridiem, clock = ("am" if hour < 12 else "pm"), (f"{h12}" if minute == 0 else f"{h12}:{minute:02d}")
    marked = [f"{clock} {meridiem}", f"{clock}{meridiem}", f"{clock} {meridiem[0]}.m.", f"{clock} {meridiem.upper()}"]
    if minute == 30:
        return [*marked, f"{hour}:30", f"half past {word}"], []
    part = "morning" if hour < 12 else "afternoon"
    return [*marked, f"{hour}:00", f"{word} o'clock", f"{word} in the {part}"], [word]


def render_slot(slot: dict, rng: random.Random) -> str:
    """A day and time as a speaker might say them: "Wednesday at eleven", "11 a.m. on Wednesday"."""
    marked, bare = time_forms(slot["time"])
    form = rng.choice(marked + bare)
    if form in bare or rng.random() < 0.6:
        return f"{slot['day']} at {form}"
    return f"{form} on {slot['day']}"


def _pick_distractor(rng: random.Random, slots: list[dict], template: str) -> dict:
    """A slot that was never the meeting; never the final day or time, so it cannot be read as the outcome."""
    final = slots[-1]
    while True:
        day, time = rng.choice(DAYS), rng.choice(TIMES)
        if day != final["day"] and time != final["time"] and {"day": day, "time": time} not in slots:
            return {"day": day, "time": time if "{time}" in template else None}


def make_stress_case(rng: random.Random, case_id: str, changes: int) -> dict:
    """One dialogue whose meeting is moved or cancelled-and-rebooked `changes` times, with its ground truth."""
    topic, names = rng.choice(TOPICS), rng.sample(NAMES, 4)  # names: excuse, absent, two action-item owners
    slots = [{"day": day, "time": rng.choice(TIMES)} for day in rng.sample(DAYS, changes + 1)]
    first, turns = rng.randrange(2), []

    def say(template: str, **fields: str) -> str:
        speaker = SPEAKERS[(len(turns) + first) % 2]
        turns.append(f"{speaker}: {template.format(**fields).replace('..', '.')}")  # "11 a.m.." ends a sentence
        return speaker

    distractors, events = [], []
    distract_after = set(rng.sample(range(changes + 1), k=rng.randint(1, 2)))

    def maybe_distract(step: int) -> None:
        if step in distract_after:
            template = rng.choice(DISTRACTORS)
            slot = _pick_distractor(rng, slots, template)
            distractors.append(slot)
            time = rng.choice(time_forms(slot["time"])[0]) if slot["time"] else ""
            say(template, day=slot["day"], time=time, name=names[0])
            say(rng.choice(ACKNOWLEDGEMENTS))  # keeps whoever answers a proposal the one who accepts or moves it

    say(rng.choice(OPENINGS), topic=topic, slot=render_slot(slots[0], rng))
    maybe_distract(0)
    for step, (old, new) in enumerate(zip(slots, slots[1:], strict=False), start=1):
        # Only an agreed meeting can be cancelled; a move may also be a counter-offer to the last proposal.
        cancel = rng.random() < 0.4
        if cancel or rng.random() < 0.5:
            say(rng.choice(ACCEPTS), slot=render_slot(old, rng))
        fields = {"old_day": old["day"], "name": names[0], "topic": topic, "slot": render_slot(new, rng)}
        if cancel:
            say(rng.choice(CANCELS), old_time=rng.choice(time_forms(old["time"])[0]), **fields)
            say(rng.choice(CANCEL_REPLIES))
            say(rng.choice(RESCHEDULES), **fields)
        else:
            say(rng.choice(MOVES), **fields)
        events.append("cancel" if cancel else "move")
        maybe_distract(step)
    say(rng.choice(FINALS), slot=render_slot(slots[-1], rng))

    absent = names[1] if rng.random() < 0.5 else None
    if absent:
        say(rng.choice(ABSENTS), name=absent)
    action_items = []
    for owner, obj in zip(names[2:], rng.sample(OBJECTS, rng.randint(1, 2)), strict=False):
        if rng.random() < 0.4:  # the speaker takes it on, so the owner is whoever says the turn
            owner = say(rng.choice(ACTIONS_BY_SPEAKER), object=obj)
        else:
            say(rng.choice(ACTIONS_BY_OTHER), owner=owner, object=obj)
        action_items.append({"owner": owner, "object": obj})
    if rng.random() < 0.5:
        say(rng.choice(CLOSINGS))
    return {
        "id": case_id,
        "topic": topic,
        "dialogue": "\n".join(turns),
        "changes": changes,
        "events": events,
        "final": slots[-1],
        "cancelled": slots[:-1],
        "distractors": distractors,
        "absent": absent,
        "action_items": action_items,
    }


def make_stress_cases(seed: int, count: int) -> list[dict]:
    """`count` cases from one seed; change counts cycle 1, 2, 3, 4 so every difficulty is present from 4 cases on."""
    rng = random.Random(seed)
    return [make_stress_case(rng, f"stress_{i:03d}", changes=i % 4 + 1) for i in range(count)]


def _canonical_time(match: re.Match) -> str | None:
    """Canonical "HH:MM" of a time mention, or None for a number not marked as a time."""
    if match["noon"]:
        return "12:00"
    if not (match["at"] or match["half"] or match["minute"] or match["suffix"]):
        return None  # a bare "2" or "one" is a count far more often than a time
    token = match["hour"].lower()
    hour = int(token) if token.isdigit() else HOUR_WORDS.index(token) + 1
    minute = 30 if match["half"] else int(match["minute"] or 0)
    meridiem = match["meridiem"] or {"morning": "a", "afternoon": "p", "evening": "p"}.get(match["part"], "")
    if hour > 23:
        return None
    if meridiem == "p" and hour < 12:
        hour += 12
    elif meridiem == "a" and hour == 12:
        hour = 0
    elif not meridiem and hour <= 7:
        hour += 12  # business hours: "at 3" and "half past one" are afternoon
    return f"{hour:02d}:{minute:02d}"


def find_times(text: str) -> list[str]:
    """Canonical "HH:MM" times mentioned in a text, in order."""
    found = (_canonical_time(m) for m in _TIME.finditer(text.lower()))
    return [time for time in found if time]


def find_days(text: str) -> set[str]:
    """Weekday names mentioned in a text, capitalised ("tuesdays" counts as Tuesday)."""
    return {m.group(1).capitalize() for m in _DAY.finditer(text)}


def mentions_action_item(summary: str, item: dict) -> bool:
    """Owner and object both named; the object may lose its article, change case or take a plural s."""
    text = summary.lower()
    owner = item["owner"].lower()
    owner_found = owner in text if owner.startswith("#") else re.search(rf"\b{re.escape(owner)}\b", text)
    words = _ARTICLE.sub("", item["object"].lower()).split()
    return bool(owner_found and re.search(r"\b" + r"\s+".join(map(re.escape, words)) + r"s?\b", text))


def score_summary(summary: str, case: dict) -> dict:
    """Score one summary against a stress case.

    final_time_correct: the summary names the final day and the final time (any surface form), anywhere.
    red_herring: final_time_correct is False and the summary names a day or time of a cancelled slot or a distractor,
    other than the final day and the final time; so listing every slot including the final one is not a red herring.
    action_item_recall: share of action items whose owner and object are both named (1.0 when there are none).
    """
    days, times, final = find_days(summary), set(find_times(summary)), case["final"]
    final_time_correct = final["day"] in days and final["time"] in times
    wrong = case["cancelled"] + case["distractors"]
    wrong_days = {slot["day"] for slot in wrong if slot["day"]} - {final["day"]}
    wrong_times = {slot["time"] for slot in wrong if slot["time"]} - {final["time"]}
    items = case["action_items"]
    missed = [item for item in items if not mentions_action_item(summary, item)]
    return {
        "final_time_correct": final_time_correct,
        "red_herring": not final_time_correct and bool(days & wrong_days or times & wrong_times),
        "action_item_recall": (len(items) - len(missed)) / len(items) if items else 1.0,
        "missed_action_items": missed,
    }


# The per-summary scores of score_summary that the evaluate stage and the review compare between models.
PAIRED_SCORES = ("final_time_correct", "red_herring", "action_item_recall")


def aggregate_scores(scores: list[dict]) -> dict:
    """Means over cases of the per-summary scores, rounded to 4 decimals for readable metric diffs."""
    if not scores:
        raise ValueError("no scores to aggregate")
    n = len(scores)
    return {
        "cases": n,
        "final_time_accuracy": round(sum(s["final_time_correct"] for s in scores) / n, 4),
        "red_herring_rate": round(sum(s["red_herring"] for s in scores) / n, 4),
        "action_item_recall": round(sum(s["action_item_recall"] for s in scores) / n, 4),
    }
