import pytest
from rouge_score import rouge_scorer

from phisum.scoring import ROUGE_TYPES, score_groups, score_multi_reference, score_rouge, split_sentences


def test_identical_texts_score_one():
    text = "Tom and Ann will meet on Friday at 9 am. Tom will bring the report."
    assert score_rouge(text, text) == {name: 1.0 for name in ROUGE_TYPES}


def test_disjoint_texts_score_zero():
    assert score_rouge("apples oranges pears", "cars trains planes") == {name: 0.0 for name in ROUGE_TYPES}


def test_multi_reference_takes_the_best_reference():
    prediction = "the meeting is on friday"
    references = ["completely unrelated words here", "the meeting is on friday"]
    assert score_multi_reference(prediction, references)["rouge1"] == 1.0


def test_rouge_equals_rouge_score_run_directly():
    prediction = "Ann meets Tom on Monday. She brings slides."
    reference = "Tom meets Ann on Monday. Tom brings the slides."
    direct = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(reference, prediction)
    ours = score_rouge(prediction, reference)
    assert ours["rouge1"] == pytest.approx(direct["rouge1"].fmeasure)
    assert ours["rougeL"] == pytest.approx(direct["rougeL"].fmeasure)


def test_split_sentences_puts_each_sentence_on_its_own_line():
    assert split_sentences("One. Two? Three!") == "One.\nTwo?\nThree!"


def test_score_groups_counts_dialogues_and_rows():
    groups = [
        {"prediction": "a b c", "references": ["a b c", "x y z"]},
        {"prediction": "x y z", "references": ["q r s"]},
    ]
    summary, per_dialogue = score_groups(groups)
    assert (summary["dialogues"], summary["rows"]) == (2, 3)
    assert summary["multi_ref"]["rouge1"] == 0.5  # 1.0 and 0.0
    assert summary["per_row"]["rouge1"] == pytest.approx(round(1 / 3, 4))
    assert [s["rouge1"] for s in per_dialogue] == [1.0, 0.0]
