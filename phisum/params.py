"""Typed view of params.yaml: every key is declared here once, checked before any heavy work."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML, YAMLError

PARAMS_PATH = Path("params.yaml")
METRICS = ("rouge", "bleu", "meteor", "bertscore", "length")  # evaluate.metrics choices; phisum.metrics imports them


class ParamsError(ValueError):
    """A params.yaml problem the user must fix; the message names the key."""


@dataclass(frozen=True)
class ModelParams:
    name: str
    revision: str | None
    # params.yaml must give it; the default only serves code that builds a ModelParams for a local test model.
    device: str = "cpu"


@dataclass(frozen=True)
class DataParams:
    source: str
    revision: str | None
    on_bad_rows: str


@dataclass(frozen=True)
class PromptParams:
    template: str
    max_length: int


@dataclass(frozen=True)
class QuantizationParams:
    quant_type: str
    double_quant: bool
    compute_dtype: str


@dataclass(frozen=True)
class LoraParams:
    r: int
    alpha: int
    dropout: float
    target_modules: list[str]


@dataclass(frozen=True)
class TrainParams:
    optim: str
    learning_rate: float
    batch_size: int
    grad_accum: int
    max_steps: int
    gradient_checkpointing: bool
    logging_steps: int
    eval_steps: int
    eval_rows: int
    save_steps: int
    save_total_limit: int
    num_processes: int


@dataclass(frozen=True)
class GenerateParams:
    max_new_tokens: int
    batch_size: int
    stop_strings: list[str]
    stress_cases: int
    extra_dialogues: str


@dataclass(frozen=True)
class EvaluateParams:
    metrics: list[str]
    bertscore_model: str
    bertscore_layers: int
    bertscore_rescale: bool
    bootstrap_resamples: int


@dataclass(frozen=True)
class QualitativeParams:
    ids: list[str]
    top_k: int
    random_examples: int


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


# The optimizers this recipe is meant for (TrainingArguments.optim names); others need their own testing.
OPTIMIZERS = ("paged_adamw_8bit", "adamw_8bit", "paged_adamw_32bit", "adamw_torch", "adamw_torch_fused", "adafactor")
CHOICES = {
    "model.device": ("cuda", "cpu"),
    "data.on_bad_rows": ("error", "drop"),
    "train.optim": OPTIMIZERS,
    "quantization.quant_type": ("nf4", "fp4"),
    "quantization.compute_dtype": ("auto", "float16", "bfloat16", "float32"),
}
POSITIVE = {
    "prompt.max_length",
    "lora.r",
    "lora.alpha",
    "train.learning_rate",
    "train.batch_size",
    "train.grad_accum",
    "train.max_steps",
    "train.logging_steps",
    "train.eval_steps",
    "train.eval_rows",
    "train.save_steps",
    "train.save_total_limit",
    "train.num_processes",
    "generate.max_new_tokens",
    "generate.batch_size",
    "generate.stress_cases",
    "evaluate.bertscore_layers",
    "evaluate.bootstrap_resamples",
}


def _check_value(value: object, annotation: object, key: str) -> object:
    """Return value if it fits annotation (ints are accepted for floats), else raise ParamsError."""
    if isinstance(annotation, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        annotation = next(a for a in options if a is not type(None))
    origin = typing.get_origin(annotation)
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
        raise ParamsError(f"{key}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: object, prefix: str) -> object:
    if not isinstance(raw, dict):
        raise ParamsError(f"{prefix or 'params'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
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
    return cls(**values)


def _check_ranges(params: Params) -> None:
    for key in sorted(POSITIVE):
        group, name = key.split(".")
        value = getattr(getattr(params, group), name)
        if value <= 0:
            raise ParamsError(f"{key}: must be > 0, got {value}")
    for key, allowed in CHOICES.items():
        group, name = key.split(".")
        value = getattr(getattr(params, group), name)
        if value not in allowed:
            raise ParamsError(f"{key}: got {value!r}, allowed: {', '.join(allowed)}")
    for key in ("qualitative.top_k", "qualitative.random_examples"):
        group, name = key.split(".")
        if getattr(getattr(params, group), name) < 0:
            raise ParamsError(f"{key}: must be >= 0, got {getattr(getattr(params, group), name)}")
    if not 0.0 <= params.lora.dropout < 1.0:
        raise ParamsError(f"lora.dropout: must be in [0, 1), got {params.lora.dropout}")
    if "{dialogue}" not in params.prompt.template:
        raise ParamsError("prompt.template: must contain the placeholder {dialogue}")
    train = params.train
    if train.save_steps > train.max_steps:
        raise ParamsError(
            f"train.save_steps: {train.save_steps} > train.max_steps {train.max_steps}: no checkpoint would be "
            "written to resume from; lower it"
        )
    if train.eval_steps > train.max_steps:
        raise ParamsError(f"train.eval_steps: {train.eval_steps} > train.max_steps {train.max_steps}; lower it")
    unknown_metrics = sorted(set(params.evaluate.metrics) - set(METRICS))
    if unknown_metrics:
        raise ParamsError(f"evaluate.metrics: unknown {', '.join(unknown_metrics)}; allowed: {', '.join(METRICS)}")
    if params.generate.max_new_tokens >= params.prompt.max_length:
        raise ParamsError(
            f"generate.max_new_tokens: {params.generate.max_new_tokens} leaves no room for the prompt "
            f"within prompt.max_length {params.prompt.max_length}"
        )


def parse_params(raw: object) -> Params:
    """Validate a params mapping (as read from YAML) and return it typed."""
    params = _build(Params, raw, "")
    _check_ranges(params)
    return params


def read_yaml(text: str) -> object:
    """YAML 1.2, as DVC reads params (PyYAML's 1.1 would read `1e-4` as a string)."""
    return YAML(typ="safe", pure=True).load(text)


def load_params(path: Path = PARAMS_PATH) -> Params:
    """Read and validate params.yaml."""
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root") from None
    except UnicodeDecodeError as error:
        raise ParamsError(f"{path}: bytes that are not UTF-8 (at byte {error.start}); re-save it as UTF-8") from None
    except OSError as error:
        raise ParamsError(f"{path}: cannot be read ({error.strerror})") from None
    except YAMLError as error:
        # ruamel's message spans lines (problem, context, a caret under the column): keep it to one.
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    return parse_params(raw)


def to_dict(params: object) -> dict:
    """Plain-dict form, for writing the resolved params next to an output."""
    return dataclasses.asdict(params)
