"""The map of the code holds: imports point one way (docs/architecture.md's layers), no module of
``src/`` takes part in an import cycle, and the map names every module.

Imports are read from the source with ``ast`` (every ``import`` statement, including those inside
functions and under ``TYPE_CHECKING``), so a lazy import that would close a cycle counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "subsetsearch"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: Layer of each module prefix (longest prefix wins), and the layers each may import from.
LAYERS = {
    "subsetsearch.internal": "internal",
    "subsetsearch.errors": "internal",
    "subsetsearch.stats": "core",
    "subsetsearch.dynamics": "core",
    "subsetsearch.acquisition": "core",
    "subsetsearch.selection": "core",
    "subsetsearch.balance": "core",
    "subsetsearch.detection": "core",
    "subsetsearch.boxmaps": "core",
    "subsetsearch": "core",  # the package's __init__
    "subsetsearch.state": "state",
    "subsetsearch.rundir": "rundir",
    "subsetsearch.executors": "executors",
    "subsetsearch.torch": "torch",
    "subsetsearch.hf": "torch",  # the Hugging Face Trainer's callback: scoring in a user's loop
    "subsetsearch.train": "train",
    "subsetsearch.report": "report",
    "subsetsearch.pipeline": "pipeline",
    "subsetsearch.cli": "cli",
}
ALLOWED = {
    "internal": {"internal"},
    "core": {"core", "internal"},
    "state": {"state", "core", "internal"},
    "rundir": {"rundir", "core", "internal"},
    "executors": {"executors", "core", "internal"},
    "torch": {"torch", "state", "core", "internal"},
    "train": {"train", "rundir", "core", "internal"},
    "report": {"report", "rundir", "core", "internal"},
    "pipeline": {"pipeline", "train", "executors", "report", "rundir", "state", "core", "internal"},
    "cli": {"cli", "pipeline", "executors", "core", "internal"},
}
#: Layers that must not import PyTorch, even lazily (arrays in, arrays out; readable without torch).
NO_TORCH = {"internal", "core", "state", "rundir", "report", "executors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    own = module_name(path)
    return imports_of(path.read_text(), own if path.name == "__init__.py" else own.rpartition(".")[0])


def imports_of(source: str, package: str) -> set[str]:
    """Every module a module of ``package`` with this source imports, wherever the statement is."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = {m for m in imports(path) if m in modules and m != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle_and_only_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_src():
    edges = graph()
    assert len(edges) > 40  # every module was read
    assert cycles(edges) == []


def wrong_imports(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in edges.items():
        layer = layer_of(module)
        for target in sorted(targets):
            if layer_of(target) not in ALLOWED[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({layer_of(target)})")
    return wrong


def test_imports_point_down_the_layers():
    assert wrong_imports(graph()) == []


def test_torch_free_layers_import_no_torch():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        if layer_of(module) in NO_TORCH and any(m == "torch" or m.startswith("torch.") for m in imports(path)):
            offenders.append(module)
    assert offenders == []


def test_the_layer_check_flags_upward_imports():
    """The checks above can fail: what the issue found (the report loading the trainer, the core
    reaching into the pipeline) is flagged; a downward import is not."""
    edges = {
        "subsetsearch.report.detection": {"subsetsearch.train.canvas", "subsetsearch.rundir"},
        "subsetsearch.stats": {"subsetsearch.pipeline.run", "subsetsearch.internal.kernels"},
    }
    assert wrong_imports(edges) == [
        "subsetsearch.report.detection (report) imports subsetsearch.train.canvas (train)",
        "subsetsearch.stats (core) imports subsetsearch.pipeline.run (pipeline)",
    ]


def test_imports_are_read_from_inside_functions_and_relative_ones_resolved():
    source = "def f():\n    from subsetsearch.pipeline import detect\n    import torch.nn\nfrom . import search\n"
    found = imports_of(source, "subsetsearch.pipeline")
    assert {"subsetsearch.pipeline.detect", "torch.nn", "subsetsearch.pipeline.search"} <= found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_architecture_md_names_every_module(path):
    text = ARCHITECTURE.read_text()
    relative = path.relative_to(PACKAGE)
    if relative.name == "__init__.py":
        return
    assert str(relative) in text, f"docs/architecture.md does not mention {relative}"


def test_nothing_cites_the_first_draft():
    """The project's own map is docs/architecture.md; the first draft lies outside the repository."""
    files = [*SRC.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    files += [*(ROOT / "benchmarks").glob("*.md"), ROOT / "README.md", *(ROOT / "examples").glob("*.py")]
    files += [*(ROOT / "docs").rglob("*.md"), *(ROOT / "docs").rglob("*.py")]
    citing = [str(f.relative_to(ROOT)) for f in files if "DESIGN" + ".md" in f.read_text()]
    assert citing == []
