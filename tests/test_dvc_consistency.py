"""dvc.yaml must declare what each stage really reads, or DVC skips stages that should rerun."""

import ast
import difflib
import importlib
import shlex
import subprocess

import click
import pytest
import yaml

from tests.helpers import ROOT, dvc_stage

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SCRIPTS = {name: name for name in ("prepare", "train", "generate", "evaluate", "qualitative")}
# Every stage as DVC runs it: foreach items one by one.
RUNS = [
    f"{name}@{key}" if "foreach" in STAGES[name] else name
    for name in STAGES
    for key in STAGES[name].get("foreach", [""])
]
# Written by a stage but deliberately no out: DVC deletes outs before a rerun, and a killed run resumes from these.
NOT_OUTS = {"train": {"checkpoint_dir"}}


def stage_body(name: str) -> dict:
    stage = STAGES[name]
    return stage["do"] if "foreach" in stage else stage


def imported_modules(path) -> set[str]:
    """phisum modules a file imports, followed transitively through the package."""
    seen: set[str] = set()
    todo = [path]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("phisum.") and module not in seen:
                seen.add(module)
                todo.append(ROOT / (module.replace(".", "/") + ".py"))
    return {f"{m.replace('.', '/')}.py" for m in seen}


def declared_params(path) -> set[str]:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PARAMS":
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{path} has no PARAMS")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_stage_deps_list_every_phisum_module_it_imports(name):
    script = ROOT / "stages" / f"{SCRIPTS[name]}.py"
    deps = set(stage_body(name)["deps"])
    assert f"stages/{script.name}" in deps
    missing = imported_modules(script) - deps
    assert not missing, f"{name}: add {sorted(missing)} to its deps in dvc.yaml"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_stage_params_match_what_the_script_reads(name):
    script = ROOT / "stages" / f"{SCRIPTS[name]}.py"
    declared = declared_params(script)
    assert set(stage_body(name)["params"]) == declared
    groups_read = {
        node.attr
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "params"
    }
    groups_declared = {key.split(".")[0] for key in declared}
    assert groups_read <= groups_declared, f"{name} reads {sorted(groups_read - groups_declared)} undeclared"


def test_base_generation_does_not_depend_on_training():
    deps = set(stage_body("generate")["deps"]) | {STAGES["generate"]["foreach"]["base"]["model_input"]}
    params = set(stage_body("generate")["params"])
    assert "models/adapter" not in deps
    assert not params & {"lora", "train"}
    assert STAGES["generate"]["foreach"]["peft"]["model_input"] == "models/adapter"


def test_every_stage_is_checked():
    assert set(STAGES) == set(SCRIPTS)


def declared_paths(entries: list) -> set[str]:
    """dvc.yaml's deps/outs/metrics entries: plain paths, or one-key mappings with options."""
    return {entry if isinstance(entry, str) else next(iter(entry)) for entry in entries}


def covers(option_path: str, declared: str) -> bool:
    return declared == option_path or declared.startswith(f"{option_path.rstrip('/')}/")


