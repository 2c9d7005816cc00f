"""The import rules of docs/architecture.md, read from the source (every import, also those inside
functions): layers import only downwards, steps stand alone, the outer folders stay thin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "numtaflow"
LAYERS = {  # lowest first; a module may import its own layer and those below
    "foundation": {"vocabulary", "catalog", "contracts", "config"},
    "infrastructure": {"storage", "spark", "jvm_warm_up", "services", "templates"},
    "domain": {"images", "features", "feature_cache", "inspection_cache", "caches", "model", "ml", "sampling", "evaluation", "gating", "quality", "data", "incoming",
               "registry", "lineage", "scoring", "model_card", "retention"},
    "application": {"jobs", "steps", "webapp", "triggers", "tasks", "cli", "__main__"},
}
ORDER = list(LAYERS)
OUTER_RULES = {  # what the thin outer folders may import from the package
    "dags": {"catalog", "config", "tasks"},
    "plugins": {"catalog", "storage", "webapp"},
    "spark_jobs": {"jobs", "steps"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(part for part in parts if part != "__init__")


def imported_from(target: str, names: list[ast.alias]) -> set[str]:
    """What ``from <target> import <names>`` imports: each name that is a module of the package
    (``from numtaflow.steps import sample`` imports ``steps.sample``), else ``target`` itself."""
    folder = PACKAGE.joinpath(*target.split(".")) if target else PACKAGE
    modules = {f"{target}.{a.name}".strip(".") for a in names
               if (folder / f"{a.name}.py").is_file() or (folder / a.name / "__init__.py").is_file()}
    return modules or {target}


def package_imports(path: Path, module: str) -> set[str]:
    """The package modules ``path`` imports, as dotted names below ``numtaflow`` (``steps.train``)."""
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = module.split(".") if module else []
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            found.update(imported_from(".".join(base + ([node.module] if node.module else [])), node.names))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numtaflow"):
            found.update(imported_from(node.module.removeprefix("numtaflow").strip("."), node.names))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("numtaflow.") for a in node.names if a.name.startswith("numtaflow."))
    return {name for name in found if name}


def layer(module: str) -> str:
    top = module.split(".")[0]
    matches = [name for name, members in LAYERS.items() if top in members]
    assert matches, f"module {module} is in no layer of docs/architecture.md: add it there and here"
    return matches[0]


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if module_name(p)}
GRAPH = {module: package_imports(path, module) for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_modules_import_only_their_layer_and_below(module):
    for target in GRAPH[module]:
        assert ORDER.index(layer(target)) <= ORDER.index(layer(module)), (
            f"{module} ({layer(module)}) imports {target} ({layer(target)}): layers import only downwards")


def test_steps_import_no_other_step_and_nothing_imports_a_step_but_the_jobs():
    for module, targets in GRAPH.items():
        steps = {t for t in targets if t.startswith("steps.")}
        if module.startswith("steps."):
            assert not steps, f"{module} imports {steps}: steps talk only through S3"
        else:
            assert not steps, f"{module} imports {steps}: only spark_jobs/ run steps"
    for module in ("webapp", "triggers", "cli"):
        assert not any(t.startswith(("steps", "jobs")) for t in GRAPH[module]), module


def test_every_form_of_importing_a_step_is_seen(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("from numtaflow.steps import sample\nfrom ..steps import train\nfrom . import featurize\n"
                      "from .evaluate import run\nimport numtaflow.steps.canary\n")
    assert package_imports(source, "steps.x") == {"steps.sample", "steps.train", "steps.featurize", "steps.evaluate",
                                                  "steps.canary"}


def test_no_import_cycles():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            target = target if target in GRAPH else target.split(".")[0]
            assert state.get(target) != "open", "import cycle: " + " -> ".join(path + [target])
            if target in GRAPH and target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in GRAPH:
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("folder", sorted(OUTER_RULES))
def test_outer_folders_stay_thin(folder):
    files = sorted((ROOT / folder).glob("*.py"))
    assert files
    for path in files:
        used = {name.split(".")[0] for name in package_imports(path, "")}
        assert used <= OUTER_RULES[folder], f"{path.relative_to(ROOT)} imports {sorted(used - OUTER_RULES[folder])}"


def test_the_package_never_imports_the_outer_folders():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        assert not {name.split(".")[0] for name in names} & {"dags", "plugins", "spark_jobs", "tests"}, path


def test_the_document_names_every_layer_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for members in LAYERS.values():
        for module in members - {"__main__"}:
            assert f"`{module}`" in text, f"docs/architecture.md does not place `{module}`"
