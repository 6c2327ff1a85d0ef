"""The shape of the package: no import cycles, steps that never see `Rag`, and light imports
(the chunker does not drag in the model stack or OpenTelemetry)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ragline"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    """The ragline modules `path` imports (outside `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            nested = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import) and (top or not module_level_only):
                found.update(a.name for a in child.names if a.name.startswith("ragline"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("ragline"):
                if top or not module_level_only:
                    found.add(child.module)
                    found.update(f"{child.module}.{a.name}" for a in child.names)
            visit(child, nested if module_level_only else True)

    visit(tree, True)
    return found


def _graph(*, module_level_only: bool) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in _imports(path, module_level_only=module_level_only) if m in modules and m != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                walk(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return cycles


def test_no_import_cycles() -> None:
    """Module-level imports form no cycle. Package `__init__` files count as modules, so a
    package that re-exports its children cannot hide a cycle either."""
    graph = _graph(module_level_only=True)
    assert len(graph) > 50
    assert _cycles(graph) == []


def test_no_cycles_through_deferred_imports_either() -> None:
    """Imports inside functions (deferred so that `ragline retrieve` never loads the LLM)
    must not close a cycle the module-level graph avoids."""
    assert _cycles(_graph(module_level_only=False)) == []


def test_steps_and_the_runner_never_import_the_facade() -> None:
    graph = _graph(module_level_only=False)
    for module in ("ragline.pipelines.steps", "ragline.pipelines.runner", "ragline.pipelines.context"):
        assert "ragline.app" not in graph[module] and "ragline.components" not in graph[module], module


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return set(json.loads(out.stdout))


def _among(loaded: set[str], heavy: tuple[str, ...]) -> set[str]:
    """The loaded modules that are, or live inside, one of `heavy`."""
    return {m for m in loaded if m.split(".")[0] in heavy or m.startswith(heavy)}


def test_the_chunker_imports_no_model_stack_and_no_tracing() -> None:
    loaded = _loaded_after("import ragline.ingest.chunking")
    heavy = ("opentelemetry", "httpx", "torch", "unstructured", "llama_index", "ragline.llm", "ragline.tracing", "ragline.app")
    assert _among(loaded, heavy) == set()


def test_checking_a_store_loads_no_parser_and_no_model(tmp_path) -> None:
    """`ragline check` compares the ledger with the index: it took 7 s when it built the
    ingest pipeline (unstructured, nltk, llama-index) only to reach the ledger."""
    loaded = _loaded_after(f"import ragline; rag = ragline.open({str(tmp_path)!r}); rag.check(); rag.close()")
    heavy = ("torch", "unstructured", "llama_index", "sentence_transformers", "ragline.ingest.parsing", "ragline.ingest.chunking")
    assert _among(loaded, heavy) == set()


def test_providers_are_imported_only_when_configured() -> None:
    loaded = _loaded_after("import ragline.llm.providers, ragline.llm.stack")
    assert not {m for m in loaded if m.startswith("ragline.llm.providers.")}
    assert "llama_cpp" not in loaded
