"""The package's shape: imports at the top of their modules, pointing one way, and files and functions
of a size a reader takes in.

    worldsim.core  <-  worldsim.kernels  <-  worldsim.model  <-  worldsim.envs  <-  worldsim.eval
                   <-  worldsim.train  <-  worldsim.cli
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Source folder -> import name (pyproject's package-dir).
FOLDERS = {"worldsim": "worldsim", "model": "worldsim.model", "kernels": "worldsim.kernels",
           "envs": "worldsim.envs", "eval": "worldsim.eval"}
RANK = {"worldsim.core": 0, "worldsim._version": 0, "worldsim.kernels": 1, "worldsim.model": 2, "worldsim.envs": 3,
        "worldsim.eval": 4, "worldsim.train": 5,
        "worldsim.cli": 6, "worldsim.evaluate": 6, "worldsim.__main__": 6, "worldsim": 6}
# Folders whose modules may import inside functions: none but documented optional dependencies,
# marked on the import's line with "# optional dependency".
NO_LOCAL_IMPORTS = ("worldsim", "model", "envs", "eval")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def _modules():
    for folder, name in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield folder, ".".join([name, *parts]), path


def _rank(module: str) -> int:
    best = max((p for p in RANK if module == p or module.startswith(p + ".")), key=len)
    return RANK[best]


def _worldsim_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "worldsim"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "worldsim":
                out.add(target)
    return out


def _local_imports(tree: ast.Module, source: list[str]) -> list[int]:
    lines = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and \
                        "# optional dependency" not in source[node.lineno - 1]:
                    lines.append(node.lineno)
    return sorted(set(lines))


MODULES = list(_modules())


@pytest.mark.parametrize("folder,module,path", MODULES, ids=[m for _, m, _ in MODULES])
def test_imports_point_one_way_and_sit_at_the_top(folder, module, path):
    source = path.read_text().splitlines()
    tree = ast.parse("\n".join(source))
    mine = _rank(module)
    upward = sorted(t for t in _worldsim_imports(tree, module, path.name == "__init__.py")
                    if t != "worldsim" and _rank(t) > mine)
    assert not upward, f"{module} (layer {mine}) imports from layers above it: {upward}"
    if folder in NO_LOCAL_IMPORTS:
        assert not _local_imports(tree, source), f"{path}: imports inside functions at lines {_local_imports(tree, source)}"


def test_no_import_cycles():
    graph = {}
    for _, module, path in MODULES:
        tree = ast.parse(path.read_text())
        top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
        graph[module] = {t for t in _worldsim_imports(top, module, path.name == "__init__.py") if t in
                         {m for _, m, _ in MODULES} and t != module}
    seen, stack = {}, []

    def visit(m):
        seen[m] = "open"
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if seen.get(t) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in seen:
                visit(t)
        stack.pop()
        seen[m] = "done"

    for m in sorted(graph):
        if m not in seen:
            visit(m)


@pytest.mark.parametrize("folder,module,path", MODULES, ids=[m for _, m, _ in MODULES])
def test_files_and_functions_stay_small(folder, module, path):
    if folder == "kernels" and path.name == "triton.py":
        pytest.skip("Triton kernels may run longer")
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path}: {len(text.splitlines())} lines"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path}: functions over {MAX_FUNCTION_LINES} lines: {long}"
