"""The package's layer order: every import (also one inside a function) runs down the order below, the
modules import no cycle, only the CLI imports click, and only the CLI imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import seq2seq

PACKAGE = Path(seq2seq.__file__).parent

# lowest first; a module may import its own layer's modules and any layer before it
LAYERS = [
    ("errors", "constants", "fileio", "text"),
    ("config",),
    ("runs",),
    ("data",),
    ("model",),
    ("decode",),
    ("evaluation",),
    ("training",),
    ("inspect",),
    ("share",),
    ("serve",),
    ("cli",),
    ("__init__", "__main__"),
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
FUNCTION_IMPORTS_ALLOWED = ("cli", "__init__")  # start-up time: the CLI imports a stage when it runs


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported seq2seq module, whether the import sits inside a function) for every import in the file."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names if a.name.startswith("seq2seq"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("seq2seq"):
                for a in child.names:  # `from seq2seq.x import y`: y may be a module of its own
                    sub = f"{child.module}.{a.name}"
                    found.append((sub if sub in known else child.module, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: {i for i, _ in imports(p, known) if i != m} for m, p in mods.items()}


def test_every_module_is_in_a_layer():
    assert {room(m) for m in modules()} <= set(RANK), "a room missing from LAYERS"


def test_imports_run_down_the_layer_order():
    wrong = []
    for module, deps in graph().items():
        for dep in deps:
            if dep != "seq2seq" and RANK[room(dep)] > RANK[room(module)]:
                wrong.append(f"{module} imports {dep}")
    assert not wrong, "imports up the layer order:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def walk(node: str, path: list[str]):
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if dep == "seq2seq" or dep.rsplit(".", 1)[0] == node:  # a package importing its own submodules
                continue
            if state.get(dep) == 1:
                cycles.append(
                    " -> ".join(path[path.index(dep) :] + [dep]) if dep in path else f"{node} -> {dep}"
                )
            elif dep not in state:
                walk(dep, path + [dep])
        state[node] = 2

    for m in sorted(g):
        if m not in state:
            walk(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_only_the_cli_imports_click_or_imports_inside_functions():
    mods = modules()
    known = set(mods)
    wrong = []
    for module, path in mods.items():
        text = path.read_text(encoding="utf-8")
        if room(module) != "cli" and ("import click" in text or "from click" in text):
            wrong.append(f"{module} imports click")
        if room(module) not in FUNCTION_IMPORTS_ALLOWED:
            wrong += [
                f"{module} imports {dep} inside a function" for dep, inner in imports(path, known) if inner
            ]
    assert not wrong, "\n".join(wrong)


def test_the_package_root_holds_only_the_base_layer():
    root = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert root == ["__init__", "__main__", "constants", "errors", "fileio", "text"]
