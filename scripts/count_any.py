#!/usr/bin/env python3
"""Count ``Any`` in the public signatures of src/veil (parameter and return annotations).

Public means: a module whose dotted path has no part with a leading underscore, and
a function or method whose name has no leading underscore (dunder methods such as
``__init__`` and ``__call__`` count: their parameters are the class's public API),
defined at module level or in a public class (nested public classes too; functions
defined inside functions are not), and the annotated attributes of a public class (a
dataclass's fields are its constructor's parameters). Generated protobuf modules (``*_pb2*.py``) are
skipped. Every ``Any`` node counts, so ``dict[str, Any]`` is one and
``Callable[[Any], Any]`` is two; quoted annotations are parsed too. A module-level type
alias that holds ``Any`` (``Handler = Callable[[str, dict[str, Any]], ...]``, in any
module under ROOT, private ones too) counts its ``Any`` at every use in a public
signature, wherever it is used (same module or imported by name), so an alias cannot
hide them.

Usage: ``python scripts/count_any.py [--list] [ROOT]`` (ROOT defaults to src/veil next to
this script). Prints the total, then per file; ``--list`` also prints each signature.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "src" / "veil"


def _any_count(node: ast.expr | None, aliases: dict[str, int] | None = None) -> int:
    """``Any`` nodes in an annotation; a name in ``aliases`` counts the ``Any`` it hides."""
    if node is None:
        return 0
    aliases = aliases or {}
    n = 0
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Name) and sub.id == "Any") or (
            isinstance(sub, ast.Attribute) and sub.attr == "Any"
        ):
            n += 1
        elif isinstance(sub, ast.Name) and sub.id in aliases:
            n += aliases[sub.id]
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            with contextlib.suppress(SyntaxError):  # a str that is no annotation
                n += _any_count(ast.parse(sub.value, mode="eval").body, aliases)
    return n


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _alias_values(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``X = <type>``, ``X: TypeAlias = <type>`` and ``type X = <type>``."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif sys.version_info >= (3, 12) and isinstance(node, ast.TypeAlias):
            target, value = node.name, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            out[target.id] = value
    return out


def _imported(tree: ast.Module) -> dict[str, str]:
    """Local name -> ``module.Name`` for each ``from veil... import Name``."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def alias_counts(trees: dict[str, ast.Module]) -> dict[str, int]:
    """``module.Alias`` -> the ``Any`` it holds, for every alias under ROOT (aliases of
    aliases resolved, imported aliases followed)."""
    values = {f"{m}.{k}": v for m, t in trees.items() for k, v in _alias_values(t).items()}
    counts: dict[str, int] = {}
    for _ in range(5):  # aliases built from aliases: a few rounds reach a fixed point
        for qual, value in values.items():
            local = _local_aliases(qual.rsplit(".", 1)[0], trees, counts)
            n = _any_count(value, local)
            if n:
                counts[qual] = n
    return counts


def _local_aliases(
    module: str, trees: dict[str, ast.Module], counts: dict[str, int]
) -> dict[str, int]:
    """The aliases visible by name in ``module``: its own and those it imports."""
    local = {q.rsplit(".", 1)[1]: n for q, n in counts.items() if q.rsplit(".", 1)[0] == module}
    for name, qual in _imported(trees[module]).items():
        if qual in counts:
            local[name] = counts[qual]
    return local


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _functions(
    body: list[ast.stmt], prefix: str
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _public(node.name):
            yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from _functions(node.body, f"{prefix}{node.name}.")


def _fields(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AnnAssign]]:
    """Annotated attributes of public classes (a dataclass's fields are its constructor's
    parameters), nested public classes too."""
    for node in body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and not item.target.id.startswith("_")
                ):
                    yield f"{prefix}{node.name}.{item.target.id}", item
            yield from _fields(node.body, f"{prefix}{node.name}.")


def signature_counts(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, aliases: dict[str, int] | None = None
) -> int:
    a = fn.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    params += [p for p in (a.vararg, a.kwarg) if p is not None]
    return sum(_any_count(p.annotation, aliases) for p in params) + _any_count(fn.returns, aliases)


def public_module(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).with_suffix("").parts
    if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
        return False
    return all(not p.startswith("_") or p == "__init__" for p in parts)


def count(root: Path) -> tuple[int, dict[Path, list[tuple[str, int, int]]]]:
    per_file: dict[Path, list[tuple[str, int, int]]] = {}
    total = 0
    paths = [
        p for p in sorted(root.rglob("*.py")) if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    ]
    trees = {
        _module_name(p, root): ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
        for p in paths
    }
    aliases = alias_counts(trees)
    for path in paths:
        if not public_module(path, root):
            continue
        module = _module_name(path, root)
        tree = trees[module]
        local = _local_aliases(module, trees, aliases)
        for name, fn in _functions(tree.body, ""):
            n = signature_counts(fn, local)
            if n:
                per_file.setdefault(path, []).append((name, fn.lineno, n))
                total += n
        for name, attr in _fields(tree.body, ""):
            n = _any_count(attr.annotation, local)
            if n:
                per_file.setdefault(path, []).append((f"{name} (field)", attr.lineno, n))
                total += n
    return total, per_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--list", action="store_true", help="print every signature with Any")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    if not root.is_dir():
        ap.error(f"{root} is not a directory")
    total, per_file = count(root)
    print(f"Any in public signatures under {root}: {total}")
    for path, items in sorted(per_file.items(), key=lambda kv: -sum(i[2] for i in kv[1])):
        print(f"{sum(i[2] for i in items):5d}  {path.relative_to(root.parent)}")
        if args.list:
            for name, line, n in items:
                print(f"         {n}  {name} (line {line})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
