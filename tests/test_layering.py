"""Package layering, read from the source with ``ast`` (every import: module level, inside functions and under
``TYPE_CHECKING``): ``ops`` and ``io`` sit below everything else, ``utils`` and ``errors`` below them, the training
layer sits above the checkpoint, registry-option, architecture and data code, and the top-level subpackages
import each other without cycles at run time."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import paragonsr

PKG = Path(paragonsr.__file__).parent
# what each low layer may import from paragonsr (itself included)
ALLOWED = {
    "ops": {"ops", "io", "utils", "errors"},
    "io": {"ops", "io", "utils", "errors"},
    "utils": {"utils", "errors"},
}

# what code outside the low layers must never import, even lazily or for typing: loading a checkpoint, generating
# option models and building datasets work without the training layer
FORBIDDEN = {
    "checkpoint/**/*.py": {"train"},
    "registry_options.py": {"train"},
    "archs/**/*.py": {"train"},
    "data/**/*.py": {"train"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, runtime_only: bool) -> Iterator[ast.AST]:
    """``ast.walk``, optionally without the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` is kept)."""
    yield node
    if runtime_only and _is_type_checking(node):
        children: list[ast.AST] = [node.test, *node.orelse]  # type: ignore[attr-defined]
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _walk(child, runtime_only)


def _imports(path: Path, text: str | None = None, runtime_only: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute name) of every paragonsr import in the module at ``path`` (relative imports resolved;
    ``from a import b`` yields ``a`` and ``a.b``); ``text`` replaces the file's source; ``runtime_only`` leaves
    out imports under ``if TYPE_CHECKING:``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    source = path.read_text(encoding="utf-8") if text is None else text
    for node in _walk(ast.parse(source), runtime_only):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module_name = ".".join([*base, node.module] if node.module else base)
            else:
                module_name = node.module or ""
            # ``from pkg import x``: x may be a submodule, so both pkg and pkg.x count
            names = [module_name, *(f"{module_name}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            if name == "paragonsr" or name.startswith("paragonsr."):
                yield node.lineno, name


def _area(module: str) -> str:
    """Top-level area of a module: ``paragonsr.ops.resample`` -> ``ops``, ``paragonsr.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _subpackages() -> list[str]:
    return sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())


@pytest.mark.parametrize("area", sorted(ALLOWED))
def test_low_layers_import_only_what_is_below_them(area: str) -> None:
    bad = [
        f"{path.relative_to(PKG.parent)}:{line}: imports {name}"
        for path in sorted((PKG / area).rglob("*.py"))
        for line, name in _imports(path)
        if _area(name) not in ALLOWED[area]
    ]
    assert not bad, f"paragonsr.{area} may only import {sorted(ALLOWED[area])}:\n" + "\n".join(bad)


@pytest.mark.parametrize("pattern", sorted(FORBIDDEN))
def test_modules_below_training_never_import_it(pattern: str) -> None:
    paths = sorted(PKG.glob(pattern))
    assert paths, f"no module matches {pattern}"
    bad = [
        f"{path.relative_to(PKG.parent)}:{line}: imports {name}"
        for path in paths
        for line, name in _imports(path)
        if _area(name) in FORBIDDEN[pattern]
    ]
    assert not bad, f"{pattern} may not import paragonsr.{sorted(FORBIDDEN[pattern])}:\n" + "\n".join(bad)


def test_the_forbidden_import_rule_sees_a_type_only_import() -> None:
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from paragonsr.train.options import Options\n"
    found = {_area(name) for _, name in _imports(PKG / "data" / "probe.py", src)}
    assert found & FORBIDDEN["data/**/*.py"] == {"train"}


def test_the_layering_check_sees_lazy_relative_and_type_checking_imports() -> None:
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from paragonsr.archs import build_arch\n"
        "def f():\n    import paragonsr.infer.tiling\n    from . import image_io\n    from ..ops import colour\n"
    )
    found = {name for _, name in _imports(PKG / "io" / "probe.py", src)}
    assert found == {
        "paragonsr.archs",
        "paragonsr.archs.build_arch",
        "paragonsr.infer.tiling",
        "paragonsr.io",
        "paragonsr.io.image_io",
        "paragonsr.ops",
        "paragonsr.ops.colour",
    }
    runtime = {name for _, name in _imports(PKG / "io" / "probe.py", src, runtime_only=True)}
    assert runtime == found - {"paragonsr.archs", "paragonsr.archs.build_arch"}


def _graph() -> dict[str, set[str]]:
    """Subpackage -> the subpackages it imports at run time (type-only imports cannot form an import cycle)."""
    subs = set(_subpackages())
    graph: dict[str, set[str]] = {s: set() for s in subs}
    for sub in subs:
        for path in (PKG / sub).rglob("*.py"):
            for _, name in _imports(path, runtime_only=True):
                other = _area(name)
                if other in subs and other != sub:
                    graph[sub].add(other)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a node path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_subpackages_import_each_other_without_cycles() -> None:
    graph = _graph()
    assert {"ops", "io", "archs", "infer", "degrade", "train", "deploy"} <= set(graph)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle between subpackages: " + " -> ".join(cycle or [])


def test_cycle_finder_reports_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_realesrgan_numpy_and_torch_paths_do_not_import_each_other() -> None:
    deg = PKG / "degrade"
    torch_side = {name for _, name in _imports(deg / "realesrgan_torch.py")}
    assert "paragonsr.degrade.realesrgan" not in torch_side, torch_side
    numpy_side = {name for _, name in _imports(deg / "realesrgan.py")}
    assert "paragonsr.degrade.realesrgan_torch" in numpy_side  # the one direction: numpy path -> batched path


def test_training_options_find_model_classes_through_the_registry_without_importing_them() -> None:
    # the model classes import the options; the options look them up in MODEL_REGISTRY, which imports them by
    # name on first lookup: no import of a model module from the options module, so no cycle
    for name in ("train/options.py", "train/option_schema.py"):
        imported = {n for _, n in _imports(PKG / name)}
        assert not imported & {"paragonsr.train.gan_model", "paragonsr.train.sr_model"}, name
    import subprocess
    import sys

    code = (
        "import sys\nfrom paragonsr.registry import MODEL_REGISTRY\n"
        "assert 'paragonsr.train.gan_model' not in sys.modules\n"
        "print(MODEL_REGISTRY.get('RealESRGANModel').__name__, MODEL_REGISTRY.get('sr').__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["GANModel", "SRModel"]
