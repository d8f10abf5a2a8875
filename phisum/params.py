"""Typed view of params.yaml: every key declared once with its constraint (a Literal, a Rule, or its group's check()).

All of it is checked before any heavy work; each problem is one line naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.constructor import DuplicateKeyError

from phisum.errors import UserError

PARAMS_PATH = Path("params.yaml")
METRICS = ("rouge", "bleu", "meteor", "bertscore", "length")  # evaluate.metrics choices; phisum.metrics imports them


class ParamsError(UserError, ValueError):
    """A params.yaml problem the user must fix; the message names the key."""


@dataclass(frozen=True)
class Rule:
    """A constraint on one field, attached with Annotated; `message` follows "<key>: " and may use {value}."""

    holds: Callable[[Any], bool]
    message: str


PositiveInt = Annotated[int, Rule(lambda v: v > 0, "must be > 0, got {value}")]
PositiveFloat = Annotated[float, Rule(lambda v: v > 0, "must be > 0, got {value}")]
Count = Annotated[int, Rule(lambda v: v >= 0, "must be >= 0, got {value}")]
# "" is no revision: hub clients differ on what they make of it and a local directory ignores it; null is the latest.
EMPTY_REVISION = "empty; give a commit hash from the hub, or null for the latest (and for a local directory)"
Revision = Annotated[str | None, Rule(lambda v: v.strip() != "", EMPTY_REVISION)]
# evaluate.primary_metric choices: per-dialogue scores (protocol.name in metrics/<model>.json) where higher is
# better, which the review can bootstrap; its one-line verdict is on this metric alone.
PRIMARY_METRICS = (
    "pooled_reference.rouge1",
    "pooled_reference.rouge2",
    "pooled_reference.rougeL",
    "best_reference.rouge1",
    "best_reference.rouge2",
    "best_reference.rougeL",
    "best_reference.rougeLsum",
    "best_reference.meteor",
    "best_reference.bertscore_f1",
)
PrimaryMetric = Literal[PRIMARY_METRICS]
# The optimizers this recipe is meant for (TrainingArguments.optim names); others need their own testing.
Optimizer = Literal[
    "paged_adamw_8bit", "adamw_8bit", "paged_adamw_32bit", "adamw_torch", "adamw_torch_fused", "adafactor"
]


@dataclass(frozen=True)
class ModelParams:
    name: str
    revision: Revision
    device: Literal["cuda", "cpu"]


@dataclass(frozen=True)
class DataParams:
    source: str
    revision: Revision
    on_bad_rows: Literal["error", "drop"]


@dataclass(frozen=True)
class PromptParams:
    template: str
    max_length: PositiveInt

    def check(self) -> None:
        if "{dialogue}" not in self.template:
            raise ParamsError("prompt.template: must contain the placeholder {dialogue}")


@dataclass(frozen=True)
class QuantizationParams:
    quant_type: Literal["nf4", "fp4"]
    double_quant: bool
    compute_dtype: Literal["auto", "float16", "bfloat16", "float32"]


@dataclass(frozen=True)
class LoraParams:
    r: PositiveInt
    alpha: PositiveInt
    dropout: Annotated[float, Rule(lambda v: 0.0 <= v < 1.0, "must be in [0, 1), got {value}")]
    target_modules: list[str]


@dataclass(frozen=True)
class TrainParams:
    optim: Optimizer
    learning_rate: PositiveFloat
    batch_size: PositiveInt
    grad_accum: PositiveInt
    max_steps: PositiveInt
    gradient_checkpointing: bool
    logging_steps: PositiveInt
    eval_steps: PositiveInt
    eval_rows: PositiveInt
    save_steps: PositiveInt
    save_total_limit: PositiveInt
    num_processes: PositiveInt

    def check(self) -> None:
        if self.save_steps > self.max_steps:
            raise ParamsError(
                f"train.save_steps: {self.save_steps} > train.max_steps {self.max_steps}: no checkpoint would be "
                "written to resume from; lower it"
            )
        if self.eval_steps > self.max_steps:
            raise ParamsError(f"train.eval_steps: {self.eval_steps} > train.max_steps {self.max_steps}; lower it")


@dataclass(frozen=True)
class GenerateParams:
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    stop_strings: list[str]
    stress_cases: PositiveInt
    extra_dialogues: str


@dataclass(frozen=True)
class EvaluateParams:
    metrics: list[str]
    bertscore_model: str
    bertscore_layers: PositiveInt
    bertscore_rescale: bool
    bootstrap_resamples: PositiveInt
    primary_metric: PrimaryMetric

    def check(self) -> None:
        # Not list[Literal[...]]: one message naming every unknown metric reads better than one per position.
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ParamsError(f"evaluate.metrics: unknown {', '.join(unknown)}; allowed: {', '.join(METRICS)}")


@dataclass(frozen=True)
class QualitativeParams:
    ids: list[str]
    top_k: Count
    random_examples: Count


@dataclass(frozen=True)
class Params:
    seed: int
    model: ModelParams
    data: DataParams
    prompt: PromptParams
    quantization: QuantizationParams
    lora: LoraParams
    train: TrainParams
    generate: GenerateParams
    evaluate: EvaluateParams
    qualitative: QualitativeParams

    def check(self) -> None:
        if self.generate.max_new_tokens >= self.prompt.max_length:
            raise ParamsError(
                f"generate.max_new_tokens: {self.generate.max_new_tokens} leaves no room for the prompt "
                f"within prompt.max_length {self.prompt.max_length}"
            )


def _check_value(value: object, annotation: object, key: str) -> object:
    """Return value if it fits annotation (ints are accepted for floats), else raise ParamsError."""
    if typing.get_origin(annotation) is Annotated:
        annotation, *rules = typing.get_args(annotation)
        value = _check_value(value, annotation, key)
        for rule in rules:
            if value is not None and not rule.holds(value):
                raise ParamsError(f"{key}: {rule.message.format(value=value)}")
        return value
    if isinstance(annotation, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        annotation = next(a for a in options if a is not type(None))
    origin = typing.get_origin(annotation)
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ParamsError(f"{key}: got {value!r}, allowed: {', '.join(allowed)}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list) or not value:
            raise ParamsError(f"{key}: expected a non-empty list, got {value!r}")
        return [_check_value(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, float) and not math.isfinite(value):  # YAML's .nan, .inf
        raise ParamsError(f"{key}: expected a finite number, got {value}")
    # bool is a subclass of int: `r: true` must not pass as 1.
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        # Ids and revisions are strings even when they are all digits (an int id in data is read as its string).
        quote = f"; quote it: '{value}'" if annotation is str and type(value) in (int, float) else ""
        raise ParamsError(f"{key}: expected {annotation.__name__}, got {value!r}{quote}")
    return value


def _build(cls: type, raw: object, prefix: str) -> object:
    """cls from raw, each field checked against its annotation, then the group's own check() across fields."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{prefix or 'params'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names), key=str)  # YAML keys can be numbers or null too
    if unknown:
        name = unknown[0] if isinstance(unknown[0], str) and unknown[0].isprintable() else repr(unknown[0])
        raise ParamsError(f"{prefix}{name}: unknown key (allowed here: {', '.join(names)})")
    values = {}
    for name in names:
        key = f"{prefix}{name}"
        if name not in raw:
            raise ParamsError(f"{key}: missing key (see the committed params.yaml for its meaning)")
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], raw[name], f"{key}.")
        else:
            values[name] = _check_value(raw[name], hints[name], key)
    built = cls(**values)
    if hasattr(built, "check"):
        built.check()
    return built