@pytest.mark.parametrize("run", RUNS)
def test_every_path_in_a_stage_cmd_is_its_dep_or_out_and_every_dep_and_out_is_in_its_cmd(run):
    name = run.split("@")[0]
    stage = dvc_stage(run)
    argv = shlex.split(stage["cmd"])
    assert argv[:3] == ["python", "-m", f"stages.{name}"], "run stages as modules: see dvc.yaml's header"
    command = importlib.import_module(f"stages.{name}").main
    given = command.make_context(name, argv[3:]).params  # click parses them as the stage will
    path_options = [p for p in command.params if isinstance(p.type, click.Path) and given.get(p.name) is not None]
    deps = {dep for dep in stage["deps"] if not dep.endswith(".py")}  # code deps are checked above
    outs = declared_paths(stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []))
    inputs = [str(given[p.name]) for p in path_options if not p.type.writable]
    outputs = [str(given[p.name]) for p in path_options if p.type.writable and p.name not in NOT_OUTS.get(name, ())]
    for path in inputs:
        assert any(covers(path, dep) for dep in deps), f"{run}: {path} is read but not among its deps"
        assert not any(covers(path, out) for out in outs), f"{run}: {path} is read, yet declared an out"
    for path in outputs:
        assert any(covers(path, out) for out in outs), f"{run}: {path} is written but not among its outs"
    for dep in deps:
        assert any(covers(path, dep) for path in inputs), f"{run}: dep {dep} is no path its cmd gives"
    for out in outs:
        assert any(covers(path, out) for path in outputs), f"{run}: out {out} is no path its cmd gives"
    for option in NOT_OUTS.get(name, ()):
        assert not any(covers(str(given[option]), out) for out in outs | deps), f"{run}: {option} is declared"


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(old, new) per differing line of two texts with the same number of lines."""
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new), "\n".join(difflib.unified_diff(old, new, lineterm=""))
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


@pytest.mark.parametrize("profile", ["committed", "cpu"])
def test_dvc_exp_run_set_param_changes_exactly_one_line_of_params_yaml(tmp_path, profile):
    """`dvc exp run -S lora.r=16` rewrites params.yaml with DVC's own writer (dvc.utils.hydra.apply_overrides,
    ruamel round trip): the committed layout is the one it writes back, so a review sees a one-line diff."""
    from dvc.utils.hydra import apply_overrides as dvc_apply_overrides

    from phisum.profile import apply_overrides

    text = (ROOT / "params.yaml").read_text()
    if profile == "cpu":  # what `make demo` runs the experiment on
        text, _ = apply_overrides(text, yaml.safe_load((ROOT / "profiles/cpu.yaml").read_text()))
    path = tmp_path / "params.yaml"
    path.write_text(text)
    dvc_apply_overrides(path, ["lora.r=32"])  # a value it already has: not a byte changes
    assert path.read_text() == text
    dvc_apply_overrides(path, ["lora.r=16"])
    comment = "  # adapter rank; `dvc exp run -S lora.r=16` tries a smaller one"
    assert changed_lines(text, path.read_text()) == [(f"  r: 32{comment}", f"  r: 16{comment}")]


def test_every_score_the_review_plots_and_summary_show_has_one_label():
    from phisum.params import PRIMARY_METRICS
    from phisum.review import SCORE_KEYS
    from phisum.significance import COMPARISONS
    from phisum.vocabulary import HEADLINE, LABELS, PLOTTED, SUMMARY

    keys = {f"{protocol}.{name}" for protocol, names in COMPARISONS.items() for name in names}
    keys |= set(HEADLINE) | set(SCORE_KEYS.values()) | set(PRIMARY_METRICS)
    assert keys - set(LABELS) == set()
    # The plots and the evaluate summary show a part of the one headline list, in its order.
    for part in (PLOTTED, SUMMARY):
        assert list(part) == [key for key in HEADLINE if key in part]
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]["primary_metric"] in PRIMARY_METRICS


def test_the_variants_are_dvc_yaml_s_generate_items_and_evaluate_reads_each():
    from phisum.vocabulary import VARIANTS

    assert tuple(STAGES["generate"]["foreach"]) == VARIANTS
    predictions = {dep for dep in stage_body("evaluate")["deps"] if dep.startswith("data/predictions/")}
    assert predictions == {f"data/predictions/{variant}" for variant in VARIANTS}


def test_the_review_reads_the_paths_the_stage_cmds_of_dvc_yaml_give():
    """phisum.review reads each revision's outputs where that revision's stages wrote them: the options of
    its dvc.yaml's evaluate and train cmds, parsed here by the stages' own click commands."""
    from phisum.review import stage_paths

    given = {
        name: importlib.import_module(f"stages.{name}").main.make_context(name, shlex.split(STAGES[name]["cmd"])[3:])
        for name in ("evaluate", "train")
    }
    assert stage_paths((ROOT / "dvc.yaml").read_text(), "the workspace") == {
        "metrics_dir": str(given["evaluate"].params["metrics_dir"]),
        "scored_dir": str(given["evaluate"].params["scored_dir"]),
        "train_metrics": str(given["train"].params["metrics_path"]),
    }


def test_files_dvc_writes_for_a_user_are_not_committed_by_git_add_all():
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "dvc_plots/index.html"], cwd=ROOT, capture_output=True, text=True
    )
    assert ignored.stdout.strip() == "dvc_plots/index.html"
