"""The core's layers point one way. Each package of shardzoo has a rank; a module imports only from its
own package or from packages of lower rank, so the library reads bottom-up and no import cycle can
form between packages. Within the core, no two modules import each other, even through function-level
imports. The core never imports a model package."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "shardzoo"

RANKS = {
    "errors": 0,
    "device": 1, "hub": 1,
    "config": 2, "ops": 2,
    "moe": 3,
    "parallel": 4, "data": 4,
    "checkpoint": 5,
    "registry": 6, "modeling": 6,
    "train": 7, "bench": 7,
    "plan": 8, "scaffold": 8, "testing": 8, "plot": 8,
    "cli": 9,
    "__main__": 10, "__init__": 10,
}
"""Lower ranks never import higher ones: ops and parallel never see the config schema or train,
checkpoint never sees the registry or train, and only the CLI sees everything."""


NEVER = {"ops": {"config"}, "parallel": {"config"}, "moe": {"config"}}
"""Beyond the ranks: the kernels and the parallelisms take plain values, never the config schema, so
they can be used (and tested) without a run's config."""


def _module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _typing_only(tree: ast.AST) -> set[int]:
    """ids of the import statements under `if TYPE_CHECKING:` (never run)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return ids


def _imports(path: Path, runtime_only: bool = False) -> set[str]:
    """Every shardzoo module `path` imports, at any depth of the file (function-level imports too);
    `runtime_only` leaves out the imports for type checkers."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    tree = ast.parse(path.read_text())
    skipped = _typing_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "shardzoo":
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                candidate = f"{module}.{alias.name}"
                found.add(candidate if _exists(candidate) else module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "shardzoo")
    return {m for m in found if m != name}


def _exists(module: str) -> bool:
    path = CORE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph(runtime_only: bool = False) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p, runtime_only) for p in sorted(CORE.rglob("*.py"))}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_rank():
    units = {_unit(m) for m in _graph()}
    assert units <= set(RANKS), f"give these a rank in RANKS: {sorted(units - set(RANKS))}"


def test_imports_point_down():
    upward = [f"{m} imports {t}" for m, targets in _graph().items() for t in sorted(targets)
              if _unit(t) != _unit(m) and RANKS[_unit(t)] >= RANKS[_unit(m)]]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_kernels_and_parallelisms_never_see_the_config_schema():
    offences = [f"{m} imports {t}" for m, targets in _graph().items() for t in sorted(targets)
                if _unit(t) in NEVER.get(_unit(m), ())]
    assert not offences, "\n".join(offences)


def test_no_import_cycle_between_modules():
    graph = _graph(runtime_only=True)
    # A package's __init__ re-exporting its modules is not a dependency of those modules on each other.
    edges = {m: {t for t in targets if t in graph and not graph_is_parent_init(m, t)} for m, targets in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def graph_is_parent_init(module: str, target: str) -> bool:
    """`target` is a package that contains `module` (importing a sibling through the package)."""
    return module.startswith(target + ".")


def test_core_and_its_tests_never_import_a_model_package():
    """Nor do the core's tests: CI runs them once, in test-core-alone, without any model package installed."""
    offences = [f"{p.relative_to(CORE.parent)}: {line.strip()}" for folder in (CORE, CORE.parent / "tests")
                for p in folder.rglob("*.py") for line in p.read_text().splitlines()
                if line.lstrip().startswith(("import shardzoo_", "from shardzoo_"))
                or "importorskip(\"shardzoo_" in line]
    assert not offences, "\n".join(offences)