def parse_params(raw: object) -> Params:
    """Validate a params mapping (as read from YAML) and return it typed."""
    return _build(Params, raw, "")


def read_yaml(text: str) -> object:
    """YAML 1.2, as DVC reads params (PyYAML's 1.1 would read `1e-4` as a string)."""
    return YAML(typ="safe", pure=True).load(text)


UNDO = "or `git checkout params.yaml` for the committed one"
# What YAML counts as a line break (and so ruamel's line numbers): not only "\n".
YAML_LINE_BREAK = "\r\n|[\n\r\x85\u2028\u2029]"


def key_path(lines: list[str], index: int, column: int, key: str) -> str:
    """The dotted path of `key` at lines[index], column `column` (0-based), from the block keys above it."""
    path = [key]
    for line in reversed(lines[:index]):
        indent = len(line) - len(line.lstrip(" "))
        name, colon, _ = line.strip().partition(":")
        if indent < column and colon and name and not name.startswith(("#", "-")):
            path.insert(0, name.strip().strip("'\""))
            column = indent
            if indent == 0:
                break
    return ".".join(path)


def yaml_error_line(path: Path, text: str, error: YAMLError) -> str:
    """ruamel's error (several lines: problem, context, a caret) as one line naming the line and the fix."""
    return " ".join(describe_yaml_error(path, text, error).split())  # a key or problem may hold a line break


def describe_yaml_error(path: Path, text: str, error: YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    if mark is None:
        return f"{path}: not valid YAML: {' '.join(problem.split())}; fix it, {UNDO}"
    where = f"{path} line {mark.line + 1}"
    lines = re.split(YAML_LINE_BREAK, text)
    if isinstance(error, DuplicateKeyError):
        key = problem.partition('"')[2].partition('"')[0]
        first = next(
            (
                number
                for number in range(error.context_mark.line, min(mark.line, len(lines)))
                if lines[number][mark.column :].split(":")[0].strip().strip("'\"") == key
                and len(lines[number]) - len(lines[number].lstrip(" ")) == mark.column
            ),
            error.context_mark.line,
        )
        dotted = key_path(lines, mark.line, mark.column, key)
        return f"{where}: {dotted} is set twice (first on line {first + 1}); keep one of the two lines"
    if "'\\t'" in problem:
        return (
            f"{where}, column {mark.column + 1}: a tab character; YAML indents and separates with spaces only: "
            "replace the tab with spaces"
        )
    context = getattr(error, "context", None)
    described = f"{context}: {problem}" if context else problem
    at = f"at line {mark.line + 1}, column {mark.column + 1}"
    return f"{path}: not valid YAML {at} ({' '.join(described.split())}); fix that line, {UNDO}"


def read_params_file(path: Path = PARAMS_PATH) -> object:
    """params.yaml's content, with every problem of the file itself (not of its keys) as one ParamsError line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root") from None
    except UnicodeDecodeError as error:
        raise ParamsError(f"{path}: bytes that are not UTF-8 (at byte {error.start}); re-save it as UTF-8") from None
    except OSError as error:
        raise ParamsError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        raw = read_yaml(text)
    except YAMLError as error:
        raise ParamsError(yaml_error_line(path, text, error)) from None
    if raw is None:
        raise ParamsError(f"{path}: empty (no keys); `git checkout params.yaml` restores the committed one")
    return raw


def load_params(path: Path = PARAMS_PATH) -> Params:
    """Read and validate params.yaml."""
    return parse_params(read_params_file(path))


def to_dict(params: object) -> dict:
    """Plain-dict form, for writing the resolved params next to an output."""
    return dataclasses.asdict(params)
