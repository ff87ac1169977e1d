"""The package's import structure: stages import only downward, no circles, mlflow only in mlops/.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy import
is still an arrow in the design.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "clvflow"

#: The stages in flow order; a module may import from its own stage or a lower one.
LAYERS = [
    "core", "data", "features", "evaluation", "models", "scoring", "spark", "mlops", "cli", "api"
]  # fmt: skip

#: Old import paths kept for files written before the move (module -> the stage it belongs to).
COMPAT = {"clvflow.pyfunc_model": "mlops"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    """Index of a ``clvflow.<stage>...`` module's stage in LAYERS; None for the package itself."""
    if module in COMPAT:
        return LAYERS.index(COMPAT[module])
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else None


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, resolved to full dotted names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; write it absolute")
            base = node.module or ""
            found.append((node.lineno, base))
            # `from clvflow.stage import module` imports the submodule
            found += [
                (node.lineno, f"{base}.{a.name}") for a in node.names if _is_module(base, a.name)
            ]
    return found


def _is_module(package: str, name: str) -> bool:
    folder = SRC.parent.joinpath(*package.split("."))
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def graph() -> dict[str, dict[str, int]]:
    """clvflow module -> {imported clvflow module: first line}."""
    edges: dict[str, dict[str, int]] = {}
    for path in sorted(SRC.rglob("*.py")):
        mod = module_name(path)
        edges[mod] = {}
        for line, target in imports(path):
            if target.startswith("clvflow.") and target != mod:
                edges[mod].setdefault(target, line)
    return edges


def test_every_module_belongs_to_a_stage():
    """Issue 13 item 1: the tree shows the flow; no module floats outside the stages."""
    loose = [m for m in graph() if m not in ("clvflow", *COMPAT) and m.split(".")[1] not in LAYERS]
    assert loose == []


def test_stages_import_only_downward():
    """Issue 13 item 1: a lower stage never imports a higher one."""
    upward = [
        f"{mod} (line {line}) imports {target}"
        for mod, targets in graph().items()
        for target, line in targets.items()
        if layer(mod) is not None and layer(target) is not None and layer(target) > layer(mod)
    ]
    assert upward == []


def test_no_import_circles():
    """Issue 13 item 1: the module graph is acyclic (Tarjan's strongly connected components)."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, {}):
            if nxt not in edges:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert circles == []


def test_mlflow_is_imported_only_in_mlops():
    """Issue 13 item 1: tracking, registry and serving live in one stage."""
    outside = [
        f"{module_name(path)} (line {line})"
        for path in sorted(SRC.rglob("*.py"))
        if module_name(path).split(".")[1:2] != ["mlops"] and module_name(path) not in COMPAT
        for line, target in imports(path)
        if target == "mlflow" or target.startswith("mlflow.")
    ]
    assert outside == []


def test_pyspark_is_imported_only_in_spark_and_only_lazily():
    """Issue 12 item 4: clvflow works without the spark extra: pyspark appears only in
    clvflow.spark, inside functions or under TYPE_CHECKING, never at a module's top level."""
    outside, eager = [], []
    for path in sorted(SRC.rglob("*.py")):
        in_spark = module_name(path).split(".")[1:2] == ["spark"]
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)}
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "pyspark" or n.startswith("pyspark.") for n in names):
                where = f"{module_name(path)} (line {node.lineno})"
                (eager if in_spark and id(node) in top else outside if not in_spark else []).append(
                    where
                )
    assert outside == [] and eager == []


def test_research_code_is_not_in_the_package():
    """Issue 13 item 1: benchmarks live at the top level and the package never imports them."""
    assert not list(SRC.rglob("bench*.py"))
    users = [
        module_name(p)
        for p in SRC.rglob("*.py")
        for _, t in imports(p)
        if t.startswith("benchmarks")
    ]
    assert users == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from clvflow.models import clv\n", ["clvflow.models", "clvflow.models.clv"]),
        ("def f():\n    import clvflow.cli.main\n", ["clvflow.cli.main"]),
    ],
)
def test_imports_sees_submodules_and_lazy_imports(tmp_path, source, expected):
    """The checker itself: a submodule imported by name and a function-local import both count."""
    path = tmp_path / "m.py"
    path.write_text(source)
    assert [t for _, t in imports(path)] == expected


def test_readme_architecture_tree_matches_the_folders():
    """Issue 13 acceptance: the README's "Architecture" tree lists exactly the package's modules."""
    readme = (SRC.parents[1] / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```", 2)[1]
    listed, folder = set(), ""
    for line in tree.splitlines():
        indent = len(line) - len(line.lstrip())
        first = line.strip().split(" ", 1)[0]
        if indent == 2:
            folder = first if first.endswith("/") else ""
        if indent in (2, 4):  # a module line may name a second module in its description
            listed.update(folder + name for name in re.findall(r"\b\w+\.py\b", line))
    actual = {
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "__init__.py" or p.parent == SRC
    }
    assert listed == actual


def test_pyfunc_models_logged_before_the_move_still_import():
    """Issue 13 acceptance: an old ``clv_model`` version's code file runs
    ``from clvflow.pyfunc_model import ClvPyfunc``; it gets today's class."""
    from clvflow.mlops.pyfunc import ClvPyfunc
    from clvflow.pyfunc_model import ClvPyfunc as OldPath

    assert OldPath is ClvPyfunc
