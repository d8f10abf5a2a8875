"""dvc.yaml must declare what each stage really reads, or DVC skips stages that should rerun."""

import ast

import pytest
import yaml

from tests.conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SCRIPTS = {name: name for name in ("prepare", "train", "generate", "evaluate", "qualitative")}


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
