"""The qualitative report on hand-made scored predictions."""

import dataclasses

from phisum.params import QualitativeParams, load_params
from tests.conftest import ROOT
from tests.test_generation import load_stage


def scored_row(row_id: str, prediction: str, rouge1: float) -> dict:
    return {
        "id": row_id,
        "ids": [row_id],
        "references": ["Tom meets Ann."],
        "prediction": prediction,
        "scores": {"rouge1": rouge1, "rougeL": rouge1},
    }


def test_report_lists_every_empty_prediction_per_model():
    qualitative = load_stage("qualitative")
    params = load_params(ROOT / "params.yaml")
    params = dataclasses.replace(params, qualitative=QualitativeParams(ids=["t_1"], top_k=1, random_examples=0))
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
    report = qualitative.render_report(test_rows, scored, extra, params)
    section = report[report.index("## Empty predictions") : report.index("## Stress test")]
    assert section == "## Empty predictions\n\n- base: 3: t_0 (test), t_2 (test), mine (extra)\n- PEFT: 0\n\n"
