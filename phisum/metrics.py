"""Summary metrics under named multi-reference protocols: one function per metric, one aggregator.

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

Metrics (`METRICS`, from phisum.params; one left out of `metrics=` is reported as "disabled", never silently
dropped): rouge, bleu (sacreBLEU 13a, cased, 0-100, with its signature), meteor (nltk, WordNet), bertscore
(bert_score, its settings and hash string recorded) and length. METEOR reads `tokenize(text)`: lowercased,
runs of word characters and single punctuation marks (nltk's `word_tokenize` would need its punkt model
downloaded). Each metric function returns its protocol blocks, the per-dialogue scores a reader wants, and
the per-dialogue statistics a corpus metric is rebuilt from (phisum.significance resamples those).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
from nltk.translate.meteor_score import single_meteor_score
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from phisum.params import METRICS
from phisum.resources import BERTSCORE_FIX, ResourceError, ensure_wordnet, resolve_bertscore_model

DISABLED = "disabled"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
POOLED_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")  # py-rouge's ROUGE-L is already summary-level (Lsum)
BLEU_ORDER = 4
# sacreBLEU's per-segment statistics, in its order: summed over any set of dialogues they give that set's
# corpus BLEU, which is how phisum.significance bootstraps a corpus-level metric.
BLEU_STATS = (
    "bleu_hyp_len",
    "bleu_ref_len",
    *(f"bleu_match_{n}" for n in range(1, BLEU_ORDER + 1)),
    *(f"bleu_total_{n}" for n in range(1, BLEU_ORDER + 1)),
)
# HF evaluate BLEU's length_ratio from per-dialogue 13a token counts (shortest reference per example).
LENGTH_STATS = ("tokens_13a_prediction", "tokens_13a_shortest_reference")
BERTSCORE_PARTS = ("precision", "recall", "f1")
# py-rouge 1.1's constructor arguments, every one spelled out (all but metrics and max_n are its defaults). Its
# weight_factor also weights ROUGE-L, not only ROUGE-W: the 1.2 of its README raises ROUGE-L by several points.
PY_ROUGE_SETTINGS = {
    "metrics": ["rouge-n", "rouge-l"],
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
METEOR_PARAMETERS = {"alpha": 0.9, "beta": 3.0, "gamma": 0.5}  # nltk's defaults (Lavie and Agarwal 2007)
METEOR_TOKEN_PATTERN = r"\w+|[^\w\s]"

PROTOCOLS = {
    "per_row": (
        "Every (prediction, reference) row is one example, as in the seed's table: a dialogue with three "
        "references counts three times. ROUGE-1/2/L/Lsum F (rouge-score, Porter stemming, Lsum on sentences), "
        "METEOR (nltk) and BERTScore: means over rows. bleu: sacreBLEU corpus BLEU over rows, one reference "
        "each; bleu_length_ratio: its brevity term's ratio (prediction / reference 13a tokens). length_ratio: HF "
        "evaluate BLEU's (total prediction 13a tokens / total reference 13a tokens), the seed's 'length ratio'. "
        "word_length_ratio: mean over rows of prediction words / reference words."
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
        "bleu_signature); bleu_length_ratio: sacreBLEU's brevity ratio (total prediction 13a tokens / total 13a "
        "tokens of each dialogue's closest-length reference, the shorter on a tie). length_ratio: HF evaluate "
        "BLEU's (total prediction 13a tokens / total 13a tokens of each dialogue's shortest reference), the seed's "
        "'length ratio'. word_length_ratio: mean over dialogues of prediction words / the "
        "dialogue's mean reference words. prediction_words: mean prediction words."
    ),
}
# What a metrics file's scores are scored against (its "definition"): all references, or the leave-one-out subsets.
ALL_REFERENCES_DEFINITION = (
    "The model's summary of each test dialogue scored against all of the dialogue's references, in each protocol. "
    "Not comparable with human.json, whose human summaries have one reference fewer: leave_one_out is."
)
LEAVE_ONE_OUT_DEFINITION = (
    "The model on equal terms with the human ceiling (human.json): for each test dialogue with two or more "
    "references and each of its references in turn, the model's summary scored against the dialogue's other "
    "references, the very subsets each human summary is scored against there; one example per (dialogue, "
    "left-out reference), averaged as human.json averages, in each protocol."
)
HUMAN_DEFINITION = (
    "The human ceiling: for each test dialogue with two or more references, each human summary scored against "
    "the dialogue's other references, in each protocol; one example per (dialogue, left-out reference). Compare "
    "it with the models' leave_one_out blocks, scored against the same subsets, not with their all-reference "
    "scores. per_row has no length_ratio or bleu_length_ratio: over every ordered pair of a dialogue's references "
    "both are 1.0 by construction."
)
# A human's per-row length ratios: over every ordered pair of a dialogue's references, each length counts as often
# as prediction as it does as reference, so both are 1.0 whatever the summaries (the human ceiling leaves them out).
HUMAN_PER_ROW_UNITY = ("length_ratio", "bleu_length_ratio")
# Which protocols report each metric (a disabled metric says so in each of them).
METRIC_PROTOCOLS = {
    "rouge": ("per_row", "best_reference", "pooled_reference"),
    "bleu": ("per_row", "all_references"),
    "meteor": ("per_row", "best_reference"),
    "bertscore": ("per_row", "best_reference"),
    "length": ("per_row", "all_references"),
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
_METEOR_TOKEN = re.compile(METEOR_TOKEN_PATTERN)


def split_sentences(text: str) -> str:
    """One sentence per line (rougeLsum and py-rouge read sentences from newlines)."""
    return "\n".join(_SENTENCES.tokenize(text.strip()))


def tokenize(text: str) -> list[str]:
    """METEOR tokens: lowercased words and punctuation marks (METEOR_TOKEN_PATTERN; not HF evaluate's word_tokenize,
    which splits "doesn't" as does + n't and would need the punkt model downloaded)."""
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
    # What sacreBLEU's own significance tests use; caching the references also fixes the signature's count.
    stats = bleu._extract_corpus_statistics(predictions, streams)
    return [dict(zip(BLEU_STATS, row, strict=True)) for row in stats], str(bleu.get_signature())


def bleu_from_statistics(stats: np.ndarray) -> float:
    """sacreBLEU corpus BLEU from statistics summed over examples (BLEU_STATS order)."""
    return float(_bleu()._compute_score_from_stats([int(value) for value in stats]).score)


def bleu_length_ratio(statistics: list[dict]) -> float:
    """sacreBLEU's brevity ratio (its BLEUScore.ratio): prediction 13a tokens / closest-reference 13a tokens."""
    return float(sum(row["bleu_hyp_len"] for row in statistics) / sum(row["bleu_ref_len"] for row in statistics))


def length_ratio_from_statistics(stats: np.ndarray) -> float:
    """HF evaluate BLEU's length_ratio from summed LENGTH_STATS."""
    return float(stats[0] / stats[1])


# {corpus metric: (the per-dialogue statistics it sums, its score from their sums)}
CORPUS_METRICS: dict[str, tuple[tuple[str, ...], Callable[[np.ndarray], float]]] = {
    "bleu": (BLEU_STATS, bleu_from_statistics),
    "length_ratio": (LENGTH_STATS, length_ratio_from_statistics),
}


def statistic_matrix(per_example: list[dict], keys: Sequence[str]) -> np.ndarray:
    """(examples, keys) array of per-example statistics."""
    return np.array([[scores[key] for key in keys] for scores in per_example], dtype=float)


def corpus_score(name: str, statistics: list[dict]) -> float:
    """A corpus metric of CORPUS_METRICS over the examples whose statistics are given."""
    keys, from_statistics = CORPUS_METRICS[name]
    return from_statistics(statistic_matrix(statistics, keys).sum(axis=0))


@dataclass(frozen=True)
class BertScoreSettings:
    """evaluate.bertscore_* of params.yaml: what a BERTScore number depends on."""

    model: str  # a hub id or a local model directory
    layers: int  # the layer whose embeddings BERTScore compares (the model's tuned layer, if it has one)
    rescale: bool  # bert_score's baseline rescaling (needs a baseline file for the model)
    batch_size: int = 64  # sentences per forward pass: speed and memory only, the scores stay the same


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


def bertscore_settings(settings: BertScoreSettings) -> dict:
    """What a BERTScore number depends on, with the hash string of the scorer that ran (bert_score's own: the model
    path it loaded, layer, idf, rescaling, fast or slow tokenizer, the version bert_score reports)."""
    scorer = _load_bert_scorer(settings.model, settings.layers, settings.rescale)
    return {
        "model": settings.model,
        "layers": settings.layers,
        "idf": scorer.idf,
        "rescale_with_baseline": scorer.rescale_with_baseline,
        "hash": scorer.hash,
    }


@contextlib.contextmanager
def _bertscore_progress(scorer, pairs: list[tuple[str, str]], batch_size: int) -> Iterator[None]:
    """A progress bar with a total and an ETA over BERTScore's forward passes (minutes to hours on a T4): a text bar
    in a terminal or a DVC log, the widget in a notebook (tqdm.auto).

    bert_score embeds each distinct sentence once, `batch_size` at a time (one forward pass of its model each),
    then matches the pairs' embeddings (cheap, no forward pass). Its own `verbose` bars are unlabelled and come
    with lines printed to stdout.
    """
    from tqdm.auto import tqdm

    sentences = len({text for pair in pairs for text in pair})
    with tqdm(total=math.ceil(sentences / batch_size), desc="BERTScore", unit="batch") as bar:

        def one_pass(module, args, output) -> None:
            bar.update()  # returns whether it redrew: a hook that returns a value would replace the output

        hook = scorer._model.register_forward_hook(one_pass)
        try:
            yield
        finally:
            hook.remove()


def score_bertscore(predictions: list[str], references: list[str], settings: BertScoreSettings) -> list[dict]:
    """BERTScore of each (prediction, reference) pair; bert_score sorts sentences by length and batches them.

    An empty prediction scores 0, as bert_score itself rules; it is not passed in because bert_score 0.3.13
    encodes empty text with a tokenizer method that transformers 5 removed.
    """
    results = [dict.fromkeys((f"bertscore_{part}" for part in BERTSCORE_PARTS), 0.0) for _ in predictions]
    # Each distinct pair once: leave-one-out scoring repeats every (prediction, reference) pair n-1 times.
    pairs = list(dict.fromkeys((p, r) for p, r in zip(predictions, references, strict=True) if p.strip()))
    if pairs:
        scorer = _load_bert_scorer(settings.model, settings.layers, settings.rescale)
        with _bertscore_progress(scorer, pairs, settings.batch_size):
            tensors = scorer.score([p for p, _ in pairs], [r for _, r in pairs], batch_size=settings.batch_size)
        scores = {pair: {} for pair in pairs}
        for part, values in zip(BERTSCORE_PARTS, tensors, strict=True):
            for pair, value in zip(pairs, values.tolist(), strict=True):
                scores[pair][f"bertscore_{part}"] = value
        for result, pair in zip(results, zip(predictions, references, strict=True), strict=True):
            result.update(scores.get(pair, {}))
    return results


def leave_one_out_groups(groups: list[dict], human: bool) -> list[dict]:
    """One group per reference of each dialogue with two or more, scored against the dialogue's other references.

    human: the left-out reference is the summary scored (the human ceiling); otherwise the dialogue's prediction
    is, against the very same n-1 references (a model on equal terms with the human ceiling). Both score and
    average like any groups: one example per (dialogue, left-out reference).
    """
    held_out = []
    for group in groups:
        references = list(group["references"])
        if len(references) < 2:
            continue
        for k, reference in enumerate(references):
            held_out.append(
                {
                    "id": group.get("id"),
                    "prediction": reference if human else group["prediction"],
                    "references": references[:k] + references[k + 1 :],
                }
            )
    return held_out


def human_groups(groups: list[dict]) -> list[dict]:
    """Leave-one-out human summaries: each reference of a dialogue with two or more, against the others."""
    return leave_one_out_groups(groups, human=True)


def _version(package: str) -> str:
    return importlib.metadata.version(package)


def py_rouge_settings() -> dict:
    """The settings of the py-rouge scorer that runs, read back from it (its constructor's argument names)."""
    scorer = _py_rouge()
    settings = {name: getattr(scorer, name) for name in PY_ROUGE_SETTINGS}
    return {**settings, "metrics": " ".join(sorted(settings["metrics"]))}  # a string: dvc metrics diff reads no lists


def scoring_choices(metrics: Sequence[str]) -> dict:
    """Every choice that moves a score, by metric (a metrics file's "scoring"); a metric left out is "disabled"."""
    choices = {
        "rouge": {
            "sentence_splitter": {
                "tool": f"nltk {_version('nltk')} PunktSentenceTokenizer, untrained (no punkt model download), "
                "told these abbreviations so that they end no sentence",
                "abbreviations": " ".join(sorted(_PUNKT_PARAMETERS.abbrev_types)),
                "read_by": "rougeLsum (rouge-score) and pooled rougeL (py-rouge's summary-level LCS) read one "
                "sentence per line; without splitting each summary is one sentence and both score lower",
            },
            "rouge_score": {
                "version": _version("rouge-score"),
                "use_stemmer": True,
                "tokenizer": "rouge-score's default: lowercased, runs of [a-z0-9]",
                "multi_reference": "score_multi: per ROUGE type the best reference",
            },
            "py_rouge": {
                "version": _version("py-rouge"),
                **py_rouge_settings(),
                "tokenizer": "nltk's word tokenizer without its sentence splitter (py-rouge calls word_tokenize "
                "after replacing every character but [a-z0-9] with a space, so there is no sentence to split; "
                "the punkt model it would load is a download)",
            },
        },
        "bleu": {
            "tool": f"sacreBLEU {_version('sacrebleu')}, defaults (see bleu_signature)",
            "bleu_length_ratio": "sacreBLEU's brevity ratio: prediction / closest-length reference, 13a tokens",
        },
        "meteor": {
            "tool": f"nltk {_version('nltk')} single_meteor_score, WordNet 3.0, Porter stemmer",
            **METEOR_PARAMETERS,
            "tokenizer": f"lowercased, regex {METEOR_TOKEN_PATTERN} (not nltk.word_tokenize, HF evaluate's: "
            "different tokens, different scores)",
        },
        "bertscore": "model, layers, idf, rescale_with_baseline and bert_score's hash in each protocol's bertscore",
        "length": {
            "length_ratio": "HF evaluate BLEU's: prediction / shortest reference, 13a tokens (the seed's)",
            "word_length_ratio": "mean of prediction words / reference words (whitespace-separated)",
        },
    }
    return {name: choices[name] if name in metrics else DISABLED for name in METRICS}


@dataclass(frozen=True)
class Pairs:
    """The groups to score, per dialogue and per (dialogue, reference) row, rows dialogue-major."""

    predictions: list[str]
    references: list[list[str]]
    row_predictions: list[str]
    row_references: list[str]
    spans: list[slice]  # spans[i]: dialogue i's rows

    @classmethod
    def from_groups(cls, groups: list[dict]) -> Pairs:
        for i, group in enumerate(groups):
            references = group["references"]
            if not references or any(not ref.strip() for ref in references):
                raise ValueError(f"group {i} has no references or an empty one: {references!r}")
        if not groups:
            raise ValueError("no groups to score")
        predictions = [group["prediction"] for group in groups]
        references = [list(group["references"]) for group in groups]
        ends = np.cumsum([len(refs) for refs in references]).tolist()
        return cls(
            predictions=predictions,
            references=references,
            row_predictions=[p for p, refs in zip(predictions, references, strict=True) for _ in refs],
            row_references=[ref for refs in references for ref in refs],
            spans=[slice(end - len(refs), end) for end, refs in zip(ends, references, strict=True)],
        )

    def rows(self) -> Iterator[tuple[str, str]]:
        return zip(self.row_predictions, self.row_references, strict=True)

    def dialogues(self) -> Iterator[tuple[str, list[str]]]:
        return zip(self.predictions, self.references, strict=True)

    def best(self, rows: list[dict], keys: Sequence[str]) -> list[dict]:
        """Per dialogue, each key's best value over the dialogue's rows."""
        return [{key: max(row[key] for row in rows[span]) for key in keys} for span in self.spans]


@dataclass
class MetricResult:
    """One metric's numbers: {protocol: {name: value}} and, per dialogue, reader scores and corpus statistics."""

    blocks: dict[str, dict]
    scores: list[dict]
    statistics: list[dict] = field(default_factory=list)  # empty: the metric has no corpus statistics


@dataclass(frozen=True)
class Scored:
    """What score_groups returns: the summary, and per dialogue the scores a reader wants (data/scored/) apart
    from the statistics that corpus metrics (CORPUS_METRICS) are rebuilt from when resampling."""

    summary: dict
    scores: list[dict]
    statistics: list[dict]

    def computed(self, name: str) -> bool:
        """Whether every dialogue has the per-dialogue score `name`, or the statistics of corpus metric `name`."""
        keys, rows = (CORPUS_METRICS[name][0], self.statistics) if name in CORPUS_METRICS else ((name,), self.scores)
        return all(key in row for row in rows for key in keys)


def _mean(rows: list[dict], key: str) -> float:
    return round(float(np.mean([row[key] for row in rows])), 4)


def rouge_result(pairs: Pairs) -> MetricResult:
    """ROUGE per row and best reference (rouge-score), and pooled over the references (py-rouge)."""
    scorer = _scorer()
    rows = [score_rouge(prediction, reference, scorer) for prediction, reference in pairs.rows()]
    best = pairs.best(rows, ROUGE_TYPES)
    pooled = [score_pooled_rouge(prediction, references) for prediction, references in pairs.dialogues()]
    return MetricResult(
        blocks={
            "per_row": {name: _mean(rows, name) for name in ROUGE_TYPES},
            "best_reference": {name: _mean(best, name) for name in ROUGE_TYPES},
            "pooled_reference": {name: _mean(pooled, f"pooled_{name}") for name in POOLED_ROUGE_TYPES},
        },
        scores=[{**b, **p} for b, p in zip(best, pooled, strict=True)],
    )


def bleu_result(pairs: Pairs) -> MetricResult:
    """sacreBLEU corpus BLEU over rows and over dialogues with all their references; per dialogue only statistics."""
    statistics, signature = bleu_statistics(pairs.predictions, pairs.references)
    row_statistics, row_signature = bleu_statistics(pairs.row_predictions, [[ref] for ref in pairs.row_references])
    return MetricResult(
        blocks={
            protocol: {
                "bleu_signature": named,
                "bleu": round(corpus_score("bleu", stats), 4),
                "bleu_length_ratio": round(bleu_length_ratio(stats), 4),
            }
            for protocol, named, stats in (
                ("all_references", signature, statistics),
                ("per_row", row_signature, row_statistics),
            )
        },
        scores=[{} for _ in pairs.predictions],
        statistics=statistics,
    )


def meteor_result(pairs: Pairs) -> MetricResult:
    """nltk METEOR per row, and of each dialogue's best reference."""
    wordnet = ensure_wordnet()
    rows = [
        {"meteor": single_meteor_score(tokenize(ref), tokenize(prediction), wordnet=wordnet, **METEOR_PARAMETERS)}
        for prediction, ref in pairs.rows()
    ]
    best = pairs.best(rows, ["meteor"])
    return MetricResult(
        blocks={"per_row": {"meteor": _mean(rows, "meteor")}, "best_reference": {"meteor": _mean(best, "meteor")}},
        scores=best,
    )


def bertscore_result(pairs: Pairs, settings: BertScoreSettings) -> MetricResult:
    """BERTScore per row, and per dialogue all three parts of the reference with the best F1."""
    rows = score_bertscore(pairs.row_predictions, pairs.row_references, settings)
    best = [max(rows[span], key=lambda row: row["bertscore_f1"]) for span in pairs.spans]
    recorded = bertscore_settings(settings)
    return MetricResult(
        blocks={
            protocol: {
                "bertscore": {**recorded, **{part: _mean(examples, f"bertscore_{part}") for part in BERTSCORE_PARTS}}
            }
            for protocol, examples in (("per_row", rows), ("best_reference", best))
        },
        scores=[dict(row) for row in best],
    )


def _measure_length(prediction: str, reference_words: float, reference_tokens: int) -> tuple[dict, dict]:
    """(scores, LENGTH_STATS) of one prediction against a reference word count and 13a token count."""
    words = count_words(prediction)
    statistics = dict(zip(LENGTH_STATS, (count_13a_tokens(prediction), reference_tokens), strict=True))
    return {"prediction_words": words, "word_length_ratio": words / reference_words}, statistics


def length_result(pairs: Pairs) -> MetricResult:
    """HF evaluate BLEU's length_ratio (13a tokens) and word counts, per row and per dialogue.

    A dialogue's reference is its mean reference word count and, as HF evaluate BLEU takes it, its shortest
    reference in 13a tokens.
    """
    rows = [_measure_length(p, count_words(ref), count_13a_tokens(ref)) for p, ref in pairs.rows()]
    dialogues = [
        _measure_length(p, float(np.mean([count_words(r) for r in refs])), min(count_13a_tokens(r) for r in refs))
        for p, refs in pairs.dialogues()
    ]
    blocks = {}
    for protocol, measured in (("per_row", rows), ("all_references", dialogues)):
        scores, statistics = (list(part) for part in zip(*measured, strict=True))
        blocks[protocol] = {
            "length_ratio": round(corpus_score("length_ratio", statistics), 4),
            **{name: _mean(scores, name) for name in ("word_length_ratio", "prediction_words")},
        }
    scores, statistics = (list(part) for part in zip(*dialogues, strict=True))
    return MetricResult(blocks=blocks, scores=scores, statistics=statistics)


def score_groups(groups: list[dict], metrics: Sequence[str], bertscore: BertScoreSettings | None = None) -> Scored:
    """Score groups ({"prediction", "references"}) with each of `metrics` (a subset of METRICS).

    bertscore: the model settings, needed when "bertscore" is among the metrics.

    Summary: one block per protocol of PROTOCOLS (its "definition", each metric's numbers, and "disabled"
    for a metric left out), plus "dialogues", "rows" and "empty_predictions". Per-dialogue scores: best-
    reference ROUGE types, pooled_rouge1/2/L, meteor, bertscore_precision/recall/f1, prediction_words and
    word_length_ratio. Per-dialogue statistics: the BLEU_STATS and LENGTH_STATS counts.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    if "bertscore" in metrics and bertscore is None:
        raise ValueError("bertscore is among the metrics: pass its settings (evaluate.bertscore_*)")
    pairs = Pairs.from_groups(groups)
    # Resources first, so a missing one fails before minutes of scoring.
    if "meteor" in metrics:
        ensure_wordnet()
    if "bertscore" in metrics:
        _load_bert_scorer(bertscore.model, bertscore.layers, bertscore.rescale)

    metric_functions = {
        "rouge": rouge_result,
        "bleu": bleu_result,
        "meteor": meteor_result,
        "bertscore": functools.partial(bertscore_result, settings=bertscore),
        "length": length_result,
    }
    summary = {protocol: {"definition": definition} for protocol, definition in PROTOCOLS.items()}
    scores, statistics = [{} for _ in groups], [{} for _ in groups]
    for name in METRICS:  # a fixed order, so per-dialogue keys come in the same order whatever is switched off
        if name not in metrics:
            for protocol in METRIC_PROTOCOLS[name]:
                summary[protocol][name] = DISABLED
            continue
        result = metric_functions[name](pairs)
        for protocol, block in result.blocks.items():
            summary[protocol].update(block)
        for merged, part in zip(scores, result.scores, strict=True):
            merged.update(part)
        for merged, part in zip(statistics, result.statistics or [{} for _ in groups], strict=True):
            merged.update(part)
    summary.update(
        scoring=scoring_choices(metrics),
        dialogues=len(groups),
        rows=len(pairs.row_references),
        empty_predictions=sum(not prediction.strip() for prediction in pairs.predictions),
    )
    return Scored(summary=summary, scores=scores, statistics=statistics)
