"""The benchmarks run for an hour or more and no DAG runs them: these checks catch what a change to
the package breaks in them before a benchmark run does."""

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from numtaflow.config import Settings

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module", autouse=True)
def benchmarks_importable():
    sys.path.insert(0, str(BENCHMARKS))  # as when a benchmark runs: its folder first
    yield
    sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("script", sorted(path.name for path in BENCHMARKS.glob("*.py")))
def test_every_benchmark_imports_what_it_uses(script):
    """Its module-level imports run; those inside functions (run only by a benchmark) are looked up."""
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), BENCHMARKS / script)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    for node in ast.walk(ast.parse((BENCHMARKS / script).read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("numtaflow"):
            module = importlib.import_module(node.module)
            missing = [alias.name for alias in node.names if not hasattr(module, alias.name)
                       and importlib.util.find_spec(f"{node.module}.{alias.name}") is None]
            assert not missing, f"{script}:{node.lineno} imports {missing} from {node.module}, which has no such name"


def test_the_featurize_sweep_changes_one_valid_platform_setting_at_a_time():
    import featurize_bench

    settings = Settings()
    configurations = featurize_bench.sweep_configurations(settings, cores=2)
    assert [(knobs["arrow_batch_rows"], knobs["udf_batch_size"], master, threads)
            for knobs, _, master, threads in configurations] == [
        (32, 16, "local[2]", 1), (128, 16, "local[2]", 1), (512, 16, "local[2]", 1), (128, 32, "local[2]", 1),
        (128, 64, "local[2]", 1), (128, 16, "local[1]", 2), (128, 16, "local[2]", 2)]
    for knobs, tuned, _, _ in configurations:
        assert (tuned.arrow_batch_rows, tuned.udf_batch_size) == (knobs["arrow_batch_rows"], knobs["udf_batch_size"])
        assert tuned.model_dump(exclude=set(knobs)) == settings.model_dump(exclude=set(knobs))
