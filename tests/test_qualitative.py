"""The qualitative report on hand-made scored predictions: which dialogues it shows, and the exact markdown."""

from phisum.params import Params, QualitativeParams, parse_params, read_yaml
from phisum.profile import apply_overrides
from phisum.qualitative import pick_dialogues, quote, render_report
from phisum.vocabulary import cell
from tests.helpers import ROOT


def params_with(qualitative: dict, seed: int = 42) -> Params:
    text, _ = apply_overrides((ROOT / "params.yaml").read_text(), {"seed": seed, "qualitative": qualitative})
    return parse_params(read_yaml(text))


def scored_row(
    row_id: str, prediction: str, rouge1: float, rouge_l: float | None = None, references: tuple = ("Tom meets Ann.",)
) -> dict:
    return {
        "id": row_id,
        "ids": [row_id],
        "references": list(references),
        "prediction": prediction,
        "scores": {"rouge1": rouge1, "rougeL": rouge1 if rouge_l is None else rouge_l},
    }


def test_report_lists_every_empty_prediction_per_model():
    params = params_with({"ids": ["t_1"], "top_k": 1, "random_examples": 0})
    test_rows = [{"id": f"t_{i}", "dialogue": f"#Person1#: Hi {i}."} for i in range(3)]
    scored = {
        "base": {
            "test": [scored_row("t_0", "", 0.0), scored_row("t_1", "Tom.", 0.5), scored_row("t_2", " \n", 0.0)],
            "stress": [],
        },
        "peft": {
            "test": [
                scored_row("t_0", "Tom meets Ann.", 1.0),
                scored_row("t_1", "Ann.", 0.5),
                scored_row("t_2", "x", 0.1),
            ],
            "stress": [],
        },
    }
    extra = {
        "base": [{"id": "mine", "dialogue": "A: hi", "prediction": ""}],
        "peft": [{"id": "mine", "dialogue": "A: hi", "prediction": "A says hi."}],
    }
    report = render_report(test_rows, scored, extra, params)
    section = report[report.index("## Empty predictions") : report.index("## Stress test")]
    assert section == "## Empty predictions\n\n- base: 3: t_0 (test), t_2 (test), mine (extra)\n- PEFT: 0\n\n"


def test_a_whitespace_only_prediction_reads_empty_in_a_table_cell_and_a_quote():
    assert cell(" \n") == cell("") == "(empty)"
    assert quote(" \n") == quote("") == "> (empty)"
    assert cell("Tom | Ann\nmeet.") == "Tom \\| Ann meet."
    assert quote("Tom.\n\nAnn.") == "> Tom.\n>\n> Ann."


# Six dialogues, base ROUGE-1 0.5 everywhere: PEFT gains most on t_1 (+0.4) and loses most on t_2 (-0.4).
PEFT_ROUGE1 = [0.5, 0.9, 0.1, 0.6, 0.4, 0.55]


def picked_ids(seed: int) -> list[tuple[str, str]]:
    base = [scored_row(f"t_{i}", "x", 0.5) for i in range(6)]
    peft = [scored_row(f"t_{i}", "x", rouge1) for i, rouge1 in enumerate(PEFT_ROUGE1)]
    qualitative = QualitativeParams(ids=["t_0"], top_k=1, random_examples=3)
    picks = pick_dialogues(base, peft, qualitative, seed)
    return [(heading, base[i]["id"]) for heading, i in picks]


def test_picked_dialogues_are_fixed_then_gains_then_losses_then_a_seeded_sample_each_once():
    fixed = [("chosen", "t_0"), ("PEFT gained most", "t_1"), ("PEFT lost most", "t_2")]
    # The seeded samples of 3 of the 6: seed 0 draws t_3, t_5, t_0; seed 3 draws t_1, t_4, t_5.
    assert picked_ids(seed=0) == [*fixed, ("random sample", "t_3"), ("random sample", "t_5")]
    assert picked_ids(seed=3) == [*fixed, ("random sample", "t_4"), ("random sample", "t_5")]


