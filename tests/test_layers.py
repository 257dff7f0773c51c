"""Import layering of src/veil, read from the source with ``ast`` (nothing is imported).

The table below is the one statement of the layers (docs/architecture.md explains it).
A module may import modules of its own layer and of the layers listed before it, never
one listed after it. On top of that:

* no module imports another package's underscored module or name (``veil.crypto._kernels``
  is for ``veil.crypto.*`` only; ``veil.jobs.steps._credit`` for ``veil.jobs.steps.*``);
* no import cycle between files.

Which imports count: every ``import``/``from ... import`` at module level or inside a
function or class body, since all of them run. Imports under ``if TYPE_CHECKING:`` never
run, so they count for the layer and private rules (a type still names a higher layer)
but not for cycles. Importing ``pkg.mod`` also runs ``pkg/__init__``; that implicit edge
is not counted (every package that re-exports its modules would be a cycle).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module's layer is the entry whose prefix matches its dotted name.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("bottom", ("veil.errors", "veil.codec", "veil.messages", "veil.policy")),
    ("crypto", ("veil.crypto",)),  # pure: no I/O, no files, no sockets
    ("files", ("veil.fileio",)),  # atomic file output for the layers above crypto
    ("mpc", ("veil.mpc",)),
    ("net", ("veil.net",)),
    ("protocols", ("veil.protocols",)),
    ("ml", ("veil.ml", "veil.data")),  # veil.data: shipped data sets and generators
    ("engine", ("veil.engine",)),  # where a party's kernels run (local, Ray): jobs pick one
    ("jobs", ("veil.jobs",)),
    ("services", ("veil.node", "veil.audit", "veil.web")),
    ("entry", ("veil.cli", "veil")),  # `veil` itself: the package __init__ only
]


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if p == "veil" and module != "veil":
                    continue
                if best is None or len(p) > best[0]:
                    best = (len(p), i)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {
    module_name(p): p
    for p in sorted(SRC.joinpath("veil").rglob("*.py"))
    if not p.name.endswith("_pb2.py") and not p.name.endswith("_pb2_grpc.py")
}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of src/veil
    line: int
    names: tuple[str, ...]  # names taken from the target by `from target import ...`
    type_only: bool


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    return imports_in(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")


def imports_in(module: str, source: str, is_pkg: bool) -> list[Import]:
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "veil" or alias.name.startswith("veil."):
                    found.append(Import(module, alias.name, node.lineno, (), type_only))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, is_pkg)
            if target == "veil" or target.startswith("veil."):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in MODULES:  # `from pkg import module`: the module is the target
                        found.append(Import(module, sub, node.lineno, (), type_only))
                    else:
                        found.append(Import(module, target, node.lineno, (alias.name,), type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return found


ALL_IMPORTS: list[Import] = [imp for m in MODULES for imp in imports_of(m)]


def where(imp: Import) -> str:
    path = MODULES[imp.importer].relative_to(SRC.parent)
    what = f"from {imp.target} import {', '.join(imp.names)}" if imp.names else imp.target
    return f"{path}:{imp.line} ({imp.importer} -> {what})"


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"add these modules to LAYERS in {__file__}: {missing}"
    unknown = sorted({i.target for i in ALL_IMPORTS if i.target not in MODULES})
    assert not unknown, f"imports of modules that do not exist: {unknown}"


def test_no_layer_imports_a_higher_one() -> None:
    bad = []
    for imp in ALL_IMPORTS:
        src, dst = layer_of(imp.importer), layer_of(imp.target)
        if src is not None and dst is not None and dst > src:
            bad.append(f"{where(imp)}: {LAYERS[src][0]} imports {LAYERS[dst][0]}")
    assert not bad, "imports of a higher layer:\n  " + "\n  ".join(bad)


def _private_owner(dotted: str) -> str | None:
    """The package ``dotted`` is private to, if an underscored part makes it private."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(parts[:i])
            if owner in MODULES and MODULES[owner].name != "__init__.py":
                owner = owner.rpartition(".")[0]  # a module's _name is its package's
            return owner
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    bad = []
    for imp in ALL_IMPORTS:
        for d in [imp.target] + [f"{imp.target}.{n}" for n in imp.names]:
            owner = _private_owner(d)
            if owner is not None and not (
                imp.importer == owner or imp.importer.startswith(owner + ".")
            ):
                bad.append(f"{where(imp)}: {d} is private to {owner}")
                break
    assert not bad, "imports of another package's private module or name:\n  " + "\n  ".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in edges.get(v, ()):
                        out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    lines: dict[tuple[str, str], Import] = {}
    for imp in ALL_IMPORTS:
        if not imp.type_only and imp.target in MODULES and imp.target != imp.importer:
            edges[imp.importer].add(imp.target)
            lines.setdefault((imp.importer, imp.target), imp)
    cycles = _cycles(edges)
    msgs = []
    for comp in cycles:
        inside = [where(lines[(a, b)]) for a in comp for b in sorted(edges[a]) if b in comp]
        msgs.append(" <-> ".join(comp) + "\n    " + "\n    ".join(inside))
    assert not cycles, "import cycles:\n  " + "\n  ".join(msgs)


def test_the_checks_see_violations() -> None:
    """The rules fire on planted examples, so a green run means something."""
    assert layer_of("veil.crypto.ou") < layer_of("veil.net.session")  # type: ignore[operator]
    assert layer_of("veil.codec") == 0 and layer_of("veil") == len(LAYERS) - 1
    assert layer_of("veil.jobs.steps.psi") == layer_of("veil.jobs")
    assert _private_owner("veil.crypto._kernels") == "veil.crypto"
    assert _private_owner("veil.crypto.he") is None
    assert _private_owner("veil.crypto.he._x") == "veil.crypto"  # a module's private name
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    planted = """
from typing import TYPE_CHECKING
from . import ou
from ..net import session
if TYPE_CHECKING:
    from veil.ml.metrics import auc
def f():
    import veil.protocols.psi
"""
    got = {(i.target, i.names, i.type_only) for i in imports_in("veil.crypto.x", planted, False)}
    assert got == {
        ("veil.crypto.ou", (), False),
        ("veil.net.session", (), False),
        ("veil.ml.metrics", ("auc",), True),
        ("veil.protocols.psi", (), False),
    }
