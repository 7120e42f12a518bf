"""The code's shape, checked (issue 19): no function in the package over 120 lines, asset and check
bodies thin (logic lives in the stages' pure functions), and no private Dagster import anywhere.

`python -m datafirst_assets_tests.test_code_shape` prints the longest functions and asset bodies.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from datafirst_assets.launch import DEFAULT_INSTANCE_CLASSES

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "datafirst_assets"
MAX_FUNCTION_LINES = 120
MAX_ASSET_BODY_LINES = 40  # the standard is "under ~30"; 40 leaves room for a long signature's wrap
# decorators that make a function a Dagster asset or check (with or without `dg.` and call brackets)
ASSET_DECORATORS = {"asset", "multi_asset", "graph_asset", "graph_multi_asset", "asset_check",
                    "multi_asset_check"}
# `dagster._x` or `dagster_duckdb._x`, as an import or a dotted name in code
PRIVATE_DAGSTER = re.compile(r"dagster(?:_[a-z]+)?\._[a-z]")


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of the body after the docstring, blank and comment lines included."""
    body = function.body
    if (len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    return function.end_lineno - body[0].lineno + 1


def measure(package: Path = PACKAGE) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, "file:line name") of every function, and of every asset or check body, longest first."""
    functions, asset_bodies = [], []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            where = f"{path.relative_to(package.parent)}:{node.lineno} {node.name}"
            functions.append((node.end_lineno - node.lineno + 1, where))
            if any(_decorator_name(d) in ASSET_DECORATORS for d in node.decorator_list):
                asset_bodies.append((_body_lines(node), where))
    return sorted(functions, reverse=True), sorted(asset_bodies, reverse=True)


def private_dagster_uses(root: Path = REPO) -> list[str]:
    """`file:line` of every import of a private Dagster module (`dagster._x`, `dagster_<lib>._x`) in
    the repo's Python code, and of every such name in a string but the instance classes launch.py
    must name by module path (DEFAULT_INSTANCE_CLASSES, checked in test_launch)."""
    allowed = {module for module, _ in DEFAULT_INSTANCE_CLASSES.values()}
    skip = {".venv", ".git", "data", "build", "evaluation"}  # installed packages, generated files
    paths = [p for top in root.iterdir() if top.name not in skip
             for p in ([top] if top.suffix == ".py" else top.rglob("*.py") if top.is_dir() else [])]
    found = []
    for path in sorted(paths):
        if path.resolve() == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute):
                names = [f"{node.value.id}.{node.attr}"] if isinstance(node.value, ast.Name) else []
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value not in allowed else []
            else:
                continue
            found += [f"{path.relative_to(root)}:{node.lineno}: {name}" for name in names
                      if PRIVATE_DAGSTER.match(name)]
    return found


def test_the_measure_sees_a_long_asset_body_and_a_private_import(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_ASSET_BODY_LINES + 1))
    (tmp_path / "fat.py").write_text(f"import dagster as dg\n\n@dg.asset(group_name='g')\ndef fat():\n"
                                     f"    \"\"\"Doc.\"\"\"\n{body}\n")
    functions, bodies = measure(tmp_path)
    assert bodies == [(MAX_ASSET_BODY_LINES + 1, f"{tmp_path.name}/fat.py:4 fat")]
    assert functions[0][0] == MAX_ASSET_BODY_LINES + 3  # and the def line and the docstring
    (tmp_path / "private.py").write_text("import dagster_duckdb\nfrom dagster._core.storage import x\n"
                                         "dagster_duckdb._get_cleanup_statement()\nfrom dagster import Output\n")
    assert [u.split(": ")[1] for u in private_dagster_uses(tmp_path)] == [
        "dagster._core.storage", "dagster_duckdb._get_cleanup_statement"]


def test_no_function_in_the_package_is_over_120_lines():
    functions, _ = measure()
    assert [f for f in functions if f[0] > MAX_FUNCTION_LINES] == []


def test_asset_and_check_bodies_are_thin():
    _, bodies = measure()
    assert len(bodies) > 20  # the measure finds the asset factories' functions
    assert [b for b in bodies if b[0] > MAX_ASSET_BODY_LINES] == []


def test_no_private_dagster_names_in_the_repo():
    assert private_dagster_uses() == []


def readme_modules(readme: Path = REPO / "README.md") -> set[str]:
    """Modules the README's "Layout and flow" names: `folder/` lines open a folder whose modules
    follow, indented or on the same line; a line starting `name.py` or `folder/name.py` names one."""
    text = readme.read_text()
    block = text[text.index("Every module and its one job"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    named, folder = set(), ""
    for line in block.splitlines():
        if line and not line[0].isspace():
            first = line.split()[0]
            folder = first if first.endswith("/") else ""
            if first.endswith(".py"):
                named.add(first)
                line = line[len(first):]
        named |= {folder + name for name in re.findall(r"\b(\w+\.py)\b", line)}
    return named


def test_readme_layout_names_every_module():
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    named = readme_modules()
    assert sorted(modules - named) == []  # modules the README does not name
    assert sorted(named - modules) == []  # names the README keeps for modules that are gone


if __name__ == "__main__":
    functions, bodies = measure()
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print(f"{len(functions)} functions, longest:")
    print("\n".join(f"  {n:4d} {w}" for n, w in functions[:top]))
    print(f"{len(bodies)} asset/check bodies, longest:")
    print("\n".join(f"  {n:4d} {w}" for n, w in bodies[:top]))
    print(f"private Dagster names: {len(private_dagster_uses())}")