def test_report_shows_each_pick_side_by_side_your_dialogues_empties_and_stress_failures():
    params = params_with({"ids": ["t_1"], "top_k": 1, "random_examples": 0})
    test_rows = [
        {"id": "t_0", "dialogue": "#Person1#: Lunch?\n#Person2#: Sure."},
        {"id": "t_1", "dialogue": "#Person1#: Call me.\n\n#Person2#: OK."},
        {"id": "t_2", "dialogue": "#Person1#: Bye."},
    ]
    two_references = ("One calls the other.", "A phone call.")
    cases = [
        {"id": "stress_000", "changes": 2, "final": {"day": "Wednesday", "time": "11:00"}},
        {"id": "stress_001", "changes": 1, "final": {"day": "Friday", "time": "09:00"}},
        {"id": "stress_002", "changes": 4, "final": {"day": "Monday", "time": "14:30"}},
    ]
    right = {"final_time_correct": True, "red_herring": False, "missed_action_items": []}
    wrong = {"final_time_correct": False, "red_herring": True}
    alice_report, bob_slides = {"owner": "Alice", "object": "Q2 report"}, {"owner": "Bob", "object": "slides"}
    scored = {
        "base": {
            "test": [
                scored_row("t_0", "Lunch.", 0.2, 0.1, ("They plan lunch.",)),
                scored_row("t_1", "A call | maybe\nlater", 0.5, 0.25, two_references),
                scored_row("t_2", "Bye.", 0.8, 0.8, ("They part.",)),
            ],
            "stress": [
                {**cases[0], **wrong, "missed_action_items": [alice_report], "prediction": "Tuesday at 2 pm."},
                {**cases[1], **right, "missed_action_items": [bob_slides], "prediction": "Friday at 9."},
                {**cases[2], **right, "prediction": "Monday at 2:30 pm."},
            ],
        },
        "peft": {
            "test": [
                scored_row("t_0", "They plan lunch.", 0.9, 0.85, ("They plan lunch.",)),
                scored_row("t_1", "A call.", 0.5, 0.5, two_references),
                scored_row("t_2", "", 0.0, 0.0, ("They part.",)),
            ],
            "stress": [
                {**cases[0], **right, "prediction": "Wednesday at 11 am, not Tuesday at 2 pm. Alice: Q2 report."},
                {**cases[1], **right, "final_time_correct": False, "prediction": "Friday at 10."},
                {**cases[2], **right, "prediction": "Monday at 2:30 pm."},
            ],
        },
    }
    extra = {
        "base": [{"id": "mine", "dialogue": "A: hi\nB: hello", "prediction": ""}],
        "peft": [{"id": "mine", "dialogue": "A: hi\nB: hello", "prediction": "They greet."}],
    }
    report = render_report(test_rows, scored, extra, params)
    assert report == EXPECTED_REPORT


EXPECTED_REPORT = """\
# Base vs PEFT, side by side

Greedy outputs of both models on the same prompts.

## Test dialogues

### t_1 (chosen)

> #Person1#: Call me.
>
> #Person2#: OK.

Reference(s):

- One calls the other.
- A phone call.

| model | summary | ROUGE-1 | ROUGE-L |
|---|---|---|---|
| base | A call \\| maybe later | 0.500 | 0.250 |
| PEFT | A call. | 0.500 | 0.500 |

### t_0 (PEFT gained most)

> #Person1#: Lunch?
> #Person2#: Sure.

Reference(s):

- They plan lunch.

| model | summary | ROUGE-1 | ROUGE-L |
|---|---|---|---|
| base | Lunch. | 0.200 | 0.100 |
| PEFT | They plan lunch. | 0.900 | 0.850 |

### t_2 (PEFT lost most)

> #Person1#: Bye.

Reference(s):

- They part.

| model | summary | ROUGE-1 | ROUGE-L |
|---|---|---|---|
| base | Bye. | 0.800 | 0.800 |
| PEFT | (empty) | 0.000 | 0.000 |

## Your dialogues

### mine

> A: hi
> B: hello

| model | summary |
|---|---|
| base | (empty) |
| PEFT | They greet. |

## Empty predictions

- base: 1: mine (extra)
- PEFT: 1: t_2 (test)

## Stress test: meetings moved 1-4 times

### base: 2 of 3 cases with a failure

| case | changes | expected | failed | summary |
|---|---|---|---|---|
| stress_000 | 2 | Wednesday 11:00 | final time; red herring; missed Alice: Q2 report | Tuesday at 2 pm. |
| stress_001 | 1 | Friday 09:00 | missed Bob: slides | Friday at 9. |

### PEFT: 1 of 3 cases with a failure

| case | changes | expected | failed | summary |
|---|---|---|---|---|
| stress_001 | 1 | Friday 09:00 | final time | Friday at 10. |
"""
