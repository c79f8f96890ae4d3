"""The scenes package's shape: small modules in layers, and render-bank cache keys that hash
exactly the scenes modules a render runs (found from the imports, so a new module on the
rendering path that the keys miss fails here)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import digitrec
from digitrec.training import linebank, renders

ROOT = Path(digitrec.__file__).parent


def imports_of(rel: str) -> set[str]:
    """The digitrec files (relative to the package) that a file imports directly, function-local
    imports included."""
    here = Path(rel).parent
    out = set()
    for node in ast.walk(ast.parse((ROOT / rel).read_text())):
        if not (isinstance(node, ast.ImportFrom) and node.level):
            continue
        base = here
        for _ in range(node.level - 1):
            base = base.parent
        target = base / node.module.replace(".", "/") if node.module else base
        names = [target / a.name for a in node.names] + [target]
        for name in names:
            for cand in (Path(f"{name}.py"), name / "__init__.py"):
                if (ROOT / cand).exists():
                    out.add(cand.as_posix())
                    break
    return out


def closure(rel: str) -> set[str]:
    seen, todo = set(), [rel]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += imports_of(f)
    return seen


def test_the_bank_keys_hash_the_scenes_modules_a_render_runs_and_no_other():
    runs = {f for f in closure("scenes/conditions.py") if f.startswith("scenes/")}
    assert set(renders.RENDERING) == runs
    assert "scenes/nondigits.py" not in runs and "scenes/__init__.py" not in runs
    prepares = closure("inference/preprocess.py") - {"errors.py"}  # messages only
    for code in (renders.CODE, linebank.CODE):
        assert runs | prepares <= set(code)
        assert all((ROOT / f).is_file() for f in code)


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "scenes").glob("*.py")))
def test_each_scenes_module_is_small_and_its_functions_short(path):
    text = (ROOT / "scenes" / path).read_text()
    assert len(text.splitlines()) <= 450
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno - node.lineno + 1 <= 50, f"{path}: {node.name} is over 50 lines"


def test_the_scenes_modules_import_each_other_without_a_cycle():
    modules = [f"scenes/{p.name}" for p in (ROOT / "scenes").glob("*.py")]
    for m in modules:
        reached = set().union(*(closure(d) for d in imports_of(m)))
        assert m not in reached, f"{m} imports itself through {sorted(reached & set(modules))}"
