"""What a user sees while stages work: no warning they cannot act on, every other warning, and progress bars with a
total (so tqdm shows an ETA) over the long work: training steps, generation batches, BERTScore's forward passes."""

import re
import subprocess
import sys

from phisum.metrics import BertScoreSettings, score_bertscore
from phisum.resources import DEFAULT_BERTSCORE_MODEL
from tests.helpers import ROOT, command_env, invoke_stage, set_params, stage_command, stage_env

# What a successful tiny run printed on stderr before phisum/__init__.py filtered it (train: all five;
# generate@peft: the third), each with its category and the module that warns.
HARMLESS = [
    (
        "FutureWarning",
        "transformers.modeling_utils",
        "`gradient_checkpointing_enable` is deprecated and will be removed in v6. Use "
        "`activation_checkpointing_enable` instead.",
    ),
    (
        "FutureWarning",
        "transformers.training_args",
        "`gradient_checkpointing` is deprecated and will be removed in v6. Use `activation_checkpointing` instead.",
    ),
    (
        "FutureWarning",
        "transformers.modeling_utils",
        "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use `is_activation_checkpointing` "
        "instead.",
    ),
    (
        "FutureWarning",
        "transformers.training_args",
        "`gradient_checkpointing_kwargs` is deprecated and will be removed in v6. Use "
        "`activation_checkpointing_kwargs` instead.",
    ),
    (
        "UserWarning",
        "bitsandbytes.optim.optimizer",
        "Paged optimizers are not supported on CPU. Falling back to non-paged optimizer behavior.",
    ),
]
ANY_WARNING = re.compile(r"^.*\b\w*Warning: .*$", re.MULTILINE)


def bar_totals(stderr: str, label: str) -> set[str]:
    """The `n/total` of every state of tqdm bar `label` ("" for the Trainer's unlabelled bars) printed on stderr."""
    return set(re.findall(rf"(?:^|\r){re.escape(label)}[ :]*\d+%\|[^|]*\| (\d+/\d+) \[", stderr, re.MULTILINE))


def test_a_tiny_run_prints_no_warning_a_user_cannot_act_on_and_shows_progress_with_totals(tiny_stage_dir):
    """train and generate@peft as DVC runs them (a process each); train prints all five known warnings without the
    filters, generate@peft one of them."""
    set_params(
        tiny_stage_dir,
        {
            "train": {"max_steps": 2, "save_steps": 2, "eval_steps": 1, "logging_steps": 1, "eval_rows": 2},
            "generate": {"max_new_tokens": 8, "batch_size": 2, "stress_cases": 3},  # 3 test + 3 stress prompts
        },
    )
    assert invoke_stage("prepare").exit_code == 0
    stderr = {}
    for stage in ("train", "generate@peft"):
        done = subprocess.run(
            stage_command(stage), cwd=tiny_stage_dir, env=stage_env(), capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        stderr[stage] = done.stderr
        for _, _, message in HARMLESS:
            assert message not in done.stderr, stage
        assert ANY_WARNING.findall(done.stderr) == [], stage  # nothing else warned either
    # The Trainer's bar over the 2 optimizer steps (its evaluation bars count the 2 validation rows).
    assert {"0/2", "1/2", "2/2"} <= bar_totals(stderr["train"], "")
    assert re.search(r"\| 1/2 \[\d\d:\d\d<\d\d:\d\d, ", stderr["train"])  # after one step: elapsed<ETA
    # 6 prompts in batches of 2: 3 generate() calls.
    assert bar_totals(stderr["generate@peft"], "generate") >= {"0/3", "3/3"}
    assert bar_totals(stderr["generate@peft"], "generate") <= {"0/3", "1/3", "2/3", "3/3"}


def test_the_warning_filters_are_narrow_every_other_warning_still_shows():
    """Each known message dropped only with its category from its module: the same words from another module or
    under another category, and another message of the same category from the same module, still print."""
    shown_anyway = [
        ("FutureWarning", "phisum.training", HARMLESS[0][2]),  # the same words, another module
        ("DeprecationWarning", "transformers.modeling_utils", HARMLESS[2][2]),  # another category
        (
            "FutureWarning",
            "transformers.modeling_utils",
            "`use_cache` is deprecated and will be removed in v6. Use `cache` instead.",
        ),
        ("UserWarning", "bitsandbytes.optim.optimizer", "Paged optimizers are not supported on XPU."),
        ("UserWarning", "bitsandbytes.optim.optimizer", HARMLESS[4][2] + " Extra."),  # the message is matched whole
    ]
    script = "import sys, warnings, phisum\n" + "".join(
        f"warnings.warn_explicit({message!r}, {category}, 'where.py', {line}, module={module!r})\n"
        for line, (category, module, message) in enumerate(HARMLESS + shown_anyway, start=1)
    )
    # -W default: no filter of Python's own (DeprecationWarning is hidden outside __main__) decides anything here.
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        cwd=ROOT,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"where.py:{line}: {category}: {message}"
        for line, (category, _, message) in enumerate(HARMLESS + shown_anyway, start=1)
        if line > len(HARMLESS)
    ]


def test_bertscore_shows_a_bar_with_a_total_over_its_forward_passes(capsys):
    """On the offline MiniLM model, one sentence per forward pass: the 3 distinct pairs hold 4 distinct sentences
    (the first prediction is also the second reference), so bert_score runs the model 4 times."""
    first, second = "Tom and Ann meet on Friday.", "Bob calls Sue about the report."
    predictions = [first, second, first, first]
    references = ["On Friday, Ann meets Tom.", first, "On Friday, Ann meets Tom.", "The weather is nice."]
    settings = BertScoreSettings(DEFAULT_BERTSCORE_MODEL, layers=6, rescale=False, batch_size=1)
    rows = score_bertscore(predictions, references, settings)
    assert rows[0] == rows[2] and rows[1]["bertscore_f1"] < 1.0
    stderr = capsys.readouterr().err
    assert re.search(r"(?:^|\r)BERTScore:   0%\| +\| 0/4 \[00:00<\?, \?batch/s\]", stderr), stderr
    assert bar_totals(stderr, "BERTScore") <= {"0/4", "1/4", "2/4", "3/4", "4/4"}
    assert "4/4" in bar_totals(stderr, "BERTScore")
